"""The engine is pure: these tests use no database."""

import datetime as dt
import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.channels.health import Stats
from apps.ledger.fees import fee_compute
from apps.routing.engine import (
    Breaker,
    BreakerConfig,
    BreakerState,
    Candidate,
    FeePlanSnapshot,
    Removed,
    RouteRequest,
    RoutingStats,
    Strategy,
    breaker_step,
    decide,
    in_maintenance,
    payment_cost,
)

NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
METHODS = ["alipay_qr", "wx_pub_qr", "bank_card"]
BANKS = ["ICBC", "CCB", "BOC", "CMB"]

fee_plans = st.one_of(
    st.none(),
    st.builds(
        FeePlanSnapshot,
        rate=st.decimals(min_value=0, max_value=Decimal("0.05"), places=4),
        fixed=st.integers(0, 300),
        minimum=st.one_of(st.none(), st.integers(0, 100)),
        maximum=st.one_of(st.none(), st.integers(100, 5000)),
        tiers=st.one_of(
            st.just(()),
            st.just(({"from": 0, "rate": "0.006", "fixed": 0}, {"from": 1_000_000, "rate": "0.004", "fixed": 0})),
        ),
    ),
)


@st.composite
def candidates(draw, account_id: int) -> Candidate:
    minimum = draw(st.one_of(st.none(), st.integers(1, 5000)))
    maximum = draw(st.one_of(st.none(), st.integers(minimum or 1, 100_000)))
    cap = draw(st.one_of(st.none(), st.integers(0, 200_000)))
    count_cap = draw(st.one_of(st.none(), st.integers(0, 50)))
    start = NOW + dt.timedelta(minutes=draw(st.integers(-120, 120)))
    windows = draw(st.lists(st.just((start, start + dt.timedelta(minutes=30))), max_size=1))
    breaker = draw(
        st.sampled_from(
            [
                Breaker(),
                Breaker(BreakerState.OPEN, NOW - dt.timedelta(seconds=5), "x"),
                Breaker(BreakerState.OPEN, NOW - dt.timedelta(minutes=5), "x"),
                Breaker(BreakerState.HALF_OPEN, NOW - dt.timedelta(seconds=5), "x"),
            ]
        )
    )
    return Candidate(
        account_id=account_id,
        name=f"a{account_id}",
        livemode=draw(st.booleans()),
        methods=frozenset(draw(st.lists(st.sampled_from(METHODS), min_size=1, max_size=3))),
        currencies=frozenset(draw(st.lists(st.sampled_from(["CNY", "USD"]), min_size=1, max_size=2))),
        enabled=draw(st.booleans()),
        priority=draw(st.integers(0, 200)),
        weight=draw(st.integers(0, 100)),
        min_amount=minimum,
        max_amount=maximum,
        daily_amount_cap=cap,
        daily_count_cap=count_cap,
        maintenance=tuple(windows),
        daily_maintenance=draw(
            st.sampled_from([None, (dt.time(23, 50), dt.time(0, 10)), (dt.time(15, 0), dt.time(17, 0))])
        ),
        banks=frozenset(draw(st.lists(st.sampled_from([*BANKS, "*"]), max_size=3))),
        allowed_apps=draw(st.one_of(st.none(), st.frozensets(st.integers(1, 3), max_size=2))),
        fee_plan=draw(fee_plans),
        fee_volume=draw(st.sampled_from([0, 2_000_000])),
        breaker=breaker,
    )


