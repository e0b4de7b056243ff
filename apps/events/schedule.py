"""Periodic tasks of this app; the lead merges BEAT_SCHEDULE into settings.CELERY_BEAT_SCHEDULE."""

BEAT_SCHEDULE = {
    "events.webhook_deliveries_sweep": {
        "task": "apps.events.tasks.webhook_deliveries_sweep",
        "schedule": 30.0,
    },
}
