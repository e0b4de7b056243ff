"""The internal check of a run: paysys against itself, before it is matched against the bill.

Succeeded charges and refunds of the day (bill zone) without their `payment.succeeded` /
`refund.succeeded` entry, and the account's entries of the day without a succeeded charge or
refund. Each side is first anti-joined in bulk with the other side's items near the day (the
day and one day either side, through the tables' indexes), then the few left over are looked
up by id anywhere (an entry dated later because its day was closed, an old charge): the cost
follows the day, not the history.
"""

from datetime import date, timedelta

from django.db import connection

from apps.reconciliation.matching import NEAR, day_bounds


def internal_problems(*, account_id: int, day: date, limit: int = 100) -> list[str]:
    """Up to `limit` problems of each kind, as sentences for the run's record."""
    start, end = day_bounds(day)
    params = {
        "account": account_id, "start": start, "end": end, "near_start": start - NEAR, "near_end": end + NEAR,
        "first_day": day - timedelta(days=2), "last_day": day + timedelta(days=2), "limit": limit,
    }  # fmt: skip
    near_entry = """NOT EXISTS (SELECT 1 FROM ledger_journalentry n
                                 WHERE n.channel_account_id = %(account)s AND n.event_type = '{event}'
                                   AND n.accounting_date BETWEEN %(first_day)s AND %(last_day)s
                                   AND n.reference = {ref})"""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            (SELECT 'charge ' || c.public_id || ' succeeded without a payment.succeeded entry'
               FROM payments_charge c
              WHERE c.channel_account_id = %(account)s AND c.status = 'succeeded'
                AND c.paid_at >= %(start)s AND c.paid_at < %(end)s
                AND {near_entry.format(event="payment.succeeded", ref="c.public_id")}
                AND NOT EXISTS (SELECT 1 FROM ledger_journalentry e
                                 WHERE e.event_type = 'payment.succeeded' AND e.reference = c.public_id)
              LIMIT %(limit)s)
            UNION ALL
            (SELECT 'refund ' || r.public_id || ' succeeded without a refund.succeeded entry'
               FROM payments_refund r JOIN payments_charge c ON c.id = r.charge_id
              WHERE c.channel_account_id = %(account)s AND r.status = 'succeeded'
                AND r.succeeded_at >= %(start)s AND r.succeeded_at < %(end)s
                AND {near_entry.format(event="refund.succeeded", ref="r.public_id")}
                AND NOT EXISTS (SELECT 1 FROM ledger_journalentry e
                                 WHERE e.event_type = 'refund.succeeded' AND e.reference = r.public_id)
              LIMIT %(limit)s)
            UNION ALL
            (SELECT 'entry payment.succeeded ' || e.reference || ' has no succeeded charge'
               FROM ledger_journalentry e
              WHERE e.channel_account_id = %(account)s AND e.event_type = 'payment.succeeded'
                AND e.accounting_date BETWEEN %(first_day)s AND %(last_day)s
                AND e.occurred_at >= %(start)s AND e.occurred_at < %(end)s
                AND NOT EXISTS (SELECT 1 FROM payments_charge n
                                 WHERE n.channel_account_id = %(account)s AND n.status = 'succeeded'
                                   AND n.paid_at >= %(near_start)s AND n.paid_at < %(near_end)s
                                   AND n.public_id = e.reference)
                AND NOT EXISTS (SELECT 1 FROM payments_charge c
                                 WHERE c.public_id = e.reference AND c.status = 'succeeded')
              LIMIT %(limit)s)
            UNION ALL
            (SELECT 'entry refund.succeeded ' || e.reference || ' has no succeeded refund'
               FROM ledger_journalentry e
              WHERE e.channel_account_id = %(account)s AND e.event_type = 'refund.succeeded'
                AND e.accounting_date BETWEEN %(first_day)s AND %(last_day)s
                AND e.occurred_at >= %(start)s AND e.occurred_at < %(end)s
                AND NOT EXISTS (SELECT 1 FROM payments_refund r
                                 WHERE r.public_id = e.reference AND r.status = 'succeeded')
              LIMIT %(limit)s)
            """,
            params,
        )
        return [row[0] for row in cursor.fetchall()]
