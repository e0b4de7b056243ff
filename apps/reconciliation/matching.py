"""The two-way match of one bill against paysys, in set-based SQL, in integer minor units.

Everything runs in the caller's transaction on Django's connection.

1. Bill side: every line of the bill joined on `ref` to paysys's charge or refund of the account,
   classified: no such item → local_missing; other kind, or either side not succeeded →
   status_mismatch; other amount → amount_mismatch; other channel fee → fee_mismatch; else
   matched. One class per line, in that order of precedence. A line the bill lists again (same
   kind, ref and status as an earlier line of the file) is a duplicate_line whatever it says:
   paysys's item stands for one line only, so its money moves once.
2. Local side: the account's charges and refunds that succeeded on the day (bill zone) and are
   not on the bill. Within the cross-day window of a boundary they are looked for on the
   neighbouring day's loaded bill (→ matched), held when that bill has not arrived, else
   channel_missing.
3. Holds whose neighbouring day is now loaded are released (found) or expire into channel_missing.

One read-only statement classifies both sides and aggregates them, so PostgreSQL can run it in
parallel and no row is written per matched line: matched lines collapse into one group per
currency; every other line comes back as a group of its own, from which the discrepancies and
holds (a few, on any sane day) are written.

paysys's items are looked for among those that succeeded near the day (the day and one day either
side: `payments_charge (channel_account_id, paid_at)`, a hash join); a line not found there is
looked up by id among all of the account's charges and refunds (any day, any status: a lost
notification's charge is still pending), so the cost follows the day, not the history.

A refund's channel fee is the credit its `refund.succeeded` entry gave channel_fee_expense (the
ledger's proportional share); a charge's is `Charge.channel_fee`.
"""

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection

from apps.core.money import SUPPORTED_CURRENCIES, exponent
from apps.reconciliation.models import net

RESULT_CLASSES = ("matched", "held", "local_missing", "channel_missing", "amount_mismatch", "status_mismatch",
                  "fee_mismatch", "duplicate_line")  # fmt: skip
DISCREPANCY_CLASSES = RESULT_CLASSES[2:]
NEAR = timedelta(days=1)  # how far around the day paysys's items are looked for in bulk


def bill_zone() -> ZoneInfo:
    return ZoneInfo(getattr(settings, "PAYSYS_RECON_BILL_ZONE", "Asia/Shanghai"))


def cross_day_window() -> timedelta:
    return timedelta(seconds=getattr(settings, "PAYSYS_RECON_CROSS_DAY_SECONDS", 600))


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=bill_zone())
    return start, start + timedelta(days=1)


def _minor_sql(column: str, currency_column: str) -> str:
    """numeric major units → bigint minor units, per the currency's exponent."""
    cases = " ".join(f"WHEN '{c}' THEN {10 ** exponent(c)}" for c in sorted(SUPPORTED_CURRENCIES))
    return f"round({column} * (CASE {currency_column} {cases} ELSE 100 END))::bigint"


def _refund_fee_sql(refund_id: str) -> str:
    """The channel fee a refund's `refund.succeeded` entry returned (minor units), looked up by id."""
    return f"""COALESCE((SELECT -sum(p.amount) FROM ledger_journalentry e
                          JOIN ledger_posting p ON p.entry_id = e.id
                          JOIN ledger_account a ON a.id = p.account_id AND a.type = 'channel_fee_expense'
                         WHERE e.event_type = 'refund.succeeded' AND e.reference = {refund_id}), 0)::bigint"""


_REFUND_FEES = """
    SELECT e.reference, -sum(p.amount)::bigint AS fee
      FROM ledger_journalentry e
      JOIN ledger_posting p ON p.entry_id = e.id
      JOIN ledger_account a ON a.id = p.account_id AND a.type = 'channel_fee_expense'
     WHERE e.channel_account_id = %(account)s AND e.event_type = 'refund.succeeded'
       AND e.accounting_date BETWEEN %(first_day)s AND %(last_day)s
     GROUP BY e.reference
"""


def _charges_sql(where: str) -> str:
    """The account's charges as items (kind, ref, status, amount, fee, currency, at)."""
    return f"""
        SELECT 'payment'::text AS kind, c.public_id::text AS ref, c.status::text AS status,
               {_minor_sql("c.amount", "c.amount_currency")} AS amount,
               {_minor_sql("COALESCE(c.channel_fee, 0)", "c.amount_currency")} AS fee,
               c.amount_currency::text AS currency, c.paid_at AS at
          FROM payments_charge c
         WHERE c.channel_account_id = %(account)s AND {where}
    """


