"""The charge success transaction stores the fees on the charge and posts payment.succeeded once."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from moneyed import Money

from apps.ledger import accounts as acc
from apps.ledger.models import FeePlan, JournalEntry, Posting
from apps.ledger.selectors import balance_of, ledger_violations
from apps.payments.models import Charge
from tests.ledger.support import make_app, make_channel_account, pay, succeed


@pytest.fixture
def setup(db):
    app = make_app("Ledger merchant")
    account = make_channel_account()
    FeePlan.objects.create(name="platform", kind="platform", owner_type="merchant", owner_id=app.merchant_id,
                           currency="CNY", rate=Decimal("0.006"))  # fmt: skip
    FeePlan.objects.create(name="channel", kind="channel", owner_type="channel_account", owner_id=account.pk,
                           currency="CNY", rate=Decimal("0.0025"))  # fmt: skip
    return app, account


def test_a_succeeded_charge_stores_its_fees_and_posts_one_entry(setup):
    app, account = setup

    charge = pay(app, account, Money("100.00", "CNY"))

    charge.refresh_from_db()
    assert (charge.platform_fee, charge.channel_fee) == (Money("0.60", "CNY"), Money("0.25", "CNY"))
    entry = JournalEntry.objects.get(event_type="payment.succeeded", reference=charge.public_id)
    assert (entry.livemode, entry.merchant_id, entry.channel_account_id) == (False, app.merchant_id, account.pk)
    assert sorted(Posting.objects.filter(entry=entry).values_list("amount", flat=True)) == [-9940, -60, 25, 9975]
    assert balance_of(livemode=False, key=acc.merchant_pending(app.merchant_id, "CNY")) == 9940
    assert ledger_violations() == []
    out = StringIO()
    call_command("ledger_check", stdout=out, stderr=StringIO())
    assert "all invariants hold" in out.getvalue()


def test_a_repeated_success_notification_posts_nothing_more(setup):
    app, account = setup
    charge = pay(app, account, Money("100.00", "CNY"))

    succeed(Charge.objects.get(pk=charge.pk), transaction_no="again")

    assert JournalEntry.objects.filter(reference=charge.public_id).count() == 1
    assert balance_of(livemode=False, key=acc.merchant_pending(app.merchant_id, "CNY")) == 9940


def test_fees_stay_as_stored_when_the_plan_changes_later(setup):
    app, account = setup
    charge = pay(app, account, Money("100.00", "CNY"))

    FeePlan.objects.filter(kind="platform").update(rate=Decimal("0.05"))

    charge.refresh_from_db()
    assert charge.platform_fee == Money("0.60", "CNY")
    assert balance_of(livemode=False, key=acc.platform_fee_revenue("CNY")) == 60


def test_ledger_check_names_a_succeeded_charge_without_entry(setup):
    app, account = setup
    charge = pay(app, account, Money("1.00", "CNY"))
    other = pay(app, account, Money("2.00", "CNY"))
    Charge.objects.filter(pk=other.pk).update(status="pending")  # the books say paid, the charge does not
    Charge.objects.filter(pk=charge.pk).update(public_id="ch_renamed")  # a paid charge the books do not know
    err = StringIO()

    with pytest.raises(SystemExit) as exit_info:
        call_command("ledger_check", stdout=StringIO(), stderr=err)

    assert exit_info.value.code == 1
    assert f"refers to {other.public_id}, not a succeeded charge" in err.getvalue()
    assert "succeeded charge ch_renamed has no payment.succeeded entry" in err.getvalue()
