"""Provider notifications: verified, applied once, and never trusted for a different amount."""

import threading
from urllib.parse import parse_qsl, urlencode

import pytest
import requests

from apps.events.models import Event
from apps.orders.models import OrderStatus
from apps.payments.models import Charge, ChargeException, ChargeStatus, ChargeTransition
from apps.sandbox import alipay_protocol
from tests.support import charge_payload

pytestmark = pytest.mark.usefixtures("celery_eager")


@pytest.fixture
def paid_notification(api, merchant, sandbox_alipay, receiver, settings, live_server):
    """A charge paid on the sandbox, with Alipay's notification captured before paysys sees it."""
    account, sandbox_app = sandbox_alipay
    settings.PAYSYS_PUBLIC_URL = receiver.url.rsplit("/", 1)[0]  # the notify_url given to Alipay: the receiver
    response = api.post("/v1/charges", charge_payload(merchant, order_no="notify0001", amount=1234))
    assert response.status_code == 200, response.content
    charge = response.json()
    pay = requests.post(charge["credential"]["alipay_qr"], data={"result": "success"}, timeout=10)
    assert pay.status_code == 200
    captured = receiver.wait_for(lambda r: b"out_trade_no" in r.body)[0]
    return {
        "charge_id": charge["id"],
        "body": captured.body,
        "url": f"{live_server.url}/notify/alipay/{account.pk}/",
        "sandbox_app": sandbox_app,
    }


def notify(notification, body: bytes | None = None) -> requests.Response:
    return requests.post(
        notification["url"],
        data=body if body is not None else notification["body"],
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )


def resigned(notification, **changes) -> bytes:
    """The captured notification with fields changed and signed again with the sandbox's Alipay key."""
    fields = dict(parse_qsl(notification["body"].decode()))
    fields.pop("sign")
    fields.pop("sign_type")
    fields.update(changes)
    form = alipay_protocol.notification_form(fields, notification["sandbox_app"].app.alipay_private_key_pem)
    return urlencode(form).encode()


def charge_state(public_id):
    charge = Charge.objects.select_related("order").get(public_id=public_id)
    return charge.status, charge.order.status, charge.exception


def test_a_verified_notification_pays_the_charge_once(paid_notification):
    response = notify(paid_notification)
    assert (response.status_code, response.content) == (200, b"success")
    charge = Charge.objects.get(public_id=paid_notification["charge_id"])
    assert charge_state(charge.public_id) == (ChargeStatus.SUCCEEDED, OrderStatus.PAID, "")
    fields = dict(parse_qsl(paid_notification["body"].decode()))
    assert charge.transaction_no == fields["trade_no"]
    assert charge.paid_at is not None
    event = Event.objects.get()
    assert event.type == "charge.succeeded"
    assert event.data["object"]["id"] == charge.public_id
    assert event.data["object"]["paid"] is True


def test_a_notification_with_a_bad_signature_is_rejected(paid_notification):
    tampered = paid_notification["body"].replace(b"total_amount=12.34", b"total_amount=0.01")
    assert tampered != paid_notification["body"]
    response = notify(paid_notification, tampered)
    assert (response.status_code, response.content) == (400, b"fail")
    assert charge_state(paid_notification["charge_id"]) == (ChargeStatus.PENDING, OrderStatus.CREATED, "")
    assert Event.objects.count() == 0


def test_a_notification_signed_by_someone_else_is_rejected(paid_notification):
    from apps.core import crypto

    fields = dict(parse_qsl(paid_notification["body"].decode()))
    fields.pop("sign"), fields.pop("sign_type")
    forged = alipay_protocol.notification_form(fields, crypto.private_key_pem(crypto.rsa_generate()))
    response = notify(paid_notification, urlencode(forged).encode())
    assert response.status_code == 400
    assert charge_state(paid_notification["charge_id"]) == (ChargeStatus.PENDING, OrderStatus.CREATED, "")


def test_a_duplicate_notification_changes_nothing(paid_notification):
    assert notify(paid_notification).content == b"success"
    charge = Charge.objects.get(public_id=paid_notification["charge_id"])
    before = (charge.paid_at, charge.transaction_no, ChargeTransition.objects.filter(charge=charge).count())
    again = notify(paid_notification)
    assert (again.status_code, again.content) == (200, b"success")
    charge = Charge.objects.get(public_id=paid_notification["charge_id"])
    after = (charge.paid_at, charge.transaction_no, ChargeTransition.objects.filter(charge=charge).count())
    assert after == before
    assert Event.objects.count() == 1


