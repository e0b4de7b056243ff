"""Random sequences of payments, refunds, settlements and adjustments across several merchants
and two currencies; after every step every invariant of `ledger_check` holds.

Payments succeed through the real pay core (`charge_apply_provider_result`); refunds use the
ledger's refund rule directly (the refund flow posts it once it exists). Each example runs in a
savepoint that is rolled back; the balance trigger is made IMMEDIATE so that it checks every
statement instead of waiting for a commit that never comes.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from apps.core.money import from_minor, to_minor
from apps.ledger import accounts as acc
from apps.ledger import services
from apps.ledger.adjustments import AdjustmentLineParams
from apps.ledger.daycut import accounting_date_for
from apps.ledger.exceptions import InsufficientBalance
from apps.ledger.models import FeePlan, JournalEntry, SettlementSchedule
from apps.ledger.selectors import balance_of, ledger_violations
from apps.payments.models import Charge
from tests.ledger.support import make_app, make_channel_account, pay, succeed

CURRENCIES = ["CNY", "USD"]


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        self.charges: list[dict] = []  # {"charge", "refunded"}
        self.run_day = accounting_date_for(timezone.now())

    @initialize()
    def books(self):
        self.account = make_channel_account()
        self.apps = [make_app(f"Stateful merchant {i}") for i in range(3)]
        for currency in CURRENCIES:
            FeePlan.objects.create(name="pct", kind="platform", owner_type="merchant", currency=currency,
                                   owner_id=self.apps[0].merchant_id, rate=Decimal("0.006"))  # fmt: skip
            FeePlan.objects.create(name="fixed", kind="platform", owner_type="merchant", currency=currency,
                                   owner_id=self.apps[1].merchant_id, rate=Decimal("0.01"), fixed=30, minimum=50,
                                   maximum=900, refund_returns_fee=False)  # fmt: skip
            FeePlan.objects.create(
                name="chan", kind="channel", owner_type="channel_account", currency=currency,
                owner_id=self.account.pk, rate=Decimal("0.0025"), rounding="ROUND_HALF_EVEN",
            )  # fmt: skip
        SettlementSchedule.objects.create(merchant_id=self.apps[0].merchant_id, delay_days=0)
        SettlementSchedule.objects.create(merchant_id=self.apps[1].merchant_id, delay_days=1)

    def teardown(self):
        transaction.set_rollback(True)
        self.atomic.__exit__(None, None, None)

    @rule(merchant=st.integers(0, 2), currency=st.sampled_from(CURRENCIES), amount=st.integers(1, 500_000))
    def payment(self, merchant, currency, amount):
        charge = pay(self.apps[merchant], self.account, from_minor(amount, currency))
        charge.refresh_from_db()
        assert charge.status == "succeeded"
        assert charge.platform_fee is not None and charge.channel_fee is not None
        self.charges.append({"charge": charge, "refunded": 0})

    @precondition(lambda self: self.charges)
    @rule(data=st.data())
    def repeated_notification(self, data):
        charge = data.draw(st.sampled_from(self.charges))["charge"]
        before = JournalEntry.objects.count()
        succeed(Charge.objects.get(pk=charge.pk), transaction_no="repeat")
        assert JournalEntry.objects.count() == before

    @precondition(lambda self: any(c["refunded"] < to_minor(c["charge"].amount) for c in self.charges))
    @rule(data=st.data(), share=st.sampled_from(["all", "half", "one"]))
    def refund(self, data, share):
        item = data.draw(st.sampled_from([c for c in self.charges if c["refunded"] < to_minor(c["charge"].amount)]))
        charge, total = item["charge"], to_minor(item["charge"].amount)
        left = total - item["refunded"]
        amount = {"all": left, "half": max(1, left // 2), "one": 1}[share]
        currency = charge.amount.currency.code
        before = JournalEntry.objects.count()
        merchant_id = charge.app.merchant_id
        funds = balance_of(livemode=False, key=acc.merchant_pending(merchant_id, currency)) + balance_of(
            livemode=False, key=acc.merchant_available(merchant_id, currency)
        )
        try:
            with transaction.atomic():
                services.refund_succeeded_post(
                    reference=f"re_{charge.public_id}_{item['refunded']}", livemode=False, app_id=charge.app_id,
                    merchant_id=charge.app.merchant_id, channel_account_id=charge.channel_account_id,
                    charge_amount=charge.amount, refunded_before=from_minor(item["refunded"], currency),
                    amount=from_minor(amount, currency), platform_fee=charge.platform_fee,
                    channel_fee=charge.channel_fee,
                )  # fmt: skip
        except InsufficientBalance:
            assert funds < amount  # the merchant's part (at most the amount) was not covered
            assert JournalEntry.objects.count() == before
            return
        item["refunded"] += amount

    @rule(days_ahead=st.integers(0, 2))
    def settlement(self, days_ahead):
        services.settlements_run(run_date=self.run_day + timedelta(days=days_ahead))

    @rule(merchant=st.integers(0, 2), currency=st.sampled_from(CURRENCIES), amount=st.integers(-50_000, 50_000))
    def adjustment(self, merchant, currency, amount):
        if amount == 0:
            return
        merchant_id = self.apps[merchant].merchant_id
        draft = services.adjustment_draft_create(
            livemode=False, description="stateful", maker="maker",
            lines=[AdjustmentLineParams("suspense", 0, currency, amount),
                   AdjustmentLineParams("merchant_available", merchant_id, currency, -amount)],
        )  # fmt: skip
        balance = balance_of(livemode=False, key=acc.merchant_available(merchant_id, currency))
        try:
            with transaction.atomic():
                approved = services.adjustment_approve(adjustment_id=draft.pk, checker="checker")
        except InsufficientBalance:
            assert balance + amount < 0  # a debit of `amount` larger than the balance
            return
        assert approved.status == "approved"
        assert balance_of(livemode=False, key=acc.merchant_available(merchant_id, currency)) == balance + amount

    @invariant()
    def ledger_check_holds(self):
        assert ledger_violations() == []

    @invariant()
    def merchants_never_owe(self):
        for app in getattr(self, "apps", []):
            for currency in CURRENCIES:
                assert balance_of(livemode=False, key=acc.merchant_pending(app.merchant_id, currency)) >= 0
                assert balance_of(livemode=False, key=acc.merchant_available(app.merchant_id, currency)) >= 0


@pytest.mark.django_db
def test_ledger_invariants_hold_under_random_operations():
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=20, stateful_step_count=15, deadline=None, suppress_health_check=list(HealthCheck)
        ),
    )
