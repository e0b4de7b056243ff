"""Periodic sweeps of the pay core, merged into settings.CELERY_BEAT_SCHEDULE."""

BEAT_SCHEDULE = {
    "payments.charges_query_sweep": {"task": "apps.payments.tasks.charges_query_sweep", "schedule": 5.0},
    "payments.refunds_query_sweep": {"task": "apps.payments.tasks.refunds_query_sweep", "schedule": 10.0},
    "payments.attention_sweep": {"task": "apps.payments.tasks.attention_sweep", "schedule": 300.0},
}
