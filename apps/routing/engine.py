"""The routing engine: `decide(request, candidates, stats, now) -> Decision`, a pure function.

No database, no clock, no randomness of its own: everything it needs arrives as frozen values
(the selectors in `apps.routing.selectors` build them), so it is tested without a database and
its answer for the same inputs is always the same. The weighted split draws from
`request.draw`, a number in [0, 1) the caller supplies.

The decision:
1. Every candidate goes through the filters in `FILTERS` order; the first one it fails removes it
   and is recorded as the reason.
2. The circuit breaker of each candidate is stepped (`breaker_step`) from the call-log statistics;
   the new states are returned in `Decision.breaker_changes` for the caller to persist.
3. The eligible candidates are ranked by the configured strategy; the ranking is the failover
   order (the first is the winner, the next is tried if it fails before the payer is involved).

Only what the strategy ranks by is computed with the decision; the record of every candidate
(`Decision.assessments`) is built when it is first read. Channel costs are memoised per process
(`payment_cost`): a pure function's memo, keyed by everything it reads, so never stale.

Composite score (documented weights, configurable per app and method): each component is scaled
to [0, 1] over the eligible candidates, 1 the best, and the score is the weighted mean:
- priority: 1 for the lowest priority number, 0 for the highest (all equal: 1);
- cost: 1 for the cheapest payment under the account's channel fee plan, 0 for the dearest;
- success: the smoothed recent success rate (below);
- latency: 1 for the lowest recent median latency, 0 for the highest; unknown latency 0.5.
Defaults: priority 0.1, cost 0.4, success 0.4, latency 0.1.

Success rate is smoothed so that an account with few calls is neither a hero nor a villain:
`(ok + 9) / (calls + 10)`, a prior of 90 % worth ten calls.
"""

import datetime as dt
import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from zoneinfo import ZoneInfo

from apps.channels.health import Stats
from apps.ledger.fees import fee_compute

CARD_METHOD = "bank_card"
ANY_BANK = "*"
PRIOR_OK, PRIOR_CALLS = 9, 10
NO_USAGE = (0, 0)


class Strategy(enum.StrEnum):
    PRIORITY = "priority"
    LOWEST_COST = "lowest_cost"
    SUCCESS_RATE = "success_rate"
    WEIGHTED = "weighted"
    COMPOSITE = "composite"


class Removed(enum.StrEnum):
    """Why a candidate was removed: the first filter it failed."""

    LIVEMODE = "livemode_mismatch"
    METHOD = "method_unsupported"
    CURRENCY = "currency_unsupported"
    APP = "app_not_allowed"
    DISABLED = "disabled"
    BANK = "bank_unsupported"
    BELOW_MINIMUM = "below_minimum"
    ABOVE_MAXIMUM = "above_maximum"
    DAILY_AMOUNT = "daily_amount_cap"
    DAILY_COUNT = "daily_count_cap"
    MAINTENANCE = "maintenance"
    CIRCUIT_OPEN = "circuit_open"


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerConfig:
    """Opens when faults (timeouts included) are at least `error_rate` of at least `min_calls`
    calls in the last `window_seconds`; half-opens after `cooldown_seconds`; a success in
    half-open closes it, a fault re-opens it. While half-open, at most `probes` charges at a time
    are let through to try the account (the probe tokens are taken by `apps.routing.services`)."""

    window_seconds: int = 60
    min_calls: int = 5
    error_rate: float = 0.5
    cooldown_seconds: int = 30
    probes: int = 1


@dataclass(frozen=True)
class Breaker:
    state: BreakerState = BreakerState.CLOSED
    changed_at: dt.datetime | None = None
    reason: str = ""


@dataclass(frozen=True)
class FeePlanSnapshot:
    """The channel fee plan's formula (the attributes `apps.ledger.fees.fee_compute` reads)."""

    rate: Decimal = Decimal(0)
    fixed: int = 0
    tiers: tuple = ()
    minimum: int | None = None
    maximum: int | None = None
    rounding: str = "ROUND_HALF_UP"

    @cached_property
    def key(self) -> tuple:
        """The formula as a hashable value (the fee memo's key)."""
        tiers = tuple(tuple(sorted(tier.items())) for tier in self.tiers)
        return (self.rate, self.fixed, tiers, self.minimum, self.maximum, self.rounding)