def _refunds_sql(where: str, *, bulk: bool = True) -> str:
    """The account's refunds as items. `bulk`: many, read in parallel; a refund's fee comes from
    the refund entries near the day, NULL when its entry is dated elsewhere (its day was closed):
    `_fee_sql` completes it. Else each refund's fee is looked up by id."""
    fee, fees = _refund_fee_sql("r.public_id"), ""
    if bulk:
        fee, fees = "rf.fee", f"LEFT JOIN ({_REFUND_FEES}) rf ON rf.reference = r.public_id"
    return f"""
        SELECT 'refund'::text AS kind, r.public_id::text AS ref, r.status::text AS status,
               {_minor_sql("r.amount", "r.amount_currency")} AS amount, {fee} AS fee,
               r.amount_currency::text AS currency, r.succeeded_at AS at
          FROM payments_refund r
          JOIN payments_charge rc ON rc.id = r.charge_id AND rc.channel_account_id = %(account)s
          {fees}
         WHERE {where}
    """


def day_platform_fee(*, account_id: int, day: date, currency: str) -> int:
    """paysys's platform fees (minor units) on the charges in `currency` that the account's `day`
    paid (paid_at within the bill's day)."""
    start, end = day_bounds(day)
    fee = _minor_sql("COALESCE(c.platform_fee, 0)", "c.amount_currency")
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT COALESCE(sum({fee}), 0)::bigint FROM payments_charge c
                 WHERE c.channel_account_id = %s AND c.status = 'succeeded' AND c.amount_currency = %s
                   AND c.paid_at >= %s AND c.paid_at < %s""",
            [account_id, currency, start, end],
        )
        return cursor.fetchone()[0]


def _items_sql(charge_where: str, refund_where: str, *, bulk: bool = True) -> str:
    """The account's charges and refunds as items (kind, ref, status, amount, fee, currency, at)."""
    return f"{_charges_sql(charge_where)} UNION ALL {_refunds_sql(refund_where, bulk=bulk)}"


def _fee_sql(kind: str, ref: str, fee: str) -> str:
    """An item's fee from a bulk read, completed by id for a refund whose entry was not near."""
    return f"COALESCE({fee}, CASE WHEN {kind} = 'refund' THEN {_refund_fee_sql(ref)} END)"


def _class_sql(local: str, line: str) -> str:
    """A bill line's class against paysys's item (`local` NULL: paysys has none)."""
    return f"""CASE WHEN {local}.kind IS NULL THEN 'local_missing'
                    WHEN {local}.kind <> {line}.kind OR {local}.status <> 'succeeded' OR {line}.status <> 'succeeded'
                         THEN 'status_mismatch'
                    WHEN {local}.amount <> {line}.amount THEN 'amount_mismatch'
                    WHEN {local}.fee <> {line}.fee THEN 'fee_mismatch'
                    ELSE 'matched' END"""


