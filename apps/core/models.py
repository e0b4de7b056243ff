from django.db import models

from apps.core.fields import EncryptedTextField


class PlatformKey(models.Model):
    """The platform's RSA key pair: signs API responses and webhooks. Generated once.

    The private key is encrypted at rest; merchants download the public key to verify.
    """

    kid = models.CharField(max_length=32, unique=True)
    public_key_pem = models.TextField()
    private_key_pem = EncryptedTextField()
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["active"], condition=models.Q(active=True), name="one_active_platform_key")
        ]

    def __str__(self) -> str:
        return f"platform key {self.kid}"


class IdempotencyKey(models.Model):
    """The first response to a POST carrying `Idempotency-Key`, replayed for repeats (Stripe semantics).

    Scoped to an app and mode. `response_status` is null while the first request is in flight.
    """

    app_id = models.BigIntegerField()
    livemode = models.BooleanField()
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["app_id", "livemode", "key"], name="idempotency_key_unique_per_app")
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.response_status or 'in flight'})"
