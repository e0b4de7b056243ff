from apps.channels.models import ChannelAccount


def channel_account_for_method(*, method: str, currency: str, livemode: bool) -> ChannelAccount | None:
    """The first enabled account (by priority) serving a method and currency in this mode.

    Test mode reaches only sandbox accounts and live mode only live ones.
    """
    return (
        ChannelAccount.objects.filter(
            enabled=True, livemode=livemode, methods__contains=[method], currencies__contains=[currency.upper()]
        )
        .order_by("priority", "id")
        .first()
    )


def channel_account_get(*, account_id: int) -> ChannelAccount | None:
    return ChannelAccount.objects.filter(pk=account_id).first()
