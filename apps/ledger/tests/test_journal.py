"""The posting engine against real PostgreSQL: balances, idempotency, the database's own rules
(the deferred balance trigger, append-only) and concurrency with real threads."""

import threading

import pytest
from django.db import IntegrityError, connection, connections, transaction

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
def test_every_payment_post_runs_the_same_prepared_statement_on_a_cached_plan():
    amounts = [100, 40_000, 5_000_000_000, 70, 123_456, 99, 3_000_000_000, 2_500, 80_000, 12]  # int2 … int8 sizes
    for n, amount in enumerate(amounts):
        post_payment(f"ch_{n}", merchant_id=n + 1, amount=amount, platform_fee=1, channel_fee=1)

    with connection.cursor() as cur:
        cur.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%ledger_balances_add%"],
        )
        [(generic, custom)] = cur.fetchall()  # one statement, whatever the values' sizes
    assert generic + custom >= len(amounts)
    assert generic >= len(amounts) - 5  # PostgreSQL plans the first five, then reuses a generic plan


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


def _raw_account(type_: str, currency: str = "CNY") -> int:
    return Account.objects.create(
        livemode=True, type=type_, owner_id=0, currency=currency, normal_side="debit", may_go_negative=True
    ).pk


def _insert_raw_postings(cursor, entry_id: int, *postings: tuple[int, int, str]) -> None:
    cursor.execute(
        "INSERT INTO ledger_posting (entry_id, account_id, amount, currency) SELECT %s, p.account, p.amount, p.currency"
        " FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS p(account, amount, currency)",
        [entry_id, [p[0] for p in postings], [p[1] for p in postings], [p[2] for p in postings]],
    )


@pytest.mark.django_db(transaction=True)
def test_the_entry_guard_sees_every_posting_of_the_transaction_and_each_currency():
    """One check per entry at commit, over all its postings, however many statements wrote them."""
    bank, suspense = _raw_account("bank"), _raw_account("suspense")
    bank_usd = _raw_account("bank", "USD")

    with transaction.atomic(), connection.cursor() as cur:  # balanced only once both statements ran
        entry_id = _insert_raw_entry(cur, "raw-split")
        _insert_raw_postings(cur, entry_id, (bank, 100, "CNY"))
        _insert_raw_postings(cur, entry_id, (suspense, -60, "CNY"), (suspense, -40, "CNY"))
    with transaction.atomic(), connection.cursor() as cur:  # sums to zero: ledger_check's to report
        empty = _insert_raw_entry(cur, "raw-empty")
    unbalanced_per_currency = pytest.raises(IntegrityError, match="does not balance: CNY sums to 100")
    with unbalanced_per_currency, transaction.atomic(), connection.cursor() as cur:  # zero overall, not per currency
        other = _insert_raw_entry(cur, "raw-currencies")
        _insert_raw_postings(cur, other, (bank, 100, "CNY"), (bank_usd, -100, "USD"))
    with transaction.atomic(), connection.cursor() as cur:
        both = _insert_raw_entry(cur, "raw-both")
        _insert_raw_postings(cur, both, (bank, 100, "CNY"), (suspense, -100, "CNY"), (bank_usd, 5, "USD"),
                             (bank_usd, -5, "USD"))  # fmt: skip

    assert sorted(JournalEntry.objects.values_list("reference", flat=True)) == ["raw-both", "raw-empty", "raw-split"]
    assert Posting.objects.count() == 7
    # (raw postings leave the balance slots alone: ledger_check reports those accounts too)
    assert f"entry {empty} (adjustment raw-empty) has no postings" in ledger_violations(check_charges=False)


@pytest.mark.django_db(transaction=True)
def test_postings_cannot_be_added_to_an_entry_of_an_earlier_transaction():
    posted = post_payment("ch_1")
    bank, suspense = _raw_account("bank"), _raw_account("suspense")

    for postings in [((bank, 100, "CNY"),), ((bank, 100, "CNY"), (suspense, -100, "CNY"))]:
        refused = pytest.raises(IntegrityError, match="earlier transaction")
        with refused, transaction.atomic(), connection.cursor() as cur:
            _insert_raw_postings(cur, posted.entry_id, *postings)

    assert sorted(Posting.objects.values_list("amount", flat=True)) == [-9940, -60, 25, 9975]
    assert ledger_violations(check_charges=False) == []


