"""The posting engine against real PostgreSQL: balances, idempotency, the database's own rules
(the deferred balance trigger, append-only) and concurrency with real threads."""

import pytest
from django.db import IntegrityError, connection, transaction

from apps.ledger import accounts as acc
from apps.ledger.exceptions import InsufficientBalance, UnbalancedEntry
from apps.ledger.journal import Line, journal_post
from apps.ledger.models import Account, BalanceSlot, JournalEntry, Posting
from apps.ledger.selectors import balance_of, ledger_violations
from apps.ledger.tests.helpers import available, pending, post_payment, run_threads

BANK = acc.AccountKey("bank", 0, "CNY")


def _fund_available(merchant_id: int, amount: int, reference: str = "fund-1"):
    return journal_post(
        event_type="adjustment",
        reference=reference,
        livemode=True,
        lines=[Line.debit(BANK, amount), Line.credit(acc.merchant_available(merchant_id, "CNY"), amount)],
    )


def _payout(merchant_id: int, amount: int, reference: str):
    return journal_post(
        event_type="payout",
        reference=reference,
        livemode=True,
        lines=[Line.debit(acc.merchant_available(merchant_id, "CNY"), amount), Line.credit(BANK, amount)],
    )


@pytest.mark.django_db
def test_payment_posts_the_design_example_and_balances():
    posted = post_payment("ch_1", amount=10000, platform_fee=60, channel_fee=25)

    assert posted.created
    amounts = {
        (p.account.type, p.account.owner_id): p.amount
        for p in Posting.objects.filter(entry_id=posted.entry_id).select_related("account")
    }
    assert amounts == {
        ("channel_clearing", 7): 9975,
        ("channel_fee_expense", 7): 25,
        ("merchant_pending", 1): -9940,
        ("platform_fee_revenue", 0): -60,
    }
    assert pending() == 9940
    assert balance_of(livemode=True, key=acc.channel_clearing(7, "CNY")) == 9975
    assert balance_of(livemode=True, key=acc.platform_fee_revenue("CNY")) == 60
    assert ledger_violations(check_charges=False) == []


@pytest.mark.django_db
def test_accounts_are_created_once_with_their_chart_properties():
    post_payment("ch_1")
    post_payment("ch_2")

    account = Account.objects.get(type="merchant_pending", owner_id=1)
    assert (account.normal_side, account.may_go_negative, account.slot_count) == ("credit", False, 16)
    assert Account.objects.get(type="channel_clearing").may_go_negative is True
    assert Account.objects.count() == 4


@pytest.mark.django_db
def test_the_same_event_posted_twice_writes_one_entry():
    first = post_payment("ch_dup")
    second = post_payment("ch_dup")

    assert (first.created, second.created) == (True, False)
    assert second.entry_id == first.entry_id
    assert JournalEntry.objects.count() == 1
    assert Posting.objects.count() == 4
    assert pending() == 9940


@pytest.mark.django_db
def test_unbalanced_lines_are_refused_and_nothing_is_written():
    with pytest.raises(UnbalancedEntry):
        journal_post(
            event_type="adjustment",
            reference="bad",
            livemode=True,
            lines=[Line.debit(BANK, 100), Line.credit(acc.merchant_available(1, "CNY"), 99)],
        )

    assert (JournalEntry.objects.count(), Posting.objects.count(), Account.objects.count()) == (0, 0, 0)


@pytest.mark.django_db
def test_a_decrease_below_zero_is_refused_and_nothing_is_written():
    _fund_available(1, 500)

    with pytest.raises(InsufficientBalance), transaction.atomic():
        _payout(1, 501, "po-1")

    assert available() == 500
    assert not JournalEntry.objects.filter(reference="po-1").exists()
    assert ledger_violations(check_charges=False) == []


def _insert_raw_entry(cursor, reference: str) -> int:
    cursor.execute(
        "INSERT INTO ledger_journalentry (event_type, reference, livemode, accounting_date, occurred_at,"
        " description, created_at) VALUES ('adjustment', %s, true, current_date, now(), '', now()) RETURNING id",
        [reference],
    )
    return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_the_database_rejects_an_unbalanced_entry_inserted_directly():
    account = Account.objects.create(
        livemode=True, type="bank", owner_id=0, currency="CNY", normal_side="debit", may_go_negative=True
    )

    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic(), connection.cursor() as cur:
        entry_id = _insert_raw_entry(cur, "raw-1")
        cur.execute(
            "INSERT INTO ledger_posting (entry_id, account_id, amount, currency) VALUES (%s, %s, 100, 'CNY')",
            [entry_id, account.pk],
        )
        # The check is deferred: it runs at commit, when the atomic block exits.

    assert (JournalEntry.objects.count(), Posting.objects.count()) == (0, 0)


