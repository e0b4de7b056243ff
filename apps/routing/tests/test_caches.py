"""The per-process caches of apps.routing.selectors: whatever their lifetime, the very next decision
sees every edit, every breaker move, today's usage and every call logged since the counts.

The caches are made to live an hour here, so that only their invalidation can explain a change.
"""

import datetime as dt

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.channels.calllog import channel_call_record
from apps.channels.models import CallOperation, CallOutcome, ChannelAccount
from apps.core.money import from_minor
from apps.ledger.models import FeePlan, FeePlanKind, FeePlanOwner
from apps.routing import selectors
from apps.routing.models import CircuitBreaker, DailyCounter, MaintenanceWindow, RouteConfig, RoutingPolicy
from apps.routing.services import route_plan
from tests.support import make_merchant


@pytest.fixture
def long_caches(settings):
    settings.PAYSYS_ROUTING_CACHE_SECONDS = 3600
    settings.PAYSYS_ROUTING_STATS_SECONDS = 3600
    selectors.routing_caches_clear()
    yield settings
    selectors.routing_caches_clear()


def make_account(name: str, priority: int, **policy) -> ChannelAccount:
    account = ChannelAccount.objects.create(
        name=name, provider="alipay", base_url="http://127.0.0.1:9/", methods=["alipay_qr"], currencies=["CNY"],
        priority=priority,
    )  # fmt: skip
    RoutingPolicy.objects.create(account=account, **policy)
    return account


def make_pair():
    app = make_merchant().app
    return app, make_account("First", 1, breaker_min_calls=3), make_account("Second", 2)


@pytest.fixture
def pair(db, long_caches):
    return make_pair()


@pytest.fixture
def committed_pair(transactional_db, long_caches):
    """The call log writes through its own connection inside a transaction: it must see the accounts."""
    return make_pair()


def plan(app, amount: int = 100):
    return route_plan(app_id=app.pk, livemode=False, method="alipay_qr", amount=from_minor(amount, "CNY"), card=None)


def removed(p, account) -> str | None:
    a = p.decision.assessment(account.pk)
    return str(a.removed) if a.removed else None


def test_a_warm_decision_is_one_statement(pair, django_assert_num_queries):
    app, first, _ = pair
    plan(app)  # builds the caches (and prepares the statement on this connection)
    with django_assert_num_queries(1):
        assert plan(app).decision.winner == first.pk


def test_every_configuration_edit_reaches_the_next_decision(pair):
    app, first, second = pair
    assert plan(app).decision.ranking == (first.pk, second.pk)

    RoutingPolicy.objects.filter(account=first).update(max_amount=50)
    assert removed(plan(app), first) == "above_maximum"
    RoutingPolicy.objects.filter(account=first).update(max_amount=None)
    assert plan(app).decision.winner == first.pk

    now = timezone.now()
    window = MaintenanceWindow.objects.create(account=first, starts_at=now, ends_at=now + dt.timedelta(hours=1))
    assert removed(plan(app), first) == "maintenance"
    window.delete()
    assert plan(app).decision.winner == first.pk

    ChannelAccount.objects.filter(pk=first.pk).update(enabled=False)
    assert removed(plan(app), first) == "disabled"
    ChannelAccount.objects.filter(pk=first.pk).update(enabled=True, priority=3)
    assert plan(app).decision.ranking == (second.pk, first.pk)

    other = make_merchant("Other").app
    first.routing_policy.allowed_apps.add(other)
    assert removed(plan(app), first) == "app_not_allowed"
    first.routing_policy.allowed_apps.clear()

    config = RouteConfig.objects.create(app=app, method="alipay_qr", strategy="lowest_cost")
    for account, rate in [(first, "0.002"), (second, "0.006")]:
        FeePlan.objects.create(
            name=account.name, kind=FeePlanKind.CHANNEL, owner_type=FeePlanOwner.CHANNEL_ACCOUNT,
            owner_id=account.pk, currency="CNY", rate=rate,
        )  # fmt: skip
    assert plan(app, 10_000).decision.ranking == (first.pk, second.pk)  # cheapest first, priority aside
    FeePlan.objects.filter(owner_id=first.pk).update(rate="0.009")
    decided = plan(app, 10_000)
    assert decided.decision.ranking == (second.pk, first.pk)
    assert decided.decision.assessment(first.pk).cost == 90
    config.delete()
    assert plan(app).decision.ranking == (second.pk, first.pk)  # back to priority

    newcomer = make_account("Newcomer", 0)
    assert plan(app).decision.winner == newcomer.pk


def test_breaker_rows_and_todays_usage_are_read_on_every_decision(pair):
    app, first, _ = pair
    RoutingPolicy.objects.filter(account=first).update(daily_amount_cap=500)
    assert plan(app).decision.winner == first.pk

    CircuitBreaker.objects.create(account=first, state="open", changed_at=timezone.now(), reason="by hand")
    decided = plan(app)
    assert (removed(decided, first), decided.decision.assessment(first.pk).detail) == ("circuit_open", "by hand")
    CircuitBreaker.objects.filter(account=first).update(state="closed")
    assert plan(app).decision.winner == first.pk

    DailyCounter.objects.create(account=first, day=timezone.localdate(), currency="CNY", amount=450, count=3)
    assert removed(plan(app), first) == "daily_amount_cap"
    assert plan(app, 50).decision.winner == first.pk  # 450 + 50 reaches the cap exactly


def log_calls(account, outcome: str, n: int) -> None:
    for _ in range(n):
        channel_call_record(
            provider="alipay", account_id=account.pk, operation=CallOperation.CREATE_PAYMENT, outcome=outcome,
            http_status=None, result_code="", latency_ms=5, request_id="",
        )  # fmt: skip


def test_calls_logged_after_the_counts_move_the_breaker_on_the_next_decision(committed_pair):
    app, first, _ = committed_pair  # first: opens at 50 % faults over at least 3 calls
    assert plan(app).decision.winner == first.pk  # counts cached: no calls

    log_calls(first, CallOutcome.UNAVAILABLE, 2)
    assert plan(app).decision.winner == first.pk  # 2 faults in 2 calls: fewer than 3 calls

    log_calls(first, CallOutcome.OK, 1)  # a success makes 3 calls: 2 faults of 3 opens the breaker
    decided = plan(app)
    assert removed(decided, first) == "circuit_open"
    assert decided.decision.breaker_changes[first.pk].reason == "2 faults in 3 calls"


def test_the_live_statement_is_prepared_on_the_connection(transactional_db, long_caches):
    """psycopg prepares a statement after `prepare_threshold` runs on a connection (settings)."""
    app = make_merchant().app
    first = make_account("First", 1)
    threshold = (
        settings.DATABASES["default"].get("OPTIONS", {}).get("prepare_threshold")
    )  # None: DB_PREPARE_THRESHOLD=off
    runs = (threshold or 0) + 2
    for _ in range(runs):
        assert plan(app).decision.winner == first.pk
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ["%routing_dailycounter%"]
        )
        assert cursor.fetchone()[0] == (0 if threshold is None else 1)
