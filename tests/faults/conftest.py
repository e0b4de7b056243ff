"""The fault run's processes (a killable worker and a beat) and its three sandbox accounts."""

import subprocess

import pytest
import redis
from django.conf import settings
from django.db import connection

from apps.channels.services import channel_account_upsert
from apps.sandbox.unionpay_services import unionpay_merchant_create
from apps.sandbox.wechatpay_services import wechatpay_merchant_create
from tests.conftest import (
    CELERY,
    ROOT,
    celery_env,
    celery_purge,
    celery_worker_start,
    process_stop,
    process_tree_kill,
    test_database_url,
)
from tests.faults.sandboxes import AlipaySandbox, Sandbox, UnionpaySandbox, WechatpaySandbox

CHANNEL_TIMEOUT = 2.0  # seconds: what paysys waits for the sandbox (test process and worker)
VAR = ROOT / "var"


class Cluster:
    """The worker (killable, restartable) and beat processes of the run."""

    def __init__(self, env: dict):
        self.env = env
        self.worker = None
        self.beat = None
        self.generation = 0
        self.killed = 0

    def start_worker(self) -> None:
        self.generation += 1
        self.worker = celery_worker_start(self.env, VAR / f"test-faults-worker-{self.generation}.log", concurrency=4)

    def kill_worker(self) -> int:
        """SIGKILL the worker's main process and its pool children, as a crash would."""
        self.killed = process_tree_kill(self.worker)
        return self.killed

    def start_beat(self) -> None:
        schedule = VAR / "test-faults-beat-schedule"
        pidfile = VAR / "test-faults-beat.pid"
        for stale in (pidfile, schedule):
            stale.unlink(missing_ok=True)
        with open(VAR / "test-faults-beat.log", "wb") as log:
            self.beat = subprocess.Popen(
                [*CELERY, "beat", "--loglevel", "INFO", "-s", str(schedule), "--pidfile", str(pidfile)],
                env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def stop(self) -> None:
        for process in (self.beat, self.worker):
            if process is not None:
                process_stop(process)


def _account(provider: str, base_url: str, credentials: dict, channel: str):
    return channel_account_upsert(
        name=f"Sandbox {provider} (fault run)", provider=provider, base_url=base_url, credentials=credentials,
        methods=[channel], currencies=["CNY"], livemode=False,
    )  # fmt: skip


@pytest.fixture
def sandboxes(sandbox_alipay, live_server) -> list[Sandbox]:
    """One sandbox account per provider, each reached by a paysys channel account over HTTP."""
    alipay_account, alipay = sandbox_alipay
    wechatpay = wechatpay_merchant_create(name="fault run")
    unionpay = unionpay_merchant_create(name="fault run")
    wechatpay_account = _account("wechatpay", f"{live_server.url}/sandbox/wechatpay", wechatpay.credentials(),
                                 WechatpaySandbox.channel)  # fmt: skip
    unionpay_account = _account("unionpay", f"{live_server.url}/sandbox/unionpay/gateway/api/",
                                unionpay.credentials(), UnionpaySandbox.channel)  # fmt: skip
    return [
        AlipaySandbox(alipay_account, alipay.app_id),
        WechatpaySandbox(wechatpay_account, wechatpay.merchant.mchid),
        UnionpaySandbox(unionpay_account, unionpay.merchant.mer_id),
    ]


@pytest.fixture
def cluster(sandboxes, live_server, settings):
    settings.PAYSYS_CHANNEL_TIMEOUT_SECONDS = CHANNEL_TIMEOUT
    env = celery_env(
        test_database_url(),
        PAYSYS_CHANNEL_TIMEOUT_SECONDS=str(CHANNEL_TIMEOUT),
        PAYSYS_PUBLIC_URL=live_server.url,
    )
    celery_purge(env)
    running = Cluster(env)
    try:
        running.start_worker()
        running.start_beat()
        yield running
    finally:
        running.stop()
        connection.close()
        forget_unacked(env)


def forget_unacked(env: dict) -> None:
    """The killed worker's unacknowledged messages would come back to a later worker on this broker
    after the visibility timeout (an hour), naming rows of this run's flushed database: drop them."""
    celery_purge(env)
    if settings.CELERY_BROKER_URL.startswith("redis"):
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        client.delete("unacked", "unacked_index", "unacked_mutex")
        client.close()
