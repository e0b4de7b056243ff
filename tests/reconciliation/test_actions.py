"""Resolving discrepancies from the console's services: query, correct local state, write off."""

import pytest
from django.core.management import call_command

from apps.ledger.exceptions import MakerCannotApprove
from apps.ledger.models import Adjustment, JournalEntry, Posting
from apps.payments.models import Charge, ChargeStatus
from apps.reconciliation import actions
from apps.reconciliation.exceptions import ActionNotAllowed
from apps.reconciliation.models import Discrepancy, DiscrepancyAction
from apps.reconciliation.services import recon_run
from apps.sandbox.faults import fault_set
from tests.reconciliation.conftest import create_and_pay, shift_days, today


def balance(type_: str) -> int:
    return sum(Posting.objects.filter(account__type=type_).values_list("amount", flat=True))


def audit(d: Discrepancy) -> list[tuple[str, str, str]]:
    return list(
        DiscrepancyAction.objects.filter(discrepancy=d).order_by("pk").values_list("action", "source", "target")
    )


@pytest.fixture
def lost_notification(alipay, api, merchant):
    """A payment the payer made while paysys never heard of it (the notification was lost)."""
    account, created = alipay
    fault_set(provider="alipay", kind="notify_lost", merchant_ref=created.app.app_id)
    charge = create_and_pay(api, merchant, "recon_lost", 2000)
    assert Charge.objects.get(public_id=charge["id"]).status == ChargeStatus.PENDING
    shift_days(1)
    return account, charge["id"]


def test_a_payment_paysys_missed_is_a_status_mismatch_corrected_through_the_pay_core(lost_notification):
    account, charge_id = lost_notification
    from datetime import timedelta

    run = recon_run(account=account, day=today() - timedelta(days=1))
    d = Discrepancy.objects.get()
    assert (d.kind, d.ref, d.bill_amount, d.local_amount, d.local_status) == (
        "status_mismatch", charge_id, 2000, 2000, "pending",
    )  # fmt: skip
    assert run.status_mismatch == 1

    answer = actions.discrepancy_query_channel(discrepancy_id=d.pk, by="alice")
    assert answer.status == "succeeded"
    d = actions.discrepancy_correct_local(discrepancy_id=d.pk, by="alice")

    assert d.status == "resolved"
    assert Charge.objects.get(public_id=charge_id).status == ChargeStatus.SUCCEEDED
    assert JournalEntry.objects.filter(event_type="payment.succeeded", reference=charge_id).count() == 1
    # 20.00 less the 0.12 channel fee: booked to clearing by the payment, moved to bank by the resolution.
    assert (balance("bank"), balance("channel_clearing")) == (1988, 0)
    assert audit(d) == [("query_channel", "open", "investigating"), ("correct_local", "investigating", "resolved")]
    call_command("ledger_check")


def test_a_line_paysys_does_not_have_is_written_off_to_suspense_under_maker_checker(alipay, day_of_business):
    account, created = alipay
    fault_set(provider="alipay", kind="bill_extra_line", merchant_ref=created.app.app_id,
              params={"amount": "5.00", "out_trade_no": "ch_unknown"})  # fmt: skip
    recon_run(account=account, day=day_of_business["day"])
    d = Discrepancy.objects.get()
    assert (d.kind, d.bill_amount, d.bill_fee, d.difference) == ("local_missing", 500, 3, 497)
    with pytest.raises(ActionNotAllowed):
        actions.discrepancy_correct_local(discrepancy_id=d.pk, by="alice")
    bank_before, suspense_before = balance("bank"), balance("suspense")

    adjustment = actions.discrepancy_write_off_request(discrepancy_id=d.pk, maker="alice")
    with pytest.raises(MakerCannotApprove):
        actions.discrepancy_write_off_approve(discrepancy_id=d.pk, checker="alice")
    assert (balance("bank"), balance("suspense")) == (bank_before, suspense_before)
    d = actions.discrepancy_write_off_approve(discrepancy_id=d.pk, checker="bob")

    assert d.status == "written_off"
    assert Adjustment.objects.get(pk=adjustment.pk).status == "approved"
    # The 4.97 the channel will settle: suspense credited, then cleared to bank.
    assert (balance("bank") - bank_before, balance("suspense") - suspense_before) == (497, -497)
    assert audit(d) == [("write_off_request", "open", "investigating"),
                        ("write_off_approve", "investigating", "written_off")]  # fmt: skip
    call_command("ledger_check")


def test_a_missing_line_is_written_off_from_channel_clearing(alipay, day_of_business):
    account, created = alipay
    target = day_of_business["charges"][1]  # 0.50, fee 0.00
    fault_set(provider="alipay", kind="bill_missing_line", merchant_ref=created.app.app_id, out_trade_no=target)
    recon_run(account=account, day=day_of_business["day"])
    d = Discrepancy.objects.get()
    clearing_before = balance("channel_clearing")

    actions.discrepancy_write_off_request(discrepancy_id=d.pk, maker="alice")
    d = actions.discrepancy_write_off_approve(discrepancy_id=d.pk, checker="bob")

    assert (d.kind, d.difference, d.status) == ("channel_missing", -50, "written_off")
    assert balance("channel_clearing") - clearing_before == -50
    assert balance("channel_clearing") == 0  # nothing is left owed by the channel
    call_command("ledger_check")
