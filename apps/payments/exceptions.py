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


class RefundNotFound(NotFound):
    default_code = "refund_not_found"


class ChargeNotRefundable(InvalidRequest):
    default_code = "charge_not_paid"


class ChargeAlreadyRefunded(InvalidRequest):
    default_code = "charge_refunded"


class AmountExceedsRefundable(InvalidRequest):
    default_code = "amount_exceeds_refundable"


class ChargeAlreadyPaid(InvalidRequest):
    default_code = "charge_paid"


class ChargeNotReversible(InvalidRequest):
    default_code = "charge_not_reversible"


class ChargeNotHeld(InvalidRequest):
    default_code = "charge_not_held"
