"""Daily reconciliation of the Alipay sandbox's zipped GBK trade bill against paysys."""

import io
import zipfile
from datetime import datetime, time, timedelta

import pytest
from django.core.management import call_command

from apps.ledger.models import Adjustment, JournalEntry, Posting
from apps.reconciliation.bills import bill_download, bill_path, bill_upload
from apps.reconciliation.exceptions import BillFileInvalid
from apps.reconciliation.matching import bill_zone
from apps.reconciliation.models import (
    BillFile,
    BillFileStatus,
    BillLine,
    CrossDayHold,
    Discrepancy,
    ReconRun,
    ReconRunStatus,
)
from apps.reconciliation.services import recon_run
from apps.sandbox.faults import fault_set
from tests.reconciliation.conftest import create_and_pay, move_paid_at, shift_days, today


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


def ledger_ok():
    call_command("ledger_check")  # SystemExit on any violated invariant


def bank_balance() -> int:
    return sum(Posting.objects.filter(account__type="bank").values_list("amount", flat=True))


def test_a_clean_day_has_no_discrepancies_and_clears_the_matched_net_to_bank(alipay, day_of_business):
    account, _ = alipay

    run = recon_run(account=account, day=day_of_business["day"])

    assert (run.status, run.lines, run.matched, run.held) == (ReconRunStatus.DONE, 5, 5, 0)
    assert (run.local_missing, run.channel_missing, run.amount_mismatch, run.status_mismatch, run.fee_mismatch) == (
        0, 0, 0, 0, 0,
    )  # fmt: skip
    assert run.internal_problems == []
    assert Discrepancy.objects.count() == 0
    # Payments 7.50 + 0.50 + 100.00 less fees 0.05 + 0.00 + 0.60; refunds 2.50 - 0.02 and 100.00 - 0.60.
    net = (750 - 5) + (50 - 0) + (10000 - 60) - (250 - 2) - (10000 - 60)
    assert (run.bill_amount, run.bill_fee, run.local_fee) == (750 + 50 + 10000 - 250 - 10000, 5 + 60 - 2 - 60, 3)
    assert run.cleared_to_bank == net == bank_balance()
    ledger_ok()


def test_rerunning_or_reuploading_the_same_bill_changes_nothing(alipay, day_of_business):
    account, _ = alipay
    day = day_of_business["day"]
    first = recon_run(account=account, day=day)
    before = state()

    again = recon_run(account=account, day=day)
    content = bill_path(first.bill).read_bytes()
    uploaded, created = bill_upload(
        account=account, day=day, file_name="again.zip", content=io.BytesIO(content), by="fin"
    )
    downloaded, downloaded_created = bill_download(account=account, day=day)
    rerun = recon_run(account=account, day=day, bill=uploaded)

    assert again.pk == rerun.pk == first.pk
    assert (created, uploaded.pk) == (False, first.bill_id)
    assert state() == before
    assert downloaded_created is (downloaded.pk != first.bill_id)  # the sandbox stamps the export time


@pytest.mark.parametrize(
    ("kind", "params", "expected"),
    [
        ("bill_missing_line", {}, ("channel_missing", 0, None, 750, None, 5)),
        ("bill_extra_line", {"amount": "3.21", "out_trade_no": "ch_nobody"}, ("local_missing", 1, 321, None, 2, None)),
        ("bill_altered_line", {"field": "amount", "delta": 7}, ("amount_mismatch", 0, 757, 750, 5, 5)),
        ("bill_altered_line", {"field": "fee", "delta": 3}, ("fee_mismatch", 0, 750, 750, 8, 5)),
        ("bill_altered_line", {"field": "status"}, ("status_mismatch", 0, 750, 750, 5, 5)),
    ],
    ids=["missing-line", "extra-line", "altered-amount", "altered-fee", "altered-status"],
)
def test_each_injected_bill_fault_is_found_with_its_type_and_amounts(alipay, day_of_business, kind, params, expected):
    account, created = alipay
    target = day_of_business["charges"][0]  # 7.50, fee 0.05
    fault_set(provider="alipay", kind=kind, merchant_ref=created.app.app_id,
              out_trade_no="" if kind == "bill_extra_line" else target, params=params)  # fmt: skip

    run = recon_run(account=account, day=day_of_business["day"])

    dtype, ref_index, bill_amount, local_amount, bill_fee, local_fee = expected
    ref = "ch_nobody" if ref_index else target
    assert discrepancies() == [(dtype, ref, bill_amount, local_amount, bill_fee, local_fee)]
    assert getattr(run, dtype) == 1
    ledger_ok()


