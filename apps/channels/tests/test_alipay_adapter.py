"""AlipayAdapter against the Alipay sandbox over HTTP (live server), as paysys reaches a provider."""

import contextlib
import dataclasses
import datetime as dt
import http.server
import io
import json
import logging
import re
import socket
import threading
import zipfile
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import pytest
import requests
from alipay import AliPay
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from moneyed import Money

from apps.channels.adapters import adapter_class
from apps.channels.adapters.alipay import AlipayAdapter
from apps.channels.adapters.base import (
    AccountConfig,
    BillInvalid,
    BillLine,
    BillLineKind,
    BillNotReady,
    ChannelRejected,
    ChannelResponseInvalid,
    ChannelTimeout,
    ChannelUnavailable,
    NotificationInvalid,
    PaymentRequest,
    PaymentStatus,
    ProviderReply,
    RefundRequest,
    RefundStatus,
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
    assert AlipayAdapter.methods == frozenset({"alipay_qr", "alipay_wap", "alipay_pc_direct"})
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


def test_a_gateway_that_never_answers_is_a_timeout_and_is_not_asked_again(credentials):
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept_and_stay_silent():
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:  # the listener was closed
                return

    threading.Thread(target=accept_and_stay_silent, daemon=True).start()
    try:
        port = listener.getsockname()[1]
        adapter = make_adapter(f"http://127.0.0.1:{port}/gateway.do", credentials, account_id=7, timeout=0.5)
        with pytest.raises(ChannelTimeout) as excinfo:
            adapter.query_payment(out_trade_no="ch_slow", currency="CNY")
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        listener.close()
        for sock in accepted:
            sock.close()
    assert excinfo.value.code == "timeout"
    assert len(accepted) == 1  # the gateway may still be working on it: no second request


class ScriptedGateway:
    """A gateway in front of the sandbox that does, for its n-th request (counted over all its
    connections), the n-th of `script`, and forwards the requests beyond it to the sandbox:

    - "forward": forwards the request and answers with the sandbox's answer;
    - "close": closes the connection without an answer, as a gateway closes an idle kept-alive
      connection just as the next request arrives;
    - "close-and-refuse": the same, having stopped listening, so that new connections are refused;
    - "502": answers HTTP 502.
    """

    def __init__(self, upstream: str, script: list[str]):
        self.connections = 0
        self.requests = 0
        self.forwarded = 0
        self.sockets: list[socket.socket] = []
        gateway = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keeps connections alive between requests

            def setup(self):
                super().setup()
                gateway.connections += 1
                gateway.sockets.append(self.connection)

            def do_GET(self):
                gateway.requests += 1
                action = script[gateway.requests - 1] if gateway.requests <= len(script) else "forward"
                if action == "close-and-refuse":  # from a handler's thread: serve_forever's has stopped after it
                    self.server.shutdown()
                    self.server.server_close()
                if action in ("close", "close-and-refuse"):
                    self.close_connection = True
                    return
                if action == "502":
                    self.answer(502, "text/plain", b"bad gateway", {})
                    return
                answer = requests.get(f"{upstream}?{urlsplit(self.path).query}", timeout=5)
                gateway.forwarded += 1
                self.answer(answer.status_code, answer.headers["Content-Type"], answer.content, {})

            def answer(self, status: int, content_type: str, body: bytes, headers: dict):
                self.send_response(status)
                for name, value in {**headers, "Content-Type": content_type}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/gateway.do"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stops listening and closes the connections it still holds (a client's pool sees them
        closed), so nothing of it outlives the test."""
        self.server.shutdown()
        self.server.server_close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def scripted_gateway(gateway: str, *script: str):
    scripted = ScriptedGateway(gateway, list(script))
    try:
        yield scripted
    finally:
        scripted.stop()


def sandbox_trades(out_trade_no: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sandbox_alipaytrade WHERE out_trade_no = %s", [out_trade_no])
        return cursor.fetchone()[0]


def test_a_kept_alive_connection_closed_unanswered_is_tried_once_more_on_a_new_one(gateway, credentials):
    with scripted_gateway(gateway, "forward", "close") as scripted:
        adapter = make_adapter(scripted.url, credentials, account_id=10)
        first = adapter.create_payment(payment("ch_kept_alive_1"))
        second = adapter.create_payment(payment("ch_kept_alive_2"))  # its kept-alive connection is closed

    assert (scripted.connections, scripted.requests, scripted.forwarded) == (2, 3, 2)
    assert first.credential != second.credential
    assert requests.get(second.credential, timeout=5).status_code == 200  # the pay page of a real trade
    assert (sandbox_trades("ch_kept_alive_1"), sandbox_trades("ch_kept_alive_2")) == (1, 1)


@pytest.mark.parametrize(
    "script, asked",
    [(("close", "close"), 2), (("close-and-refuse",), 1), (("close", "502"), 2)],
    ids=["closed-again", "then-refused", "then-5xx"],
)
def test_after_an_unanswered_try_any_failure_leaves_the_outcome_unknown(gateway, credentials, script, asked, caplog):
    """The first try may have been acted on: a refusal or a 5xx to the second must not read as
    "never reached the provider" (routing would fail over, a refund would be marked failed)."""
    order = f"ch_unanswered_{len(script)}_{script[-1]}"
    with scripted_gateway(gateway, *script) as scripted, caplog.at_level(logging.WARNING, "urllib3.connectionpool"):
        adapter = make_adapter(scripted.url, credentials, account_id=11)
        with pytest.raises(ChannelTimeout) as excinfo:
            adapter.create_payment(payment(order))

    assert excinfo.value.code == "connection_lost"  # settled by query
    assert (scripted.requests, scripted.forwarded) == (asked, 0)
    assert [r.getMessage().split(" ")[0] for r in caplog.records] == ["Retrying"]  # exactly one second try
    assert sandbox_trades(order) == 0


@pytest.mark.parametrize(
    "status, body", [(503, b"service unavailable"), (200, b"<html>not json</html>")], ids=["5xx", "html"]
)
def test_a_broken_gateway_answer_is_translated(credentials, status, body):
    asked = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            self.send_response(status)
            self.send_header("Retry-After", "1")  # a 503 or 429 would be retried after it by default
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
    assert excinfo.value.code == ("http_503" if status >= 500 else "unreadable_response")
    assert len(asked) == 1


def test_unusable_credentials_are_a_configuration_failure(gateway):
    adapter = make_adapter(gateway, {"app_id": "2021000000000001"}, account_id=9)

    with pytest.raises(ChannelUnavailable) as excinfo:
        adapter.query_payment(out_trade_no="x", currency="CNY")

    assert (excinfo.value.code, excinfo.value.reached_provider) == ("account_misconfigured", False)


# --- alipay_wap and alipay_pc_direct -------------------------------------------------------------


def redirect_payment(out_trade_no: str, method: str, notify_url: str, **extra) -> PaymentRequest:
    return dataclasses.replace(payment(out_trade_no, notify_url=notify_url), method=method, extra=extra)


@pytest.mark.parametrize(
    "method, alipay_method, product_code",
    [("alipay_wap", "alipay.trade.wap.pay", "QUICK_WAP_PAY"),
     ("alipay_pc_direct", "alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY")],
    ids=["wap", "pc_direct"],
)  # fmt: skip
def test_a_redirect_credential_opens_the_cashier_and_paying_returns_and_notifies(
    adapter, gateway, credentials, receiver, method, alipay_method, product_code
):
    success_url = "http://shop.example/done?order=7"
    created = adapter.create_payment(
        redirect_payment(f"ch_{method}", method, receiver.url, success_url=success_url, cancel_url="http://shop/x")
    )

    credential = created.credential
    assert created.transaction_no is None
    assert sorted(credential) == sorted(
        ["app_id", "method", "charset", "sign_type", "timestamp", "version", "biz_content", "notify_url",
         "return_url", "sign", "channel_url"]
    )  # fmt: skip
    assert (credential["channel_url"], credential["method"]) == (gateway, alipay_method)
    assert (credential["app_id"], credential["return_url"], credential["notify_url"]) == (
        credentials["app_id"], success_url, receiver.url,
    )  # fmt: skip
    biz = json.loads(credential["biz_content"])
    assert biz["product_code"] == product_code
    assert (biz["out_trade_no"], biz["total_amount"], biz["subject"]) == (f"ch_{method}", "12.34", "Order 订单")
    assert biz.get("quit_url") == ("http://shop/x" if method == "alipay_wap" else None)
    # What pingpp-js does with the credential: channel_url + "?" + the other fields, form-encoded.
    params = {k: v for k, v in credential.items() if k != "channel_url"}
    cashier = requests.get(f"{credential['channel_url']}?{urlencode(params)}", timeout=5)
    assert cashier.status_code == 200 and "12.34" in cashier.text and f"ch_{method}" in cashier.text
    assert adapter.query_payment(out_trade_no=f"ch_{method}", currency="CNY").status == PaymentStatus.PENDING

    pay_path = re.search(r'action="([^"]+)"', cashier.text).group(1)
    paid = requests.post(urljoin(gateway, pay_path), data={"result": "success"}, allow_redirects=False, timeout=5)

    assert paid.status_code == 302
    location = paid.headers["Location"]
    assert location.startswith(success_url + "&")
    returned = dict(parse_qsl(urlsplit(location).query))
    query = adapter.query_payment(out_trade_no=f"ch_{method}", currency="CNY")
    assert query.status == PaymentStatus.SUCCEEDED
    assert sorted(returned) == sorted(
        ["order", "charset", "out_trade_no", "method", "total_amount", "sign", "trade_no", "auth_app_id", "version",
         "app_id", "sign_type", "seller_id", "timestamp"]
    )  # fmt: skip
    assert (returned["method"], returned["total_amount"], returned["trade_no"], returned["out_trade_no"]) == (
        f"{alipay_method}.return", "12.34", query.transaction_no, f"ch_{method}",
    )  # fmt: skip
    # The return is signed as a notification is: the merchant's SDK verifies it (order= is the shop's own).
    sdk = AliPay(appid=credentials["app_id"], app_private_key_string=credentials["app_private_key"],
                 alipay_public_key_string=credentials["alipay_public_key"])  # fmt: skip
    signed = {k: v for k, v in returned.items() if k not in ("sign", "order")}
    assert sdk.verify(signed, returned["sign"]) is True
    assert sdk.verify({**signed, "total_amount": "0.01"}, returned["sign"]) is False
    notified = adapter.parse_notification(headers={}, body=receiver.bodies[0], currency="CNY")
    assert (notified.status, notified.amount, notified.transaction_no) == (
        PaymentStatus.SUCCEEDED, Money("12.34", "CNY"), query.transaction_no,
    )  # fmt: skip


@pytest.mark.parametrize("method", ["alipay_wap", "alipay_pc_direct"])
def test_a_redirect_method_without_success_url_is_rejected_before_any_call(adapter, method):
    with pytest.raises(ChannelRejected) as excinfo:
        adapter.create_payment(redirect_payment("ch_no_url", method, "http://127.0.0.1:9/n"))

    assert excinfo.value.code == "success_url_required"


def test_a_tampered_cashier_url_is_refused_by_the_sandbox(adapter):
    credential = adapter.create_payment(
        redirect_payment("ch_tampered", "alipay_pc_direct", "http://127.0.0.1:9/n", success_url="http://s/r")
    ).credential
    params = {k: v for k, v in credential.items() if k != "channel_url"}
    params["biz_content"] = params["biz_content"].replace("12.34", "0.01")

    cashier = requests.get(f"{credential['channel_url']}?{urlencode(params)}", timeout=5)

    assert cashier.status_code == 400 and "isv.invalid-signature" in cashier.text
    assert adapter.query_payment(out_trade_no="ch_tampered", currency="CNY").status == PaymentStatus.NOT_FOUND


# --- refunds -------------------------------------------------------------------------------------


def paid_qr(adapter, out_trade_no: str, notify_url: str = "http://127.0.0.1:9/n", amount: str = "12.34") -> str:
    """A QR payment the payer has paid; returns Alipay's trade_no."""
    qr_code = adapter.create_payment(payment(out_trade_no, notify_url=notify_url, amount=amount)).credential
    return requests.post(qr_code, data={"result": "success"}, headers={"Accept": "application/json"}, timeout=5).json()[
        "trade_no"
    ]


