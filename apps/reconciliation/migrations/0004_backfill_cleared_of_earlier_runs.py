"""Runs done before 0003 have `cleared = {}`: a newer file of their day would move the whole net
to bank again. Their `cleared` is filled in from what they did move: their recon.clearing
entries (reference `<account>:<day>:<currency>:<sha256[:16]>` of their bill), every currency,
where `cleared_to_bank` kept only the main one.

The reverse leaves the values: they are true under 0003's schema too, and emptying them would
bring the double clearing back.
"""

from django.db import migrations

BACKFILL = """
    UPDATE reconciliation_reconrun r
       SET cleared = moved.cleared
      FROM (SELECT run.id, jsonb_object_agg(p.currency, p.amount ORDER BY p.currency) AS cleared
              FROM reconciliation_reconrun run
              JOIN reconciliation_billfile f ON f.id = run.bill_id
              JOIN ledger_journalentry e ON e.event_type = 'recon.clearing'
                                        AND e.channel_account_id = run.account_id
              JOIN ledger_posting p ON p.entry_id = e.id
              JOIN ledger_account a ON a.id = p.account_id AND a.type = 'bank'
             WHERE run.status = 'done' AND run.cleared = '{}'::jsonb
               AND e.reference = concat_ws(':', run.account_id, to_char(run.day, 'YYYY-MM-DD'), p.currency,
                                           left(f.sha256, 16))
             GROUP BY run.id) moved
     WHERE r.id = moved.id
"""


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0001_initial"),
        ("reconciliation", "0003_lines_status_and_exactly_once_clearing"),
    ]

    operations = [migrations.RunSQL(BACKFILL, reverse_sql=migrations.RunSQL.noop)]
