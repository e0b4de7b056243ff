#!/usr/bin/env python3
"""Webhook delivery throughput (Celery, 4 processes) against one process of bare signed POSTs.

    .venv/bin/python scripts/services.py -- .venv/bin/python bench/webhooks.py \
        [--events 2000] [--repeat 3] [--concurrency 4] [--receivers 2] [--fresh] [--profile 300]

(or `make bench-webhooks`). scripts/services.py provides DATABASE_URL and CELERY_BROKER_URL
(embedded or real); this script then:

1. creates the database `paysys_bench_webhooks` on that server (if missing; `--fresh` drops it
   first) and migrates it; uses its own Redis db (`--redis-db`, default 14, on the broker's
   server) and its own queue (`CELERY_QUEUE=paysys-bench-webhooks`), so it never consumes or
   purges anyone else's tasks;
2. starts the receiver: `--receivers` processes of a minimal asyncio HTTP/1.1 server (keep-alive,
   SO_REUSEPORT) answering 200 to every POST and counting requests per path, plus the event ids
   it saw (to prove each delivery arrived exactly once);
3. per repeat:
   a. creates an app with one webhook endpoint at the receiver, and --events events with
      `event_create` (one transaction each, as the outbox is used), with no worker running;
      then `celery purge` of the bench queue drops the sends their on_commit enqueued;
   b. baseline: the same number of POSTs of the same bodies (the events' own bytes), each signed
      afresh with the platform key, same headers, sequentially from this one process with one
      `requests.Session`;
   c. webhooks: enqueues `webhook_delivery_send` for every delivery (worker still stopped), then
      starts `celery worker --concurrency 4 --prefetch-multiplier 1 -Q paysys-bench-webhooks`
      and polls the database until all are delivered; the rate is taken from the first to the
      last `delivered_at` (so worker start-up and enqueueing are not counted);
   d. verifies: receiver count == deliveries, every event id received exactly once, every row
      `delivered` with 1 attempt; stops the worker;
4. prints the machine, every run, the medians, the ratio webhooks/baseline and PASS/FAIL against
   the target (ratio >= 0.5), and writes var/bench/webhooks-<time>.json.

`--profile N` instead runs N attempts inline (`webhook_delivery_attempt` in this process, no
Celery) under pyinstrument and prints where the time goes (var/bench/webhooks-profile.txt).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    Interrupted,
    die_with_parent,
    free_port,
    load_average,
    make_log,
    on_signal,
    with_database,
)

log = make_log("bench")
PY = sys.executable
BENCH_DB = "paysys_bench_webhooks"
QUEUE = "paysys-bench-webhooks"
TARGET_RATIO = 0.5
HOOK_PATH = "/hook"
BASELINE_PATH = "/baseline"
STOP_TIMEOUT = 20.0
STALL_TIMEOUT = 60.0  # no new delivery for this long: the run failed

sys.path.insert(0, str(ROOT))


def redis_url_for(broker_url: str, db: int) -> str:
    if not broker_url.startswith("redis"):
        raise SystemExit(f"CELERY_BROKER_URL must be Redis for this benchmark, got {broker_url.split(':')[0]}")
    return urlunsplit(urlsplit(broker_url)._replace(path=f"/{db}"))


# --------------------------------------------------------------------------- receiver

# Counters in shared memory: slot [process * 2 + kind], kind 0 = webhook, 1 = baseline.
_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
_OK_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nok"
_BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def _receiver_process(no: int, port: int, counters, ids_dir: str, ready) -> None:
    """One receiver process: asyncio, keep-alive, counts POSTs; SIGUSR1 dumps the event ids seen."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.split(b"\r\n")
                try:
                    method, path, _version = lines[0].split(b" ", 2)
                except ValueError:
                    writer.write(_BAD)
                    return
                length = 0
                close = False
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value.strip())
                    elif name == b"connection" and value.strip().lower() == b"close":
                        close = True
                body = await reader.readexactly(length) if length else b""
                if method == b"POST":
                    kind = 0 if path.startswith(HOOK_PATH.encode()) else 1
                    counters[no * 2 + kind] += 1
                    if kind == 0:
                        # The body starts with {"id":"evt_…" (wire order): keep the id.
                        end = body.find(b'"', 7)
                        seen.append(body[7:end])
                writer.write(_OK_CLOSE if close else _OK)
                if close:
                    await writer.drain()
                    return
        except Exception:  # a broken client must not stop the receiver
            return
        finally:
            writer.close()

    def dump() -> None:
        Path(ids_dir, f"{no}.ids").write_bytes(b"\n".join(seen))
        seen.clear()
        Path(ids_dir, f"{no}.done").touch()

    async def main() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        server = await asyncio.start_server(handle, sock=sock, backlog=2048)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, dump)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        ready.set()
        async with server:
            await stop.wait()

    asyncio.run(main())


