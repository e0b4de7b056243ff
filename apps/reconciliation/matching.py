"""The two-way match of one bill against paysys, and the internal check, in set-based SQL.

Everything runs in the caller's transaction on Django's connection, in integer minor units.

1. Bill side: every line of the bill joined on `ref` to paysys's charges and refunds (any day,
   the account's own), classified: no such item → local_missing; other kind or not succeeded →
   status_mismatch; other amount → amount_mismatch; other channel fee → fee_mismatch; else matched.
   One discrepancy per line, in that order of precedence.
2. Local side: the account's charges and refunds that succeeded on the day (bill zone) and are
   not on the bill. Within the cross-day window of a boundary they are looked for on the
   neighbouring day's loaded bill (→ matched), held when that bill has not arrived, else
   channel_missing.
3. Holds whose neighbouring day is now loaded are released (found) or expire into channel_missing.

A refund's channel fee is the credit its `refund.succeeded` entry gave channel_fee_expense (the
ledger's proportional share); a charge's is `Charge.channel_fee`.
"""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection

from apps.core.money import SUPPORTED_CURRENCIES, exponent

RESULT_CLASSES = ("matched", "held", "local_missing", "channel_missing", "amount_mismatch", "status_mismatch",
                  "fee_mismatch")  # fmt: skip
DISCREPANCY_CLASSES = RESULT_CLASSES[2:]


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
    """The channel fee a refund's `refund.succeeded` entry returned (minor units)."""
    return f"""COALESCE((SELECT -sum(p.amount) FROM ledger_journalentry e
                          JOIN ledger_posting p ON p.entry_id = e.id
                          JOIN ledger_account a ON a.id = p.account_id AND a.type = 'channel_fee_expense'
                         WHERE e.event_type = 'refund.succeeded' AND e.reference = {refund_id}), 0)::bigint"""


def _bill_side_sql() -> str:
    """Each line of the bill with paysys's charge or refund of the same ref (any day)."""
    charge_amount = _minor_sql("c.amount", "c.amount_currency")
    charge_fee = _minor_sql("COALESCE(c.channel_fee, 0)", "c.amount_currency")
    refund_amount = _minor_sql("r.amount", "r.amount_currency")
    return f"""
        SELECT b.kind AS bill_kind, b.status AS bill_status, b.ref, b.trade_no, b.currency, b.amount AS bill_amount,
               b.fee AS bill_fee,
               CASE WHEN c.id IS NOT NULL THEN 'payment' WHEN r.id IS NOT NULL THEN 'refund' END AS local_kind,
               COALESCE(c.status, r.status) AS local_status,
               CASE WHEN c.id IS NOT NULL THEN {charge_amount} ELSE {refund_amount} END AS local_amount,
               CASE WHEN c.id IS NOT NULL THEN {charge_fee}
                    WHEN r.id IS NOT NULL THEN {_refund_fee_sql("r.public_id")} END AS local_fee
          FROM reconciliation_billline b
          LEFT JOIN payments_charge c ON c.public_id = b.ref AND c.channel_account_id = %(account)s
          LEFT JOIN (payments_refund r JOIN payments_charge rc ON rc.id = r.charge_id
                                                             AND rc.channel_account_id = %(account)s)
                 ON r.public_id = b.ref AND c.id IS NULL
         WHERE b.bill_id = %(bill)s
    """


def _own_day_sql() -> str:
    """paysys's charges and refunds of the account that succeeded on the day, not on the bill."""
    charge_amount = _minor_sql("c.amount", "c.amount_currency")
    charge_fee = _minor_sql("COALESCE(c.channel_fee, 0)", "c.amount_currency")
    refund_amount = _minor_sql("r.amount", "r.amount_currency")
    not_on_bill = "NOT EXISTS (SELECT 1 FROM reconciliation_billline x WHERE x.bill_id = %(bill)s AND x.ref = {})"
    return f"""
        SELECT 'payment'::text AS kind, c.public_id AS ref, c.status::text AS status, {charge_amount} AS amount,
               {charge_fee} AS fee, c.amount_currency AS currency, c.paid_at AS at
          FROM payments_charge c
         WHERE c.channel_account_id = %(account)s AND c.status = 'succeeded'
           AND c.paid_at >= %(start)s AND c.paid_at < %(end)s AND {not_on_bill.format("c.public_id")}
        UNION ALL
        SELECT 'refund', r.public_id, r.status, {refund_amount}, {_refund_fee_sql("r.public_id")},
               r.amount_currency, r.succeeded_at
          FROM payments_refund r JOIN payments_charge c ON c.id = r.charge_id
         WHERE c.channel_account_id = %(account)s AND r.status = 'succeeded'
           AND r.succeeded_at >= %(start)s AND r.succeeded_at < %(end)s AND {not_on_bill.format("r.public_id")}
    """


@dataclass
class MatchResult:
    counts: dict[str, int] = field(default_factory=dict)
    cleared: dict[str, int] = field(default_factory=dict)  # currency → net matched (minor units)
    bill_amount: int = 0
    bill_fee: int = 0
    local_fee: int = 0
    currency: str = ""


