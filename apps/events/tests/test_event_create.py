import json
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from apps.events.models import Event, WebhookDelivery, WebhookDeliveryStatus
from apps.events.services import event_create
from apps.events.tests.factories import AppFactory, WebhookEndpointFactory, charge_object
from apps.events.wire import event_to_wire


class Boom(Exception):
    pass


@pytest.mark.django_db
def test_event_create_records_the_wire_body_and_one_pending_delivery_per_enabled_endpoint(
    django_capture_on_commit_callbacks,
):
    app = AppFactory()
    first = WebhookEndpointFactory(app=app, url="http://127.0.0.1:9/a")
    second = WebhookEndpointFactory(app=app, url="http://127.0.0.1:9/b")
    WebhookEndpointFactory(app=app, url="http://127.0.0.1:9/disabled", enabled=False)
    before = timezone.now()

    with django_capture_on_commit_callbacks(execute=False) as callbacks, transaction.atomic():
        event = event_create(
            app=app, type="charge.succeeded", livemode=False, data_object=charge_object(subject="咖啡"),
            request_id="iar_abc",
        )  # fmt: skip

    assert event.public_id.startswith("evt_") and len(event.public_id) == 28
    assert json.loads(event.body) == {
        "id": event.public_id,
        "object": "event",
        "livemode": False,
        "created": int(event.created_at.timestamp()),
        "type": "charge.succeeded",
        "data": {"object": charge_object(subject="咖啡")},
        "pending_webhooks": 2,
        "request": "iar_abc",
    }
    # Compact, and UTF-8 rather than \u escapes.
    assert '"object":"event"' in event.body and "咖啡" in event.body
    deliveries = list(WebhookDelivery.objects.filter(event=event).order_by("endpoint_id"))
    assert [d.endpoint_id for d in deliveries] == [first.pk, second.pk]
    assert {d.status for d in deliveries} == {WebhookDeliveryStatus.PENDING}
    assert all(before <= d.next_attempt_at <= timezone.now() for d in deliveries)
    assert [(d.attempts, d.request_id) for d in deliveries] == [(0, "iar_abc"), (0, "iar_abc")]
    assert len(callbacks) == 1  # one drain task sends both deliveries


@pytest.mark.django_db
def test_event_wire_counts_undelivered_deliveries_now_and_request_is_null_without_request_id(
    django_capture_on_commit_callbacks,
):
    app = AppFactory()
    WebhookEndpointFactory(app=app)
    with django_capture_on_commit_callbacks(execute=False), transaction.atomic():
        event = event_create(app=app, type="charge.succeeded", livemode=True, data_object=charge_object())

    wire = event_to_wire(event)

    assert wire["pending_webhooks"] == 1
    assert wire["request"] is None
    assert wire["livemode"] is True


@pytest.mark.django_db(transaction=True)
def test_event_create_rolled_back_with_its_transaction_leaves_no_event_no_delivery_and_sends_nothing(
    receiver, celery_eager
):
    app = AppFactory()
    WebhookEndpointFactory(app=app, url=receiver.url)

    with pytest.raises(Boom), transaction.atomic():
        event_create(app=app, type="charge.succeeded", livemode=False, data_object=charge_object())
        raise Boom

    assert Event.objects.count() == 0
    assert WebhookDelivery.objects.count() == 0
    assert receiver.requests == []


@pytest.mark.django_db(transaction=True)
def test_event_create_outside_a_transaction_is_refused_and_writes_nothing():
    app = AppFactory()
    WebhookEndpointFactory(app=app)

    with pytest.raises(RuntimeError, match="inside the transaction"):
        event_create(app=app, type="charge.succeeded", livemode=False, data_object=charge_object())

    assert Event.objects.count() == 0
    assert WebhookDelivery.objects.count() == 0


@pytest.mark.django_db
def test_event_create_refuses_a_data_object_without_object_field():
    app = AppFactory()

    with pytest.raises(ValueError), transaction.atomic():
        event_create(app=app, type="charge.succeeded", livemode=False, data_object={"id": "ch_1"})

    assert Event.objects.count() == 0


@pytest.mark.django_db
def test_event_create_without_endpoints_records_the_event_with_no_pending_webhooks():
    app = AppFactory()

    with transaction.atomic():
        event = event_create(app=app, type="refund.succeeded", livemode=False, data_object={"object": "refund"})

    assert json.loads(event.body)["pending_webhooks"] == 0
    assert WebhookDelivery.objects.count() == 0
    assert event.created_at > timezone.now() - timedelta(minutes=1)
