"""The Ping++ event object (PINGPP.md §3) and the exact bytes a webhook sends."""

import json

from apps.events.models import Event, WebhookDeliveryStatus


def event_to_wire(event: Event, *, pending_webhooks: int | None = None) -> dict:
    """The event as the API returns it; `pending_webhooks` counts deliveries not yet delivered now."""
    if pending_webhooks is None:
        pending_webhooks = event.deliveries.exclude(status=WebhookDeliveryStatus.DELIVERED).count()
    return {
        "id": event.public_id,
        "object": "event",
        "livemode": event.livemode,
        "created": int(event.created_at.timestamp()),
        "type": event.type,
        "data": event.data,
        "pending_webhooks": pending_webhooks,
        # Must be a string or null: the Go and Java SDKs type it as String.
        "request": event.request_id or None,
    }


def wire_body(wire: dict) -> str:
    """Compact JSON, as Ping++ sends it; UTF-8 encoded it is what the signature covers."""
    return json.dumps(wire, separators=(",", ":"), ensure_ascii=False)
