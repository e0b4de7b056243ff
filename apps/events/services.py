"""Events (the outbox) and their webhook deliveries.

A delivery's life: `event_create` writes it pending and due now, and enqueues a send on commit.
`webhook_delivery_attempt` claims it in a short transaction (moving `next_attempt_at` forward by
a lease), POSTs outside any transaction, and records the outcome in a second one. The sweep
(`webhook_deliveries_sweep`) re-enqueues any due delivery whose task was lost, so nothing depends
on a broker message surviving.
"""

import logging
from datetime import datetime, timedelta

import requests
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.core.context import current_request_id
from apps.core.services import platform_sign
from apps.events.exceptions import WebhookDeliveryNotResendable
from apps.events.models import OPEN_STATUSES, Event, WebhookDelivery, WebhookDeliveryStatus, WebhookDeliveryTransition
from apps.events.wire import event_to_wire, wire_body
from apps.merchants.models import App
from apps.merchants.selectors import webhook_endpoints_for_app

logger = logging.getLogger(__name__)

# Retries back off (5 s, 10 s, 20 s … capped at 6 h) until the event is this old; then the
# delivery is dead and only a resend from the console sends it again.
GIVE_UP_AFTER = timedelta(days=3)
BACKOFF_FACTOR_SECONDS = 5
BACKOFF_MAXIMUM_SECONDS = 6 * 3600
SWEEP_BATCH_SIZE = 500
SEND_BATCH_SIZE = 20  # deliveries per send task from the sweep: claim and record are set-based
SENDER = "system:webhook-sender"
USER_AGENT = "paysys-webhooks/1"


def _lease() -> timedelta:
    """How long a claimed or enqueued delivery is left alone: well beyond one POST's timeout."""
    return timedelta(seconds=max(60.0, 3 * settings.PAYSYS_WEBHOOK_TIMEOUT_SECONDS))


def _audit(delivery: WebhookDelivery, source: str, *, by: str) -> None:
    WebhookDeliveryTransition.objects.create(
        delivery=delivery, source=source, target=delivery.status, by=by, request_id=current_request_id()
    )


def _enqueue_drain_on_commit() -> None:
    """After commit, one drain task: it sends whatever is due, in batches (a burst of events is
    sent SEND_BATCH_SIZE at a time; a lone event is sent at once)."""
    # Imported here: tasks.py imports this module. `robust`: a broker outage must not fail the
    # caller after its commit; the sweep finds the deliveries instead.
    from apps.events.tasks import webhook_deliveries_drain

    transaction.on_commit(webhook_deliveries_drain.delay, robust=True)


# --- events --------------------------------------------------------------------------------------


