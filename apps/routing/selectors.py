"""Reads that feed the engine: candidate snapshots, today's usage, breaker states, call-log
statistics, route configs and the BIN table.

What a decision reads (`decision_inputs`; docs/routing.md, "Caching and freshness"):

- One statement on every decision (`_LIVE_SQL`; psycopg prepares it on each connection after a few
  runs, see `DB_PREPARE_THRESHOLD` in settings): the
  configuration version, the newest call-log id, today's usage of every candidate, their breaker
  rows, and the calls each candidate made since the cached breaker-window counts were taken.
- Cached per process:
  * the candidate snapshot (accounts, policies, allowed apps, maintenance windows, fee plans and
    last month's volume) and the route configs: used only while the configuration version read by
    that statement is the one they were built from (database triggers move it in the same
    transaction as any edit, migration 0004) and, for the snapshot, on the same local day;
  * the breaker-window counts: recounted every `PAYSYS_ROUTING_CACHE_SECONDS` (default 2 s) and
    whenever a breaker row changes; in between, every call logged since the last read (by call-log
    id) is added to them on each decision; only the start of each window may lie up to that
    interval further back than `window_seconds`, and a call whose row commits after greater ids
    were read is counted at the next recount;
  * the last hour's success rate and median latency per account (ranking only): recomputed every
    `PAYSYS_ROUTING_STATS_SECONDS` (default 10 s).
- `PAYSYS_ROUTING_CACHE_SECONDS = 0` turns every cache off: each decision reads everything.

The daily caps are enforced exactly by the reservation (`apps.routing.services.daily_reserve`),
whatever the read here; breaker states are read fresh on every decision.
"""

import datetime as dt
import time
from dataclasses import dataclass, field, replace
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from apps.channels.health import FAULTS, Stats, account_stats
from apps.channels.models import CallOutcome, ChannelAccount, ChannelCall
from apps.ledger.fees import monthly_volume
from apps.ledger.models import FeePlan, FeePlanKind, FeePlanOwner
from apps.routing.engine import (
    Breaker,
    BreakerConfig,
    BreakerState,
    Candidate,
    FeePlanSnapshot,
    RoutingStats,
    Strategy,
    Weights,
)
from apps.routing.models import (
    CardBin,
    CircuitBreaker,
    ConfigVersion,
    DailyCounter,
    MaintenanceWindow,
    RouteConfig,
    RoutingDecision,
    RoutingPolicy,
)

NO_CALLS_AFTER = 2**63 - 1  # a call-log id no call has: "count no calls since"
_CACHE_LIMIT = 10_000


def _cache_seconds() -> float:
    return settings.PAYSYS_ROUTING_CACHE_SECONDS


def _stats_seconds() -> float:
    return settings.PAYSYS_ROUTING_STATS_SECONDS


def local_day(now: dt.datetime) -> dt.date:
    return timezone.localdate(now)


# --- the per-process caches ------------------------------------------------------------------------


@dataclass
class _Snapshot:
    """The candidates of one (mode, method, currency) as configured at `version`, on `day`."""

    version: int | None
    day: dt.date
    candidates: list[Candidate]  # breakers closed: the breaker rows come with every decision's read
    ids: list[int]
    ids_literal: str  # the ids as a PostgreSQL array literal, the per-decision statement's parameter
    accounts: dict[int, ChannelAccount]  # as loaded at `version` (routing policy joined): read only
    with_breakers: tuple[dict[int, Breaker], list[Candidate], dict[int, Candidate]] | None = None
    by_id: dict[int, Candidate] = field(init=False, repr=False)

    def __post_init__(self):
        self.by_id = {c.account_id: c for c in self.candidates}

    def for_breakers(self, breakers: dict[int, Breaker]) -> tuple[list[Candidate], dict[int, Candidate]]:
        """The candidates with these breaker states, as a list and by id (the last answer is kept:
        breakers rarely move)."""
        if not breakers:
            return self.candidates, self.by_id
        kept = self.with_breakers
        if kept is not None and kept[0] == breakers:
            return kept[1], kept[2]
        answer = [
            replace(c, breaker=breakers[c.account_id]) if c.account_id in breakers else c for c in self.candidates
        ]
        by_id = {c.account_id: c for c in answer}
        self.with_breakers = (breakers, answer, by_id)
        return answer, by_id


