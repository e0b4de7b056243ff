from apps.merchants.models import ApiKey, App, WebhookEndpoint


def api_key_get_active(*, key_hash: str) -> ApiKey | None:
    return ApiKey.objects.select_related("app").filter(key_hash=key_hash, revoked_at__isnull=True).first()


def app_get(*, public_id: str) -> App | None:
    return App.objects.filter(public_id=public_id).first()


def webhook_endpoints_for_app(*, app_id: int) -> list[WebhookEndpoint]:
    return list(WebhookEndpoint.objects.filter(app_id=app_id, enabled=True))
