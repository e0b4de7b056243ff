"""The UnionPay sandbox's own rules: signatures, the ZM layout, expiry, the console, notifications."""

import datetime as dt

import pytest
import requests
from django.utils import timezone

from apps.core import crypto
from apps.sandbox import unionpay_protocol as proto
from apps.sandbox import unionpay_services as services
from apps.sandbox.faults import fault_set
from apps.sandbox.models import UnionPayNotification, UnionPayTxn, UnionPayTxnStatus

pytestmark = pytest.mark.django_db(transaction=True)


def test_sign_content_sorts_drops_signature_and_empty_values_and_signs_the_hex():
    fields = {"b": "2", "a": "1", "signature": "x", "empty": "", "c": "a=b&c"}
    assert proto.sign_content(fields) == "a=1&b=2&c=a=b&c"
    key = crypto.rsa_generate()
    signature = proto.sign(fields, crypto.private_key_pem(key))
    digest = crypto.sha256_hex(b"a=1&b=2&c=a=b&c").encode()
    assert crypto.rsa_verify(crypto.public_key_pem(key), digest, signature)
    assert proto.signature_valid({**fields, "signature": signature}, crypto.public_key_pem(key))
    assert not proto.signature_valid({**fields, "b": "3", "signature": signature}, crypto.public_key_pem(key))


def test_zm_line_puts_the_verified_fields_at_their_byte_offsets():
    values = [""] * len(proto.ZM_WIDTHS)
    values[3], values[4], values[5], values[6] = "123456", "1123102030", "6216261000000000018", "000000001234"
    values[9], values[11] = "261123102030123456789", "Ab3dEf7hIj1lMn0pQr5tUv9x"
    line = proto.zm_line(values).encode("gbk")
    assert line[28:34] == b"123456"
    assert line[35:45] == b"1123102030"
    assert line[46:65] == b"6216261000000000018"
    assert line[66:78] == b"000000001234"
    assert line[87:108] == b"261123102030123456789"
    assert line[112:136] == b"Ab3dEf7hIj1lMn0pQr5tUv9x"
    assert len(line) == sum(proto.ZM_WIDTHS) + len(proto.ZM_WIDTHS) - 1


def test_settle_date_without_a_year_resolves_to_the_latest_past_day():
    today = dt.date(2026, 1, 2)
    assert proto.resolve_settle_date("0101", today) == dt.date(2026, 1, 1)
    assert proto.resolve_settle_date("1231", today) == dt.date(2025, 12, 31)
    assert proto.resolve_settle_date("0103", today) == dt.date(2026, 1, 3)
    assert proto.resolve_settle_date("1332", today) is None


def test_the_pki_is_created_once_and_the_signing_cert_chains_with_the_test_cn():
    first = services.unionpay_authority_get()
    again = services.unionpay_authority_get()
    signing = proto.load_certificate(first.sign_cert_pem)
    middle = proto.load_certificate(first.middle_cert_pem)
    root = proto.load_certificate(first.root_cert_pem)

    assert first.pk == again.pk
    signing.verify_directly_issued_by(middle)
    middle.verify_directly_issued_by(root)
    assert signing.subject.rfc4514_string().startswith("CN=041@Z12@00040000:SIGN@00000062")
    assert "\r\n" in first.sign_cert_pem


def _consume(merchant, *, pay_timeout=None, back_url="") -> UnionPayTxn:
    now = timezone.now()
    return services.unionpay_front_consume(
        merchant=merchant,
        order_id=proto.random_digits(24),
        txn_time=proto.format_time(now),
        txn_amt=500,
        channel_type="07",
        front_url="",
        back_url=back_url,
        req_reserved="",
        pay_timeout=pay_timeout,
    )