def event_create(*, app: App, type: str, livemode: bool, data_object: dict, request_id: str = "") -> Event:
    """Records an event and one pending delivery per enabled endpoint of the app.

    Must run inside the caller's transaction (the outbox: the event commits or rolls back with the
    state change it describes); the sends are enqueued only on commit. `data_object` is the full
    Ping++ resource, with its `object` field (the Java SDK dispatches on `data.object.object`).
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("event_create must run inside the transaction of the change it records")
    if "object" not in data_object:
        raise ValueError("data_object must be a Ping++ resource with an `object` field")
    now = timezone.now()
    endpoints = webhook_endpoints_for_app(app_id=app.pk)
    event = Event(
        app=app,
        type=type,
        livemode=livemode,
        data={"object": data_object},
        request_id=request_id or current_request_id(),
        created_at=now,
    )
    event.body = wire_body(event_to_wire(event, pending_webhooks=len(endpoints)))
    event.save()
    deliveries = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(
                event=event, endpoint=endpoint, next_attempt_at=now,
                request_id=event.request_id,
            )
            for endpoint in endpoints
        ]
    )  # fmt: skip
    if deliveries:
        _enqueue_drain_on_commit()
    return event


# --- sending -------------------------------------------------------------------------------------


def _webhook_deliveries_claim(*, delivery_ids: list[int] | None = None, limit: int = SEND_BATCH_SIZE):
    """Takes due deliveries for one attempt each: these ids (a send task), or else the first
    `limit` due ones that no task has (a drain). Others are not ours.

    Moving `next_attempt_at` forward by the lease is the claim: no other sender sees a delivery as
    due until this attempt is recorded or the lease runs out (the sender died). SKIP LOCKED: a
    delivery another sender is claiming right now is simply left to it.
    """
    now = timezone.now()
    with transaction.atomic():
        due = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("event", "endpoint")
            .filter(status__in=OPEN_STATUSES, next_attempt_at__lte=now)
        )
        if delivery_ids is not None:
            due = due.filter(pk__in=delivery_ids).order_by("pk")
        else:
            due = due.filter(Q(queued_until__isnull=True) | Q(queued_until__lte=now)).order_by("next_attempt_at", "pk")
        deliveries = list(due[:limit] if delivery_ids is None else due)
        if deliveries:
            WebhookDelivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
                next_attempt_at=now + _lease(), queued_until=now + _lease(), last_attempt_at=now,
                attempts=F("attempts") + 1,
            )  # fmt: skip
    for delivery in deliveries:
        delivery.attempts += 1
    return deliveries


# One HTTP session per worker process: connections to merchants' servers are kept alive.
_http = requests.Session()


def _webhook_post(*, url: str, body: bytes, request_id: str) -> tuple[int | None, str]:
    """(HTTP status or None, a short error that never carries the URL or any secret)."""
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        "X-Pingplusplus-Signature": platform_sign(body),
        "X-Request-Id": request_id,
    }
    try:
        # stream=True and close(): the merchant's answer body is never read, only its status.
        with _http.post(
            url,
            data=body,
            headers=headers,
            timeout=settings.PAYSYS_WEBHOOK_TIMEOUT_SECONDS,
            allow_redirects=False,
            stream=True,
        ) as response:
            status_code = response.status_code
    except requests.RequestException as exc:
        return None, type(exc).__name__
    return status_code, "" if 200 <= status_code < 300 else f"HTTP {status_code}"


def _webhook_deliveries_record_delivered(*, delivered: list[tuple[WebhookDelivery, int]]) -> None:
    """Records the 2xx attempts in one statement (set-based: the FSM's `deliver` per row would
    lock, load and save each row) plus their audit rows. Rows changed meanwhile are left alone."""
    now = timezone.now()
    with transaction.atomic():
        for status_code in {code for _, code in delivered}:
            ids = [d.pk for d, code in delivered if code == status_code]
            WebhookDelivery.objects.filter(pk__in=ids, status__in=OPEN_STATUSES).update(
                status=WebhookDeliveryStatus.DELIVERED, delivered_at=now, last_status_code=status_code,
                last_error="", next_attempt_at=None,
            )  # fmt: skip
        WebhookDeliveryTransition.objects.bulk_create(
            WebhookDeliveryTransition(
                delivery=d, source=d.status, target=WebhookDeliveryStatus.DELIVERED, by=SENDER,
                request_id=current_request_id(),
            )
            for d, _ in delivered
        )  # fmt: skip


def _webhook_delivery_record_failure(*, delivery_id: int, status_code: int | None, error: str) -> WebhookDelivery:
    """A failed attempt: failing with backoff, or dead once the event is three days old."""
    now = timezone.now()
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update(of=("self",)).select_related("event").get(pk=delivery_id)
        if delivery.status not in OPEN_STATUSES:
            return delivery  # changed meanwhile (never by the sender itself); the attempt is history only
        source = delivery.status
        if now - delivery.event.created_at >= GIVE_UP_AFTER:
            delivery.give_up(status_code=status_code, error=error)
        else:
            backoff = get_exponential_backoff_interval(
                factor=BACKOFF_FACTOR_SECONDS,
                retries=delivery.attempts - 1,  # attempts before this one: the first retry waits 5 s
                maximum=BACKOFF_MAXIMUM_SECONDS,
                full_jitter=False,
            )
            delivery.fail(status_code=status_code, error=error, retry_at=now + timedelta(seconds=backoff))
        delivery.save()
        _audit(delivery, source, by=SENDER)
    return delivery


def webhook_deliveries_attempt(*, delivery_ids: list[int]) -> int:
    """Sends each due delivery among these once and records the outcomes; returns how many it sent.

    Safe to run twice for one delivery (a duplicate task, a sweep racing the first task): only the
    caller that claims it sends. Runs outside any transaction, so that no lock is held while the
    merchants' servers answer.
    """
    _refuse_inside_a_transaction()
    return _send(_webhook_deliveries_claim(delivery_ids=delivery_ids))


def webhook_deliveries_drain() -> int:
    """Claims up to SEND_BATCH_SIZE due deliveries that no task has and sends them; how many."""
    _refuse_inside_a_transaction()
    return _send(_webhook_deliveries_claim(limit=SEND_BATCH_SIZE))


def _refuse_inside_a_transaction() -> None:
    if transaction.get_connection().in_atomic_block:
        raise RuntimeError("webhook deliveries must not run inside a transaction")


def _send(claimed: list[WebhookDelivery]) -> int:
    delivered = []
    for delivery in claimed:
        status_code, error = _webhook_post(
            url=delivery.endpoint.url,
            body=delivery.event.body.encode(),
            request_id=delivery.request_id or current_request_id(),
        )
        logger.info("webhook delivery %s of %s: %s", delivery.pk, delivery.event.public_id, status_code or error)
        if status_code is not None and 200 <= status_code < 300:
            delivered.append((delivery, status_code))
        else:
            _webhook_delivery_record_failure(delivery_id=delivery.pk, status_code=status_code, error=error)
    if delivered:
        _webhook_deliveries_record_delivered(delivered=delivered)
    return len(claimed)


def webhook_delivery_attempt(*, delivery_id: int) -> WebhookDelivery | None:
    """Sends one due delivery once; None when it was not ours to send (see the batch form)."""
    if not webhook_deliveries_attempt(delivery_ids=[delivery_id]):
        return None
    return WebhookDelivery.objects.select_related("event").get(pk=delivery_id)


# --- the sweep -----------------------------------------------------------------------------------


def webhook_deliveries_claim_due(*, limit: int = SWEEP_BATCH_SIZE, now: datetime | None = None) -> list[int]:
    """Ids of up to `limit` due deliveries that no task is queued for, marked as queued.

    SKIP LOCKED: concurrent sweeps take disjoint rows and never wait for each other.
    """
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(status__in=OPEN_STATUSES, next_attempt_at__lte=now)
            .filter(Q(queued_until__isnull=True) | Q(queued_until__lte=now))
            .order_by("next_attempt_at", "pk")
            .values_list("pk", flat=True)[:limit]
        )
        WebhookDelivery.objects.filter(pk__in=ids).update(queued_until=now + _lease())
    return ids


def webhook_deliveries_sweep(*, batch_size: int = SWEEP_BATCH_SIZE) -> int:
    """Enqueues sends for every due delivery whose task was lost (or whose retry is due), in
    batches of SEND_BATCH_SIZE per task; returns how many deliveries."""
    from apps.events.tasks import webhook_deliveries_send

    enqueued = 0
    while True:
        ids = webhook_deliveries_claim_due(limit=batch_size)
        for start in range(0, len(ids), SEND_BATCH_SIZE):
            webhook_deliveries_send.delay(ids[start : start + SEND_BATCH_SIZE])
        enqueued += len(ids)
        if len(ids) < batch_size:
            return enqueued


# --- the console ---------------------------------------------------------------------------------


def webhook_delivery_resend(*, delivery_id: int, by: str) -> WebhookDelivery:
    """Makes a failing or dead delivery pending and due now, and enqueues a send on commit."""
    now = timezone.now()
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery_id)
        if delivery.status not in (WebhookDeliveryStatus.FAILING, WebhookDeliveryStatus.DEAD):
            raise WebhookDeliveryNotResendable(f"A {delivery.status} webhook delivery cannot be resent.")
        source = delivery.status
        delivery.resend(at=now)
        delivery.queued_until = None
        delivery.save()
        _audit(delivery, source, by=by)
        _enqueue_drain_on_commit()
    return delivery
