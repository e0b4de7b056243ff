"""The posting engine: one balanced journal entry per business event, with its balances.

`journal_post` is the only code that writes entries, postings and balance slots. An entry,
its postings and its balance changes are written by one prepared statement (`_POST`,
data-modifying CTEs), one round trip:

1. the accounts are looked up by key (book, type, owner, currency);
2. the entry is inserted with `ON CONFLICT (event_type, reference) DO NOTHING`, and only if
   every account exists and none needs a lock it does not hold: a repeated or concurrent
   second delivery of the same event finds the first entry and writes nothing;
3. its postings are inserted, and each account's net change is added to one of its balance
   slots by `ledger_balances_add` (migration 0003): the account's first slot that no other
   transaction holds (`SKIP LOCKED`), so concurrent entries to a hot account do not wait for
   each other; a new slot only when all are held, up to `slot_count`; accounts in id order.

Most entries (every payment) decrease no account that may not go negative and need no lock.
Outside a transaction their statement is the whole transaction (autocommit); inside the
caller's, it is part of it. A missing account is created (`accounts_resolve`) and the
statement runs again: nothing was written by the first run.

An entry that decreases an account that may not go negative (refunds, settlements, payouts)
runs in a transaction that first locks those accounts (`FOR NO KEY UPDATE`, by id) and checks
their balances (`InsufficientBalance`), then runs the same statement.

Lock order across the ledger: account rows by id, then balance slots by account id.

The database re-checks what matters whatever code writes (migrations 0002, 0003): every entry
has postings that balance per currency (checked at commit), postings cannot be added to an
entry of an earlier transaction, entries and postings are append-only, and an entry dated in
a closed day moves to the next open one.
"""

import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.utils import timezone
from psycopg.types.numeric import Int8Dumper

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
    normal_side: str
    may_go_negative: bool


_local = threading.local()


def _engine_cursor(db) -> psycopg.Cursor:
    """A cursor on Django's connection (so in its transaction, if any) for prepared statements.

    It binds server-side, and the engine prepares its own few statements explicitly
    (`prepare=True`) unless preparation is turned off for the connection (`DB_PREPARE_THRESHOLD=off`,
    for a pooler without prepared-statement support). Every int is sent as bigint: psycopg
    otherwise types an int as int2, int4 or int8 by its value, and each combination would be
    prepared as another statement. So each statement of the engine is parsed once per connection
    and, after a few runs, executes a cached generic plan. One cursor per thread.
    """
    db.ensure_connection()
    raw = db.connection
    cursor = getattr(_local, "cursor", None)
    if cursor is None or cursor.connection is not raw or cursor.closed:
        cursor = psycopg.Cursor(raw)
        cursor.adapters.register_dumper(int, Int8Dumper)
        _local.cursor = cursor
    return cursor


def _execute(sql: str, params) -> list[tuple]:
    """Runs one statement of the engine (it returns rows); errors are Django's."""
    db = connections[DEFAULT_DB_ALIAS]
    cursor = _engine_cursor(db)
    prepare = None if cursor.connection.prepare_threshold is None else True
    with db.wrap_database_errors:
        cursor.execute(sql, params, prepare=prepare)
        return cursor.fetchall()


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
    rows = _execute(
        "SELECT a.id, k.type, k.owner_id, k.currency, a.normal_side, a.may_go_negative"
        " FROM unnest(%s::text[], %s::bigint[], %s::text[]) AS k(type, owner_id, currency)"
        " CROSS JOIN LATERAL (SELECT a.id, a.normal_side, a.may_go_negative FROM ledger_account a"
        " WHERE a.livemode = %s AND a.type = k.type AND a.owner_id = k.owner_id AND a.currency = k.currency LIMIT 1) a",
        [[key.type for key in keys], [key.owner_id for key in keys], [key.currency for key in keys], livemode],
    )
    return {
        AccountKey(type_, owner_id, currency): _Account(id_, side, negative)
        for id_, type_, owner_id, currency, side, negative in rows
    }


