"""Every read of the ledger: balances, statements, trial balances and the invariant checks."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from django.db import connection

from apps.ledger.accounts import AccountKey
from apps.ledger.models import Account, NormalSide, TrialBalanceLine

# --- balances ------------------------------------------------------------------------------------


def account_get(*, livemode: bool, key: AccountKey) -> Account | None:
    return Account.objects.filter(
        livemode=livemode, type=key.type, owner_id=key.owner_id, currency=key.currency
    ).first()


def account_balance(*, account: Account) -> int:
    """The exact balance on the account's normal side, in minor units: the sum of its slots
    (committed postings; one indexed read of at most `slot_count` rows)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(SUM(balance), 0) FROM ledger_balanceslot WHERE account_id = %s", [account.pk])
        return account.normal_balance(int(cursor.fetchone()[0]))


def balance_of(*, livemode: bool, key: AccountKey) -> int:
    """Normal-side balance of an account by key; 0 for an account never posted to."""
    account = account_get(livemode=livemode, key=key)
    return 0 if account is None else account_balance(account=account)


def account_balances(*, account_ids: list[int]) -> dict[int, int]:
    """Raw (debit positive) balances of many accounts at once."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT account_id, SUM(balance) FROM ledger_balanceslot WHERE account_id = ANY(%s) GROUP BY account_id",
            [list(account_ids)],
        )
        found = dict(cursor.fetchall())
    return {account_id: int(found.get(account_id, 0)) for account_id in account_ids}


# --- merchant statement --------------------------------------------------------------------------


@dataclass(frozen=True)
class StatementLine:
    accounting_date: date
    entry_id: int
    event_type: str
    reference: str
    debit: int
    credit: int
    balance: int  # running, normal side


@dataclass(frozen=True)
class Statement:
    account: Account | None
    date_from: date
    date_to: date
    opening: int
    closing: int
    lines: list[StatementLine]


def merchant_statement(
    *, merchant_id: int, livemode: bool, currency: str, account_type: str, date_from: date, date_to: date
) -> Statement:
    """Postings of a merchant account over [date_from, date_to] (accounting dates) with the
    running balance on its normal side, starting from the balance before `date_from`."""
    account = account_get(livemode=livemode, key=AccountKey(account_type, merchant_id, currency))
    if account is None:
        return Statement(None, date_from, date_to, 0, 0, [])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(SUM(p.amount), 0) FROM ledger_posting p JOIN ledger_journalentry e ON e.id = p.entry_id"
            " WHERE p.account_id = %s AND e.accounting_date < %s",
            [account.pk, date_from],
        )
        opening = account.normal_balance(int(cursor.fetchone()[0]))
        cursor.execute(
            "SELECT e.accounting_date, e.id, e.event_type, e.reference, p.amount FROM ledger_posting p"
            " JOIN ledger_journalentry e ON e.id = p.entry_id"
            " WHERE p.account_id = %s AND e.accounting_date BETWEEN %s AND %s ORDER BY e.accounting_date, e.id, p.id",
            [account.pk, date_from, date_to],
        )
        rows = cursor.fetchall()
    running = opening
    lines = []
    for accounting_date, entry_id, event_type, reference, amount in rows:
        running += account.normal_balance(amount)
        lines.append(
            StatementLine(accounting_date, entry_id, event_type, reference, max(amount, 0), max(-amount, 0), running)
        )
    return Statement(account, date_from, date_to, opening, running, lines)


# --- trial balance -------------------------------------------------------------------------------


def trial_balance_compute(*, on: date) -> list[TrialBalanceLine]:
    """The trial balance of one accounting day per book, account type and currency (unsaved)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.livemode, a.type, p.currency,"
            " COALESCE(SUM(p.amount) FILTER (WHERE e.accounting_date < %s), 0),"
            " COALESCE(SUM(p.amount) FILTER (WHERE e.accounting_date = %s AND p.amount > 0), 0),"
            " COALESCE(-SUM(p.amount) FILTER (WHERE e.accounting_date = %s AND p.amount < 0), 0)"
            " FROM ledger_posting p JOIN ledger_journalentry e ON e.id = p.entry_id"
            " JOIN ledger_account a ON a.id = p.account_id WHERE e.accounting_date <= %s"
            " GROUP BY 1, 2, 3 ORDER BY 1, 3, 2",
            [on, on, on, on],
        )
        rows = cursor.fetchall()
    return [
        TrialBalanceLine(
            date=on,
            livemode=livemode,
            account_type=account_type,
            currency=currency,
            opening=int(opening),
            debits=int(debits),
            credits=int(credits),
            closing=int(opening) + int(debits) - int(credits),
        )
        for livemode, account_type, currency, opening, debits, credits in rows
    ]