def test_the_sweep_fails_consumes_past_pay_timeout_and_leaves_others():
    merchant = services.unionpay_merchant_create(name="shop").merchant
    expired = _consume(merchant, pay_timeout=timezone.now() - dt.timedelta(seconds=1))
    open_one = _consume(merchant, pay_timeout=timezone.now() + dt.timedelta(hours=1))

    assert services.unionpay_sandbox_sweep() == {"expired": 1, "released": 0, "requeued": 0}

    expired.refresh_from_db()
    open_one.refresh_from_db()
    assert (expired.status, expired.orig_resp_code, expired.orig_resp_msg) == ("failed", "01", "交易超时")
    assert open_one.status == UnionPayTxnStatus.PENDING


def test_the_same_form_twice_is_the_same_consume_and_another_amount_is_a_duplicate():
    merchant = services.unionpay_merchant_create().merchant
    txn = _consume(merchant)
    again = services.unionpay_front_consume(
        merchant=merchant, order_id=txn.order_id, txn_time=txn.txn_time, txn_amt=500, channel_type="07",
        front_url="", back_url="", req_reserved="", pay_timeout=None,
    )  # fmt: skip
    with pytest.raises(services.UnionPayError) as excinfo:
        services.unionpay_front_consume(
            merchant=merchant, order_id=txn.order_id, txn_time=txn.txn_time, txn_amt=501, channel_type="07",
            front_url="", back_url="", req_reserved="", pay_timeout=None,
        )  # fmt: skip
    assert again.pk == txn.pk
    assert excinfo.value.resp_code == "12"
    assert UnionPayTxn.objects.count() == 1


def test_a_notification_to_an_unreachable_back_url_is_sent_five_times(celery_eager):
    merchant = services.unionpay_merchant_create().merchant
    txn = _consume(merchant, back_url="http://127.0.0.1:9/notify")

    services.unionpay_consume_settle(txn=txn, succeed=True)

    notification = UnionPayNotification.objects.get()
    assert notification.attempts == 5
    assert notification.delivered_at is None
    assert notification.fields["respCode"] == "00" and notification.fields["txnAmt"] == "500"


def test_an_out_of_order_payment_notification_waits_until_a_refunds_notification_is_delivered(celery_eager, receiver):
    """Regression: the held payment notification was released when the refund's notification was
    created, so under load it could still go out first."""
    merchant = services.unionpay_merchant_create().merchant
    consume = _consume(merchant, back_url=receiver.url)
    fault_set(provider="unionpay", kind="notify_out_of_order", merchant_ref=merchant.mer_id, remaining=1)
    services.unionpay_consume_settle(txn=consume, succeed=True)
    consume.refresh_from_db()

    refund = services.unionpay_refund(
        merchant=merchant, order_id=proto.random_digits(24), txn_time=proto.format_time(timezone.now()), txn_amt=100,
        orig_qry_id=consume.query_id, back_url="http://127.0.0.1:9/notify", req_reserved="",
    )  # fmt: skip

    held = UnionPayNotification.objects.get(txn=consume)
    refund_notification = UnionPayNotification.objects.get(txn=refund)
    # the refund's notification has not got through: the payment's stays held
    assert (held.held, held.attempts, refund_notification.delivered_at) == (True, 0, None)
    assert receiver.requests == []

    UnionPayNotification.objects.filter(pk=refund_notification.pk).update(back_url=receiver.url)
    assert services.unionpay_notification_deliver(notification_id=refund_notification.pk) is True

    held.refresh_from_db()
    refund_notification.refresh_from_db()
    assert (held.held, held.attempts) == (False, 1)
    assert held.delivered_at > refund_notification.delivered_at
    assert [r["form"]["txnType"] for r in receiver.requests] == ["04", "01"]


def test_the_console_lists_merchants_and_transactions(live_server):
    merchant = services.unionpay_merchant_create(name="console shop").merchant
    txn = _consume(merchant)

    page = requests.get(f"{live_server.url}/sandbox/unionpay/", timeout=5)

    assert page.status_code == 200
    assert merchant.mer_id in page.text and "console shop" in page.text
    assert txn.order_id in page.text and f"/sandbox/unionpay/pay/{txn.pay_token}" in page.text
