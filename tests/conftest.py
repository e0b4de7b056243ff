"""Real Celery processes beside Django's live server, all on the test database.

Shared by tests/e2e (one worker for a module) and tests/faults (workers killed and restarted,
and a beat).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]
CELERY = [sys.executable, "-m", "celery", "-A", "paysys"]


def test_database_url() -> str:
    db = connection.settings_dict
    host = quote(db["HOST"] or "", safe="")
    port = f":{db['PORT']}" if db.get("PORT") else ""
    user = quote(db.get("USER") or "postgres", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}{port}/{db['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


def celery_env(database_url: str, **extra: str) -> dict:
    """The environment of a Celery process on the test database and the tests' broker."""
    return {
        **os.environ, "DATABASE_URL": database_url, "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "REDIS_URL": settings.REDIS_URL, "DJANGO_SETTINGS_MODULE": "paysys.settings", **extra,
    }  # fmt: skip


def celery_purge(env: dict) -> None:
    subprocess.run([*CELERY, "purge", "-f"], env=env, cwd=ROOT, check=True, capture_output=True, timeout=60)


def celery_worker_start(env: dict, log_path: Path, *, concurrency: int = 2) -> subprocess.Popen:
    """`celery -A paysys worker`, logging to `log_path`; returns once it says it is ready."""
    log_path.parent.mkdir(exist_ok=True)
    with open(log_path, "wb") as log:  # the child keeps its own descriptor
        worker = subprocess.Popen(
            [*CELERY, "worker", "--loglevel", "INFO", "--concurrency", str(concurrency), "--without-heartbeat",
             "--without-gossip", "--without-mingle"],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    _wait_until_ready(log_path, worker)
    return worker


def process_tree_kill(process: subprocess.Popen) -> int:
    """SIGKILL to a process and all its descendants at once (a crashed host); returns how many."""
    try:
        parent = psutil.Process(process.pid)
        victims = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return 0
    for victim in victims:
        try:
            os.kill(victim.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    psutil.wait_procs(victims, timeout=10)
    process.wait(timeout=10)
    return len(victims)


def process_stop(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM (a warm shutdown), then SIGKILL to whatever is left of the tree."""
    if process.poll() is not None:
        return
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process_tree_kill(process)
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="module")
def celery_worker(django_db_setup, django_db_blocker):
    """`celery -A paysys worker` as a separate process, consuming the broker the tests publish to.

    Module-scoped: tests/faults runs its own workers and must not share the queue with this one.
    """
    with django_db_blocker.unblock():
        env = celery_env(test_database_url())
    celery_purge(env)
    worker = celery_worker_start(env, ROOT / "var" / "test-celery-worker.log")
    yield worker
    process_stop(worker)


def _wait_until_ready(log_path: Path, worker: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"celery worker exited: {log_path.read_text()[-3000:]}")
        if b"ready." in log_path.read_bytes():
            return
        time.sleep(0.2)
    raise RuntimeError(f"celery worker not ready in {timeout}s: {log_path.read_text()[-3000:]}")