def _bill_side_sql() -> str:
    """The bill's lines that do not match, with what paysys has: first against paysys's charges
    and refunds near the day (parallel hash joins, each hashing paysys's side), then the few not
    found there by id, anywhere."""
    near = "%(near_start)s AND {at} < %(near_end)s"
    charges = _charges_sql(f"c.paid_at >= {near.format(at='c.paid_at')}")
    refunds = _refunds_sql(f"r.succeeded_at >= {near.format(at='r.succeeded_at')}")
    anywhere = _items_sql("c.public_id = x.ref", "r.public_id = x.ref", bulk=False)
    found = {col: f"COALESCE(c.{col}, r.{col})" for col in ("kind", "status", "amount", "fee")}
    near_class = _class_sql("n", "l").replace("n.kind", found["kind"]).replace("n.status", found["status"])
    near_class = near_class.replace("n.amount", found["amount"]).replace("n.fee", found["fee"])
    return f"""
        SELECT class, x.kind AS item_kind, x.ref, x.trade_no, x.currency, x.kind AS bill_kind,
               x.status AS bill_status, x.amount AS bill_amount, x.fee AS bill_fee, local.kind AS local_kind,
               local.status AS local_status, local.amount AS local_amount, local.fee AS local_fee,
               NULL::date AS neighbour_day, x.id AS line_id
          FROM (SELECT l.id, l.kind, l.status, l.ref, l.trade_no, l.currency, l.amount, l.fee,
                       {found["kind"]} AS near_kind,
                       {found["status"]} AS near_status, {found["amount"]} AS near_amount, {found["fee"]} AS near_fee
                  FROM reconciliation_billline l
                  LEFT JOIN ({charges}) c ON c.ref = l.ref
                  LEFT JOIN ({refunds}) r ON r.ref = l.ref
                 WHERE l.bill_id = %(bill)s AND ({near_class} <> 'matched' OR {found["fee"]} IS NULL)
                OFFSET 0) x  -- (only the few lines that do not match go on)
          LEFT JOIN LATERAL ({anywhere} LIMIT 1) a ON x.near_kind IS NULL
         CROSS JOIN LATERAL (SELECT COALESCE(x.near_kind, a.kind) AS kind, COALESCE(x.near_status, a.status) AS status,
                                    COALESCE(x.near_amount, a.amount) AS amount,
                                    COALESCE({_fee_sql("x.near_kind", "x.ref", "x.near_fee")}, a.fee) AS fee
                            ) local
         CROSS JOIN LATERAL (SELECT {_class_sql("local", "x")} AS class) classified
         WHERE class <> 'matched'
    """


def _local_side_sql() -> str:
    """paysys's items that succeeded on the day and are not on the bill: channel_missing, or
    near a boundary: on the neighbouring day's loaded bill (matched_elsewhere), or held."""
    own = _items_sql(
        "c.status = 'succeeded' AND c.paid_at >= %(start)s AND c.paid_at < %(end)s",
        "r.status = 'succeeded' AND r.succeeded_at >= %(start)s AND r.succeeded_at < %(end)s",
    )
    loaded = """(SELECT max(f.id) FROM reconciliation_billfile f
                  WHERE f.account_id = %(account)s AND f.day = {day} AND f.status = 'loaded')"""
    return f"""
        SELECT CASE WHEN neighbour_day IS NULL THEN 'channel_missing'
                    WHEN nbill IS NULL THEN 'held'
                    WHEN EXISTS (SELECT 1 FROM reconciliation_billline x WHERE x.bill_id = nbill AND x.ref = o.ref)
                         THEN 'matched_elsewhere'
                    ELSE 'channel_missing' END AS class,
               o.kind AS item_kind, o.ref, ''::text AS trade_no, o.currency, NULL::text AS bill_kind,
               NULL::text AS bill_status, NULL::bigint AS bill_amount, NULL::bigint AS bill_fee, o.kind AS local_kind,
               o.status AS local_status, o.amount AS local_amount, {_fee_sql("o.kind", "o.ref", "o.fee")} AS local_fee,
               o.neighbour_day, NULL::bigint AS line_id
          FROM (SELECT i.*, CASE WHEN i.at < %(early)s THEN %(prev)s::date WHEN i.at >= %(late)s THEN %(next)s::date
                            END AS neighbour_day
                  FROM ({own}) i
                 WHERE NOT EXISTS (SELECT 1 FROM reconciliation_billline x WHERE x.bill_id = %(bill)s AND x.ref = i.ref)
                OFFSET 0) o
         CROSS JOIN LATERAL (SELECT CASE o.neighbour_day WHEN %(prev)s THEN {loaded.format(day="%(prev)s")}
                                                         WHEN %(next)s THEN {loaded.format(day="%(next)s")} END
                                    AS nbill) neighbour
    """


_TOTALS = """
    SELECT currency, kind, status, count(*) AS lines, sum(amount) AS amount, sum(fee) AS fee
      FROM reconciliation_billline WHERE bill_id = %(bill)s GROUP BY currency, kind, status
"""

# The lines the bill lists again: those with an earlier line (in file order: ids are assigned as
# COPY reads) of the same kind, ref and status. A parallel hash semi-join of the bill's lines with
# themselves; one row per item, status and currency (a few, on any sane day), with the copies'
# figures summed and their ids, which the bill side's rows are rid of.
_REPEATS = """
    SELECT 'duplicate_line' AS class, l.kind AS item_kind, l.ref, min(l.trade_no) AS trade_no, l.currency,
           l.kind AS bill_kind, l.status AS bill_status, sum(l.amount)::bigint AS bill_amount,
           sum(l.fee)::bigint AS bill_fee, NULL AS local_kind, NULL AS local_status, NULL AS local_amount,
           NULL AS local_fee, NULL AS neighbour_day, NULL AS line_id, count(*) AS lines, array_agg(l.id) AS line_ids
      FROM reconciliation_billline l
     WHERE l.bill_id = %(bill)s
       AND EXISTS (SELECT 1 FROM reconciliation_billline f
                    WHERE f.bill_id = %(bill)s AND f.ref = l.ref AND f.kind = l.kind AND f.status = l.status
                      AND f.id < l.id)
     GROUP BY l.kind, l.ref, l.status, l.currency
"""

