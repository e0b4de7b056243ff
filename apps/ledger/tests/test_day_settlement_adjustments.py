"""Day cut, trial balance, settlement (T+N, idempotent), refunds, maker-checker and ledger_check."""

from datetime import UTC, date, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from apps.ledger import accounts as acc
from apps.ledger import services
from apps.ledger.adjustments import AdjustmentLineParams
from apps.ledger.daycut import accounting_date_for
from apps.ledger.exceptions import DayNotClosable, InsufficientBalance, MakerCannotApprove
from apps.ledger.models import AccountingDay, Adjustment, FeePlan, JournalEntry, TrialBalanceLine
from apps.ledger.selectors import balance_of, ledger_violations, merchant_statement, trial_balance_compute
from apps.ledger.tests.helpers import available, cny, pending, post_payment

UTC = UTC


@pytest.mark.parametrize(
    ("cut", "instant", "expected"),
    [
        pytest.param("00:00", datetime(2026, 5, 5, 15, 59, tzinfo=UTC), date(2026, 5, 5), id="midnight-before"),
        pytest.param("00:00", datetime(2026, 5, 5, 16, 0, tzinfo=UTC), date(2026, 5, 6), id="midnight-at"),
        pytest.param("23:00", datetime(2026, 5, 5, 14, 59, tzinfo=UTC), date(2026, 5, 5), id="23h-before"),
        pytest.param("23:00", datetime(2026, 5, 5, 15, 0, tzinfo=UTC), date(2026, 5, 6), id="23h-at"),
        pytest.param("06:00", datetime(2026, 5, 4, 21, 30, tzinfo=UTC), date(2026, 5, 5), id="6h-before"),
        pytest.param("06:00", datetime(2026, 5, 4, 22, 30, tzinfo=UTC), date(2026, 5, 6), id="6h-after"),
    ],
)
def test_accounting_date_follows_cut_off_time_and_zone(settings, cut, instant, expected):
    settings.PAYSYS_DAY_CUT_TIME = cut
    settings.PAYSYS_DAY_CUT_ZONE = "Asia/Shanghai"  # UTC+8

    assert accounting_date_for(instant) == expected


@pytest.mark.django_db
def test_closing_days_stores_a_balanced_trial_balance():
    yesterday = timezone.now() - timedelta(days=1)
    post_payment("ch_1", occurred_at=yesterday)
    post_payment("ch_2", occurred_at=yesterday, currency="USD")

    closed = services.ledger_days_close_due(by="test")

    day = accounting_date_for(yesterday)
    assert closed == [day]
    lines = {(x.currency, x.account_type): x for x in TrialBalanceLine.objects.filter(date=day)}
    assert lines[("CNY", "merchant_pending")].credits == 9940
    assert lines[("CNY", "merchant_pending")].closing == -9940
    assert sum(x.debits for x in lines.values() if x.currency == "CNY") == 10000
    assert sum(x.closing for x in lines.values() if x.currency == "USD") == 0
    assert services.ledger_days_close_due(by="test") == []  # idempotent
    assert ledger_violations(check_charges=False) == []


@pytest.mark.django_db
def test_a_late_entry_takes_the_next_open_day_and_the_closed_day_stays_as_it_was():
    yesterday = timezone.now() - timedelta(days=1)
    post_payment("ch_1", occurred_at=yesterday)
    [day] = services.ledger_days_close_due(by="test")
    stored = list(TrialBalanceLine.objects.filter(date=day).values_list("account_type", "debits", "credits"))

    late = post_payment("ch_late", occurred_at=yesterday)

    assert late.accounting_date == day + timedelta(days=1)
    assert JournalEntry.objects.get(reference="ch_late").accounting_date == day + timedelta(days=1)
    assert list(TrialBalanceLine.objects.filter(date=day).values_list("account_type", "debits", "credits")) == stored
    assert ledger_violations(check_charges=False) == []


