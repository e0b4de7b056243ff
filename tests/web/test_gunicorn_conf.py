"""paysys/gunicorn_conf.py: a gthread worker holds at most its threads + KEEPALIVE_SLACK
connections, so kept-alive connections are spread over the workers."""

import http.client
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
from gunicorn.config import Config

from paysys import gunicorn_conf
from scripts.services import free_port
from tests.conftest import process_stop

ROOT = Path(__file__).resolve().parents[2]
THREADS = 2
CAP = THREADS + gunicorn_conf.KEEPALIVE_SLACK


def _config(**settings) -> Config:
    cfg = Config()
    for name, value in settings.items():
        cfg.set(name, value)
    return cfg


def _after(hook, cfg: Config) -> Config:
    hook(SimpleNamespace(cfg=cfg, worker_class=cfg.worker_class))
    return cfg


@pytest.mark.parametrize("worker_class", ["gthread", "gunicorn.workers.gthread.ThreadWorker"])
@pytest.mark.parametrize("hook", [gunicorn_conf.on_starting, gunicorn_conf.on_reload], ids=["start", "reload"])
def test_a_gthread_worker_holds_its_threads_and_the_slack_in_connections(hook, worker_class):
    cfg = _after(hook, _config(worker_class=worker_class, threads=8))
    assert cfg.worker_connections == 8 + gunicorn_conf.KEEPALIVE_SLACK


def test_a_worker_connections_setting_given_is_kept():
    cfg = _after(gunicorn_conf.on_starting, _config(worker_class="gthread", threads=8, worker_connections=50))
    assert cfg.worker_connections == 50


def test_other_worker_classes_are_left_alone():
    cfg = _after(gunicorn_conf.on_starting, _config(worker_class="sync"))  # one thread, else gunicorn runs gthread
    assert cfg.worker_connections == gunicorn_conf.DEFAULT_WORKER_CONNECTIONS


class Gunicorn:
    """`gunicorn -c python:paysys.gunicorn_conf` serving tests/web/pid_app.py on a free port."""

    def __init__(self, workers: int, log: Path):
        self.port = free_port()
        self.log = log
        cmd = [sys.executable, "-m", "gunicorn", "--config", "python:paysys.gunicorn_conf",
               "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers), "--threads", str(THREADS),
               "tests.web.pid_app:application"]  # fmt: skip
        with log.open("wb") as out:
            self.process = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    def get(self, path: str = "/") -> str:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("GET", path, headers={"Connection": "close"})
            return connection.getresponse().read().decode()
        finally:
            connection.close()

    def wait_for_workers(self, count: int, timeout: float = 30.0) -> set[str]:
        """Until `count` different workers have answered (each one has booted and accepts)."""
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        while len(seen) < count:
            assert self.process.poll() is None, f"gunicorn exited:\n{self.log.read_text()}"
            assert time.monotonic() < deadline, f"only {len(seen)} workers answered:\n{self.log.read_text()}"
            try:
                seen.add(self.get())
            except OSError:
                time.sleep(0.1)
        return seen


@pytest.fixture
def gunicorn(tmp_path):
    servers: list[Gunicorn] = []

    def start(workers: int) -> Gunicorn:
        server = Gunicorn(workers, tmp_path / f"gunicorn-{len(servers)}.log")
        servers.append(server)
        server.wait_for_workers(workers)
        return server

    yield start
    for server in servers:
        process_stop(server.process)


def _open(server: Gunicorn, count: int) -> list[http.client.HTTPConnection]:
    connections = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=30) for _ in range(count)]
    for connection in connections:
        connection.connect()  # all open before any is answered, as a pool of kept-alive clients
    return connections


def _held(connection: http.client.HTTPConnection) -> str:
    connection.request("GET", "/hold")
    response = connection.getresponse()
    assert response.status == 200
    return response.read().decode()


def _established(pid: int, port: int) -> int:
    return sum(
        1
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
    )


def test_a_worker_takes_no_connection_beyond_its_cap(gunicorn):
    server = gunicorn(1)
    (worker,) = psutil.Process(server.process.pid).children()
    connections = _open(server, CAP + 1)
    with ThreadPoolExecutor(len(connections)) as pool:
        answers = [pool.submit(_held, c) for c in connections]
        time.sleep(0.5)  # every request sent; the first THREADS are being held
        held_by_worker = _established(worker.pid, server.port)
        assert all(a.result() for a in answers)  # the one left waiting is served once there is room
    for connection in connections:
        connection.close()
    assert held_by_worker == CAP


def test_connections_opened_together_are_shared_equally_by_the_workers(gunicorn):
    server = gunicorn(2)
    connections = _open(server, 2 * CAP)
    with ThreadPoolExecutor(len(connections)) as pool:
        served_by = Counter(pool.map(_held, connections))
    for connection in connections:
        connection.close()
    assert sorted(served_by.values()) == [CAP, CAP]