@dataclass(frozen=True)
class Candidate:
    """One channel account with its routing policy, today's usage and breaker state."""

    account_id: int
    name: str = ""
    livemode: bool = False
    methods: frozenset[str] = frozenset()
    currencies: frozenset[str] = frozenset()
    enabled: bool = True
    priority: int = 100
    weight: int = 100
    min_amount: int | None = None  # minor units
    max_amount: int | None = None
    daily_amount_cap: int | None = None
    daily_count_cap: int | None = None
    maintenance: tuple[tuple[dt.datetime, dt.datetime], ...] = ()  # one-off windows [start, end)
    daily_maintenance: tuple[dt.time, dt.time] | None = None  # every day [start, end), local; may wrap
    local_zone: str = "Asia/Shanghai"
    banks: frozenset[str] = frozenset()  # for bank_card: bank codes served, "*" for any
    allowed_apps: frozenset[int] | None = None  # None: every app
    fee_plan: FeePlanSnapshot | None = None
    fee_volume: int = 0  # last month's volume, for tiered plans
    breaker: Breaker = Breaker()
    breaker_config: BreakerConfig = BreakerConfig()


@dataclass(frozen=True)
class Weights:
    priority: float = 0.1
    cost: float = 0.4
    success: float = 0.4
    latency: float = 0.1


@dataclass(frozen=True)
class RouteRequest:
    app_id: int
    livemode: bool
    method: str
    currency: str  # ISO code, upper case
    amount: int  # minor units
    bank: str | None = None  # the card's issuing bank (bank_card), from the BIN table
    strategy: Strategy = Strategy.PRIORITY
    weights: Weights = Weights()
    draw: float = 0.0  # in [0, 1): the weighted split's random number


