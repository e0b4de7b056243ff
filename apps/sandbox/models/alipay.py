
from django.db import models

from apps.core.fields import EncryptedTextField


class AlipayTradeStatus(models.TextChoices):
    WAIT_BUYER_PAY = "WAIT_BUYER_PAY"
    TRADE_SUCCESS = "TRADE_SUCCESS"
    TRADE_CLOSED = "TRADE_CLOSED"


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
    """A trade created by `alipay.trade.precreate`; it "exists" for queries once scanned."""

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


class AlipayNotification(models.Model):
    """One asynchronous notification (`trade_status_sync`) and its delivery attempts.

    `fields` holds the unsigned form fields, frozen when the state changed; the signature is
    computed at each attempt (the same notify_id is kept across retries, as Alipay does).
    """

    trade = models.ForeignKey(AlipayTrade, on_delete=models.CASCADE, related_name="notifications")
    notify_id = models.CharField(max_length=64, unique=True)
    trade_status = models.CharField(max_length=16, choices=AlipayTradeStatus.choices)
    notify_url = models.CharField(max_length=500)
    fields = models.JSONField()
    attempts = models.PositiveIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_result = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.notify_id} ({self.trade_status})"
