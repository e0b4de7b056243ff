"""Refunds, reverse, active query, expiry and duplicate payments through the API and the sandbox."""

import threading
from datetime import timedelta

import pytest
import requests
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from apps.events.models import Event
from apps.ledger.models import JournalEntry
from apps.orders.models import Order, OrderStatus
from apps.payments import queries
from apps.payments.models import Charge, ChargeException, ChargeStatus, Refund, RefundStatus
from tests.support import MerchantClient, assert_error, charge_payload

pytestmark = pytest.mark.usefixtures("celery_eager")


def create(api, merchant, order_no, amount=10000):
    response = api.post("/v1/charges", charge_payload(merchant, order_no=order_no, amount=amount))
    assert response.status_code == 200, response.content
    return response.json()


def pay(charge):
    answer = requests.post(charge["credential"]["alipay_qr"], data={"result": "success"}, timeout=10)
    assert answer.status_code == 200


@pytest.fixture
def paid(api, merchant, sandbox_alipay):
    charge = create(api, merchant, "refund0001")
    pay(charge)
    assert Charge.objects.get(public_id=charge["id"]).status == ChargeStatus.SUCCEEDED
    return charge


def refund(api, charge_id, **body):
    return api.post(f"/v1/charges/{charge_id}/refunds", body)


def order_status(charge_id):
    return Order.objects.get(charges__public_id=charge_id).status


def test_a_full_refund_without_amount_refunds_everything(api, paid):
    response = refund(api, paid["id"], description="returned")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["object"], body["amount"], body["status"], body["succeed"]) == ("refund", 10000, "succeeded", True)
    assert body["charge"] == paid["id"] and body["time_succeed"] > 0
    charge = api.get(f"/v1/charges/{paid['id']}").json()
    assert (charge["refunded"], charge["amount_refunded"]) == (True, 10000)
    assert [r["id"] for r in charge["refunds"]["data"]] == [body["id"]]
    assert order_status(paid["id"]) == OrderStatus.REFUNDED
    assert Event.objects.filter(type="refund.succeeded").count() == 1


def test_partial_refunds_add_up_and_never_exceed_the_charge(api, paid):
    assert refund(api, paid["id"], amount=3000).json()["status"] == "succeeded"
    assert order_status(paid["id"]) == OrderStatus.PARTIALLY_REFUNDED
    assert refund(api, paid["id"], amount=5000).json()["status"] == "succeeded"
    over = refund(api, paid["id"], amount=2001)
    assert_error(over, 400, code="amount_exceeds_refundable", param="amount")
    assert Refund.objects.count() == 2
    assert refund(api, paid["id"], amount=2000).json()["status"] == "succeeded"
    assert order_status(paid["id"]) == OrderStatus.REFUNDED
    again = refund(api, paid["id"])
    assert_error(again, 400, code="charge_refunded")
    assert Refund.objects.count() == 3
    assert Charge.objects.get(public_id=paid["id"]).amount_refunded.amount == 100
    assert JournalEntry.objects.filter(event_type="refund.succeeded").count() == 3
    call_command("ledger_check")  # raises SystemExit on any violated invariant


def test_concurrent_refunds_never_refund_more_than_was_paid(merchant, paid):
    barrier = threading.Barrier(8)
    statuses = []

    def send(i):
        client = MerchantClient(Client(), merchant)
        barrier.wait()
        body = {"amount": 3000, "description": f"request {i}"}  # distinct requests, distinct signatures
        statuses.append(client.post(f"/v1/charges/{paid['id']}/refunds", body).status_code)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(200) == 3
    assert set(statuses) == {200, 400}
    assert Refund.objects.filter(status=RefundStatus.SUCCEEDED).count() == 3
    assert Charge.objects.get(public_id=paid["id"]).amount_refunded.amount == 90


@pytest.mark.parametrize("amount", [0, -5, "10", 1.5], ids=["zero", "negative", "string", "fraction"])
def test_a_bad_refund_amount_is_refused_and_writes_nothing(api, paid, amount):
    assert_error(refund(api, paid["id"], amount=amount), 400, param="amount")
    assert Refund.objects.count() == 0
    assert not JournalEntry.objects.filter(event_type="refund.succeeded").exists()


def test_an_unpaid_charge_cannot_be_refunded(api, merchant, sandbox_alipay):
    charge = create(api, merchant, "refund0002")
    assert_error(refund(api, charge["id"], amount=100), 400, code="charge_not_paid")
    assert Refund.objects.count() == 0
    assert Event.objects.count() == 0
    assert JournalEntry.objects.count() == 0


