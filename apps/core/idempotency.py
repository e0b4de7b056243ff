"""Idempotency keys on every merchant POST, with Stripe's semantics.

- The first request with a key runs; its response (status and body) is stored and replayed to
  every later request with the same key, app and mode.
- The same key with different parameters (method, path or raw body) is refused with 422.
- While the first request is still running, a repeat is refused with 409.
- A 400 (the request failed validation before anything ran) releases the key, so the merchant
  can correct the request and send it again under the same key.
- Keys are kept for `PAYSYS_IDEMPOTENCY_KEY_TTL_HOURS` (24 h) and then purged by a periodic task.
"""

import functools
import hashlib
import hmac
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.response import Response

from apps.core.errors import PaysysError
from apps.core.models import IdempotencyKey

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


class IdempotencyKeyInUse(PaysysError):
    status = 409
    default_code = "idempotency_key_in_use"


class IdempotencyKeyReused(PaysysError):
    status = 422
    default_code = "idempotency_key_reused"


class IdempotencyKeyInvalid(PaysysError):
    status = 400
    default_code = "idempotency_key_invalid"


def _request_hash(request) -> str:
    """A keyed digest (HMAC-SHA256 with SECRET_KEY) of method, path and raw body: a body may carry a
    card number, whose few unknown digits a plain hash would not protect."""
    digest = hmac.new(settings.SECRET_KEY.encode(), digestmod=hashlib.sha256)
    digest.update(request.method.encode() + b" " + request.path.encode() + b"\n")
    digest.update(request._request.body)
    return digest.hexdigest()


def _claim(*, app_id: int, livemode: bool, key: str, request_hash: str, request_id: str) -> IdempotencyKey | None:
    """Inserts the key as in flight; returns None if this request won it, else the existing row."""
    try:
        with transaction.atomic():
            IdempotencyKey.objects.create(
                app_id=app_id, livemode=livemode, key=key, request_hash=request_hash, request_id=request_id
            )
        return None
    except IntegrityError:
        return IdempotencyKey.objects.get(app_id=app_id, livemode=livemode, key=key)


def _replay(existing: IdempotencyKey, request_hash: str) -> Response:
    if existing.request_hash != request_hash:
        raise IdempotencyKeyReused(
            f"Keys for idempotent requests can only be used with the same parameters they were first used with; "
            f"{existing.key!r} was used for another request.",
        )
    if existing.response_status is None:
        raise IdempotencyKeyInUse(f"A request with idempotency key {existing.key!r} is still being processed.")
    response = Response(existing.response_body, status=existing.response_status)
    response["Idempotent-Replayed"] = "true"
    return response


def idempotent(handler):
    """Wraps an APIView `post` so that `Idempotency-Key` makes it safe to retry."""

    @functools.wraps(handler)
    def wrapper(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return handler(view, request, *args, **kwargs)
        if not key or len(key) > MAX_KEY_LENGTH:
            raise IdempotencyKeyInvalid(f"{HEADER} must be 1 to {MAX_KEY_LENGTH} characters.")
        principal = request.user
        scope = {"app_id": principal.app.pk, "livemode": principal.livemode, "key": key}
        request_hash = _request_hash(request)
        existing = _claim(**scope, request_hash=request_hash, request_id=getattr(request, "request_id", ""))
        if existing is not None:
            return _replay(existing, request_hash)
        try:
            response = handler(view, request, *args, **kwargs)
        except Exception as exc:
            response = view.handle_exception(exc)
        if response.status_code == 400:
            IdempotencyKey.objects.filter(**scope).delete()
        else:
            IdempotencyKey.objects.filter(**scope).update(
                response_status=response.status_code, response_body=response.data
            )
        return response

    return wrapper


def idempotency_keys_purge(*, now=None) -> int:
    """Deletes keys older than the retention period; returns how many."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.PAYSYS_IDEMPOTENCY_KEY_TTL_HOURS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
