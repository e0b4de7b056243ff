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
