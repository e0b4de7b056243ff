"""What the fault run checks once it has driven its charges and refunds: paysys against what each
sandbox holds, orders against their charges, webhooks against events, and the ledger."""

import io
import json
import time
from collections import Counter, defaultdict
from decimal import Decimal

from django.core.management import call_command

from apps.channels.models import ChannelCall
from apps.events.models import Event, WebhookDelivery, WebhookDeliveryStatus
from apps.orders.models import Order, OrderStatus
from apps.payments.models import Charge, ChargeStatus, Refund, RefundStatus
from tests.faults.sandboxes import Held, HeldRefund, Sandbox

Snapshot = dict[int, tuple[dict[str, Held], dict[str, HeldRefund]]]  # channel account id -> held


def snapshot(sandboxes: list[Sandbox]) -> Snapshot:
    return {s.account.pk: (s.payments(), s.refunds()) for s in sandboxes}


def _charge_problem(charge: Charge, held: Held | None) -> str | None:
    if held is None:  # the provider never created it: only a create that failed (5xx) may say so
        return None if charge.status == ChargeStatus.FAILED else f"{charge.public_id} is {charge.status} but unknown"
    if held.paid:
        if charge.status != ChargeStatus.SUCCEEDED:
            return f"{charge.public_id} is {charge.status}; the provider has it paid"
        if charge.transaction_no != held.trade_no:
            return f"{charge.public_id} transaction_no {charge.transaction_no!r} != {held.trade_no!r}"
        refunded = charge.amount_refunded.amount if charge.amount_refunded is not None else Decimal(0)
        if refunded != held.refunded:
            return f"{charge.public_id} refunded {refunded} but the provider refunded {held.refunded}"
    elif held.ended_unpaid:
        if charge.status not in (ChargeStatus.CLOSED, ChargeStatus.FAILED):
            return f"{charge.public_id} is {charge.status} but the provider ended it unpaid"
    elif charge.status not in (ChargeStatus.CREATED, ChargeStatus.PENDING) and not (
        charge.status == ChargeStatus.CLOSED and not held.known  # closed before the provider knew of it
    ):
        return f"{charge.public_id} is {charge.status} but the provider waits for payment"
    return None


def _refund_problem(refund: Refund, held: HeldRefund | None) -> str | None:
    if refund.status == RefundStatus.PENDING:
        return f"refund {refund.public_id} still pending (the provider has it: {held is not None})"
    if refund.status == RefundStatus.FAILED:
        return None if held is None else f"refund {refund.public_id} failed but the provider refunded it"
    if held is None or not held.settled:
        return f"refund {refund.public_id} succeeded but the provider has not refunded it ({held})"
    if (held.amount, held.charge_id) != (refund.amount.amount, refund.charge.public_id):
        return f"refund {refund.public_id} differs from the provider's {held}"
    return None


def money_mismatches(state: Snapshot) -> list[str]:
    """Every charge and refund against its provider's own record; empty when they agree."""
    problems = [
        _charge_problem(charge, state[charge.channel_account_id][0].get(charge.public_id))
        for charge in Charge.objects.all()
    ]
    held_refunds = {no: held for _, refunds in state.values() for no, held in refunds.items()}
    paysys_refunds = {r.public_id: r for r in Refund.objects.select_related("charge")}
    problems += [_refund_problem(refund, held_refunds.get(no)) for no, refund in paysys_refunds.items()]
    problems += [f"the provider refunded {no}, which paysys does not know" for no in held_refunds.keys()
                 - paysys_refunds.keys()]  # fmt: skip
    return [p for p in problems if p]


def webhook_mismatches(receiver) -> list[str]:
    received = {json.loads(r.body)["id"] for r in list(receiver.received)}
    problems = [f"event {e} never reached the receiver" for e in Event.objects.exclude(public_id__in=received)
                .values_list("public_id", flat=True)]  # fmt: skip
    undelivered = WebhookDelivery.objects.exclude(status=WebhookDeliveryStatus.DELIVERED).count()
    if undelivered:
        problems.append(f"{undelivered} webhook deliveries not delivered")
    return problems


def wait_for_convergence(checks, *, seconds: float) -> tuple[float, list[str], list[str]]:
    """Runs `checks()` (problems, empty when all is well) every 2 s until it is empty or `seconds`
    pass; returns the wait, the problems left, and the last ones seen before they cleared."""
    started = time.monotonic()
    problems, last = [], []
    while time.monotonic() - started < seconds:
        problems = checks()
        if not problems:
            break
        last = problems
        time.sleep(2)
    return time.monotonic() - started, problems, last


def order_mismatches() -> list[str]:
    """Each order's state from its charges: paid (and how much refunded), open, or closed."""
    problems = []
    for order in Order.objects.prefetch_related("charges"):
        charges = list(order.charges.all())
        paying = [c for c in charges if c.status == ChargeStatus.SUCCEEDED and c.exception != "duplicate_payment"]
        if len(paying) > 1:
            problems.append(f"order {order.order_no} paid by {len(paying)} charges without a duplicate flag")
            continue
        if paying:
            refunded = paying[0].amount_refunded.amount if paying[0].amount_refunded is not None else 0
            expected = (
                OrderStatus.PAID if not refunded
                else OrderStatus.REFUNDED if refunded == paying[0].amount.amount
                else OrderStatus.PARTIALLY_REFUNDED
            )  # fmt: skip
        elif any(c.status in (ChargeStatus.CREATED, ChargeStatus.PENDING) for c in charges) or all(
            c.status == ChargeStatus.FAILED for c in charges
        ):
            expected = OrderStatus.CREATED  # something can still pay it (a failed create leaves it open)
        else:
            expected = OrderStatus.CLOSED
        if order.status != expected:
            problems.append(f"order {order.order_no} is {order.status}, expected {expected}")
    return problems


def call_log_summary(account_id: int) -> str:
    rows = ChannelCall.objects.filter(account_id=account_id).values_list("operation", "outcome", "latency_ms")
    by_operation = defaultdict(list)
    for operation, outcome, latency in rows:
        by_operation[operation].append((outcome, latency))
    parts = []
    for operation, calls in sorted(by_operation.items()):
        latencies = sorted(latency for _, latency in calls)
        parts.append(
            f"{operation} {dict(Counter(o for o, _ in calls))} p50 {latencies[len(latencies) // 2]} ms "
            f"max {latencies[-1]} ms"
        )
    return "; ".join(parts)


def ledger_check() -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("ledger_check", stdout=out, stderr=err)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue() + err.getvalue()
    return 0, out.getvalue() + err.getvalue()
