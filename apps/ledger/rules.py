"""Posting rules: one per event type. Each turns a business event into balanced lines.

The rules are pure (amounts in, lines out); the `*_post` services in services.py resolve what a
rule needs (balances, plans) and post its lines through `journal_post`. Amounts are integer minor
units; zero lines are left out.
"""

from dataclasses import dataclass

from apps.ledger import accounts as acc
from apps.ledger.journal import Line

PAYMENT_SUCCEEDED = "payment.succeeded"
REFUND_SUCCEEDED = "refund.succeeded"
SETTLEMENT = "settlement"
ADJUSTMENT = "adjustment"
CHANNEL_SETTLEMENT = "recon.clearing"


def _nonzero(lines: list[Line]) -> list[Line]:
    return [line for line in lines if line.amount]


def payment_succeeded_lines(
    *,
    merchant_id: int,
    channel_account_id: int,
    currency: str,
    amount: int,
    channel_fee: int,
    platform_fee: int,
    coupon_subsidy: int = 0,
) -> list[Line]:
    """A payment of A with a platform-funded coupon s, channel fee c and platform fee f:

    Dr channel_clearing (A−s−c), Dr channel_fee_expense c, Dr marketing_expense s,
    Cr merchant_pending (A−f), Cr platform_fee_revenue f.
    """
    return _nonzero(
        [
            Line.debit(acc.channel_clearing(channel_account_id, currency), amount - coupon_subsidy - channel_fee),
            Line.debit(acc.channel_fee_expense(channel_account_id, currency), channel_fee),
            Line.debit(acc.marketing_expense(currency), coupon_subsidy),
            Line.credit(acc.merchant_pending(merchant_id, currency), amount - platform_fee),
            Line.credit(acc.platform_fee_revenue(currency), platform_fee),
        ]
    )


def _round_half_up_ratio(value: int, numerator: int, denominator: int) -> int:
    """round(value × numerator / denominator), halves away from zero, for non-negative integers."""
    return (2 * value * numerator + denominator) // (2 * denominator)


def proportional_share(*, total: int, charge_amount: int, refunded_before: int, refund_amount: int) -> int:
    """The part of `total` (a fee or subsidy of the charge) that a refund reverses.

    Computed on cumulative refunded amounts, each rounded half up, so that the refunds of a
    charge together reverse exactly `total` once the charge is fully refunded, and never more.
    """
    after = _round_half_up_ratio(total, refunded_before + refund_amount, charge_amount)
    before = _round_half_up_ratio(total, refunded_before, charge_amount)
    return after - before


@dataclass(frozen=True)
class RefundShares:
    platform_fee: int  # returned to the merchant
    channel_fee: int  # returned by the channel
    coupon_subsidy: int  # taken back into marketing expense


def refund_shares(
    *,
    charge_amount: int,
    refunded_before: int,
    refund_amount: int,
    platform_fee: int,
    channel_fee: int,
    coupon_subsidy: int,
    platform_fee_returned: bool,
    channel_fee_returned: bool,
) -> RefundShares:
    def share(total: int) -> int:
        return proportional_share(
            total=total, charge_amount=charge_amount, refunded_before=refunded_before, refund_amount=refund_amount
        )

    return RefundShares(
        platform_fee=share(platform_fee) if platform_fee_returned else 0,
        channel_fee=share(channel_fee) if channel_fee_returned else 0,
        coupon_subsidy=share(coupon_subsidy),
    )


def refund_succeeded_lines(
    *,
    merchant_id: int,
    channel_account_id: int,
    currency: str,
    refund_amount: int,
    shares: RefundShares,
    from_pending: int,
) -> list[Line]:
    """The proportional reversal of a payment for a refund of r (shares as `refund_shares`):

    Cr channel_clearing (r − s_r − c_r), Cr channel_fee_expense c_r, Cr marketing_expense s_r,
    Dr merchant (r − f_r), Dr platform_fee_revenue f_r. The merchant's part is taken from
    merchant_pending up to `from_pending`, the rest from merchant_available.
    """
    merchant_part = refund_amount - shares.platform_fee
    pending_part = min(from_pending, merchant_part)
    return _nonzero(
        [
            Line.debit(acc.merchant_pending(merchant_id, currency), pending_part),
            Line.debit(acc.merchant_available(merchant_id, currency), merchant_part - pending_part),
            Line.debit(acc.platform_fee_revenue(currency), shares.platform_fee),
            Line.credit(
                acc.channel_clearing(channel_account_id, currency),
                refund_amount - shares.coupon_subsidy - shares.channel_fee,
            ),
            Line.credit(acc.channel_fee_expense(channel_account_id, currency), shares.channel_fee),
            Line.credit(acc.marketing_expense(currency), shares.coupon_subsidy),
        ]
    )


def settlement_lines(*, merchant_id: int, currency: str, amount: int) -> list[Line]:
    """Dr merchant_pending, Cr merchant_available: matured funds become available."""
    return [
        Line.debit(acc.merchant_pending(merchant_id, currency), amount),
        Line.credit(acc.merchant_available(merchant_id, currency), amount),
    ]


def channel_settlement_lines(*, channel_account_id: int, currency: str, amount: int) -> list[Line]:
    """Dr bank, Cr channel_clearing: what a channel settles (a negative amount takes it back)."""
    return _nonzero(
        [
            Line.debit(acc.bank(currency), amount),
            Line.credit(acc.channel_clearing(channel_account_id, currency), amount),
        ]
    )
