"""WechatpayAdapter (wechatpayv3 SDK) against the WeChat Pay sandbox over HTTP (live server)."""

import datetime as dt
import gzip
import http.server
import io
import json
import threading
import time
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
import requests
from django.core.management import call_command
from django.utils import timezone
from moneyed import Money

from apps.channels.adapters import adapter_class
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
    RefundRequest,
    RefundResult,
    RefundStatus,
)
from apps.channels.adapters.wechatpay import WechatpayAdapter
from apps.core import crypto

pytestmark = pytest.mark.django_db(transaction=True)

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(autouse=True)
def celery_eager():
    """The sandbox sends notifications and completes refunds from tasks: run them in-process."""
    from paysys.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


@pytest.fixture
def credentials(transactional_db) -> dict:
    out = io.StringIO()
    call_command("sandbox_account_create", provider="wechatpay", json=True, stdout=out)
    document = json.loads(out.getvalue())
    assert document.pop("provider") == "wechatpay"
    return document


_ids = iter(range(1000, 10**6))


def make_adapter(base_url: str, credentials: dict, *, timeout: float = 5.0) -> WechatpayAdapter:
    return WechatpayAdapter(
        AccountConfig(
            id=next(_ids),  # a fresh SDK client per adapter (the client cache is keyed by account id)
            provider="wechatpay",
            base_url=base_url,
            credentials=credentials,
            livemode=False,
            timeout_seconds=timeout,
        )
    )


@pytest.fixture
def base_url(live_server) -> str:
    return f"{live_server.url}/sandbox/wechatpay"


@pytest.fixture
def adapter(base_url, credentials) -> WechatpayAdapter:
    return make_adapter(base_url, credentials)


