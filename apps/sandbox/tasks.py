"""The sandbox's background work: Alipay's asynchronous notifications and the sweep."""

import time

from celery import shared_task

from apps.sandbox import services

# Alipay retries for about 25 h; the sandbox keeps the shape (a bounded schedule) but is quick.
NOTIFY_RETRY_COUNTDOWNS = (2, 5, 15, 60)


@shared_task(bind=True, max_retries=len(NOTIFY_RETRY_COUNTDOWNS), acks_late=True, ignore_result=True)
def sandbox_alipay_notify(self, notification_id: int, duplicate: bool = False) -> None:
    """Delivers one notification; retried on schedule until the merchant answers `success`.

    `duplicate` (the NOTIFY_DUPLICATE fault) delivers it again even if it was delivered.
    """
    if services.alipay_notification_deliver(notification_id=notification_id, duplicate=duplicate):
        return
    if self.request.retries < len(NOTIFY_RETRY_COUNTDOWNS):
        raise self.retry(countdown=NOTIFY_RETRY_COUNTDOWNS[self.request.retries])


@shared_task(ignore_result=True)
def sandbox_alipay_sweep() -> dict:
    """Periodic: closes expired unpaid trades and re-sends notifications whose task was lost."""
    return services.alipay_sandbox_sweep()


# --- WeChat Pay ----------------------------------------------------------------------------------

# WeChat retries for about 24 h (15s, 15s, 30s, 3m, …); the sandbox keeps the shape but is quick.
WECHATPAY_NOTIFY_RETRY_COUNTDOWNS = (2, 5, 15, 60)


@shared_task(bind=True, max_retries=len(WECHATPAY_NOTIFY_RETRY_COUNTDOWNS), acks_late=True, ignore_result=True)
def sandbox_wechatpay_notify(self, notification_id: int) -> None:
    """Delivers one WeChat Pay notification; retried on schedule until answered 200/204.

    A delayed notification (fault) that runs early is put back until due; run eagerly (tests),
    it waits in-process instead, so the delay is still observable.
    """
    from apps.sandbox import wechatpay_services

    wait = wechatpay_services.wechatpay_notification_wait(notification_id=notification_id)
    if wait > 0:
        if not self.request.is_eager:
            self.apply_async((notification_id,), countdown=wait)
            return
        time.sleep(wait)
    if wechatpay_services.wechatpay_notification_deliver(notification_id=notification_id):
        return
    if self.request.retries < len(WECHATPAY_NOTIFY_RETRY_COUNTDOWNS):
        raise self.retry(countdown=WECHATPAY_NOTIFY_RETRY_COUNTDOWNS[self.request.retries])


@shared_task(acks_late=True, ignore_result=True)
def sandbox_wechatpay_refund_complete(refund_id: int) -> None:
    """The refund's money has gone back: PROCESSING -> SUCCESS and REFUND.SUCCESS (idempotent)."""
    from apps.sandbox import wechatpay_services

    wechatpay_services.wechatpay_refund_complete(refund_id=refund_id)


@shared_task(ignore_result=True)
def sandbox_wechatpay_sweep() -> dict:
    """Periodic: expired orders, refunds and notifications whose task was lost, held notifications."""
    from apps.sandbox import wechatpay_services

    return wechatpay_services.wechatpay_sandbox_sweep()


# --- UnionPay ------------------------------------------------------------------------------------

# UnionPay sends a notification 5 times in all, at 0/1/2/4-minute intervals (PROVIDERS.md C4;
# the last gap is our reading). Eager runs (tests) retry at once.
UNIONPAY_NOTIFY_RETRY_COUNTDOWNS = (60, 120, 240, 240)


@shared_task(bind=True, max_retries=len(UNIONPAY_NOTIFY_RETRY_COUNTDOWNS), acks_late=True, ignore_result=True)
def sandbox_unionpay_notify(self, notification_id: int) -> None:
    """Delivers one UnionPay backend notification; retried until answered HTTP 200/302.

    A delayed one (fault) that runs early is put back until due; run eagerly, it is left to the
    sweep, which sends it once due.
    """
    from apps.sandbox import unionpay_services

    outcome = unionpay_services.unionpay_notification_deliver(notification_id=notification_id)
    if outcome is True:
        return
    if outcome is not False:  # seconds until a delayed notification is due
        if not self.request.is_eager:
            self.apply_async((notification_id,), countdown=outcome)
        return
    if self.request.retries < len(UNIONPAY_NOTIFY_RETRY_COUNTDOWNS):
        raise self.retry(countdown=UNIONPAY_NOTIFY_RETRY_COUNTDOWNS[self.request.retries])


@shared_task(ignore_result=True)
def sandbox_unionpay_sweep() -> dict:
    """Periodic: expired front consumes, due delayed, held-too-long and lost notifications."""
    from apps.sandbox import unionpay_services

    return unionpay_services.unionpay_sandbox_sweep()