def test_a_payment_near_midnight_is_held_then_released_by_the_next_days_bill(alipay, api, merchant):
    account, _ = alipay
    charge = create_and_pay(api, merchant, "recon_x1", 1000)
    shift_days(3)
    d2 = today() - timedelta(days=2)
    d1 = today() - timedelta(days=1)
    zone = bill_zone()
    # paysys saw the payment at 23:59:50 on D2; the channel booked it at 00:00:20 on D1.
    move_paid_at(charge["id"], local=datetime.combine(d2, time(23, 59, 50), zone),
                 sandbox=datetime.combine(d1, time(0, 0, 20), zone))  # fmt: skip

    first = recon_run(account=account, day=d2)
    assert (first.held, first.channel_missing, Discrepancy.objects.count()) == (1, 0, 0)
    assert list(CrossDayHold.objects.values_list("ref", "status", "neighbour_day")) == [(charge["id"], "held", d1)]

    second = recon_run(account=account, day=d1)

    assert (second.lines, second.matched, second.local_missing) == (1, 1, 0)
    assert list(CrossDayHold.objects.values_list("status", flat=True)) == ["released"]
    assert Discrepancy.objects.count() == 0
    ledger_ok()


def test_a_held_item_missing_from_the_next_bill_becomes_channel_missing(alipay, api, merchant):
    account, created = alipay
    charge = create_and_pay(api, merchant, "recon_x2", 1000)
    shift_days(3)
    d2, d1 = today() - timedelta(days=2), today() - timedelta(days=1)
    zone = bill_zone()
    move_paid_at(charge["id"], local=datetime.combine(d2, time(23, 59, 50), zone),
                 sandbox=datetime.combine(d1, time(0, 0, 20), zone))  # fmt: skip
    recon_run(account=account, day=d2)
    fault_set(provider="alipay", kind="bill_missing_line", merchant_ref=created.app.app_id, out_trade_no=charge["id"])

    recon_run(account=account, day=d1)

    assert list(CrossDayHold.objects.values_list("status", flat=True)) == ["expired"]
    assert discrepancies() == [("channel_missing", charge["id"], None, 1000, None, 6)]
    assert Discrepancy.objects.get().day == d2


def damaged(content: bytes, how: str) -> bytes:
    if how == "truncated":
        return content[: len(content) // 2]
    source = zipfile.ZipFile(io.BytesIO(content))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if "汇总".encode("gbk") not in info.filename.encode("cp437"):
                data = data.decode("gbk").encode("utf-8") if how == "utf-8" else data.replace(b"7.50", b"7.5x", 1)
            target.writestr(info, data)
    return out.getvalue()


@pytest.mark.parametrize("how", ["truncated", "utf-8", "malformed"])
def test_a_damaged_bill_fails_the_run_changes_nothing_and_is_flagged(alipay, day_of_business, how):
    account, _ = alipay
    day = day_of_business["day"]
    good, _ = bill_download(account=account, day=day)
    content = damaged(bill_path(good).read_bytes(), how)
    good.delete()
    bad, _ = bill_upload(account=account, day=day, file_name="bad.zip", content=io.BytesIO(content), by="fin")
    before = state()

    with pytest.raises(BillFileInvalid) as excinfo:
        recon_run(account=account, day=day, bill=bad)

    assert "is invalid" in str(excinfo.value)
    assert state() == before
    bad.refresh_from_db()
    assert bad.status == BillFileStatus.INVALID and bad.error
    failed = ReconRun.objects.get()
    assert (failed.status, failed.bill_id) == (ReconRunStatus.FAILED, bad.pk) and "invalid" in failed.error
    with pytest.raises(BillFileInvalid):  # the same file again: refused at once, still nothing changed
        recon_run(account=account, day=day, bill=bad)
    assert state() == before


def test_the_command_runs_every_account_with_progress(alipay, day_of_business):
    out = io.StringIO()

    call_command("recon_run", "--all", "--date", day_of_business["day"].isoformat(), stdout=out)

    text = out.getvalue()
    assert "5 lines, 5 matched" in text and "load" in text and "match" in text
    assert ReconRun.objects.get().matched == 5


def adjustments() -> int:
    return Adjustment.objects.count()
