"""Every write of the ledger. Other apps call these (never journal.py directly).

- `payment_fees_quote` + `payment_succeeded_post`: called by payments in the charge success
  transaction (fees are stored on the charge, then posted).
- `refund_succeeded_post`: the proportional reversal, for refunds.
- `settlements_run` / `settlement_post`: T+N settlement, idempotent per merchant and day.
- `channel_settlement_post`: what a channel settles moves from channel_clearing to bank
  (reconciliation), once per reference.
- `ledger_days_close` / `ledger_days_close_due`: the day cut.
- adjustments (maker-checker): apps/ledger/adjustments.py, re-exported here.
"""

import logging
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from moneyed import Money

from apps.core.errors import InvalidRequest
from apps.core.money import to_minor
from apps.ledger import accounts as acc
from apps.ledger import rules
from apps.ledger.adjustments import adjustment_approve, adjustment_draft_create, adjustment_reject
from apps.ledger.daycut import accounting_date_for
from apps.ledger.exceptions import DayNotClosable, UnbalancedEntry
from apps.ledger.fees import PaymentFees, fee_plans_for_payment
from apps.ledger.fees import payment_fees_quote as _payment_fees_quote
from apps.ledger.journal import PostedEntry, accounts_lock, accounts_resolve, journal_post
from apps.ledger.models import AccountingDay, AccountType, JournalEntry, SettlementSchedule, TrialBalanceLine
from apps.ledger.selectors import trial_balance_compute, trial_balance_problems

__all__ = [
    "adjustment_approve",
    "adjustment_draft_create",
    "adjustment_reject",
    "channel_settlement_post",
    "ledger_days_close",
    "ledger_days_close_due",
    "payment_fees_quote",
    "payment_succeeded_post",
    "refund_succeeded_post",
    "settlement_post",
    "settlements_run",
]

logger = logging.getLogger(__name__)


# --- payments ------------------------------------------------------------------------------------


def payment_fees_quote(
    *, app_id: int, merchant_id: int, channel_account_id: int, livemode: bool, amount: Money, at: datetime
) -> PaymentFees:
    """Platform fee and channel cost of a payment succeeding at `at` (fee plans, fees.py)."""
    return _payment_fees_quote(
        app_id=app_id,
        merchant_id=merchant_id,
        channel_account_id=channel_account_id,
        livemode=livemode,
        amount=amount,
        on=accounting_date_for(at),
    )


def payment_succeeded_post(
    *,
    reference: str,
    livemode: bool,
    merchant_id: int,
    channel_account_id: int,
    amount: Money,
    platform_fee: Money,
    channel_fee: Money,
    coupon_subsidy: Money | None = None,
    occurred_at: datetime | None = None,
) -> PostedEntry:
    """Posts `payment.succeeded` for a charge (reference: the charge id), once.

    Runs in the caller's transaction (the charge success). Touches only accounts that may go
    negative or are credited, so it takes no account lock.
    """
    currency = amount.currency.code
    lines = rules.payment_succeeded_lines(
        merchant_id=merchant_id,
        channel_account_id=channel_account_id,
        currency=currency,
        amount=to_minor(amount),
        channel_fee=to_minor(channel_fee),
        platform_fee=to_minor(platform_fee),
        coupon_subsidy=to_minor(coupon_subsidy) if coupon_subsidy is not None else 0,
    )
    return journal_post(
        event_type=rules.PAYMENT_SUCCEEDED,
        reference=reference,
        livemode=livemode,
        lines=lines,
        occurred_at=occurred_at,
        merchant_id=merchant_id,
        channel_account_id=channel_account_id,
    )


