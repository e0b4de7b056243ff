"""Periodic tasks of the core app, merged into settings.CELERY_BEAT_SCHEDULE."""

BEAT_SCHEDULE = {
    "core.idempotency_keys_purge": {"task": "apps.core.tasks.idempotency_keys_purge", "schedule": 3600.0},
}