def match(*, account_id: int, day: date, bill_id: int, run_id: int, supersede: bool = False) -> MatchResult:
    """Classifies every item of the day and writes discrepancies and holds (idempotent).

    `supersede`: the day was run before on another file; its open discrepancies this file does
    not show any more are resolved (the provider corrected its bill).
    `MatchResult.cleared`: per currency, the net of the matched lines whose money no discrepancy
    action has moved already: what the day's bill says the channel settles.
    """
    start, end = day_bounds(day)
    window = cross_day_window()
    params = {
        "account": account_id, "day": day, "bill": bill_id, "run": run_id, "start": start, "end": end,
        "early": start + window, "late": end - window, "prev": day - timedelta(days=1),
        "next": day + timedelta(days=1),
    }  # fmt: skip
    loaded = """(SELECT max(f.id) FROM reconciliation_billfile f
                  WHERE f.account_id = %(account)s AND f.day = {day} AND f.status = 'loaded')"""
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS recon_result")
        cursor.execute(
            f"""
            CREATE TEMP TABLE recon_result ON COMMIT DROP AS
            WITH bill_side AS ({_bill_side_sql()}),
            own AS (
                SELECT l.*, CASE WHEN l.at < %(early)s THEN %(prev)s::date
                                 WHEN l.at >= %(late)s THEN %(next)s::date END AS neighbour_day
                  FROM ({_own_day_sql()}) l
            ),
            own_n AS (
                SELECT own.*, CASE own.neighbour_day WHEN %(prev)s THEN {loaded.format(day="%(prev)s")}
                                                     WHEN %(next)s THEN {loaded.format(day="%(next)s")} END AS nbill
                  FROM own
            ),
            local_side AS (
                SELECT CASE WHEN own_n.neighbour_day IS NULL THEN 'channel_missing'
                            WHEN own_n.nbill IS NULL THEN 'held'
                            WHEN EXISTS (SELECT 1 FROM reconciliation_billline x
                                          WHERE x.bill_id = own_n.nbill AND x.ref = own_n.ref) THEN 'matched_elsewhere'
                            ELSE 'channel_missing' END AS class,
                       own_n.kind AS item_kind, own_n.ref, ''::text AS trade_no, own_n.currency,
                       NULL::text AS bill_kind, NULL::text AS bill_status, NULL::bigint AS bill_amount,
                       NULL::bigint AS bill_fee,
                       own_n.kind AS local_kind, own_n.status AS local_status, own_n.amount AS local_amount,
                       own_n.fee AS local_fee, own_n.neighbour_day
                  FROM own_n
            )
            SELECT CASE WHEN local_kind IS NULL THEN 'local_missing'
                        WHEN local_kind <> bill_kind OR local_status <> 'succeeded' OR bill_status <> 'succeeded'
                             THEN 'status_mismatch'
                        WHEN local_amount <> bill_amount THEN 'amount_mismatch'
                        WHEN local_fee <> bill_fee THEN 'fee_mismatch'
                        ELSE 'matched' END AS class,
                   bill_kind AS item_kind, ref, trade_no, currency, bill_kind, bill_status, bill_amount, bill_fee,
                   local_kind, local_status, local_amount, local_fee, NULL::date AS neighbour_day
              FROM bill_side
            UNION ALL
            SELECT * FROM local_side
            """,
            params,
        )
        cursor.execute("SELECT class, count(*) FROM recon_result GROUP BY class")
        counts = {name: 0 for name in RESULT_CLASSES} | dict(cursor.fetchall())
        counts["matched"] = counts.get("matched", 0) + counts.pop("matched_elsewhere", 0)
        cursor.execute(
            """
            INSERT INTO reconciliation_discrepancy
                (account_id, day, kind, item_kind, ref, trade_no, currency, bill_kind, bill_status, bill_amount,
                 bill_fee, local_kind, local_status, local_amount, local_fee, status, run_id, resolution, created_at)
            SELECT DISTINCT ON (class, item_kind, ref)
                   %(account)s, %(day)s, class, item_kind, ref, trade_no, currency, COALESCE(bill_kind, ''),
                   COALESCE(bill_status, ''), bill_amount, bill_fee, COALESCE(local_kind, ''),
                   COALESCE(local_status, ''), local_amount, local_fee, 'open', %(run)s, '', now()
              FROM recon_result WHERE class = ANY(%(classes)s)
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
        if supersede:
            _discrepancies_supersede(cursor, params)
        cursor.execute(
            """
            INSERT INTO reconciliation_crossdayhold
                (account_id, day, neighbour_day, kind, ref, amount, fee, currency, status, created_at)
            SELECT %(account)s, %(day)s, neighbour_day, item_kind, ref, local_amount, local_fee, currency, 'held', now()
              FROM recon_result WHERE class = 'held'
            ON CONFLICT (account_id, day, kind, ref) DO NOTHING
            """,
            params,
        )
        cursor.execute(
            """
            SELECT currency,
                   sum(CASE bill_kind WHEN 'payment' THEN bill_amount - bill_fee ELSE -(bill_amount - bill_fee) END)
                       FILTER (WHERE class = 'matched' AND settled.ref IS NULL),
                   sum(CASE bill_kind WHEN 'payment' THEN bill_amount ELSE -bill_amount END)
                       FILTER (WHERE bill_status = 'succeeded'),
                   sum(CASE bill_kind WHEN 'payment' THEN bill_fee ELSE -bill_fee END)
                       FILTER (WHERE bill_status = 'succeeded'),
                   sum(CASE local_kind WHEN 'payment' THEN local_fee ELSE -local_fee END)
                       FILTER (WHERE bill_status = 'succeeded' AND local_kind IS NOT NULL)
              FROM recon_result r
              -- An item whose discrepancy was settled by an action moved its money then: not again.
              LEFT JOIN (SELECT DISTINCT ref, item_kind FROM reconciliation_discrepancy
                          WHERE account_id = %(account)s AND settled IS NOT NULL) settled
                     ON settled.ref = r.ref AND settled.item_kind = r.item_kind
             GROUP BY currency ORDER BY count(*) DESC
            """,
            params,
        )
        result = MatchResult(counts=counts)
        for currency, cleared, amount, fee, local_fee in cursor.fetchall():
            result.cleared[currency] = int(cleared or 0)
            if not result.currency:
                result.currency, result.bill_amount, result.bill_fee = currency, int(amount or 0), int(fee or 0)
                result.local_fee = int(local_fee or 0)
        cursor.execute("DROP TABLE recon_result")
    holds_settle(account_id=account_id, day=day, run_id=run_id)
    return result


def _discrepancies_supersede(cursor, params: dict) -> None:
    """Open discrepancies of the day from an earlier file that this run did not find again are
    resolved, with their audit row. Those under a write-off request stay for the people on it."""
    cursor.execute(
        """
        WITH gone AS (
            UPDATE reconciliation_discrepancy d
               SET status = 'resolved', resolution = 'not on the newer bill of the day (run ' || %(run)s || ')'
             WHERE d.account_id = %(account)s AND d.day = %(day)s AND d.status = 'open'
               AND d.adjustment_id IS NULL AND d.run_id <> %(run)s
               AND NOT EXISTS (SELECT 1 FROM recon_result r
                                WHERE r.class = d.kind AND r.item_kind = d.item_kind AND r.ref = d.ref)
            RETURNING d.id
        )
        INSERT INTO reconciliation_discrepancyaction (discrepancy_id, action, source, target, by, detail, at)
        SELECT id, 'superseded', 'open', 'resolved', 'system', jsonb_build_object('run', %(run)s), now() FROM gone
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


def internal_problems(*, account_id: int, day: date, limit: int = 100) -> list[str]:
    """Succeeded charges and refunds of the day without their ledger entry, and the account's
    entries of the day without a succeeded charge or refund."""
    start, end = day_bounds(day)
    params = {"account": account_id, "start": start, "end": end, "limit": limit}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            (SELECT 'charge ' || c.public_id || ' succeeded without a payment.succeeded entry'
               FROM payments_charge c
              WHERE c.channel_account_id = %(account)s AND c.status = 'succeeded'
                AND c.paid_at >= %(start)s AND c.paid_at < %(end)s
                AND NOT EXISTS (SELECT 1 FROM ledger_journalentry e
                                 WHERE e.event_type = 'payment.succeeded' AND e.reference = c.public_id)
              LIMIT %(limit)s)
            UNION ALL
            (SELECT 'refund ' || r.public_id || ' succeeded without a refund.succeeded entry'
               FROM payments_refund r JOIN payments_charge c ON c.id = r.charge_id
              WHERE c.channel_account_id = %(account)s AND r.status = 'succeeded'
                AND r.succeeded_at >= %(start)s AND r.succeeded_at < %(end)s
                AND NOT EXISTS (SELECT 1 FROM ledger_journalentry e
                                 WHERE e.event_type = 'refund.succeeded' AND e.reference = r.public_id)
              LIMIT %(limit)s)
            UNION ALL
            (SELECT 'entry ' || e.event_type || ' ' || e.reference || ' has no succeeded charge or refund'
               FROM ledger_journalentry e
              WHERE e.channel_account_id = %(account)s AND e.occurred_at >= %(start)s AND e.occurred_at < %(end)s
                AND ((e.event_type = 'payment.succeeded' AND NOT EXISTS (
                        SELECT 1 FROM payments_charge c WHERE c.public_id = e.reference AND c.status = 'succeeded'))
                  OR (e.event_type = 'refund.succeeded' AND NOT EXISTS (
                        SELECT 1 FROM payments_refund r WHERE r.public_id = e.reference AND r.status = 'succeeded')))
              LIMIT %(limit)s)
            """,
            params,
        )
        return [row[0] for row in cursor.fetchall()]
