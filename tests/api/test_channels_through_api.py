"""WeChat Pay and UnionPay through the pay core: charge, pay at the sandbox, notification, refund.

The providers' own protocol tests live beside their adapters; these show the channels work end to
end through the merchant API, the notification endpoint and the refund path.
"""

import io
import json

import pytest
import requests
from django.core.management import call_command

from apps.channels.services import channel_account_upsert
from apps.events.models import Event
from apps.orders.models import Order, OrderStatus
from apps.payments.models import Charge, ChargeStatus, ChargeTransition, Refund, RefundStatus
from tests.support import assert_error, charge_payload

pytestmark = pytest.mark.usefixtures("celery_eager")


def sandbox_account(provider: str, base_url: str, methods: list[str]):
    out = io.StringIO()
    call_command("sandbox_account_create", provider=provider, json=True, stdout=out)
    credentials = {k: v for k, v in json.loads(out.getvalue()).items() if k != "provider"}
    return channel_account_upsert(
        name=f"Sandbox {provider} (tests)", provider=provider, base_url=base_url, credentials=credentials,
        methods=methods, currencies=["CNY"], livemode=False,
    )  # fmt: skip


@pytest.fixture
def wechatpay(live_server, settings, transactional_db):
    settings.PAYSYS_PUBLIC_URL = live_server.url
    return sandbox_account("wechatpay", f"{live_server.url}/sandbox/wechatpay", ["wx_pub_qr", "wx_wap"])


@pytest.fixture
def unionpay(live_server, settings, transactional_db):
    settings.PAYSYS_PUBLIC_URL = live_server.url
    return sandbox_account("unionpay", f"{live_server.url}/sandbox/unionpay/gateway/api/", ["upacp_pc", "upacp_wap"])


def pay_wechat(credential) -> None:
    assert requests.post(credential, data={"result": "success"}, timeout=10).status_code == 200


def pay_unionpay(credential) -> None:
    form = {k: v for k, v in credential.items() if k != "channel_url"}
    front = requests.post(credential["channel_url"], data=form, headers={"Accept": "application/json"}, timeout=10)
    assert front.status_code == 200, front.content
    assert requests.post(front.json()["pay_url"], data={"result": "success"}, timeout=10).status_code == 200


@pytest.mark.parametrize(
    "channel, extra, pay",
    [
        ("wx_pub_qr", {"product_id": "p1"}, pay_wechat),
        ("upacp_pc", {"result_url": "https://shop.example/result"}, pay_unionpay),
    ],
    ids=["wechatpay-native", "unionpay-pc"],
)
def test_a_charge_is_paid_notified_and_refunded(api, merchant, wechatpay, unionpay, channel, extra, pay):
    response = api.post("/v1/charges", charge_payload(merchant, order_no=f"{channel}01", channel=channel, extra=extra,
                                                      amount=2500))  # fmt: skip
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["channel"] == channel and channel in body["credential"]
    pay(body["credential"][channel])

    charge = Charge.objects.get(public_id=body["id"])
    assert charge.status == ChargeStatus.SUCCEEDED  # the provider's notification, applied
    assert charge.transaction_no
    assert Order.objects.get(pk=charge.order_id).status == OrderStatus.PAID

    refund = api.post(f"/v1/charges/{body['id']}/refunds", {"amount": 1000})
    assert refund.status_code == 200, refund.content
    refund_id = refund.json()["id"]
    settled = Refund.objects.get(public_id=refund_id)
    if settled.status == RefundStatus.PENDING:  # the provider settles refunds later: the refund query does
        from apps.payments.refunds import refund_query

        settled = refund_query(refund_id=settled.pk)
    assert Refund.objects.get(public_id=refund_id).status == RefundStatus.SUCCEEDED
    assert Order.objects.get(pk=charge.order_id).status == OrderStatus.PARTIALLY_REFUNDED
    assert sorted(Event.objects.values_list("type", flat=True)) == ["charge.succeeded", "refund.succeeded"]
    call_command("ledger_check")


def test_a_unionpay_charge_is_not_reversed_while_the_payer_can_still_pay(api, merchant, unionpay):
    """UnionPay has no close: a consume stays payable until its payTimeout (the charge's time_expire).
    Closing the charge before that would leave the payer able to pay a closed charge."""
    created = api.post("/v1/charges", charge_payload(merchant, order_no="upreverse01", channel="upacp_pc",
                                                     extra={"result_url": "https://shop.example/result"}))  # fmt: skip
    assert created.status_code == 200, created.content
    charge_id = created.json()["id"]
    transitions = ChargeTransition.objects.filter(charge__public_id=charge_id).count()

    response = api.post(f"/v1/charges/{charge_id}/reverse", {})

    assert_error(response, 400, code="charge_not_reversible")
    charge = Charge.objects.get(public_id=charge_id)
    assert (charge.status, charge.reversed) == (ChargeStatus.PENDING, False)
    assert ChargeTransition.objects.filter(charge=charge).count() == transitions
    pay_unionpay(created.json()["credential"]["upacp_pc"])  # and the payer still can: a normal payment
    charge.refresh_from_db()
    assert (charge.status, charge.exception) == (ChargeStatus.SUCCEEDED, "")
