"""Resolving discrepancies, for each provider: query the channel, correct local state, write off,
resolve; each with its postings, and ledger_check after."""

from datetime import timedelta

import pytest

from apps.ledger.exceptions import MakerCannotApprove
from apps.ledger.models import Adjustment, JournalEntry, Posting
from apps.payments.models import Charge, ChargeStatus
from apps.reconciliation import actions
from apps.reconciliation.exceptions import ActionNotAllowed
from apps.reconciliation.models import Discrepancy, DiscrepancyAction
from apps.reconciliation.services import recon_run
from apps.sandbox.faults import fault_set
from tests.reconciliation.conftest import balance, ledger_ok, today
from tests.reconciliation.kits import NOBODY


def audit(d: Discrepancy) -> list[tuple[str, str, str]]:
    return list(
        DiscrepancyAction.objects.filter(discrepancy=d).order_by("pk").values_list("action", "source", "target")
    )


@pytest.fixture
def lost_notification(kit, api, merchant):
    """A payment the payer made while paysys never heard of it (the notification was lost)."""
    fault_set(provider=kit.provider, kind="notify_lost", merchant_ref=kit.merchant_ref)
    charge = kit.pay(api, merchant, "recon_lost", 2000)
    assert Charge.objects.get(public_id=charge).status == ChargeStatus.PENDING
    kit.shift_days(1)
    return charge


def test_a_payment_paysys_missed_is_a_status_mismatch_corrected_through_the_pay_core(kit, lost_notification):
    charge_id = lost_notification
    run = recon_run(account=kit.account, day=today() - timedelta(days=1))
    d = Discrepancy.objects.get()
    assert (d.kind, d.ref, d.bill_amount, d.local_amount, d.local_status) == (
        "status_mismatch", charge_id, 2000, 2000, "pending",
    )  # fmt: skip
    assert run.status_mismatch == 1
    assert (balance("bank"), JournalEntry.objects.count()) == (0, 0)

    answer = actions.discrepancy_query_channel(discrepancy_id=d.pk, by="alice")
    assert answer.status == "succeeded"
    assert JournalEntry.objects.count() == 0  # asking changes no money
    d = actions.discrepancy_correct_local(discrepancy_id=d.pk, by="alice")

    assert d.status == "resolved"
    assert Charge.objects.get(public_id=charge_id).status == ChargeStatus.SUCCEEDED
    assert JournalEntry.objects.filter(event_type="payment.succeeded", reference=charge_id).count() == 1
    # 20.00 less the 0.12 channel fee: booked to clearing by the payment, moved to bank by the resolution.
    assert (balance("bank"), balance("channel_clearing")) == (1988, 0)
    assert audit(d) == [("query_channel", "open", "investigating"), ("correct_local", "investigating", "resolved")]
    ledger_ok()


def test_a_line_paysys_does_not_have_is_written_off_to_suspense_under_maker_checker(kit, day_of_business):
    kit.extra_line(500)
    recon_run(account=kit.account, day=day_of_business["day"])
    d = Discrepancy.objects.get()
    assert (d.kind, d.ref, d.bill_amount, d.bill_fee, d.difference) == ("local_missing", NOBODY, 500, 3, 497)
    with pytest.raises(ActionNotAllowed):
        actions.discrepancy_correct_local(discrepancy_id=d.pk, by="alice")
    bank_before, suspense_before, entries_before = balance("bank"), balance("suspense"), JournalEntry.objects.count()

    adjustment = actions.discrepancy_write_off_request(discrepancy_id=d.pk, maker="alice")
    with pytest.raises(MakerCannotApprove):
        actions.discrepancy_write_off_approve(discrepancy_id=d.pk, checker="alice")
    assert (balance("bank"), balance("suspense"), JournalEntry.objects.count()) == (
        bank_before, suspense_before, entries_before,
    )  # fmt: skip
    d = actions.discrepancy_write_off_approve(discrepancy_id=d.pk, checker="bob")

    assert d.status == "written_off"
    assert Adjustment.objects.get(pk=adjustment.pk).status == "approved"
    # The 4.97 the channel will settle: suspense credited, then cleared to bank.
    assert (balance("bank") - bank_before, balance("suspense") - suspense_before) == (497, -497)
    assert audit(d) == [("write_off_request", "open", "investigating"),
                        ("write_off_approve", "investigating", "written_off")]  # fmt: skip
    ledger_ok()


def test_a_missing_line_is_written_off_from_channel_clearing(kit, day_of_business):
    kit.missing_line(day_of_business["charges"][1])  # 0.50, fee 0.00
    recon_run(account=kit.account, day=day_of_business["day"])
    d = Discrepancy.objects.get()
    assert (d.kind, d.ref) == ("channel_missing", day_of_business["charges"][1])
    clearing_before = balance("channel_clearing")
    assert clearing_before == 50

    actions.discrepancy_write_off_request(discrepancy_id=d.pk, maker="alice")
    d = actions.discrepancy_write_off_approve(discrepancy_id=d.pk, checker="bob")

    assert (d.kind, d.difference, d.status) == ("channel_missing", -50, "written_off")
    assert (balance("channel_clearing"), balance("suspense")) == (0, 50)  # nothing is left owed by the channel
    ledger_ok()


def test_a_discrepancy_the_provider_explains_is_resolved_without_money(kit, day_of_business):
    kit.altered_line(day_of_business["charges"][0], "fee", 3)
    recon_run(account=kit.account, day=day_of_business["day"])
    d = Discrepancy.objects.get()
    postings = Posting.objects.count()

    d = actions.discrepancy_resolve(discrepancy_id=d.pk, by="alice", resolution="the channel refunds the 0.03")

    assert (d.kind, d.status, d.resolution) == ("fee_mismatch", "resolved", "the channel refunds the 0.03")
    assert Posting.objects.count() == postings
    assert audit(d) == [("resolve", "open", "resolved")]
    with pytest.raises(ActionNotAllowed):
        actions.discrepancy_resolve(discrepancy_id=d.pk, by="alice", resolution="again")
    ledger_ok()
