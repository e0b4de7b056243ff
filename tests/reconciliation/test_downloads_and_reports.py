"""Scheduled downloads (backoff, deadline, manual) and the finance reports."""

from datetime import time, timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from apps.reconciliation.downloads import bill_download_attempt, bill_downloads_claim, bill_downloads_open
from apps.reconciliation.models import BillDownload, BillFile, BillSchedule, ReconRun
from apps.reconciliation.resources import ChannelFeeResource, DailySummaryResource, DiscrepancyResource
from apps.reconciliation.services import recon_run
from tests.reconciliation.conftest import today

pytestmark = pytest.mark.parametrize("kit", ["alipay"], indirect=True)


def test_a_bill_not_published_yet_is_retried_with_backoff_then_left_for_manual_handling(kit):
    account = kit.account
    BillSchedule.objects.create(account=account, bill_time=time(0, 0), deadline_hours=1)
    assert bill_downloads_open() == 1
    assert bill_downloads_open() == 0  # once per day
    download = BillDownload.objects.get()
    # Pretend yesterday's bill is today's: the sandbox publishes T+1 only, so it is not ready.
    BillDownload.objects.filter(pk=download.pk).update(day=today(), deadline=timezone.now() + timedelta(hours=1))

    assert bill_downloads_claim() == [download.pk]
    assert bill_downloads_claim() == []  # leased
    first = bill_download_attempt(download_id=download.pk)
    assert (first.status, first.attempts) == ("pending", 1)
    assert timedelta(minutes=9) < first.next_attempt_at - timezone.now() <= timedelta(minutes=10)
    second = bill_download_attempt(download_id=download.pk)
    assert (second.status, second.attempts) == ("pending", 2)  # retry in 30 min, still before the deadline
    third = bill_download_attempt(download_id=download.pk)

    assert (third.status, third.attempts, third.next_attempt_at) == ("manual", 3, None)  # 1 h more: past it
    assert "BillNotReady" in third.last_error
    assert BillFile.objects.count() == 0


def test_a_due_download_fetches_and_reconciles_the_bill(kit, day_of_business):
    account = kit.account
    BillSchedule.objects.create(account=account, bill_time=time(0, 0))
    bill_downloads_open()

    done = bill_download_attempt(download_id=bill_downloads_claim()[0])

    assert (done.status, done.day) == ("done", day_of_business["day"])
    assert ReconRun.objects.get().matched == 5


def test_finance_exports_summary_fees_and_discrepancies(kit, day_of_business, finance_group):
    account = kit.account
    kit.altered_line(day_of_business["charges"][2], "fee", 4)
    recon_run(account=account, day=day_of_business["day"])

    summary = DailySummaryResource().export()
    fees = ChannelFeeResource().export()
    listing = DiscrepancyResource().export()

    assert (summary.dict[0]["matched"], summary.dict[0]["fee_mismatch"]) == ("4", "1")
    assert (fees.dict[0]["bill_fee"], fees.dict[0]["local_fee"], fees.dict[0]["difference"]) == ("7", "3", 4)
    assert [(row["kind"], row["ref"], row["difference"]) for row in listing.dict] == [
        ("fee_mismatch", day_of_business["charges"][2], -4)
    ]
    assert summary.export("xlsx")[:2] == b"PK"
    finance = User.objects.create_user("fin", is_staff=True)
    finance.groups.add(finance_group)
    assert User.objects.get(pk=finance.pk).has_perm("reconciliation.export_reports")


def test_the_daily_summary_carries_the_platform_fees_of_the_days_paid_charges(kit, day_of_business, api, merchant):
    from moneyed import Money

    from apps.payments.models import Charge

    fees = {
        "0.05": day_of_business["charges"][0],
        "0.01": day_of_business["charges"][1],
        "0.60": day_of_business["charges"][2],
    }
    for fee, charge_id in fees.items():
        Charge.objects.filter(public_id=charge_id).update(platform_fee=Money(fee, "CNY"))
    unpaid = kit.charge(api, merchant, "recon-unpaid", 900)["id"]  # open: not the day's income
    Charge.objects.filter(public_id=unpaid).update(platform_fee=Money("9.00", "CNY"))

    run = recon_run(account=kit.account, day=day_of_business["day"])

    assert run.platform_fee == 5 + 1 + 60
    assert DailySummaryResource().export().dict[0]["platform_fee"] == "66"
