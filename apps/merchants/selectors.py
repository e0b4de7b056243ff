from cachetools.func import ttl_cache

from apps.merchants.models import ApiKey, App, WebhookEndpoint

# Every API request authenticates; a key and its app change rarely. A revoked key stops working
# within this many seconds on every process.
API_KEY_CACHE_SECONDS = 30


@ttl_cache(maxsize=4096, ttl=API_KEY_CACHE_SECONDS)
def _api_key_cached(key_hash: str) -> ApiKey | None:
    return ApiKey.objects.select_related("app").filter(key_hash=key_hash, revoked_at__isnull=True).first()


def api_key_get_active(*, key_hash: str) -> ApiKey | None:
    """The active key with its app; cached per process (see API_KEY_CACHE_SECONDS)."""
    return _api_key_cached(key_hash)


def api_key_cache_clear() -> None:
    _api_key_cached.cache_clear()


def app_get(*, public_id: str) -> App | None:
    return App.objects.filter(public_id=public_id).first()


def webhook_endpoints_for_app(*, app_id: int) -> list[WebhookEndpoint]:
    return list(WebhookEndpoint.objects.filter(app_id=app_id, enabled=True))
