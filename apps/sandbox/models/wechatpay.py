"""WeChat Pay API v3 as WeChat sees it: merchants, transactions, refunds, notifications, bills."""

from django.db import models

from apps.core.fields import EncryptedTextField


class WechatpayTradeType(models.TextChoices):
    NATIVE = "NATIVE"
    JSAPI = "JSAPI"
    MWEB = "MWEB"  # what an H5 order is called in query answers and bills


class WechatpayTradeState(models.TextChoices):
    NOTPAY = "NOTPAY"
    SUCCESS = "SUCCESS"
    REFUND = "REFUND"  # paid, then (partly) refunded
    CLOSED = "CLOSED"
    PAYERROR = "PAYERROR"


class WechatpayRefundStatus(models.TextChoices):
    PROCESSING = "PROCESSING"
    SUCCESS = "SUCCESS"
    CLOSED = "CLOSED"
    ABNORMAL = "ABNORMAL"


class WechatpayMerchant(models.Model):
    """A direct merchant (`mchid`) with its app.

    The merchant's public key and certificate serial verify its requests; the platform key pair
    (public-key mode, `public_key_id`) signs answers and notifications. The platform private key
    and the API v3 key (which encrypts notification resources) are encrypted at rest.
    """

    mchid = models.CharField(max_length=32, unique=True)
    appid = models.CharField(max_length=32)
    name = models.CharField(max_length=128, blank=True, default="")
    merchant_public_key_pem = models.TextField()
    merchant_cert_serial_no = models.CharField(max_length=64)
    platform_public_key_pem = models.TextField()
    platform_private_key_pem = EncryptedTextField()
    public_key_id = models.CharField(max_length=64, unique=True)
    apiv3_key = EncryptedTextField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.mchid} {self.name}".strip()


class WechatpayTransaction(models.Model):
    """An order placed with native / jsapi / h5. Amounts are integer fen, as on the wire."""

    merchant = models.ForeignKey(WechatpayMerchant, on_delete=models.CASCADE, related_name="transactions")
    appid = models.CharField(max_length=32)
    out_trade_no = models.CharField(max_length=32)
    transaction_id = models.CharField(max_length=32, unique=True)
    trade_type = models.CharField(max_length=8, choices=WechatpayTradeType.choices)
    trade_state = models.CharField(
        max_length=12, choices=WechatpayTradeState.choices, default=WechatpayTradeState.NOTPAY
    )
    description = models.CharField(max_length=127)
    attach = models.CharField(max_length=128, blank=True, default="")
    total = models.PositiveBigIntegerField()
    currency = models.CharField(max_length=3, default="CNY")
    refunded = models.PositiveBigIntegerField(default=0)  # sum of SUCCESS refunds
    notify_url = models.CharField(max_length=256)
    payer_openid = models.CharField(max_length=128, blank=True, default="")
    payer_client_ip = models.CharField(max_length=45, blank=True, default="")
    prepay_id = models.CharField(max_length=64, unique=True)
    pay_token = models.CharField(max_length=32, unique=True)
    bank_type = models.CharField(max_length=32, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    success_time = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "out_trade_no"], name="sandbox_wechatpay_out_trade_no_uniq"),
        ]
        indexes = [models.Index(fields=["-created_at"]), models.Index(fields=["merchant", "success_time"])]

    def __str__(self) -> str:
        return f"{self.out_trade_no} ({self.trade_state})"

    @property
    def is_final(self) -> bool:
        return self.trade_state != WechatpayTradeState.NOTPAY


class WechatpayRefund(models.Model):
    transaction = models.ForeignKey(WechatpayTransaction, on_delete=models.CASCADE, related_name="refunds")
    out_refund_no = models.CharField(max_length=64)
    refund_id = models.CharField(max_length=32, unique=True)
    refund = models.PositiveBigIntegerField()
    reason = models.CharField(max_length=80, blank=True, default="")
    notify_url = models.CharField(max_length=256, blank=True, default="")
    status = models.CharField(
        max_length=12, choices=WechatpayRefundStatus.choices, default=WechatpayRefundStatus.PROCESSING
    )
    notify = models.BooleanField(default=True)  # False under the refund_never_notifies fault
    created_at = models.DateTimeField(auto_now_add=True)
    success_time = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # out_refund_no is unique per merchant at WeChat; the transaction pins the merchant.
            models.UniqueConstraint(fields=["transaction", "out_refund_no"], name="sandbox_wechatpay_refund_no_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.out_refund_no} ({self.status})"


class WechatpayNotification(models.Model):
    """One notification (TRANSACTION.SUCCESS, REFUND.SUCCESS …) and its delivery.

    `resource` is the plaintext payload frozen at the state change; it is encrypted and the
    envelope signed at each attempt (the envelope `id` stays the same across retries).
    `held` keeps it back (out-of-order fault) until released; `lost` means it is never sent.
    """

    transaction = models.ForeignKey(WechatpayTransaction, on_delete=models.CASCADE, related_name="notifications")
    refund = models.ForeignKey(
        WechatpayRefund, on_delete=models.CASCADE, null=True, blank=True, related_name="notifications"
    )
    event_id = models.CharField(max_length=64, unique=True)
    event_type = models.CharField(max_length=32)
    summary = models.CharField(max_length=64)
    original_type = models.CharField(max_length=16)
    resource = models.JSONField()
    notify_url = models.CharField(max_length=256)
    deliver_after = models.DateTimeField(null=True, blank=True)
    held = models.BooleanField(default=False)
    lost = models.BooleanField(default=False)
    duplicate = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_result = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.event_id} ({self.event_type})"


class WechatpayBill(models.Model):
    """A trade bill as published for one day: the gzip file behind a download token."""

    merchant = models.ForeignKey(WechatpayMerchant, on_delete=models.CASCADE, related_name="bills")
    bill_date = models.DateField()
    bill_type = models.CharField(max_length=16)
    token = models.CharField(max_length=64, unique=True)
    content = models.BinaryField()  # gzip
    sha1 = models.CharField(max_length=40)  # of the uncompressed text
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.merchant.mchid} {self.bill_date} {self.bill_type}"
