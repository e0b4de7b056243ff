"""Reconciliation against the bills each sandbox publishes: a day of business is made through the
merchant API and the sandbox over HTTP, then moved back in time on both sides with SQL.

`kit` is parametrized over the three provider formats; a test meant for one provider only asks
for it with `@pytest.mark.parametrize("kit", ["alipay"], indirect=True)`.
"""

import importlib
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.ledger.models import JournalEntry, Posting
from apps.payments.models import Charge, ChargeStatus
from apps.reconciliation.matching import bill_zone
from apps.reconciliation.models import BillFile, BillLine, CrossDayHold, Discrepancy, ReconRun
from tests.reconciliation.kits import Kit, alipay_kit, channel_cost_plan, unionpay_kit, wechatpay_kit

PROVIDERS = ["alipay", "wechatpay", "unionpay"]


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


@pytest.fixture(params=PROVIDERS)
def kit(request, live_server, settings, transactional_db, bills_dir, celery_eager) -> Kit:
    """The provider's sandbox account, reached over HTTP, with the channel's real cost plan."""
    settings.PAYSYS_PUBLIC_URL = live_server.url
    if request.param == "alipay":
        account, created = request.getfixturevalue("sandbox_alipay")
        made = alipay_kit(account, created.credentials())
    elif request.param == "wechatpay":
        made = wechatpay_kit(live_server)
    else:
        made = unionpay_kit(live_server)
    channel_cost_plan(made.account)
    return made


def today():
    return timezone.now().astimezone(bill_zone()).date()


@pytest.fixture
def day_of_business(kit, api, merchant):
    """Three payments (7.50, 0.50, 100.00) and two refunds (2.50 of the first, all of the third),
    all moved to yesterday. Returns the charges' and refunds' ids and the day."""
    a = kit.pay(api, merchant, "recon0001", 750)
    b = kit.pay(api, merchant, "recon0002", 50)
    c = kit.pay(api, merchant, "recon0003", 10000)
    r1 = kit.refund(api, a, 250)
    r2 = kit.refund(api, c, 10000)
    assert Charge.objects.filter(status=ChargeStatus.SUCCEEDED).count() == 3
    kit.shift_days(1)
    return {"charges": [a, b, c], "refunds": [r1, r2], "day": today() - timedelta(days=1)}


# --- what the tests look at ----------------------------------------------------------------------


def state():
    """Everything a run may change, to assert that a second run or a bad file changed nothing."""
    return (
        BillFile.objects.count(), BillLine.objects.count(), ReconRun.objects.filter(status="done").count(),
        Discrepancy.objects.count(), CrossDayHold.objects.count(), JournalEntry.objects.count(),
        Posting.objects.count(),
    )  # fmt: skip


def discrepancies():
    return sorted(
        (d.kind, d.ref, d.bill_amount, d.local_amount, d.bill_fee, d.local_fee) for d in Discrepancy.objects.all()
    )


def balance(account_type: str) -> int:
    return sum(Posting.objects.filter(account__type=account_type).values_list("amount", flat=True))


def ledger_ok():
    call_command("ledger_check")  # SystemExit on any violated invariant
