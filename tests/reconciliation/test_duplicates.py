"""A line a channel's bill lists more than once (the same payment or refund, same status) moves its
money once: the first copy is matched and cleared, every further copy is a `duplicate_line`
discrepancy for finance, with the copies' own figures. For each provider's bill format."""

import io
from datetime import datetime, time

import pytest

from apps.ledger.models import Posting
from apps.payments.models import Charge, ChargeStatus
from apps.reconciliation import actions
from apps.reconciliation.bills import bill_upload
from apps.reconciliation.exceptions import ActionNotAllowed
from apps.reconciliation.matching import bill_zone
from apps.reconciliation.models import Discrepancy, DiscrepancyAction
from apps.reconciliation.services import recon_run
from apps.sandbox.faults import fault_clear, fault_set
from tests.reconciliation.conftest import balance, discrepancies, ledger_ok, state

# The day of business: payments 7.50, 0.50, 100.00 less fees 0.05, 0.00, 0.60; refunds 2.50 less
# 0.02 and 100.00 less 0.60.
DAY_NET = (750 - 5) + (50 - 0) + (10000 - 60) - (250 - 2) - (10000 - 60)
OTHER_KINDS = ("local_missing", "channel_missing", "amount_mismatch", "status_mismatch", "fee_mismatch", "held")


def upload(kit, day, content: bytes, name: str):
    return bill_upload(account=kit.account, day=day, file_name=name, content=io.BytesIO(content), by="fin")


def audit(d: Discrepancy) -> list[tuple[str, str, str, str]]:
    return list(
        DiscrepancyAction.objects.filter(discrepancy=d).order_by("pk").values_list("action", "source", "target", "by")
    )


@pytest.mark.parametrize(
    ("item", "times", "expected"),
    [
        ("payment", 2, (750, 5, 745)),
        ("refund", 2, (250, 2, -248)),
        ("payment", 3, (1500, 10, 1490)),
    ],
    ids=["payment-twice", "refund-twice", "payment-three-times"],
)
def test_a_line_listed_again_is_a_duplicate_line_and_its_money_moves_once(kit, day_of_business, item, times, expected):
    day = day_of_business["day"]
    ref = day_of_business["charges"][0] if item == "payment" else day_of_business["refunds"][0]  # 7.50 / its 2.50
    content = kit.repeated(kit.corrected_bill(day), ref, times)
    bill, _ = upload(kit, day, content, "repeated")

    run = recon_run(account=kit.account, day=day, bill=bill)

    amount, fee, difference = expected  # the further copies' figures, summed
    assert discrepancies() == [("duplicate_line", ref, amount, None, fee, None)]
    d = Discrepancy.objects.get()
    assert (d.item_kind, d.bill_kind, d.bill_status, d.local_kind, d.status) == (item, item, "succeeded", "", "open")
    assert (d.bill_net, d.difference) == (difference, difference)
    assert (run.cleared, balance("bank"), balance("channel_clearing")) == ({"CNY": DAY_NET}, DAY_NET, 0)
    assert (run.lines, run.matched, run.duplicate_line) == (5 + times - 1, 5, times - 1)
    assert [getattr(run, kind) for kind in OTHER_KINDS] == [0] * len(OTHER_KINDS)
    ledger_ok()
    before = state()

    again = recon_run(account=kit.account, day=day, bill=bill)
    reuploaded, created = upload(kit, day, content, "again")

    assert again.pk == run.pk and (created, reuploaded.pk) == (False, bill.pk)
    assert recon_run(account=kit.account, day=day, bill=reuploaded).pk == run.pk
    assert state() == before


def test_a_second_line_naming_a_paid_charge_under_another_trade_number_is_a_duplicate_line(kit, day_of_business):
    day, charge = day_of_business["day"], day_of_business["charges"][0]  # 7.50, fee 0.05
    kit.extra_line(750, charge_id=charge)  # the sandbox's extra line, naming paysys's charge

    run = recon_run(account=kit.account, day=day)

    assert discrepancies() == [("duplicate_line", charge, 750, None, 5, None)]
    assert (run.lines, run.matched, run.duplicate_line, run.local_missing) == (6, 5, 1, 0)
    assert (balance("bank"), balance("channel_clearing")) == (DAY_NET, 0)
    ledger_ok()


