"""A half-open breaker lets at most `breaker_probes` charges try the account at a time; the first
probe's outcome closes or re-opens it; a probe that never ends stops blocking after its lease."""

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from apps.channels.adapters.base import ChannelRejected, ChannelUnavailable
from apps.channels.models import ChannelAccount
from apps.core.money import from_minor
from apps.routing.models import CircuitBreaker, RoutingPolicy
from apps.routing.services import route_open
from tests.support import make_merchant


def make_account(name: str, priority: int, **policy) -> ChannelAccount:
    account = ChannelAccount.objects.create(
        name=name, provider="alipay", base_url="http://127.0.0.1:9/", methods=["alipay_qr"], currencies=["CNY"],
        priority=priority,
    )  # fmt: skip
    RoutingPolicy.objects.create(account=account, breaker_cooldown_seconds=30, **policy)
    return account


def cooled_down(account) -> CircuitBreaker:
    """An open breaker whose cool-down is over: the next decision half-opens it."""
    return CircuitBreaker.objects.create(
        account=account, state="open", changed_at=timezone.now() - dt.timedelta(seconds=31), reason="faults"
    )


def open_route(app):
    return route_open(
        app=app, livemode=False, method="alipay_qr", amount=from_minor(100, "CNY"), card=None, request_id="t"
    )


@pytest.fixture
def setup(db, settings):
    settings.PAYSYS_ROUTING_CACHE_SECONDS = 0
    app = make_merchant().app
    probed, spare = make_account("Probed", 1), make_account("Spare", 2)
    cooled_down(probed)
    return app, probed, spare


def breaker(account) -> CircuitBreaker:
    return CircuitBreaker.objects.get(account=account)


def test_one_probe_at_a_time_and_its_success_closes_the_breaker(setup):
    app, probed, spare = setup
    first = open_route(app)
    assert first.next_account().pk == probed.pk
    row = breaker(probed)
    assert (row.state, row.probes) == ("half_open", 1)

    second = open_route(app)  # the probe is still out: the half-open account is skipped
    assert second.next_account().pk == spare.pk
    assert [(a["account_id"], a["outcome"], a["code"]) for a in second.attempts] == [
        (probed.pk, "skipped", "breaker_probing")
    ]

    first.attempt_succeeded()
    row = breaker(probed)
    assert (row.state, row.reason, row.probes) == ("closed", "probe succeeded", 0)
    assert open_route(app).next_account().pk == probed.pk  # closed: everyone again


def test_a_failed_probe_reopens_the_breaker_and_a_refusal_frees_the_token(setup):
    app, probed, spare = setup
    route = open_route(app)
    assert route.next_account().pk == probed.pk
    route.attempt_failed(ChannelRejected("refused", code="biz_refused"))  # the provider answered: no verdict
    row = breaker(probed)
    assert (row.state, row.probes) == ("half_open", 0)

    route = open_route(app)
    assert route.next_account().pk == probed.pk  # the token is free again
    route.attempt_failed(ChannelUnavailable("down", code="http_503"))
    assert route.next_account().pk == spare.pk  # failover
    row = breaker(probed)
    assert (row.state, row.reason, row.probes) == ("open", "probe failed", 0)
    assert open_route(app).next_account().pk == spare.pk


def test_a_probe_that_never_ends_blocks_only_until_its_lease_ends(setup):
    app, probed, spare = setup
    assert open_route(app).next_account().pk == probed.pk  # this charge's process dies mid-probe
    assert open_route(app).next_account().pk == spare.pk
    CircuitBreaker.objects.filter(account=probed).update(probe_until=timezone.now() - dt.timedelta(seconds=1))
    assert open_route(app).next_account().pk == probed.pk


@pytest.mark.parametrize("probes", [1, 2])
def test_concurrent_charges_never_exceed_the_probe_limit(transactional_db, settings, probes):
    settings.PAYSYS_ROUTING_CACHE_SECONDS = 0
    app = make_merchant().app
    probed, spare = make_account("Probed", 1, breaker_probes=probes), make_account("Spare", 2)
    cooled_down(probed)
    barrier = threading.Barrier(8)
    served = []

    def charge():
        try:
            barrier.wait()
            served.append(open_route(app).next_account().pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=charge) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(served) == sorted([probed.pk] * probes + [spare.pk] * (8 - probes))
    row = breaker(probed)
    assert (row.state, row.probes) == ("half_open", probes)