@pytest.mark.django_db
def test_today_cannot_be_closed_and_closed_days_cannot_be_reopened():
    with pytest.raises(DayNotClosable):
        services.ledger_days_close(through=accounting_date_for(timezone.now()), by="test")
    services.ledger_days_close(through=date(2026, 1, 1), by="test")

    with pytest.raises(Exception, match="append-only"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("DELETE FROM ledger_accountingday")

    assert AccountingDay.objects.filter(date=date(2026, 1, 1)).exists()


@pytest.mark.django_db
def test_open_day_trial_balance_balances_per_currency():
    post_payment("ch_1")
    post_payment("ch_2", merchant_id=2, amount=333, platform_fee=2, channel_fee=1)

    lines = trial_balance_compute(on=accounting_date_for(timezone.now()))

    assert sum(x.debits for x in lines) == sum(x.credits for x in lines) == 10333
    assert sum(x.closing for x in lines) == 0


# --- settlement --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_settlement_moves_matured_funds_once_per_day(settings):
    settings.PAYSYS_SETTLEMENT_DELAY_DAYS = 1
    today = accounting_date_for(timezone.now())
    post_payment("ch_old", amount=10000, occurred_at=timezone.now() - timedelta(days=1))
    post_payment("ch_new", amount=5000, platform_fee=30)

    first = services.settlements_run(run_date=today)
    second = services.settlements_run(run_date=today)

    assert [p.created for p in first] == [True]
    assert second == []
    assert (pending(), available()) == (4970, 9940)
    assert JournalEntry.objects.filter(event_type="settlement").count() == 1
    assert ledger_violations(check_charges=False) == []


@pytest.mark.django_db
def test_settlement_t_plus_zero_and_disabled_schedules(django_user_model):
    from apps.ledger.models import SettlementSchedule
    from apps.merchants.services import merchant_get_or_create

    fast = merchant_get_or_create(name="fast")
    off = merchant_get_or_create(name="off")
    SettlementSchedule.objects.create(merchant=fast, delay_days=0)
    SettlementSchedule.objects.create(merchant=off, delay_days=0, enabled=False)
    post_payment("ch_fast", merchant_id=fast.pk)
    post_payment("ch_off", merchant_id=off.pk)

    services.settlements_run()

    assert (pending(fast.pk), available(fast.pk)) == (0, 9940)
    assert (pending(off.pk), available(off.pk)) == (9940, 0)


# --- refunds -----------------------------------------------------------------------------------


def _refund(reference, *, amount, before, platform_fee_returned=None, merchant_id=1):
    return services.refund_succeeded_post(
        reference=reference, livemode=True, app_id=1, merchant_id=merchant_id, channel_account_id=7,
        charge_amount=cny(10000), refunded_before=cny(before), amount=cny(amount), platform_fee=cny(60),
        channel_fee=cny(25), platform_fee_returned=platform_fee_returned,
    )  # fmt: skip


@pytest.mark.django_db
def test_full_refund_in_two_parts_reverses_the_payment_exactly():
    post_payment("ch_1")

    _refund("re_1", amount=3333, before=0)
    _refund("re_2", amount=6667, before=3333)

    assert pending() == 0
    assert balance_of(livemode=True, key=acc.platform_fee_revenue("CNY")) == 0
    assert balance_of(livemode=True, key=acc.channel_fee_expense(7, "CNY")) == 0
    assert balance_of(livemode=True, key=acc.channel_clearing(7, "CNY")) == 0
    assert ledger_violations(check_charges=False) == []


@pytest.mark.django_db
def test_refund_keeps_the_platform_fee_when_the_plan_says_so():
    FeePlan.objects.create(name="keep", kind="platform", owner_type="merchant", owner_id=1, currency="CNY",
                           refund_returns_fee=False)  # fmt: skip
    post_payment("ch_1")
    post_payment("ch_2")  # funds the merchant beyond the first payment

    _refund("re_1", amount=10000, before=0)

    assert pending() == 9940 * 2 - 10000
    assert balance_of(livemode=True, key=acc.platform_fee_revenue("CNY")) == 120


@pytest.mark.django_db
def test_refund_takes_pending_first_then_available_and_refuses_an_overdraft():
    post_payment("ch_1")
    services.settlements_run(run_date=accounting_date_for(timezone.now()) + timedelta(days=1))
    post_payment("ch_2", amount=1000, platform_fee=6, channel_fee=3)
    assert (pending(), available()) == (994, 9940)

    _refund("re_1", amount=5000, before=0)

    assert (pending(), available()) == (0, 9940 - (5000 - 30 - 994))
    with pytest.raises(InsufficientBalance), transaction.atomic():
        _refund("re_other", amount=5000, before=0, merchant_id=2)  # merchant 2 holds nothing
    assert not JournalEntry.objects.filter(reference="re_other").exists()
    assert ledger_violations(check_charges=False) == []


# --- adjustments (maker-checker) ------------------------------------------------------------------


def _draft(maker="alice"):
    return services.adjustment_draft_create(
        livemode=True,
        description="write off",
        maker=maker,
        lines=[
            AdjustmentLineParams("suspense", 0, "CNY", 500),
            AdjustmentLineParams("merchant_available", 1, "CNY", -500),
        ],
    )


@pytest.mark.django_db
def test_adjustment_posts_only_when_another_staff_member_approves():
    adjustment = _draft(maker="alice")
    assert JournalEntry.objects.count() == 0

    with pytest.raises(MakerCannotApprove):
        services.adjustment_approve(adjustment_id=adjustment.pk, checker="alice")
    with pytest.raises(MakerCannotApprove):
        services.adjustment_approve(adjustment_id=adjustment.pk, checker="admin:alice")
    assert JournalEntry.objects.count() == 0

    approved = services.adjustment_approve(adjustment_id=adjustment.pk, checker="bob")
    again = services.adjustment_approve(adjustment_id=adjustment.pk, checker="carol")

    assert (approved.status, approved.checker, again.checker) == ("approved", "bob", "bob")
    assert JournalEntry.objects.get(event_type="adjustment").reference == adjustment.public_id
    assert available() == 500
    assert list(adjustment.transitions.values_list("target", "by")) == [("draft", "alice"), ("approved", "bob")]


@pytest.mark.django_db
def test_rejected_adjustment_posts_nothing():
    adjustment = _draft()

    services.adjustment_reject(adjustment_id=adjustment.pk, checker="bob")

    assert Adjustment.objects.get(pk=adjustment.pk).status == "rejected"
    assert JournalEntry.objects.count() == 0


# --- ledger_check ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_ledger_check_names_each_violation_and_exits_non_zero():
    post_payment("ch_1")
    with connection.cursor() as cur:
        # A slot changed behind the ledger's back, and a no-negative account forced negative.
        cur.execute(
            "UPDATE ledger_balanceslot SET balance = balance + 5 WHERE id = (SELECT MIN(id) FROM ledger_balanceslot)"
        )
        cur.execute(
            "INSERT INTO ledger_account (livemode, type, owner_id, currency, normal_side, may_go_negative,"
            " slot_count, created_at) VALUES (true, 'user_balance', 9, 'CNY', 'credit', false, 1, now()) RETURNING id"
        )
        account_id = cur.fetchone()[0]
        cur.execute("INSERT INTO ledger_balanceslot (account_id, slot, balance) VALUES (%s, 0, 7)", [account_id])
    err = StringIO()

    with pytest.raises(SystemExit) as exit_info:
        call_command("ledger_check", stdout=StringIO(), stderr=err)

    output = err.getvalue()
    assert exit_info.value.code == 1
    assert "sum to 12, not 0" in output
    assert "!= sum of postings" in output
    assert f"account {account_id} (user_balance:9:CNY) may not go negative but is -7" in output
    assert "payment.succeeded entry" in output and "ch_1, not a succeeded charge" in output


@pytest.mark.django_db
def test_ledger_check_exits_zero_when_all_invariants_hold():
    out = StringIO()

    call_command("ledger_check", stdout=out, stderr=StringIO())

    assert "all invariants hold" in out.getvalue()


@pytest.mark.django_db
def test_merchant_statement_has_a_running_balance():
    yesterday = timezone.now() - timedelta(days=1)
    post_payment("ch_1", occurred_at=yesterday)
    post_payment("ch_2", amount=1000, platform_fee=6, channel_fee=3)
    _refund("re_1", amount=1000, before=0)
    today = accounting_date_for(timezone.now())

    statement = merchant_statement(merchant_id=1, livemode=True, currency="CNY", account_type="merchant_pending",
                                   date_from=today, date_to=today)  # fmt: skip

    assert statement.opening == 9940
    assert [(x.reference, x.debit, x.credit, x.balance) for x in statement.lines] == [
        ("ch_2", 0, 994, 10934),
        ("re_1", 994, 0, 9940),
    ]
    assert statement.closing == 9940
