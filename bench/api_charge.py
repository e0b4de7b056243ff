#!/usr/bin/env python3
"""Throughput and latency of POST /v1/charges against a trivial signed endpoint (the baseline).

    .venv/bin/python scripts/services.py -- .venv/bin/python bench/api_charge.py \
        [--duration 20] [--concurrency 16] [--repeat 3] [--gunicorn gthread:2:8 ...]

(or `make bench-api`). scripts/services.py provides DATABASE_URL and CELERY_BROKER_URL
(embedded or real); this script then:

1. creates the database `paysys_bench` on the same server anew (`--reuse-database` keeps the one
   an earlier invocation left), migrates it, creates the table `bench_ping`, and runs
   `manage.py demo_seed` against it (var/bench/demo.json);
2. starts two gunicorns with DATABASE_URL=…/paysys_bench and PAYSYS_URLCONF=bench.urls: the API
   and the provider sandbox that demo_seed's sandbox Alipay account points at;
3. runs a closed-loop load (concurrency split over client processes × threads, one
   requests.Session per thread, every request signed afresh with the demo merchant key) against
   (a) POST /v1/bench/ping — auth + signature + replay check + one INSERT + response signature —,
   (b) POST /v1/bench/relay — the ping plus one signed round trip to the sandbox gunicorn's ping,
   the least a charge can do (bench/urls.py) — and (c) POST /v1/charges (alipay_qr, 100 cny,
   unique order_no), which includes the sandbox round trip; each phase warms up first, and each
   is run --repeat times; medians are reported;
4. prints the machine, every run, the medians, the ratio charges/baseline throughput and
   PASS/FAIL against the targets (ratio >= 0.25, charge p99 < 100 ms), and whether the relay's
   p99 is under the target, writes the results to var/bench/api_charge-<time>.json, and stops
   everything (also on Ctrl-C and errors).

With several --gunicorn configs (worker_class:workers:threads) each one is measured in turn
and the best (highest median charge throughput) is reported as the result.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import multiprocessing as mp
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    CHARGES_PATH,
    PHASE_PATHS,
    PING_PATH,
    RELAY_PATH,
    Interrupted,
    cpu_by_process,
    cpu_spent,
    database_backends,
    die_with_parent,
    free_port,
    load_average,
    make_log,
    on_signal,
    process_tree,
    with_database,
)

log = make_log("bench")
PY = sys.executable
BENCH_DB = "paysys_bench"
TARGET_RATIO = 0.25
TARGET_P99_MS = 100.0
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 15.0

# The baseline's table (bench/urls.py inserts into it); no Django app, no migration.
BENCH_PING_DDL = """
CREATE TABLE IF NOT EXISTS bench_ping (
    id bigserial PRIMARY KEY,
    app_id text,
    request_id text,
    created_at timestamptz DEFAULT now()
)
"""


# --------------------------------------------------------------------------- set-up


def prepare_database(server_url: str, *, fresh: bool) -> str:
    import psycopg

    bench_url = with_database(server_url, BENCH_DB)
    with psycopg.connect(with_database(server_url, "postgres"), autocommit=True) as conn:
        if fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
            log(f"dropped database {BENCH_DB}")
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,)).fetchone():
            try:
                conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
                log(f"created database {BENCH_DB}")
            except psycopg.errors.DuplicateDatabase:
                pass
    return bench_url


def _one(url: str, sql: str):
    """Runs one autocommitted statement on `url`; its first row, if it returns any."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(sql)
        return cursor.fetchone() if cursor.description else None


def create_ping_table(bench_url: str) -> None:
    _one(bench_url, BENCH_PING_DDL)


def vacuum(bench_url: str) -> None:
    """Each run starts from a vacuumed database: the dead rows earlier runs left (every charge is
    updated once, by phase 3) are cleaned and the statistics fresh, as autovacuum keeps them in
    service. Without it a reused bench database bloats from run to run, the more so on a server
    whose autovacuum is off (this machine's)."""
    _one(bench_url, "VACUUM (ANALYZE)")


