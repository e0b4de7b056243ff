from django.conf import settings

from apps.channels.adapters import adapter_class
from apps.channels.adapters.base import AccountConfig, ChannelAdapter
from apps.channels.calllog import LoggedAdapter
from apps.channels.models import ChannelAccount


def adapter_for(account: ChannelAccount) -> ChannelAdapter:
    """The provider adapter configured for one channel account.

    Wrapped in the call-log proxy: every outbound call is timed and recorded (apps.channels.calllog).
    """
    config = AccountConfig(
        id=account.pk,
        provider=account.provider,
        base_url=account.base_url,
        credentials=account.credentials,
        livemode=account.livemode,
        timeout_seconds=settings.PAYSYS_CHANNEL_TIMEOUT_SECONDS,
    )
    return LoggedAdapter(adapter_class(account.provider)(config))


def notify_url_for(account: ChannelAccount) -> str:
    """Where the provider sends its asynchronous notifications for this account."""
    return f"{settings.PAYSYS_PUBLIC_URL.rstrip('/')}/notify/{account.provider}/{account.pk}/"


def channel_account_upsert(
    *,
    name: str,
    provider: str,
    base_url: str,
    credentials: dict,
    methods: list[str],
    currencies: list[str],
    livemode: bool,
) -> ChannelAccount:
    account, _ = ChannelAccount.objects.update_or_create(
        name=name,
        defaults={
            "provider": provider,
            "base_url": base_url,
            "credentials": credentials,
            "methods": methods,
            "currencies": [c.upper() for c in currencies],
            "livemode": livemode,
        },
    )
    return account
