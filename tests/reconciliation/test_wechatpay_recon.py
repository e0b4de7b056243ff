"""Reconciliation of the WeChat Pay sandbox's trade bill (text, published for the same day)."""

import io
import json
from decimal import Decimal

import pytest
import requests
from django.core.management import call_command

from apps.channels.services import channel_account_upsert
from apps.ledger.models import FeePlan
from apps.reconciliation.models import Discrepancy
from apps.reconciliation.services import recon_run
from apps.sandbox.faults import fault_set
from tests.reconciliation.conftest import today
from tests.support import charge_payload


@pytest.fixture
def wechatpay(live_server, settings, transactional_db, bills_dir, celery_eager):
    settings.PAYSYS_PUBLIC_URL = live_server.url
    out = io.StringIO()
    call_command("sandbox_account_create", provider="wechatpay", json=True, stdout=out)
    credentials = {k: v for k, v in json.loads(out.getvalue()).items() if k != "provider"}
    account = channel_account_upsert(
        name="Sandbox wechatpay (recon)", provider="wechatpay", base_url=f"{live_server.url}/sandbox/wechatpay",
        credentials=credentials, methods=["wx_pub_qr"], currencies=["CNY"], livemode=False,
    )  # fmt: skip
    FeePlan.objects.create(
        name="wechat cost", kind="channel", owner_type="channel_account", owner_id=account.pk, currency="CNY",
        rate=Decimal("0.006"), rounding="ROUND_HALF_UP", refund_returns_fee=True,
    )  # fmt: skip
    return account, credentials


def paid_wechat(api, merchant, order_no: str, amount: int) -> str:
    body = api.post("/v1/charges", charge_payload(merchant, order_no=order_no, channel="wx_pub_qr",
                                                  extra={"product_id": "p1"}, amount=amount)).json()  # fmt: skip
    assert requests.post(body["credential"]["wx_pub_qr"], data={"result": "success"}, timeout=10).status_code == 200
    return body["id"]


def test_a_clean_wechat_day_then_a_missing_line(wechatpay, api, merchant):
    account, credentials = wechatpay
    first = paid_wechat(api, merchant, "wxrecon01", 1234)
    second = paid_wechat(api, merchant, "wxrecon02", 1234)
    response = api.post(f"/v1/charges/{first}/refunds", {"amount": 234})
    assert response.json()["status"] == "succeeded"

    run = recon_run(account=account, day=today())

    assert (run.lines, run.matched, Discrepancy.objects.count()) == (3, 3, 0)
    assert (run.bill_fee, run.local_fee) == (7 + 7 - 1, 7 + 7 - 1)

    # A later bill of the same day (another file) that misses a line.
    fault_set(provider="wechatpay", kind="bill_missing_line", merchant_ref=credentials["mchid"], out_trade_no=second)
    again = recon_run(account=account, day=today(), bill=None)
    assert again.pk == run.pk  # the stored bill of the day was already run: nothing changes
    assert Discrepancy.objects.count() == 0


def test_a_line_missing_from_the_wechat_bill_is_channel_missing(wechatpay, api, merchant):
    account, credentials = wechatpay
    paid_wechat(api, merchant, "wxrecon11", 1234)
    missing = paid_wechat(api, merchant, "wxrecon12", 500)
    fault_set(provider="wechatpay", kind="bill_missing_line", merchant_ref=credentials["mchid"], out_trade_no=missing)

    run = recon_run(account=account, day=today())

    assert (run.lines, run.matched, run.channel_missing) == (1, 1, 1)
    assert list(Discrepancy.objects.values_list("kind", "ref", "local_amount", "local_fee")) == [
        ("channel_missing", missing, 500, 3)
    ]
