"""paysys/gunicorn_conf.py: kept-alive connections are spread over the gthread workers."""

import http.client
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from gunicorn.config import Config

from paysys import gunicorn_conf

ROOT = Path(__file__).resolve().parents[2]
WORKERS, THREADS = 2, 2
CONNECTIONS = WORKERS * (THREADS + gunicorn_conf.KEEPALIVE_SLACK)


def _started(cfg: Config) -> Config:
    gunicorn_conf.on_starting(SimpleNamespace(cfg=cfg))
    return cfg


def _config(**settings) -> Config:
    cfg = Config()
    for name, value in settings.items():
        cfg.set(name, value)
    return cfg


def test_a_gthread_worker_holds_its_threads_and_the_slack_in_connections():
    cfg = _started(_config(worker_class="gthread", threads=8))
    assert cfg.worker_connections == 8 + gunicorn_conf.KEEPALIVE_SLACK


def test_a_worker_connections_setting_given_is_kept():
    cfg = _started(_config(worker_class="gthread", threads=8, worker_connections=50))
    assert cfg.worker_connections == 50


def test_other_worker_classes_are_left_alone():
    cfg = _started(_config(worker_class="sync"))  # one thread: with more, gunicorn runs gthread
    assert cfg.worker_connections == cfg.settings["worker_connections"].default


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("gunicorn did not start listening")


@pytest.fixture
def gunicorn_port():
    port = _free_port()
    cmd = [sys.executable, "-m", "gunicorn", "--config", "python:paysys.gunicorn_conf",
           "--bind", f"127.0.0.1:{port}", "--workers", str(WORKERS), "--threads", str(THREADS),
           "tests.web.pid_app:application"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, proc)
        time.sleep(1.0)  # both workers booted and accepting
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_connections_opened_together_are_shared_equally_by_the_workers(gunicorn_port):
    connections = [http.client.HTTPConnection("127.0.0.1", gunicorn_port, timeout=30) for _ in range(CONNECTIONS)]
    for connection in connections:
        connection.connect()  # all open before any is answered, as a pool of kept-alive clients

    def worker_of(connection: http.client.HTTPConnection) -> str:
        connection.request("GET", "/")
        response = connection.getresponse()
        assert response.status == 200
        return response.read().decode()

    with ThreadPoolExecutor(CONNECTIONS) as pool:
        served_by = Counter(pool.map(worker_of, connections))
    for connection in connections:
        connection.close()
    assert sorted(served_by.values()) == [CONNECTIONS // WORKERS] * WORKERS
