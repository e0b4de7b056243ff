"""A real Celery worker beside Django's live server, both on the test database."""

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def test_database_url() -> str:
    db = connection.settings_dict
    host = quote(db["HOST"] or "", safe="")
    port = f":{db['PORT']}" if db.get("PORT") else ""
    user = quote(db.get("USER") or "postgres", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}{port}/{db['NAME']}"


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker):
    """`celery -A paysys worker` as a separate process, consuming the broker the tests publish to."""
    with django_db_blocker.unblock():
        database_url = test_database_url()
    env = {**os.environ, "DATABASE_URL": database_url, "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
           "REDIS_URL": settings.REDIS_URL, "DJANGO_SETTINGS_MODULE": "paysys.settings"}  # fmt: skip
    celery = [sys.executable, "-m", "celery", "-A", "paysys"]
    subprocess.run([*celery, "purge", "-f"], env=env, cwd=ROOT, check=True, capture_output=True, timeout=60)
    log_path = ROOT / "var" / "test-celery-worker.log"
    log_path.parent.mkdir(exist_ok=True)
    log = open(log_path, "wb")  # noqa: SIM115 - kept open for the worker's lifetime
    worker = subprocess.Popen(
        [*celery, "worker", "--loglevel", "INFO", "--concurrency", "2", "--without-heartbeat", "--without-gossip",
         "--without-mingle"],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    _wait_until_ready(log_path, worker)
    yield worker
    worker.terminate()
    try:
        worker.wait(timeout=20)
    except subprocess.TimeoutExpired:
        worker.kill()
    log.close()


def _wait_until_ready(log_path: Path, worker: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"celery worker exited: {log_path.read_text()[-3000:]}")
        if b"ready." in log_path.read_bytes():
            return
        time.sleep(0.2)
    raise RuntimeError(f"celery worker not ready in {timeout}s: {log_path.read_text()[-3000:]}")
