import pytest

from tests.support import MerchantClient, Receiver, make_merchant


@pytest.fixture
def merchant(db):
    return make_merchant()


@pytest.fixture
def api(client, merchant):
    return MerchantClient(client, merchant)


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_platform_key_cache():
    """Tests roll back or flush the platform key row; the per-process key cache must follow."""
    from apps.core.services import platform_key_cache_clear
    from apps.merchants.selectors import api_key_cache_clear

    platform_key_cache_clear()
    api_key_cache_clear()
    yield
    platform_key_cache_clear()
    api_key_cache_clear()


@pytest.fixture
def unreachable_alipay_account(db):
    """A test-mode Alipay account whose gateway refuses connections (nothing listens on port 9)."""
    from apps.channels.services import channel_account_upsert
    from apps.core import crypto

    key = crypto.rsa_generate()
    return channel_account_upsert(
        name="Unreachable Alipay",
        provider="alipay",
        base_url="http://127.0.0.1:9/gateway.do",
        credentials={
            "app_id": "2021000000000009",
            "app_private_key": crypto.private_key_pem(key),
            "alipay_public_key": crypto.public_key_pem(key),
        },
        methods=["alipay_qr"],
        currencies=["CNY"],
        livemode=False,
    )


@pytest.fixture
def celery_eager():
    """Runs enqueued tasks in-process (tests that are not about the worker itself)."""
    from paysys.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = previous


@pytest.fixture
def sandbox_alipay(live_server, transactional_db, settings):
    """A sandbox Alipay app and the paysys channel account that reaches it over HTTP."""
    from apps.channels.services import channel_account_upsert
    from apps.sandbox.services import alipay_app_create

    settings.PAYSYS_PUBLIC_URL = live_server.url
    created = alipay_app_create(name="paysys tests")
    account = channel_account_upsert(
        name="Sandbox Alipay (tests)",
        provider="alipay",
        base_url=f"{live_server.url}/sandbox/alipay/gateway.do",
        credentials=created.credentials(),
        methods=["alipay_qr"],
        currencies=["CNY"],
        livemode=False,
    )
    return account, created


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """Test connections commit without waiting for the WAL flush: test data need not survive a
    crash, and the many flushes of live-server tests (TRUNCATE of every table) get much cheaper."""
    from django.conf import settings

    options = settings.DATABASES["default"].setdefault("OPTIONS", {})
    options["options"] = f"{options.get('options', '')} -c synchronous_commit=off".strip()


@pytest.fixture(scope="session", autouse=True)
def _test_database_released(django_db_setup, django_db_blocker):
    """Ends the test database's other sessions once every test is done, so that pytest-django can
    drop it: threads of the live servers and of in-process workers leave their connections open."""
    yield
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