@dataclass(frozen=True)
class _Counted:
    """Breaker-window counts of a snapshot's accounts, taken over calls up to `last_call_id`."""

    taken: float  # time.monotonic()
    snapshot: _Snapshot
    breakers: dict[int, Breaker]
    last_call_id: int
    stats: dict[int, Stats]


_snapshots: dict[tuple, _Snapshot] = {}
_counted: dict[tuple, _Counted] = {}
_recent: dict[tuple, tuple[float, tuple[int, ...], dict[int, Stats]]] = {}
_configs: dict[tuple, tuple[int | None, tuple[Strategy, Weights]]] = {}


def _put(cache: dict, key, value) -> None:
    if _cache_seconds() <= 0:
        return
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value


def routing_caches_clear() -> None:
    """Forgets every cached snapshot, count, statistic and route config of this process."""
    for cache in (_snapshots, _counted, _recent, _configs):
        cache.clear()


# --- the one statement of every decision -----------------------------------------------------------

_OK = str(CallOutcome.OK)
_FAULTS = [str(f) for f in FAULTS]
_SQL_FAULTS = ", ".join(f"'{f}'" for f in _FAULTS)  # code constants, not input
# At most this many call-log ids are scanned for the calls since the last read: a bounded id range
# keeps the index on the call log the plan of choice for any parameter; more calls than this since
# the last read (never at the rates routing serves) recount the breaker windows instead.
CALLS_SINCE_SPAN = 100_000

# The calls since the last read are taken by id range first (MATERIALIZED): otherwise the planner
# may combine the range with the (account, time) index, which holds every call the candidates
# ever made (seen: 1.3 ms a decision on a call log of 40,000 rows, 0.05 ms by the range alone).
_LIVE_SQL = f"""
WITH since AS MATERIALIZED (
  SELECT k.account_id, k.outcome FROM {ChannelCall._meta.db_table} k
   WHERE k.id > %(after)s::bigint AND k.id <= %(upto)s::bigint
)
SELECT 0, NULL::bigint, (SELECT version FROM {ConfigVersion._meta.db_table} WHERE id = 1),
       (SELECT coalesce(max(id), 0) FROM {ChannelCall._meta.db_table}), NULL::bigint,
       NULL::text, NULL::text, NULL::timestamptz
UNION ALL
SELECT 1, c.account_id, c.amount, c.count, NULL, NULL, NULL, NULL
  FROM {DailyCounter._meta.db_table} c
 WHERE c.day = %(day)s::date AND c.currency = %(currency)s::text AND c.account_id = ANY(%(ids)s::bigint[])
UNION ALL
SELECT 2, b.account_id, NULL, NULL, NULL, b.state, b.reason, b.changed_at
  FROM {CircuitBreaker._meta.db_table} b
 WHERE b.account_id = ANY(%(ids)s::bigint[])
UNION ALL
SELECT 3, k.account_id, count(*), count(*) FILTER (WHERE k.outcome = '{_OK}'),
       count(*) FILTER (WHERE k.outcome IN ({_SQL_FAULTS})), NULL, NULL, NULL
  FROM since k
 WHERE k.account_id = ANY(%(ids)s::bigint[])
 GROUP BY k.account_id
"""


@dataclass(frozen=True)
class _Live:
    version: int | None
    last_call_id: int
    usage: dict[int, tuple[int, int]]
    breakers: dict[int, Breaker]
    calls_since: dict[int, Stats]  # calls logged after the `after` id passed in


