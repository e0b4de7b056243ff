"""The sandbox's background work: Alipay's asynchronous notifications and the sweep."""

from celery import shared_task

from apps.sandbox import services

# Alipay retries for about 25 h; the sandbox keeps the shape (a bounded schedule) but is quick.
NOTIFY_RETRY_COUNTDOWNS = (2, 5, 15, 60)


@shared_task(bind=True, max_retries=len(NOTIFY_RETRY_COUNTDOWNS), acks_late=True, ignore_result=True)
def sandbox_alipay_notify(self, notification_id: int) -> None:
    """Delivers one notification; retried on schedule until the merchant answers `success`."""
    if services.alipay_notification_deliver(notification_id=notification_id):
        return
    if self.request.retries < len(NOTIFY_RETRY_COUNTDOWNS):
        raise self.retry(countdown=NOTIFY_RETRY_COUNTDOWNS[self.request.retries])


@shared_task(ignore_result=True)
def sandbox_alipay_sweep() -> dict:
    """Periodic: closes expired unpaid trades and re-sends notifications whose task was lost."""
    return services.alipay_sandbox_sweep()
