#!/usr/bin/env python3
"""What `make run` runs (under scripts/services.py, which provides DATABASE_URL and the broker).

1. manage.py migrate, collectstatic (failure only warns) and demo_seed (writes var/demo.json);
2. starts together: gunicorn for the API on 127.0.0.1:$PORT (default 8000), a second gunicorn
   for the provider sandbox on 127.0.0.1:$SANDBOX_PORT (default 8001), a Celery worker and
   Celery beat; PAYSYS_PUBLIC_URL=http://127.0.0.1:$PORT for all of them;
3. waits until GET /v1/schema/ answers 200, prints the URLs and the demo credentials;
4. runs until SIGINT (Ctrl-C) or SIGTERM, then stops every child (SIGTERM, SIGKILL after a
   timeout) and exits 0. If a child dies on its own, the others are stopped and it exits 1.

Each child runs in its own session, so it gets exactly one signal, from here; the kernel sends
it SIGTERM should this process die without cleaning up (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
STOP_TIMEOUT = 15.0
READY_TIMEOUT = 180.0

stop_requested: int | None = None


def log(msg: str) -> None:
    print(f"[run] {msg}", file=sys.stderr, flush=True)


def _on_signal(signum, _frame) -> None:
    global stop_requested
    if stop_requested is None:
        stop_requested = signum
        log(f"got signal {signum}, stopping")


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Child:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str]):
        self.name = name
        self.cmd = cmd
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def poll(self) -> int | None:
        return self.proc.poll()


def stop_all(children: list[Child], timeout: float = STOP_TIMEOUT) -> None:
    live = [c for c in children if c.poll() is None]
    for c in live:
        try:
            c.proc.terminate()
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for c in live:
        try:
            c.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log(f"{c.name} did not stop within {timeout:.0f}s, killing it")
            c.proc.kill()
            c.proc.wait()


def run_step(name: str, cmd: list[str], env: dict[str, str], *, required: bool = True) -> bool:
    """Run one set-up command to completion; False when stopped or (if not required) failed."""
    log(f"{name}: {' '.join(cmd[1:])}")
    child = Child(name, cmd, env)
    while child.poll() is None:
        if stop_requested is not None:
            stop_all([child])
            return False
        time.sleep(0.1)
    if child.proc.returncode != 0:
        if required:
            log(f"{name} failed with exit code {child.proc.returncode}")
            raise SystemExit(1)
        log(f"{name} failed with exit code {child.proc.returncode}; going on without it")
    return True


def api_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def banner(port: int, sandbox_port: int, demo_path: Path) -> str:
    api = f"http://127.0.0.1:{port}"
    lines = [
        "",
        "=" * 72,
        "paysys is running (Ctrl-C stops everything)",
        f"  API        {api}/v1/",
        f"  API docs   {api}/v1/docs/",
        f"  Admin      {api}/admin/",
        f"  Sandbox    http://127.0.0.1:{sandbox_port}/sandbox/",
    ]
    try:
        demo = json.loads(demo_path.read_text())
    except (OSError, ValueError) as exc:
        lines.append(f"  (no demo credentials: cannot read {demo_path}: {exc})")
    else:
        lines += [
            f"Demo credentials ({demo_path}):",
            f"  App id               {demo.get('app_id')}",
            f"  Test secret key      {demo.get('test_secret_key')}",
            f"  Live secret key      {demo.get('live_secret_key')}",
            f"  Merchant private key {demo.get('merchant_private_key_path')}",
            f"  Platform public key  {demo.get('platform_public_key_path')}",
            f"  Admin user/password  {demo.get('admin_username')} / {demo.get('admin_password')}",
        ]
    lines.append("=" * 72)
    return "\n".join(lines)


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    port = int(os.environ.get("PORT", "8000"))
    sandbox_port = int(os.environ.get("SANDBOX_PORT", "8001"))
    var = Path(os.environ.get("PAYSYS_VAR_DIR") or ROOT / "var").resolve()
    var.mkdir(parents=True, exist_ok=True)
    demo_path = var / "demo.json"
    api = f"http://127.0.0.1:{port}"

    env = dict(os.environ)
    env["PAYSYS_PUBLIC_URL"] = api
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("DJANGO_SETTINGS_MODULE", "paysys.settings")
    manage = [PY, str(ROOT / "manage.py")]

    steps = [
        ("migrate", [*manage, "migrate", "--noinput"], True),
        ("collectstatic", [*manage, "collectstatic", "--noinput", "--verbosity", "0"], False),
        (
            "demo_seed",
            [
                *manage, "demo_seed",
                "--api-base", api,
                "--sandbox-base", f"http://127.0.0.1:{sandbox_port}",
                "--out", str(demo_path),
            ],
            True,
        ),
    ]  # fmt: skip
    for name, cmd, required in steps:
        if not run_step(name, cmd, env, required=required):
            return 0

    gunicorn = [PY, "-m", "gunicorn", "--config", "python:paysys.gunicorn_conf"]
    specs = [
        ("api", [*gunicorn, "--bind", f"127.0.0.1:{port}", "--name", "paysys-api"]),
        ("sandbox", [*gunicorn, "--bind", f"127.0.0.1:{sandbox_port}", "--name", "paysys-sandbox"]),
        ("worker", [PY, "-m", "celery", "-A", "paysys", "worker", "--loglevel", "INFO", "--concurrency", "4"]),
        ("beat", [PY, "-m", "celery", "-A", "paysys", "beat", "--loglevel", "INFO",
                  "--schedule", str(var / "celerybeat-schedule")]),
    ]  # fmt: skip
    children: list[Child] = []
    code = 0
    try:
        for name, cmd in specs:
            log(f"starting {name}: {' '.join(cmd[1:])}")
            children.append(Child(name, cmd, env))

        ready = False
        deadline = time.monotonic() + READY_TIMEOUT
        while stop_requested is None:
            dead = [c for c in children if c.poll() is not None]
            if dead:
                for c in dead:
                    log(f"{c.name} exited with code {c.proc.returncode}")
                code = 1
                break
            if not ready:
                if api_ready(f"{api}/v1/schema/"):
                    ready = True
                    print(banner(port, sandbox_port, demo_path), flush=True)
                elif time.monotonic() > deadline:
                    log(f"the API did not answer GET {api}/v1/schema/ with 200 within {READY_TIMEOUT:.0f}s")
                    code = 1
                    break
                else:
                    time.sleep(0.5)
                    continue
            time.sleep(0.5)
    finally:
        log("stopping " + ", ".join(c.name for c in children if c.poll() is None))
        stop_all(children)
        log("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