def _live_read(*, ids: str, day: dt.date, currency: str, after: int) -> _Live:
    """`ids`: the candidates' ids as an array literal (`{1,2,3}`), built once per snapshot."""
    upto = min(after + CALLS_SINCE_SPAN, NO_CALLS_AFTER)
    params = {"day": day, "currency": currency, "ids": ids, "after": after, "upto": upto}
    with connection.cursor() as cursor:
        cursor.execute(_LIVE_SQL, params)
        rows = cursor.fetchall()
    version, last_call_id = None, 0
    usage: dict[int, tuple[int, int]] = {}
    breakers: dict[int, Breaker] = {}
    calls_since: dict[int, Stats] = {}
    for kind, account_id, a, b, c, state, reason, changed_at in rows:
        if kind == 1:
            usage[account_id] = (a, b)
        elif kind == 2:
            breakers[account_id] = Breaker(BreakerState(state), changed_at, reason)
        elif kind == 3:
            calls_since[account_id] = Stats(calls=a, ok=b, faults=c)
        else:
            version, last_call_id = a, b
    return _Live(version, last_call_id, usage, breakers, calls_since)


# --- what a decision needs -------------------------------------------------------------------------


@dataclass(frozen=True)
class DecisionInputs:
    strategy: Strategy
    weights: Weights
    candidates: list[Candidate]
    by_id: dict[int, Candidate]  # the same candidates by account id (shared: read only)
    stats: RoutingStats
    accounts: dict[int, ChannelAccount]  # the candidates' accounts as configured (shared: read only)


def decision_inputs(*, app_id: int, livemode: bool, method: str, currency: str, now: dt.datetime) -> DecisionInputs:
    """Everything `engine.decide` needs for a payment: one statement when the caches are warm."""
    day = local_day(now)
    key = (livemode, method, currency)
    ttl = _cache_seconds()
    snapshot = _snapshots.get(key) if ttl > 0 else None
    if snapshot is None or snapshot.day != day:
        snapshot = _snapshot_load(key=key, version=_config_version(), day=day, now=now)
    counted = _counted.get(key) if ttl > 0 else None
    if counted is not None and time.monotonic() - counted.taken > ttl:
        counted = None
    after = NO_CALLS_AFTER if counted is None else counted.last_call_id
    live = _live_read(ids=snapshot.ids_literal, day=day, currency=currency, after=after)
    for _ in range(3):  # an edit committed meanwhile: rebuild from the version just read, read again
        if live.version == snapshot.version:
            break
        snapshot = _snapshot_load(key=key, version=live.version, day=day, now=now)
        live = _live_read(ids=snapshot.ids_literal, day=day, currency=currency, after=after)
    if counted is not None and live.last_call_id > after + CALLS_SINCE_SPAN:
        counted = None  # more calls since the last read than one statement scans: count afresh
    _put(_snapshots, key, snapshot)
    candidates, by_id = snapshot.for_breakers(live.breakers)
    strategy, weights = route_config_for(app_id=app_id, method=method, version=live.version)
    stats = RoutingStats(
        recent=_recent_stats(key, snapshot, now),
        breaker=_breaker_stats(key, snapshot, candidates, live, counted, now),
        usage=live.usage,
    )
    return DecisionInputs(
        strategy=strategy, weights=weights, candidates=candidates, by_id=by_id, stats=stats, accounts=snapshot.accounts
    )


def _config_version() -> int | None:
    return ConfigVersion.objects.filter(pk=1).values_list("version", flat=True).first()


def _breaker_stats(
    key: tuple, snapshot: _Snapshot, candidates: list[Candidate], live: _Live, counted: _Counted | None, now
) -> dict[int, Stats]:
    """Each breaker's window: the cached count plus every call logged since it was taken.

    The sum becomes the cached count (up to the call-log id just read), so that each decision
    reads only the calls logged since the previous one; the recount every
    `PAYSYS_ROUTING_CACHE_SECONDS` drops the calls that have left the windows meanwhile.
    """
    if counted is None or counted.snapshot is not snapshot or counted.breakers != live.breakers:
        stats = _window_counts(candidates, now, until_id=live.last_call_id)
        _put(_counted, key, _Counted(time.monotonic(), snapshot, live.breakers, live.last_call_id, stats))
        return stats
    merged = counted.stats
    if live.calls_since:
        merged = dict(merged)
        for account_id, new in live.calls_since.items():
            old = merged.get(account_id) or Stats()
            merged[account_id] = Stats(calls=old.calls + new.calls, ok=old.ok + new.ok, faults=old.faults + new.faults)
    if live.last_call_id != counted.last_call_id:
        _put(_counted, key, replace(counted, last_call_id=live.last_call_id, stats=merged))
    return merged


