"""Periodic tasks of this app; merged into settings.CELERY_BEAT_SCHEDULE.

Both tasks are idempotent: a day closes once, a merchant settles at most once per day.
"""

BEAT_SCHEDULE = {
    "ledger.days_close": {
        "task": "apps.ledger.tasks.ledger_days_close",
        "schedule": 300.0,
    },
    "ledger.settlements_run": {
        "task": "apps.ledger.tasks.ledger_settlements_run",
        "schedule": 900.0,
    },
}