def refund_succeeded_post(
    *,
    reference: str,
    livemode: bool,
    app_id: int,
    merchant_id: int,
    channel_account_id: int,
    charge_amount: Money,
    refunded_before: Money,
    amount: Money,
    platform_fee: Money,
    channel_fee: Money,
    coupon_subsidy: Money | None = None,
    platform_fee_returned: bool | None = None,
    channel_fee_returned: bool | None = None,
    occurred_at: datetime | None = None,
) -> PostedEntry:
    """Posts `refund.succeeded` (reference: the refund id): a proportional reversal of the payment.

    Whether the platform fee (channel cost) share is returned follows `refund_returns_fee` of the
    merchant's or app's platform plan (the channel account's cost plan) in force, unless given.
    The merchant's part is taken from merchant_pending first, then merchant_available, under
    the lock of both accounts; InsufficientBalance when they cannot cover it.
    """
    currency = amount.currency.code
    total, before, refund = to_minor(charge_amount), to_minor(refunded_before), to_minor(amount)
    if refund <= 0 or before < 0 or before + refund > total:
        raise InvalidRequest(f"A refund of {amount} exceeds what is refundable.", code="amount_exceeds_refundable")
    if platform_fee_returned is None or channel_fee_returned is None:
        platform_plan, channel_plan = fee_plans_for_payment(
            app_id=app_id, merchant_id=merchant_id, channel_account_id=channel_account_id, currency=currency
        )
        if platform_fee_returned is None:
            platform_fee_returned = platform_plan.refund_returns_fee if platform_plan else True
        if channel_fee_returned is None:
            channel_fee_returned = channel_plan.refund_returns_fee if channel_plan else True
    shares = rules.refund_shares(
        charge_amount=total,
        refunded_before=before,
        refund_amount=refund,
        platform_fee=to_minor(platform_fee),
        channel_fee=to_minor(channel_fee),
        coupon_subsidy=to_minor(coupon_subsidy) if coupon_subsidy is not None else 0,
        platform_fee_returned=platform_fee_returned,
        channel_fee_returned=channel_fee_returned,
    )
    with transaction.atomic(savepoint=False):
        pending = acc.merchant_pending(merchant_id, currency)
        available = acc.merchant_available(merchant_id, currency)
        accounts = accounts_resolve(livemode=livemode, keys={pending, available})
        balances = accounts_lock(account_ids=[accounts[pending].id, accounts[available].id])
        lines = rules.refund_succeeded_lines(
            merchant_id=merchant_id,
            channel_account_id=channel_account_id,
            currency=currency,
            refund_amount=refund,
            shares=shares,
            from_pending=max(0, -balances[accounts[pending].id]),
        )
        return journal_post(
            event_type=rules.REFUND_SUCCEEDED,
            reference=reference,
            livemode=livemode,
            lines=lines,
            occurred_at=occurred_at,
            merchant_id=merchant_id,
            channel_account_id=channel_account_id,
        )


# --- settlement ----------------------------------------------------------------------------------


def settlement_reference(*, livemode: bool, merchant_id: int, currency: str, run_date: date) -> str:
    return f"{'live' if livemode else 'test'}:{merchant_id}:{currency}:{run_date.isoformat()}"


def settlement_post(
    *, livemode: bool, merchant_id: int, currency: str, run_date: date, delay_days: int
) -> PostedEntry | None:
    """Moves a merchant's matured pending funds to available, at most once per day (T+N).

    Matured = the pending account's postings dated on or before `run_date − N` (settlements
    excluded) plus every settlement so far: cumulative, so late entries and refunds are picked
    up by the next run. Capped at the pending balance (pending never goes negative).
    """
    reference = settlement_reference(livemode=livemode, merchant_id=merchant_id, currency=currency, run_date=run_date)
    if JournalEntry.objects.filter(event_type=rules.SETTLEMENT, reference=reference).exists():
        return None
    cutoff = run_date - timedelta(days=delay_days)
    with transaction.atomic():
        pending = acc.merchant_pending(merchant_id, currency)
        available = acc.merchant_available(merchant_id, currency)
        accounts = accounts_resolve(livemode=livemode, keys={pending, available})
        pending_id = accounts[pending].id
        balances = accounts_lock(account_ids=[pending_id, accounts[available].id])
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT COALESCE(SUM(p.amount), 0) FROM ledger_posting p JOIN ledger_journalentry e"
                " ON e.id = p.entry_id WHERE p.account_id = %s AND (e.event_type = %s OR e.accounting_date <= %s)",
                [pending_id, rules.SETTLEMENT, cutoff],
            )
            matured = -int(cursor.fetchone()[0])  # pending is credit-normal
        amount = min(matured, -balances[pending_id])
        if amount <= 0:
            return None
        return journal_post(
            event_type=rules.SETTLEMENT,
            reference=reference,
            livemode=livemode,
            lines=rules.settlement_lines(merchant_id=merchant_id, currency=currency, amount=amount),
            merchant_id=merchant_id,
            description=f"T+{delay_days}: funds dated up to {cutoff.isoformat()}",
        )


