"""The Ping++ v1 wire shape of payments objects, shared by the API and by events."""

from apps.core.money import to_minor, wire_currency
from apps.payments.models import Charge


def unix(dt) -> int | None:
    return int(dt.timestamp()) if dt else None


def charge_to_wire(charge: Charge) -> dict:
    amount = to_minor(charge.amount)
    return {
        "id": charge.public_id,
        "object": "charge",
        "created": unix(charge.created_at),
        "livemode": charge.livemode,
        "paid": charge.paid,
        "refunded": False,
        "reversed": False,
        "app": charge.app.public_id,
        "channel": charge.channel,
        "order_no": charge.order.order_no,
        "client_ip": charge.client_ip,
        "amount": amount,
        "amount_settle": amount,
        "currency": wire_currency(charge.amount.currency),
        "subject": charge.subject,
        "body": charge.body,
        "extra": charge.extra or {},
        "time_paid": unix(charge.paid_at),
        "time_expire": unix(charge.time_expire),
        "time_settle": None,
        "transaction_no": charge.transaction_no or None,
        "refunds": {
            "object": "list",
            "url": f"/v1/charges/{charge.public_id}/refunds",
            "has_more": False,
            "data": [],
        },
        "amount_refunded": 0,
        "failure_code": charge.failure_code or None,
        "failure_msg": charge.failure_msg or None,
        "metadata": charge.metadata or {},
        "credential": _credential(charge),
        "description": charge.description or None,
    }


def _credential(charge: Charge) -> dict:
    """`{}` once paid (as Ping++), else `{"object": "credential", "<channel>": …}`."""
    if charge.paid or not charge.credential:
        return {}
    return {"object": "credential", **charge.credential}
