from django.db import models

from apps.core.ids import PublicIdFactory


class Merchant(models.Model):
    name = models.CharField(max_length=128, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class App(models.Model):
    """A merchant's application (`app_…`): the scope of keys, charges and webhooks."""

    public_id = models.CharField(max_length=32, unique=True, default=PublicIdFactory("app", 16), editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="apps")
    name = models.CharField(max_length=128)
    # The merchant's RSA public key (SPKI PEM) that verifies Pingplusplus-Signature.
    public_key_pem = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.public_id} ({self.name})"

    @property
    def requires_signature_in_test_mode(self) -> bool:
        return bool(self.public_key_pem)


class ApiKey(models.Model):
    """A secret key (`sk_test_…` / `sk_live_…`). Only its SHA-256 is stored; it is shown once."""

    app = models.ForeignKey(App, on_delete=models.PROTECT, related_name="api_keys")
    livemode = models.BooleanField()
    key_hash = models.CharField(max_length=64, unique=True)
    display_prefix = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.display_prefix}… ({'live' if self.livemode else 'test'})"


class WebhookEndpoint(models.Model):
    """A merchant URL that receives signed event deliveries for an app."""

    app = models.ForeignKey(App, on_delete=models.PROTECT, related_name="webhook_endpoints")
    url = models.URLField(max_length=500)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.url
