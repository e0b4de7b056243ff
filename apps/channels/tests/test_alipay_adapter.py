"""AlipayAdapter against the Alipay sandbox over HTTP (live server), as paysys reaches a provider."""

import datetime as dt
import http.server
import io
import json
import socket
import threading
from urllib.parse import parse_qsl, urlencode

import pytest
import requests
from django.core.management import call_command
from django.utils import timezone
from moneyed import Money

from apps.channels.adapters import adapter_class
from apps.channels.adapters.alipay import AlipayAdapter
from apps.channels.adapters.base import (
    AccountConfig,
    ChannelRejected,
    ChannelResponseInvalid,
    ChannelTimeout,
    ChannelUnavailable,
    NotificationInvalid,
    PaymentRequest,
    PaymentStatus,
    ProviderReply,
)
from apps.core import crypto

pytestmark = pytest.mark.django_db(transaction=True)

SHANGHAI = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture(autouse=True)
def celery_eager():
    """The sandbox sends notifications from a task enqueued on commit: run it in-process."""
    from paysys.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


@pytest.fixture
def credentials(transactional_db) -> dict:
    out = io.StringIO()
    call_command("sandbox_account_create", "--provider", "alipay", "--json", stdout=out)
    document = json.loads(out.getvalue())
    return {k: document[k] for k in ("app_id", "app_private_key", "alipay_public_key")}


def make_adapter(base_url: str, credentials: dict, *, account_id: int = 1, timeout: float = 5.0) -> AlipayAdapter:
    return AlipayAdapter(
        AccountConfig(
            id=account_id,
            provider="alipay",
            base_url=base_url,
            credentials=credentials,
            livemode=False,
            timeout_seconds=timeout,
        )
    )


@pytest.fixture
def gateway(live_server) -> str:
    return f"{live_server.url}/sandbox/alipay/gateway.do"


@pytest.fixture
def adapter(gateway, credentials) -> AlipayAdapter:
    return make_adapter(gateway, credentials)


class Receiver:
    """paysys's notify URL stand-in: records raw form bodies and answers `success`."""

    def __init__(self):
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                receiver.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(200)
                self.send_header("Content-Length", "7")
                self.end_headers()
                self.wfile.write(b"success")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify/alipay"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def payment(out_trade_no: str, notify_url: str = "http://127.0.0.1:9/notify", amount: str = "12.34") -> PaymentRequest:
    return PaymentRequest(
        out_trade_no=out_trade_no,
        method="alipay_qr",
        amount=Money(amount, "CNY"),
        subject="Order 订单",
        body="",
        client_ip="127.0.0.1",
        time_expire=timezone.now() + dt.timedelta(hours=2),
        notify_url=notify_url,
    )


def test_capabilities_and_registry():
    assert adapter_class("alipay") is AlipayAdapter
    assert AlipayAdapter.provider == "alipay"
    assert AlipayAdapter.methods == frozenset({"alipay_qr"})
    assert AlipayAdapter.currencies == frozenset({"CNY"})
    assert AlipayAdapter.refunds_notify is False


def test_create_payment_returns_the_sandbox_pay_page_url(adapter, live_server):
    created = adapter.create_payment(payment("ch_create"))

    assert isinstance(created.credential, str)
    assert created.credential.startswith(f"{live_server.url}/sandbox/alipay/pay/")
    assert created.transaction_no is None
    # The same order and amount again gives the same code; another amount is refused.
    assert adapter.create_payment(payment("ch_create")).credential == created.credential
    with pytest.raises(ChannelRejected) as excinfo:
        adapter.create_payment(payment("ch_create", amount="12.35"))
    assert excinfo.value.code == "ACQ.CONTEXT_INCONSISTENT"
    assert excinfo.value.message == "交易信息被篡改"


