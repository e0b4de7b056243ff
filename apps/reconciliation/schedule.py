"""Periodic tasks of reconciliation; merged into settings.CELERY_BEAT_SCHEDULE.

One sweep every 5 minutes: it opens the day's bill downloads of accounts whose bill time has
passed and attempts the due ones (backoff, deadline, then manual). Idempotent.
"""

BEAT_SCHEDULE = {
    "reconciliation.bills_due": {
        "task": "apps.reconciliation.tasks.recon_bills_due",
        "schedule": 300.0,
    },
}
