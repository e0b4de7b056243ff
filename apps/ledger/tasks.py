"""Thin tasks: one service call each; both are idempotent (they may run twice)."""

from celery import shared_task

from apps.ledger import services


@shared_task(name="apps.ledger.tasks.ledger_days_close", acks_late=True, reject_on_worker_lost=True)
def ledger_days_close() -> int:
    """Closes every day before the current accounting day."""
    return len(services.ledger_days_close_due(by="system:day-cut"))


@shared_task(name="apps.ledger.tasks.ledger_settlements_run", acks_late=True, reject_on_worker_lost=True)
def ledger_settlements_run() -> int:
    """T+N settlement of every merchant for today's accounting day."""
    return len(services.settlements_run(by="system:settlement"))
