from apps.core.errors import Conflict


class WebhookDeliveryNotResendable(Conflict):
    """Only failing and dead deliveries can be resent (a pending one is on its way already)."""

    default_code = "webhook_delivery_not_resendable"
