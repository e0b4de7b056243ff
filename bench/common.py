"""Pieces every benchmark script shares: logging, signals, ports and database URLs."""

from __future__ import annotations

import ctypes
import os
import socket
import sys
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

# The endpoints bench/api_charge.py loads, by phase (bench/urls.py serves the first two).
PING_PATH = "/v1/bench/ping"
RELAY_PATH = "/v1/bench/relay"  # the ping plus one signed round trip to the sandbox gunicorn
CHARGES_PATH = "/v1/charges"
PHASE_PATHS = {"ping": PING_PATH, "relay": RELAY_PATH, "charges": CHARGES_PATH}


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` prints them."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def make_log(prefix: str) -> Callable[[str], None]:
    """A progress logger to stderr, so stdout stays the report."""

    def log(msg: str) -> None:
        print(f"[{prefix}] {msg}", file=sys.stderr, flush=True)

    return log


class Interrupted(Exception):
    """SIGINT/SIGTERM during a run: unwind so every started process is stopped."""


def on_signal(signum, _frame):
    raise Interrupted(signum)


def die_with_parent() -> None:
    """A child process (preexec_fn) gets SIGTERM when the benchmark itself dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
    except Exception:
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_database(url: str, name: str) -> str:
    """The same server URL, naming another database."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def cpu_by_process(processes) -> dict[int, float]:
    """User + system CPU seconds of each of these psutil processes that still runs, by pid."""
    import psutil

    seconds = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        seconds[process.pid] = times.user + times.system
    return seconds


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two `cpu_by_process` readings by the processes in both (one
    that exited in between is left out rather than counted negative)."""
    return sum(after[pid] - before[pid] for pid in before.keys() & after.keys())


def process_tree(pid: int) -> list:
    """The psutil process `pid` and its descendants (a gunicorn master and its workers)."""
    import psutil

    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def database_backends(database: str) -> list:
    """The PostgreSQL backends serving `database` on this machine (by their process title)."""
    import psutil

    marker = f" {database} "
    return [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or []) + " "]
