"""Reads that feed the engine: candidate snapshots, call-log statistics, the BIN table, configs.

Account configuration (policy, windows, allowed apps, fee plan, breaker state) and call-log
statistics are cached per process for `PAYSYS_ROUTING_CACHE_SECONDS` (default 2 s): a console
change reaches every process within that time. Today's usage is read fresh on every decision and,
in any case, the daily caps are enforced exactly by the reservation (services), not by this read.
"""

import datetime as dt
import threading
import time
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from apps.channels.health import Stats, account_stats
from apps.channels.models import ChannelAccount
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
    DailyCounter,
    MaintenanceWindow,
    RouteConfig,
    RoutingDecision,
    RoutingPolicy,
)

RECENT_SECONDS_DEFAULT = 3600


def _cache_seconds() -> float:
    return float(getattr(settings, "PAYSYS_ROUTING_CACHE_SECONDS", 2.0))


class _TtlCache:
    def __init__(self):
        self._lock = threading.Lock()
        self._items: dict = {}

    def get(self, key):
        with self._lock:
            item = self._items.get(key)
        if item is None or time.monotonic() - item[0] > _cache_seconds():
            return None
        return item[1]

    def put(self, key, value) -> None:
        if _cache_seconds() <= 0:
            return
        with self._lock:
            if len(self._items) > 10_000:
                self._items.clear()
            self._items[key] = (time.monotonic(), value)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_candidates_cache = _TtlCache()
_stats_cache = _TtlCache()
_config_cache = _TtlCache()


def routing_caches_clear() -> None:
    """Forget cached configuration and statistics (after a breaker change or a failed attempt)."""
    _candidates_cache.clear()
    _stats_cache.clear()
    _config_cache.clear()


def local_day(now: dt.datetime) -> dt.date:
    return timezone.localdate(now)


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
            ),
        )
    fields.update(extra)
    return Candidate(**fields)


def candidate_accounts(
    *, livemode: bool, method: str, currency: str, now: dt.datetime
) -> tuple[list[Candidate], dict[int, tuple[int, int]]]:
    """Every account of this mode serving the method and currency (disabled ones too, so that a
    decision can say why they were not used), as engine candidates, and today's usage of each.

    One query runs on every decision: the accounts' ids, enabled flags, priorities and breaker
    states with today's counters. When those differ from the cached snapshot (an account added,
    disabled or re-prioritised, a breaker moved in any process) the snapshot is rebuilt at once;
    other policy edits reach the cache within its lifetime.
    """
    day = local_day(now)
    with connection.cursor() as cursor:
        cursor.execute(_LIVE_SQL, [day, currency, livemode, method, currency])
        live = cursor.fetchall()
    stamp = tuple((row[0], row[1], row[2], row[3], row[4]) for row in live)
    usage = {row[0]: (row[5], row[6]) for row in live if row[5] is not None}
    key = (livemode, method, currency)
    cached = _candidates_cache.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1], usage
    candidates = _candidates_load(livemode=livemode, method=method, currency=currency, now=now)
    _candidates_cache.put(key, (stamp, candidates))
    return candidates, usage


_LIVE_SQL = (
    f"SELECT a.id, a.enabled, a.priority, b.state, b.changed_at, c.amount, c.count "
    f"FROM {ChannelAccount._meta.db_table} a "
    f"LEFT JOIN {CircuitBreaker._meta.db_table} b ON b.account_id = a.id "
    f"LEFT JOIN {DailyCounter._meta.db_table} c ON c.account_id = a.id AND c.day = %s AND c.currency = %s "
    "WHERE a.livemode = %s AND a.methods @> ARRAY[%s]::varchar[] AND a.currencies @> ARRAY[%s]::varchar[] "
    "ORDER BY a.id"
)


def _candidates_load(*, livemode: bool, method: str, currency: str, now: dt.datetime) -> list[Candidate]:
    accounts = {
        a.pk: a
        for a in ChannelAccount.objects.filter(
            livemode=livemode, methods__contains=[method], currencies__contains=[currency]
        ).select_related("routing_policy", "circuit_breaker")
    }
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
        state = getattr(account, "circuit_breaker", None)
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
                    livemode=livemode,
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
                breaker=Breaker(BreakerState(state.state), state.changed_at, state.reason) if state else Breaker(),
            )
        )
    return candidates


def routing_stats(*, candidates: list[Candidate], usage: dict[int, tuple[int, int]], now: dt.datetime) -> RoutingStats:
    """Call-log statistics per candidate (the recent window for success rate and latency; each
    breaker's window, never reaching back before the breaker's last change), cached, with today's
    usage (read by `candidate_accounts`)."""
    key = tuple((c.account_id, c.breaker.changed_at) for c in candidates)
    cached = _stats_cache.get(key)
    if cached is None:
        cached = _call_stats(candidates, now)
        _stats_cache.put(key, cached)
    recent, breaker = cached
    return RoutingStats(recent=recent, breaker=breaker, usage=usage)


def _call_stats(candidates: list[Candidate], now: dt.datetime) -> tuple[dict[int, Stats], dict[int, Stats]]:
    if not candidates:
        return {}, {}
    recent_seconds = int(getattr(settings, "PAYSYS_ROUTING_RECENT_SECONDS", RECENT_SECONDS_DEFAULT))
    recent = account_stats([c.account_id for c in candidates], now - dt.timedelta(seconds=recent_seconds))
    by_since: dict[dt.datetime, list[int]] = {}
    for c in candidates:
        since = now - dt.timedelta(seconds=c.breaker_config.window_seconds)
        if c.breaker.changed_at is not None and c.breaker.changed_at > since:
            since = c.breaker.changed_at
        by_since.setdefault(since, []).append(c.account_id)
    breaker: dict[int, Stats] = {}
    for since, ids in by_since.items():
        breaker.update(account_stats(ids, since))
    return recent, breaker


def route_config_for(*, app_id: int, method: str) -> tuple[Strategy, Weights]:
    """The app's strategy for the method, else the method's default, else priority."""
    key = (app_id, method)
    cached = _config_cache.get(key)
    if cached is not None:
        return cached
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
    _config_cache.put(key, answer)
    return answer


def bin_lookup(*, digits: str) -> CardBin | None:
    """The longest BIN (8, 7 or 6 digits) that prefixes the card number."""
    prefixes = [digits[:n] for n in (8, 7, 6) if len(digits) >= n]
    rows = sorted(CardBin.objects.filter(prefix__in=prefixes), key=lambda b: -len(b.prefix))
    return rows[0] if rows else None


def decision_for_charge(*, charge_id: str) -> RoutingDecision | None:
    return RoutingDecision.objects.select_related("winner").filter(charge_id=charge_id).first()