def refund_request(out_trade_no: str, trade_no: str, out_refund_no: str, amount: str, total: str = "12.34"):
    return RefundRequest(
        out_trade_no=out_trade_no,
        transaction_no=trade_no,
        out_refund_no=out_refund_no,
        amount=Money(amount, "CNY"),
        total_amount=Money(total, "CNY"),
        reason="customer returned it",
        notify_url="",
    )


def test_partial_repeated_over_and_full_refunds(adapter, receiver):
    trade_no = paid_qr(adapter, "ch_refund", receiver.url)

    first = adapter.refund(refund_request("ch_refund", trade_no, "re_1", "2.00"))
    repeated = adapter.refund(refund_request("ch_refund", trade_no, "re_1", "2.00"))
    over = adapter.refund(refund_request("ch_refund", trade_no, "re_2", "10.35"))
    rest = adapter.refund(refund_request("ch_refund", trade_no, "re_3", "10.34"))
    after_full = adapter.refund(refund_request("ch_refund", trade_no, "re_4", "0.01"))

    assert (first.status, first.out_refund_no, first.out_trade_no, first.amount) == (
        RefundStatus.SUCCEEDED, "re_1", "ch_refund", Money("2.00", "CNY"),
    )  # fmt: skip
    assert (first.raw["fund_change"], first.raw["refund_fee"], first.raw["send_back_fee"]) == ("Y", "2.00", "2.00")
    assert abs(first.succeeded_at - timezone.now()) < dt.timedelta(minutes=1)
    # A repeat moves no money (fund_change N): the adapter settles it with a refund query.
    assert (repeated.status, repeated.amount, repeated.succeeded_at) == (
        RefundStatus.SUCCEEDED, Money("2.00", "CNY"), first.succeeded_at,
    )  # fmt: skip
    assert repeated.raw["refund_status"] == "REFUND_SUCCESS"
    assert (over.status, over.failure_code, over.failure_msg) == (
        RefundStatus.FAILED, "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限",
    )  # fmt: skip
    assert (rest.status, rest.amount, rest.raw["refund_fee"]) == (
        RefundStatus.SUCCEEDED,
        Money("10.34", "CNY"),
        "12.34",
    )
    assert (after_full.status, after_full.failure_code) == (RefundStatus.FAILED, "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL")
    assert adapter.query_payment(out_trade_no="ch_refund", currency="CNY").status == PaymentStatus.CLOSED
    queried = {
        no: adapter.query_refund(out_trade_no="ch_refund", out_refund_no=no, currency="CNY")
        for no in ("re_1", "re_2", "re_3")
    }
    assert (queried["re_1"].status, queried["re_1"].amount) == (RefundStatus.SUCCEEDED, Money("2.00", "CNY"))
    assert (queried["re_2"].status, queried["re_2"].amount) == (RefundStatus.NOT_FOUND, None)
    assert (queried["re_3"].status, queried["re_3"].amount) == (RefundStatus.SUCCEEDED, Money("10.34", "CNY"))
    # Payment, then one notification per refund that moved money (Alipay notifies refunds).
    results = [adapter.parse_notification(headers={}, body=body, currency="CNY") for body in receiver.bodies]
    assert [type(r).__name__ for r in results] == ["PaymentResult", "RefundResult", "RefundResult"]
    assert [(r.out_refund_no, r.status, r.out_trade_no) for r in results[1:]] == [
        ("re_1", RefundStatus.SUCCEEDED, "ch_refund"), ("re_3", RefundStatus.SUCCEEDED, "ch_refund"),
    ]  # fmt: skip
    assert [(r.raw["trade_status"], r.raw["refund_fee"]) for r in results[1:]] == [
        ("TRADE_SUCCESS", "2.00"), ("TRADE_CLOSED", "12.34"),
    ]  # fmt: skip
    assert results[1].succeeded_at == first.succeeded_at