@st.composite
def scenarios(draw):
    n = draw(st.integers(0, 12))
    pool = [draw(candidates(i + 1)) for i in range(n)]
    request = RouteRequest(
        app_id=draw(st.integers(1, 3)),
        livemode=draw(st.booleans()),
        method=draw(st.sampled_from(METHODS)),
        currency=draw(st.sampled_from(["CNY", "USD"])),
        amount=draw(st.integers(1, 120_000)),
        bank=draw(st.one_of(st.none(), st.sampled_from(BANKS))),
        strategy=draw(st.sampled_from(list(Strategy))),
        draw=draw(st.floats(0, 1, exclude_max=True)),
    )
    stats = {
        c.account_id: Stats(calls=calls, ok=ok, faults=calls - ok, p50_ms=float(draw(st.integers(5, 900))))
        for c in pool
        for calls in [draw(st.integers(0, 40))]
        for ok in [draw(st.integers(0, calls))]
    }
    usage = {c.account_id: (draw(st.integers(0, 200_000)), draw(st.integers(0, 50))) for c in pool}
    return request, pool, RoutingStats(recent=stats, breaker=stats, usage=usage)


def violates_a_filter(request: RouteRequest, c: Candidate, breaker: Breaker, usage: tuple[int, int]) -> bool:
    """The filters written out independently of the engine's code."""
    used_amount, used_count = usage
    return (
        c.livemode != request.livemode
        or request.method not in c.methods
        or request.currency not in c.currencies
        or (c.allowed_apps is not None and request.app_id not in c.allowed_apps)
        or not c.enabled
        or (request.method == "bank_card" and "*" not in c.banks and request.bank not in c.banks)
        or (c.min_amount is not None and request.amount < c.min_amount)
        or (c.max_amount is not None and request.amount > c.max_amount)
        or (c.daily_amount_cap is not None and used_amount + request.amount > c.daily_amount_cap)
        or (c.daily_count_cap is not None and used_count >= c.daily_count_cap)
        or in_maintenance(c, NOW)
        or breaker.state == BreakerState.OPEN
    )


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_the_engine_never_ranks_an_account_that_violates_a_filter(scenario):
    request, pool, stats = scenario
    decision = decide(request, pool, stats, NOW)
    by_id = {c.account_id: c for c in pool}
    for account_id in decision.ranking:
        c = by_id[account_id]
        breaker = decision.breaker_changes.get(account_id, c.breaker)
        assert not violates_a_filter(request, c, breaker, stats.usage[account_id]), decision.assessment(account_id)
    # and every removal names a reason; every candidate is assessed exactly once
    assert sorted(a.account_id for a in decision.assessments) == sorted(by_id)
    assert all((a.removed is None) == (a.account_id in decision.ranking) for a in decision.assessments)
    # nothing eligible was dropped
    eligible = {
        a
        for a, c in by_id.items()
        if not violates_a_filter(request, c, decision.breaker_changes.get(a, c.breaker), stats.usage[a])
    }
    assert eligible == set(decision.ranking)


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_the_cost_strategy_picks_a_cheapest_eligible_account(scenario):
    request, pool, stats = scenario
    request = RouteRequest(**{**request.__dict__, "strategy": Strategy.LOWEST_COST})
    decision = decide(request, pool, stats, NOW)
    if not decision.ranking:
        return
    by_id = {c.account_id: c for c in pool}
    costs = {a: payment_cost(by_id[a], request) for a in decision.ranking}
    assert costs[decision.winner] == min(costs.values())
    assert [costs[a] for a in decision.ranking] == sorted(costs.values())  # failover goes cheapest-first too


@settings(max_examples=5, deadline=None)
@given(st.lists(st.integers(1, 100), min_size=2, max_size=5), st.integers(0, 2**32 - 1))
def test_a_weighted_split_over_10000_decisions_is_within_2_points_of_its_weights(weights, seed):
    pool = [
        Candidate(account_id=i + 1, methods=frozenset({"alipay_qr"}), currencies=frozenset({"CNY"}), weight=w)
        for i, w in enumerate(weights)
    ]
    rng = random.Random(seed)
    wins = dict.fromkeys(range(1, len(pool) + 1), 0)
    for _ in range(10_000):
        request = RouteRequest(
            app_id=1, livemode=False, method="alipay_qr", currency="CNY", amount=100, strategy=Strategy.WEIGHTED,
            draw=rng.random(),
        )  # fmt: skip
        wins[decide(request, pool, RoutingStats(), NOW).winner] += 1
    total = sum(weights)
    for i, w in enumerate(weights):
        assert abs(wins[i + 1] / 10_000 - w / total) <= 0.02, (weights, wins)