class Receiver:
    def __init__(self, processes: int, ids_dir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ids_dir = ids_dir
        ids_dir.mkdir(parents=True, exist_ok=True)
        ctx = mp.get_context("fork")
        self.counters = ctx.Array("q", processes * 2, lock=False)  # each process writes its own slots
        self.procs = []
        for no in range(processes):
            ready = ctx.Event()
            proc = ctx.Process(target=_receiver_process, args=(no, self.port, self.counters, str(ids_dir), ready),
                               daemon=True)  # fmt: skip
            proc.start()
            if not ready.wait(30):
                raise RuntimeError("receiver did not start")
            self.procs.append(proc)
        log(f"receiver: {processes} processes on {self.url}")

    def count(self, kind: int) -> int:
        return sum(self.counters[i] for i in range(kind, len(self.counters), 2))

    def take_ids(self) -> list[str]:
        """The webhook event ids received since the last call (from every process)."""
        for f in self.ids_dir.glob("*.done"):
            f.unlink()
        for proc in self.procs:
            os.kill(proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 30
        while len(list(self.ids_dir.glob("*.done"))) < len(self.procs):
            if time.monotonic() > deadline:
                raise RuntimeError("receiver did not dump its ids")
            time.sleep(0.05)
        ids: list[str] = []
        for no in range(len(self.procs)):
            data = Path(self.ids_dir, f"{no}.ids").read_bytes()
            ids += [x.decode() for x in data.split(b"\n") if x]
        return ids

    def stop(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()


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


def set_synchronous_commit(bench_url: str, value: str | None) -> None:
    """What-if only (--synchronous-commit off): the setting for new sessions of the bench database."""
    import psycopg

    with psycopg.connect(bench_url, autocommit=True) as conn:
        if value is None:
            conn.execute(f'ALTER DATABASE "{BENCH_DB}" RESET synchronous_commit')
        else:
            conn.execute(f'ALTER DATABASE "{BENCH_DB}" SET synchronous_commit = {value}')
        log(f"synchronous_commit for new sessions of {BENCH_DB}: {value or 'server default'}")


def run_step(name: str, cmd: list[str], env: dict[str, str]) -> None:
    log(f"{name}: {' '.join(cmd[1:])}")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise RuntimeError(f"{name} failed with exit code {proc.returncode}")


def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()


def data_object(n: int, tag: str) -> dict:
    """A Ping++ charge as a charge.succeeded event carries it (~1 KB of JSON)."""
    now = int(time.time())
    return {
        "id": f"ch_{tag}{n:012d}", "object": "charge", "created": now, "livemode": False, "paid": True,
        "refunded": False, "reversed": False, "app": "app_bench", "channel": "alipay_qr",
        "order_no": f"bench{tag}{n:08d}", "client_ip": "127.0.0.1", "amount": 100, "amount_settle": 100,
        "currency": "cny", "subject": "bench subject", "body": "bench body", "extra": {},
        "time_paid": now, "time_expire": now + 86400, "time_settle": None,
        "transaction_no": f"2026{n:020d}", "refunds": {"object": "list", "url": f"/v1/charges/ch_{tag}{n:012d}/refunds",
                                                     "has_more": False, "data": []},
        "amount_refunded": 0, "failure_code": None, "failure_msg": None,
        "metadata": {"cart": f"{n}", "customer": "c_bench"},
        "credential": {"object": "credential", "alipay_qr": f"https://qr.alipay.com/bax{n:020d}"},
        "description": "paysys webhook benchmark " + "x" * 200,
    }  # fmt: skip


def create_events(count: int, receiver_url: str, tag: str) -> tuple[int, list[int]]:
    """An app with one endpoint and `count` events (one transaction each); returns (app pk, delivery ids)."""
    from django.db import transaction

    from apps.events.models import WebhookDelivery
    from apps.events.services import event_create
    from apps.merchants.models import App, Merchant, WebhookEndpoint

    merchant, _ = Merchant.objects.get_or_create(name="bench-webhooks")
    app = App.objects.create(merchant=merchant, name=f"bench-webhooks-{tag}")
    WebhookEndpoint.objects.create(app=app, url=f"{receiver_url}{HOOK_PATH}/{tag}")
    t0 = time.monotonic()
    for n in range(count):
        with transaction.atomic():
            event_create(app=app, type="charge.succeeded", livemode=False, data_object=data_object(n, tag),
                         request_id=f"bench-{tag}-{n}")  # fmt: skip
    log(f"created {count} events in {time.monotonic() - t0:.1f}s")
    ids = list(WebhookDelivery.objects.filter(event__app=app).order_by("pk").values_list("pk", flat=True))
    if len(ids) != count:
        raise RuntimeError(f"expected {count} deliveries, found {len(ids)}")
    return app.pk, ids


def queue_length(redis_url: str) -> int:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.llen(QUEUE))
    finally:
        client.close()


def purge(env: dict[str, str], redis_url: str) -> None:
    before = queue_length(redis_url)
    run_step("purge", [PY, "-m", "celery", "-A", "paysys", "purge", "-f", "-Q", QUEUE], env)
    after = queue_length(redis_url)
    log(f"purged queue {QUEUE}: {before} -> {after} messages")
    if after:
        raise RuntimeError(f"queue {QUEUE} still holds {after} messages after purge")


# --------------------------------------------------------------------------- phases


@dataclass
class Run:
    deliveries: int
    baseline_rate: float
    baseline_seconds: float
    webhook_rate: float
    webhook_seconds: float
    webhook_wall_seconds: float  # from worker start to the last delivery (start-up included)
    ratio: float
    received: int
    distinct_received: int
    delivered_rows: int
    single_attempt_rows: int
    verified: bool


def run_baseline(receiver: Receiver, app_pk: int, tag: str) -> tuple[int, float]:
    """Sequential signed POSTs of the same event bodies from this process with one Session."""
    import requests

    from apps.core.services import platform_sign
    from apps.events.models import Event
    from apps.events.services import USER_AGENT

    rows = Event.objects.filter(app_id=app_pk).order_by("pk").values_list("body", "request_id")
    bodies = [(body.encode(), request_id) for body, request_id in rows]
    url = f"{receiver.url}{BASELINE_PATH}/{tag}"
    platform_sign(b"warm")  # loads the key (cached per process, as in the worker)
    before = receiver.count(1)
    session = requests.Session()
    errors = 0
    t0 = time.perf_counter()
    for body, request_id in bodies:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "X-Pingplusplus-Signature": platform_sign(body),
            "X-Request-Id": request_id,
        }
        with session.post(url, data=body, headers=headers, timeout=10, allow_redirects=False, stream=True) as resp:
            errors += not 200 <= resp.status_code < 300
    elapsed = time.perf_counter() - t0
    session.close()
    received = receiver.count(1) - before
    if errors or received != len(bodies):
        raise RuntimeError(f"baseline: {errors} errors, receiver counted {received} of {len(bodies)}")
    return len(bodies), elapsed


class Worker:
    def __init__(self, env: dict[str, str], concurrency: int, logfile: Path):
        cmd = [PY, "-m", "celery", "-A", "paysys", "worker", "--loglevel", "INFO", "--concurrency", str(concurrency),
               "--prefetch-multiplier", "1", "-Q", QUEUE, "-n", f"bench-webhooks-{os.getpid()}@%h",
               "--without-gossip", "--without-mingle", "--without-heartbeat"]  # fmt: skip
        self.logfile = logfile
        self._log = logfile.open("ab")
        log(f"starting worker: {' '.join(cmd[1:])} (log {logfile})")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent,
        )  # fmt: skip

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.terminate()  # warm shutdown
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log(f"worker did not stop within {STOP_TIMEOUT:.0f}s, killing its process group")
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        self._log.close()