def test_refunds_list_and_retrieve(api, paid):
    ids = [refund(api, paid["id"], amount=1000).json()["id"] for _ in range(3)]
    page = api.get(f"/v1/charges/{paid['id']}/refunds?limit=2").json()
    assert (page["object"], page["url"], page["has_more"]) == ("list", f"/v1/charges/{paid['id']}/refunds", True)
    assert [r["id"] for r in page["data"]] == ids[::-1][:2]
    rest = api.get(f"/v1/charges/{paid['id']}/refunds?limit=2&starting_after={ids[1]}").json()
    assert [r["id"] for r in rest["data"]] == [ids[0]]
    one = api.get(f"/v1/charges/{paid['id']}/refunds/{ids[0]}")
    assert one.json()["id"] == ids[0]
    assert_error(api.get(f"/v1/charges/{paid['id']}/refunds/re_nosuchrefund00000000000"), 404, param="id")


def test_reverse_closes_an_unpaid_charge_and_its_order(api, merchant, sandbox_alipay):
    charge = create(api, merchant, "reverse001")
    requests.get(charge["credential"]["alipay_qr"], timeout=10)  # scanned: the trade exists at Alipay
    response = api.post(f"/v1/charges/{charge['id']}/reverse", {})
    assert response.status_code == 200, response.content
    assert (response.json()["reversed"], response.json()["paid"]) == (True, False)
    assert Charge.objects.get(public_id=charge["id"]).status == ChargeStatus.CLOSED
    assert order_status(charge["id"]) == OrderStatus.CLOSED


def test_a_paid_charge_cannot_be_reversed(api, paid):
    assert_error(api.post(f"/v1/charges/{paid['id']}/reverse", {}), 400, code="charge_paid")
    assert Charge.objects.get(public_id=paid["id"]).status == ChargeStatus.SUCCEEDED
    assert order_status(paid["id"]) == OrderStatus.PAID


def test_the_active_query_settles_a_charge_whose_notification_was_lost(api, merchant, sandbox_alipay, settings,
                                                                        receiver):  # fmt: skip
    settings.PAYSYS_PUBLIC_URL = receiver.url.rsplit("/", 1)[0]  # notifications go elsewhere: lost to paysys
    charge = create(api, merchant, "query00001")
    pay(charge)
    assert Charge.objects.get(public_id=charge["id"]).status == ChargeStatus.PENDING
    queried = queries.charge_query(charge_id=Charge.objects.get(public_id=charge["id"]).pk)
    assert queried.status == ChargeStatus.SUCCEEDED
    assert order_status(charge["id"]) == OrderStatus.PAID
    assert Event.objects.filter(type="charge.succeeded").count() == 1


def test_an_unpaid_charge_still_open_is_queried_again_later(api, merchant, sandbox_alipay):
    charge = create(api, merchant, "query00002")
    pk = Charge.objects.get(public_id=charge["id"]).pk
    queries.charge_query(charge_id=pk)
    after = Charge.objects.get(pk=pk)
    assert (after.status, after.query_attempts) == (ChargeStatus.PENDING, 1)
    assert after.next_query_at > timezone.now() + timedelta(seconds=10)


def test_at_expiry_the_charge_closes_at_the_provider_then_locally(api, merchant, sandbox_alipay):
    charge = create(api, merchant, "expire0001")
    requests.get(charge["credential"]["alipay_qr"], timeout=10)
    Charge.objects.filter(public_id=charge["id"]).update(time_expire=timezone.now() - timedelta(seconds=1))
    closed = queries.charge_query(charge_id=Charge.objects.get(public_id=charge["id"]).pk)
    assert closed.status == ChargeStatus.CLOSED
    assert order_status(charge["id"]) == OrderStatus.CLOSED
    # the payer can no longer pay it
    late = requests.post(charge["credential"]["alipay_qr"], data={"result": "success"}, timeout=10)
    assert Charge.objects.get(public_id=charge["id"]).status == ChargeStatus.CLOSED
    assert late.status_code in (200, 400, 409)


def test_a_duplicate_payment_is_flagged_and_refunded_automatically(api, merchant, sandbox_alipay):
    first = create(api, merchant, "dup0000001")
    second = create(api, merchant, "dup0000001")
    pay(first)
    pay(second)
    duplicate = Charge.objects.get(public_id=second["id"])
    assert (duplicate.status, duplicate.exception) == (ChargeStatus.SUCCEEDED, ChargeException.DUPLICATE_PAYMENT)
    auto = Refund.objects.get(charge=duplicate)
    assert (auto.status, auto.automatic, auto.amount) == (RefundStatus.SUCCEEDED, "duplicate_payment", duplicate.amount)
    assert order_status(first["id"]) == OrderStatus.PAID


def test_the_compensation_sweep_counts_and_alerts_on_what_is_stuck(api, merchant, sandbox_alipay, caplog):
    from apps.payments.tasks import attention_sweep

    charge = create(api, merchant, "stuck00001")
    Charge.objects.filter(public_id=charge["id"]).update(time_expire=timezone.now() - timedelta(hours=1))
    with caplog.at_level("ERROR"):
        counts = attention_sweep()
    assert counts["charges open past expiry"] == 1
    assert counts["refunds failed"] == 0
    assert "charges open past expiry: 1" in caplog.text
