"""Daily reconciliation of each provider's bill format, as its sandbox publishes it, against paysys."""

import io
from datetime import datetime, time, timedelta

import pytest
from django.core.management import call_command
from django.db import connection

from apps.reconciliation.bills import bill_download, bill_path, bill_upload
from apps.reconciliation.checks import internal_problems
from apps.reconciliation.exceptions import BillFileInvalid
from apps.reconciliation.matching import bill_zone
from apps.reconciliation.models import BillFileStatus, CrossDayHold, Discrepancy, ReconRun, ReconRunStatus
from apps.reconciliation.services import recon_run
from tests.reconciliation.conftest import balance, discrepancies, ledger_ok, state, today
from tests.reconciliation.kits import NOBODY


def test_a_clean_day_has_no_discrepancies_and_clears_the_matched_net_to_bank(kit, day_of_business):
    run = recon_run(account=kit.account, day=day_of_business["day"])

    assert (run.status, run.lines, run.matched, run.held) == (ReconRunStatus.DONE, 5, 5, 0)
    assert (run.local_missing, run.channel_missing, run.amount_mismatch, run.status_mismatch, run.fee_mismatch) == (
        0, 0, 0, 0, 0,
    )  # fmt: skip
    assert run.internal_problems == []
    assert Discrepancy.objects.count() == 0
    # Payments 7.50 + 0.50 + 100.00 less fees 0.05 + 0.00 + 0.60; refunds 2.50 - 0.02 and 100.00 - 0.60.
    net = (750 - 5) + (50 - 0) + (10000 - 60) - (250 - 2) - (10000 - 60)
    assert (run.bill_amount, run.bill_fee, run.local_fee) == (750 + 50 + 10000 - 250 - 10000, 5 + 60 - 2 - 60, 3)
    assert run.cleared_to_bank == net == balance("bank")
    assert balance("channel_clearing") == 0  # everything the channel owed is cleared
    ledger_ok()


def test_rerunning_or_reuploading_the_same_bill_changes_nothing(kit, day_of_business):
    day = day_of_business["day"]
    first = recon_run(account=kit.account, day=day)
    before = state()

    again = recon_run(account=kit.account, day=day)
    content = bill_path(first.bill).read_bytes()
    uploaded, created = bill_upload(
        account=kit.account, day=day, file_name="again", content=io.BytesIO(content), by="fin"
    )
    rerun = recon_run(account=kit.account, day=day, bill=uploaded)

    assert again.pk == rerun.pk == first.pk
    assert (created, uploaded.pk) == (False, first.bill_id)
    assert state() == before


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("missing", ("channel_missing", 0, None, 750, None, 5)),
        ("extra", ("local_missing", 1, 321, None, 2, None)),
        ("amount", ("amount_mismatch", 0, 757, 750, 5, 5)),
        ("fee", ("fee_mismatch", 0, 750, 750, 8, 5)),
        ("status", ("status_mismatch", 0, 750, 750, 5, 5)),
    ],
    ids=["missing-line", "extra-line", "altered-amount", "altered-fee", "altered-status"],
)
def test_each_injected_bill_fault_is_found_with_its_type_and_amounts(kit, day_of_business, fault, expected):
    target = day_of_business["charges"][0]  # 7.50, fee 0.05
    if fault == "missing":
        kit.missing_line(target)
    elif fault == "extra":
        kit.extra_line(321)
    else:
        kit.altered_line(target, fault, delta={"amount": 7, "fee": 3}.get(fault, 0))

    run = recon_run(account=kit.account, day=day_of_business["day"])

    kind, nobody, bill_amount, local_amount, bill_fee, local_fee = expected
    assert discrepancies() == [(kind, NOBODY if nobody else target, bill_amount, local_amount, bill_fee, local_fee)]
    assert getattr(run, kind) == 1
    assert run.matched == (4 if fault != "extra" else 5)
    ledger_ok()


def cross_day(kit, api, merchant, order_no: str) -> tuple[str, object, object]:
    """A payment paysys saw at 23:59:50 on D2 and the channel booked at 00:00:20 on D1."""
    charge = kit.pay(api, merchant, order_no, 1000)
    kit.shift_days(3)
    d2, d1 = today() - timedelta(days=2), today() - timedelta(days=1)
    zone = bill_zone()
    kit.move_paid_at(charge, local=datetime.combine(d2, time(23, 59, 50), zone),
                     channel=datetime.combine(d1, time(0, 0, 20), zone))  # fmt: skip
    return charge, d2, d1


def test_a_payment_near_midnight_is_held_then_released_by_the_next_days_bill(kit, api, merchant):
    charge, d2, d1 = cross_day(kit, api, merchant, "recon_x1")

    first = recon_run(account=kit.account, day=d2)
    assert (first.lines, first.held, first.channel_missing, Discrepancy.objects.count()) == (0, 1, 0, 0)
    assert list(CrossDayHold.objects.values_list("ref", "status", "neighbour_day")) == [(charge, "held", d1)]

    second = recon_run(account=kit.account, day=d1)

    assert (second.lines, second.matched, second.local_missing) == (1, 1, 0)
    assert list(CrossDayHold.objects.values_list("status", flat=True)) == ["released"]
    assert Discrepancy.objects.count() == 0
    assert balance("channel_clearing") == 0 and balance("bank") == 1000 - 6
    ledger_ok()