class Receiver:
    """paysys's notify URL stand-in: records headers and raw bodies, answers 204."""

    def __init__(self):
        self.requests: list[tuple[dict, bytes, float]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((dict(self.headers.items()), body, time.monotonic()))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify/wechatpay"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def event_types(self) -> list[str]:
        return [json.loads(body)["event_type"] for _, body, _ in self.requests]


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def payment(out_trade_no: str, notify_url: str, *, method: str = "wx_pub_qr", amount: str = "12.34", **extra):
    return PaymentRequest(
        out_trade_no=out_trade_no,
        method=method,
        amount=Money(amount, "CNY"),
        subject="Order 订单",
        body="",
        client_ip="203.0.113.7",
        time_expire=timezone.now() + dt.timedelta(hours=2),
        notify_url=notify_url,
        extra=extra,
    )


def pay(pay_url: str, result: str = "success") -> dict:
    response = requests.post(pay_url, data={"result": result}, headers={"Accept": "application/json"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def fault(base_url: str, credentials: dict, kind: str, *, out_trade_no: str = "", params=None, remaining=1):
    """Injects a sandbox fault through the sandbox's console endpoint (paysys never imports the sandbox)."""
    document = {"kind": kind, "mchid": credentials["mchid"], "out_trade_no": out_trade_no, "params": params or {},
                "remaining": remaining}  # fmt: skip
    response = requests.post(f"{base_url}/faults", json=document, timeout=5)
    assert response.status_code == 201, response.text


def refund_request(out_trade_no: str, transaction_no: str, out_refund_no: str, notify_url: str, amount="2.34"):
    return RefundRequest(
        out_trade_no=out_trade_no,
        transaction_no=transaction_no,
        out_refund_no=out_refund_no,
        amount=Money(amount, "CNY"),
        total_amount=Money("12.34", "CNY"),
        reason="顾客退货",
        notify_url=notify_url,
    )


def paid(adapter, receiver, out_trade_no: str) -> PaymentResult:
    code_url = adapter.create_payment(payment(out_trade_no, receiver.url)).credential
    pay(code_url)
    return adapter.query_payment(out_trade_no=out_trade_no, currency="CNY")


def notifications(adapter, receiver) -> list:
    return [adapter.parse_notification(headers=h, body=b) for h, b, _ in receiver.requests]


# --- capabilities and credentials ----------------------------------------------------------------


def test_capabilities_registry_and_credential_shape(credentials):
    assert adapter_class("wechatpay") is WechatpayAdapter
    assert WechatpayAdapter.methods == frozenset({"wx_pub_qr", "wx_pub", "wx_wap"})
    assert WechatpayAdapter.currencies == frozenset({"CNY"})
    assert WechatpayAdapter.refunds_notify is True
    assert sorted(credentials) == [
        "apiv3_key", "appid", "mchid", "merchant_cert_serial_no", "merchant_private_key", "platform_public_key",
        "platform_public_key_id",
    ]  # fmt: skip
    assert credentials["merchant_private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert credentials["platform_public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    assert credentials["platform_public_key_id"].startswith("PUB_KEY_ID_")
    assert len(credentials["apiv3_key"]) == 32
    assert len(credentials["mchid"]) == 10 and credentials["appid"].startswith("wx")


# --- pay, query, close -------------------------------------------------------------------------


def test_native_pay_query_and_payment_notification(adapter, receiver, live_server):
    created = adapter.create_payment(payment("wx_native_1", receiver.url))
    assert isinstance(created.credential, str)
    assert created.credential.startswith(f"{live_server.url}/sandbox/wechatpay/pay/")
    pending = adapter.query_payment(out_trade_no="wx_native_1", currency="CNY")
    assert pending.status == PaymentStatus.PENDING and pending.raw["trade_state"] == "NOTPAY"
    assert requests.get(created.credential, timeout=5).status_code == 200  # the payer's page

    pay(created.credential)

    result = adapter.query_payment(out_trade_no="wx_native_1", currency="CNY")
    assert result.status == PaymentStatus.SUCCEEDED
    assert result.amount == Money("12.34", "CNY")
    assert result.transaction_no and len(result.transaction_no) == 28
    assert result.paid_at.utcoffset() == dt.timedelta(hours=8)
    assert len(receiver.requests) == 1
    headers, body, _ = receiver.requests[0]
    assert headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    assert json.loads(body)["resource"]["algorithm"] == "AEAD_AES_256_GCM"
    notified = adapter.parse_notification(headers=headers, body=body)
    assert notified == PaymentResult(
        out_trade_no="wx_native_1",
        status=PaymentStatus.SUCCEEDED,
        transaction_no=result.transaction_no,
        amount=Money("12.34", "CNY"),
        paid_at=result.paid_at,
        raw=notified.raw,
    )
    # Django passes headers as META (HTTP_WECHATPAY_…): accepted too.
    meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
    assert adapter.parse_notification(headers=meta, body=body).status == PaymentStatus.SUCCEEDED


def test_same_order_again_is_the_same_code_and_another_amount_is_refused(adapter, receiver):
    first = adapter.create_payment(payment("wx_again", receiver.url)).credential
    assert adapter.create_payment(payment("wx_again", receiver.url)).credential == first
    with pytest.raises(ChannelRejected) as excinfo:
        adapter.create_payment(payment("wx_again", receiver.url, amount="12.35"))
    assert excinfo.value.code == "INVALID_REQUEST"


def test_jsapi_credential_is_signed_and_leads_the_payer_to_the_pay_page(adapter, receiver, base_url, credentials):
    created = adapter.create_payment(payment("wx_jsapi_1", receiver.url, method="wx_pub", open_id="oUser123"))
    credential = created.credential
    assert sorted(credential) == ["appId", "nonceStr", "package", "paySign", "signType", "timeStamp"]
    assert credential["appId"] == credentials["appid"]
    assert credential["timeStamp"].isdigit() and credential["signType"] == "RSA"
    assert credential["package"].startswith("prepay_id=wx")
    message = "".join(f"{credential[k]}\n" for k in ("appId", "timeStamp", "nonceStr", "package")).encode()
    public = crypto.public_key_pem(crypto.load_private_key(credentials["merchant_private_key"]))
    assert crypto.rsa_verify(public, message, credential["paySign"])

    bridge = requests.get(f"{base_url}/jsapi?{urlencode(credential)}", allow_redirects=False, timeout=5)
    assert bridge.status_code == 302
    pay(requests.compat.urljoin(base_url, bridge.headers["Location"]))
    result = adapter.query_payment(out_trade_no="wx_jsapi_1", currency="CNY")
    assert result.status == PaymentStatus.SUCCEEDED and result.raw["trade_type"] == "JSAPI"
    assert result.raw["payer"] == {"openid": "oUser123"}
    tampered = dict(credential, package=credential["package"][:-1] + "x")
    assert requests.get(f"{base_url}/jsapi?{urlencode(tampered)}", allow_redirects=False, timeout=5).status_code == 400


def test_jsapi_without_open_id_is_refused_before_the_call(adapter, receiver):
    with pytest.raises(ChannelRejected) as excinfo:
        adapter.create_payment(payment("wx_jsapi_2", receiver.url, method="wx_pub"))
    assert excinfo.value.code == "open_id_required" and excinfo.value.reached_provider is False


def test_h5_gives_a_url_to_the_pay_page(adapter, receiver, live_server):
    created = adapter.create_payment(payment("wx_h5_1", receiver.url, method="wx_wap"))
    assert created.credential.startswith(f"{live_server.url}/sandbox/wechatpay/pay/")
    pay(created.credential, "fail")
    result = adapter.query_payment(out_trade_no="wx_h5_1", currency="CNY")
    assert result.status == PaymentStatus.FAILED and result.raw["trade_type"] == "MWEB"
    assert receiver.requests == []  # WeChat notifies success only


def test_query_unknown_is_not_found_and_close(adapter, receiver):
    assert adapter.query_payment(out_trade_no="wx_nothing", currency="CNY").status == PaymentStatus.NOT_FOUND
    adapter.close_payment(out_trade_no="wx_nothing")  # never existed: no payment either way

    adapter.create_payment(payment("wx_close", receiver.url))
    adapter.close_payment(out_trade_no="wx_close")
    adapter.close_payment(out_trade_no="wx_close")  # again: still fine (204)
    assert adapter.query_payment(out_trade_no="wx_close", currency="CNY").status == PaymentStatus.CLOSED

    paid(adapter, receiver, "wx_paid_close")
    with pytest.raises(ChannelRejected) as excinfo:
        adapter.close_payment(out_trade_no="wx_paid_close")
    assert excinfo.value.code == "ORDERPAID"


# --- refunds -----------------------------------------------------------------------------------


def test_refund_processing_then_success_by_notification_and_query(adapter, receiver):
    result = paid(adapter, receiver, "wx_refund_1")

    accepted = adapter.refund(refund_request("wx_refund_1", result.transaction_no, "rf_1", receiver.url))

    assert accepted.status == RefundStatus.PENDING  # PROCESSING: WeChat refunds asynchronously
    assert accepted.amount == Money("2.34", "CNY") and accepted.refund_no
    queried = adapter.query_refund(out_trade_no="wx_refund_1", out_refund_no="rf_1", currency="CNY")
    assert queried.status == RefundStatus.SUCCEEDED
    assert queried.amount == Money("2.34", "CNY") and queried.succeeded_at is not None
    assert receiver.event_types() == ["TRANSACTION.SUCCESS", "REFUND.SUCCESS"]
    notified = notifications(adapter, receiver)[1]
    assert isinstance(notified, RefundResult)
    assert (notified.out_refund_no, notified.out_trade_no, notified.status, notified.amount, notified.refund_no) == (
        "rf_1", "wx_refund_1", RefundStatus.SUCCEEDED, Money("2.34", "CNY"), accepted.refund_no,
    )  # fmt: skip
    assert adapter.query_payment(out_trade_no="wx_refund_1", currency="CNY").raw["trade_state"] == "REFUND"
    assert (
        adapter.query_refund(out_trade_no="wx_refund_1", out_refund_no="rf_none", currency="CNY").status
        == RefundStatus.NOT_FOUND
    )
    with pytest.raises(ChannelRejected) as excinfo:  # more than what is left
        adapter.refund(refund_request("wx_refund_1", result.transaction_no, "rf_2", receiver.url, amount="10.01"))
    assert excinfo.value.code == "INVALID_REQUEST"


# --- signatures --------------------------------------------------------------------------------


def test_tampered_notifications_are_invalid(adapter, receiver, credentials, base_url):
    paid(adapter, receiver, "wx_tamper")
    headers, body, _ = receiver.requests[0]

    with pytest.raises(NotificationInvalid):
        adapter.parse_notification(headers=headers, body=body.replace(b'"id":"', b'"id":"x', 1))
    with pytest.raises(NotificationInvalid):
        adapter.parse_notification(headers={**headers, "Wechatpay-Timestamp": str(int(time.time()) - 10)}, body=body)
    with pytest.raises(NotificationInvalid):
        adapter.parse_notification(headers={**headers, "Wechatpay-Signature": ""}, body=body)
    with pytest.raises(NotificationInvalid):
        adapter.parse_notification(headers={**headers, "Wechatpay-Serial": "PUB_KEY_ID_OTHER"}, body=body)
    other_key = make_adapter(base_url, {**credentials, "apiv3_key": "A" * 32})
    with pytest.raises(NotificationInvalid):  # signature fine, but the resource does not decrypt
        other_key.parse_notification(headers=headers, body=body)


def test_responses_signed_by_another_platform_key_are_not_trusted(base_url, credentials, receiver):
    impostor = crypto.public_key_pem(crypto.rsa_generate())
    adapter = make_adapter(base_url, {**credentials, "platform_public_key": impostor})

    with pytest.raises(ChannelResponseInvalid) as excinfo:
        adapter.create_payment(payment("wx_impostor", receiver.url))
    assert excinfo.value.code == "invalid_signature"
    with pytest.raises(ChannelResponseInvalid):
        adapter.query_payment(out_trade_no="wx_impostor", currency="CNY")


def test_requests_signed_with_another_merchant_key_are_refused(base_url, credentials, receiver):
    other = crypto.private_key_pem(crypto.rsa_generate())
    adapter = make_adapter(base_url, {**credentials, "merchant_private_key": other})
    with pytest.raises(ChannelRejected) as excinfo:
        adapter.create_payment(payment("wx_forged", receiver.url))
    assert excinfo.value.code == "SIGN_ERROR"


# --- bills -------------------------------------------------------------------------------------


def _bill(adapter) -> tuple[bytes, list]:
    dest = io.BytesIO()
    name = adapter.download_bill(bill_date=timezone.localdate(timezone=SHANGHAI), dest=dest)
    assert name.endswith(".csv.gz")
    return dest.getvalue(), list(adapter.parse_bill(io.BytesIO(dest.getvalue())))


def test_bill_download_and_parse(adapter, receiver, credentials):
    first = paid(adapter, receiver, "wx_bill_1")
    second = paid(adapter, receiver, "wx_bill_2")
    adapter.refund(refund_request("wx_bill_1", first.transaction_no, "rf_bill_1", receiver.url, amount="2.34"))

    raw, lines = _bill(adapter)

    text = gzip.decompress(raw).decode("utf-8")
    rows = text.split("\r\n")
    assert rows[0].startswith("交易时间,公众账号ID,商户号,") and rows[-1] == ""
    assert rows[1].startswith("`") and rows[4].startswith("总交易单数,")
    assert rows[5] == "`3,`24.68,`2.34,`0.00,`0.13404,`24.68,`2.34"
    assert [(line.kind, line.out_trade_no, line.amount, line.fee, line.status) for line in lines] == [
        (BillLineKind.PAYMENT, "wx_bill_1", 1234, 7, "succeeded"),
        (BillLineKind.PAYMENT, "wx_bill_2", 1234, 7, "succeeded"),
        (BillLineKind.REFUND, "wx_bill_1", 234, 1, "succeeded"),
    ]  # 12.34 × 0.6% = 0.07404 -> 0.07; 2.34 × 0.6% = 0.01404 -> 0.01 (half up, to fen)
    assert lines[0].trade_no == first.transaction_no and lines[1].trade_no == second.transaction_no
    assert lines[2].out_refund_no == "rf_bill_1" and lines[2].refund_no.startswith("50000")
    assert lines[0].occurred_at == first.paid_at
    assert {line.currency for line in lines} == {"CNY"} and all(type(line.amount) is int for line in lines)


def test_a_past_day_without_trades_has_an_empty_bill_and_today_has_none_yet(adapter):
    dest = io.BytesIO()
    name = adapter.download_bill(bill_date=dt.date(2020, 1, 1), dest=dest)

    assert name.endswith("_20200101_ALL_no_trade.csv")
    assert list(adapter.parse_bill(io.BytesIO(dest.getvalue()))) == []
    with pytest.raises(BillNotReady) as excinfo:
        adapter.download_bill(bill_date=timezone.localdate(timezone=SHANGHAI), dest=io.BytesIO())
    assert excinfo.value.code == "NO_STATEMENT_EXIST"


def test_bill_truncated_is_invalid(adapter, receiver):
    from apps.channels.adapters.base import BillInvalid

    paid(adapter, receiver, "wx_bill_cut")
    raw, _ = _bill(adapter)
    text = gzip.decompress(raw)
    with pytest.raises(BillInvalid):
        list(adapter.parse_bill(io.BytesIO(text[: text.index("总交易单数".encode())])))


# --- faults ------------------------------------------------------------------------------------


def test_fault_timeout_on_create_query_and_refund(base_url, credentials, receiver):
    adapter = make_adapter(base_url, credentials, timeout=1.0)
    fault(base_url, credentials, "timeout_create", params={"seconds": 2})
    with pytest.raises(ChannelTimeout):
        adapter.create_payment(payment("wx_to_1", receiver.url))
    # The order was placed nonetheless: the query finds it.
    assert adapter.query_payment(out_trade_no="wx_to_1", currency="CNY").status == PaymentStatus.PENDING

    fault(base_url, credentials, "timeout_query", params={"seconds": 2})
    with pytest.raises(ChannelTimeout):
        adapter.query_payment(out_trade_no="wx_to_1", currency="CNY")

    result = paid(adapter, receiver, "wx_to_2")
    fault(base_url, credentials, "timeout_refund", out_trade_no="wx_to_2", params={"seconds": 2})
    with pytest.raises(ChannelTimeout):
        adapter.refund(refund_request("wx_to_2", result.transaction_no, "rf_to", receiver.url))
    time.sleep(1.5)  # the answer was lost, the refund went through: the refund query says so
    queried = adapter.query_refund(out_trade_no="wx_to_2", out_refund_no="rf_to", currency="CNY")
    assert queried.status == RefundStatus.SUCCEEDED
    time.sleep(1)  # let the sandbox's late answer finish before the test database goes away


def test_fault_5xx_is_unavailable_and_nothing_happens(adapter, receiver, credentials, base_url):
    fault(base_url, credentials, "error_5xx", params={"operations": ["create"]})
    with pytest.raises(ChannelUnavailable) as excinfo:
        adapter.create_payment(payment("wx_5xx", receiver.url))
    assert excinfo.value.code == "SYSTEM_ERROR" and excinfo.value.reached_provider is True
    assert adapter.query_payment(out_trade_no="wx_5xx", currency="CNY").status == PaymentStatus.NOT_FOUND


def test_a_5xx_armed_for_create_is_not_spent_by_other_operations(adapter, receiver, credentials, base_url):
    """Regression: the sandbox used to spend a 5xx fault limited to one operation on any operation."""
    existing = paid(adapter, receiver, "wx_5xx_other")
    fault(base_url, credentials, "error_5xx", params={"operations": ["create"]}, remaining=1)

    assert adapter.query_payment(out_trade_no="wx_5xx_other", currency="CNY").status == PaymentStatus.SUCCEEDED
    refunded = adapter.refund(refund_request("wx_5xx_other", existing.transaction_no, "rf_5xx", receiver.url))
    assert refunded.status == RefundStatus.PENDING
    with pytest.raises(ChannelUnavailable):  # still armed: the create it targets gets it
        adapter.create_payment(payment("wx_5xx_create", receiver.url))
    adapter.create_payment(payment("wx_5xx_create", receiver.url))  # spent once: the retry goes through


def test_fault_create_times_out_but_paid(base_url, credentials, receiver):
    adapter = make_adapter(base_url, credentials, timeout=1.0)
    fault(base_url, credentials, "create_timeout_paid", out_trade_no="wx_ctp", params={"seconds": 2})
    with pytest.raises(ChannelTimeout):
        adapter.create_payment(payment("wx_ctp", receiver.url))
    assert adapter.query_payment(out_trade_no="wx_ctp", currency="CNY").status == PaymentStatus.SUCCEEDED
    assert receiver.event_types() == ["TRANSACTION.SUCCESS"]
    time.sleep(1.5)  # let the sandbox's late answer finish before the test database goes away


def test_fault_notification_lost(adapter, receiver, credentials, base_url):
    fault(base_url, credentials, "notify_lost", out_trade_no="wx_lost")
    assert paid(adapter, receiver, "wx_lost").status == PaymentStatus.SUCCEEDED
    assert receiver.requests == []


def test_fault_notification_delayed(adapter, receiver, credentials, base_url):
    fault(base_url, credentials, "notify_delay", out_trade_no="wx_delay", params={"seconds": 2})
    code_url = adapter.create_payment(payment("wx_delay", receiver.url)).credential
    started = time.monotonic()
    pay(code_url)
    assert len(receiver.requests) == 1
    assert receiver.requests[0][2] - started >= 1.9


def test_fault_notification_duplicated(adapter, receiver, credentials, base_url):
    fault(base_url, credentials, "notify_duplicate", out_trade_no="wx_dup")
    paid(adapter, receiver, "wx_dup")
    assert receiver.event_types() == ["TRANSACTION.SUCCESS", "TRANSACTION.SUCCESS"]
    first, second = notifications(adapter, receiver)
    assert first == second
    assert json.loads(receiver.requests[0][1])["id"] == json.loads(receiver.requests[1][1])["id"]


def test_fault_notifications_out_of_order(adapter, receiver, credentials, base_url):
    fault(base_url, credentials, "notify_out_of_order", out_trade_no="wx_ooo")
    result = paid(adapter, receiver, "wx_ooo")
    assert receiver.requests == []  # the payment's notification is held back
    adapter.refund(refund_request("wx_ooo", result.transaction_no, "rf_ooo", receiver.url))
    assert receiver.event_types() == ["REFUND.SUCCESS", "TRANSACTION.SUCCESS"]


def test_fault_notification_amount_differs(adapter, receiver, credentials, base_url):
    fault(base_url, credentials, "notify_amount_differs", out_trade_no="wx_amt", params={"delta": 100})
    result = paid(adapter, receiver, "wx_amt")
    notified = notifications(adapter, receiver)[0]
    assert result.amount == Money("12.34", "CNY")
    assert notified.amount == Money("13.34", "CNY")


def test_fault_refund_never_notifies(adapter, receiver, credentials, base_url):
    fault(base_url, credentials, "refund_never_notifies", out_trade_no="wx_rnn")
    result = paid(adapter, receiver, "wx_rnn")
    adapter.refund(refund_request("wx_rnn", result.transaction_no, "rf_rnn", receiver.url))
    assert receiver.event_types() == ["TRANSACTION.SUCCESS"]
    queried = adapter.query_refund(out_trade_no="wx_rnn", out_refund_no="rf_rnn", currency="CNY")
    assert queried.status == RefundStatus.SUCCEEDED


def test_fault_bill_missing_extra_and_altered_lines(adapter, receiver, credentials, base_url):
    for no in ("wx_bl_1", "wx_bl_2", "wx_bl_3"):
        paid(adapter, receiver, no)
    fault(base_url, credentials, "bill_missing_line", out_trade_no="wx_bl_2")
    fault(base_url, credentials, "bill_altered_line", out_trade_no="wx_bl_3", params={"field": "amount"})
    fault(base_url, credentials, "bill_extra_line", params={"out_trade_no": "wx_ghost", "amount": 500})

    _, lines = _bill(adapter)

    assert [(line.out_trade_no, line.amount, line.fee) for line in lines] == [
        ("wx_bl_1", 1234, 7),
        ("wx_bl_3", 1235, 7),
        ("wx_ghost", 500, 3),
    ]
    # Each fault fired once: the next bill for the day is faithful.
    _, again = _bill(adapter)
    assert [(line.out_trade_no, line.amount) for line in again] == [
        ("wx_bl_1", 1234),
        ("wx_bl_2", 1234),
        ("wx_bl_3", 1234),
    ]
    assert sum(line.amount for line in again) == 3702
