"""Thin tasks: ids in, one service call. The sweep is the safety net for lost send tasks."""

from celery import shared_task

from apps.events import services


@shared_task(name="apps.events.tasks.webhook_delivery_send", acks_late=True, reject_on_worker_lost=True)
def webhook_delivery_send(delivery_id: int) -> None:
    # Retries are not Celery's: a failed attempt is rescheduled in the row (next_attempt_at).
    services.webhook_delivery_attempt(delivery_id=delivery_id)


@shared_task(name="apps.events.tasks.webhook_deliveries_send", acks_late=True, reject_on_worker_lost=True)
def webhook_deliveries_send(delivery_ids: list[int]) -> None:
    services.webhook_deliveries_attempt(delivery_ids=delivery_ids)


@shared_task(name="apps.events.tasks.webhook_deliveries_drain", acks_late=True, reject_on_worker_lost=True)
def webhook_deliveries_drain() -> int:
    return services.webhook_deliveries_drain()


@shared_task(name="apps.events.tasks.webhook_deliveries_sweep")
def webhook_deliveries_sweep() -> int:
    return services.webhook_deliveries_sweep()
