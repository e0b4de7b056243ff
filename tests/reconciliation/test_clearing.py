"""A channel's matched payments move from channel clearing to bank exactly once, however many files
and runs a day has: a corrected file, a reissued one, a file after a discrepancy action, two at once."""

import io
import threading
from datetime import datetime, time

import pytest
from django.db import connection

from apps.ledger.models import JournalEntry
from apps.reconciliation import actions
from apps.reconciliation.bills import bill_path, bill_upload
from apps.reconciliation.matching import bill_zone
from apps.reconciliation.models import Discrepancy, DiscrepancyAction
from apps.reconciliation.services import recon_run
from apps.sandbox.faults import fault_clear, fault_set
from tests.reconciliation.conftest import balance, ledger_ok, state

# The day of business: payments 7.50, 0.50, 100.00 less fees 0.05, 0.00, 0.60; refunds 2.50 less
# 0.02 and 100.00 less 0.60.
DAY_NET = (750 - 5) + (50 - 0) + (10000 - 60) - (250 - 2) - (10000 - 60)


def clearing_entries() -> list[int]:
    return list(JournalEntry.objects.filter(event_type="recon.clearing").order_by("pk").values_list("pk", flat=True))


def upload(kit, day, content: bytes, name: str):
    return bill_upload(account=kit.account, day=day, file_name=name, content=io.BytesIO(content), by="fin")[0]


def test_a_corrected_file_uploaded_later_moves_only_what_the_first_one_missed(kit, day_of_business):
    day, missing = day_of_business["day"], day_of_business["charges"][1]  # 0.50, fee 0.00
    kit.missing_line(missing)
    first = recon_run(account=kit.account, day=day)
    assert (first.channel_missing, first.cleared_to_bank, balance("bank")) == (1, DAY_NET - 50, DAY_NET - 50)
    fault_clear(provider=kit.provider)  # the provider corrects its bill

    second = recon_run(account=kit.account, day=day, bill=upload(kit, day, kit.corrected_bill(day), "corrected"))

    assert (second.lines, second.matched, second.channel_missing) == (5, 5, 0)
    assert second.cleared_to_bank == 50 and second.cleared == {"CNY": 50}
    assert (balance("bank"), balance("channel_clearing")) == (DAY_NET, 0)
    d = Discrepancy.objects.get()  # the first file's discrepancy: resolved by the newer bill, no money
    assert (d.kind, d.ref, d.status, d.settled) == ("channel_missing", missing, "resolved", None)
    assert list(DiscrepancyAction.objects.values_list("action", "source", "target", "by")) == [
        ("superseded", "open", "resolved", "system")
    ]
    assert len(clearing_entries()) == 2
    before = state()

    again = recon_run(account=kit.account, day=day, bill=upload(kit, day, bill_path(first.bill).read_bytes(), "x"))

    assert again.pk == first.pk and state() == before  # the first file once more: it was run, nothing changes
    ledger_ok()


def test_a_reissued_file_with_the_same_lines_moves_nothing(kit, day_of_business):
    day = day_of_business["day"]
    first = recon_run(account=kit.account, day=day)
    entries = clearing_entries()

    second = recon_run(account=kit.account, day=day,
                       bill=upload(kit, day, kit.reissued(bill_path(first.bill).read_bytes()), "reissued"))  # fmt: skip

    assert second.pk != first.pk and second.bill_id != first.bill_id
    assert (second.lines, second.matched, second.cleared_to_bank, second.cleared) == (5, 5, 0, {})
    assert clearing_entries() == entries
    assert (balance("bank"), balance("channel_clearing")) == (DAY_NET, 0)
    ledger_ok()


def test_a_newer_file_that_drops_a_line_takes_its_net_back(kit, day_of_business):
    day, dropped = day_of_business["day"], day_of_business["charges"][0]  # 7.50, fee 0.05
    recon_run(account=kit.account, day=day)
    kit.missing_line(dropped)

    second = recon_run(account=kit.account, day=day, bill=upload(kit, day, kit.corrected_bill(day), "later"))

    assert (second.channel_missing, second.cleared) == (1, {"CNY": -745})
    assert (balance("bank"), balance("channel_clearing")) == (DAY_NET - 745, 745)
    ledger_ok()


@pytest.mark.parametrize("kit", ["alipay"], indirect=True)
@pytest.mark.parametrize("action", ["write_off", "correct_local"])
def test_an_item_settled_by_a_discrepancy_action_is_not_moved_again_by_a_newer_file(
    kit, api, merchant, day_of_business, action
):
    day = day_of_business["day"]
    if action == "write_off":  # channel_missing written off to suspense: the write-off stands
        kit.missing_line(day_of_business["charges"][1])
        first = recon_run(account=kit.account, day=day)
        d = Discrepancy.objects.get()
        actions.discrepancy_write_off_request(discrepancy_id=d.pk, maker="alice")
        actions.discrepancy_write_off_approve(discrepancy_id=d.pk, checker="bob")
        expected_bank = DAY_NET - 50
    else:  # status_mismatch corrected through the pay core: its own clearing moved the item
        fault_set(provider=kit.provider, kind="notify_lost", merchant_ref=kit.merchant_ref)
        lost = kit.pay(api, merchant, "recon_lost2", 2000)
        kit.book_at(lost, datetime.combine(day, time(12, 0), bill_zone()))
        first = recon_run(account=kit.account, day=day)
        d = Discrepancy.objects.get()
        assert (d.kind, d.ref) == ("status_mismatch", lost)
        actions.discrepancy_correct_local(discrepancy_id=d.pk, by="alice")
        expected_bank = DAY_NET + 2000 - 12
    assert Discrepancy.objects.get().settled is not None
    assert balance("bank") == expected_bank
    fault_clear(provider=kit.provider)

    second = recon_run(account=kit.account, day=day,
                       bill=upload(kit, day, kit.reissued(kit.corrected_bill(day)), "newer"))  # fmt: skip

    assert second.pk != first.pk and second.channel_missing == 0 and second.status_mismatch == 0
    assert (second.cleared, balance("bank")) == ({}, expected_bank)
    ledger_ok()


@pytest.mark.parametrize("kit", ["alipay"], indirect=True)
def test_two_files_of_a_day_reconciled_at_once_move_the_net_once(kit, day_of_business):
    day = day_of_business["day"]
    content = kit.corrected_bill(day)
    bills = [upload(kit, day, content, "a"), upload(kit, day, kit.reissued(content), "b")]
    outcomes: list = []

    def run(bill) -> None:
        try:
            outcomes.append(recon_run(account=kit.account, day=day, bill=bill))
        except Exception as exc:
            outcomes.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(bill,)) for bill in bills]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(type(o).__name__ for o in outcomes) == ["ReconRun", "ReconRun"]
    assert sorted(sum(o.cleared.values()) for o in outcomes) == [0, DAY_NET]
    assert (balance("bank"), balance("channel_clearing"), len(clearing_entries())) == (DAY_NET, 0, 1)
    ledger_ok()