def test_a_70_30_split_gives_70_30():
    pool = [
        Candidate(account_id=1, methods=frozenset({"wx_pub_qr"}), currencies=frozenset({"CNY"}), weight=70),
        Candidate(account_id=2, methods=frozenset({"wx_pub_qr"}), currencies=frozenset({"CNY"}), weight=30),
    ]
    rng = random.Random(7)
    first = sum(
        decide(
            RouteRequest(1, False, "wx_pub_qr", "CNY", 100, strategy=Strategy.WEIGHTED, draw=rng.random()),
            pool,
            RoutingStats(),
            NOW,
        ).winner
        == 1
        for _ in range(10_000)
    )
    assert 6800 <= first <= 7200


def base(**kw) -> Candidate:
    return Candidate(**{"account_id": 1, "methods": frozenset({"alipay_qr"}), "currencies": frozenset({"CNY"}), **kw})


REQUEST = RouteRequest(app_id=1, livemode=False, method="alipay_qr", currency="CNY", amount=1000)


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (base(enabled=False), Removed.DISABLED),
        (base(livemode=True), Removed.LIVEMODE),
        (base(min_amount=1001), Removed.BELOW_MINIMUM),
        (base(max_amount=999), Removed.ABOVE_MAXIMUM),
        (base(daily_amount_cap=5000, account_id=2), Removed.DAILY_AMOUNT),
        (base(daily_count_cap=3, account_id=3), Removed.DAILY_COUNT),
        (base(allowed_apps=frozenset({2})), Removed.APP),
        (base(maintenance=((NOW, NOW + dt.timedelta(hours=1)),)), Removed.MAINTENANCE),
        (base(breaker=Breaker(BreakerState.OPEN, NOW - dt.timedelta(seconds=1))), Removed.CIRCUIT_OPEN),
    ],
    ids=lambda v: str(v) if isinstance(v, Removed) else "",
)
def test_each_filter_names_itself(candidate, reason):
    usage = {2: (4001, 1), 3: (0, 3)}  # account 2: 4001 of 5000 used; account 3: 3 of 3 payments
    decision = decide(REQUEST, [candidate], RoutingStats(usage=usage), NOW)
    assert decision.ranking == ()
    assert decision.assessments[0].removed == reason


def test_a_daily_cap_admits_a_payment_that_exactly_reaches_it():
    decision = decide(REQUEST, [base(daily_amount_cap=5000)], RoutingStats(usage={1: (4000, 7)}), NOW)
    assert decision.ranking == (1,)


def test_daily_maintenance_wraps_midnight_in_local_time():
    c = base(daily_maintenance=(dt.time(23, 50), dt.time(0, 10)), local_zone="Asia/Shanghai")
    assert in_maintenance(c, dt.datetime(2026, 11, 23, 15, 55, tzinfo=dt.UTC))  # 23:55 in Shanghai
    assert in_maintenance(c, dt.datetime(2026, 11, 23, 16, 5, tzinfo=dt.UTC))  # 00:05
    assert not in_maintenance(c, dt.datetime(2026, 11, 23, 16, 10, tzinfo=dt.UTC))  # 00:10


def test_the_breaker_opens_half_opens_and_closes():
    config = BreakerConfig(window_seconds=60, min_calls=5, error_rate=0.5, cooldown_seconds=30)
    closed = Breaker()
    assert breaker_step(closed, Stats(calls=4, faults=4), config, NOW) == closed  # too few calls
    opened = breaker_step(closed, Stats(calls=6, ok=3, faults=3), config, NOW)
    assert opened.state == BreakerState.OPEN and opened.changed_at == NOW
    assert breaker_step(opened, Stats(), config, NOW + dt.timedelta(seconds=29)) == opened
    half = breaker_step(opened, Stats(), config, NOW + dt.timedelta(seconds=30))
    assert half.state == BreakerState.HALF_OPEN
    assert breaker_step(half, Stats(calls=1, ok=1), config, NOW + dt.timedelta(seconds=31)).state == BreakerState.CLOSED
    assert (
        breaker_step(half, Stats(calls=1, faults=1), config, NOW + dt.timedelta(seconds=31)).state == BreakerState.OPEN
    )