def _normal(normal_side: str, raw: int) -> int:
    return raw if normal_side == NormalSide.DEBIT else -raw


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


# `k`: the entry's accounts by key, numbered n = 1.. in the order of %(types)s …, with each
# one's net change; `guarded`: a decrease of an account that may not go negative. LATERAL …
# LIMIT 1 keeps every lookup a probe of an index: the generic plan cannot know that the arrays
# are short, and would otherwise hash-join them against the whole account table.
_ACCOUNTS = (
    "k AS MATERIALIZED (SELECT k.n, k.delta, k.currency, a.id, a.slot_count,"
    " NOT a.may_go_negative AND (CASE a.normal_side WHEN 'debit' THEN k.delta ELSE -k.delta END) < 0 AS guarded"
    " FROM unnest(%(types)s::text[], %(owners)s::bigint[], %(currencies)s::text[], %(deltas)s::bigint[])"
    " WITH ORDINALITY AS k(type, owner_id, currency, delta, n)"
    " CROSS JOIN LATERAL (SELECT a.id, a.slot_count, a.may_go_negative, a.normal_side FROM ledger_account a"
    " WHERE a.livemode = %(livemode)s AND a.type = k.type AND a.owner_id = k.owner_id AND a.currency = k.currency"
    " LIMIT 1) AS a)"
)
# The entry, written only if every account exists and, unless %(locked)s (the caller holds the
# guarded accounts' locks), none is guarded.
_ENTRY = (
    "e AS (INSERT INTO ledger_journalentry (event_type, reference, livemode, accounting_date, occurred_at,"
    " merchant_id, channel_account_id, description, created_at)"
    " SELECT %(event_type)s::text, %(reference)s::text, %(livemode)s::boolean, %(accounting_date)s::date,"
    " %(occurred_at)s::timestamptz, %(merchant_id)s::bigint, %(channel_account_id)s::bigint, %(description)s::text,"
    " now()"
    " WHERE (SELECT count(*) FROM k WHERE %(locked)s OR NOT k.guarded) = cardinality(%(types)s::text[])"
    " ON CONFLICT (event_type, reference) DO NOTHING RETURNING id, accounting_date)"
)
# Its postings (%(lines)s: each line's account number, in line order) and the slot changes.
_POSTINGS_AND_SLOTS = (
    "p AS (INSERT INTO ledger_posting (entry_id, account_id, amount, currency)"
    " SELECT e.id, k.id, l.amount, k.currency FROM e,"
    " unnest(%(lines)s::int[], %(amounts)s::bigint[]) WITH ORDINALITY AS l(n, amount, pos)"
    " CROSS JOIN LATERAL (SELECT k.id, k.currency FROM k WHERE k.n = l.n LIMIT 1) AS k ORDER BY l.pos),"
    " s AS MATERIALIZED (SELECT ledger_balances_add(array_agg(k.id ORDER BY k.id),"
    " array_agg(k.slot_count::int ORDER BY k.id), array_agg(k.delta ORDER BY k.id)) FROM e, k WHERE k.delta <> 0)"
)
# The whole post, one statement: (accounts found, of which guarded, entry id and date, and the
# count of `s`, which the caller ignores: a SELECT in a WITH clause runs only if something reads
# it, and `s` is where the balances change).
_POST = (
    f"WITH {_ACCOUNTS}, {_ENTRY}, {_POSTINGS_AND_SLOTS}"
    " SELECT (SELECT count(*) FROM k), (SELECT count(*) FROM k WHERE k.guarded), e.id, e.accounting_date,"
    " (SELECT count(*) FROM s)"
    " FROM (VALUES (1)) AS one LEFT JOIN e ON true"
)