# Lines of items whose discrepancy an action settled: their money moved then, not again (those
# matched). A duplicate_line's action settled the copies, not the item: its line still moves.
_SETTLED = """
    SELECT l.id, l.kind, l.currency, l.amount, l.fee
      FROM (SELECT DISTINCT ref, item_kind FROM reconciliation_discrepancy
             WHERE account_id = %(account)s AND settled IS NOT NULL AND kind <> 'duplicate_line') s
      JOIN reconciliation_billline l ON l.bill_id = %(bill)s AND l.ref = s.ref AND l.kind = s.item_kind
"""

_DETAILS = ("class", "item_kind", "ref", "trade_no", "currency", "bill_kind", "bill_status", "bill_amount", "bill_fee",
            "local_kind", "local_status", "local_amount", "local_fee", "neighbour_day", "line_id")  # fmt: skip
_REPEAT_DETAILS = (*_DETAILS, "lines", "line_ids")


@dataclass
class MatchResult:
    counts: dict[str, int] = field(default_factory=dict)
    cleared: dict[str, int] = field(default_factory=dict)  # currency → net matched (minor units)
    bill_amount: int = 0
    bill_fee: int = 0
    local_fee: int = 0
    currency: str = ""


def _params(*, account_id: int, day: date, bill_id: int, run_id: int) -> dict:
    start, end = day_bounds(day)
    window = cross_day_window()
    return {
        "account": account_id, "day": day, "bill": bill_id, "run": run_id, "start": start, "end": end,
        "near_start": start - NEAR, "near_end": end + NEAR, "early": start + window, "late": end - window,
        "prev": day - timedelta(days=1), "next": day + timedelta(days=1), "first_day": day - timedelta(days=2),
        "last_day": day + timedelta(days=2),
    }  # fmt: skip


def match(*, account_id: int, day: date, bill_id: int, run_id: int, supersede: bool = False) -> MatchResult:
    """Classifies every line and item of the day and writes discrepancies and holds (idempotent).

    `supersede`: the day was run before on another file; its open discrepancies this file does
    not show any more are resolved (the provider corrected its bill), and its holds whose item this
    file lists are released.
    `MatchResult.cleared`: per currency, the net of the matched lines whose money no discrepancy
    action has moved already: what the day's bill says the channel settles.
    """
    params = _params(account_id=account_id, day=day, bill_id=bill_id, run_id=run_id)
    with connection.cursor() as cursor:
        cursor.execute(_TOTALS, params)
        totals = cursor.fetchall()
        cursor.execute(_REPEATS, params)
        repeats = [dict(zip(_REPEAT_DETAILS, row, strict=True)) for row in cursor.fetchall()]
        copies = {line_id for row in repeats for line_id in row.pop("line_ids")}
        found = list(repeats)
        for sql in (_bill_side_sql(), _local_side_sql()):
            cursor.execute(sql, params)
            lines = (dict(zip(_DETAILS, row, strict=True)) for row in cursor.fetchall())
            found += [line for line in lines if line["line_id"] not in copies]  # a copy is a duplicate_line only
        cursor.execute(_SETTLED, params)
        settled = cursor.fetchall()
        result = _result(totals, found, settled, copies)
        rows = {**params, "found": json.dumps(found, default=str)}
        _discrepancies_write(cursor, rows)
        if supersede:
            _discrepancies_supersede(cursor, rows)
            _holds_supersede(cursor, rows)
        _holds_write(cursor, rows)
    holds_settle(account_id=account_id, day=day, run_id=run_id)
    return result


def _signed(kind: str | None, value: int | None) -> int:
    return (value or 0) if kind == "payment" else -(value or 0)


