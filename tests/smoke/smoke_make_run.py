#!/usr/bin/env python3
"""End-to-end smoke test of `make run`, with the real Ping++ Python SDK as the merchant.

    .venv/bin/python tests/smoke/smoke_make_run.py

Starts `make run` in its own process group with a clean environment (no DATABASE_URL or
CELERY_BROKER_URL: embedded PostgreSQL and Redis; PORT=18000, SANDBOX_PORT=18001; var/ under
the repository), waits for the API and var/demo.json, creates an alipay_qr charge with request
signing on, pays it on the sandbox pay page, polls until the charge is paid, then sends SIGINT
to the process group and checks that everything stops. Exit 0 on success, 1 with a message
otherwise. Not collected by pytest (see conftest.py beside it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PORT = 18000
SANDBOX_PORT = 18001
START_TIMEOUT = 240
PAY_TIMEOUT = 60
STOP_TIMEOUT = 30
DEMO_JSON = ROOT / "var" / "demo.json"


class SmokeFailure(Exception):
    pass


def say(msg: str) -> None:
    print(f"[smoke] {msg}", flush=True)


MARKER = f"PAYSYS_SMOKE_RUN={uuid.uuid4().hex}"


def clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "PAYSYS_VAR_DIR", "PAYSYS_PUBLIC_URL",
                     "VIRTUAL_ENV", "PYTHONPATH", "DJANGO_SETTINGS_MODULE", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"}
    }  # fmt: skip
    env["PORT"] = str(PORT)
    env["SANDBOX_PORT"] = str(SANDBOX_PORT)
    env["PYTHONUNBUFFERED"] = "1"
    key, value = MARKER.split("=", 1)
    env[key] = value  # inherited by every descendant: lets us find orphans afterwards
    return env


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def wait_ready(proc: subprocess.Popen, started: float) -> dict:
    schema = f"http://127.0.0.1:{PORT}/v1/schema/"
    deadline = time.monotonic() + START_TIMEOUT
    last_note = 0.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SmokeFailure(f"`make run` exited early with code {proc.returncode}")
        demo = None
        if DEMO_JSON.exists() and DEMO_JSON.stat().st_mtime >= started - 1:
            try:
                demo = json.loads(DEMO_JSON.read_text())
            except ValueError:
                demo = None  # being written
        status = http_status(schema)
        if demo is not None and status == 200:
            return demo
        if time.monotonic() - last_note > 15:
            say(f"waiting: GET {schema} -> {status}, fresh var/demo.json: {demo is not None}")
            last_note = time.monotonic()
        time.sleep(1)
    raise SmokeFailure(f"not ready within {START_TIMEOUT}s (GET {schema} -> 200 and a fresh {DEMO_JSON})")


def pay_flow(demo: dict) -> None:
    import pingpp
    import requests

    missing = [k for k in ("api_base", "app_id", "test_secret_key", "merchant_private_key_path") if not demo.get(k)]
    if missing:
        raise SmokeFailure(f"var/demo.json lacks {missing}: {demo}")
    pingpp.api_key = demo["test_secret_key"]
    pingpp.api_base = demo["api_base"].rstrip("/")
    pingpp.private_key_path = demo["merchant_private_key_path"]  # request signing on

    order_no = "smoke" + uuid.uuid4().hex[:16]
    say(f"creating charge order_no={order_no} on {pingpp.api_base} (app {demo['app_id']})")
    ch = pingpp.Charge.create(
        order_no=order_no,
        app=dict(id=demo["app_id"]),
        channel="alipay_qr",
        amount=100,
        currency="cny",
        client_ip="127.0.0.1",
        subject="smoke",
        body="smoke",
    )
    say(f"charge {ch.id} created: paid={ch.paid} livemode={ch.livemode}")
    if ch.paid:
        raise SmokeFailure(f"a new charge is already paid: {ch}")
    pay_url = ch.credential["alipay_qr"]
    say(f"paying on the sandbox: POST {pay_url} result=success")
    resp = requests.post(pay_url, data={"result": "success"}, timeout=30)
    if resp.status_code >= 400:
        raise SmokeFailure(f"sandbox pay page answered {resp.status_code}: {resp.text[:500]}")

    deadline = time.monotonic() + PAY_TIMEOUT
    while True:
        ch = pingpp.Charge.retrieve(ch.id)
        if ch.paid:
            break
        if time.monotonic() > deadline:
            raise SmokeFailure(f"charge {ch.id} not paid within {PAY_TIMEOUT}s: {ch}")
        time.sleep(1)
    if not ch.time_paid or not ch.transaction_no:
        raise SmokeFailure(f"paid charge lacks time_paid / transaction_no: {ch}")
    say(f"charge {ch.id} paid: time_paid={ch.time_paid} transaction_no={ch.transaction_no}")


def stop(proc: subprocess.Popen) -> int | None:
    """SIGINT to the whole process group, as Ctrl-C would; SIGKILL after STOP_TIMEOUT."""
    if proc.poll() is None:
        say(f"sending SIGINT to the `make run` process group {proc.pid}")
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            say(f"`make run` still running {STOP_TIMEOUT}s after SIGINT: killing the group")
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            return None
    return proc.returncode


def leftovers(marker: str) -> list[str]:
    """Live processes that inherited this run's marker variable: orphans of `make run`."""
    found = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit() or int(proc_dir.name) == os.getpid():
            continue
        try:
            if marker.encode() not in (proc_dir / "environ").read_bytes().split(b"\0"):
                continue
            args = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if args:  # zombies have no command line
            found.append(f"{proc_dir.name} {args}")
    return found