def server_version(bench_url: str) -> str:
    return _one(bench_url, "SHOW server_version")[0]


def run_step(name: str, cmd: list[str], env: dict[str, str]) -> None:
    log(f"{name}: {' '.join(cmd[1:])}")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise RuntimeError(f"{name} failed with exit code {proc.returncode}")


class Server:
    """A gunicorn in its own session (it gets exactly one signal, from here)."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], logfile: Path):
        self.name = name
        self.logfile = logfile
        self._log = logfile.open("ab")
        log(f"starting {name}: {' '.join(cmd[1:])} (log {logfile})")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent,
        )  # fmt: skip

    def wait_ready(self, url: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.proc.returncode}; see {self.logfile}")
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} did not answer {url} within {READY_TIMEOUT:.0f}s; see {self.logfile}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.terminate()
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop within {STOP_TIMEOUT:.0f}s, killing it")
                self.proc.kill()
                self.proc.wait()
            except ProcessLookupError:
                pass
        self._log.close()


def gunicorn_cmd(config: GunicornConfig, port: int, name: str) -> list[str]:
    cmd = [PY, "-m", "gunicorn", "--config", "python:paysys.gunicorn_conf", "--bind", f"127.0.0.1:{port}",
           "--name", name, "--worker-class", config.worker_class, "--workers", str(config.workers),
           "--backlog", "2048"]  # fmt: skip
    if config.worker_class == "gthread":
        cmd += ["--threads", str(config.threads)]
    return cmd


@dataclass(frozen=True)
class GunicornConfig:
    worker_class: str
    workers: int
    threads: int

    @classmethod
    def parse(cls, spec: str) -> GunicornConfig:
        parts = spec.split(":")
        try:
            worker_class, workers = parts[0], int(parts[1])
            threads = int(parts[2]) if len(parts) > 2 else 1
        except (IndexError, ValueError):
            raise argparse.ArgumentTypeError(f"expected worker_class:workers[:threads], got {spec!r}") from None
        return cls(worker_class, workers, threads)

    def __str__(self) -> str:
        if self.worker_class == "gthread":
            return f"--worker-class gthread --workers {self.workers} --threads {self.threads}"
        return f"--worker-class {self.worker_class} --workers {self.workers}"


# --------------------------------------------------------------------------- load generator


@dataclass
class Phase:
    name: str
    path: str
    warmup: float
    duration: float


def _load_private_key(pem: bytes):
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(pem, password=None)


def _client_process(worker_no: int, threads: int, api: str, demo: dict, phase: Phase, start_at: float, out) -> None:
    """One load-generator process: `threads` closed loops; puts its samples on `out`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    import requests
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    key = _load_private_key(Path(demo["merchant_private_key_path"]).read_bytes())
    auth = f"Bearer {demo['test_secret_key']}"
    app_id = demo["app_id"]
    url = api + phase.path
    measure_from = start_at + phase.warmup
    measure_to = measure_from + phase.duration
    run_tag = uuid.uuid4().hex[:8]

    def body_for(thread_no: int, n: int) -> bytes:
        if phase.path == CHARGES_PATH:
            payload = {
                "order_no": f"b{run_tag}{worker_no}x{thread_no}x{n}", "app": {"id": app_id}, "channel": "alipay_qr",
                "amount": 100, "currency": "cny", "client_ip": "127.0.0.1", "subject": "bench", "body": "bench",
            }  # fmt: skip
        else:
            payload = {"nonce": f"{run_tag}-{worker_no}-{thread_no}-{n}"}
        return json.dumps(payload, separators=(",", ":")).encode()

    results: list[dict] = [{} for _ in range(threads)]

    def loop(thread_no: int) -> None:
        session = requests.Session()
        latencies: list[float] = []
        errors: dict[str, int] = {}
        samples: list[str] = []
        warm_ok = warm_err = 0
        n = 0
        while time.monotonic() < start_at:
            time.sleep(0.001)
        while True:
            now = time.monotonic()
            if now >= measure_to:
                break
            n += 1
            body = body_for(thread_no, n)
            ts = str(int(time.time()))
            signature = key.sign(body + phase.path.encode() + ts.encode(), padding.PKCS1v15(), hashes.SHA256())
            headers = {
                "Authorization": auth,
                "Content-Type": "application/json",
                "Pingplusplus-Request-Timestamp": ts,
                "Pingplusplus-Signature": base64.b64encode(signature).decode(),
            }
            t0 = time.monotonic()
            try:
                resp = session.post(url, data=body, headers=headers, timeout=30)
                status = resp.status_code
                text = resp.text if not 200 <= status < 300 else ""
            except requests.RequestException as exc:
                status, text = 0, f"{type(exc).__name__}: {exc}"
            t1 = time.monotonic()
            ok = 200 <= status < 300
            if t0 < measure_from:
                warm_ok += ok
                warm_err += not ok
                continue
            if t1 > measure_to:
                break  # in flight at the end of the window: not counted
            if ok:
                latencies.append((t1 - t0) * 1000.0)
            else:
                errors[str(status)] = errors.get(str(status), 0) + 1
                if len(samples) < 3:
                    samples.append(f"{status} {text[:300]}")
        session.close()
        results[thread_no] = {"latencies": latencies, "errors": errors, "samples": samples,
                              "warm_ok": warm_ok, "warm_err": warm_err}  # fmt: skip

    workers = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    merged = {"latencies": [], "client_medians": [], "errors": {}, "samples": [], "warm_ok": 0, "warm_err": 0}
    for r in results:
        merged["latencies"] += r.get("latencies", [])
        if r.get("latencies"):
            merged["client_medians"].append(statistics.median(r["latencies"]))
        for k, v in r.get("errors", {}).items():
            merged["errors"][k] = merged["errors"].get(k, 0) + v
        merged["samples"] += r.get("samples", [])
        merged["warm_ok"] += r.get("warm_ok", 0)
        merged["warm_err"] += r.get("warm_err", 0)
    out.put(merged)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = max(0, min(len(sorted_values) - 1, math.ceil(q / 100.0 * len(sorted_values)) - 1))  # nearest rank
    return sorted_values[index]


