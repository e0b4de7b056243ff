#!/usr/bin/env python3
"""Where the time of POST /v1/charges goes: ~200 charge creations in-process under pyinstrument.

    .venv/bin/python scripts/services.py -- .venv/bin/python bench/profile_charge.py [-n 200]
        [--endpoint charges|ping|relay] [--cost | --cpu]

Same set-up as bench/api_charge.py (database `paysys_bench`, created anew, so not beside a run
of that benchmark; demo_seed, bench.urls), with the provider sandbox as a real gunicorn over
HTTP, as in production a provider is; the API runs in this process through Django's test Client
(full middleware, DRF authentication, request signature and replay check, response signature),
one signed request after another. Prints the wall time per charge, pyinstrument's call tree and
the top functions by inclusive and by self time, and writes the HTML profile to
var/bench/profile_<endpoint>.html.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api_charge import (  # noqa: E402
    PY,
    GunicornConfig,
    Server,
    create_ping_table,
    gunicorn_cmd,
    log,
    prepare_database,
    run_step,
)
from bench.common import (  # noqa: E402
    CHARGES_PATH,
    PHASE_PATHS,
    Interrupted,
    cpu_by_process,
    cpu_spent,
    database_backends,
    free_port,
    on_signal,
    process_tree,
)


def aggregate(root) -> tuple[dict, dict]:
    """Inclusive time (not double-counted under recursion) and self time per function."""
    inclusive: dict[str, float] = defaultdict(float)
    self_time: dict[str, float] = defaultdict(float)

    def name_of(frame) -> str:
        return f"{frame.function}  {frame.file_path_short}:{frame.line_no}"

    def walk(frame, parent_key: str, active: set[str]) -> None:
        if frame.is_synthetic:  # pyinstrument's "[self]" leaf: time spent in the parent itself
            self_time[parent_key] += frame.time
            return
        key = name_of(frame)
        self_time[key] += frame.total_self_time
        added = key not in active
        if added:
            inclusive[key] += frame.time
            active.add(key)
        for child in frame.children:
            walk(child, key, active)
        if added:
            active.discard(key)

    walk(root, "<root>", set())
    return inclusive, self_time


def cpu_cost(one, count: int, *, sandbox_pid: int, database: str) -> int:
    """CPU per request, one request at a time, by process: less sensitive to other work on a
    shared machine than throughput under load is, and it says where the cost lies."""
    groups = {
        "api (this process)": [psutil.Process()],
        "sandbox": process_tree(sandbox_pid),
        "postgres": database_backends(database),
    }
    before = {name: cpu_by_process(procs) for name, procs in groups.items()}
    wall0 = time.perf_counter()
    for n in range(count):
        one(n)
    wall = time.perf_counter() - wall0
    total = 0.0
    print(f"\n{count} requests one at a time, {wall / count * 1000:.2f} ms wall each; CPU per request:")
    for name, procs in groups.items():
        ms = cpu_spent(before[name], cpu_by_process(procs)) / count * 1000
        total += ms
        print(f"  {name:20s} {ms:6.2f} ms")
    print(f"  {'total':20s} {total:6.2f} ms")
    return 0


def cpu_profile(one, count: int, top: int) -> int:
    """This process's CPU time per request (the API side only: the sandbox and PostgreSQL run
    elsewhere), by function, with cProfile timing on process_time so waits do not count."""
    import cProfile
    import pstats

    profiler = cProfile.Profile(time.process_time)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    profiler.enable()
    for n in range(count):
        one(n)
    profiler.disable()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    print(f"\n{count} requests: {cpu / count * 1000:.2f} ms CPU and {wall / count * 1000:.2f} ms wall per request "
          "in this process (profiled)")  # fmt: skip
    stats = pstats.Stats(profiler)
    stats.dump_stats(str(ROOT / "var" / "bench" / "profile_cpu.pstats"))
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--count", type=int, default=200, help="charges to profile (200)")
    parser.add_argument("--warmup", type=int, default=20, help="unprofiled charges first (20)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--endpoint", choices=tuple(PHASE_PATHS), default="charges")
    parser.add_argument(
        "--cpu", action="store_true", help="cProfile on CPU time (process_time) instead of pyinstrument's wall clock"
    )
    parser.add_argument(
        "--cost",
        action="store_true",
        help="no profiler: CPU per request of this process, the sandbox and their PostgreSQL backends",
    )
    args = parser.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        log("DATABASE_URL is not set: run me under scripts/services.py")
        return 2
    var = Path(os.environ.get("PAYSYS_VAR_DIR") or ROOT / "var").resolve() / "bench"
    var.mkdir(parents=True, exist_ok=True)
    sandbox_port = free_port()
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    server = None
    try:
        bench_url = prepare_database(server_url, fresh=True)
        env = dict(os.environ)
        env.update({
            "DATABASE_URL": bench_url,
            "PAYSYS_URLCONF": "bench.urls",
            "PAYSYS_PUBLIC_URL": "http://127.0.0.1:8000",
            "DJANGO_SETTINGS_MODULE": "paysys.settings",
            "CACHE_KEY_PREFIX": "paysys-bench",
            "PYTHONUNBUFFERED": "1",
            "PAYSYS_BENCH_PEER": sandbox,
            "PAYSYS_BENCH_DEMO": str(var / "profile-demo.json"),
        })  # fmt: skip
        manage = [PY, str(ROOT / "manage.py")]
        run_step("migrate", [*manage, "migrate", "--noinput", "--verbosity", "0"], env)
        create_ping_table(bench_url)
        demo_path = Path(env["PAYSYS_BENCH_DEMO"])
        # Same app and keys as api_charge (copied), sandbox account re-pointed at this sandbox.
        shared = var / "demo.json"
        if shared.exists() and not demo_path.exists():
            demo_path.write_text(shared.read_text())
        run_step("demo_seed", [*manage, "demo_seed", "--sandbox-base", sandbox, "--out", str(demo_path)], env)
        demo = json.loads(demo_path.read_text())
        server = Server("sandbox", gunicorn_cmd(GunicornConfig("gthread", 2, 8), sandbox_port, "paysys-bench-sandbox"),
                        env, var / "profile-sandbox.log")  # fmt: skip
        server.wait_ready(f"{sandbox}/sandbox/")

        os.environ.update(env)
        import django

        django.setup()
        from django.test import Client
        from pyinstrument import Profiler

        from tests.support import sign_headers

        private_pem = Path(demo["merchant_private_key_path"]).read_text()
        client = Client()
        path = PHASE_PATHS[args.endpoint]
        tag = uuid.uuid4().hex[:8]

        def one(n: int) -> None:
            if path == CHARGES_PATH:
                payload = {
                    "order_no": f"p{tag}x{n}", "app": {"id": demo["app_id"]}, "channel": "alipay_qr", "amount": 100,
                    "currency": "cny", "client_ip": "127.0.0.1", "subject": "bench", "body": "bench",
                }  # fmt: skip
            else:
                payload = {"nonce": f"{tag}-{n}"}
            body = json.dumps(payload, separators=(",", ":")).encode()
            headers = {
                "Authorization": f"Bearer {demo['test_secret_key']}",
                **sign_headers(private_pem=private_pem, body=body, uri=path),
            }
            resp = client.generic("POST", path, body, content_type="application/json", headers=headers)
            if resp.status_code != 200:
                raise RuntimeError(f"{path} answered {resp.status_code}: {resp.content[:500]!r}")

        for n in range(args.warmup):
            one(-n - 1)
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            one(-1000)
        print(f"SQL statements for one POST {path}: {len(queries.captured_queries)}")
        for q in queries.captured_queries:
            print(f"  {q['time']:>6}s  {q['sql'][:150]}")
        if args.cpu:
            return cpu_profile(one, args.count, args.top)
        if args.cost:
            return cpu_cost(one, args.count, sandbox_pid=server.proc.pid, database=bench_url.rsplit("/", 1)[-1])
        profiler = Profiler(interval=0.0005)
        t0 = time.perf_counter()
        profiler.start()
        for n in range(args.count):
            one(n)
        profiler.stop()
        wall = time.perf_counter() - t0

        print(profiler.output_text(unicode=True, color=False, show_all=False))
        html = var / f"profile_{args.endpoint}.html"
        html.write_text(profiler.output_html())
        inclusive, self_time = aggregate(profiler.last_session.root_frame())
        print(f"\n{args.count} x POST {path} in-process (sandbox over HTTP): {wall:.2f}s, "
              f"{wall / args.count * 1000:.1f} ms per request (profiled)")  # fmt: skip
        print(f"\ntop {args.top} by inclusive time (ms per request, % of total):")
        for key, t in sorted(inclusive.items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"  {t / args.count * 1000:7.2f} ms {t / wall * 100:5.1f}%  {key}")
        print(f"\ntop {args.top} by self time (ms per request, % of total):")
        for key, t in sorted(self_time.items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"  {t / args.count * 1000:7.2f} ms {t / wall * 100:5.1f}%  {key}")
        print(f"\nHTML profile: {html}")
        return 0
    except (KeyboardInterrupt, Interrupted):
        log("interrupted, stopping")
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if server is not None:
            server.stop()
            log("stopped sandbox")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