def run_webhooks(env: dict[str, str], args, receiver: Receiver, app_pk: int, delivery_ids: list[int],
                 logfile: Path) -> tuple[float, float]:  # fmt: skip
    """Enqueues every send, starts the worker, waits for all delivered; (span first→last, wall)."""
    from django.db import connection
    from django.db.models import Max, Min

    from apps.events.models import WebhookDelivery, WebhookDeliveryStatus
    from apps.events.services import SEND_BATCH_SIZE
    from apps.events.tasks import webhook_deliveries_drain, webhook_deliveries_send

    t0 = time.monotonic()
    if args.mode == "batch":  # as the sweep hands out a backlog: SEND_BATCH_SIZE deliveries per task
        for start in range(0, len(delivery_ids), SEND_BATCH_SIZE):
            webhook_deliveries_send.delay(delivery_ids[start : start + SEND_BATCH_SIZE])
    else:  # as event_create enqueues on commit: one drain task per event
        for _ in delivery_ids:
            webhook_deliveries_drain.delay()
    queued = queue_length(env["CELERY_BROKER_URL"])
    log(f"enqueued {len(delivery_ids)} sends in {time.monotonic() - t0:.1f}s (queue length {queued})")
    rows = WebhookDelivery.objects.filter(event__app_id=app_pk)
    worker = Worker(env, args.concurrency, logfile)
    try:
        start = time.monotonic()
        last_count, last_progress = -1, time.monotonic()
        while True:
            done = rows.filter(status=WebhookDeliveryStatus.DELIVERED).count()
            if done >= len(delivery_ids):
                break
            now = time.monotonic()
            if done != last_count:
                last_count, last_progress = done, now
            elif now - last_progress > STALL_TIMEOUT:
                raise RuntimeError(f"no delivery for {STALL_TIMEOUT:.0f}s ({done}/{len(delivery_ids)} delivered); "
                                   f"see {logfile}")  # fmt: skip
            if not worker.alive():
                raise RuntimeError(f"worker exited with {worker.proc.returncode}; see {logfile}")
            time.sleep(0.2)
        wall = time.monotonic() - start
    finally:
        worker.stop()
    connection.close()
    span = rows.aggregate(first=Min("delivered_at"), last=Max("delivered_at"))
    return (span["last"] - span["first"]).total_seconds(), wall