def test_a_newer_file_listing_a_line_twice_moves_nothing_and_a_corrected_one_supersedes_it(kit, day_of_business):
    day, charge = day_of_business["day"], day_of_business["charges"][1]  # 0.50, fee 0.00
    content = kit.corrected_bill(day)
    first = recon_run(account=kit.account, day=day, bill=upload(kit, day, content, "clean")[0])
    assert first.cleared == {"CNY": DAY_NET}

    second = recon_run(account=kit.account, day=day, bill=upload(kit, day, kit.repeated(content, charge), "twice")[0])

    assert (second.duplicate_line, second.matched, second.cleared) == (1, 5, {})
    assert discrepancies() == [("duplicate_line", charge, 50, None, 0, None)]
    assert (balance("bank"), balance("channel_clearing")) == (DAY_NET, 0)

    third = recon_run(account=kit.account, day=day, bill=upload(kit, day, kit.reissued(content), "corrected")[0])

    assert (third.duplicate_line, third.matched, third.cleared) == (0, 5, {})
    d = Discrepancy.objects.get()
    assert (d.status, d.settled) == ("resolved", None)
    assert audit(d) == [("superseded", "open", "resolved", "system")]
    assert (balance("bank"), balance("channel_clearing")) == (DAY_NET, 0)
    ledger_ok()


@pytest.mark.parametrize("kit", ["alipay", "wechatpay"], indirect=True)
def test_a_duplicate_line_is_resolved_without_money_when_the_channel_settles_the_item_once(kit, day_of_business):
    day, charge = day_of_business["day"], day_of_business["charges"][0]
    recon_run(account=kit.account, day=day,
              bill=upload(kit, day, kit.repeated(kit.corrected_bill(day), charge), "twice")[0])  # fmt: skip
    d = Discrepancy.objects.get()
    with pytest.raises(ActionNotAllowed) as excinfo:  # paysys has nothing to correct: one charge, one line matched
        actions.discrepancy_correct_local(discrepancy_id=d.pk, by="alice")
    assert excinfo.value.code == "nothing_to_correct"
    postings = Posting.objects.count()

    d = actions.discrepancy_resolve_duplicate(discrepancy_id=d.pk, by="alice")

    assert (d.kind, d.status, d.settled) == ("duplicate_line", "resolved", None)
    assert d.resolution == "listed more than once on the bill; the channel settles the item once (alice)"
    assert audit(d) == [("resolve_duplicate", "open", "resolved", "alice")]
    assert Posting.objects.count() == postings
    assert (balance("bank"), balance("channel_clearing")) == (DAY_NET, 0)
    with pytest.raises(ActionNotAllowed):  # closed: nothing happens twice
        actions.discrepancy_resolve_duplicate(discrepancy_id=d.pk, by="alice")
    ledger_ok()


@pytest.mark.parametrize("kit", ["alipay", "wechatpay"], indirect=True)
def test_the_channel_is_asked_about_the_refund_a_duplicate_line_names(kit, day_of_business):
    day, refund = day_of_business["day"], day_of_business["refunds"][0]
    recon_run(account=kit.account, day=day,
              bill=upload(kit, day, kit.repeated(kit.corrected_bill(day), refund), "twice")[0])  # fmt: skip
    d = Discrepancy.objects.get()
    postings = Posting.objects.count()

    answer = actions.discrepancy_query_channel(discrepancy_id=d.pk, by="alice")

    assert (type(answer).__name__, answer.out_refund_no, answer.status) == ("RefundResult", refund, "succeeded")
    assert audit(d) == [("query_channel", "open", "investigating", "alice")]
    assert Posting.objects.count() == postings  # asking moves no money