_WINDOW_SQL = f"""
SELECT k.account_id, count(*), count(*) FILTER (WHERE k.outcome = '{_OK}'),
       count(*) FILTER (WHERE k.outcome IN ({_SQL_FAULTS}))
  FROM unnest(%(ids)s::bigint[], %(since)s::timestamptz[]) AS w(account_id, since)
  JOIN {ChannelCall._meta.db_table} k ON k.account_id = w.account_id AND k.created_at >= w.since
 WHERE k.id <= %(until)s
 GROUP BY k.account_id
"""


def _window_counts(candidates: list[Candidate], now: dt.datetime, *, until_id: int) -> dict[int, Stats]:
    """Calls, successes and faults of each account over its breaker window (never before the
    breaker's last change), counting call-log ids up to `until_id`, in one statement."""
    if not candidates:
        return {}
    ids, since = [], []
    for c in candidates:
        start = now - dt.timedelta(seconds=c.breaker_config.window_seconds)
        if c.breaker.changed_at is not None and c.breaker.changed_at > start:
            start = c.breaker.changed_at
        ids.append(c.account_id)
        since.append(start)
    params = {"ids": ids, "since": since, "until": until_id}
    with connection.cursor() as cursor:
        cursor.execute(_WINDOW_SQL, params)
        return {row[0]: Stats(calls=row[1], ok=row[2], faults=row[3]) for row in cursor.fetchall()}


def _recent_stats(key: tuple, snapshot: _Snapshot, now: dt.datetime) -> dict[int, Stats]:
    """The last hour's calls per account (success rate, median latency): ranking inputs."""
    ids = tuple(snapshot.ids)
    kept = _recent.get(key) if _cache_seconds() > 0 else None
    if kept is not None and kept[1] == ids and time.monotonic() - kept[0] <= _stats_seconds():
        return kept[2]
    recent_seconds = settings.PAYSYS_ROUTING_RECENT_SECONDS
    stats = account_stats(ids, now - dt.timedelta(seconds=recent_seconds)) if ids else {}
    _put(_recent, key, (time.monotonic(), ids, stats))
    return stats


# --- the candidate snapshot -------------------------------------------------------------------------


def _snapshot_load(*, key: tuple, version: int | None, day: dt.date, now: dt.datetime) -> _Snapshot:
    livemode, method, currency = key
    accounts = _accounts_load(livemode=livemode, method=method, currency=currency)
    candidates = _candidates_load(accounts=accounts, currency=currency, now=now)
    ids = [c.account_id for c in candidates]
    literal = "{" + ",".join(str(i) for i in ids) + "}"
    return _Snapshot(version=version, day=day, candidates=candidates, ids=ids, ids_literal=literal, accounts=accounts)


def _snapshot(account: ChannelAccount, policy: RoutingPolicy | None, **extra) -> Candidate:
    fields = {
        "account_id": account.pk,
        "name": account.name,
        "livemode": account.livemode,
        "methods": frozenset(account.methods),
        "currencies": frozenset(account.currencies),
        "enabled": account.enabled,
        "priority": account.priority,
        "local_zone": settings.TIME_ZONE,
    }
    if policy is not None:
        daily = None
        if policy.daily_maintenance_start is not None and policy.daily_maintenance_end is not None:
            daily = (policy.daily_maintenance_start, policy.daily_maintenance_end)
        fields.update(
            weight=policy.weight,
            min_amount=policy.min_amount,
            max_amount=policy.max_amount,
            daily_amount_cap=policy.daily_amount_cap,
            daily_count_cap=policy.daily_count_cap,
            banks=frozenset(policy.banks),
            daily_maintenance=daily,
            breaker_config=BreakerConfig(
                window_seconds=policy.breaker_window_seconds,
                min_calls=policy.breaker_min_calls,
                error_rate=float(policy.breaker_error_rate),
                cooldown_seconds=policy.breaker_cooldown_seconds,
                probes=policy.breaker_probes,
            ),
        )
    fields.update(extra)
    return Candidate(**fields)


