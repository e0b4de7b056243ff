"""The posting engine: one balanced journal entry per business event, with its balances.

`journal_post` is the only code that writes entries, postings and balance slots. Per call:

1. the accounts are looked up (one query) and created on demand;
2. the entry is inserted with `ON CONFLICT (event_type, reference) DO NOTHING`: a repeated or
   concurrent second delivery of the same event finds the first entry and posts nothing;
3. accounts that may not go negative and that this entry decreases are locked
   (`FOR NO KEY UPDATE`, by id) and their balance checked; increases never lock an account;
4. the postings are inserted and each account's change is added to one balance slot: slot 0 for
   a locked account, a random one of `slot_count` for the others, in (account, slot) order so
   that two entries never wait on each other in a cycle.

Steps 2 and 4 are a single statement when nothing needs a lock (every payment), so a payment
costs two round trips to the database besides its transaction.

Lock order across the ledger: account rows by id, then balance slots by (account id, slot).
"""

import random
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime

import psycopg
from django.db import connection, transaction
from django.utils import timezone

from apps.ledger.accounts import CHART, AccountKey, slot_count_for
from apps.ledger.daycut import accounting_date_for
from apps.ledger.exceptions import InsufficientBalance, UnbalancedEntry
from apps.ledger.models import NormalSide


@dataclass(frozen=True)
class Line:
    """One posting to be made: debit positive, credit negative, integer minor units."""

    account: AccountKey
    amount: int

    @classmethod
    def debit(cls, account: AccountKey, amount: int) -> "Line":
        return cls(account, amount)

    @classmethod
    def credit(cls, account: AccountKey, amount: int) -> "Line":
        return cls(account, -amount)


@dataclass(frozen=True)
class PostedEntry:
    entry_id: int
    accounting_date: date
    created: bool  # False: the event had been posted before; nothing was written now


@dataclass(frozen=True)
class _Account:
    id: int
    slot_count: int
    normal_side: str
    may_go_negative: bool


@contextmanager
def _prepared_cursor():
    """A cursor with server-side binding and prepared statements, in Django's transaction.

    Django's psycopg cursors bind client-side, so every statement is parsed and planned again;
    the engine's statements have a few fixed shapes, and preparing them saves the planning.
    """
    connection.ensure_connection()
    cursor = psycopg.Cursor(connection.connection)
    try:
        yield cursor
    finally:
        cursor.close()


def _check_balanced(lines: list[Line]) -> None:
    if len(lines) < 2:
        raise UnbalancedEntry("A journal entry needs at least two postings.")
    sums: dict[str, int] = defaultdict(int)
    for line in lines:
        if not isinstance(line.amount, int) or line.amount == 0:
            raise UnbalancedEntry(f"Posting amounts are non-zero integers, got {line.amount!r}.")
        if line.account.type not in CHART:
            raise UnbalancedEntry(f"Unknown account type {line.account.type!r}.")
        sums[line.account.currency] += line.amount
    unbalanced = {currency: total for currency, total in sums.items() if total}
    if unbalanced:
        raise UnbalancedEntry(f"The entry does not balance: {unbalanced}.")


def accounts_resolve(*, livemode: bool, keys: set[AccountKey]) -> dict[AccountKey, _Account]:
    """The accounts for `keys`, created on demand (never deleted). One query when all exist."""
    found = _accounts_select(livemode, keys)
    missing = [key for key in keys if key not in found]
    if missing:
        now = timezone.now()
        rows = []
        for key in missing:
            rule = CHART[key.type]
            rows += [livemode, key.type, key.owner_id, key.currency, rule.normal_side, rule.may_go_negative,
                     slot_count_for(key.type), now]  # fmt: skip
        values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s)"] * len(missing))
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO ledger_account (livemode, type, owner_id, currency, normal_side, may_go_negative,"
                f" slot_count, created_at) VALUES {values} ON CONFLICT DO NOTHING",
                rows,
            )
        found.update(_accounts_select(livemode, set(missing)))
    return found


def _accounts_select(livemode: bool, keys: set[AccountKey]) -> dict[AccountKey, _Account]:
    keys = list(keys)
    tuples = ", ".join(["(%s, %s, %s)"] * len(keys))
    params: list = [livemode]
    for key in keys:
        params += [key.type, key.owner_id, key.currency]
    with _prepared_cursor() as cursor:
        cursor.execute(
            "SELECT id, type, owner_id, currency, slot_count, normal_side, may_go_negative FROM ledger_account"
            f" WHERE livemode = %s AND (type, owner_id, currency) IN ({tuples})",
            params,
            prepare=True,
        )
        return {
            AccountKey(type_, owner_id, currency): _Account(id_, slots, side, negative)
            for id_, type_, owner_id, currency, slots, side, negative in cursor.fetchall()
        }


def _normal(account: _Account, raw: int) -> int:
    return raw if account.normal_side == NormalSide.DEBIT else -raw


