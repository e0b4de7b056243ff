"""Database-enforced ledger rules (they hold whichever code path writes):

- every journal entry sums to zero per currency: a deferred constraint trigger on postings,
  checked at commit (or at SET CONSTRAINTS … IMMEDIATE);
- entries, postings, closed days and stored trial balances are append-only;
- an entry dated on or before the last closed day is moved to the day after it (day cut).
"""

from django.db import migrations

FORWARD = r"""
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

CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'object_not_in_prerequisite_state';
END
$$;

CREATE TRIGGER ledger_posting_append_only BEFORE UPDATE OR DELETE ON ledger_posting
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_entry_append_only BEFORE UPDATE OR DELETE ON ledger_journalentry
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_day_append_only BEFORE UPDATE OR DELETE ON ledger_accountingday
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_trial_balance_append_only BEFORE UPDATE OR DELETE ON ledger_trialbalanceline
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

CREATE FUNCTION ledger_entry_open_day() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER ledger_entry_open_day BEFORE INSERT ON ledger_journalentry
    FOR EACH ROW EXECUTE FUNCTION ledger_entry_open_day();
"""

BACKWARD = r"""
DROP TRIGGER ledger_entry_open_day ON ledger_journalentry;
DROP FUNCTION ledger_entry_open_day();
DROP TRIGGER ledger_trial_balance_append_only ON ledger_trialbalanceline;
DROP TRIGGER ledger_day_append_only ON ledger_accountingday;
DROP TRIGGER ledger_entry_append_only ON ledger_journalentry;
DROP TRIGGER ledger_posting_append_only ON ledger_posting;
DROP FUNCTION ledger_append_only();
DROP TRIGGER ledger_entry_balanced ON ledger_posting;
DROP FUNCTION ledger_posting_balanced();
"""


class Migration(migrations.Migration):
    dependencies = [("ledger", "0001_initial")]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
