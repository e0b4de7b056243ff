import hashlib
import secrets
from dataclasses import dataclass

from django.db import transaction

from apps.core import crypto
from apps.merchants.exceptions import MerchantKeyInvalid
from apps.merchants.models import ApiKey, App, Merchant, WebhookEndpoint


def api_key_hash(raw_key: str) -> str:
    """Keys carry 192 bits of randomness, so a plain SHA-256 is a safe, indexable digest."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedKeys:
    test_secret_key: str
    live_secret_key: str


def api_key_create(*, app: App, livemode: bool) -> str:
    """Creates a secret key and returns it; this is the only time it is ever visible."""
    raw = f"sk_{'live' if livemode else 'test'}_{secrets.token_urlsafe(24)}"
    ApiKey.objects.create(app=app, livemode=livemode, key_hash=api_key_hash(raw), display_prefix=raw[:12])
    return raw


def merchant_get_or_create(*, name: str) -> Merchant:
    merchant, _ = Merchant.objects.get_or_create(name=name)
    return merchant


def _validated_public_key(public_key_pem: str) -> str:
    if not public_key_pem:
        return ""
    try:
        crypto.load_public_key(public_key_pem.strip() + "\n")
    except crypto.KeyError_ as exc:
        raise MerchantKeyInvalid(f"The merchant public key is not a usable RSA key: {exc}.") from exc
    return public_key_pem.strip() + "\n"


@transaction.atomic
def app_create(
    *, merchant: Merchant, name: str, public_key_pem: str = "", webhook_url: str = ""
) -> tuple[App, IssuedKeys]:
    """An app with a test and a live key, its signing key and optionally one webhook endpoint."""
    app = App.objects.create(merchant=merchant, name=name, public_key_pem=_validated_public_key(public_key_pem))
    keys = IssuedKeys(
        test_secret_key=api_key_create(app=app, livemode=False),
        live_secret_key=api_key_create(app=app, livemode=True),
    )
    if webhook_url:
        webhook_endpoint_create(app=app, url=webhook_url)
    return app, keys


def app_set_public_key(*, app: App, public_key_pem: str) -> App:
    app.public_key_pem = _validated_public_key(public_key_pem)
    app.save(update_fields=["public_key_pem"])
    return app


def webhook_endpoint_create(*, app: App, url: str) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(app=app, url=url)
