"""The internal check of a run: paysys against itself, before it is matched against the bill.

Succeeded charges and refunds of the day (bill zone) without their `payment.succeeded` /
`refund.succeeded` entry, and the account's entries of the day without a succeeded charge or
refund.

A charge's entry is dated by its `paid_at` (a refund's by its `succeeded_at`), so on a sound day
the ids of the day's succeeded charges and the references of the day's payment entries are the
same set. That is checked first, per kind, with two parallel aggregates: the count and the sum
of a 64-bit hash of the ids on each side. Only when they differ are the two sides anti-joined
(against the other side's items near the day, then by id anywhere for the few left over: an
entry dated later because its day was closed, an old charge) to say which items are wrong.
"""

from datetime import date, timedelta

from django.db import connection

from apps.reconciliation.matching import NEAR, day_bounds

# (kind, its table, its succeeded items from {lo} to {hi}, the event type of its entries)
_KINDS = (
    ("charge", "payments_charge", """SELECT c.public_id AS id FROM payments_charge c
                                     WHERE c.channel_account_id = %(account)s AND c.status = 'succeeded'
                                       AND c.paid_at >= {lo} AND c.paid_at < {hi}""", "payment.succeeded"),
    ("refund", "payments_refund", """SELECT r.public_id AS id FROM payments_refund r
                                      JOIN payments_charge c ON c.id = r.charge_id
                                     WHERE c.channel_account_id = %(account)s AND r.status = 'succeeded'
                                       AND r.succeeded_at >= {lo} AND r.succeeded_at < {hi}""", "refund.succeeded"),
)  # fmt: skip
_DAY, _NEAR = {"lo": "%(start)s", "hi": "%(end)s"}, {"lo": "%(near_start)s", "hi": "%(near_end)s"}
_ENTRIES = """SELECT e.reference AS id FROM ledger_journalentry e
               WHERE e.channel_account_id = %(account)s AND e.event_type = '{event}'
                 AND e.accounting_date BETWEEN %(first_day)s AND %(last_day)s
                 AND e.occurred_at >= %(start)s AND e.occurred_at < %(end)s"""
_SUMMARY = "SELECT count(*), COALESCE(sum(hashtextextended(s.id, 0)), 0) FROM ({items}) s"


def internal_problems(*, account_id: int, day: date, limit: int = 100) -> list[str]:
    """Up to `limit` problems of each kind, as sentences for the run's record."""
    start, end = day_bounds(day)
    params = {
        "account": account_id, "start": start, "end": end, "near_start": start - NEAR, "near_end": end + NEAR,
        "first_day": day - timedelta(days=2), "last_day": day + timedelta(days=2), "limit": limit,
    }  # fmt: skip
    problems: list[str] = []
    with connection.cursor() as cursor:
        for kind, table, items, event in _KINDS:
            mine, entries = items.format(**_DAY), _ENTRIES.format(event=event)
            cursor.execute(f"{_SUMMARY.format(items=mine)} UNION ALL {_SUMMARY.format(items=entries)}", params)
            own, booked = cursor.fetchall()
            if own != booked:
                problems += _differences(cursor, kind, table, items, event, params)
    return problems


def _differences(cursor, kind: str, table: str, items: str, event: str, params: dict) -> list[str]:
    """The items of the day without their entry, and the entries of the day without their item."""
    cursor.execute(
        f"""
        (SELECT '{kind} ' || i.id || ' succeeded without a {event} entry' FROM ({items.format(**_DAY)}) i
          WHERE NOT EXISTS (SELECT 1 FROM ledger_journalentry n
                             WHERE n.channel_account_id = %(account)s AND n.event_type = '{event}'
                               AND n.accounting_date BETWEEN %(first_day)s AND %(last_day)s AND n.reference = i.id)
            AND NOT EXISTS (SELECT 1 FROM ledger_journalentry e WHERE e.event_type = '{event}' AND e.reference = i.id)
          LIMIT %(limit)s)
        UNION ALL
        (SELECT 'entry {event} ' || e.id || ' has no succeeded {kind}' FROM ({_ENTRIES.format(event=event)}) e
          WHERE NOT EXISTS (SELECT 1 FROM ({items.format(**_NEAR)}) n WHERE n.id = e.id)
            AND NOT EXISTS (SELECT 1 FROM {table} x WHERE x.public_id = e.id AND x.status = 'succeeded')
          LIMIT %(limit)s)
        """,
        params,
    )
    return [row[0] for row in cursor.fetchall()]
