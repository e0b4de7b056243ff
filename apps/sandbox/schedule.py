"""Periodic tasks of the sandbox, merged into settings.CELERY_BEAT_SCHEDULE."""

BEAT_SCHEDULE = {
    "sandbox.alipay_sweep": {
        "task": "apps.sandbox.tasks.sandbox_alipay_sweep",
        "schedule": 60.0,
    },
    "sandbox.wechatpay_sweep": {
        "task": "apps.sandbox.tasks.sandbox_wechatpay_sweep",
        "schedule": 60.0,
    },
    "sandbox.unionpay_sweep": {
        "task": "apps.sandbox.tasks.sandbox_unionpay_sweep",
        "schedule": 60.0,
    },
}