def trial_balance_problems(lines: list[TrialBalanceLine]) -> list[str]:
    """Why a trial balance does not balance (empty when it does): per book and currency, debits
    equal credits and the opening and closing balances sum to zero."""
    totals: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for line in lines:
        total = totals[(line.date, line.livemode, line.currency)]
        total[0] += line.opening
        total[1] += line.debits
        total[2] += line.credits
        total[3] += line.closing
    problems = [
        f"{line}: closing is not opening + debits − credits"
        for line in lines
        if line.closing != line.opening + line.debits - line.credits
    ]
    for (day, livemode, currency), (opening, debits, credits, closing) in totals.items():
        book = "live" if livemode else "test"
        if debits != credits or opening or closing:
            problems.append(
                f"{day} {book} {currency}: debits {debits} credits {credits} opening {opening} closing {closing}"
            )
    return problems


# --- invariants (ledger_check) -------------------------------------------------------------------


def _rows(sql: str, params=None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall()


def _table_exists(name: str) -> bool:
    return name in connection.introspection.table_names()


def ledger_violations(*, check_charges: bool = True) -> list[str]:
    """Every broken ledger invariant, one message each (empty: the books are sound).

    1. every journal entry balances per currency (and has postings);
    2. per book and currency, all account balances sum to zero;
    3. every account's balance (its slots) equals the sum of its postings;
    4. no account that may not go negative is negative;
    5. every succeeded charge has exactly one `payment.succeeded` entry, and every such entry
       belongs to a succeeded charge (raw SQL on payments_charge: the ledger cannot import
       payments, docs/ledger.md); `check_charges=False` skips it for ledger-only tests that post
       payments without charges;
    6. every closed day's stored trial balance balances and matches the postings;
    7. postings and slots refer to existing accounts, postings carry their account's currency.
    """
    violations = []
    for entry_id, event_type, reference, currency, total in _rows(
        "SELECT e.id, e.event_type, e.reference, p.currency, SUM(p.amount) FROM ledger_journalentry e"
        " JOIN ledger_posting p ON p.entry_id = e.id GROUP BY 1, 2, 3, 4 HAVING SUM(p.amount) <> 0 ORDER BY 1"
    ):
        violations.append(f"unbalanced entry {entry_id} ({event_type} {reference}): {currency} sums to {total}")
    for entry_id, event_type, reference in _rows(
        "SELECT e.id, e.event_type, e.reference FROM ledger_journalentry e"
        " WHERE NOT EXISTS (SELECT 1 FROM ledger_posting p WHERE p.entry_id = e.id) ORDER BY 1"
    ):
        violations.append(f"entry {entry_id} ({event_type} {reference}) has no postings")
    for livemode, currency, total in _rows(
        "SELECT a.livemode, a.currency, SUM(s.balance) FROM ledger_balanceslot s JOIN ledger_account a"
        " ON a.id = s.account_id GROUP BY 1, 2 HAVING SUM(s.balance) <> 0"
    ):
        violations.append(f"balances of the {'live' if livemode else 'test'} book in {currency} sum to {total}, not 0")
    for account_id, type_, owner_id, currency, slots, postings in _rows(
        "SELECT a.id, a.type, a.owner_id, a.currency, COALESCE(s.total, 0), COALESCE(p.total, 0)"
        " FROM ledger_account a"
        " LEFT JOIN (SELECT account_id, SUM(balance) AS total FROM ledger_balanceslot GROUP BY 1) s"
        " ON s.account_id = a.id"
        " LEFT JOIN (SELECT account_id, SUM(amount) AS total FROM ledger_posting GROUP BY 1) p ON p.account_id = a.id"
        " WHERE COALESCE(s.total, 0) <> COALESCE(p.total, 0) ORDER BY 1"
    ):
        violations.append(
            f"account {account_id} ({type_}:{owner_id}:{currency}) balance {slots} != sum of postings {postings}"
        )
    for account_id, type_, owner_id, currency, raw, side in _rows(
        "SELECT a.id, a.type, a.owner_id, a.currency, SUM(s.balance), a.normal_side FROM ledger_account a"
        " JOIN ledger_balanceslot s ON s.account_id = a.id WHERE NOT a.may_go_negative"
        " GROUP BY a.id HAVING (CASE WHEN a.normal_side = %s THEN SUM(s.balance) ELSE -SUM(s.balance) END) < 0",
        [NormalSide.DEBIT],
    ):
        balance = raw if side == NormalSide.DEBIT else -raw
        violations.append(f"account {account_id} ({type_}:{owner_id}:{currency}) may not go negative but is {balance}")
    for (count,) in _rows(
        "SELECT COUNT(*) FROM ledger_posting p LEFT JOIN ledger_account a ON a.id = p.account_id"
        " WHERE a.id IS NULL OR a.currency <> p.currency"
    ):
        if count:
            violations.append(f"{count} postings refer to a missing account or another currency than their account's")
    for (count,) in _rows(
        "SELECT COUNT(*) FROM ledger_balanceslot s LEFT JOIN ledger_account a ON a.id = s.account_id WHERE a.id IS NULL"
    ):
        if count:
            violations.append(f"{count} balance slots refer to a missing account")
    if check_charges:
        violations += _charge_violations()
    violations += _closed_day_violations()
    return violations


def _charge_violations() -> list[str]:
    if not _table_exists("payments_charge"):
        return []
    violations = []
    for (public_id,) in _rows(
        "SELECT c.public_id FROM payments_charge c WHERE c.status = 'succeeded' AND NOT EXISTS"
        " (SELECT 1 FROM ledger_journalentry e WHERE e.event_type = 'payment.succeeded'"
        " AND e.reference = c.public_id) ORDER BY c.id"
    ):
        violations.append(f"succeeded charge {public_id} has no payment.succeeded entry")
    for entry_id, reference in _rows(
        "SELECT e.id, e.reference FROM ledger_journalentry e WHERE e.event_type = 'payment.succeeded' AND NOT EXISTS"
        " (SELECT 1 FROM payments_charge c WHERE c.public_id = e.reference AND c.status = 'succeeded') ORDER BY 1"
    ):
        violations.append(f"payment.succeeded entry {entry_id} refers to {reference}, not a succeeded charge")
    # More than one entry per charge is impossible: unique (event_type, reference).
    return violations


def _closed_day_violations() -> list[str]:
    violations = []
    stored: dict[date, list[TrialBalanceLine]] = defaultdict(list)
    for line in TrialBalanceLine.objects.all():
        stored[line.date].append(line)
    for day, lines in sorted(stored.items()):
        violations += [f"trial balance {problem}" for problem in trial_balance_problems(lines)]
        key = {(x.livemode, x.account_type, x.currency): (x.opening, x.debits, x.credits) for x in lines}
        fresh = {
            (x.livemode, x.account_type, x.currency): (x.opening, x.debits, x.credits)
            for x in trial_balance_compute(on=day)
        }
        if key != fresh:
            violations.append(f"closed day {day}: stored trial balance differs from its postings")
    return violations
