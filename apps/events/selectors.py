from django.db.models import QuerySet

from apps.events.models import Event, WebhookDelivery


def event_get_for_app(*, app_id: int, public_id: str) -> Event | None:
    """An event of this app, or None (another app's event is not found, never forbidden)."""
    return Event.objects.filter(app_id=app_id, public_id=public_id).first()


def events_for_app(*, app_id: int, livemode: bool) -> QuerySet[Event]:
    """Newest first, for the events list."""
    return Event.objects.filter(app_id=app_id, livemode=livemode).order_by("-created_at", "-pk")


def webhook_deliveries_for_event(*, event_id: int) -> list[WebhookDelivery]:
    return list(WebhookDelivery.objects.filter(event_id=event_id).select_related("endpoint").order_by("pk"))