def _accounts_load(*, livemode: bool, method: str, currency: str) -> dict[int, ChannelAccount]:
    """Every account of this mode serving the method and currency (disabled ones too, so that a
    decision can say why they were not used), with its routing policy."""
    return {
        a.pk: a
        for a in ChannelAccount.objects.filter(
            livemode=livemode, methods__contains=[method], currencies__contains=[currency]
        ).select_related("routing_policy")
    }


def _candidates_load(*, accounts: dict[int, ChannelAccount], currency: str, now: dt.datetime) -> list[Candidate]:
    """The accounts as engine candidates with closed breakers."""
    ids = list(accounts)
    windows: dict[int, list] = {}
    for w in MaintenanceWindow.objects.filter(account_id__in=ids, ends_at__gt=now).order_by("starts_at"):
        windows.setdefault(w.account_id, []).append((w.starts_at, w.ends_at))
    allowed: dict[int, set[int]] = {}
    through = RoutingPolicy.allowed_apps.through
    for account_id, app_id in through.objects.filter(routingpolicy__account_id__in=ids).values_list(
        "routingpolicy__account_id", "app_id"
    ):
        allowed.setdefault(account_id, set()).add(app_id)
    plans = {
        p.owner_id: p
        for p in FeePlan.objects.filter(
            active=True,
            kind=FeePlanKind.CHANNEL,
            owner_type=FeePlanOwner.CHANNEL_ACCOUNT,
            owner_id__in=ids,
            currency=currency,
        )
    }
    candidates = []
    for account_id, account in sorted(accounts.items()):
        policy = getattr(account, "routing_policy", None)
        plan = plans.get(account_id)
        snapshot = None
        volume = 0
        if plan is not None:
            snapshot = FeePlanSnapshot(
                rate=Decimal(plan.rate),
                fixed=plan.fixed,
                tiers=tuple(plan.tiers or ()),
                minimum=plan.minimum,
                maximum=plan.maximum,
                rounding=plan.rounding,
            )
            if plan.tiers:
                volume = monthly_volume(
                    owner_type=FeePlanOwner.CHANNEL_ACCOUNT,
                    owner_id=account_id,
                    currency=currency,
                    livemode=account.livemode,
                    month_of=local_day(now),
                )
        candidates.append(
            _snapshot(
                account,
                policy,
                maintenance=tuple(windows.get(account_id, ())),
                allowed_apps=frozenset(allowed[account_id]) if account_id in allowed else None,
                fee_plan=snapshot,
                fee_volume=volume,
            )
        )
    return candidates


def route_config_for(*, app_id: int, method: str, version: int | None) -> tuple[Strategy, Weights]:
    """The app's strategy for the method, else the method's default, else priority; cached while
    the configuration version read by the decision is `version`."""
    key = (app_id, method)
    kept = _configs.get(key) if _cache_seconds() > 0 else None
    if kept is not None and kept[0] == version:
        return kept[1]
    configs = sorted(
        RouteConfig.objects.filter(Q(app_id=app_id) | Q(app__isnull=True), method=method),
        key=lambda c: c.app_id is None,
    )
    if not configs:
        answer = (Strategy.PRIORITY, Weights())
    else:
        c = configs[0]
        answer = (
            Strategy(c.strategy),
            Weights(
                priority=float(c.weight_priority),
                cost=float(c.weight_cost),
                success=float(c.weight_success),
                latency=float(c.weight_latency),
            ),
        )
    _put(_configs, key, (version, answer))
    return answer


def bin_lookup(*, digits: str) -> CardBin | None:
    """The longest BIN (8, 7 or 6 digits) that prefixes the card number."""
    prefixes = [digits[:n] for n in (8, 7, 6) if len(digits) >= n]
    rows = sorted(CardBin.objects.filter(prefix__in=prefixes), key=lambda b: -len(b.prefix))
    return rows[0] if rows else None


def decision_for_charge(*, charge_id: str) -> RoutingDecision | None:
    return RoutingDecision.objects.select_related("winner").filter(charge_id=charge_id).first()