def test_a_repeated_refund_no_with_another_amount_and_an_unpaid_trade_fail(adapter):
    trade_no = paid_qr(adapter, "ch_refund_bad")
    adapter.refund(refund_request("ch_refund_bad", trade_no, "re_a", "1.00"))
    unpaid_qr = adapter.create_payment(payment("ch_unpaid")).credential
    requests.get(unpaid_qr, timeout=5)

    discordant = adapter.refund(refund_request("ch_refund_bad", trade_no, "re_a", "1.01"))
    unpaid = adapter.refund(refund_request("ch_unpaid", "", "re_b", "1.00"))
    missing = adapter.refund(refund_request("ch_nowhere", "", "re_c", "1.00"))

    assert (discordant.status, discordant.failure_code) == (RefundStatus.FAILED, "ACQ.DISCORDANT_REPEAT_REQUEST")
    assert (unpaid.status, unpaid.failure_code) == (RefundStatus.FAILED, "ACQ.TRADE_STATUS_ERROR")
    assert (missing.status, missing.failure_code) == (RefundStatus.FAILED, "ACQ.TRADE_NOT_EXIST")
    assert adapter.query_refund(out_trade_no="ch_nowhere", out_refund_no="re_c", currency="CNY").status == (
        RefundStatus.NOT_FOUND
    )
    assert adapter.query_refund(out_trade_no="ch_refund_bad", out_refund_no="re_a", currency="CNY").amount == Money(
        "1.00", "CNY"
    )