def verify(receiver: Receiver, app_pk: int, count: int, received: int) -> tuple[int, int, int, bool]:
    from apps.events.models import Event, WebhookDelivery, WebhookDeliveryStatus

    ids = receiver.take_ids()
    expected = set(Event.objects.filter(app_id=app_pk).values_list("public_id", flat=True))
    rows = WebhookDelivery.objects.filter(event__app_id=app_pk)
    delivered = rows.filter(status=WebhookDeliveryStatus.DELIVERED, last_status_code=200).count()
    single = rows.filter(status=WebhookDeliveryStatus.DELIVERED, attempts=1).count()
    ok = received == count == len(ids) and set(ids) == expected and delivered == count and single == count
    if not ok:
        log(f"VERIFY FAILED: received {received} (ids {len(ids)}, distinct {len(set(ids))}, "
            f"expected {len(expected)}), delivered {delivered}, single-attempt {single}, of {count}")  # fmt: skip
    return len(set(ids)), delivered, single, ok


# --------------------------------------------------------------------------- profile


def profile(args, env: dict[str, str], receiver: Receiver, var: Path) -> None:
    import logging

    from pyinstrument import Profiler

    from apps.events.services import webhook_delivery_attempt

    logging.getLogger("apps.events").setLevel(logging.WARNING)  # one INFO line per attempt: not on stdout

    tag = f"p{int(time.time())}"
    _app_pk, ids = create_events(args.profile, receiver.url, tag)
    purge(env, env["CELERY_BROKER_URL"])
    webhook_delivery_attempt(delivery_id=ids[0])  # warm: key, connections
    profiler = Profiler(interval=0.0005)
    t0 = time.perf_counter()
    profiler.start()
    for delivery_id in ids[1:]:
        webhook_delivery_attempt(delivery_id=delivery_id)
    profiler.stop()
    elapsed = time.perf_counter() - t0
    text = profiler.output_text(unicode=True, color=False, show_all=False)
    out = var / "webhooks-profile.txt"
    out.write_text(text)
    print(text)
    print(f"inline webhook_delivery_attempt x {len(ids) - 1}: {elapsed:.2f}s = {(len(ids) - 1) / elapsed:.1f}/s "
          f"(under the profiler); written to {out}", flush=True)  # fmt: skip
    post_costs(receiver, ids)


