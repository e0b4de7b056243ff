"""Fee plans (every form, rounding named and exact) and the posting rules as pure functions."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from apps.ledger import services
from apps.ledger.fees import fee_compute
from apps.ledger.models import FeePlan, FeePlanKind, FeePlanOwner, FeeRounding
from apps.ledger.rules import proportional_share, refund_shares
from apps.ledger.tests.helpers import cny, post_payment


def plan(**kwargs) -> FeePlan:
    base = {"name": "p", "kind": FeePlanKind.PLATFORM, "owner_type": FeePlanOwner.MERCHANT, "owner_id": 1,
            "currency": "CNY"}  # fmt: skip
    return FeePlan(**{**base, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "amount", "fee"),
    [
        pytest.param({"rate": Decimal("0.006")}, 10000, 60, id="percentage"),
        pytest.param({"fixed": 30}, 10000, 30, id="fixed"),
        pytest.param({"rate": Decimal("0.006"), "fixed": 30}, 10000, 90, id="percentage-plus-fixed"),
        pytest.param({"rate": Decimal("0.006"), "minimum": 100}, 10000, 100, id="minimum"),
        pytest.param({"rate": Decimal("0.006"), "maximum": 50}, 10000, 50, id="maximum"),
        pytest.param({"fixed": 500}, 300, 300, id="never-above-the-amount"),
        pytest.param({"rate": Decimal("0.006")}, 0, 0, id="zero-amount"),
    ],
)
def test_fee_forms(kwargs, amount, fee):
    assert fee_compute(plan=plan(**kwargs), amount=amount, currency="CNY") == fee


@pytest.mark.parametrize(
    ("rounding", "amount", "fee"),
    [
        # 0.6% of 1.25 CNY = 0.75 fen
        pytest.param(FeeRounding.HALF_UP, 125, 1, id="half-up-0.75"),
        pytest.param(FeeRounding.DOWN, 125, 0, id="down-0.75"),
        # 0.6% of 2.50 CNY = 1.5 fen (2 either way: 2 is even); 0.6% of 0.75 CNY = 0.45 fen
        pytest.param(FeeRounding.HALF_UP, 250, 2, id="half-up-1.5"),
        pytest.param(FeeRounding.HALF_EVEN, 250, 2, id="half-even-1.5"),
        pytest.param(FeeRounding.UP, 75, 1, id="up-0.45"),
    ],
)
def test_fee_rounding_is_the_plans_named_rule(rounding, amount, fee):
    assert fee_compute(plan=plan(rate=Decimal("0.006"), rounding=rounding), amount=amount, currency="CNY") == fee


def test_half_even_and_half_up_differ_on_an_even_half():
    p_up = plan(rate=Decimal("0.01"), rounding=FeeRounding.HALF_UP)
    p_even = plan(rate=Decimal("0.01"), rounding=FeeRounding.HALF_EVEN)
    # 1% of 2.50 CNY = 2.5 fen
    assert (
        fee_compute(plan=p_up, amount=250, currency="CNY"),
        fee_compute(plan=p_even, amount=250, currency="CNY"),
    ) == (
        3,
        2,
    )


def test_fee_in_a_zero_exponent_currency():
    assert fee_compute(plan=plan(rate=Decimal("0.035"), currency="JPY"), amount=1010, currency="JPY") == 35


@pytest.mark.parametrize(
    ("volume", "fee"),
    [
        pytest.param(0, 60, id="first-tier"),
        pytest.param(1_000_000, 40, id="second-tier"),
        pytest.param(50_000_000, 20, id="top-tier"),
    ],
)
def test_tiered_plan_picks_the_tier_by_volume(volume, fee):
    tiers = [{"from": 0, "rate": "0.006"}, {"from": 1_000_000, "rate": "0.004"}, {"from": 10_000_000, "rate": "0.002"}]
    assert fee_compute(plan=plan(tiers=tiers), amount=10000, currency="CNY", volume=volume) == fee


@pytest.mark.django_db
def test_tiered_plan_uses_last_months_volume_from_the_ledger():
    FeePlan.objects.create(
        name="tiered", kind=FeePlanKind.PLATFORM, owner_type=FeePlanOwner.MERCHANT, owner_id=1, currency="CNY",
        tiers=[{"from": 0, "rate": "0.006"}, {"from": 20000, "rate": "0.003", "fixed": 1}],
    )  # fmt: skip
    april = datetime(2026, 4, 15, 4, tzinfo=UTC)
    post_payment("ch_april_1", amount=15000, occurred_at=april)
    post_payment("ch_april_2", amount=15000, occurred_at=april)

    quote = services.payment_fees_quote(
        app_id=99, merchant_id=1, channel_account_id=7, livemode=True, amount=cny(10000),
        at=datetime(2026, 5, 2, 4, tzinfo=UTC),
    )  # fmt: skip
    first_of_april = services.payment_fees_quote(
        app_id=99, merchant_id=1, channel_account_id=7, livemode=True, amount=cny(10000),
        at=datetime(2026, 4, 20, 4, tzinfo=UTC),
    )  # fmt: skip

    assert quote.platform_fee == cny(31)  # 30 000 fen in April: second tier, 0.3% + 1
    assert first_of_april.platform_fee == cny(60)  # nothing in March


@pytest.mark.django_db
def test_app_plan_wins_over_merchant_plan_and_channel_plan_is_separate():
    common = {"currency": "CNY", "rate": Decimal("0.006")}
    FeePlan.objects.create(name="m", kind="platform", owner_type="merchant", owner_id=1, **common)
    FeePlan.objects.create(name="a", kind="platform", owner_type="app", owner_id=5, currency="CNY", fixed=10)
    FeePlan.objects.create(name="c", kind="channel", owner_type="channel_account", owner_id=7, **common)
    at = datetime(2026, 4, 20, 4, tzinfo=UTC)

    for_app_5 = services.payment_fees_quote(
        app_id=5, merchant_id=1, channel_account_id=7, livemode=True, amount=cny(10000), at=at
    )
    for_app_6 = services.payment_fees_quote(
        app_id=6, merchant_id=1, channel_account_id=8, livemode=True, amount=cny(10000), at=at
    )

    assert (for_app_5.platform_fee, for_app_5.channel_fee) == (cny(10), cny(60))
    assert (for_app_6.platform_fee, for_app_6.channel_fee) == (cny(60), cny(0))


# --- rules -----------------------------------------------------------------------------------------


def test_proportional_shares_add_up_to_the_whole_fee_over_partial_refunds():
    fee, amount = 61, 10000
    refunds = [3333, 3333, 3334]
    before, returned = 0, []
    for refund in refunds:
        returned.append(proportional_share(total=fee, charge_amount=amount, refunded_before=before,
                                           refund_amount=refund))  # fmt: skip
        before += refund

    assert returned == [20, 21, 20]
    assert sum(returned) == fee


@pytest.mark.parametrize(("returned", "expected"), [pytest.param(True, 30, id="returned"),
                                                    pytest.param(False, 0, id="kept")])  # fmt: skip
def test_refund_shares_follow_the_plans_policy(returned, expected):
    shares = refund_shares(
        charge_amount=10000, refunded_before=0, refund_amount=5000, platform_fee=60, channel_fee=25,
        coupon_subsidy=0, platform_fee_returned=returned, channel_fee_returned=True,
    )  # fmt: skip

    assert (shares.platform_fee, shares.channel_fee, shares.coupon_subsidy) == (expected, 13, 0)
