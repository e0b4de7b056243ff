"""The sweep's batched sends: one claim and one record for many deliveries."""

import pytest

from apps.events.models import WebhookDelivery, WebhookDeliveryStatus, WebhookDeliveryTransition
from apps.events.services import SEND_BATCH_SIZE, webhook_deliveries_attempt, webhook_deliveries_sweep
from apps.events.tests.factories import WebhookDeliveryFactory, WebhookEndpointFactory

pytestmark = pytest.mark.django_db(transaction=True)


def due_deliveries(receiver, count):
    endpoint = WebhookEndpointFactory(url=receiver.url)
    from django.utils import timezone

    return [
        WebhookDeliveryFactory(event__app=endpoint.app, endpoint=endpoint, next_attempt_at=timezone.now())
        for _ in range(count)
    ]


def test_a_batch_delivers_every_due_delivery_once_and_audits_each(receiver):
    deliveries = due_deliveries(receiver, 5)
    ids = [d.pk for d in deliveries]
    assert webhook_deliveries_attempt(delivery_ids=ids) == 5
    assert len(receiver.requests) == 5
    assert set(WebhookDelivery.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"delivered"}
    assert WebhookDeliveryTransition.objects.filter(delivery_id__in=ids, target="delivered").count() == 5
    # a second run of the same batch (a duplicated task) sends nothing more
    assert webhook_deliveries_attempt(delivery_ids=ids) == 0
    assert len(receiver.requests) == 5


def test_a_batch_with_failures_records_each_failure_with_its_backoff(receiver):
    deliveries = due_deliveries(receiver, 3)
    receiver.status = 503
    webhook_deliveries_attempt(delivery_ids=[d.pk for d in deliveries])
    rows = WebhookDelivery.objects.filter(pk__in=[d.pk for d in deliveries])
    assert {(r.status, r.attempts, r.last_status_code) for r in rows} == {(WebhookDeliveryStatus.FAILING, 1, 503)}


def test_the_sweep_hands_out_batches(receiver, celery_eager):
    deliveries = due_deliveries(receiver, SEND_BATCH_SIZE + 3)
    assert webhook_deliveries_sweep() == SEND_BATCH_SIZE + 3
    assert len(receiver.requests) == SEND_BATCH_SIZE + 3
    assert (
        WebhookDelivery.objects.filter(
            pk__in=[d.pk for d in deliveries], status=WebhookDeliveryStatus.DELIVERED
        ).count()
        == SEND_BATCH_SIZE + 3
    )