def kill_all(marker: str) -> None:
    for line in leftovers(marker):
        try:
            os.kill(int(line.split()[0]), signal.SIGKILL)
        except OSError:
            pass


def main() -> int:
    for port in (PORT, SANDBOX_PORT):
        if http_status(f"http://127.0.0.1:{port}/") is not None:
            say(f"FAILED: something already answers on 127.0.0.1:{port}; stop it first")
            return 1
    log = tempfile.NamedTemporaryFile("w+b", prefix="smoke-make-run-", suffix=".log", delete=False)  # noqa: SIM115
    say(f"starting `make run` (PORT={PORT}, SANDBOX_PORT={SANDBOX_PORT}); its output goes to {log.name}")
    started = time.time()
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    failure = None
    try:
        demo = wait_ready(proc, started)
        say(f"API ready after {time.time() - started:.0f}s")
        pay_flow(demo)
    except SmokeFailure as exc:
        failure = str(exc)
    except Exception as exc:  # SDK or connection errors fail the smoke test too
        failure = f"{type(exc).__name__}: {exc}"
    finally:
        code = stop(proc)
    log.seek(0)
    output = log.read().decode(errors="replace")
    if code is None:
        failure = failure or f"`make run` did not stop within {STOP_TIMEOUT}s of SIGINT"
    elif code not in (0, -signal.SIGINT):  # make itself re-raises SIGINT once its recipe is done
        failure = failure or f"`make run` exited with code {code} after SIGINT"
    elif "[services] command exited with code 0" not in output:
        failure = failure or "scripts/run.py did not exit 0 after SIGINT (see the output below)"
    else:
        say(f"`make run` stopped cleanly ({code})")
    time.sleep(1)
    left = leftovers(MARKER)
    if left:
        failure = failure or "processes left behind after `make run` stopped:\n  " + "\n  ".join(left)
        kill_all(MARKER)

    if failure:
        tail = output.splitlines()[-200:]
        print("----- last lines of `make run` output -----", flush=True)
        print("\n".join(tail), flush=True)
        print("-------------------------------------------", flush=True)
        say(f"FAILED: {failure}")
        return 1
    say("OK: make run came up, a signed pingpp charge was created, paid on the sandbox and stopped cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
