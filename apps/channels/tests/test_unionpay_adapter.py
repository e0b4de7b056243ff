"""UnionPayAdapter against the UnionPay sandbox over HTTP (live server), as paysys reaches a provider.

The sandbox is reached over HTTP and through its management command only (no import of
apps.sandbox): faults are written into the sandbox's fault table as its console does, and its
sweep is run by Celery task name, as beat runs it.
"""

import dataclasses
import datetime as dt
import http.server
import io
import json
import socket
import threading
import time
import zipfile
from urllib.parse import parse_qsl, urlencode

import pytest
import requests
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from moneyed import Money

from apps.channels.adapters import adapter_class
from apps.channels.adapters import unionpay_protocol as proto
from apps.channels.adapters.base import (
    AccountConfig,
    BillLineKind,
    BillNotReady,
    ChannelRejected,
    ChannelResponseInvalid,
    ChannelTimeout,
    ChannelUnavailable,
    NotificationInvalid,
    PaymentRequest,
    PaymentResult,
    PaymentStatus,
    ProviderReply,
    RefundRequest,
    RefundResult,
    RefundStatus,
)
from apps.channels.adapters.unionpay import UnionPayAdapter, order_id_for, paysys_id_for
from apps.core import crypto
from apps.core.ids import new_public_id

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


def sandbox_account() -> dict:
    out = io.StringIO()
    call_command("sandbox_account_create", provider="unionpay", json=True, stdout=out)
    return json.loads(out.getvalue())


@pytest.fixture
def document(transactional_db) -> dict:
    return sandbox_account()


@pytest.fixture
def credentials(document) -> dict:
    return {k: v for k, v in document.items() if k != "provider"}


@pytest.fixture
def base_url(live_server) -> str:
    return f"{live_server.url}/sandbox/unionpay/gateway/api/"


def make_adapter(base_url: str, credentials: dict, *, account_id: int = 1, timeout: float = 5.0) -> UnionPayAdapter:
    config = AccountConfig(
        id=account_id,
        provider="unionpay",
        base_url=base_url,
        credentials=credentials,
        livemode=False,
        timeout_seconds=timeout,
    )
    return UnionPayAdapter(config)


@pytest.fixture
def adapter(base_url, credentials) -> UnionPayAdapter:
    return make_adapter(base_url, credentials)


def set_fault(kind: str, *, mer_id: str, order_id: str = "", params: dict | None = None, remaining=None) -> None:
    """Injects a sandbox fault the way the sandbox console does (its own table; no sandbox import)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO sandbox_sandboxfault (provider, merchant_ref, out_trade_no, kind, params, remaining,"
            " enabled, fired, created_at) VALUES ('unionpay', %s, %s, %s, %s, %s, true, 0, now())",
            [mer_id, order_id, kind, json.dumps(params or {}), remaining],
        )


def run_sandbox_sweep() -> dict:
    """The sandbox's periodic sweep, by task name (as beat runs it)."""
    from paysys.celery import app

    return app.tasks["apps.sandbox.tasks.sandbox_unionpay_sweep"].apply().get()


class Receiver:
    """paysys's notify URL stand-in: records raw form bodies and answers `answers` (then 200 ok)."""

    def __init__(self):
        self.bodies: list[bytes] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                receiver.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify/unionpay"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def charge_id() -> str:
    return new_public_id("ch")


def payment(out_trade_no: str, notify_url: str = "http://127.0.0.1:9/notify", amount: str = "12.34", **kw):
    return PaymentRequest(
        out_trade_no=out_trade_no,
        method=kw.get("method", "upacp_pc"),
        amount=Money(amount, kw.get("currency", "CNY")),
        subject="Order 订单",
        body="",
        client_ip="127.0.0.1",
        time_expire=kw.get("time_expire") or timezone.now() + dt.timedelta(hours=2),
        notify_url=notify_url,
        extra=kw.get("extra", {"result_url": "https://shop.example/result"}),
    )


def post_form(credential: dict, *, timeout: float = 5) -> requests.Response:
    """What pingpp-js does: POST the form fields to the gateway (channel_url is not a field)."""
    fields = {k: v for k, v in credential.items() if k != "channel_url"}
    return requests.post(
        credential["channel_url"], data=fields, headers={"Accept": "application/json"}, timeout=timeout
    )