def test_refund_answers_signed_by_another_key_are_invalid(gateway, credentials, adapter):
    trade_no = paid_qr(adapter, "ch_refund_sig")
    other = crypto.public_key_pem(crypto.rsa_generate())
    wrong = make_adapter(gateway, {**credentials, "alipay_public_key": other}, account_id=11)

    with pytest.raises(ChannelResponseInvalid) as refund_exc:
        wrong.refund(refund_request("ch_refund_sig", trade_no, "re_sig", "1.00"))
    with pytest.raises(ChannelResponseInvalid) as query_exc:
        wrong.query_refund(out_trade_no="ch_refund_sig", out_refund_no="re_sig", currency="CNY")

    assert refund_exc.value.code == query_exc.value.code == "invalid_signature"


def test_a_tampered_refund_notification_is_invalid(adapter, receiver):
    trade_no = paid_qr(adapter, "ch_refund_tamper", receiver.url)
    adapter.refund(refund_request("ch_refund_tamper", trade_no, "re_t", "1.00"))
    fields = dict(parse_qsl(receiver.bodies[1].decode(), keep_blank_values=True))

    with pytest.raises(NotificationInvalid):
        adapter.parse_notification(headers={}, body=urlencode({**fields, "refund_fee": "12.34"}).encode())
    with pytest.raises(NotificationInvalid):
        adapter.parse_notification(headers={}, body=urlencode({**fields, "out_biz_no": "re_other"}).encode())