@pytest.mark.django_db
def test_an_entry_records_its_own_transaction_whatever_the_insert_says():
    bank, suspense = _raw_account("bank"), _raw_account("suspense")
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO ledger_journalentry (event_type, reference, livemode, accounting_date, occurred_at,"
            " description, created_at, xact_id) VALUES ('adjustment', 'forged', true, current_date, now(), '', now(),"
            " pg_current_xact_id()::text::bigint + 1) RETURNING id, xact_id = pg_current_xact_id()::text::bigint"
        )
        entry_id, own = cur.fetchone()
        _insert_raw_postings(cur, entry_id, (bank, 100, "CNY"), (suspense, -100, "CNY"))

    assert own


@pytest.mark.django_db
def test_postings_and_entries_are_append_only():
    posted = post_payment("ch_1")

    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        Posting.objects.filter(entry_id=posted.entry_id).update(amount=1)
    with pytest.raises(Exception, match="append-only"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("DELETE FROM ledger_journalentry WHERE id = %s", [posted.entry_id])

    assert sorted(Posting.objects.values_list("amount", flat=True)) == [-9940, -60, 25, 9975]


@pytest.mark.django_db
def test_one_writer_at_a_time_uses_the_first_slot_and_the_balance_is_exact():
    for n in range(40):
        post_payment(f"ch_{n}", amount=1000 + n, platform_fee=6, channel_fee=3)

    account = Account.objects.get(type="merchant_pending")
    assert list(BalanceSlot.objects.filter(account=account).values_list("slot", flat=True)) == [0]
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


def _holding(post, release: threading.Event, posted: threading.Event):
    """Posts in a transaction that stays open (holding its slots) until `release` is set."""

    def body():
        try:
            with transaction.atomic():
                post()
                posted.set()
                assert release.wait(30)
        finally:
            connections.close_all()

    return threading.Thread(target=body)


@pytest.mark.django_db(transaction=True)
def test_a_payment_takes_a_free_slot_of_a_hot_account_instead_of_waiting():
    post_payment("ch_first")  # every account has its slot 0
    release, posted = threading.Event(), threading.Event()
    holder = _holding(lambda: post_payment("ch_held"), release, posted)
    holder.start()
    try:
        assert posted.wait(30)
        second = run_threads(1, lambda i: post_payment("ch_free"))[0]  # would block on slot 0 if it waited
        assert second.created
    finally:
        release.set()
        holder.join(30)

    slots = BalanceSlot.objects.filter(account__type="merchant_pending").order_by("slot")
    assert [(s.slot, s.balance) for s in slots] == [(0, -2 * 9940), (1, -9940)]
    assert pending() == 3 * 9940
    assert ledger_violations(check_charges=False) == []


@pytest.mark.django_db(transaction=True)
def test_an_account_with_one_slot_makes_the_second_writer_wait_and_both_count():
    suspense = acc.AccountKey("suspense", 0, "CNY")  # not hot: one slot
    lines = [Line.debit(suspense, 100), Line.credit(BANK, 100)]
    journal_post(event_type="adjustment", reference="adj-0", livemode=True, lines=lines)
    release, posted = threading.Event(), threading.Event()
    holder = _holding(
        lambda: journal_post(event_type="adjustment", reference="adj-1", livemode=True, lines=lines), release, posted
    )
    holder.start()
    assert posted.wait(30)
    waiter = threading.Thread(
        target=run_threads, args=(1, lambda i: journal_post(event_type="adjustment", reference="adj-2",
                                                                livemode=True, lines=lines))
    )  # fmt: skip
    waiter.start()
    waiter.join(1)
    assert waiter.is_alive()  # waiting for the holder's slot
    release.set()
    holder.join(30)
    waiter.join(30)

    assert not waiter.is_alive()
    assert list(BalanceSlot.objects.filter(account__type="suspense").values_list("slot", "balance")) == [(0, 300)]
    assert ledger_violations(check_charges=False) == []