@dataclass(frozen=True)
class RoutingStats:
    """What changes by the second, per account: call-log statistics (`recent` for success rates and
    latency, `breaker` over each breaker's window, never before its last change) and today's usage
    (`usage`: amount and count reserved on the daily counter; absent means none)."""

    recent: Mapping[int, Stats] = field(default_factory=dict)
    breaker: Mapping[int, Stats] = field(default_factory=dict)
    usage: Mapping[int, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Assessment:
    account_id: int
    name: str
    removed: Removed | None
    detail: str = ""
    cost: int | None = None
    success_rate: float | None = None
    p50_ms: float | None = None
    score: float | None = None
    breaker: BreakerState = BreakerState.CLOSED

    def as_dict(self) -> dict:
        return {
            "account_id": self.account_id,
            "name": self.name,
            "removed": str(self.removed) if self.removed else None,
            "detail": self.detail,
            "cost": self.cost,
            "success_rate": None if self.success_rate is None else round(self.success_rate, 4),
            "p50_ms": self.p50_ms,
            "score": None if self.score is None else round(self.score, 4),
            "breaker": str(self.breaker),
        }


@dataclass(frozen=True)
class Decision:
    """The ranking (the failover order) and the breaker transitions the decision implies.

    `assessments` (every candidate with its removal reason, cost, success rate, latency, score and
    breaker state, ranked ones first in ranking order) is what the decision record stores; it is
    built on first use from the decision's own inputs, so a caller that only needs the ranking
    does not pay for it, and its content is the same whenever it is built.
    """

    strategy: Strategy
    ranking: tuple[int, ...]  # eligible account ids, the failover order
    breaker_changes: Mapping[int, Breaker] = field(default_factory=dict)
    _assess: Callable[[], tuple[Assessment, ...]] = field(default=tuple, repr=False, compare=False)

    @cached_property
    def assessments(self) -> tuple[Assessment, ...]:
        return self._assess()

    @property
    def winner(self) -> int | None:
        return self.ranking[0] if self.ranking else None

    def assessment(self, account_id: int) -> Assessment:
        return next(a for a in self.assessments if a.account_id == account_id)

    def explain(self) -> str:
        """One line for an error message: why nothing (or what) was chosen."""
        if self.ranking:
            return f"account {self.winner} chosen by {self.strategy}"
        if not self.assessments:
            return "no channel account is configured for it"
        reasons = sorted({str(a.removed) for a in self.assessments if a.removed})
        return "every candidate account was removed: " + ", ".join(reasons)


# --- filters ---------------------------------------------------------------------------------------


def in_maintenance(candidate: Candidate, now: dt.datetime) -> bool:
    return _in_maintenance(candidate, now, _LocalClock(now))


class _LocalClock:
    """Local wall-clock time of one instant, per time zone, computed once per zone."""

    __slots__ = ("_now", "_times")

    def __init__(self, now: dt.datetime):
        self._now = now
        self._times: dict[str, dt.time] = {}

    def time_in(self, zone: str) -> dt.time:
        local = self._times.get(zone)
        if local is None:
            local = self._times[zone] = self._now.astimezone(ZoneInfo(zone)).time()
        return local


def _in_maintenance(candidate: Candidate, now: dt.datetime, clock: _LocalClock) -> bool:
    for start, end in candidate.maintenance:
        if start <= now < end:
            return True
    if candidate.daily_maintenance is None:
        return False
    start, end = candidate.daily_maintenance
    local = clock.time_in(candidate.local_zone)
    if start <= end:
        return start <= local < end
    return local >= start or local < end  # wraps midnight, e.g. 23:50–00:10


def breaker_step(breaker: Breaker, window: Stats, config: BreakerConfig, now: dt.datetime) -> Breaker:
    """The breaker's next state from the call-log statistics of its window.

    `window` holds the account's calls in the breaker window but never before `changed_at`, so a
    breaker that just closed is not re-opened by the faults that opened it.
    """
    if breaker.state == BreakerState.OPEN:
        cooled = breaker.changed_at is None or now - breaker.changed_at >= dt.timedelta(seconds=config.cooldown_seconds)
        return Breaker(BreakerState.HALF_OPEN, now, "cool-down over: probing") if cooled else breaker
    if breaker.state == BreakerState.HALF_OPEN:
        if window.faults:
            return Breaker(BreakerState.OPEN, now, f"probe failed ({window.faults} faults)")
        if window.ok:
            return Breaker(BreakerState.CLOSED, now, "probe succeeded")
        return breaker
    if window.calls >= config.min_calls and window.faults >= config.error_rate * window.calls:
        return Breaker(BreakerState.OPEN, now, f"{window.faults} faults in {window.calls} calls")
    return breaker


class ProbeOutcome(enum.StrEnum):
    """How a charge let through a half-open breaker ended at the provider."""

    OK = "ok"  # the provider accepted the payment
    FAULT = "fault"  # not reached, 5xx, an invalid answer or a timeout
    REFUSED = "refused"  # the provider answered and refused: the channel works, the probe proves nothing
    NONE = "none"  # no call was made (the charge could not be opened)


def breaker_after_probe(breaker: Breaker, outcome: ProbeOutcome, now: dt.datetime) -> Breaker:
    """A half-open breaker's next state once one of its probe charges is over: closed after a
    success, open again after a fault, unchanged otherwise (the next probe decides)."""
    if breaker.state != BreakerState.HALF_OPEN:
        return breaker
    if outcome == ProbeOutcome.OK:
        return Breaker(BreakerState.CLOSED, now, "probe succeeded")
    if outcome == ProbeOutcome.FAULT:
        return Breaker(BreakerState.OPEN, now, "probe failed")
    return breaker


def _first_failed_filter(
    request: RouteRequest, c: Candidate, used: tuple[int, int], now: dt.datetime, clock: _LocalClock
) -> tuple[Removed, str] | None:
    if c.livemode != request.livemode:
        return Removed.LIVEMODE, "live account for a test charge" if c.livemode else "sandbox account for a live charge"
    if request.method not in c.methods:
        return Removed.METHOD, f"serves {', '.join(sorted(c.methods)) or 'nothing'}"
    if request.currency not in c.currencies:
        return Removed.CURRENCY, f"serves {', '.join(sorted(c.currencies)) or 'nothing'}"
    if c.allowed_apps is not None and request.app_id not in c.allowed_apps:
        return Removed.APP, "the app is not in the account's allowed apps"
    if not c.enabled:
        return Removed.DISABLED, ""
    if (
        request.method == CARD_METHOD
        and ANY_BANK not in c.banks
        and (request.bank is None or request.bank not in c.banks)
    ):
        return Removed.BANK, f"card bank {request.bank or 'unknown'}; serves {', '.join(sorted(c.banks)) or 'none'}"
    if c.min_amount is not None and request.amount < c.min_amount:
        return Removed.BELOW_MINIMUM, f"{request.amount} < {c.min_amount}"
    if c.max_amount is not None and request.amount > c.max_amount:
        return Removed.ABOVE_MAXIMUM, f"{request.amount} > {c.max_amount}"
    used_amount, used_count = used
    if c.daily_amount_cap is not None and used_amount + request.amount > c.daily_amount_cap:
        return Removed.DAILY_AMOUNT, f"{used_amount} used + {request.amount} > {c.daily_amount_cap}"
    if c.daily_count_cap is not None and used_count + 1 > c.daily_count_cap:
        return Removed.DAILY_COUNT, f"{used_count} of {c.daily_count_cap} used"
    if (c.maintenance or c.daily_maintenance is not None) and _in_maintenance(c, now, clock):
        return Removed.MAINTENANCE, ""
    return None


# --- ranking ---------------------------------------------------------------------------------------


_FEE_MEMO: dict[tuple, int] = {}
_FEE_MEMO_SIZE = 20_000  # a few MB at most


def payment_cost(candidate: Candidate, request: RouteRequest) -> int:
    """The channel cost in minor units under the account's fee plan (0 without one, as the ledger).

    Memoised per process on (formula, last month's volume, amount, currency): `fee_compute` is a
    pure function of those, so an entry is never stale and needs no invalidation; the memo is
    emptied when it reaches `_FEE_MEMO_SIZE` entries.
    """
    plan = candidate.fee_plan
    if plan is None:
        return fee_compute(plan=None, amount=request.amount, currency=request.currency)
    key = (plan.key, candidate.fee_volume, request.amount, request.currency)
    cost = _FEE_MEMO.get(key)
    if cost is None:
        cost = fee_compute(plan=plan, amount=request.amount, currency=request.currency, volume=candidate.fee_volume)
        if len(_FEE_MEMO) >= _FEE_MEMO_SIZE:
            _FEE_MEMO.clear()
        _FEE_MEMO[key] = cost
    return cost


def smoothed_success(stats: Stats | None) -> float:
    calls, ok = (stats.calls, stats.ok) if stats else (0, 0)
    return (ok + PRIOR_OK) / (calls + PRIOR_CALLS)


def _scaled_best_low(values: list[float | None]) -> list[float]:
    """1 for the lowest, 0 for the highest; all equal gives 1; unknown gives 0.5."""
    known = [v for v in values if v is not None]
    if not known:
        return [0.5] * len(values)
    low, high = min(known), max(known)
    if high == low:
        return [1.0 if v is not None else 0.5 for v in values]
    return [0.5 if v is None else 1 - (v - low) / (high - low) for v in values]


def _weighted_pick(eligible: list[Candidate], draw: float) -> Candidate | None:
    total = sum(max(c.weight, 0) for c in eligible)
    if total <= 0:
        return None
    point = draw * total
    running = 0
    for c in eligible:
        running += max(c.weight, 0)
        if point < running:
            return c
    return next(c for c in reversed(eligible) if c.weight > 0)  # draw == 1.0 guards


def _rank(request: RouteRequest, eligible: list[Candidate], costs, rates, latencies) -> tuple[list[Candidate], dict]:
    by_priority = sorted(eligible, key=lambda c: (c.priority, c.account_id))
    scores: dict[int, float] = {}
    strategy = request.strategy
    if strategy == Strategy.LOWEST_COST:
        ranked = sorted(by_priority, key=lambda c: costs[c.account_id])
    elif strategy == Strategy.SUCCESS_RATE:
        ranked = sorted(by_priority, key=lambda c: -rates[c.account_id])
    elif strategy == Strategy.WEIGHTED:
        chosen = _weighted_pick(by_priority, request.draw)
        ranked = by_priority if chosen is None else [chosen, *(c for c in by_priority if c is not chosen)]
    elif strategy == Strategy.COMPOSITE:
        w = request.weights
        total = (w.priority + w.cost + w.success + w.latency) or 1.0
        prio = _scaled_best_low([float(c.priority) for c in by_priority])
        cost = _scaled_best_low([float(costs[c.account_id]) for c in by_priority])
        lat = _scaled_best_low([latencies[c.account_id] for c in by_priority])
        for i, c in enumerate(by_priority):
            scores[c.account_id] = (
                w.priority * prio[i] + w.cost * cost[i] + w.success * rates[c.account_id] + w.latency * lat[i]
            ) / total
        ranked = sorted(by_priority, key=lambda c: -scores[c.account_id])
    else:
        ranked = by_priority
    return ranked, scores


NOT_SERVING = frozenset({Removed.LIVEMODE, Removed.METHOD, Removed.CURRENCY})
BY_COST = frozenset({Strategy.LOWEST_COST, Strategy.COMPOSITE})
BY_SUCCESS = frozenset({Strategy.SUCCESS_RATE, Strategy.COMPOSITE})
NO_STATS = Stats()


def decide(request: RouteRequest, candidates: Iterable[Candidate], stats: RoutingStats, now: dt.datetime) -> Decision:
    """Filters, steps the breakers and ranks: the routing decision for one payment (pure).

    Only what the strategy ranks by is computed here (costs for `lowest_cost` and `composite`,
    success rates for `success_rate` and `composite`, latencies for `composite`); the rest of the
    record (`Decision.assessments`) is built when it is first read.
    """
    eligible: list[Candidate] = []
    removed: dict[int, tuple[Removed, str]] = {}
    changes: dict[int, Breaker] = {}
    ordered = candidates if isinstance(candidates, list | tuple) else list(candidates)
    clock = _LocalClock(now)
    usage, breaker_stats = stats.usage, stats.breaker
    for c in ordered:
        account_id = c.account_id
        failed = _first_failed_filter(request, c, usage.get(account_id, NO_USAGE), now, clock)
        breaker = c.breaker
        if failed is None or failed[0] not in NOT_SERVING:
            breaker = breaker_step(breaker, breaker_stats.get(account_id) or NO_STATS, c.breaker_config, now)
            if breaker is not c.breaker:
                changes[account_id] = breaker
        if failed is None and breaker.state == BreakerState.OPEN:
            failed = Removed.CIRCUIT_OPEN, breaker.reason
        if failed is None:
            eligible.append(c)
        else:
            removed[account_id] = failed
    strategy = request.strategy
    recent = stats.recent
    costs = {c.account_id: payment_cost(c, request) for c in eligible} if strategy in BY_COST else {}
    rates = (
        {c.account_id: smoothed_success(recent.get(c.account_id)) for c in eligible} if strategy in BY_SUCCESS else {}
    )
    latencies = (
        {c.account_id: getattr(recent.get(c.account_id), "p50_ms", None) for c in eligible}
        if strategy == Strategy.COMPOSITE
        else {}
    )
    ranked, scores = _rank(request, eligible, costs, rates, latencies)

    def assessments() -> tuple[Assessment, ...]:
        def assess(c: Candidate) -> Assessment:
            account_id = c.account_id
            seen = recent.get(account_id)
            reason, detail = removed.get(account_id, (None, ""))
            return Assessment(
                account_id=account_id,
                name=c.name,
                removed=reason,
                detail=detail,
                cost=None if reason is not None else costs.get(account_id) or payment_cost(c, request),
                success_rate=seen.success_rate if seen else None,
                p50_ms=seen.p50_ms if seen else None,
                score=scores.get(account_id),
                breaker=changes.get(account_id, c.breaker).state,
            )

        rest = [c for c in ordered if c.account_id in removed]
        return tuple(assess(c) for c in [*ranked, *rest])

    return Decision(
        strategy=strategy,
        ranking=tuple(c.account_id for c in ranked),
        breaker_changes=changes,
        _assess=assessments,
    )