def _entry_accounts(lines: list[Line]) -> tuple[list[AccountKey], list[int], list[int]]:
    """The entry's distinct accounts (in order of first use), each one's net change, and each
    line's account number (1-based)."""
    numbers: dict[AccountKey, int] = {}
    deltas: list[int] = []
    line_accounts: list[int] = []
    for line in lines:
        n = numbers.get(line.account)
        if n is None:
            n = numbers[line.account] = len(numbers) + 1
            deltas.append(0)
        deltas[n - 1] += line.amount
        line_accounts.append(n)
    return list(numbers), deltas, line_accounts


def _needs_lock(account, delta: int) -> bool:
    """A decrease of an account that may not go negative (an AccountRule or an _Account)."""
    return not account.may_go_negative and _normal(account.normal_side, delta) < 0


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
    keys, deltas, line_accounts = _entry_accounts(lines)
    params = {
        "event_type": event_type, "reference": reference, "livemode": livemode,
        "accounting_date": accounting_date_for(occurred_at), "occurred_at": occurred_at, "merchant_id": merchant_id,
        "channel_account_id": channel_account_id, "description": description[:255],
        "types": [key.type for key in keys], "owners": [key.owner_id for key in keys],
        "currencies": [key.currency for key in keys], "deltas": deltas, "lines": line_accounts,
        "amounts": [line.amount for line in lines], "locked": False,
    }  # fmt: skip
    if not any(_needs_lock(CHART[key.type], delta) for key, delta in zip(keys, deltas, strict=True)):
        for attempt in range(2):
            [(found, guarded, entry_id, accounting_date, _)] = _execute(_POST, params)
            if entry_id is not None:
                return PostedEntry(entry_id, accounting_date, created=True)
            if guarded:
                break  # the accounts' own flags ask for the lock
            if found == len(keys):
                return _posted_before(event_type, reference)
            if attempt == 0:
                accounts_resolve(livemode=livemode, keys=set(keys))  # creates the missing accounts
    return _post_locked(params, keys, deltas, livemode)


def _post_locked(params: dict, keys: list[AccountKey], deltas: list[int], livemode: bool) -> PostedEntry:
    """Locks the accounts that this entry decreases and may not go negative, checks their
    balances, then posts (a concurrent delivery of the same event may have posted meanwhile)."""
    with transaction.atomic(savepoint=False):
        accounts = accounts_resolve(livemode=livemode, keys=set(keys))
        guarded = {
            accounts[key].id: (accounts[key], delta)
            for key, delta in zip(keys, deltas, strict=True)
            if _needs_lock(accounts[key], delta)
        }
        balances = accounts_lock(account_ids=list(guarded)) if guarded else {}
        for account_id, (account, delta) in guarded.items():
            after = _normal(account.normal_side, balances[account_id] + delta)
            if after < 0:
                existing = _existing(params["event_type"], params["reference"])
                if existing is not None:
                    return existing
                raise InsufficientBalance(
                    f"Account {account_id} would go to {after} (balance"
                    f" {_normal(account.normal_side, balances[account_id])}, change"
                    f" {_normal(account.normal_side, delta)})."
                )
        [(_, _, entry_id, accounting_date, _)] = _execute(_POST, params | {"locked": True})
        if entry_id is not None:
            return PostedEntry(entry_id, accounting_date, created=True)
        return _posted_before(params["event_type"], params["reference"])  # the accounts exist: a duplicate


def _existing(event_type: str, reference: str) -> PostedEntry | None:
    rows = _execute(
        "SELECT id, accounting_date FROM ledger_journalentry WHERE event_type = %s AND reference = %s",
        [event_type, reference],
    )
    return PostedEntry(rows[0][0], rows[0][1], created=False) if rows else None


def _posted_before(event_type: str, reference: str) -> PostedEntry:
    """The entry that made this post a no-op (`ON CONFLICT DO NOTHING`: it exists, committed)."""
    existing = _existing(event_type, reference)
    if existing is None:
        raise RuntimeError(f"{event_type} {reference} was neither posted nor found")
    return existing