# --- bills ---------------------------------------------------------------------------------------


def sandbox_to_yesterday() -> None:
    """Given: what the sandbox recorded today happened yesterday (bills are published T+1).

    The sandbox is another system (nothing here imports it): its rows are moved in SQL.
    """
    with connection.cursor() as cursor:
        cursor.execute("UPDATE sandbox_alipayapp SET created_at = created_at - interval '1 day'")
        cursor.execute(
            "UPDATE sandbox_alipaytrade SET created_at = created_at - interval '1 day',"
            " paid_at = paid_at - interval '1 day'"
        )
        cursor.execute("UPDATE sandbox_alipayrefund SET refunded_at = refunded_at - interval '1 day'")


def yesterday() -> dt.date:
    return (timezone.now().astimezone(SHANGHAI) - dt.timedelta(days=1)).date()


@pytest.fixture
def day_of_business(adapter):
    """Three payments and two refunds, moved to yesterday; returns what the adapter was told."""
    trades = {no: paid_qr(adapter, no, amount=amount) for no, amount in
              (("ch_bill_a", "7.50"), ("ch_bill_b", "0.50"), ("ch_bill_c", "100.00"))}  # fmt: skip
    paid_at = {no: adapter.query_payment(out_trade_no=no, currency="CNY").paid_at for no in trades}
    refunds = [
        adapter.refund(refund_request("ch_bill_a", trades["ch_bill_a"], "re_bill_1", "2.50", "7.50")),
        adapter.refund(refund_request("ch_bill_c", trades["ch_bill_c"], "re_bill_2", "100.00", "100.00")),
    ]
    sandbox_to_yesterday()
    day = dt.timedelta(days=1)
    return {"trades": trades, "paid_at": {k: v - day for k, v in paid_at.items()},
            "refunded_at": [r.succeeded_at - day for r in refunds]}  # fmt: skip


def bill_line(kind, trade_no, out_trade_no, amount, fee, at, out_refund_no="") -> BillLine:
    """A standard line: minor units, both kinds succeeded (the trade bill lists nothing else)."""
    return BillLine(kind.value, out_trade_no, out_refund_no, trade_no, "", amount, fee, "CNY", "succeeded", at)


def download(adapter, day=None) -> tuple[str, bytes]:
    dest = io.BytesIO()
    name = adapter.download_bill(bill_date=day or yesterday(), dest=dest)
    return name, dest.getvalue()


def test_the_bill_of_a_day_downloads_and_parses_into_exact_lines(adapter, day_of_business):
    trades, paid_at, refunded_at = day_of_business["trades"], day_of_business["paid_at"], day_of_business["refunded_at"]

    name, content = download(adapter)
    lines = list(adapter.parse_bill(io.BytesIO(content)))

    assert re.fullmatch(rf"2088\d{{12}}0156_{yesterday():%Y%m%d}\.csv\.zip", name)
    # Fees: 0.6% rounded half-up to the fen: 7.50 -> 0.045 -> 0.05; 0.50 -> 0.003 -> 0.00; 2.50 -> 0.015 -> 0.02.
    expected = [
        bill_line(BillLineKind.PAYMENT, trades["ch_bill_a"], "ch_bill_a", 750, 5, paid_at["ch_bill_a"]),
        bill_line(BillLineKind.PAYMENT, trades["ch_bill_b"], "ch_bill_b", 50, 0, paid_at["ch_bill_b"]),
        bill_line(BillLineKind.PAYMENT, trades["ch_bill_c"], "ch_bill_c", 10000, 60, paid_at["ch_bill_c"]),
        bill_line(BillLineKind.REFUND, trades["ch_bill_a"], "ch_bill_a", 250, 2, refunded_at[0], "re_bill_1"),
        bill_line(BillLineKind.REFUND, trades["ch_bill_c"], "ch_bill_c", 10000, 60, refunded_at[1], "re_bill_2"),
    ]  # fmt: skip
    assert lines == expected


def test_todays_bill_is_not_ready(adapter):
    with pytest.raises(BillNotReady) as excinfo:
        download(adapter, timezone.now().astimezone(SHANGHAI).date())

    assert excinfo.value.code == "isp.bill_not_exist"


class _GbkNamed(zipfile.ZipInfo):
    """A member written under the GBK name bytes it was read with (zipfile read them as cp437)."""

    def _encodeFilenameFlags(self):  # zipfile's own hook
        return self.filename.encode("cp437"), self.flag_bits