def post_costs(receiver: Receiver, delivery_ids: list[int]) -> None:
    """Per-request cost of the pieces, no database: signing, the service's POST, a Session POST."""
    import requests

    from apps.core.services import platform_sign
    from apps.events.models import WebhookDelivery
    from apps.events.services import USER_AGENT, _webhook_post

    rows = WebhookDelivery.objects.filter(pk__in=delivery_ids).select_related("event").order_by("pk")
    bodies = [(d.event.body.encode(), d.request_id) for d in rows]
    url = f"{receiver.url}{BASELINE_PATH}/costs"

    def timed(label: str, fn) -> None:
        t0 = time.perf_counter()
        for body, request_id in bodies:
            fn(body, request_id)
        per = (time.perf_counter() - t0) / len(bodies) * 1000
        print(f"  {label:<58} {per:6.2f} ms/request", flush=True)

    session = requests.Session()

    def session_post(body: bytes, request_id: str) -> None:
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
                   "X-Pingplusplus-Signature": platform_sign(body), "X-Request-Id": request_id}  # fmt: skip
        with session.post(url, data=body, headers=headers, timeout=10, allow_redirects=False, stream=True):
            pass

    print(f"per-request costs over {len(bodies)} bodies (no database):", flush=True)
    timed("platform_sign (RSA-2048 PKCS#1 v1.5)", lambda body, _r: platform_sign(body))
    timed("services._webhook_post (requests.post, new connection)", lambda body, r: _webhook_post(url=url, body=body,
          request_id=r))  # fmt: skip
    timed("requests.Session().post, keep-alive (the baseline)", session_post)
    session.close()


# --------------------------------------------------------------------------- reporting


def machine_info(bench_url: str) -> dict:
    import celery
    import psycopg

    with psycopg.connect(bench_url, autocommit=True) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
        sync_commit = conn.execute("SHOW synchronous_commit").fetchone()[0]
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = "unknown"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
            break
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        nproc = str(len(os.sched_getaffinity(0)))
    return {
        "nproc": nproc,
        "cpu_model": model,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "synchronous_commit": sync_commit,
        "celery": celery.__version__,
        "loadavg_at_start": load_average(),
    }


def fmt_run(i: int, n: int, r: Run) -> str:
    return (f"run {i}/{n}: baseline {r.baseline_rate:7.1f}/s ({r.baseline_seconds:.2f}s)  "
            f"webhooks {r.webhook_rate:7.1f}/s ({r.webhook_seconds:.2f}s first->last, {r.webhook_wall_seconds:.2f}s "
            f"from worker start)  ratio {r.ratio:.3f}  received {r.received}/{r.deliveries} "
            f"verified {'yes' if r.verified else 'NO'}")  # fmt: skip


