from django.db import models


class FaultKind(models.TextChoices):
    """The misbehaviour real providers produce, injected per merchant account or per payment."""

    NOTIFY_LOST = "notify_lost", "notification lost"
    NOTIFY_DELAY = "notify_delay", "notification delayed (params.seconds)"
    NOTIFY_DUPLICATE = "notify_duplicate", "notification duplicated"
    NOTIFY_OUT_OF_ORDER = "notify_out_of_order", "notifications out of order (refund before payment)"
    NOTIFY_AMOUNT_DIFFERS = "notify_amount_differs", "notification amount differs (params.delta, minor units)"
    TIMEOUT_CREATE = "timeout_create", "create times out (params.seconds)"
    TIMEOUT_QUERY = "timeout_query", "query times out (params.seconds)"
    TIMEOUT_REFUND = "timeout_refund", "refund times out (params.seconds)"
    ERROR_5XX = "error_5xx", "5xx answers (params.operations: list, empty = all)"
    CREATE_TIMEOUT_PAID = "create_timeout_paid", "create times out but the payment is made"
    REFUND_NEVER_NOTIFIES = "refund_never_notifies", "refund never notifies"
    BILL_MISSING_LINE = "bill_missing_line", "bill misses a line (params.out_trade_no optional)"
    BILL_EXTRA_LINE = "bill_extra_line", "bill has an extra line"
    BILL_ALTERED_LINE = "bill_altered_line", "bill has an altered line (params.field: amount|fee|status)"


class SandboxFault(models.Model):
    """One injected fault. Scope: a provider merchant account (`merchant_ref`: Alipay app_id,
    WeChat mchid, UnionPay merId; empty = every account) and optionally one payment
    (`out_trade_no`). `remaining` counts how many more times it fires (null = until disabled)."""

    provider = models.CharField(max_length=16)
    merchant_ref = models.CharField(max_length=64, blank=True, default="")
    out_trade_no = models.CharField(max_length=64, blank=True, default="")
    kind = models.CharField(max_length=32, choices=FaultKind.choices)
    params = models.JSONField(default=dict, blank=True)
    remaining = models.PositiveIntegerField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    fired = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["provider", "kind", "enabled"])]

    def __str__(self) -> str:
        scope = self.out_trade_no or self.merchant_ref or "all"
        return f"{self.provider} {self.kind} on {scope}"