def test_a_notification_with_another_amount_flags_the_charge_and_pays_nothing(paid_notification):
    response = notify(paid_notification, resigned(paid_notification, total_amount="12.35"))
    assert response.content == b"success"
    status, order_status, exception = charge_state(paid_notification["charge_id"])
    assert (status, order_status, exception) == (
        ChargeStatus.PENDING,
        OrderStatus.CREATED,
        ChargeException.AMOUNT_MISMATCH,
    )
    charge = Charge.objects.get(public_id=paid_notification["charge_id"])
    assert charge.exception_detail["provider_amount"] == 1235
    assert charge.exception_detail["charge_amount"] == 1234
    assert charge.paid_at is None
    assert Event.objects.count() == 0


def test_two_concurrent_notifications_make_one_transition_and_one_event(paid_notification):
    barrier = threading.Barrier(2)
    answers = []

    def send():
        barrier.wait()
        answers.append(notify(paid_notification))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [(a.status_code, a.content) for a in answers] == [(200, b"success"), (200, b"success")]
    charge = Charge.objects.get(public_id=paid_notification["charge_id"])
    assert charge.status == ChargeStatus.SUCCEEDED
    assert ChargeTransition.objects.filter(charge=charge, target=ChargeStatus.SUCCEEDED).count() == 1
    assert Event.objects.filter(type="charge.succeeded").count() == 1


def test_a_notification_for_an_unknown_charge_is_not_acknowledged(paid_notification):
    response = notify(paid_notification, resigned(paid_notification, out_trade_no="ch_unknown000000000000000"))
    assert response.status_code == 404 or response.content != b"success"
    assert Event.objects.count() == 0


def test_a_query_with_the_charge_amount_settles_a_charge_held_for_another_amount(paid_notification):
    from django.core.management import call_command

    from apps.payments.queries import charge_query

    notify(paid_notification, resigned(paid_notification, total_amount="12.35"))
    charge = Charge.objects.get(public_id=paid_notification["charge_id"])
    assert charge.exception == ChargeException.AMOUNT_MISMATCH

    charge_query(charge_id=charge.pk)  # the sandbox's own record: 12.34, the charge's amount

    assert charge_state(charge.public_id) == (ChargeStatus.SUCCEEDED, OrderStatus.PAID, "")
    detail = Charge.objects.get(pk=charge.pk).exception_detail
    assert (detail["resolution"], detail["provider_amount"]) == ("provider_confirmed_amount", 1235)  # history kept
    assert Event.objects.filter(type="charge.succeeded").count() == 1
    call_command("ledger_check")


def test_a_query_reporting_another_amount_holds_the_charge_and_stops_asking(paid_notification):
    from decimal import Decimal

    from apps.payments.queries import charge_query
    from apps.sandbox.models import AlipayTrade

    AlipayTrade.objects.filter(out_trade_no=paid_notification["charge_id"]).update(total_amount=Decimal("12.35"))
    charge = Charge.objects.get(public_id=paid_notification["charge_id"])
    assert charge.next_query_at is not None

    charge_query(charge_id=charge.pk)

    charge = Charge.objects.get(pk=charge.pk)
    assert (charge.status, charge.exception, charge.next_query_at) == (
        ChargeStatus.PENDING,
        ChargeException.AMOUNT_MISMATCH,
        None,  # out of the active query's sweep: the console settles it
    )
    assert charge.exception_detail["provider_amount"] == 1235
    assert Event.objects.count() == 0


@pytest.mark.parametrize("accept", [True, False], ids=["accept-as-paid", "refund"])
def test_the_console_resolves_an_amount_mismatch_from_the_providers_record(paid_notification, accept, admin_client):
    from django.core.management import call_command
    from django.urls import reverse

    from apps.ledger.models import JournalEntry
    from apps.payments.models import Refund, RefundStatus

    # the sandbox itself received 12.34; a notification claiming 12.35 holds the charge
    notify(paid_notification, resigned(paid_notification, total_amount="12.35"))
    charge = Charge.objects.get(public_id=paid_notification["charge_id"])
    assert charge.exception == ChargeException.AMOUNT_MISMATCH
    action = "accept_amount_mismatch" if accept else "refund_amount_mismatch"
    response = admin_client.post(
        reverse("admin:payments_charge_changelist"), {"action": action, "_selected_action": [charge.pk]}
    )
    assert response.status_code == 302
    charge = Charge.objects.select_related("order").get(pk=charge.pk)
    assert (charge.status, charge.exception) == (ChargeStatus.SUCCEEDED, "")
    assert charge.amount_received.amount == charge.amount.amount  # the provider's own record: 12.34
    assert charge.exception_detail["resolution"] == ("accepted" if accept else "refunded")
    assert JournalEntry.objects.filter(event_type="payment.succeeded", reference=charge.public_id).count() == 1
    if accept:
        assert charge.order.status == OrderStatus.PAID
        assert not Refund.objects.filter(charge=charge).exists()
    else:
        assert charge.order.status == OrderStatus.CREATED
        refund = Refund.objects.get(charge=charge)
        assert (refund.status, refund.automatic, refund.amount) == (RefundStatus.SUCCEEDED, "amount_mismatch",
                                                                    charge.amount)  # fmt: skip
    call_command("ledger_check")