def report(args, machine: dict, runs: list[Run], var: Path) -> bool:
    med_base = statistics.median(r.baseline_rate for r in runs)
    med_hook = statistics.median(r.webhook_rate for r in runs)
    med_ratio = statistics.median(r.ratio for r in runs)
    ratio = med_hook / med_base if med_base else 0.0
    valid = all(r.verified for r in runs)
    machine["loadavg_at_end"] = load_average()
    lines = ["", "=" * 78, "bench/webhooks.py", "machine:"]
    lines += [f"  {k:<17} {v}" for k, v in machine.items()]
    lines += [
        f"setup:             {args.events} events x 1 endpoint per run, receiver {args.receivers} processes (asyncio),",
        f"                   worker --concurrency {args.concurrency} --prefetch-multiplier 1 -Q {QUEUE}, "
        f"{args.repeat} runs",
    ]
    lines += [fmt_run(i + 1, len(runs), r) for i, r in enumerate(runs)]
    lines += [
        f"median baseline (1 process, requests.Session, sequential): {med_base:.1f} POST/s",
        f"median webhooks (celery, {args.concurrency} processes):               {med_hook:.1f} deliveries/s",
        f"ratio of medians webhooks/baseline: {ratio:.3f}   (median of per-run ratios {med_ratio:.3f})",
        f"target ratio >= {TARGET_RATIO}: {'PASS' if ratio >= TARGET_RATIO else 'FAIL'}",
        f"valid run (every delivery received exactly once, all rows delivered): {'yes' if valid else 'NO'}",
    ]
    stamp = time.strftime("%Y%m%dT%H%M%S")
    out = var / f"webhooks-{stamp}.json"
    out.write_text(json.dumps({"args": vars(args), "machine": machine, "runs": [asdict(r) for r in runs],
                               "median": {"baseline_rate": med_base, "webhook_rate": med_hook, "ratio": ratio},
                               "pass": ratio >= TARGET_RATIO, "valid": valid}, indent=2) + "\n")  # fmt: skip
    lines += [f"results: {out}", "=" * 78]
    print("\n".join(lines), flush=True)
    return valid


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000, help="events (= deliveries) per run (2000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; medians are reported (3)")
    parser.add_argument(
        "--mode",
        choices=["batch", "single"],
        default="batch",
        help="batch: sweep-sized batches per task (a backlog); single: one drain task per event (as on commit)",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="celery worker processes (4)")
    parser.add_argument("--receivers", type=int, default=2, help="receiver processes (2)")
    parser.add_argument("--redis-db", type=int, default=14, help="Redis db for the bench broker and cache (14)")
    parser.add_argument(
        "--synchronous-commit", choices=("on", "off"), default=None,
        help="what-if: set synchronous_commit for the bench database (default: the server's setting)",
    )  # fmt: skip
    parser.add_argument("--fresh", action="store_true", help=f"drop and recreate {BENCH_DB} first")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="instead: profile N inline webhook_delivery_attempt calls with pyinstrument")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    server_url = os.environ.get("DATABASE_URL")
    broker_url = os.environ.get("CELERY_BROKER_URL")
    if not server_url or not broker_url:
        log("DATABASE_URL / CELERY_BROKER_URL are not set: run me under scripts/services.py (make bench-webhooks)")
        return 2
    var = Path(os.environ.get("PAYSYS_VAR_DIR") or ROOT / "var").resolve() / "bench"
    var.mkdir(parents=True, exist_ok=True)
    receiver: Receiver | None = None
    try:
        bench_url = prepare_database(server_url, fresh=args.fresh)
        redis_url = redis_url_for(broker_url, args.redis_db)
        env = dict(os.environ)
        env.update({
            "DATABASE_URL": bench_url,
            "CELERY_BROKER_URL": redis_url,
            "REDIS_URL": redis_url,
            "CELERY_QUEUE": QUEUE,
            "CACHE_KEY_PREFIX": "paysys-bench-webhooks",
            "DJANGO_SETTINGS_MODULE": "paysys.settings",
            "PYTHONUNBUFFERED": "1",
        })  # fmt: skip
        log(f"database {BENCH_DB}, broker {urlsplit(redis_url).hostname}:{urlsplit(redis_url).port}/{args.redis_db}, "
            f"queue {QUEUE}")  # fmt: skip
        run_step("migrate", [PY, str(ROOT / "manage.py"), "migrate", "--noinput", "--verbosity", "0"], env)
        set_synchronous_commit(bench_url, args.synchronous_commit)
        machine = machine_info(bench_url)
        receiver = Receiver(args.receivers, var / "webhooks-receiver")  # forked before Django is set up
        django_setup(env)
        from apps.core.services import platform_key_ensure

        platform_key_ensure()  # generated once here, not raced by 4 worker processes
        purge(env, redis_url)
        if args.profile:
            profile(args, env, receiver, var)
            return 0

        runs: list[Run] = []
        for i in range(args.repeat):
            tag = f"r{int(time.time())}x{i}"
            app_pk, delivery_ids = create_events(args.events, receiver.url, tag)
            purge(env, redis_url)
            n, base_s = run_baseline(receiver, app_pk, tag)
            log(f"baseline: {n} POSTs in {base_s:.2f}s = {n / base_s:.1f}/s")
            before = receiver.count(0)
            receiver.take_ids()  # start this run's id list empty
            span, wall = run_webhooks(env, args, receiver, app_pk, delivery_ids, var / "webhooks-worker.log")
            time.sleep(0.2)
            received = receiver.count(0) - before
            distinct, delivered, single, ok = verify(receiver, app_pk, n, received)
            hook_rate = (n - 1) / span if span > 0 else float("inf")
            base_rate = n / base_s
            run = Run(
                deliveries=n, baseline_rate=base_rate, baseline_seconds=base_s, webhook_rate=hook_rate,
                webhook_seconds=span, webhook_wall_seconds=wall, ratio=hook_rate / base_rate, received=received,
                distinct_received=distinct, delivered_rows=delivered, single_attempt_rows=single, verified=ok,
            )  # fmt: skip
            runs.append(run)
            print(fmt_run(i + 1, args.repeat, run), flush=True)
        return 0 if report(args, machine, runs, var) else 1
    except (KeyboardInterrupt, Interrupted):
        log("interrupted, stopping")
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if receiver is not None:
            receiver.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
