from django.contrib.postgres.fields import ArrayField
from django.db import models

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
