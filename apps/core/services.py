import functools

from django.db import IntegrityError, transaction

from apps.core import crypto
from apps.core.ids import random_token
from apps.core.models import PlatformKey


def platform_key_ensure() -> PlatformKey:
    """The active platform key, generated on first use (safe when called concurrently)."""
    key = PlatformKey.objects.filter(active=True).first()
    if key:
        return key
    private = crypto.rsa_generate()
    try:
        with transaction.atomic():
            return PlatformKey.objects.create(
                kid=f"pk_{random_token(12)}",
                public_key_pem=crypto.public_key_pem(private),
                private_key_pem=crypto.private_key_pem(private),
            )
    except IntegrityError:
        return PlatformKey.objects.get(active=True)


@functools.lru_cache(maxsize=1)
def _platform_private_pem() -> str:
    return platform_key_ensure().private_key_pem


def platform_sign(message: bytes) -> str:
    """base64 RSA-SHA256 of `message` with the platform private key (cached per process)."""
    return crypto.rsa_sign(_platform_private_pem(), message)


def platform_public_key_pem() -> str:
    return platform_key_ensure().public_key_pem


def platform_key_cache_clear() -> None:
    _platform_private_pem.cache_clear()
