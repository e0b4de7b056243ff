#!/usr/bin/env python3
"""Routing decision latency with 50 candidate accounts, beside a bare primary-key lookup.

    .venv/bin/python scripts/services.py -- .venv/bin/python bench/routing.py \
        [--candidates 50] [--iterations 5000] [--calls-per-account 200] [--keep]

scripts/services.py provides DATABASE_URL (embedded or real). This script then:

1. creates the database `paysys_bench_routing` on that server (dropped first unless `--keep`
   finds it ready) and migrates it;
2. sets up one app and `--candidates` sandbox Alipay accounts serving `alipay_qr` in CNY, each
   with a routing policy (limits, a daily cap, a nightly maintenance window that is not now,
   weights), a channel fee plan (a third of them tiered), today's daily counter and
   `--calls-per-account` call-log rows over the last hour (a few faults each, so no breaker
   opens); the app's strategy is `composite` (every ranking input is used);
3. measures, in this one process, sequentially, `--iterations` times each after a warm-up:
   (a) bare PK lookup: `ChannelAccount.objects.filter(pk=…).values_list("id").first()`, the
       smallest ORM round trip on the same database (a raw cursor `SELECT 1 FROM … WHERE id = %s`
       is printed too);
   (b) routing decision, warm: `apps.routing.services.route_plan` as the charge path calls it
       (amounts drawn from 0.01 to 5000.00 CNY),
       with the per-process caches warm (configuration and call-log statistics cached; today's
       usage read from the database on every decision: one query);
   (c) the engine alone: `engine.decide` on the same 50 candidates and statistics (no database);
   (d) routing decision, cold: caches off (`PAYSYS_ROUTING_CACHE_SECONDS=0`): every decision
       reads accounts, windows, allowed apps, fee plans, route config, the call-log aggregates
       (percentiles over the last hour) and the counters (fewer iterations: `--iterations/10`);
4. prints p50/p90/p99/max in milliseconds, the ratios to (a), PASS/FAIL against the target
   p99(b) < 2 ms, and writes var/bench/routing-<time>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import make_log, with_database  # noqa: E402

log = make_log("bench-routing")
BENCH_DB = "paysys_bench_routing"
TARGET_P99_MS = 2.0


def recreate_database(server_url: str, name: str, *, keep: bool) -> tuple[str, bool]:
    import psycopg

    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and keep:
            return with_database(server_url, name), True
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(server_url, name), False


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)

    def at(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 4),
        "p90_ms": round(at(0.90), 4),
        "p99_ms": round(at(0.99), 4),
        "max_ms": round(ordered[-1], 4),
    }


def timed(fn, iterations: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def set_up(candidates: int, calls_per_account: int):
    from django.utils import timezone

    from apps.channels.models import CallOperation, CallOutcome, ChannelAccount, ChannelCall
    from apps.ledger.models import FeePlan, FeePlanKind, FeePlanOwner
    from apps.merchants.services import app_create, merchant_get_or_create
    from apps.routing.models import DailyCounter, RouteConfig, RoutingPolicy

    app, _ = app_create(merchant=merchant_get_or_create(name="bench routing"), name="bench", public_key_pem="")
    RouteConfig.objects.create(app=app, method="alipay_qr", strategy="composite")
    now = timezone.now()
    rng = random.Random(5)
    for i in range(candidates):
        account = ChannelAccount.objects.create(
            name=f"bench account {i:02d}",
            provider="alipay",
            base_url="http://127.0.0.1:9/gateway.do",
            credentials={"app_id": f"2021{i:012d}"},
            methods=["alipay_qr", "alipay_wap"],
            currencies=["CNY"],
            livemode=False,
            priority=rng.randint(1, 100),
        )
        RoutingPolicy.objects.create(
            account=account,
            min_amount=1,
            max_amount=5_000_000,
            daily_amount_cap=10**12,
            daily_count_cap=10**6,
            weight=rng.randint(1, 100),
            daily_maintenance_start=dt.time(3, 0),
            daily_maintenance_end=dt.time(3, 1),
        )
        tiers = [{"from": 0, "rate": "0.006", "fixed": 0}, {"from": 10**9, "rate": "0.004", "fixed": 0}]
        FeePlan.objects.create(
            name=f"cost {i}",
            kind=FeePlanKind.CHANNEL,
            owner_type=FeePlanOwner.CHANNEL_ACCOUNT,
            owner_id=account.pk,
            currency="CNY",
            rate=f"0.00{rng.randint(2, 6)}",
            fixed=rng.randint(0, 20),
            tiers=tiers if i % 3 == 0 else [],
        )
        DailyCounter.objects.create(account=account, day=timezone.localdate(now), currency="CNY", amount=1000, count=1)
        ChannelCall.objects.bulk_create(
            [
                ChannelCall(
                    provider="alipay",
                    account=account,
                    operation=CallOperation.CREATE_PAYMENT,
                    outcome=CallOutcome.TIMEOUT if n % 50 == 0 else CallOutcome.OK,
                    http_status=200,
                    latency_ms=rng.randint(20, 400),
                    created_at=now - dt.timedelta(seconds=rng.randint(1, 3500)),
                )
                for n in range(calls_per_account)
            ]
        )
    return app


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--calls-per-account", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="reuse the bench database if it exists")
    args = parser.parse_args(argv)

    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        log("DATABASE_URL is not set: run me under scripts/services.py")
        return 2
    bench_url, kept = recreate_database(server_url, BENCH_DB, keep=args.keep)
    os.environ["DATABASE_URL"] = bench_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paysys.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone
    from moneyed import Money

    from apps.channels.models import ChannelAccount
    from apps.merchants.models import App
    from apps.routing import selectors
    from apps.routing.engine import decide
    from apps.routing.services import route_plan

    if not kept:
        log(f"migrating {BENCH_DB}")
        call_command("migrate", verbosity=0)
        log(f"setting up {args.candidates} accounts, {args.calls_per_account} calls each")
        app = set_up(args.candidates, args.calls_per_account)
    else:
        app = App.objects.get(name="bench")
    ids = list(ChannelAccount.objects.values_list("pk", flat=True))
    rng = random.Random(1)
    amounts = [Money(rng.randint(1, 500_000), "CNY") / 100 for _ in range(1000)]  # 0.01 to 5000.00
    amount = amounts[0]
    iterations, warmup = args.iterations, min(500, args.iterations)

    def pk_lookup():
        ChannelAccount.objects.filter(pk=rng.choice(ids)).values_list("id").first()

    def raw_pk():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM channels_channelaccount WHERE id = %s", [rng.choice(ids)])
            cursor.fetchone()

    def route():
        plan = route_plan(app_id=app.pk, livemode=False, method="alipay_qr", amount=rng.choice(amounts), card=None)
        assert len(plan.decision.ranking) == args.candidates, plan.decision.explain()

    settings.PAYSYS_ROUTING_CACHE_SECONDS = 3600
    results = {}
    log("(a) bare PK lookup")
    results["pk_lookup_orm"] = percentiles(timed(pk_lookup, iterations, warmup))
    results["pk_lookup_raw"] = percentiles(timed(raw_pk, iterations, warmup))
    log("(b) routing decision, warm caches")
    results["route_warm"] = percentiles(timed(route, iterations, warmup))
    log("(c) engine alone")
    now = timezone.now()
    candidates, usage = selectors.candidate_accounts(livemode=False, method="alipay_qr", currency="CNY", now=now)
    stats = selectors.routing_stats(candidates=candidates, usage=usage, now=now)
    request = route_plan(app_id=app.pk, livemode=False, method="alipay_qr", amount=amount, card=None).request
    results["engine_only"] = percentiles(timed(lambda: decide(request, candidates, stats, now), iterations, warmup))
    log("(d) routing decision, cold (no cache)")
    settings.PAYSYS_ROUTING_CACHE_SECONDS = 0
    selectors.routing_caches_clear()
    results["route_cold"] = percentiles(timed(route, max(50, iterations // 10), 20))

    base = results["pk_lookup_orm"]
    machine = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "postgres": connection.cursor().connection.info.server_version,
        "load_average": [round(x, 2) for x in os.getloadavg()],  # a shared machine inflates the tails
    }
    print(f"machine: {machine}")
    print(f"{args.candidates} candidates, {args.calls_per_account} call-log rows each, strategy composite")
    print(f"{'measurement':<36}{'n':>7}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'max ms':>10}{'p50/pk':>9}")
    labels = {
        "pk_lookup_orm": "(a) bare PK lookup (ORM)",
        "pk_lookup_raw": "(a') bare PK lookup (raw cursor)",
        "route_warm": "(b) routing decision, warm",
        "engine_only": "(c) engine alone (no DB)",
        "route_cold": "(d) routing decision, cold",
    }
    for key, label in labels.items():
        r = results[key]
        ratio = r["p50_ms"] / base["p50_ms"]
        print(
            f"{label:<36}{r['n']:>7}{r['p50_ms']:>10.3f}{r['p90_ms']:>10.3f}{r['p99_ms']:>10.3f}"
            f"{r['max_ms']:>10.3f}{ratio:>9.1f}"
        )
    verdict = "PASS" if results["route_warm"]["p99_ms"] < TARGET_P99_MS else "FAIL"
    print(f"target: p99 of (b) < {TARGET_P99_MS} ms: {verdict} ({results['route_warm']['p99_ms']:.3f} ms)")
    out = ROOT / "var" / "bench" / f"routing-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "args": vars(args), "results": results}, indent=2))
    log(f"wrote {out}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
