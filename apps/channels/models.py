from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

from apps.core.fields import EncryptedJSONField


class Provider(models.TextChoices):
    ALIPAY = "alipay", "Alipay"
    WECHATPAY = "wechatpay", "WeChat Pay"
    UNIONPAY = "unionpay", "UnionPay"


class ChannelAccount(models.Model):
    """One configured contract with a provider. Credentials are encrypted at rest.

    Pointing `base_url` at the provider's real gateway with real credentials is configuration;
    pointing it at the sandbox is how test mode works.
    """

    name = models.CharField(max_length=128, unique=True)
    provider = models.CharField(max_length=16, choices=Provider.choices)
    base_url = models.URLField(max_length=300)
    credentials = EncryptedJSONField(default=dict)
    methods = ArrayField(models.CharField(max_length=32), default=list, help_text="Ping++ channel codes")
    currencies = ArrayField(models.CharField(max_length=3), default=list)
    livemode = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    priority = models.IntegerField(default=100, help_text="lower is tried first")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["provider", "livemode", "enabled"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider}, {'live' if self.livemode else 'sandbox'})"


class CallOperation(models.TextChoices):
    CREATE_PAYMENT = "create_payment"
    QUERY_PAYMENT = "query_payment"
    CLOSE_PAYMENT = "close_payment"
    REFUND = "refund"
    QUERY_REFUND = "query_refund"
    DOWNLOAD_BILL = "download_bill"


class CallOutcome(models.TextChoices):
    OK = "ok"
    REJECTED = "rejected"  # the provider answered and refused: a business answer, not a channel fault
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    INVALID_RESPONSE = "invalid_response"
    ERROR = "error"  # anything else the adapter raised


class ChannelCall(models.Model):
    """One outbound call to a provider (the channel call log). Never holds secrets or bodies.

    Append-only, written by `apps.channels.calllog` around every adapter call; routing's success
    rates and the console's channel health read it (`apps.channels.health`).
    """

    provider = models.CharField(max_length=16)  # the account's provider at the time of the call
    account = models.ForeignKey(ChannelAccount, on_delete=models.PROTECT, related_name="calls", db_index=False)
    operation = models.CharField(max_length=24, choices=CallOperation.choices)
    outcome = models.CharField(max_length=24, choices=CallOutcome.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    result_code = models.CharField(max_length=64, blank=True)
    latency_ms = models.PositiveIntegerField()
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["account", "created_at"], name="channelcall_account_time")]

    def __str__(self) -> str:
        return f"{self.operation} on account {self.account_id}: {self.outcome} in {self.latency_ms} ms"
