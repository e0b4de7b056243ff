from django.db import models

from apps.core.fields import EncryptedTextField


class UnionPayAuthority(models.Model):
    """The sandbox's own UnionPay PKI: root CA, middle CA and the signing certificate.

    One row (created on first use). Merchants verify answers and notifications against the
    root and middle certificates; the signing certificate travels in each as signPubKeyCert.
    """

    root_cert_pem = models.TextField()
    root_key_pem = EncryptedTextField()
    middle_cert_pem = models.TextField()
    middle_key_pem = EncryptedTextField()
    sign_cert_pem = models.TextField()
    sign_key_pem = EncryptedTextField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"UnionPay sandbox authority #{self.pk}"


class UnionPayMerchant(models.Model):
    """A merchant (merId) as UnionPay sees it: the certificate whose key signs its requests."""

    mer_id = models.CharField(max_length=15, unique=True)
    name = models.CharField(max_length=128, blank=True, default="")
    cert_pem = models.TextField(help_text="the merchant signing certificate (public)")
    cert_id = models.CharField(max_length=40, unique=True, help_text="its serial number in decimal")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.mer_id} {self.name}".strip()


class UnionPayTxnType(models.TextChoices):
    CONSUME = "01", "consume"
    REFUND = "04", "refund"


class UnionPayTxnStatus(models.TextChoices):
    PENDING = "pending"  # a front consume the payer has not finished, or a refund in flight
    SUCCESS = "success"
    FAILED = "failed"


class UnionPayTxn(models.Model):
    """One transaction (a consume or a refund) keyed as UnionPay keys it: merId + orderId."""

    merchant = models.ForeignKey(UnionPayMerchant, on_delete=models.CASCADE, related_name="txns")
    order_id = models.CharField(max_length=40)
    txn_time = models.CharField(max_length=14)
    txn_type = models.CharField(max_length=2, choices=UnionPayTxnType.choices)
    txn_sub_type = models.CharField(max_length=2)
    biz_type = models.CharField(max_length=6, default="000201")
    channel_type = models.CharField(max_length=2, blank=True, default="")
    txn_amt = models.BigIntegerField(help_text="fen")
    currency_code = models.CharField(max_length=3, default="156")
    status = models.CharField(max_length=8, choices=UnionPayTxnStatus.choices, default=UnionPayTxnStatus.PENDING)
    orig_resp_code = models.CharField(max_length=2, blank=True, default="")
    orig_resp_msg = models.CharField(max_length=100, blank=True, default="")
    query_id = models.CharField(max_length=21, unique=True)
    trace_no = models.CharField(max_length=6)
    trace_time = models.CharField(max_length=10, help_text="MMDDhhmmss")
    settle_date = models.DateField(null=True, blank=True)
    orig = models.ForeignKey("self", null=True, blank=True, on_delete=models.CASCADE, related_name="refunds")
    refunded_amt = models.BigIntegerField(default=0)
    front_url = models.CharField(max_length=500, blank=True, default="")
    back_url = models.CharField(max_length=500, blank=True, default="")
    req_reserved = models.CharField(max_length=1024, blank=True, default="")
    pay_timeout = models.DateTimeField(null=True, blank=True)
    pay_token = models.CharField(max_length=32, unique=True, null=True, blank=True)
    acc_no = models.CharField(max_length=19, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "order_id"], name="sandbox_unionpay_txn_order_id_uniq"),
        ]
        indexes = [models.Index(fields=["merchant", "settle_date"]), models.Index(fields=["-created_at"])]

    def __str__(self) -> str:
        return f"{self.order_id} {self.get_txn_type_display()} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status != UnionPayTxnStatus.PENDING


class UnionPayNotification(models.Model):
    """One backend notification (backUrl) and its delivery attempts.

    `fields` holds the unsigned fields frozen at the state change; each attempt signs them.
    `held` notifications (the out-of-order fault) wait for a later one to be sent first.
    """

    txn = models.ForeignKey(UnionPayTxn, on_delete=models.CASCADE, related_name="notifications")
    back_url = models.CharField(max_length=500)
    fields = models.JSONField()
    held = models.BooleanField(default=False)
    lost = models.BooleanField(default=False, help_text="dropped by an injected fault: never sent")
    send_after = models.DateTimeField(null=True, blank=True, help_text="delayed by an injected fault")
    attempts = models.PositiveIntegerField(default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_result = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"notification #{self.pk} for {self.txn.order_id}"
