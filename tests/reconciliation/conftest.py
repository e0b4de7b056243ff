"""Reconciliation against bills the Alipay sandbox publishes (T+1): a day of business is made
through the API and the sandbox, then moved back in time on both sides with SQL."""

import importlib
import io
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.db import connection
from django.utils import timezone

from apps.ledger.models import FeePlan
from apps.payments.models import Charge, ChargeStatus
from apps.reconciliation.matching import bill_zone
from tests.support import charge_payload


@pytest.fixture
def finance_group(transactional_db):
    """The finance group of migration 0002 (live-server tests flush the rows migrations made)."""
    from django.apps import apps
    from django.contrib.auth.models import Group

    if not Group.objects.filter(name="finance").exists():
        importlib.import_module("apps.reconciliation.migrations.0002_finance_group").forwards(apps, None)
    return Group.objects.get(name="finance")


@pytest.fixture
def bills_dir(tmp_path, settings):
    settings.PAYSYS_RECON_BILLS_DIR = tmp_path / "bills"
    return settings.PAYSYS_RECON_BILLS_DIR


@pytest.fixture
def alipay(sandbox_alipay, bills_dir, celery_eager):
    """The sandbox account, with the channel's real cost (0.6 %, half-up, returned on refunds)."""
    account, created = sandbox_alipay
    FeePlan.objects.create(
        name="alipay cost", kind="channel", owner_type="channel_account", owner_id=account.pk, currency="CNY",
        rate=Decimal("0.006"), rounding="ROUND_HALF_UP", refund_returns_fee=True,
    )  # fmt: skip
    return account, created


def today():
    return timezone.now().astimezone(bill_zone()).date()


def create_and_pay(api, merchant, order_no: str, amount: int) -> dict:
    response = api.post("/v1/charges", charge_payload(merchant, order_no=order_no, amount=amount))
    assert response.status_code == 200, response.content
    charge = response.json()
    answer = requests.post(charge["credential"]["alipay_qr"], data={"result": "success"}, timeout=10)
    assert answer.status_code == 200
    return charge


def refund(api, charge_id: str, amount: int) -> dict:
    response = api.post(f"/v1/charges/{charge_id}/refunds", {"amount": amount, "description": "r"})
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "succeeded"
    return response.json()


def shift_days(days: int) -> None:
    """What both systems recorded today happened `days` days ago (the sandbox and paysys alike).

    Ledger entries are append-only and keep their dates: reconciliation finds them by reference.
    """
    interval = f"interval '{days} day'"
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE sandbox_alipayapp SET created_at = created_at - {interval}")
        cursor.execute(
            f"UPDATE sandbox_alipaytrade SET created_at = created_at - {interval}, paid_at = paid_at - {interval}"
        )
        cursor.execute(f"UPDATE sandbox_alipayrefund SET refunded_at = refunded_at - {interval}")
        cursor.execute(
            f"UPDATE payments_charge SET paid_at = paid_at - {interval}, created_at = created_at - {interval}"
        )
        cursor.execute(f"UPDATE payments_refund SET succeeded_at = succeeded_at - {interval}")


def move_paid_at(charge_public_id: str, *, local, sandbox) -> None:
    """Sets one payment's time on each side (the cross-day tests)."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE payments_charge SET paid_at = %s WHERE public_id = %s", [local, charge_public_id])
        cursor.execute(
            "UPDATE sandbox_alipaytrade SET paid_at = %s WHERE out_trade_no = %s", [sandbox, charge_public_id]
        )


@pytest.fixture
def day_of_business(alipay, api, merchant):
    """Three payments (7.50, 0.50, 100.00) and two refunds (2.50 of the first, all of the third),
    all moved to yesterday. Returns the charges' ids and the day."""
    a = create_and_pay(api, merchant, "recon0001", 750)
    b = create_and_pay(api, merchant, "recon0002", 50)
    c = create_and_pay(api, merchant, "recon0003", 10000)
    r1 = refund(api, a["id"], 250)
    r2 = refund(api, c["id"], 10000)
    assert Charge.objects.filter(status=ChargeStatus.SUCCEEDED).count() == 3
    shift_days(1)
    return {"charges": [a["id"], b["id"], c["id"]], "refunds": [r1["id"], r2["id"]], "day": today() - timedelta(days=1)}


def upload_bytes(content: bytes) -> io.BytesIO:
    return io.BytesIO(content)