@pytest.mark.parametrize("kit", ["alipay"], indirect=True)
def test_only_a_duplicate_line_is_resolved_as_one(kit, day_of_business):
    kit.altered_line(day_of_business["charges"][0], "fee", 3)
    recon_run(account=kit.account, day=day_of_business["day"])
    d = Discrepancy.objects.get()
    before = state()

    with pytest.raises(ActionNotAllowed) as excinfo:
        actions.discrepancy_resolve_duplicate(discrepancy_id=d.pk, by="alice")

    assert excinfo.value.code == "not_a_duplicate_line"
    d.refresh_from_db()
    assert (d.kind, d.status) == ("fee_mismatch", "open")
    assert state() == before and DiscrepancyAction.objects.count() == 0


@pytest.mark.parametrize("kit", ["alipay", "unionpay"], indirect=True)
def test_a_duplicate_line_the_channel_settles_twice_is_written_off_and_never_moved_again(kit, day_of_business):
    day, charge = day_of_business["day"], day_of_business["charges"][0]  # 7.50, fee 0.05
    content = kit.corrected_bill(day)
    recon_run(account=kit.account, day=day, bill=upload(kit, day, kit.repeated(content, charge), "twice")[0])
    d = Discrepancy.objects.get()

    actions.discrepancy_write_off_request(discrepancy_id=d.pk, maker="alice")
    d = actions.discrepancy_write_off_approve(discrepancy_id=d.pk, checker="bob")

    # The second 7.45 the channel settles: suspense credited, then cleared to bank.
    assert (d.status, d.settled) == ("written_off", 745)
    assert (balance("bank"), balance("channel_clearing"), balance("suspense")) == (DAY_NET + 745, 0, -745)
    ledger_ok()

    corrected = recon_run(account=kit.account, day=day, bill=upload(kit, day, kit.reissued(content), "once")[0])
    twice = recon_run(account=kit.account, day=day,
                      bill=upload(kit, day, kit.reissued(kit.repeated(content, charge)), "twice again")[0])  # fmt: skip

    # The charge's own money moved with the first run, the copy's with the write-off: neither again.
    assert (corrected.matched, corrected.cleared, twice.duplicate_line, twice.cleared) == (5, {}, 1, {})
    assert (balance("bank"), balance("channel_clearing"), balance("suspense")) == (DAY_NET + 745, 0, -745)
    assert Discrepancy.objects.get().status == "written_off"
    ledger_ok()


@pytest.mark.parametrize("kit", ["alipay"], indirect=True)
def test_an_item_settled_by_a_correction_and_then_listed_twice_is_not_moved_again(kit, api, merchant, day_of_business):
    day = day_of_business["day"]
    fault_set(provider=kit.provider, kind="notify_lost", merchant_ref=kit.merchant_ref)
    lost = kit.pay(api, merchant, "recon_lost_dup", 2000)  # paysys never heard: still pending
    kit.book_at(lost, datetime.combine(day, time(12, 0), bill_zone()))
    recon_run(account=kit.account, day=day)
    mismatch = Discrepancy.objects.get()
    assert (mismatch.kind, mismatch.ref) == ("status_mismatch", lost)
    actions.discrepancy_correct_local(discrepancy_id=mismatch.pk, by="alice")  # moves its 19.88 itself
    assert (Charge.objects.get(public_id=lost).status, balance("bank")) == (ChargeStatus.SUCCEEDED, DAY_NET + 1988)
    fault_clear(provider=kit.provider)

    twice = recon_run(account=kit.account, day=day,
                      bill=upload(kit, day, kit.repeated(kit.corrected_bill(day), lost), "twice")[0])  # fmt: skip

    assert (twice.matched, twice.duplicate_line, twice.status_mismatch, twice.cleared) == (6, 1, 0, {})
    assert (balance("bank"), balance("channel_clearing")) == (DAY_NET + 1988, 0)
    assert sorted(Discrepancy.objects.values_list("kind", "ref", "status")) == [
        ("duplicate_line", lost, "open"), ("status_mismatch", lost, "resolved"),
    ]  # fmt: skip
    ledger_ok()
