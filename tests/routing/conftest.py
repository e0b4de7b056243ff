import pytest


@pytest.fixture
def routing_settings(settings):
    """Every decision reads the database afresh (no per-process cache) so each step is observable."""
    settings.PAYSYS_ROUTING_CACHE_SECONDS = 0
    return settings


@pytest.fixture
def sandbox_accounts(live_server, transactional_db, routing_settings):
    """A factory of sandbox Alipay apps, each with the paysys channel account that reaches it."""
    from apps.channels.models import ChannelAccount
    from apps.channels.services import channel_account_upsert
    from apps.routing.models import RoutingPolicy
    from apps.routing.services import card_bins_load
    from apps.sandbox.services import alipay_app_create

    routing_settings.PAYSYS_PUBLIC_URL = live_server.url
    # A transactional test flushes the tables, the BIN rows the data migration loaded included.
    card_bins_load()

    def make(name: str, *, priority: int, methods=("alipay_qr",), **policy):
        created = alipay_app_create(name=name)
        account = channel_account_upsert(
            name=name,
            provider="alipay",
            base_url=f"{live_server.url}/sandbox/alipay/gateway.do",
            credentials=created.credentials(),
            methods=list(methods),
            currencies=["CNY"],
            livemode=False,
        )
        ChannelAccount.objects.filter(pk=account.pk).update(priority=priority)
        account.refresh_from_db()
        if policy:
            RoutingPolicy.objects.create(account=account, **policy)
        return account, created

    return make