def test_a_held_item_missing_from_the_next_bill_becomes_channel_missing(kit, api, merchant):
    charge, d2, d1 = cross_day(kit, api, merchant, "recon_x2")
    recon_run(account=kit.account, day=d2)
    kit.missing_line(charge)

    recon_run(account=kit.account, day=d1)

    assert list(CrossDayHold.objects.values_list("status", flat=True)) == ["expired"]
    assert discrepancies() == [("channel_missing", charge, None, 1000, None, 6)]
    assert Discrepancy.objects.get().day == d2


def test_a_held_item_listed_on_a_newer_bill_of_its_day_is_released_and_does_not_expire(kit, api, merchant):
    charge, d2, d1 = cross_day(kit, api, merchant, "recon_x3")
    recon_run(account=kit.account, day=d2)
    assert list(CrossDayHold.objects.values_list("ref", "status")) == [(charge, "held")]
    kit.book_at(charge, datetime.combine(d2, time(23, 59, 55), bill_zone()))  # the provider corrects its bill
    newer, _ = bill_download(account=kit.account, day=d2)  # another file of the day: a new BillFile

    second = recon_run(account=kit.account, day=d2, bill=newer)

    assert (second.lines, second.matched, second.held, second.channel_missing) == (1, 1, 0, 0)
    assert list(CrossDayHold.objects.values_list("status", flat=True)) == ["released"]
    recon_run(account=kit.account, day=d1)  # the neighbour's bill does not list it: nothing expires
    assert list(CrossDayHold.objects.values_list("status", flat=True)) == ["released"]
    assert Discrepancy.objects.count() == 0
    assert balance("channel_clearing") == 0 and balance("bank") == 1000 - 6
    ledger_ok()


DAMAGE_SAYS = {  # what the error says, per provider and damage
    ("alipay", "truncated"): "not a readable zip archive", ("alipay", "wrong-encoding"): "not GBK text",
    ("alipay", "malformed"): "'7.5x' is not a number", ("wechatpay", "truncated"): "truncated or damaged",
    ("wechatpay", "wrong-encoding"): "not UTF-8 text", ("wechatpay", "malformed"): "'7.5x' is not a number",
    ("unionpay", "truncated"): "not a zip archive", ("unionpay", "wrong-encoding"): "not GBK text",
    ("unionpay", "malformed"): "unreadable amount or fee '0000000007.5'",
}  # fmt: skip


@pytest.mark.parametrize("how", ["truncated", "wrong-encoding", "malformed"])
def test_a_damaged_bill_fails_the_run_changes_nothing_and_is_flagged(kit, day_of_business, how):
    day = day_of_business["day"]
    good, _ = bill_download(account=kit.account, day=day)
    content = kit.damaged(bill_path(good).read_bytes(), how)
    good.delete()
    bad, _ = bill_upload(account=kit.account, day=day, file_name="bad", content=io.BytesIO(content), by="fin")
    before = state()

    with pytest.raises(BillFileInvalid) as excinfo:
        recon_run(account=kit.account, day=day, bill=bad)

    assert f"bill bad of account {kit.account.pk} for {day} is invalid: {kit.provider}" in str(excinfo.value)
    assert DAMAGE_SAYS[kit.provider, how] in str(excinfo.value)
    assert state() == before
    bad.refresh_from_db()
    assert bad.status == BillFileStatus.INVALID and bad.error.startswith(kit.provider)
    failed = ReconRun.objects.get()
    assert (failed.status, failed.bill_id, failed.error) == (ReconRunStatus.FAILED, bad.pk, str(excinfo.value))
    with pytest.raises(BillFileInvalid):  # the same file again: refused at once, still nothing changed
        recon_run(account=kit.account, day=day, bill=bad)
    assert state() == before


@pytest.mark.parametrize("kit", ["alipay"], indirect=True)
def test_the_command_runs_every_account_with_progress(kit, day_of_business):
    out = io.StringIO()

    call_command("recon_run", "--all", "--date", day_of_business["day"].isoformat(), stdout=out)

    text = out.getvalue()
    assert "5 lines, 5 matched" in text and "load" in text and "match" in text
    assert ReconRun.objects.get().matched == 5


@pytest.mark.parametrize("kit", ["alipay"], indirect=True)
def test_the_internal_check_names_what_paysys_disagrees_with_itself_on(kit, api, merchant):
    sound = kit.pay(api, merchant, "recon_sound", 700)
    failed = kit.pay(api, merchant, "recon_failed", 500)
    unbooked = kit.charge(api, merchant, "recon_unbooked", 300)["id"]  # never paid: no entry
    assert internal_problems(account_id=kit.account.pk, day=today()) == []
    with connection.cursor() as cursor:  # what a bug would leave: states the ledger does not back
        cursor.execute("UPDATE payments_charge SET status = 'succeeded', paid_at = now() WHERE public_id = %s",
                       [unbooked])  # fmt: skip
        cursor.execute("UPDATE payments_charge SET status = 'failed' WHERE public_id = %s", [failed])

    problems = internal_problems(account_id=kit.account.pk, day=today())

    assert sorted(problems) == [
        f"charge {unbooked} succeeded without a payment.succeeded entry",
        f"entry payment.succeeded {failed} has no succeeded charge",
    ]
    assert sound not in "".join(problems)