def card(**kw) -> Candidate:
    return Candidate(methods=frozenset({"bank_card"}), currencies=frozenset({"CNY"}), **kw)


def test_bank_card_goes_only_to_accounts_serving_the_bank():
    pool = [
        card(account_id=1, banks=frozenset({"ICBC"})),
        card(account_id=2, banks=frozenset({"CCB", "BOC"}), priority=1),
        card(account_id=3, banks=frozenset()),
    ]
    request = RouteRequest(app_id=1, livemode=False, method="bank_card", currency="CNY", amount=100, bank="ICBC")
    decision = decide(request, pool, RoutingStats(), NOW)
    assert decision.ranking == (1,)
    assert decision.assessment(2).removed == decision.assessment(3).removed == Removed.BANK


def test_the_composite_score_follows_its_documented_weights():
    cheap_flaky = base(account_id=1, fee_plan=FeePlanSnapshot(rate=Decimal("0.002")))
    dear_solid = base(account_id=2, fee_plan=FeePlanSnapshot(rate=Decimal("0.006")))
    stats = RoutingStats(recent={1: Stats(calls=100, ok=50, faults=50), 2: Stats(calls=100, ok=99, faults=1)})
    request = RouteRequest(1, False, "alipay_qr", "CNY", 100_000, strategy=Strategy.COMPOSITE)
    decision = decide(request, [cheap_flaky, dear_solid], stats, NOW)
    # cheap: 0.1*1 + 0.4*1 + 0.4*(59/110) + 0.1*0.5 ; solid: 0.1*1 + 0.4*0 + 0.4*(108/110) + 0.1*0.5
    assert decision.assessment(1).score == pytest.approx(0.1 + 0.4 + 0.4 * 59 / 110 + 0.05)
    assert decision.assessment(2).score == pytest.approx(0.1 + 0.4 * 108 / 110 + 0.05)
    assert decision.ranking == (1, 2)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(fee_plans, min_size=1, max_size=4),
    st.lists(st.integers(1, 500_000), min_size=1, max_size=6),
    st.sampled_from([0, 2_000_000]),
)
def test_the_memoised_cost_is_always_fee_compute(plans, amounts, volume):
    """The memo is keyed by everything fee_compute reads: a plan edited under the same account id
    (a new snapshot) never gets the old plan's cost, and repeats give the same answer."""
    for amount in [*amounts, *amounts]:
        request = RouteRequest(app_id=1, livemode=False, method="alipay_qr", currency="CNY", amount=amount)
        for plan in plans:
            candidate = base(fee_plan=plan, fee_volume=volume)
            expected = fee_compute(plan=plan, amount=amount, currency="CNY", volume=volume)
            assert payment_cost(candidate, request) == expected


def test_the_record_is_built_on_first_use_from_the_decisions_own_inputs():
    pool = [base(account_id=1, fee_plan=FeePlanSnapshot(rate=Decimal("0.006"))), base(account_id=2, enabled=False)]
    decision = decide(REQUEST, pool, RoutingStats(recent={1: Stats(calls=10, ok=9, p50_ms=50.0)}), NOW)
    assert "assessments" not in decision.__dict__  # priority strategy: nothing built yet
    first = decision.assessments
    assert decision.assessments is first
    assert [(a.account_id, a.removed, a.cost, a.success_rate, a.p50_ms) for a in first] == [
        (1, None, 6, 0.9, 50.0),
        (2, Removed.DISABLED, None, None, None),
    ]