@dataclass
class RunResult:
    phase: str
    requests: int
    errors: int
    throughput: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    warmup_requests: int
    warmup_errors: int
    error_samples: list[str] = field(default_factory=list)
    # The lowest and highest of the clients' own median latencies (ms). Far apart, the server
    # serves some clients' connections slower than others' (kept-alive connections spread
    # unevenly over its workers).
    client_median_range_ms: tuple[float, float] = (float("nan"), float("nan"))
    # CPU per request over the measured window, by process group (ms): where the cost lies.
    cpu_ms: dict[str, float] = field(default_factory=dict)


def _group_cpu(groups: dict[str, list]) -> dict[str, dict[int, float]]:
    return {name: cpu_by_process(members) for name, members in groups.items()}


def run_phase(api: str, demo: dict, phase: Phase, processes: int, concurrency: int, groups) -> RunResult:
    """One closed-loop run. `groups()` names the server-side processes (by group) whose CPU is
    counted over the measured window, beside the load generator's own."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    per_process = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    start_at = time.monotonic() + 1.0  # time for the processes to import requests and load the key
    procs = [
        ctx.Process(target=_client_process, args=(i, n, api, demo, phase, start_at, out), daemon=True)
        for i, n in enumerate(per_process)
        if n > 0
    ]
    try:
        for p in procs:
            p.start()
        measure_from = start_at + phase.warmup
        time.sleep(max(0.0, measure_from - time.monotonic()))
        members = {**groups(), "load generator": [psutil.Process(p.pid) for p in procs]}
        before = _group_cpu(members)
        time.sleep(max(0.0, measure_from + phase.duration - time.monotonic()))
        cpu = {name: cpu_spent(before[name], after) for name, after in _group_cpu(members).items()}
        merged = [out.get(timeout=phase.warmup + phase.duration + 120) for _ in procs]
        for p in procs:
            p.join(10)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
    latencies = sorted(x for m in merged for x in m["latencies"])
    errors = sum(sum(m["errors"].values()) for m in merged)
    samples = [s for m in merged for s in m["samples"]][:5]
    client_medians = [x for m in merged for x in m["client_medians"]]
    return RunResult(
        phase=phase.name,
        requests=len(latencies),
        errors=errors,
        throughput=len(latencies) / phase.duration,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        mean_ms=statistics.fmean(latencies) if latencies else float("nan"),
        warmup_requests=sum(m["warm_ok"] for m in merged),
        warmup_errors=sum(m["warm_err"] for m in merged),
        error_samples=samples,
        client_median_range_ms=(min(client_medians), max(client_medians)) if client_medians else (math.nan, math.nan),
        cpu_ms={name: seconds * 1000 / len(latencies) for name, seconds in cpu.items()} if latencies else {},
    )


# --------------------------------------------------------------------------- reporting


def machine_info(pg_version: str) -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        nproc = str(len(os.sched_getaffinity(0)))
    import gunicorn

    return {
        "nproc": nproc,
        "cpu_model": model,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "gunicorn": gunicorn.__version__,
        "loadavg_at_start": load_average(),
    }


def fmt_run(r: RunResult) -> str:
    return (f"{r.phase:<8} requests {r.requests:>6}  {r.throughput:8.1f} req/s  p50 {r.p50_ms:7.1f} ms  "
            f"p99 {r.p99_ms:7.1f} ms  mean {r.mean_ms:7.1f} ms  errors {r.errors}"
            f"  (warm-up {r.warmup_requests} ok / {r.warmup_errors} err)\n"
            f"         clients' own p50s {r.client_median_range_ms[0]:.1f}-{r.client_median_range_ms[1]:.1f} ms\n"
            f"         CPU per request: {_fmt_cpu(r.cpu_ms)}")  # fmt: skip


def _fmt_cpu(cpu_ms: dict[str, float]) -> str:
    parts = [f"{name} {ms:.2f} ms" for name, ms in cpu_ms.items()]
    return ", ".join([*parts, f"total {sum(cpu_ms.values()):.2f} ms"])


def summarize(runs: list[RunResult]) -> dict:
    return {
        "requests": int(statistics.median(r.requests for r in runs)),
        "throughput": statistics.median(r.throughput for r in runs),
        "p50_ms": statistics.median(r.p50_ms for r in runs),
        "p99_ms": statistics.median(r.p99_ms for r in runs),
        "errors": sum(r.errors for r in runs),
        "runs": len(runs),
        "cpu_ms": {name: statistics.median(r.cpu_ms.get(name, 0.0) for r in runs) for name in runs[0].cpu_ms},
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per run (20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds before each run (3)")
    parser.add_argument("--concurrency", type=int, default=16, help="total closed-loop clients (16)")
    parser.add_argument("--processes", type=int, default=2, help="client processes sharing them (2)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per phase; the median is reported (3)")
    parser.add_argument(
        "--gunicorn", type=GunicornConfig.parse, action="append", default=None, metavar="CLASS:WORKERS[:THREADS]",
        help="API gunicorn config, repeatable to compare several (default gthread:2:8)",
    )  # fmt: skip
    parser.add_argument("--sandbox-gunicorn", type=GunicornConfig.parse, default=GunicornConfig("gthread", 2, 8))
    parser.add_argument("--reuse-database", action="store_true",
                        help=f"keep {BENCH_DB} from an earlier invocation (default: drop and recreate it)")  # fmt: skip
    parser.add_argument("--phases", default=",".join(PHASE_PATHS), help=f"a subset of {','.join(PHASE_PATHS)} (all)")
    args = parser.parse_args(argv)
    args.phases = list(dict.fromkeys(n.strip() for n in args.phases.split(",") if n.strip()))  # once each
    unknown = set(args.phases) - set(PHASE_PATHS)
    if unknown or not args.phases:
        unknown_text = f"; unknown: {', '.join(sorted(unknown))}" if unknown else ""
        parser.error(f"--phases takes one or more of {', '.join(PHASE_PATHS)}, comma-separated{unknown_text}")
    args.gunicorn = args.gunicorn or [GunicornConfig("gthread", 2, 8)]
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        log("DATABASE_URL is not set: run me under scripts/services.py (make bench-api)")
        return 2
    var = Path(os.environ.get("PAYSYS_VAR_DIR") or ROOT / "var").resolve() / "bench"
    var.mkdir(parents=True, exist_ok=True)
    api_port, sandbox_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    sandbox = f"http://127.0.0.1:{sandbox_port}"
    servers: list[Server] = []
    try:
        bench_url = prepare_database(server_url, fresh=not args.reuse_database)
        env = dict(os.environ)
        env.update({
            "DATABASE_URL": bench_url,
            "PAYSYS_URLCONF": "bench.urls",
            "PAYSYS_PUBLIC_URL": api,
            "DJANGO_SETTINGS_MODULE": "paysys.settings",
            "CACHE_KEY_PREFIX": "paysys-bench",
            "PYTHONUNBUFFERED": "1",
            # Each server thread keeps its database connection for the whole invocation, so that
            # no backend starts or ends inside a measured window and all their CPU is counted.
            "DB_CONN_MAX_AGE": "86400",
            "PAYSYS_BENCH_PEER": sandbox,
            "PAYSYS_BENCH_DEMO": str(var / "demo.json"),
        })  # fmt: skip
        manage = [PY, str(ROOT / "manage.py")]
        run_step("migrate", [*manage, "migrate", "--noinput", "--verbosity", "0"], env)
        create_ping_table(bench_url)
        demo_path = Path(env["PAYSYS_BENCH_DEMO"])
        run_step("demo_seed", [*manage, "demo_seed", "--api-base", api, "--sandbox-base", sandbox,
                               "--out", str(demo_path)], env)  # fmt: skip
        demo = json.loads(demo_path.read_text())
        machine = machine_info(server_version(bench_url))

        sandbox_server = Server("sandbox", gunicorn_cmd(args.sandbox_gunicorn, sandbox_port, "paysys-bench-sandbox"),
                                env, var / "sandbox.log")  # fmt: skip
        servers.append(sandbox_server)
        sandbox_server.wait_ready(f"{sandbox}/sandbox/")

        phases = [Phase(n, PHASE_PATHS[n], args.warmup, args.duration) for n in args.phases]
        per_config: list[dict] = []
        for config in args.gunicorn:
            api_server = Server("api", gunicorn_cmd(config, api_port, "paysys-bench-api"), env, var / "api.log")
            servers.append(api_server)
            api_server.wait_ready(f"{api}/v1/schema/")
            log(f"API ready at {api} ({config}); sandbox at {sandbox} ({args.sandbox_gunicorn})")
            runs: dict[str, list[RunResult]] = {p.name: [] for p in phases}
            database = bench_url.rsplit("/", 1)[-1]

            def groups(api_pid=api_server.proc.pid, sandbox_pid=sandbox_server.proc.pid, database=database):
                return {
                    "api": process_tree(api_pid),
                    "sandbox": process_tree(sandbox_pid),
                    "postgres": database_backends(database),
                    "redis": [p for p in psutil.process_iter(["name"]) if p.info["name"] == "redis-server"],
                }

            for i in range(args.repeat):
                for phase in phases:
                    vacuum(bench_url)
                    result = run_phase(api, demo, phase, args.processes, args.concurrency, groups)
                    runs[phase.name].append(result)
                    print(f"[{config}] run {i + 1}/{args.repeat} {fmt_run(result)}", flush=True)
                    for sample in result.error_samples:
                        print(f"    error sample: {sample}", flush=True)
            api_server.stop()
            servers.remove(api_server)
            per_config.append({"gunicorn": str(config), "config": asdict(config),
                               "runs": {k: [asdict(r) for r in v] for k, v in runs.items()},
                               "median": {k: summarize(v) for k, v in runs.items()}})  # fmt: skip

        report(args, machine, per_config, var)
        return 0 if all(c["median"][k]["errors"] == 0 for c in per_config for k in c["median"]) else 1
    except (KeyboardInterrupt, Interrupted):
        log("interrupted, stopping")
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        for server in reversed(servers):
            server.stop()
        if servers:
            log("stopped " + ", ".join(s.name for s in servers))


def report(args, machine: dict, per_config: list[dict], var: Path) -> None:
    def charge_tp(c):
        return c["median"].get("charges", {}).get("throughput", 0.0)

    best = max(per_config, key=charge_tp)
    lines = ["", "=" * 78, "bench/api_charge.py", "machine:"]
    lines += [f"  {k:<17} {v}" for k, v in machine.items()]
    lines += [
        "  note              shared machine (2 cores): the load generator, both gunicorns, PostgreSQL",
        "                    and Redis all run on it; each phase is run --repeat times, medians shown",
        f"load:               closed loop, concurrency {args.concurrency} = {args.processes} processes x threads, "
        f"warm-up {args.warmup:g}s, {args.duration:g}s measured x {args.repeat}",
        f"sandbox gunicorn:   {args.sandbox_gunicorn}",
    ]
    for c in per_config:
        lines.append(f"API gunicorn {c['gunicorn']}:")
        for name, m in c["median"].items():
            lines.append(f"  median {name:<8} {m['throughput']:8.1f} req/s  p50 {m['p50_ms']:7.1f} ms  "
                         f"p99 {m['p99_ms']:7.1f} ms  errors {m['errors']} (over {m['runs']} runs)")  # fmt: skip
            lines.append(f"    CPU per request (medians): {_fmt_cpu(m['cpu_ms'])}")
    lines.append(f"best config: {best['gunicorn']}")
    median = best["median"]
    if "ping" in median and "charges" in median:
        ratio = median["charges"]["throughput"] / median["ping"]["throughput"] if median["ping"]["throughput"] else 0.0
        p99 = median["charges"]["p99_ms"]
        best["ratio"] = ratio
        lines += [
            f"baseline  POST {PING_PATH}: {median['ping']['throughput']:.1f} req/s, "
            f"p50 {median['ping']['p50_ms']:.1f} ms, p99 {median['ping']['p99_ms']:.1f} ms",
            f"charges   POST {CHARGES_PATH}:   {median['charges']['throughput']:.1f} req/s, "
            f"p50 {median['charges']['p50_ms']:.1f} ms, p99 {p99:.1f} ms",
            f"ratio charges/baseline throughput: {ratio:.3f}",
            f"target ratio >= {TARGET_RATIO}: {'PASS' if ratio >= TARGET_RATIO else 'FAIL'}",
            f"target charge p99 < {TARGET_P99_MS:g} ms: {'PASS' if p99 < TARGET_P99_MS else 'FAIL'}",
        ]
    if "relay" in median:
        relay = median["relay"]
        under = relay["p99_ms"] < TARGET_P99_MS
        lines += [
            f"floor     POST {RELAY_PATH}:  {relay['throughput']:.1f} req/s, p50 {relay['p50_ms']:.1f} ms, "
            f"p99 {relay['p99_ms']:.1f} ms (the ping plus one signed sandbox round trip: less than any charge)",
            f"floor p99 < {TARGET_P99_MS:g} ms: "
            + ("yes (the floor does not rule the charge p99 target out here)" if under else
               "NO (so no charge can meet the p99 target on this machine)"),
        ]  # fmt: skip
    valid = all(m["errors"] == 0 for m in median.values())
    lines.append(f"valid run (0 errors in {', '.join(median)}): {'yes' if valid else 'NO'}")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    out = var / f"api_charge-{stamp}.json"
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "machine": machine,
                               "configs": per_config, "best": best["gunicorn"]}, indent=2) + "\n")  # fmt: skip
    lines += [f"results: {out}", "=" * 78]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
