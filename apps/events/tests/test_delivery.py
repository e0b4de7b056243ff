from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from apps.core.crypto import rsa_verify
from apps.core.services import platform_public_key_pem
from apps.events.exceptions import WebhookDeliveryNotResendable
from apps.events.models import Event, WebhookDelivery, WebhookDeliveryStatus
from apps.events.services import event_create, webhook_delivery_attempt, webhook_delivery_resend
from apps.events.tasks import webhook_delivery_send
from apps.events.tests.factories import AppFactory, WebhookEndpointFactory, charge_object

pytestmark = pytest.mark.django_db(transaction=True)


def _event_with_delivery(receiver) -> tuple[Event, WebhookDelivery]:
    """An event whose one delivery has had its first attempt (sent on commit, eagerly)."""
    app = AppFactory()
    WebhookEndpointFactory(app=app, url=receiver.url)
    with transaction.atomic():
        event = event_create(
            app=app, type="charge.succeeded", livemode=False, data_object=charge_object(), request_id="iar_t1"
        )
    return event, WebhookDelivery.objects.get(event=event)


def _make_due(delivery: WebhookDelivery) -> None:
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


def _transitions(delivery: WebhookDelivery) -> list[tuple[str, str, str]]:
    return list(delivery.transitions.order_by("pk").values_list("source", "target", "by"))


def test_a_delivery_to_a_2xx_receiver_is_delivered_with_a_signature_the_platform_public_key_verifies(
    receiver, celery_eager
):
    receiver.status = 204

    event, delivery = _event_with_delivery(receiver)

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request["path"] == "/webhooks"
    assert request["body"] == event.body.encode()
    assert request["headers"]["content-type"] == "application/json; charset=utf-8"
    assert request["headers"]["x-request-id"] == "iar_t1"
    signature = request["headers"]["x-pingplusplus-signature"]
    assert rsa_verify(platform_public_key_pem(), request["body"], signature)
    assert not rsa_verify(platform_public_key_pem(), request["body"] + b" ", signature)
    assert delivery.status == WebhookDeliveryStatus.DELIVERED
    assert (delivery.attempts, delivery.last_status_code, delivery.last_error) == (1, 204, "")
    assert delivery.next_attempt_at is None
    assert delivery.last_attempt_at <= delivery.delivered_at
    assert _transitions(delivery) == [("pending", "delivered", "system:webhook-sender")]


def test_a_5xx_receiver_makes_the_delivery_failing_with_exponential_backoff(receiver, celery_eager):
    receiver.status = 500

    _event, delivery = _event_with_delivery(receiver)

    assert delivery.status == WebhookDeliveryStatus.FAILING
    assert (delivery.attempts, delivery.last_status_code, delivery.last_error) == (1, 500, "HTTP 500")
    first_wait = delivery.next_attempt_at - delivery.last_attempt_at
    assert timedelta(seconds=5) <= first_wait < timedelta(seconds=6)

    _make_due(delivery)
    before = timezone.now()
    delivery = webhook_delivery_attempt(delivery_id=delivery.pk)
    after = timezone.now()

    assert delivery.status == WebhookDeliveryStatus.FAILING
    assert delivery.attempts == 2
    assert before + timedelta(seconds=10) <= delivery.next_attempt_at <= after + timedelta(seconds=10)
    assert _transitions(delivery) == [
        ("pending", "failing", "system:webhook-sender"),
        ("failing", "failing", "system:webhook-sender"),
    ]


def test_an_unreachable_endpoint_fails_with_a_short_error_and_no_status(celery_eager):
    app = AppFactory()
    WebhookEndpointFactory(app=app, url="http://127.0.0.1:9/webhooks?token=s3cret")

    with transaction.atomic():
        event = event_create(app=app, type="charge.succeeded", livemode=False, data_object=charge_object())

    delivery = WebhookDelivery.objects.get(event=event)
    assert delivery.status == WebhookDeliveryStatus.FAILING
    assert (delivery.attempts, delivery.last_status_code, delivery.last_error) == (1, None, "ConnectionError")


def test_a_delivery_not_yet_due_is_not_sent_again(receiver, celery_eager):
    receiver.status = 500
    _event, delivery = _event_with_delivery(receiver)

    result = webhook_delivery_send.run(delivery.pk)

    assert result is None
    assert len(receiver.requests) == 1
    assert WebhookDelivery.objects.get(pk=delivery.pk).attempts == 1


def test_a_failed_attempt_on_an_event_older_than_three_days_makes_the_delivery_dead(receiver, celery_eager):
    receiver.status = 503
    event, delivery = _event_with_delivery(receiver)
    Event.objects.filter(pk=event.pk).update(created_at=timezone.now() - timedelta(days=3, minutes=1))
    _make_due(delivery)

    delivery = webhook_delivery_attempt(delivery_id=delivery.pk)

    assert delivery.status == WebhookDeliveryStatus.DEAD
    assert (delivery.attempts, delivery.last_status_code, delivery.next_attempt_at) == (2, 503, None)
    assert _transitions(delivery)[-1] == ("failing", "dead", "system:webhook-sender")


def test_resend_makes_a_dead_delivery_pending_and_it_is_then_delivered(receiver, celery_eager):
    receiver.status = 500
    event, delivery = _event_with_delivery(receiver)
    Event.objects.filter(pk=event.pk).update(created_at=timezone.now() - timedelta(days=4))
    _make_due(delivery)
    assert webhook_delivery_attempt(delivery_id=delivery.pk).status == WebhookDeliveryStatus.DEAD
    receiver.status = 200

    webhook_delivery_resend(delivery_id=delivery.pk, by="admin:ops")

    delivery.refresh_from_db()
    assert delivery.status == WebhookDeliveryStatus.DELIVERED
    assert delivery.attempts == 3
    assert len(receiver.requests) == 3
    assert _transitions(delivery) == [
        ("pending", "failing", "system:webhook-sender"),
        ("failing", "dead", "system:webhook-sender"),
        ("dead", "pending", "admin:ops"),
        ("pending", "delivered", "system:webhook-sender"),
    ]


def test_resend_refuses_a_delivered_delivery_and_changes_nothing(receiver, celery_eager):
    _event, delivery = _event_with_delivery(receiver)

    with pytest.raises(WebhookDeliveryNotResendable):
        webhook_delivery_resend(delivery_id=delivery.pk, by="admin:ops")

    delivery.refresh_from_db()
    assert delivery.status == WebhookDeliveryStatus.DELIVERED
    assert len(_transitions(delivery)) == 1
    assert len(receiver.requests) == 1


def test_every_attempt_of_one_delivery_sends_the_same_bytes(receiver, celery_eager):
    receiver.status = 500
    event, delivery = _event_with_delivery(receiver)
    _make_due(delivery)

    webhook_delivery_attempt(delivery_id=delivery.pk)

    first, second = receiver.requests
    assert first["body"] == second["body"] == event.body.encode()
    assert first["headers"]["x-pingplusplus-signature"] == second["headers"]["x-pingplusplus-signature"]


def test_sending_inside_a_transaction_is_refused(receiver):
    with pytest.raises(RuntimeError, match="must not run inside a transaction"), transaction.atomic():
        webhook_delivery_attempt(delivery_id=1)