def _result(totals: list[tuple], found: list[dict], settled: list[tuple], copies: set[int]) -> MatchResult:
    """The run's figures: the bill's totals, less what did not match (and what was settled).

    A row of `found` is one line, or for duplicate_line the copies of one item (`lines` of them,
    figures summed); `copies`: the ids of those lines."""
    result = MatchResult(counts=dict.fromkeys(RESULT_CLASSES, 0))
    lines: dict[str, int] = {}
    settles: dict[str, int] = {}  # currency → net of the matched lines
    by_currency: dict[str, list[int]] = {}  # currency → [bill amount, bill fee, local fee] of succeeded lines
    for currency, kind, status, n, amount, fee in totals:
        amount, fee = int(amount), int(fee)  # sum(bigint) is numeric
        lines[currency] = lines.get(currency, 0) + n
        result.counts["matched"] += n
        if status == "succeeded":
            figures = by_currency.setdefault(currency, [0, 0, 0])
            figures[0] += _signed(kind, amount)
            figures[1] += _signed(kind, fee)
            figures[2] += _signed(kind, fee)  # a matched line's fee is paysys's too; corrected below
            settles[currency] = settles.get(currency, 0) + net(kind, amount, fee)
    unmatched = set(copies)  # ids of the lines that did not match
    for row in found:
        cls, currency = row["class"], row["currency"]
        if cls == "matched_elsewhere":
            result.counts["matched"] += 1
            continue
        n = row.get("lines") or 1  # a duplicate_line row stands for its copies
        result.counts[cls] += n
        if row["bill_kind"] is None:  # paysys's item, not a line
            continue
        result.counts["matched"] -= n
        if row["line_id"] is not None:  # (a duplicate_line row's lines are in copies)
            unmatched.add(row["line_id"])
        if row["bill_status"] == "succeeded":
            figures = by_currency.setdefault(currency, [0, 0, 0])
            figures[2] += _signed(row["local_kind"], row["local_fee"]) - _signed(row["bill_kind"], row["bill_fee"])
            settles[currency] -= net(row["bill_kind"], row["bill_amount"], row["bill_fee"])
    for line_id, kind, currency, amount, fee in settled:
        if line_id not in unmatched:
            settles[currency] -= net(kind, amount, fee)
    result.cleared = settles
    if lines:  # the run's figures are in its main currency: the one with the most lines
        result.currency = max(lines, key=lines.get)
        result.bill_amount, result.bill_fee, result.local_fee = by_currency.get(result.currency, [0, 0, 0])
    return result


_FOUND = """jsonb_to_recordset(%(found)s::jsonb) AS r(class text, currency text, item_kind text, ref text,
            trade_no text, bill_kind text, bill_status text, bill_amount bigint, bill_fee bigint, local_kind text,
            local_status text, local_amount bigint, local_fee bigint, neighbour_day date)"""


def _discrepancies_write(cursor, params: dict) -> None:
    cursor.execute(
        f"""
        INSERT INTO reconciliation_discrepancy
            (account_id, day, kind, item_kind, ref, trade_no, currency, bill_kind, bill_status, bill_amount,
             bill_fee, local_kind, local_status, local_amount, local_fee, status, run_id, resolution, created_at)
        SELECT DISTINCT ON (class, item_kind, ref)
               %(account)s, %(day)s, class, item_kind, ref, trade_no, currency, COALESCE(bill_kind, ''),
               COALESCE(bill_status, ''), bill_amount, bill_fee, COALESCE(local_kind, ''),
               COALESCE(local_status, ''), local_amount, local_fee, 'open', %(run)s, '', now()
          FROM {_FOUND} WHERE class = ANY(%(classes)s)
         -- An item's copies under two statuses: the discrepancy shows the succeeded ones (they carry money).
         ORDER BY class, item_kind, ref, bill_status = 'succeeded' DESC NULLS LAST
        -- Found again on a newer file of the day: an open one takes that file's figures.
        ON CONFLICT (account_id, day, kind, item_kind, ref) DO UPDATE
           SET trade_no = EXCLUDED.trade_no, bill_kind = EXCLUDED.bill_kind, bill_status = EXCLUDED.bill_status,
               bill_amount = EXCLUDED.bill_amount, bill_fee = EXCLUDED.bill_fee,
               local_kind = EXCLUDED.local_kind, local_status = EXCLUDED.local_status,
               local_amount = EXCLUDED.local_amount, local_fee = EXCLUDED.local_fee, run_id = EXCLUDED.run_id
         WHERE reconciliation_discrepancy.status = 'open' AND reconciliation_discrepancy.adjustment_id IS NULL
        """,
        {**params, "classes": list(DISCREPANCY_CLASSES)},
    )


