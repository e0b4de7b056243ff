from apps.core.errors import ChannelError, InvalidRequest, NotFound


class ChargeNotFound(NotFound):
    default_code = "charge_not_found"


class ChannelUnsupported(InvalidRequest):
    default_code = "channel_unsupported"


class ChannelUnavailable(ChannelError):
    default_code = "channel_unavailable"


class ChannelRefused(ChannelError):
    default_code = "channel_refused"


class ChannelOutcomeUnknown(ChannelError):
    """The provider did not answer in time; the charge stays open and is resolved by query."""

    status = 504
    default_code = "channel_timeout"


class AppMismatch(InvalidRequest):
    default_code = "app_mismatch"
