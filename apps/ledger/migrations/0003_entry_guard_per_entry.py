"""The balance rule checked once per entry instead of once per posting; redundant indexes dropped.

- `ledger_entry_balanced` becomes a deferred constraint trigger on ledger_journalentry: at
  commit (or SET CONSTRAINTS … IMMEDIATE) the postings of each entry inserted by the
  transaction must sum to zero per currency. It sees every posting of the entry, however many
  statements inserted them.
- Postings may only be added to an entry in the transaction that inserted it: the entry records
  that transaction (`xact_id`, set by its insert trigger whatever the INSERT says), and a
  statement-level trigger on ledger_posting refuses postings to an entry of another transaction.
  So no posting ever escapes the balance check, and an entry is complete once committed.
- ledger_posting(account_id) and ledger_balanceslot(account_id): each duplicated the leading
  column of (account_id, entry_id) and of the unique (account_id, slot).
"""

import django.db.models.deletion
from django.db import migrations, models

FORWARD = r"""
DROP TRIGGER ledger_entry_balanced ON ledger_posting;
DROP FUNCTION ledger_posting_balanced();

CREATE FUNCTION ledger_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    total record;
BEGIN
    -- One plain aggregate settles the usual entry (a single currency); per currency otherwise.
    -- (An entry without postings passes, as before: ledger_check reports it.)
    SELECT min(currency) AS currency, max(currency) AS last_currency, sum(amount) AS amount
      INTO total FROM ledger_posting WHERE entry_id = NEW.id;
    IF total.currency <> total.last_currency THEN
        SELECT currency, SUM(amount) AS amount INTO total FROM ledger_posting WHERE entry_id = NEW.id
         GROUP BY currency HAVING SUM(amount) <> 0 ORDER BY currency LIMIT 1;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    IF total.amount <> 0 THEN
        RAISE EXCEPTION 'journal entry % does not balance: % sums to %', NEW.id, total.currency, total.amount
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entry_balanced';
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER ledger_entry_balanced AFTER INSERT ON ledger_journalentry
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_entry_balanced();

CREATE OR REPLACE FUNCTION ledger_entry_open_day() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_closed date;
BEGIN
    NEW.xact_id := pg_current_xact_id()::text::bigint;
    SELECT MAX(date) INTO last_closed FROM ledger_accountingday;
    IF last_closed IS NOT NULL AND NEW.accounting_date <= last_closed THEN
        NEW.accounting_date := last_closed + 1;
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION ledger_postings_entry_open() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    closed bigint;
BEGIN
    SELECT e.id INTO closed FROM ledger_new_postings p JOIN ledger_journalentry e ON e.id = p.entry_id
     WHERE e.xact_id <> pg_current_xact_id()::text::bigint LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % was committed by an earlier transaction: postings cannot be added to it', closed
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entry_balanced';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER ledger_posting_entry_open AFTER INSERT ON ledger_posting
    REFERENCING NEW TABLE AS ledger_new_postings FOR EACH STATEMENT EXECUTE FUNCTION ledger_postings_entry_open();

CREATE FUNCTION ledger_balances_add(accounts bigint[], slot_counts int[], deltas bigint[]) RETURNS int
LANGUAGE plpgsql STRICT AS $$
DECLARE
    used int;
BEGIN
    FOR i IN 1 .. cardinality(accounts) LOOP
        -- The account's first slot that no other transaction holds: never waits.
        UPDATE ledger_balanceslot SET balance = balance + deltas[i]
         WHERE id = (SELECT id FROM ledger_balanceslot WHERE account_id = accounts[i] ORDER BY slot LIMIT 1
                     FOR UPDATE SKIP LOCKED);
        CONTINUE WHEN FOUND;
        -- All held (or none yet): a new slot while the account has fewer than slot_count, else a
        -- random one (waiting for its holder).
        SELECT count(*) INTO used FROM ledger_balanceslot WHERE account_id = accounts[i];
        INSERT INTO ledger_balanceslot (account_id, slot, balance)
        VALUES (accounts[i], CASE WHEN used < slot_counts[i] THEN used ELSE floor(random() * slot_counts[i]) END,
                deltas[i])
        ON CONFLICT (account_id, slot) DO UPDATE SET balance = ledger_balanceslot.balance + EXCLUDED.balance;
    END LOOP;
    RETURN cardinality(accounts);
END
$$;
"""

BACKWARD = r"""
DROP FUNCTION ledger_balances_add(bigint[], int[], bigint[]);
DROP TRIGGER ledger_posting_entry_open ON ledger_posting;
DROP FUNCTION ledger_postings_entry_open();
DROP TRIGGER ledger_entry_balanced ON ledger_journalentry;
DROP FUNCTION ledger_entry_balanced();

CREATE OR REPLACE FUNCTION ledger_entry_open_day() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_closed date;
BEGIN
    SELECT MAX(date) INTO last_closed FROM ledger_accountingday;
    IF last_closed IS NOT NULL AND NEW.accounting_date <= last_closed THEN
        NEW.accounting_date := last_closed + 1;
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION ledger_posting_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT currency, SUM(amount) AS total INTO bad FROM ledger_posting
    WHERE entry_id = NEW.entry_id GROUP BY currency HAVING SUM(amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'journal entry % does not balance: % sums to %', NEW.entry_id, bad.currency, bad.total
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entry_balanced';
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER ledger_entry_balanced AFTER INSERT ON ledger_posting
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_posting_balanced();
"""


class Migration(migrations.Migration):
    dependencies = [("ledger", "0002_ledger_triggers")]

    operations = [
        migrations.AddField(
            model_name="journalentry",
            name="xact_id",
            field=models.BigIntegerField(
                default=0, editable=False, help_text="set by the database: the transaction that inserted the entry"
            ),
        ),
        migrations.AlterField(
            model_name="balanceslot",
            name="account",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="slots",
                to="ledger.account",
            ),
        ),
        migrations.AlterField(
            model_name="posting",
            name="account",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="postings",
                to="ledger.account",
            ),
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
