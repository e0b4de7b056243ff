"""The WeChat Pay sandbox's own rules, through the wechatpayv3 SDK and raw HTTP (live server)."""

import io
import json
import time

import pytest
import requests
from django.core.management import call_command
from wechatpayv3 import WeChatPay, WeChatPayType

from apps.core import crypto
from apps.sandbox import wechatpay_protocol as proto
from apps.sandbox import wechatpay_services as services
from apps.sandbox.models import WechatpayNotification, WechatpayTransaction

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def credentials(transactional_db) -> dict:
    out = io.StringIO()
    call_command("sandbox_account_create", provider="wechatpay", json=True, stdout=out)
    return json.loads(out.getvalue())


@pytest.fixture
def gateway(live_server) -> str:
    return f"{live_server.url}/sandbox/wechatpay"


@pytest.fixture
def sdk(credentials, gateway) -> WeChatPay:
    client = WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE,
        mchid=credentials["mchid"],
        private_key=credentials["merchant_private_key"],
        cert_serial_no=credentials["merchant_cert_serial_no"],
        appid=credentials["appid"],
        apiv3_key=credentials["apiv3_key"],
        public_key=credentials["platform_public_key"],
        public_key_id=credentials["platform_public_key_id"],
        timeout=5,
    )
    client._core._gate_way = gateway
    return client


def _verify(response: requests.Response, credentials: dict) -> bool:
    message = f"{response.headers['Wechatpay-Timestamp']}\n{response.headers['Wechatpay-Nonce']}\n".encode()
    return crypto.rsa_verify(
        credentials["platform_public_key"], message + response.content + b"\n", response.headers["Wechatpay-Signature"]
    )


def _order(sdk, out_trade_no: str, notify_url: str = "http://127.0.0.1:9/notify") -> dict:
    code, text = sdk.pay(
        description="sandbox", out_trade_no=out_trade_no, amount={"total": 100, "currency": "CNY"},
        notify_url=notify_url,
    )  # fmt: skip
    assert code == 200, text
    return json.loads(text)


def test_sdk_native_order_and_query(sdk, credentials, live_server):
    document = _order(sdk, "sbx_native_1")
    assert document["code_url"].startswith(f"{live_server.url}/sandbox/wechatpay/pay/")
    code, text = sdk.query(out_trade_no="sbx_native_1")
    assert code == 200
    assert json.loads(text) == {
        "appid": credentials["appid"], "mchid": credentials["mchid"], "out_trade_no": "sbx_native_1",
        "trade_type": "NATIVE", "trade_state": "NOTPAY", "trade_state_desc": "订单未支付", "attach": "",
        "amount": {"total": 100, "currency": "CNY"},
    }  # fmt: skip
    code, body = sdk.close(out_trade_no="sbx_native_1")
    assert (code, body) == (204, b"")  # signed, verified by the SDK, empty


def test_unsigned_and_forged_requests_are_refused_and_nothing_is_created(gateway, credentials, sdk):
    body = json.dumps({"mchid": credentials["mchid"], "appid": credentials["appid"]}).encode()
    unsigned = requests.post(f"{gateway}/v3/pay/transactions/native", data=body, timeout=5)
    assert unsigned.status_code == 401 and unsigned.json()["code"] == "SIGN_ERROR"

    # A valid Authorization for one body, sent with another: the signature covers the raw bytes.
    timestamp, nonce = str(int(time.time())), "N" * 32
    message = proto.request_message("POST", "/v3/pay/transactions/native", timestamp, nonce, body)
    signature = crypto.rsa_sign(credentials["merchant_private_key"], message)
    header = (
        f'WECHATPAY2-SHA256-RSA2048 mchid="{credentials["mchid"]}",nonce_str="{nonce}",signature="{signature}",'
        f'timestamp="{timestamp}",serial_no="{credentials["merchant_cert_serial_no"]}"'
    )
    signed = requests.post(
        f"{gateway}/v3/pay/transactions/native", data=body, headers={"Authorization": header}, timeout=5
    )
    assert signed.status_code == 400  # the signature verified; the order itself is incomplete
    forged = requests.post(
        f"{gateway}/v3/pay/transactions/native", data=body + b" ", headers={"Authorization": header}, timeout=5
    )
    assert forged.status_code == 401 and forged.json() == {"code": "SIGN_ERROR", "message": "签名错误"}
    assert _verify(forged, credentials)  # errors for a known merchant are signed too
    assert forged.headers["Wechatpay-Serial"] == credentials["platform_public_key_id"]
    assert forged.headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    assert WechatpayTransaction.objects.count() == 0


def test_errors_are_signed_json(sdk, credentials):
    code, text = sdk.query(out_trade_no="sbx_missing")
    assert code == 404 and json.loads(text) == {"code": "ORDER_NOT_EXIST", "message": "订单不存在"}


def test_notification_is_retried_until_acknowledged(sdk, credentials, monkeypatch):
    _order(sdk, "sbx_retry_1")
    trade = WechatpayTransaction.objects.get(out_trade_no="sbx_retry_1")
    monkeypatch.setattr("apps.sandbox.tasks.sandbox_wechatpay_notify.apply_async", lambda *a, **k: None)
    services.wechatpay_transaction_settle(trade=trade, succeed=True)
    notification = WechatpayNotification.objects.get(transaction=trade)

    assert services.wechatpay_notification_deliver(notification_id=notification.id) is False  # port 9: refused

    notification.refresh_from_db()
    assert (notification.attempts, notification.delivered_at) == (1, None)
    assert notification.last_result.startswith("ConnectionError")


def test_notification_envelope_decrypts_with_the_apiv3_key(credentials):
    envelope = proto.notification_envelope(
        event_id="e1", create_time="2026-01-01T00:00:00+08:00", event_type="TRANSACTION.SUCCESS", summary="支付成功",
        original_type="transaction", resource={"out_trade_no": "x"}, apiv3_key=credentials["apiv3_key"],
    )  # fmt: skip
    from wechatpayv3.utils import aes_decrypt

    resource = envelope["resource"]
    plain = aes_decrypt(
        resource["nonce"], resource["ciphertext"], resource["associated_data"], credentials["apiv3_key"]
    )
    assert json.loads(plain) == {"out_trade_no": "x"}
    assert len(resource["nonce"]) == 12 and resource["original_type"] == "transaction"
