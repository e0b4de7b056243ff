"""The Ping++ v1 wire shape of payments objects, shared by the API and by events."""

from apps.core.money import to_minor, wire_currency
from apps.payments.models import Charge, Refund, RefundStatus

EMBEDDED_REFUNDS = 10


def unix(dt) -> int | None:
    return int(dt.timestamp()) if dt else None


def charge_to_wire(charge: Charge) -> dict:
    amount = to_minor(charge.amount)
    refunds = _recent_refunds(charge)
    return {
        "id": charge.public_id,
        "object": "charge",
        "created": unix(charge.created_at),
        "livemode": charge.livemode,
        "paid": charge.paid,
        "refunded": bool(refunds),
        "reversed": charge.reversed,
        "app": charge.app.public_id,
        "channel": charge.channel,
        "order_no": charge.order.order_no,
        "client_ip": charge.client_ip,
        "amount": amount,
        "amount_settle": to_minor(charge.refundable_base),
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
            "has_more": len(refunds) > EMBEDDED_REFUNDS,
            "data": [refund_to_wire(r, charge=charge) for r in refunds[:EMBEDDED_REFUNDS]],
        },
        "amount_refunded": to_minor(charge.amount_refunded) if charge.amount_refunded else 0,
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


def _recent_refunds(charge: Charge) -> list[Refund]:
    if charge.status != "succeeded":
        return []
    return list(charge.refunds.order_by("-pk")[: EMBEDDED_REFUNDS + 1])


def refund_to_wire(refund: Refund, *, charge: Charge) -> dict:
    return {
        "id": refund.public_id,
        "object": "refund",
        "order_no": refund.public_id.removeprefix("re_"),
        "amount": to_minor(refund.amount),
        "created": unix(refund.created_at),
        "succeed": refund.status == RefundStatus.SUCCEEDED,
        "status": refund.status,
        "time_succeed": unix(refund.succeeded_at),
        "description": refund.description,
        "failure_code": refund.failure_code or None,
        "failure_msg": refund.failure_msg or None,
        "metadata": refund.metadata or {},
        "charge": charge.public_id,
        "charge_order_no": charge.order.order_no,
        "transaction_no": refund.transaction_no or None,
        "funding_source": refund.funding_source or None,
        "extra": {},
    }
