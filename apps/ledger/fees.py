"""Fee plans: the platform fee charged to a merchant and the channel cost of a payment.

Rounding (the only one in a fee): the percentage part `rate × amount` is rounded once to whole
minor units with the plan's named rounding (`FeePlan.rounding`, default ROUND_HALF_UP) through
`apps.core.money.quantize_minor`. The fixed part, the minimum and the maximum are whole minor
units already. Then the fee is clamped to [minimum, maximum] and finally to [0, amount]: a fee
never exceeds the payment. The fee computed at success is stored on the charge and never
recomputed.

Tiers are chosen by the owner's payment volume in the previous calendar month (by accounting
date, same book and currency): the tier with the greatest `from` not above that volume. Last
month is over, so its volume is cached per process.
"""

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Q
from moneyed import Money

from apps.core.money import from_minor, quantize_minor, to_minor
from apps.ledger.models import FeePlan, FeePlanKind, FeePlanOwner

PAYMENT_SUCCEEDED = "payment.succeeded"


@dataclass(frozen=True)
class PaymentFees:
    platform_fee: Money
    channel_fee: Money
    platform_plan_id: int | None
    channel_plan_id: int | None


def fee_compute(*, plan: FeePlan | None, amount: int, currency: str, volume: int = 0) -> int:
    """The fee in minor units of `amount` minor units under `plan` (0 without a plan)."""
    if plan is None or amount <= 0:
        return 0
    rate, fixed = Decimal(plan.rate), plan.fixed
    if plan.tiers:
        tier = max((t for t in plan.tiers if int(t.get("from", 0)) <= volume), key=lambda t: int(t.get("from", 0)))
        rate, fixed = Decimal(str(tier.get("rate", "0"))), int(tier.get("fixed", 0))
    variable = to_minor(quantize_minor(from_minor(amount, currency) * rate, rounding=plan.rounding))
    fee = variable + fixed
    if plan.minimum is not None:
        fee = max(fee, plan.minimum)
    if plan.maximum is not None:
        fee = min(fee, plan.maximum)
    return min(max(fee, 0), amount)


def fee_plans_for_payment(
    *, app_id: int, merchant_id: int, channel_account_id: int, currency: str
) -> tuple[FeePlan | None, FeePlan | None]:
    """(platform plan, channel plan): the app's platform plan over the merchant's."""
    plans = FeePlan.objects.filter(active=True, currency=currency).filter(
        Q(kind=FeePlanKind.PLATFORM, owner_type=FeePlanOwner.APP, owner_id=app_id)
        | Q(kind=FeePlanKind.PLATFORM, owner_type=FeePlanOwner.MERCHANT, owner_id=merchant_id)
        | Q(kind=FeePlanKind.CHANNEL, owner_type=FeePlanOwner.CHANNEL_ACCOUNT, owner_id=channel_account_id)
    )
    platform = channel = None
    for plan in plans:
        if plan.kind == FeePlanKind.CHANNEL:
            channel = plan
        elif plan.owner_type == FeePlanOwner.APP or platform is None:
            platform = plan
    return platform, channel


_volume_cache: dict[tuple, int] = {}


def _previous_month(day: date) -> tuple[date, date]:
    last = day.replace(day=1) - timedelta(days=1)
    return last.replace(day=1), last


def monthly_volume(*, owner_type: str, owner_id: int, currency: str, livemode: bool, month_of: date) -> int:
    """Gross payment volume (minor units) of the owner in the calendar month before `month_of`."""
    first, last = _previous_month(month_of)
    key = (owner_type, owner_id, currency, livemode, first)
    if key not in _volume_cache:
        column = "channel_account_id" if owner_type == FeePlanOwner.CHANNEL_ACCOUNT else "merchant_id"
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT COALESCE(SUM(p.amount), 0) FROM ledger_journalentry e"
                " JOIN ledger_posting p ON p.entry_id = e.id AND p.amount > 0 AND p.currency = %s"
                f" WHERE e.{column} = %s AND e.event_type = %s AND e.livemode = %s"
                " AND e.accounting_date BETWEEN %s AND %s",
                [currency, owner_id, PAYMENT_SUCCEEDED, livemode, first, last],
            )
            _volume_cache[key] = int(cursor.fetchone()[0])
        if len(_volume_cache) > 10_000:
            _volume_cache.clear()
    return _volume_cache[key]


def payment_fees_quote(
    *, app_id: int, merchant_id: int, channel_account_id: int, livemode: bool, amount: Money, on: date
) -> PaymentFees:
    """The platform fee and channel cost of a payment of `amount` on accounting day `on`."""
    currency = amount.currency.code
    minor = to_minor(amount)
    platform, channel = fee_plans_for_payment(
        app_id=app_id, merchant_id=merchant_id, channel_account_id=channel_account_id, currency=currency
    )

    def volume(plan: FeePlan | None, owner_type: str, owner_id: int) -> int:
        if plan is None or not plan.tiers:
            return 0
        return monthly_volume(
            owner_type=owner_type, owner_id=owner_id, currency=currency, livemode=livemode, month_of=on
        )

    platform_fee = fee_compute(
        plan=platform, amount=minor, currency=currency, volume=volume(platform, FeePlanOwner.MERCHANT, merchant_id)
    )
    channel_fee = fee_compute(
        plan=channel,
        amount=minor,
        currency=currency,
        volume=volume(channel, FeePlanOwner.CHANNEL_ACCOUNT, channel_account_id),
    )
    return PaymentFees(
        platform_fee=from_minor(platform_fee, currency),
        channel_fee=from_minor(channel_fee, currency),
        platform_plan_id=platform.pk if platform else None,
        channel_plan_id=channel.pk if channel else None,
    )