@pytest.mark.django_db(transaction=True)
def test_the_database_accepts_a_balanced_entry_inserted_directly():
    bank = Account.objects.create(
        livemode=True, type="bank", owner_id=0, currency="CNY", normal_side="debit", may_go_negative=True
    )
    suspense = Account.objects.create(
        livemode=True, type="suspense", owner_id=0, currency="CNY", normal_side="debit", may_go_negative=True
    )

    with transaction.atomic(), connection.cursor() as cur:
        entry_id = _insert_raw_entry(cur, "raw-2")
        cur.execute(
            "INSERT INTO ledger_posting (entry_id, account_id, amount, currency) VALUES (%s, %s, 100, 'CNY'),"
            " (%s, %s, -100, 'CNY')",
            [entry_id, bank.pk, entry_id, suspense.pk],
        )

    assert Posting.objects.filter(entry_id=entry_id).count() == 2


@pytest.mark.django_db
def test_postings_and_entries_are_append_only():
    posted = post_payment("ch_1")

    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        Posting.objects.filter(entry_id=posted.entry_id).update(amount=1)
    with pytest.raises(Exception, match="append-only"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("DELETE FROM ledger_journalentry WHERE id = %s", [posted.entry_id])

    assert sorted(Posting.objects.values_list("amount", flat=True)) == [-9940, -60, 25, 9975]


@pytest.mark.django_db
def test_a_hot_account_spreads_over_slots_and_its_balance_is_exact():
    for n in range(40):
        post_payment(f"ch_{n}", amount=1000 + n, platform_fee=6, channel_fee=3)

    account = Account.objects.get(type="merchant_pending")
    slots = BalanceSlot.objects.filter(account=account)
    assert slots.count() > 1
    assert pending() == sum(1000 + n - 6 for n in range(40))
    assert ledger_violations(check_charges=False) == []


# --- concurrency: real threads, real PostgreSQL ----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_16_threads_posting_payments_to_one_merchant_give_exact_balances():
    per_thread = 10

    def work(i: int) -> int:
        for n in range(per_thread):
            post_payment(f"ch_{i}_{n}", amount=1000 + i, platform_fee=6, channel_fee=3)
        return i

    results = run_threads(16, work)

    assert results == list(range(16))
    gross = sum((1000 + i) * per_thread for i in range(16))
    count = 16 * per_thread
    assert pending() == gross - 6 * count
    assert balance_of(livemode=True, key=acc.channel_clearing(7, "CNY")) == gross - 3 * count
    assert balance_of(livemode=True, key=acc.platform_fee_revenue("CNY")) == 6 * count
    assert balance_of(livemode=True, key=acc.channel_fee_expense(7, "CNY")) == 3 * count
    assert JournalEntry.objects.count() == count
    assert ledger_violations(check_charges=False) == []


@pytest.mark.django_db(transaction=True)
def test_16_threads_overdrawing_a_no_negative_account_only_the_covered_ones_succeed():
    _fund_available(1, 1000)

    results = run_threads(16, lambda i: _payout(1, 100, f"po-{i}"))

    succeeded = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, InsufficientBalance)]
    assert (len(succeeded), len(refused)) == (10, 6)
    assert available() == 0
    assert JournalEntry.objects.filter(event_type="payout").count() == 10
    assert ledger_violations(check_charges=False) == []


@pytest.mark.django_db(transaction=True)
def test_the_same_event_posted_concurrently_yields_one_entry():
    results = run_threads(16, lambda i: post_payment("ch_same"))

    assert all(not isinstance(r, Exception) for r in results), results
    assert sum(r.created for r in results) == 1
    assert len({r.entry_id for r in results}) == 1
    assert JournalEntry.objects.count() == 1
    assert pending() == 9940
    assert ledger_violations(check_charges=False) == []


@pytest.mark.django_db(transaction=True)
def test_refunds_and_payments_race_without_overdraft():
    """Payments credit pending (no lock) while refunds debit it (under the account lock)."""
    from apps.ledger import services
    from apps.ledger.tests.helpers import cny

    for n in range(8):
        post_payment(f"ch_base_{n}", amount=1000, platform_fee=0, channel_fee=0)

    def work(i: int):
        if i % 2:
            return post_payment(f"ch_more_{i}", amount=1000, platform_fee=0, channel_fee=0)
        return services.refund_succeeded_post(
            reference=f"re_{i}", livemode=True, app_id=1, merchant_id=1, channel_account_id=7,
            charge_amount=cny(1000), refunded_before=cny(0), amount=cny(1000), platform_fee=cny(0),
            channel_fee=cny(0),
        )  # fmt: skip

    results = run_threads(16, work)

    assert all(not isinstance(r, Exception) for r in results), results
    assert pending() + available() == 8 * 1000
    assert ledger_violations(check_charges=False) == []