def pay(credential: dict, result: str = "success") -> dict:
    front = post_form(credential)
    assert front.status_code == 200, front.text
    answer = requests.post(
        front.json()["pay_url"], data={"result": result}, headers={"Accept": "application/json"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def paid_charge(adapter, receiver=None, amount="12.34") -> tuple[str, dict, dict]:
    out_trade_no = charge_id()
    credential = adapter.create_payment(payment(out_trade_no, receiver.url if receiver else "", amount)).credential
    return out_trade_no, credential, pay(credential)


def refund_request(out_trade_no: str, query_id: str, amount: str, notify_url: str, total="12.34") -> RefundRequest:
    return RefundRequest(
        out_trade_no=out_trade_no,
        transaction_no=query_id,
        out_refund_no=new_public_id("re"),
        amount=Money(amount, "CNY"),
        total_amount=Money(total, "CNY"),
        reason="customer",
        notify_url=notify_url,
    )


def parse(adapter, body: bytes) -> PaymentResult | RefundResult:
    return adapter.parse_notification(
        headers={"Content-Type": "application/x-www-form-urlencoded"}, body=body, currency="CNY"
    )


# --- capabilities, ids, credentials ------------------------------------------------------------


def test_capabilities_and_registry():
    assert adapter_class("unionpay") is UnionPayAdapter
    assert UnionPayAdapter.methods == frozenset({"upacp_pc", "upacp_wap"})
    assert UnionPayAdapter.currencies == frozenset({"CNY"})
    assert UnionPayAdapter.refunds_notify is True


def test_order_id_mapping_is_reversible_and_refuses_other_shapes():
    assert order_id_for("ch_Ab3dEf7hIj1lMn0pQr5tUv9x") == "Ab3dEf7hIj1lMn0pQr5tUv9x"
    assert paysys_id_for("Ab3dEf7hIj1lMn0pQr5tUv9x", "01") == "ch_Ab3dEf7hIj1lMn0pQr5tUv9x"
    assert paysys_id_for("Ab3dEf7hIj1lMn0pQr5tUv9x", "04") == "re_Ab3dEf7hIj1lMn0pQr5tUv9x"
    for bad in ("ch_short", "ch_has-dash12345", "xx_Ab3dEf7hIj1lMn0pQr5tUv9x", "Ab3dEf7hIj1lMn0pQr5tUv9x"):
        with pytest.raises(ChannelRejected) as excinfo:
            order_id_for(bad)
        assert (excinfo.value.code, excinfo.value.reached_provider) == ("order_id_unmappable", False)


def test_the_account_command_prints_the_credentials_a_channel_account_needs(document):
    assert set(document) == {
        "provider", "mer_id", "sign_cert_id", "sign_private_key", "sign_cert", "root_cert", "middle_cert",
        "validate_cn_name",
    }  # fmt: skip
    assert document["provider"] == "unionpay"
    assert len(document["mer_id"]) == 15 and document["mer_id"].isdigit()
    cert = proto.load_certificate(document["sign_cert"])
    assert document["sign_cert_id"] == str(cert.serial_number)
    assert document["validate_cn_name"] is False
    # The merchant's key signs what its certificate verifies.
    key = crypto.load_private_key(document["sign_private_key"])
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()


# --- create, pay, query, close -----------------------------------------------------------------


def test_create_returns_signed_form_fields_and_the_front_url(adapter, credentials, base_url):
    out_trade_no = charge_id()
    before = timezone.now()
    created = adapter.create_payment(payment(out_trade_no, "https://paysys.example/notify/unionpay/1/"))

    credential = created.credential
    assert created.transaction_no is None
    assert credential["channel_url"] == f"{base_url}frontTransReq.do"
    fields = {k: v for k, v in credential.items() if k not in ("channel_url",)}
    requested_at = dt.datetime.strptime(fields["txnTime"], "%Y%m%d%H%M%S").replace(tzinfo=SHANGHAI)
    assert before - dt.timedelta(seconds=1) <= requested_at <= timezone.now()
    assert {k: v for k, v in fields.items() if k not in ("txnTime", "payTimeout", "signature")} == {
        "version": "5.1.0",
        "encoding": "UTF-8",
        "signMethod": "01",
        "txnType": "01",
        "txnSubType": "01",
        "bizType": "000201",
        "accessType": "0",
        "channelType": "07",
        "merId": credentials["mer_id"],
        "orderId": out_trade_no[3:],
        "txnAmt": "1234",
        "currencyCode": "156",
        "frontUrl": "https://shop.example/result",
        "backUrl": "https://paysys.example/notify/unionpay/1/",
        "certId": credentials["sign_cert_id"],
    }
    # Signed as UnionPay verifies it: RSA-SHA256 over the sha256 hex of the sorted pairs.
    digest = crypto.sha256_hex(proto.sign_content(fields).encode())
    cert = proto.load_certificate(credentials["sign_cert"])
    assert crypto.rsa_verify(crypto.public_key_pem(cert.public_key()), digest.encode(), fields["signature"])


def test_wap_uses_channel_type_08_and_create_refuses_bad_input_without_calling(adapter):
    assert adapter.create_payment(payment(charge_id(), method="upacp_wap")).credential["channelType"] == "08"
    cases = [
        (payment(charge_id(), extra={}), "result_url_required"),
        (payment(charge_id(), method="alipay_qr"), "method_unsupported"),
        (payment(charge_id(), currency="USD"), "currency_unsupported"),
        (payment("ch_bad", extra={"result_url": "x"}), "order_id_unmappable"),
    ]
    for request, code in cases:
        with pytest.raises(ChannelRejected) as excinfo:
            adapter.create_payment(request)
        assert (excinfo.value.code, excinfo.value.reached_provider) == (code, False)


def test_query_follows_the_payer_not_found_then_succeeded(adapter):
    out_trade_no = charge_id()
    credential = adapter.create_payment(payment(out_trade_no)).credential
    requested_at = credential["txnTime"]

    before_post = adapter.query_payment(out_trade_no=out_trade_no, currency="CNY", requested_at=requested_at)
    front = post_form(credential)
    posted = adapter.query_payment(out_trade_no=out_trade_no, currency="CNY", requested_at=requested_at)
    paid = requests.post(front.json()["pay_url"], data={"result": "success"}, headers={"Accept": "application/json"})
    after = adapter.query_payment(out_trade_no=out_trade_no, currency="CNY", requested_at=requested_at)

    assert before_post.status == PaymentStatus.NOT_FOUND
    assert posted.status == PaymentStatus.NOT_FOUND  # not a transaction until the payer acts
    assert after.status == PaymentStatus.SUCCEEDED
    assert after.out_trade_no == out_trade_no
    assert after.transaction_no == paid.json()["queryId"] and len(after.transaction_no) == 21
    assert after.amount == Money("12.34", "CNY")
    assert abs(after.paid_at - timezone.now()) < dt.timedelta(minutes=1)
    assert after.raw["origRespCode"] == "00" and after.raw["txnTime"] == requested_at


def test_query_needs_the_original_txn_time(adapter):
    out_trade_no = charge_id()
    credential = adapter.create_payment(payment(out_trade_no)).credential
    pay(credential)

    with pytest.raises(ChannelRejected) as excinfo:
        adapter.query_payment(out_trade_no=out_trade_no, currency="CNY")
    other_time = adapter.query_payment(out_trade_no=out_trade_no, currency="CNY", requested_at="20200101000000")
    as_datetime = dt.datetime.strptime(credential["txnTime"], "%Y%m%d%H%M%S").replace(tzinfo=SHANGHAI)

    assert (excinfo.value.code, excinfo.value.reached_provider) == ("txn_time_required", False)
    assert other_time.status == PaymentStatus.NOT_FOUND
    assert (
        adapter.query_payment(out_trade_no=out_trade_no, currency="CNY", requested_at=as_datetime).status == "succeeded"
    )


def test_a_failed_payment_is_failed_and_close_confirms_nothing_was_paid(adapter):
    out_trade_no = charge_id()
    credential = adapter.create_payment(payment(out_trade_no)).credential
    pay(credential, "fail")

    result = adapter.query_payment(out_trade_no=out_trade_no, currency="CNY", requested_at=credential["txnTime"])

    assert (result.status, result.amount, result.paid_at, result.raw["origRespCode"]) == ("failed", None, None, "01")
    assert adapter.close_payment(out_trade_no=out_trade_no, requested_at=credential["txnTime"]) is None


def test_close_of_an_unpaid_consume_succeeds_and_of_a_paid_one_is_refused(adapter):
    unpaid = charge_id()
    unpaid_credential = adapter.create_payment(payment(unpaid)).credential
    post_form(unpaid_credential)
    paid, credential, _ = paid_charge(adapter)

    assert adapter.close_payment(out_trade_no=unpaid, requested_at=unpaid_credential["txnTime"]) is None
    with pytest.raises(ChannelRejected) as excinfo:
        adapter.close_payment(out_trade_no=paid, requested_at=credential["txnTime"])
    assert excinfo.value.code == "trade_paid"


def test_paying_after_pay_timeout_fails_the_consume(adapter):
    out_trade_no = charge_id()
    expire = timezone.now() + dt.timedelta(seconds=2)
    credential = adapter.create_payment(payment(out_trade_no, time_expire=expire)).credential
    front = post_form(credential)
    time.sleep(2.1)

    late = requests.post(front.json()["pay_url"], data={"result": "success"}, headers={"Accept": "application/json"})

    assert late.json()["status"] == "failed"
    result = adapter.query_payment(out_trade_no=out_trade_no, currency="CNY", requested_at=credential["txnTime"])
    assert (result.status, result.raw["origRespMsg"]) == (PaymentStatus.FAILED, "交易超时")
    assert adapter.close_payment(out_trade_no=out_trade_no, requested_at=credential["txnTime"]) is None


def test_the_gateway_refuses_a_tampered_form(adapter):
    credential = adapter.create_payment(payment(charge_id())).credential

    answer = post_form({**credential, "txnAmt": "1"})

    assert answer.status_code == 400
    assert answer.json() == {"respCode": "11", "respMsg": "验证签名失败"}


def test_the_cashier_page_is_html_for_a_person(adapter):
    credential = adapter.create_payment(payment(charge_id())).credential
    fields = {k: v for k, v in credential.items() if k != "channel_url"}

    page = requests.post(credential["channel_url"], data=fields, timeout=5)

    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert 'value="success"' in page.text and 'value="fail"' in page.text
    assert credential["orderId"] in page.text


# --- refunds -----------------------------------------------------------------------------------


def test_refund_is_accepted_then_succeeds_by_query_and_notification(adapter, receiver):
    out_trade_no, _, paid = paid_charge(adapter, receiver)
    request = refund_request(out_trade_no, paid["queryId"], "2.34", receiver.url)

    accepted = adapter.refund(request)
    queried = adapter.query_refund(
        out_trade_no=out_trade_no,
        out_refund_no=request.out_refund_no,
        currency="CNY",
        requested_at=accepted.raw["txnTime"],
    )
    notified = parse(adapter, receiver.bodies[1])

    assert (accepted.status, accepted.out_refund_no, accepted.amount) == (
        "pending",
        request.out_refund_no,
        request.amount,
    )
    assert len(accepted.refund_no) == 21 and accepted.raw["origQryId"] == paid["queryId"]
    assert queried.status == RefundStatus.SUCCEEDED
    assert (queried.refund_no, queried.amount) == (accepted.refund_no, Money("2.34", "CNY"))
    assert abs(queried.succeeded_at - timezone.now()) < dt.timedelta(minutes=1)
    assert isinstance(notified, RefundResult)
    assert (notified.status, notified.out_refund_no, notified.out_trade_no) == (
        RefundStatus.SUCCEEDED, request.out_refund_no, out_trade_no,
    )  # fmt: skip
    assert (notified.refund_no, notified.amount) == (accepted.refund_no, Money("2.34", "CNY"))
    assert notified.raw["origQryId"] == paid["queryId"]


def test_refunds_beyond_the_payment_or_of_an_unknown_payment_fail(adapter):
    out_trade_no, _, paid = paid_charge(adapter)
    adapter.refund(refund_request(out_trade_no, paid["queryId"], "12.00", ""))

    too_much = adapter.refund(refund_request(out_trade_no, paid["queryId"], "0.35", ""))
    unknown = adapter.refund(refund_request(out_trade_no, "999999999999999999999", "1.00", ""))
    rest = adapter.refund(refund_request(out_trade_no, paid["queryId"], "0.34", ""))

    assert (too_much.status, too_much.failure_code, too_much.failure_msg) == ("failed", "36", "退货金额超限")
    assert (unknown.status, unknown.failure_code) == ("failed", "35")
    assert rest.status == RefundStatus.PENDING


def test_a_refund_sent_again_answers_its_first_outcome_not_a_failure(adapter):
    """UnionPay refuses a used orderId (12 重复交易) instead of deduplicating; paysys submits a
    refund again when a task runs twice, so the repeat must report the refund, not fail it."""
    out_trade_no, _, paid = paid_charge(adapter)
    request = dataclasses.replace(
        refund_request(out_trade_no, paid["queryId"], "2.34", ""), requested_at=timezone.now()
    )
    first = adapter.refund(request)

    again = adapter.refund(request)
    other = adapter.refund(dataclasses.replace(request, requested_at=request.requested_at - dt.timedelta(hours=1)))

    assert first.status == RefundStatus.PENDING
    assert (again.status, again.refund_no, again.amount) == (RefundStatus.SUCCEEDED, first.refund_no, request.amount)
    assert (other.status, other.failure_code) == (RefundStatus.FAILED, "12")  # the orderId is another txnTime's


def test_query_refund_of_an_unknown_refund_is_not_found(adapter):
    result = adapter.query_refund(
        out_trade_no=charge_id(), out_refund_no=new_public_id("re"), currency="CNY", requested_at="20260101000000"
    )
    assert result.status == RefundStatus.NOT_FOUND


# --- notifications -----------------------------------------------------------------------------


def test_payment_notification_verifies_and_states_the_payment(adapter, receiver):
    out_trade_no, credential, paid = paid_charge(adapter, receiver)

    assert len(receiver.bodies) == 1
    result = parse(adapter, receiver.bodies[0])

    assert isinstance(result, PaymentResult)
    assert (result.out_trade_no, result.status) == (out_trade_no, PaymentStatus.SUCCEEDED)
    assert (result.transaction_no, result.amount) == (paid["queryId"], Money("12.34", "CNY"))
    assert abs(result.paid_at - timezone.now()) < dt.timedelta(minutes=1)
    assert result.raw["txnTime"] == credential["txnTime"]
    assert result.raw["signPubKeyCert"].startswith("-----BEGIN CERTIFICATE-----\r\n")


def test_notification_replies():
    assert UnionPayAdapter.notification_ack(None) == ProviderReply(200, b"ok")
    assert UnionPayAdapter.notification_nack(None) == ProviderReply(400, b"fail")


def _tampered(body: bytes, change: dict) -> bytes:
    fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
    for key, value in change.items():
        if value is None:
            fields.pop(key)
        else:
            fields[key] = value
    return urlencode(fields).encode()


@pytest.mark.parametrize(
    "change",
    [{"txnAmt": "1"}, {"orderId": "Zz9Zz9Zz9Zz9Zz9Zz9Zz9Zz9"}, {"signature": "AAAA"}, {"signature": None},
     {"signPubKeyCert": None}, {"extra": "x"}],
    ids=["amount", "order", "bad-signature", "no-signature", "no-cert", "added-field"],
)  # fmt: skip
def test_a_tampered_notification_is_invalid(adapter, receiver, change):
    paid_charge(adapter, receiver)

    with pytest.raises(NotificationInvalid):
        parse(adapter, _tampered(receiver.bodies[0], change))


def _forged_cert(*, cn: str, issuer_cert_pem: str | None, issuer_key=None) -> tuple[str, object]:
    """A signing certificate for a made-up issuer (or a self-made CA) and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = crypto.rsa_generate()
    if issuer_key is None:
        issuer_key = crypto.rsa_generate()
    issuer_name = (
        proto.load_certificate(issuer_cert_pem).subject
        if issuer_cert_pem
        else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CFCA TEST OCA1 (sandbox)")])
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(issuer_key, hashes.SHA256())
    )
    from cryptography.hazmat.primitives import serialization

    pem = cert.public_bytes(serialization.Encoding.PEM).decode().replace("\n", "\r\n")
    return pem, key


def _resigned(body: bytes, cert_pem: str, key) -> bytes:
    fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
    fields["signPubKeyCert"] = cert_pem
    fields["signature"] = proto.sign(fields, crypto.private_key_pem(key))
    return urlencode(fields).encode()


def test_a_notification_signed_by_a_cert_outside_the_chain_is_invalid(adapter, receiver):
    paid_charge(adapter, receiver)
    # Same CN and issuer name as the sandbox's, but issued by another key: it does not chain.
    pem, key = _forged_cert(cn="041@Z12@00040000:SIGN@00000062", issuer_cert_pem=None)

    with pytest.raises(NotificationInvalid, match="not issued by"):
        parse(adapter, _resigned(receiver.bodies[0], pem, key))


def test_a_notification_signed_by_a_merchant_cert_of_the_same_ca_fails_the_cn_check(adapter, credentials, receiver):
    """A merchant certificate chains to the same middle CA, yet its CN does not name UnionPay."""
    paid_charge(adapter, receiver)
    forged = _resigned(
        receiver.bodies[0], credentials["sign_cert"], crypto.load_private_key(credentials["sign_private_key"])
    )

    with pytest.raises(NotificationInvalid, match="CN"):
        parse(adapter, forged)


def test_cn_check_mode_refuses_the_test_certificate(base_url, credentials, receiver):
    strict = make_adapter(base_url, {**credentials, "validate_cn_name": True}, account_id=2)
    lenient = make_adapter(base_url, credentials)
    paid_charge(lenient, receiver)

    assert parse(lenient, receiver.bodies[0]).status == PaymentStatus.SUCCEEDED
    with pytest.raises(NotificationInvalid, match="CN"):
        parse(strict, receiver.bodies[0])


def test_a_notification_for_another_mer_id_is_invalid(base_url, credentials, receiver):
    adapter = make_adapter(base_url, credentials)
    other = make_adapter(base_url, {**credentials, "mer_id": "777000000000009"}, account_id=3)
    paid_charge(adapter, receiver)

    with pytest.raises(NotificationInvalid, match="another merId"):
        parse(other, receiver.bodies[0])


# --- tampered or broken answers ----------------------------------------------------------------


def test_answers_are_verified_against_the_configured_root(base_url, credentials):
    other = sandbox_account()  # the same sandbox PKI: its root verifies too
    foreign_root, _ = _forged_cert(cn="root", issuer_cert_pem=None)
    trusting_other = make_adapter(base_url, {**credentials, "root_cert": other["root_cert"]}, account_id=4)
    wrong_root = make_adapter(base_url, {**credentials, "root_cert": foreign_root}, account_id=5)

    result = trusting_other.query_payment(out_trade_no=charge_id(), currency="CNY", requested_at="20260101000000")
    with pytest.raises(ChannelResponseInvalid) as excinfo:
        wrong_root.query_payment(out_trade_no=charge_id(), currency="CNY", requested_at="20260101000000")

    assert result.status == PaymentStatus.NOT_FOUND
    assert excinfo.value.code == "invalid_signature"


def _serve(status: int, body: bytes) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_tampered_answer_is_invalid(adapter, credentials, base_url):
    out_trade_no, credential, _ = paid_charge(adapter)
    fields = {
        "version": "5.1.0", "encoding": "UTF-8", "signMethod": "01", "txnType": "00", "txnSubType": "00",
        "bizType": "000201", "accessType": "0", "merId": credentials["mer_id"],
        "orderId": out_trade_no[3:], "txnTime": credential["txnTime"], "certId": credentials["sign_cert_id"],
    }  # fmt: skip
    fields["signature"] = proto.sign(fields, credentials["sign_private_key"])
    genuine = requests.post(f"{base_url}queryTrans.do", data=fields, timeout=5).text
    tampered = genuine.replace("txnAmt=1234", "txnAmt=1")
    assert tampered != genuine
    for body, code in ((tampered, "invalid_signature"), (genuine, None)):
        server = _serve(200, body.encode())
        try:
            url = f"http://127.0.0.1:{server.server_address[1]}/gateway/api/"
            fake = make_adapter(url, credentials, account_id=6)
            if code is None:
                result = fake.query_payment(
                    out_trade_no=out_trade_no, currency="CNY", requested_at=credential["txnTime"]
                )
                assert result.amount == Money("12.34", "CNY")
            else:
                with pytest.raises(ChannelResponseInvalid) as excinfo:
                    fake.query_payment(out_trade_no=out_trade_no, currency="CNY", requested_at=credential["txnTime"])
                assert excinfo.value.code == code
        finally:
            server.shutdown()
            server.server_close()


@pytest.mark.parametrize(
    "status, body, expected, code",
    [
        (502, b"bad gateway", ChannelUnavailable, "http_502"),
        (200, b"<html>not k=v</html>", ChannelResponseInvalid, "unreadable_response"),
        (200, b"respCode=11&respMsg=bad", ChannelRejected, "11"),
        (200, b"respCode=00&respMsg=ok", ChannelResponseInvalid, "unsigned_response"),
    ],
    ids=["5xx", "html", "unsigned-refusal", "unsigned-success"],
)
def test_a_broken_gateway_answer_is_translated(credentials, status, body, expected, code):
    server = _serve(status, body)
    try:
        adapter = make_adapter(f"http://127.0.0.1:{server.server_address[1]}/gateway/api/", credentials, account_id=7)
        with pytest.raises(expected) as excinfo:
            adapter.query_payment(out_trade_no=charge_id(), currency="CNY", requested_at="20260101000000")
    finally:
        server.shutdown()
        server.server_close()
    assert excinfo.value.code == code


def test_a_gateway_refusing_connections_is_unavailable_and_one_never_answering_times_out(credentials):
    refused = make_adapter("http://127.0.0.1:9/gateway/api/", credentials, account_id=8)
    with pytest.raises(ChannelUnavailable) as excinfo:
        refused.query_payment(out_trade_no=charge_id(), currency="CNY", requested_at="20260101000000")
    assert (excinfo.value.code, excinfo.value.reached_provider) == ("connection_failed", False)

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        port = listener.getsockname()[1]
        slow = make_adapter(f"http://127.0.0.1:{port}/gateway/api/", credentials, account_id=9, timeout=0.5)
        with pytest.raises(ChannelTimeout) as excinfo:
            slow.query_payment(out_trade_no=charge_id(), currency="CNY", requested_at="20260101000000")
    finally:
        listener.close()
    assert excinfo.value.code == "timeout"


def test_unusable_credentials_are_a_configuration_failure(base_url):
    adapter = make_adapter(base_url, {"mer_id": "777000000000001"}, account_id=10)

    with pytest.raises(ChannelUnavailable) as excinfo:
        adapter.query_payment(out_trade_no=charge_id(), currency="CNY", requested_at="20260101000000")

    assert (excinfo.value.code, excinfo.value.reached_provider) == ("account_misconfigured", False)


# --- the reconciliation file -------------------------------------------------------------------


def _today() -> dt.date:
    return timezone.now().astimezone(SHANGHAI).date()


def test_bill_download_and_parse_gives_exact_lines(adapter, credentials):
    first, _, first_paid = paid_charge(adapter, amount="12.34")
    second, _, second_paid = paid_charge(adapter, amount="100.00")
    refund = refund_request(second, second_paid["queryId"], "30.00", "", total="100.00")
    accepted = adapter.refund(refund)
    dest = io.BytesIO()

    name = adapter.download_bill(bill_date=_today(), dest=dest)
    dest.seek(0)
    lines = list(adapter.parse_bill(dest))

    day = _today()
    assert name == f"{credentials['mer_id']}_{day:%Y%m%d}.zip"
    members = zipfile.ZipFile(io.BytesIO(dest.getvalue())).namelist()
    assert f"{credentials['mer_id']}_{day:%Y%m%d}/INN{day:%y%m%d}88ZM_{credentials['mer_id']}" in members
    assert [(line.kind, line.out_trade_no, line.trade_no, line.amount, line.fee) for line in lines] == [
        (BillLineKind.PAYMENT, first, first_paid["queryId"], 1234, 7),
        (BillLineKind.PAYMENT, second, second_paid["queryId"], 10000, 60),
        (BillLineKind.REFUND, second, second_paid["queryId"], 3000, 18),
    ]
    assert (lines[2].out_refund_no, lines[2].refund_no) == (refund.out_refund_no, accepted.refund_no)
    assert {(line.status, line.currency) for line in lines} == {("succeeded", "CNY")}
    assert all(abs(line.occurred_at - timezone.now()) < dt.timedelta(minutes=2) for line in lines)


def test_tomorrows_bill_is_not_ready_and_a_broken_file_is_invalid(adapter):
    with pytest.raises(BillNotReady) as excinfo:
        adapter.download_bill(bill_date=_today() + dt.timedelta(days=1), dest=io.BytesIO())
    assert excinfo.value.code == "98"

    from apps.channels.adapters.base import BillInvalid

    with pytest.raises(BillInvalid):
        list(adapter.parse_bill(io.BytesIO(b"not a zip")))
    truncated = io.BytesIO()
    with zipfile.ZipFile(truncated, "w") as archive:
        archive.writestr("x/INN26010188ZM_777000000000001", b"S22 short line\r\n")
    truncated.seek(0)
    with pytest.raises(BillInvalid, match="truncated"):
        list(adapter.parse_bill(truncated))


# --- faults, as the adapter sees them ----------------------------------------------------------


def test_fault_notify_lost(adapter, credentials, receiver):
    set_fault("notify_lost", mer_id=credentials["mer_id"], remaining=1)
    out_trade_no, credential, _ = paid_charge(adapter, receiver)

    assert receiver.bodies == []
    assert adapter.query_payment(
        out_trade_no=out_trade_no, currency="CNY", requested_at=credential["txnTime"]
    ).status == (PaymentStatus.SUCCEEDED)


def test_fault_notify_delay(adapter, credentials, receiver):
    set_fault("notify_delay", mer_id=credentials["mer_id"], params={"seconds": 1}, remaining=1)
    out_trade_no, _, _ = paid_charge(adapter, receiver)

    assert receiver.bodies == []
    assert run_sandbox_sweep()["requeued"] == 0  # not yet due
    time.sleep(1.1)
    assert run_sandbox_sweep()["requeued"] == 1
    assert parse(adapter, receiver.bodies[0]).out_trade_no == out_trade_no


def test_fault_notify_duplicate(adapter, credentials, receiver):
    set_fault("notify_duplicate", mer_id=credentials["mer_id"], remaining=1)
    out_trade_no, _, _ = paid_charge(adapter, receiver)

    assert len(receiver.bodies) == 2
    assert [parse(adapter, body).out_trade_no for body in receiver.bodies] == [out_trade_no, out_trade_no]


def test_fault_notify_out_of_order_sends_the_refund_first(adapter, credentials, receiver):
    set_fault("notify_out_of_order", mer_id=credentials["mer_id"], remaining=1)
    out_trade_no, credential, paid = paid_charge(adapter, receiver)
    assert receiver.bodies == []
    # paysys learns of the payment by the active query, refunds, then hears both, refund first.
    assert adapter.query_payment(
        out_trade_no=out_trade_no, currency="CNY", requested_at=credential["txnTime"]
    ).status == ("succeeded")
    adapter.refund(refund_request(out_trade_no, paid["queryId"], "1.00", receiver.url))

    kinds = [type(parse(adapter, body)) for body in receiver.bodies]
    assert kinds == [RefundResult, PaymentResult]


def test_fault_notify_amount_differs(adapter, credentials, receiver):
    set_fault("notify_amount_differs", mer_id=credentials["mer_id"], params={"delta": 100}, remaining=1)
    paid_charge(adapter, receiver)

    assert parse(adapter, receiver.bodies[0]).amount == Money("13.34", "CNY")


def test_fault_notify_failing_receiver_is_retried_five_times_in_all(adapter, receiver):
    receiver.statuses = [500, 500, 500, 500, 500]
    paid_charge(adapter, receiver)

    assert len(receiver.bodies) == 5


def test_fault_timeout_query(base_url, credentials):
    adapter = make_adapter(base_url, credentials, timeout=0.5)
    out_trade_no, credential, _ = paid_charge(adapter)
    set_fault("timeout_query", mer_id=credentials["mer_id"], params={"seconds": 1.5}, remaining=1)

    with pytest.raises(ChannelTimeout):
        adapter.query_payment(out_trade_no=out_trade_no, currency="CNY", requested_at=credential["txnTime"])
    time.sleep(1.2)
    assert adapter.query_payment(
        out_trade_no=out_trade_no, currency="CNY", requested_at=credential["txnTime"]
    ).status == ("succeeded")


def test_fault_timeout_refund_makes_the_refund(base_url, credentials):
    adapter = make_adapter(base_url, credentials, timeout=0.5)
    out_trade_no, _, paid = paid_charge(adapter)
    set_fault("timeout_refund", mer_id=credentials["mer_id"], params={"seconds": 1.5}, remaining=1)
    request = refund_request(out_trade_no, paid["queryId"], "1.00", "")
    before = timezone.now()

    with pytest.raises(ChannelTimeout):
        adapter.refund(request)
    time.sleep(1.2)

    # The refund's txnTime is what the adapter sent; paysys keeps it from the attempt.
    found = None
    for seconds in range(4):
        requested_at = (before + dt.timedelta(seconds=seconds)).astimezone(SHANGHAI).strftime("%Y%m%d%H%M%S")
        result = adapter.query_refund(
            out_trade_no=out_trade_no, out_refund_no=request.out_refund_no, currency="CNY", requested_at=requested_at
        )
        if result.status != RefundStatus.NOT_FOUND:
            found = result
            break
    assert found is not None and found.status == RefundStatus.SUCCEEDED


def test_fault_timeout_create_and_create_timeout_paid(adapter, credentials):
    slow = adapter.create_payment(payment(charge_id())).credential
    paid_anyway_id = charge_id()
    paid_anyway = adapter.create_payment(payment(paid_anyway_id)).credential
    set_fault("timeout_create", mer_id=credentials["mer_id"], order_id=slow["orderId"], params={"seconds": 1.5})
    set_fault("create_timeout_paid", mer_id=credentials["mer_id"], order_id=paid_anyway["orderId"],
              params={"seconds": 1.5})  # fmt: skip

    for credential in (slow, paid_anyway):
        with pytest.raises(requests.Timeout):
            post_form(credential, timeout=0.5)
    time.sleep(1.2)

    slow_result = adapter.query_payment(
        out_trade_no="ch_" + slow["orderId"], currency="CNY", requested_at=slow["txnTime"]
    )
    paid_result = adapter.query_payment(
        out_trade_no=paid_anyway_id, currency="CNY", requested_at=paid_anyway["txnTime"]
    )
    assert slow_result.status == PaymentStatus.NOT_FOUND
    assert paid_result.status == PaymentStatus.SUCCEEDED


@pytest.mark.parametrize("operation", ["query", "refund", "file", "front"])
def test_fault_5xx(adapter, credentials, operation):
    out_trade_no, credential, paid = paid_charge(adapter)
    set_fault("error_5xx", mer_id=credentials["mer_id"], params={"operations": [operation]}, remaining=1)

    calls = {
        "query": lambda: adapter.query_payment(
            out_trade_no=out_trade_no, currency="CNY", requested_at=credential["txnTime"]
        ),
        "refund": lambda: adapter.refund(refund_request(out_trade_no, paid["queryId"], "1.00", "")),
        "file": lambda: adapter.download_bill(bill_date=_today(), dest=io.BytesIO()),
    }
    if operation == "front":
        assert post_form(adapter.create_payment(payment(charge_id())).credential).status_code == 503
        return
    with pytest.raises(ChannelUnavailable) as excinfo:
        calls[operation]()
    assert (excinfo.value.code, excinfo.value.reached_provider) == ("http_503", True)
    calls[operation]()  # fired once: the next call goes through


def test_a_5xx_armed_for_refund_is_not_spent_by_a_query(adapter, credentials):
    """Regression: the sandbox used to spend a 5xx fault limited to one operation on any operation."""
    out_trade_no, credential, paid = paid_charge(adapter)
    set_fault("error_5xx", mer_id=credentials["mer_id"], params={"operations": ["refund"]}, remaining=1)

    queried = adapter.query_payment(out_trade_no=out_trade_no, currency="CNY", requested_at=credential["txnTime"])
    assert queried.status == PaymentStatus.SUCCEEDED
    with pytest.raises(ChannelUnavailable):  # still armed: the refund it targets gets it
        adapter.refund(refund_request(out_trade_no, paid["queryId"], "1.00", ""))
    assert adapter.refund(refund_request(out_trade_no, paid["queryId"], "1.00", "")).status == RefundStatus.PENDING


def test_fault_refund_never_notifies(adapter, credentials, receiver):
    out_trade_no, _, paid = paid_charge(adapter, receiver)
    set_fault("refund_never_notifies", mer_id=credentials["mer_id"], order_id=paid["orderId"])
    request = refund_request(out_trade_no, paid["queryId"], "1.00", receiver.url)

    accepted = adapter.refund(request)

    assert len(receiver.bodies) == 1  # the payment's only
    result = adapter.query_refund(
        out_trade_no=out_trade_no,
        out_refund_no=request.out_refund_no,
        currency="CNY",
        requested_at=accepted.raw["txnTime"],
    )
    assert result.status == RefundStatus.SUCCEEDED


@pytest.mark.parametrize(
    "kind", ["bill_missing_line", "bill_extra_line", "bill_altered_line", "bill_altered_fee", "bill_altered_status"]
)
def test_fault_bill_lines(adapter, credentials, kind):
    first, _, _ = paid_charge(adapter, amount="10.00")
    second, _, second_paid = paid_charge(adapter, amount="20.00")
    params = {"delta": 100, "amount": 700}
    if kind in ("bill_altered_fee", "bill_altered_status"):
        params = {"field": kind.rsplit("_", 1)[1], "delta": 5}
    set_fault(kind.replace("_fee", "_line").replace("_status", "_line"), mer_id=credentials["mer_id"],
              order_id="" if kind == "bill_extra_line" else second_paid["orderId"], params=params)  # fmt: skip
    dest = io.BytesIO()
    adapter.download_bill(bill_date=_today(), dest=dest)
    dest.seek(0)

    lines = {line.out_trade_no: line for line in adapter.parse_bill(dest)}

    assert lines[first].amount == 1000
    if kind == "bill_missing_line":
        assert set(lines) == {first}
    elif kind == "bill_extra_line":
        extra = set(lines) - {first, second}
        assert len(extra) == 1 and lines[extra.pop()].amount == 700
    elif kind == "bill_altered_line":
        assert lines[second].amount == 2100
    elif kind == "bill_altered_status":  # listed as cancelled (消费撤销) instead of settled
        assert (lines[second].kind, lines[second].status, lines[second].amount) == (
            BillLineKind.PAYMENT, "closed", 2000,
        )  # fmt: skip
        assert lines[first].status == "succeeded"
    else:
        assert (lines[second].amount, lines[second].fee) == (2000, 17)