def test_query_follows_the_payer_not_found_then_pending_then_succeeded(adapter):
    qr_code = adapter.create_payment(payment("ch_flow")).credential

    before_scan = adapter.query_payment(out_trade_no="ch_flow", currency="CNY")
    requests.get(qr_code, timeout=5)
    after_scan = adapter.query_payment(out_trade_no="ch_flow", currency="CNY")
    paid = requests.post(qr_code, data={"result": "success"}, headers={"Accept": "application/json"}, timeout=5)
    after_pay = adapter.query_payment(out_trade_no="ch_flow", currency="CNY")

    assert (before_scan.status, before_scan.transaction_no, before_scan.amount) == (PaymentStatus.NOT_FOUND, None, None)
    assert after_scan.status == PaymentStatus.PENDING
    trade_no = paid.json()["trade_no"]
    assert after_scan.transaction_no == trade_no
    assert after_pay.status == PaymentStatus.SUCCEEDED
    assert after_pay.out_trade_no == "ch_flow"
    assert after_pay.transaction_no == trade_no and len(trade_no) == 28
    assert after_pay.amount == Money("12.34", "CNY")
    expected_paid_at = dt.datetime.strptime(paid.json()["paid_at"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI)
    assert after_pay.paid_at == expected_paid_at
    assert abs(after_pay.paid_at - timezone.now()) < dt.timedelta(minutes=1)
    assert after_pay.raw["trade_status"] == "TRADE_SUCCESS"


def test_close_pending_closes_and_close_paid_is_rejected(adapter):
    pending_qr = adapter.create_payment(payment("ch_close_1")).credential
    paid_qr = adapter.create_payment(payment("ch_close_2")).credential
    requests.get(pending_qr, timeout=5)
    requests.post(paid_qr, data={"result": "success"}, timeout=5)

    assert adapter.close_payment(out_trade_no="ch_close_1") is None
    with pytest.raises(ChannelRejected) as excinfo:
        adapter.close_payment(out_trade_no="ch_close_2")

    assert excinfo.value.code == "ACQ.TRADE_STATUS_ERROR"
    assert adapter.query_payment(out_trade_no="ch_close_1", currency="CNY").status == PaymentStatus.CLOSED
    assert adapter.query_payment(out_trade_no="ch_close_2", currency="CNY").status == PaymentStatus.SUCCEEDED


def test_close_before_the_scan_is_a_success_and_fail_closes(adapter):
    qr_code = adapter.create_payment(payment("ch_fail")).credential

    assert adapter.close_payment(out_trade_no="ch_fail") is None  # ACQ.TRADE_NOT_EXIST: nothing to close
    requests.post(qr_code, data={"result": "fail"}, timeout=5)

    result = adapter.query_payment(out_trade_no="ch_fail", currency="CNY")
    assert result.status == PaymentStatus.CLOSED
    assert result.amount is None and result.paid_at is None


def test_a_response_signed_by_another_key_is_invalid(gateway, credentials):
    other = crypto.public_key_pem(crypto.rsa_generate())
    adapter = make_adapter(gateway, {**credentials, "alipay_public_key": other}, account_id=2)

    with pytest.raises(ChannelResponseInvalid) as excinfo:
        adapter.query_payment(out_trade_no="ch_any", currency="CNY")

    assert excinfo.value.code == "invalid_signature"


def test_a_request_signed_with_the_wrong_app_key_is_rejected_by_the_sandbox(gateway, credentials):
    wrong = crypto.private_key_pem(crypto.rsa_generate())
    adapter = make_adapter(gateway, {**credentials, "app_private_key": wrong}, account_id=3)

    with pytest.raises(ChannelRejected) as excinfo:
        adapter.create_payment(payment("ch_wrong_key"))

    assert excinfo.value.code == "isv.invalid-signature"
    assert excinfo.value.reached_provider is True


def test_an_unknown_app_id_gets_an_unsigned_error_translated_to_rejected(gateway, credentials):
    adapter = make_adapter(gateway, {**credentials, "app_id": "2021000000000000"}, account_id=4)

    with pytest.raises(ChannelRejected) as excinfo:
        adapter.query_payment(out_trade_no="ch_any", currency="CNY")

    assert excinfo.value.code == "isv.invalid-app-id"


def test_notification_from_the_sandbox_verifies_and_states_the_payment(adapter, receiver):
    qr_code = adapter.create_payment(payment("ch_notify", notify_url=receiver.url)).credential
    paid = requests.post(qr_code, data={"result": "success"}, headers={"Accept": "application/json"}, timeout=5)

    assert len(receiver.bodies) == 1
    result = adapter.parse_notification(
        headers={"Content-Type": "application/x-www-form-urlencoded"}, body=receiver.bodies[0], currency="CNY"
    )

    assert result.out_trade_no == "ch_notify"
    assert result.status == PaymentStatus.SUCCEEDED
    assert result.transaction_no == paid.json()["trade_no"]
    assert result.amount == Money("12.34", "CNY")
    expected_paid_at = dt.datetime.strptime(paid.json()["paid_at"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI)
    assert result.paid_at == expected_paid_at
    assert result.raw["notify_type"] == "trade_status_sync"
    assert result.raw["subject"] == "Order 订单"


def test_a_closed_trade_is_notified_as_closed(adapter, receiver):
    qr_code = adapter.create_payment(payment("ch_notify_closed", notify_url=receiver.url)).credential
    requests.post(qr_code, data={"result": "fail"}, timeout=5)

    result = adapter.parse_notification(headers={}, body=receiver.bodies[0])

    assert (result.status, result.paid_at, result.amount) == (PaymentStatus.CLOSED, None, Money("12.34", "CNY"))


@pytest.mark.parametrize(
    "change",
    [
        {"total_amount": "0.01"},
        {"trade_status": "TRADE_CLOSED"},
        {"sign": "AAAA"},
        {"sign": None},
        {"sign_type": "RSA"},
        {"extra_field": "x"},
    ],
    ids=["amount", "status", "bad-sign", "no-sign", "sign-type", "added-field"],
)
def test_a_tampered_notification_is_invalid(adapter, receiver, change):
    qr_code = adapter.create_payment(payment("ch_tamper", notify_url=receiver.url)).credential
    requests.post(qr_code, data={"result": "success"}, timeout=5)
    fields = dict(parse_qsl(receiver.bodies[0].decode(), keep_blank_values=True))
    for key, value in change.items():
        if value is None:
            fields.pop(key)
        else:
            fields[key] = value

    with pytest.raises(NotificationInvalid):
        adapter.parse_notification(headers={}, body=urlencode(fields).encode())


def test_a_notification_for_another_app_is_invalid(gateway, credentials, receiver):
    adapter = make_adapter(gateway, credentials)
    other = make_adapter(gateway, {**credentials, "app_id": "2021000000000009"}, account_id=5)
    qr_code = adapter.create_payment(payment("ch_other_app", notify_url=receiver.url)).credential
    requests.post(qr_code, data={"result": "success"}, timeout=5)

    with pytest.raises(NotificationInvalid, match="another app_id"):
        other.parse_notification(headers={}, body=receiver.bodies[0])


def test_notification_replies():
    assert AlipayAdapter.notification_ack(None) == ProviderReply(200, b"success")
    assert AlipayAdapter.notification_nack(None) == ProviderReply(400, b"fail")


def test_a_gateway_refusing_connections_is_unavailable(credentials):
    adapter = make_adapter("http://127.0.0.1:9/sandbox/alipay/gateway.do", credentials, account_id=6)

    with pytest.raises(ChannelUnavailable) as excinfo:
        adapter.create_payment(payment("ch_refused"))

    assert excinfo.value.code == "connection_failed"
    assert excinfo.value.reached_provider is False


def test_a_gateway_that_never_answers_is_a_timeout(credentials):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections into the backlog, never answers
    try:
        port = listener.getsockname()[1]
        adapter = make_adapter(f"http://127.0.0.1:{port}/gateway.do", credentials, account_id=7, timeout=0.5)
        with pytest.raises(ChannelTimeout) as excinfo:
            adapter.query_payment(out_trade_no="ch_slow", currency="CNY")
    finally:
        listener.close()
    assert excinfo.value.code == "timeout"


@pytest.mark.parametrize("status, body", [(502, b"bad gateway"), (200, b"<html>not json</html>")], ids=["5xx", "html"])
def test_a_broken_gateway_answer_is_translated(credentials, status, body):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/gateway.do"
        adapter = make_adapter(url, credentials, account_id=8)
        expected = ChannelUnavailable if status >= 500 else ChannelResponseInvalid
        with pytest.raises(expected) as excinfo:
            adapter.query_payment(out_trade_no="ch_broken", currency="CNY")
    finally:
        server.shutdown()
        server.server_close()
    assert excinfo.value.code == ("http_502" if status >= 500 else "unreadable_response")


def test_unusable_credentials_are_a_configuration_failure(gateway):
    adapter = make_adapter(gateway, {"app_id": "2021000000000001"}, account_id=9)

    with pytest.raises(ChannelUnavailable) as excinfo:
        adapter.query_payment(out_trade_no="x", currency="CNY")

    assert (excinfo.value.code, excinfo.value.reached_provider) == ("account_misconfigured", False)