def settlements_run(*, run_date: date | None = None, by: str = "system:settlement") -> list[PostedEntry]:
    """Settles every merchant (each pending account, in its own transaction) for `run_date`."""
    from apps.ledger.models import Account

    run_date = run_date or accounting_date_for(timezone.now())
    schedules = {s.merchant_id: s for s in SettlementSchedule.objects.all()}
    posted = []
    pending_accounts = Account.objects.filter(type=AccountType.MERCHANT_PENDING).order_by("id")
    for livemode, merchant_id, currency in pending_accounts.values_list("livemode", "owner_id", "currency"):
        schedule = schedules.get(merchant_id)
        if schedule is not None and not schedule.enabled:
            continue
        delay = schedule.delay_days if schedule is not None else settings.PAYSYS_SETTLEMENT_DELAY_DAYS
        try:
            entry = settlement_post(
                livemode=livemode, merchant_id=merchant_id, currency=currency, run_date=run_date, delay_days=delay
            )
        except Exception:
            logger.exception("settlement of merchant %s %s failed (%s)", merchant_id, currency, by)
            continue
        if entry is not None and entry.created:
            posted.append(entry)
    return posted


# --- day cut -------------------------------------------------------------------------------------


def ledger_days_close(*, through: date, by: str) -> list[date]:
    """Closes every open day up to `through`, in order, storing each day's trial balance.

    `LOCK TABLE … SHARE ROW EXCLUSIVE` waits for every posting transaction in flight and holds new
    ones back until the close commits; after it, the entry trigger moves any entry dated on a
    closed day to the next open day. A day whose trial balance does not balance is not closed.
    """
    if through >= accounting_date_for(timezone.now()):
        raise DayNotClosable(f"{through} is not over yet.")
    closed: list[date] = []
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("LOCK TABLE ledger_journalentry IN SHARE ROW EXCLUSIVE MODE")
        last = AccountingDay.objects.order_by("-date").values_list("date", flat=True).first()
        if last is not None:
            day = last + timedelta(days=1)
        else:
            first = JournalEntry.objects.order_by("accounting_date").values_list("accounting_date", flat=True).first()
            day = min(first, through) if first else through
        now = timezone.now()
        while day <= through:
            lines = trial_balance_compute(on=day)
            problems = trial_balance_problems(lines)
            if problems:
                raise UnbalancedEntry(f"The trial balance of {day} does not balance: {'; '.join(problems)}")
            TrialBalanceLine.objects.bulk_create(lines)
            AccountingDay.objects.create(date=day, closed_at=now, closed_by=by)
            closed.append(day)
            day += timedelta(days=1)
    return closed


def ledger_days_close_due(*, by: str) -> list[date]:
    """Closes every day before the current accounting day (the beat task; idempotent)."""
    return ledger_days_close(through=accounting_date_for(timezone.now()) - timedelta(days=1), by=by)


# --- channel settlement --------------------------------------------------------------------------


def channel_settlement_post(
    *, reference: str, livemode: bool, channel_account_id: int, currency: str, amount: int, description: str = ""
) -> PostedEntry | None:
    """Moves `amount` (minor units) that a channel settles from its channel_clearing to bank;
    a negative amount moves it back. Once per reference; None for a zero amount.

    Runs in the caller's transaction (reconciliation posts it with the run or action that decided
    it). Both accounts may go negative, so it takes no account lock.
    """
    if not amount:
        return None
    return journal_post(
        event_type=rules.CHANNEL_SETTLEMENT,
        reference=reference,
        livemode=livemode,
        lines=rules.channel_settlement_lines(channel_account_id=channel_account_id, currency=currency, amount=amount),
        channel_account_id=channel_account_id,
        description=description,
    )