def _holds_write(cursor, params: dict) -> None:
    cursor.execute(
        f"""
        INSERT INTO reconciliation_crossdayhold
            (account_id, day, neighbour_day, kind, ref, amount, fee, currency, status, created_at)
        SELECT %(account)s, %(day)s, neighbour_day, item_kind, ref, local_amount, local_fee, currency, 'held', now()
          FROM {_FOUND} WHERE class = 'held'
        ON CONFLICT (account_id, day, kind, ref) DO NOTHING
        """,
        params,
    )


def _discrepancies_supersede(cursor, params: dict) -> None:
    """Open discrepancies of the day from an earlier file that this run did not find again are
    resolved, with their audit row. Those under a write-off request stay for the people on it."""
    cursor.execute(
        f"""
        WITH gone AS (
            UPDATE reconciliation_discrepancy d
               SET status = 'resolved', resolution = 'not on the newer bill of the day (run ' || %(run)s || ')'
             WHERE d.account_id = %(account)s AND d.day = %(day)s AND d.status = 'open'
               AND d.adjustment_id IS NULL AND d.run_id <> %(run)s
               AND NOT EXISTS (SELECT 1 FROM {_FOUND}
                                WHERE r.class = d.kind AND r.item_kind = d.item_kind AND r.ref = d.ref)
            RETURNING d.id
        )
        INSERT INTO reconciliation_discrepancyaction (discrepancy_id, action, source, target, by, detail, at)
        SELECT id, 'superseded', 'open', 'resolved', 'system', jsonb_build_object('run', %(run)s), now() FROM gone
        """,
        params,
    )


def _holds_supersede(cursor, params: dict) -> None:
    """Holds of the day from an earlier file whose item this file lists are released: the item is
    on its own day's bill after all (and matched or a discrepancy here), not missing. Left held,
    it would expire into channel_missing when the neighbouring day's bill does not list it."""
    cursor.execute(
        """
        UPDATE reconciliation_crossdayhold h
           SET status = 'released', decided_at = now()
         WHERE h.account_id = %(account)s AND h.day = %(day)s AND h.status = 'held'
           AND EXISTS (SELECT 1 FROM reconciliation_billline x WHERE x.bill_id = %(bill)s AND x.ref = h.ref)
        """,
        params,
    )


def holds_settle(*, account_id: int, day: date, run_id: int) -> int:
    """Releases the holds whose neighbouring bill (now loaded) has the item; the others expire
    into channel_missing discrepancies on their own day. Returns how many were settled."""
    params = {"account": account_id, "day": day, "run": run_id}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH due AS (
                SELECT h.id, h.day, h.kind, h.ref, h.amount, h.fee, h.currency,
                       EXISTS (SELECT 1 FROM reconciliation_billline x
                                WHERE x.bill_id = nb.id AND x.ref = h.ref) AS found
                  FROM reconciliation_crossdayhold h
                  JOIN LATERAL (SELECT max(f.id) AS id FROM reconciliation_billfile f
                                 WHERE f.account_id = h.account_id AND f.day = h.neighbour_day
                                   AND f.status = 'loaded') nb ON nb.id IS NOT NULL
                 WHERE h.account_id = %(account)s AND h.status = 'held'
                   AND (h.neighbour_day = %(day)s OR h.day = %(day)s)
                   FOR UPDATE OF h
            ),
            expired AS (
                INSERT INTO reconciliation_discrepancy
                    (account_id, day, kind, item_kind, ref, trade_no, currency, bill_kind, bill_status, local_kind,
                     local_status, local_amount, local_fee, status, run_id, resolution, created_at)
                SELECT %(account)s, day, 'channel_missing', kind, ref, '', currency, '', '', kind, 'succeeded', amount,
                       fee, 'open', %(run)s, '', now()
                  FROM due WHERE NOT found
                ON CONFLICT (account_id, day, kind, item_kind, ref) DO NOTHING
            )
            UPDATE reconciliation_crossdayhold h
               SET status = CASE WHEN due.found THEN 'released' ELSE 'expired' END, decided_at = now()
              FROM due WHERE h.id = due.id
            """,
            params,
        )
        return cursor.rowcount
