from django.db import models

from apps.core.fields import EncryptedTextField


class AlipayTradeStatus(models.TextChoices):
    WAIT_BUYER_PAY = "WAIT_BUYER_PAY"
    TRADE_SUCCESS = "TRADE_SUCCESS"
    TRADE_CLOSED = "TRADE_CLOSED"


class AlipayProductCode(models.TextChoices):
    """How the trade was created: precreate (QR), the PC cashier (page.pay) or the mobile one (wap.pay)."""

    FACE_TO_FACE_PAYMENT = "FACE_TO_FACE_PAYMENT"
    FAST_INSTANT_TRADE_PAY = "FAST_INSTANT_TRADE_PAY"
    QUICK_WAP_PAY = "QUICK_WAP_PAY"


class AlipayApp(models.Model):
    """An Alipay open-platform application as Alipay sees it.

    `app_public_key_pem` is the merchant's key (verifies requests); the "Alipay" key pair is the
    sandbox's own (signs responses and notifications), its private half encrypted at rest.
    """

    app_id = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=128, blank=True, default="")
    seller_id = models.CharField(max_length=16, help_text="the merchant's Alipay user id (2088…)")
    app_public_key_pem = models.TextField()
    alipay_public_key_pem = models.TextField()
    alipay_private_key_pem = EncryptedTextField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.app_id} {self.name}".strip()


class AlipayTrade(models.Model):
    """A trade created by `alipay.trade.precreate` (it "exists" for queries once scanned) or by the
    payer opening the cashier of `alipay.trade.page.pay` / `wap.pay` (it exists from then on).

    `refund_fee` is the cumulative refunded amount; a fully refunded trade is TRADE_CLOSED.
    """

    app = models.ForeignKey(AlipayApp, on_delete=models.CASCADE, related_name="trades")
    out_trade_no = models.CharField(max_length=64)
    trade_no = models.CharField(max_length=28, unique=True)
    total_amount = models.DecimalField(max_digits=14, decimal_places=2)
    subject = models.CharField(max_length=256)
    body = models.CharField(max_length=128, blank=True, default="")
    status = models.CharField(
        max_length=16, choices=AlipayTradeStatus.choices, default=AlipayTradeStatus.WAIT_BUYER_PAY
    )
    scanned = models.BooleanField(default=False)
    notify_url = models.CharField(max_length=500, blank=True, default="")
    return_url = models.CharField(max_length=500, blank=True, default="")
    product_code = models.CharField(
        max_length=32, choices=AlipayProductCode.choices, default=AlipayProductCode.FACE_TO_FACE_PAYMENT
    )
    refund_fee = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    pay_token = models.CharField(max_length=32, unique=True)
    buyer_logon_id = models.CharField(max_length=100, blank=True, default="")
    buyer_user_id = models.CharField(max_length=16, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    scanned_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["app", "out_trade_no"], name="sandbox_alipay_trade_out_trade_no_uniq"),
        ]
        indexes = [models.Index(fields=["-created_at"])]

    def __str__(self) -> str:
        return f"{self.out_trade_no} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status != AlipayTradeStatus.WAIT_BUYER_PAY


class AlipayRefund(models.Model):
    """One `alipay.trade.refund` request that moved money, keyed by the merchant's out_request_no."""

    trade = models.ForeignKey(AlipayTrade, on_delete=models.CASCADE, related_name="refunds")
    out_request_no = models.CharField(max_length=64)
    refund_amount = models.DecimalField(max_digits=14, decimal_places=2)
    refund_reason = models.CharField(max_length=256, blank=True, default="")
    refunded_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["trade", "out_request_no"], name="sandbox_alipay_refund_request_uniq"),
        ]
        indexes = [models.Index(fields=["refunded_at"])]

    def __str__(self) -> str:
        return f"{self.out_request_no} {self.refund_amount}"


class AlipayNotificationHold(models.TextChoices):
    """Why a notification is not (yet) sent: an injected fault, never Alipay's normal behaviour."""

    NONE = "", "sent"
    LOST = "lost", "lost (never sent)"
    OUT_OF_ORDER = "out_of_order", "held until the trade's next notification is sent"


class AlipayNotification(models.Model):
    """One asynchronous notification (`trade_status_sync`) and its delivery attempts.

    `fields` holds the unsigned form fields, frozen when the state changed; the signature is
    computed at each attempt (the same notify_id is kept across retries, as Alipay does).
    """

    trade = models.ForeignKey(AlipayTrade, on_delete=models.CASCADE, related_name="notifications")
    notify_id = models.CharField(max_length=64, unique=True)
    trade_status = models.CharField(max_length=16, choices=AlipayTradeStatus.choices)
    notify_url = models.CharField(max_length=500)
    out_biz_no = models.CharField(max_length=64, blank=True, default="", help_text="the refund's out_request_no")
    hold = models.CharField(max_length=16, choices=AlipayNotificationHold.choices, blank=True, default="")
    fields = models.JSONField()
    attempts = models.PositiveIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_result = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.notify_id} ({self.trade_status})"
