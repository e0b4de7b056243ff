"""Merchant API authentication as Ping++ does it.

- The secret key arrives as `Authorization: Bearer sk_…` (Python, Java SDKs) or HTTP Basic with
  the key as user name (Go SDK).
- `Pingplusplus-Signature` is base64 RSA-SHA256 (PKCS#1 v1.5) over raw body + request URI (path
  and raw query) + `Pingplusplus-Request-Timestamp`, verified with the app's public key. It is
  required for live keys, and for test keys once the app has a public key. The timestamp must be
  within the tolerance window, and a signature is accepted only once (replay cache in Redis).
"""

import base64
import binascii
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from rest_framework.authentication import BaseAuthentication

from apps.core import crypto
from apps.merchants.exceptions import (
    ApiKeyInvalid,
    ApiKeyMissing,
    SignatureInvalid,
    SignatureReplayed,
    SignatureTimestampInvalid,
)
from apps.merchants.models import App
from apps.merchants.selectors import api_key_get_active
from apps.merchants.services import api_key_hash


@dataclass(frozen=True)
class MerchantPrincipal:
    """Who is calling: an app in test or live mode. Stands in `request.user` for DRF."""

    app: App
    livemode: bool

    is_authenticated = True
    is_anonymous = False


def _raw_key(header: str) -> str | None:
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return credentials.strip() or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    return None


def verify_request_signature(*, public_key_pem: str, body: bytes, uri: str, timestamp: str, signature: str) -> None:
    """Raises unless the signature is fresh, valid and not seen before."""
    if not public_key_pem:
        raise SignatureInvalid("Live mode needs the app's RSA public key; add it to the app first.")
    if not signature:
        raise SignatureInvalid("This request must be signed: Pingplusplus-Signature is missing.")
    try:
        sent_at = int(timestamp)
    except (TypeError, ValueError):
        raise SignatureTimestampInvalid("Pingplusplus-Request-Timestamp is missing or not a number.") from None
    if abs(time.time() - sent_at) > settings.PAYSYS_SIGNATURE_TOLERANCE_SECONDS:
        raise SignatureTimestampInvalid("Pingplusplus-Request-Timestamp is outside the allowed window.")
    if not crypto.rsa_verify(public_key_pem, body + uri.encode() + timestamp.encode(), signature):
        raise SignatureInvalid("Pingplusplus-Signature does not verify with the app's public key.")
    replay_key = f"sig:{crypto.sha256_hex(signature.encode())}"
    if not cache.add(replay_key, 1, timeout=2 * settings.PAYSYS_SIGNATURE_TOLERANCE_SECONDS + 60):
        raise SignatureReplayed("This signature was already used; sign every request afresh.")


class SecretKeyAuthentication(BaseAuthentication):
    def authenticate(self, request):
        raw = _raw_key(request.META.get("HTTP_AUTHORIZATION", ""))
        if not raw:
            raise ApiKeyMissing("No API key provided: use Authorization: Bearer <secret key>.")
        api_key = api_key_get_active(key_hash=api_key_hash(raw))
        if api_key is None or not raw.startswith(("sk_test_", "sk_live_")):
            raise ApiKeyInvalid("Invalid API key provided.")
        app = api_key.app
        if api_key.livemode or app.requires_signature_in_test_mode:
            verify_request_signature(
                public_key_pem=app.public_key_pem,
                body=request._request.body,
                uri=request._request.get_full_path(),
                timestamp=request.META.get("HTTP_PINGPLUSPLUS_REQUEST_TIMESTAMP", ""),
                signature=request.META.get("HTTP_PINGPLUSPLUS_SIGNATURE", ""),
            )
        return MerchantPrincipal(app=app, livemode=api_key.livemode), api_key

    def authenticate_header(self, request):
        return 'Bearer realm="paysys"'
