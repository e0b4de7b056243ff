import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from apps.events.models import WebhookDelivery, WebhookDeliveryStatus
from apps.events.services import webhook_deliveries_claim_due
from apps.events.tasks import webhook_deliveries_sweep
from apps.events.tests.factories import AppFactory, EventFactory, WebhookDeliveryFactory, WebhookEndpointFactory


def _ago(seconds: int):
    return timezone.now() - timedelta(seconds=seconds)


def _later(seconds: int):
    return timezone.now() + timedelta(seconds=seconds)


@pytest.mark.django_db
def test_the_claim_takes_only_due_open_deliveries_that_no_task_is_queued_for():
    due_pending = WebhookDeliveryFactory(next_attempt_at=_ago(5))
    due_failing = WebhookDeliveryFactory(status=WebhookDeliveryStatus.FAILING, next_attempt_at=_ago(1))
    lease_expired = WebhookDeliveryFactory(next_attempt_at=_ago(1), queued_until=_ago(1))
    WebhookDeliveryFactory(status=WebhookDeliveryStatus.FAILING, next_attempt_at=_later(30))
    WebhookDeliveryFactory(next_attempt_at=_ago(5), queued_until=_later(30))
    WebhookDeliveryFactory(status=WebhookDeliveryStatus.DELIVERED, next_attempt_at=_ago(5))
    WebhookDeliveryFactory(status=WebhookDeliveryStatus.DEAD, next_attempt_at=_ago(5))

    claimed = webhook_deliveries_claim_due(limit=10)

    assert claimed == [due_pending.pk, due_failing.pk, lease_expired.pk]
    assert webhook_deliveries_claim_due(limit=10) == []
    assert all(d.queued_until > timezone.now() for d in WebhookDelivery.objects.filter(pk__in=claimed))


@pytest.mark.django_db
def test_the_claim_takes_at_most_limit_oldest_due_first():
    newest = WebhookDeliveryFactory(next_attempt_at=_ago(1))
    oldest = WebhookDeliveryFactory(next_attempt_at=_ago(30))
    middle = WebhookDeliveryFactory(next_attempt_at=_ago(10))

    assert webhook_deliveries_claim_due(limit=2) == [oldest.pk, middle.pk]
    assert webhook_deliveries_claim_due(limit=2) == [newest.pk]


def _due_deliveries(count: int) -> set[int]:
    app = AppFactory()
    endpoints = [WebhookEndpointFactory(app=app) for _ in range(5)]
    event_count = count // len(endpoints)
    ids = set()
    for _ in range(event_count):
        event = EventFactory(app=app)
        for endpoint in endpoints:
            ids.add(WebhookDeliveryFactory(event=event, endpoint=endpoint, next_attempt_at=_ago(1)).pk)
    return ids


@pytest.mark.django_db(transaction=True)
def test_the_claim_skips_rows_locked_by_another_transaction_without_waiting():
    due = sorted(_due_deliveries(10))
    locked, free = due[:4], due[4:]
    result: dict = {}
    with transaction.atomic():
        list(WebhookDelivery.objects.select_for_update().filter(pk__in=locked))

        def other_sweep():
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SET lock_timeout = '2s'")
                result["claimed"] = webhook_deliveries_claim_due(limit=100)
            finally:
                connection.close()

        thread = threading.Thread(target=other_sweep)
        thread.start()
        thread.join(timeout=10)

    assert sorted(result["claimed"]) == free


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_sweeps_never_claim_the_same_delivery():
    due = _due_deliveries(300)
    start = threading.Barrier(2)
    claimed: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def sweep(slot: int):
        try:
            start.wait()
            while ids := webhook_deliveries_claim_due(limit=7):
                claimed[slot].extend(ids)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep, args=(slot,)) for slot in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    first, second = claimed
    assert len(first) + len(second) == len(due) == 300
    assert set(first) | set(second) == due
    assert set(first) & set(second) == set()


@pytest.mark.django_db(transaction=True)
def test_the_sweep_task_sends_due_deliveries_only(receiver, celery_eager):
    app = AppFactory()
    endpoint = WebhookEndpointFactory(app=app, url=receiver.url)
    due = WebhookDeliveryFactory(event=EventFactory(app=app), endpoint=endpoint, next_attempt_at=_ago(1))
    not_due = WebhookDeliveryFactory(
        event=EventFactory(app=app), endpoint=endpoint, status=WebhookDeliveryStatus.FAILING,
        next_attempt_at=_later(60),
    )  # fmt: skip

    assert webhook_deliveries_sweep.run() == 1

    assert [r["body"] for r in receiver.requests] == [due.event.body.encode()]
    assert WebhookDelivery.objects.get(pk=due.pk).status == WebhookDeliveryStatus.DELIVERED
    assert WebhookDelivery.objects.get(pk=not_due.pk).attempts == 0
