import pytest
import requests
from alipay import AliPay

from apps.core import crypto
from apps.sandbox import alipay_protocol as proto
from apps.sandbox import tasks
from apps.sandbox.models import AlipayNotification, AlipayTrade

pytestmark = pytest.mark.django_db(transaction=True)


def _paid(sdk, receiver, out_trade_no="ch_n"):
    qr = sdk.api_alipay_trade_precreate(
        subject="Book", out_trade_no=out_trade_no, total_amount="20.00", notify_url=receiver.url
    )["qr_code"]
    requests.post(qr, data={"result": "success"}, timeout=5)
    return AlipayTrade.objects.select_related("app").get(out_trade_no=out_trade_no)


def test_payment_sends_a_signed_form_with_alipay_fields_and_no_empty_values(sdk, alipay_app, receiver):
    trade = _paid(sdk, receiver)

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    form = request["form"]
    assert request["content_type"] == "application/x-www-form-urlencoded"
    notification = AlipayNotification.objects.get()
    assert form == {
        "notify_time": form["notify_time"],
        "notify_type": "trade_status_sync",
        "notify_id": notification.notify_id,
        "app_id": alipay_app.app_id,
        "auth_app_id": alipay_app.app_id,
        "charset": "utf-8",
        "version": "1.0",
        "sign_type": "RSA2",
        "sign": form["sign"],
        "trade_no": trade.trade_no,
        "out_trade_no": "ch_n",
        "buyer_id": trade.buyer_user_id,
        "buyer_logon_id": trade.buyer_logon_id,
        "seller_id": alipay_app.app.seller_id,
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "20.00",
        "receipt_amount": "20.00",
        "invoice_amount": "20.00",
        "buyer_pay_amount": "20.00",
        "point_amount": "0.00",
        "subject": "Book",
        "gmt_create": proto.format_time(trade.created_at),
        "gmt_payment": proto.format_time(trade.paid_at),
        "fund_bill_list": '[{"amount":"20.00","fundChannel":"ALIPAYACCOUNT"}]',
    }
    assert all(value != "" for value in form.values())
    # The official rule (sign and sign_type removed) and the SDK's verify() both accept it.
    official = "&".join(f"{k}={v}" for k, v in sorted(form.items()) if k not in ("sign", "sign_type"))
    assert crypto.rsa_verify(alipay_app.alipay_public_key, official.encode(), form["sign"])
    merchant = AliPay(
        appid=alipay_app.app_id,
        app_private_key_string=alipay_app.app_private_key,
        alipay_public_key_string=alipay_app.alipay_public_key,
    )
    unsigned = {k: v for k, v in form.items() if k != "sign"}
    assert merchant.verify(unsigned, form["sign"]) is True
    notification.refresh_from_db()
    assert notification.attempts == 1 and notification.delivered_at is not None


def test_the_task_delivers_synchronously_and_is_idempotent_once_delivered(sdk, receiver):
    receiver.answers = [b"fail"] * 5  # the merchant refuses every attempt while paying
    _paid(sdk, receiver)
    notification = AlipayNotification.objects.get()
    notification.refresh_from_db()
    assert (notification.attempts, notification.delivered_at) == (5, None)  # 1 + 4 retries, then gives up
    assert notification.last_result == "HTTP 200: b'fail'"

    tasks.sandbox_alipay_notify.run(notification.id)
    tasks.sandbox_alipay_notify.run(notification.id)

    notification.refresh_from_db()
    assert notification.attempts == 6 and notification.delivered_at is not None
    assert len(receiver.requests) == 6
    assert len({r["form"]["notify_id"] for r in receiver.requests}) == 1  # one notify_id across retries


def test_only_exactly_success_counts_as_delivered(sdk, receiver):
    receiver.answers = [b"success\n", b"SUCCESS", b"success"]

    _paid(sdk, receiver)

    notification = AlipayNotification.objects.get()
    assert notification.attempts == 3 and notification.delivered_at is not None


def test_no_notification_without_notify_url(sdk):
    qr = sdk.api_alipay_trade_precreate(subject="A", out_trade_no="ch_quiet", total_amount="1.00")["qr_code"]

    requests.post(qr, data={"result": "success"}, timeout=5)

    assert AlipayNotification.objects.count() == 0


def test_an_unreachable_notify_url_is_recorded_and_retried_within_bounds(sdk):
    qr = sdk.api_alipay_trade_precreate(
        subject="A", out_trade_no="ch_down", total_amount="1.00", notify_url="http://127.0.0.1:9/notify"
    )["qr_code"]

    requests.post(qr, data={"result": "success"}, timeout=30)

    notification = AlipayNotification.objects.get()
    assert notification.attempts == len(tasks.NOTIFY_RETRY_COUNTDOWNS) + 1
    assert notification.delivered_at is None
    assert notification.last_result.startswith("ConnectionError")