def accounts_lock(*, account_ids: list[int]) -> dict[int, int]:
    """Locks accounts (by id, the ledger's lock order) and returns their raw balances.

    Must run inside a transaction. Only decreases of accounts that may not go negative take
    this lock; increases add to a slot without it, so the balance read here can only be lower
    than the true one while increases are in flight (never an overdraft).
    """
    ids = sorted(set(account_ids))
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM ledger_account WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE", [ids])
        cursor.execute(
            "SELECT account_id, SUM(balance) FROM ledger_balanceslot WHERE account_id = ANY(%s) GROUP BY account_id",
            [ids],
        )
        balances = dict(cursor.fetchall())
    return {account_id: int(balances.get(account_id, 0)) for account_id in ids}


_ENTRY_INSERT = (
    "INSERT INTO ledger_journalentry (event_type, reference, livemode, accounting_date, occurred_at, merchant_id,"
    " channel_account_id, description, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now())"
    " ON CONFLICT (event_type, reference) DO NOTHING RETURNING id, accounting_date"
)


def _postings_sql(n_postings: int, n_slots: int, entry_source: str) -> str:
    postings = ", ".join(["(%s::bigint, %s::bigint, %s::varchar)"] * n_postings)
    slots = ", ".join(["(%s::bigint, %s::smallint, %s::bigint)"] * n_slots)
    return (
        f"p AS (INSERT INTO ledger_posting (entry_id, account_id, amount, currency)"
        f" SELECT e.id, v.account_id, v.amount, v.currency FROM {entry_source} e, (VALUES {postings})"
        f" AS v(account_id, amount, currency)),"
        f" s AS (INSERT INTO ledger_balanceslot (account_id, slot, balance)"
        f" SELECT v.account_id, v.slot, v.delta FROM {entry_source} e, (VALUES {slots}) AS v(account_id, slot, delta)"
        f" ORDER BY v.account_id, v.slot"
        f" ON CONFLICT (account_id, slot) DO UPDATE SET balance = ledger_balanceslot.balance + EXCLUDED.balance)"
    )


def journal_post(
    *,
    event_type: str,
    reference: str,
    livemode: bool,
    lines: list[Line],
    occurred_at: datetime | None = None,
    merchant_id: int | None = None,
    channel_account_id: int | None = None,
    description: str = "",
) -> PostedEntry:
    """Posts one business event once. Runs in the caller's transaction when there is one.

    Raises UnbalancedEntry for lines that do not sum to zero per currency, InsufficientBalance
    when an account that may not go negative would (nothing is written then; in the caller's
    transaction, the caller must let the error roll it back).
    """
    _check_balanced(lines)
    occurred_at = occurred_at or timezone.now()
    entry_params = [event_type, reference, livemode, accounting_date_for(occurred_at), occurred_at, merchant_id,
                    channel_account_id, description[:255]]  # fmt: skip
    with transaction.atomic(savepoint=False):
        accounts = accounts_resolve(livemode=livemode, keys={line.account for line in lines})
        deltas: dict[int, int] = defaultdict(int)
        for line in lines:
            deltas[accounts[line.account].id] += line.amount
        by_id = {account.id: account for account in accounts.values()}
        guarded = [
            account_id
            for account_id, delta in deltas.items()
            if not by_id[account_id].may_go_negative and _normal(by_id[account_id], delta) < 0
        ]
        posting_params: list = []
        for line in lines:
            posting_params += [accounts[line.account].id, line.amount, line.account.currency]
        slot_rows = sorted(
            (account_id, 0 if account_id in guarded else random.randrange(by_id[account_id].slot_count), delta)
            for account_id, delta in deltas.items()
            if delta
        )
        slot_params = [value for row in slot_rows for value in row]
        with _prepared_cursor() as cursor:
            if not guarded:
                cursor.execute(
                    f"WITH e AS ({_ENTRY_INSERT}), {_postings_sql(len(lines), len(slot_rows), 'e')}"
                    " SELECT id, accounting_date FROM e",
                    entry_params + posting_params + slot_params,
                    prepare=True,
                )
                row = cursor.fetchone()
                if row is None:
                    return _existing(cursor, event_type, reference)
                return PostedEntry(row[0], row[1], created=True)
            cursor.execute(_ENTRY_INSERT, entry_params)
            row = cursor.fetchone()
            if row is None:
                return _existing(cursor, event_type, reference)
            balances = accounts_lock(account_ids=guarded)
            for account_id in guarded:
                account = by_id[account_id]
                after = _normal(account, balances[account_id] + deltas[account_id])
                if after < 0:
                    raise InsufficientBalance(
                        f"Account {account_id} would go to {after} (balance {_normal(account, balances[account_id])},"
                        f" change {_normal(account, deltas[account_id])})."
                    )
            cursor.execute(
                f"WITH e AS (SELECT %s::bigint AS id), {_postings_sql(len(lines), len(slot_rows), 'e')} SELECT 1",
                [row[0], *posting_params, *slot_params],
            )
            return PostedEntry(row[0], row[1], created=True)


def _existing(cursor, event_type: str, reference: str) -> PostedEntry:
    cursor.execute(
        "SELECT id, accounting_date FROM ledger_journalentry WHERE event_type = %s AND reference = %s",
        [event_type, reference],
    )
    entry_id, accounting_date = cursor.fetchone()
    return PostedEntry(entry_id, accounting_date, created=False)