def rezip(content: bytes, transform) -> bytes:
    """The same archive, names kept, with the detail member's bytes passed through `transform`."""
    source = zipfile.ZipFile(io.BytesIO(content))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            detail = "汇总".encode("gbk") not in info.filename.encode("cp437")
            target.writestr(_GbkNamed(info.filename, info.date_time), transform(data) if detail else data)
    return out.getvalue()


@pytest.mark.parametrize(
    "damage, says",
    [
        (lambda content: content[: len(content) // 2], "not a readable zip archive"),
        (lambda content: b"<html>expired</html>", "not a readable zip archive"),
        (lambda content: rezip(content, lambda data: data.decode("gbk").encode("utf-8")), "not GBK text"),
        (lambda content: rezip(content, lambda data: data[: data.index("业务明细列表结束".encode("gbk"))]),
         "truncated: no footer"),
        (lambda content: rezip(content, lambda data: data.replace(b"7.50,7.50", b"7.50")), "has 24 cells, not 25"),
        (lambda content: rezip(content, lambda data: data.replace(b"-2.50,-2.50", b"-2.50,-2.5x")), "'-2.5x' is not a"),
        (lambda content: rezip(content, lambda data: data.replace("：3笔".encode("gbk"), "：4笔".encode("gbk"))),
         "footer counts {'payment': 4, 'refund': 2} disagree with the lines {'payment': 3, 'refund': 2}"),
    ],
    ids=["truncated-zip", "garbage", "utf-8-not-gbk", "truncated-detail", "missing-cell", "bad-amount", "bad-count"],
)  # fmt: skip
def test_a_damaged_bill_is_invalid(adapter, day_of_business, damage, says):
    _, content = download(adapter)

    with pytest.raises(BillInvalid) as excinfo:
        list(adapter.parse_bill(io.BytesIO(damage(content))))

    assert str(excinfo.value).startswith("alipay bill: ") and says in str(excinfo.value)


DETAIL_HEADER = (
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,订单金额（元）,"
    "商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,"
    "商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注"
)


def detail_row(n: int, subject: str) -> str:
    """A 交易 line of 7.50 (fee 0.05) of charge ch_quote_<n>, finished at 2026-01-15 10:00:05, its
    商品名称 as written."""
    return (
        f"202601152200140000000000{n}\t,ch_quote_{n}\t,交易,{subject},2026-01-15 10:00:00,"
        f"2026-01-15 10:00:05,,,,,buy***@sandbox.com,7.50,7.50,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,,-0.05,0.00,"
    )


def detail_zip(*rows: str) -> bytes:
    """A trade bill archive of 交易 lines `rows` (CSV text), with Alipay's header and footer."""
    text = "\r\n".join(
        [
            "#支付宝业务明细查询",
            "#账号：[20880000000000000156]",
            f"#{'-' * 41}业务明细列表{'-' * 40}",
            DETAIL_HEADER,
            *rows,
            f"#{'-' * 41}业务明细列表结束{'-' * 36}",
            f"#交易合计：{len(rows)}笔，商家实收共0.00元，商家优惠共0.00元",
            "#退款合计：0笔，商家实收退款共0.00元，商家优惠退款共0.00元",
            "",
        ]
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("20880000000000000156_20260115_业务明细.csv", text.encode("gbk"))
    return out.getvalue()


@pytest.mark.parametrize(
    "subject",
    ['12" pizza', '"pizza, 12"" large"', '"pizza\r\nlarge, ""12"""'],
    ids=["quote-in-an-unquoted-cell", "quoted-comma-and-quote", "quoted-line-break"],
)
def test_a_bill_line_with_a_quote_in_a_cell_parses_and_so_do_the_lines_after_it(subject):
    adapter = make_adapter("http://127.0.0.1:9/gateway.do", {})
    at = dt.datetime(2026, 1, 15, 10, 0, 5, tzinfo=SHANGHAI)

    lines = list(adapter.parse_bill(io.BytesIO(detail_zip(detail_row(1, subject), detail_row(2, "plain")))))

    assert lines == [
        bill_line(BillLineKind.PAYMENT, "2026011522001400000000001", "ch_quote_1", 750, 5, at),
        bill_line(BillLineKind.PAYMENT, "2026011522001400000000002", "ch_quote_2", 750, 5, at),
    ]


def test_a_bill_that_ends_inside_a_quoted_cell_is_invalid():
    adapter = make_adapter("http://127.0.0.1:9/gateway.do", {})
    content = detail_zip(detail_row(1, '"pizza'), detail_row(2, "plain"))

    with pytest.raises(BillInvalid) as excinfo:
        list(adapter.parse_bill(io.BytesIO(content)))

    assert str(excinfo.value) == "alipay bill: the file ends inside a quoted cell"


# --- faults, injected from the sandbox's console -------------------------------------------------


def inject(client, credentials, kind: str, params: dict | None = None, **scope) -> None:
    response = client.post(
        "/sandbox/faults/",
        {"action": "add", "provider": "alipay", "merchant_ref": credentials["app_id"], "kind": kind,
         "params": json.dumps(params or {}), "out_trade_no": scope.get("out_trade_no", ""),
         "remaining": scope.get("remaining", "")},
    )  # fmt: skip
    assert response.status_code == 302, response.content


@pytest.fixture
def slow_adapter(gateway, credentials) -> AlipayAdapter:
    """Gives up after 1 s; timeout faults answer after 2 s."""
    return make_adapter(gateway, credentials, account_id=20, timeout=1)


def test_timeout_on_create_leaves_an_unscanned_trade(slow_adapter, client, credentials):
    inject(client, credentials, "timeout_create", {"seconds": 2}, out_trade_no="ch_t_create", remaining=1)

    with pytest.raises(ChannelTimeout):
        slow_adapter.create_payment(payment("ch_t_create"))

    assert slow_adapter.query_payment(out_trade_no="ch_t_create", currency="CNY").status == PaymentStatus.NOT_FOUND
    assert slow_adapter.create_payment(payment("ch_t_create")).credential.startswith("http")  # retried: same trade


def test_create_timeout_paid_times_out_and_the_query_shows_it_paid(slow_adapter, client, credentials, receiver):
    inject(client, credentials, "create_timeout_paid", {"seconds": 2}, remaining=1)

    with pytest.raises(ChannelTimeout):
        slow_adapter.create_payment(payment("ch_t_paid", notify_url=receiver.url))

    result = slow_adapter.query_payment(out_trade_no="ch_t_paid", currency="CNY")
    assert (result.status, result.amount) == (PaymentStatus.SUCCEEDED, Money("12.34", "CNY"))
    assert slow_adapter.parse_notification(headers={}, body=receiver.bodies[0]).status == PaymentStatus.SUCCEEDED


def test_timeout_on_query_and_on_refund(slow_adapter, adapter, client, credentials):
    trade_no = paid_qr(adapter, "ch_t_refund")
    inject(client, credentials, "timeout_query", {"seconds": 2}, remaining=1)
    inject(client, credentials, "timeout_refund", {"seconds": 2}, remaining=1)

    with pytest.raises(ChannelTimeout):
        slow_adapter.query_payment(out_trade_no="ch_t_refund", currency="CNY")
    with pytest.raises(ChannelTimeout):
        slow_adapter.refund(refund_request("ch_t_refund", trade_no, "re_t", "1.00"))

    # The refund was made; only its answer was late. The refund query says so.
    settled = slow_adapter.query_refund(out_trade_no="ch_t_refund", out_refund_no="re_t", currency="CNY")
    assert (settled.status, settled.amount) == (RefundStatus.SUCCEEDED, Money("1.00", "CNY"))
    assert slow_adapter.query_payment(out_trade_no="ch_t_refund", currency="CNY").status == PaymentStatus.SUCCEEDED


def test_5xx_on_the_listed_operations_only(adapter, client, credentials):
    inject(client, credentials, "error_5xx", {"operations": ["alipay.trade.query"], "status": 503}, remaining=1)

    created = adapter.create_payment(payment("ch_5xx"))  # not listed: answered
    with pytest.raises(ChannelUnavailable) as excinfo:
        adapter.query_payment(out_trade_no="ch_5xx", currency="CNY")
    after = adapter.query_payment(out_trade_no="ch_5xx", currency="CNY")  # remaining=1: spent

    assert created.credential.startswith("http")
    assert (excinfo.value.code, excinfo.value.reached_provider) == ("http_503", True)
    assert after.status == PaymentStatus.NOT_FOUND


def test_5xx_on_every_operation(adapter, client, credentials):
    inject(client, credentials, "error_5xx")

    for call in (lambda: adapter.create_payment(payment("ch_5xx_all")),
                 lambda: adapter.refund(refund_request("ch_5xx_all", "", "re_x", "1.00")),
                 lambda: adapter.download_bill(bill_date=yesterday(), dest=io.BytesIO())):  # fmt: skip
        with pytest.raises(ChannelUnavailable) as excinfo:
            call()
        assert excinfo.value.code == "http_502"


def test_a_duplicated_notification_is_delivered_twice(adapter, client, credentials, receiver):
    inject(client, credentials, "notify_duplicate", out_trade_no="ch_dup")

    paid_qr(adapter, "ch_dup", receiver.url)

    assert len(receiver.bodies) == 2
    first, second = (adapter.parse_notification(headers={}, body=b) for b in receiver.bodies)
    assert first.raw["notify_id"] == second.raw["notify_id"]
    assert (first.status, second.status) == (PaymentStatus.SUCCEEDED, PaymentStatus.SUCCEEDED)


@pytest.mark.parametrize("delta, amount", [(-100, "11.34"), (5, "12.39")], ids=["less", "more"])
def test_a_notification_whose_amount_differs_is_signed_and_states_the_other_amount(
    adapter, client, credentials, receiver, delta, amount
):
    inject(client, credentials, "notify_amount_differs", {"delta": delta})

    paid_qr(adapter, "ch_differs", receiver.url)

    result = adapter.parse_notification(headers={}, body=receiver.bodies[0], currency="CNY")
    assert (result.status, result.amount) == (PaymentStatus.SUCCEEDED, Money(amount, "CNY"))
    assert result.raw["receipt_amount"] == amount
    assert adapter.query_payment(out_trade_no="ch_differs", currency="CNY").amount == Money("12.34", "CNY")


def test_a_lost_notification_never_arrives_but_the_query_knows(adapter, client, credentials, receiver):
    inject(client, credentials, "notify_lost", out_trade_no="ch_lost")

    paid_qr(adapter, "ch_lost", receiver.url)

    assert receiver.bodies == []
    assert adapter.query_payment(out_trade_no="ch_lost", currency="CNY").status == PaymentStatus.SUCCEEDED


def test_out_of_order_the_refund_notification_arrives_before_the_payment(adapter, client, credentials, receiver):
    inject(client, credentials, "notify_out_of_order", out_trade_no="ch_ooo")
    trade_no = paid_qr(adapter, "ch_ooo", receiver.url)
    assert receiver.bodies == []

    adapter.refund(refund_request("ch_ooo", trade_no, "re_ooo", "1.00"))

    results = [adapter.parse_notification(headers={}, body=b, currency="CNY") for b in receiver.bodies]
    assert [(type(r).__name__, r.status) for r in results] == [
        ("RefundResult", RefundStatus.SUCCEEDED), ("PaymentResult", PaymentStatus.SUCCEEDED),
    ]  # fmt: skip


def test_a_refund_that_never_notifies(adapter, client, credentials, receiver):
    inject(client, credentials, "refund_never_notifies")
    trade_no = paid_qr(adapter, "ch_quiet_refund", receiver.url)

    refunded = adapter.refund(refund_request("ch_quiet_refund", trade_no, "re_quiet", "1.00"))

    assert refunded.status == RefundStatus.SUCCEEDED
    assert [adapter.parse_notification(headers={}, body=b).status for b in receiver.bodies] == [PaymentStatus.SUCCEEDED]


@pytest.mark.parametrize(
    "kind, params, change",
    [
        ("bill_missing_line", {}, lambda lines: lines[1:]),
        ("bill_altered_line", {"field": "amount"}, lambda lines: [lines[0]._replace(amount=751), *lines[1:]]),
        ("bill_altered_line", {"field": "fee", "delta": 3}, lambda lines: [lines[0]._replace(fee=8), *lines[1:]]),
        ("bill_altered_line", {"field": "status"}, lambda lines: [lines[0]._replace(kind="refund"), *lines[1:]]),
    ],
    ids=["missing", "altered-amount", "altered-fee", "altered-status"],
)  # fmt: skip
def test_bill_faults_change_the_parsed_lines_as_injected(adapter, client, credentials, day_of_business, kind, params,
                                                         change):  # fmt: skip
    honest = list(adapter.parse_bill(io.BytesIO(download(adapter)[1])))
    inject(client, credentials, kind, params, out_trade_no="ch_bill_a" if kind == "bill_missing_line" else "")

    faulty = list(adapter.parse_bill(io.BytesIO(download(adapter)[1])))

    assert faulty == change(honest)


def test_a_bill_with_an_extra_line(adapter, client, credentials, day_of_business):
    honest = list(adapter.parse_bill(io.BytesIO(download(adapter)[1])))
    inject(client, credentials, "bill_extra_line", {"amount": "3.00", "out_trade_no": "ch_nobody"})

    faulty = list(adapter.parse_bill(io.BytesIO(download(adapter)[1])))

    (extra,) = [line for line in faulty if line not in honest]
    assert [line for line in faulty if line != extra] == honest
    assert (extra.out_trade_no, extra.kind, extra.amount, extra.fee, extra.occurred_at) == (
        "ch_nobody", BillLineKind.PAYMENT, 300, 2,
        dt.datetime.combine(yesterday(), dt.time(12), tzinfo=SHANGHAI),
    )  # fmt: skip