def test_a_charge_not_held_cannot_be_resolved(paid_notification):
    from apps.core.errors import PaysysError
    from apps.payments.services import charge_resolve_amount_mismatch

    charge = Charge.objects.get(public_id=paid_notification["charge_id"])
    with pytest.raises(PaysysError, match="not held"):
        charge_resolve_amount_mismatch(charge_id=charge.pk, accept=True, by="test")
    assert Charge.objects.get(pk=charge.pk).status == ChargeStatus.PENDING


def test_the_console_refunds_a_payment_taken_after_the_charge_closed(
    api, merchant, sandbox_alipay, receiver, settings, live_server, admin_client
):
    """An unscanned Alipay QR closed at expiry stays payable at Alipay: a payer who pays it then is
    held `paid_after_close`, and the console gives the money back."""
    from django.core.management import call_command
    from django.urls import reverse

    from apps.ledger.models import JournalEntry
    from apps.payments.models import Refund, RefundStatus
    from apps.payments.queries import charge_expire

    account, _ = sandbox_alipay
    settings.PAYSYS_PUBLIC_URL = receiver.url.rsplit("/", 1)[0]  # notifications captured first
    created = api.post("/v1/charges", charge_payload(merchant, order_no="late0001", amount=1234)).json()
    charge = Charge.objects.get(public_id=created["id"])
    charge_expire(charge_id=charge.pk)  # Alipay answers TRADE_NOT_EXIST for an unscanned QR
    assert charge_state(charge.public_id) == (ChargeStatus.CLOSED, OrderStatus.CLOSED, "")

    assert requests.post(created["credential"]["alipay_qr"], data={"result": "success"}, timeout=10).ok
    body = receiver.wait_for(lambda r: b"out_trade_no" in r.body)[0].body
    url = f"{live_server.url}/notify/alipay/{account.pk}/"
    assert notify({"url": url, "body": body}).content == b"success"
    assert charge_state(charge.public_id) == (ChargeStatus.CLOSED, OrderStatus.CLOSED, ChargeException.PAID_AFTER_CLOSE)
    assert not JournalEntry.objects.filter(reference=charge.public_id).exists()  # held: no money moved yet

    response = admin_client.post(
        reverse("admin:payments_charge_changelist"),
        {"action": "refund_paid_after_close", "_selected_action": [charge.pk]},
    )

    assert response.status_code == 302
    assert charge_state(charge.public_id) == (ChargeStatus.SUCCEEDED, OrderStatus.CLOSED, "")
    refund = Refund.objects.get(charge=charge)
    assert (refund.status, refund.automatic, refund.amount) == (RefundStatus.SUCCEEDED, "paid_after_close",
                                                                charge.amount)  # fmt: skip
    assert JournalEntry.objects.filter(event_type="payment.succeeded", reference=charge.public_id).count() == 1
    assert Charge.objects.get(pk=charge.pk).exception_detail["resolution"] == "refunded"
    call_command("ledger_check")


def test_a_closed_charge_not_paid_cannot_be_refunded_as_paid_after_close(api, merchant, sandbox_alipay):
    from apps.core.errors import PaysysError
    from apps.payments.queries import charge_expire
    from apps.payments.services import charge_refund_paid_after_close

    created = api.post("/v1/charges", charge_payload(merchant, order_no="late0002", amount=1234)).json()
    charge = Charge.objects.get(public_id=created["id"])
    charge_expire(charge_id=charge.pk)

    with pytest.raises(PaysysError, match="not held"):
        charge_refund_paid_after_close(charge_id=charge.pk, by="test")
    assert charge_state(charge.public_id) == (ChargeStatus.CLOSED, OrderStatus.CLOSED, "")
