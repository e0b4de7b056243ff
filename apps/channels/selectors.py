from apps.channels.models import ChannelAccount


def channel_account_get(*, account_id: int) -> ChannelAccount | None:
    return ChannelAccount.objects.filter(pk=account_id).first()
