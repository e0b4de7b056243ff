"""Refunds: three phases as for charges, settled by the provider's answer, notification or query.

1. `refund_open`: under the charge lock, check what is still refundable and commit `pending`.
   Pending and succeeded refunds both count against the charge, so concurrent requests can never
   refund more than was paid.
2. `refund_submit`: the provider call, outside any transaction. Providers deduplicate on our
   refund id, so a refund whose outcome is unknown is simply submitted again.
3. `refund_apply_provider_result`: one transaction: the refund, the charge's refunded total, the
   order, and the `refund.succeeded` / `refund.failed` event.

Lock order: charge, refund, order (the same as everywhere in the pay core).
"""

import logging

from django.db import transaction
from django.utils import timezone
from moneyed import Money

from apps.channels.adapters.base import (
    ChannelRejected,
    ChannelResponseInvalid,
    ChannelTimeout,
    ChannelUnavailable,
    RefundRequest,
    RefundResult,
)
from apps.channels.adapters.base import (
    RefundStatus as ProviderRefundStatus,
)
from apps.channels.services import adapter_for, notify_url_for
from apps.events.services import event_create
from apps.ledger import services as ledger
from apps.orders.services import order_lock, order_record_refund
from apps.payments import exceptions as errors
from apps.payments.due import query_delay, schedule_next_query
from apps.payments.models import Charge, ChargeException, ChargeStatus, Refund, RefundStatus, RefundTransition
from apps.payments.wire import refund_to_wire

logger = logging.getLogger(__name__)

# `Refund.automatic`: why paysys opened a refund by itself, named after the charge's hold.
AUTOMATIC_DUPLICATE_PAYMENT = ChargeException.DUPLICATE_PAYMENT.value
AUTOMATIC_AMOUNT_MISMATCH = ChargeException.AMOUNT_MISMATCH.value
AUTOMATIC_PAID_AFTER_CLOSE = ChargeException.PAID_AFTER_CLOSE.value
# Refunds of money that never paid the order: the order's state does not follow them.
ORDER_UNTOUCHED = (AUTOMATIC_DUPLICATE_PAYMENT, AUTOMATIC_AMOUNT_MISMATCH, AUTOMATIC_PAID_AFTER_CLOSE)


def _audit(refund: Refund, source: str, *, by: str, request_id: str, detail: dict | None = None) -> None:
    RefundTransition.objects.create(
        refund=refund, source=source, target=refund.status, by=by, request_id=request_id, detail=detail or {}
    )


def _charge_lock(charge_id: int) -> Charge:
    return Charge.objects.select_for_update().select_related("app", "order", "channel_account").get(pk=charge_id)


def _refund_lock(refund_id: int) -> Refund:
    return Refund.objects.select_for_update().get(pk=refund_id)


def _committed(charge: Charge) -> Money:
    """What pending and succeeded refunds already take out of the charge."""
    total = Money(0, charge.amount.currency)
    for amount in charge.refunds.exclude(status=RefundStatus.FAILED).values_list("amount", flat=True):
        total += Money(amount, charge.amount.currency)
    return total


def refund_open_locked(
    *,
    charge: Charge,
    amount: Money | None,
    description: str,
    metadata: dict,
    request_id: str,
    by: str,
    automatic: str = "",
) -> Refund:
    """Phase 1 on an already locked charge (the caller's transaction)."""
    if charge.status != ChargeStatus.SUCCEEDED:
        raise errors.ChargeNotRefundable(f"Charge {charge.public_id} is {charge.status}: only paid charges refund.")
    remaining = charge.refundable_base - _committed(charge)
    if remaining.amount <= 0:
        raise errors.ChargeAlreadyRefunded(f"Charge {charge.public_id} is already fully refunded.")
    amount = remaining if amount is None else amount
    if amount.currency != charge.amount.currency:
        raise errors.AmountExceedsRefundable("A refund is in the charge's currency.", param="amount")
    if amount > remaining:
        raise errors.AmountExceedsRefundable(
            f"amount exceeds what is refundable ({remaining.amount} {remaining.currency.code}).", param="amount"
        )
    refund = Refund.objects.create(
        charge=charge, amount=amount, description=description, metadata=metadata, request_id=request_id,
        automatic=automatic, next_query_at=timezone.now() + query_delay(0),
    )  # fmt: skip
    _audit(refund, "", by=by, request_id=request_id)
    return refund


@transaction.atomic
def refund_open(*, charge_id: int, amount: Money | None, description: str, metadata: dict, request_id: str) -> Refund:
    charge = _charge_lock(charge_id)
    return refund_open_locked(
        charge=charge, amount=amount, description=description, metadata=metadata, request_id=request_id, by="api"
    )


def refund_create(*, charge: Charge, amount: Money | None, description: str, metadata: dict, request_id: str) -> Refund:
    """Refunds part or all of a paid charge: validate and commit, then ask the provider."""
    refund = refund_open(
        charge_id=charge.pk, amount=amount, description=description, metadata=metadata, request_id=request_id
    )
    return refund_submit(refund_id=refund.pk, request_id=request_id)


def refund_submit(*, refund_id: int, request_id: str) -> Refund:
    """Phase 2 and 3: asks the provider to refund and applies its answer.

    A timeout or an unverifiable answer leaves the refund pending for the refund query. A
    provider that was never reached, or that refuses, fails the refund (retryable in the console).
    """
    refund = Refund.objects.select_related("charge__channel_account").get(pk=refund_id)
    if refund.status != RefundStatus.PENDING:
        return refund
    charge = refund.charge
    account = charge.channel_account
    try:
        result = adapter_for(account).refund(
            RefundRequest(
                out_trade_no=charge.public_id, transaction_no=charge.transaction_no, out_refund_no=refund.public_id,
                amount=refund.amount, total_amount=charge.refundable_base, reason=refund.description or "refund",
                notify_url=notify_url_for(account), requested_at=refund.created_at,
            )
        )  # fmt: skip
    except (ChannelTimeout, ChannelResponseInvalid) as exc:
        logger.warning("refund %s: outcome unknown (%s); the refund query settles it", refund.public_id, exc.message)
        return refund
    except (ChannelUnavailable, ChannelRejected) as exc:
        return refund_fail(refund_id=refund.pk, failure_code=exc.code or type(exc).__name__,
                           failure_msg=exc.message, by="provider", request_id=request_id)  # fmt: skip
    Refund.objects.filter(pk=refund.pk, submitted_at__isnull=True).update(submitted_at=timezone.now())
    return refund_apply_provider_result(refund_id=refund.pk, result=result, by="provider", request_id=request_id)


def refund_apply_provider_result(*, refund_id: int, result: RefundResult, by: str, request_id: str) -> Refund:
    """Applies the provider's statement about a refund, once (answer, notification or query)."""
    refund = Refund.objects.only("charge_id").get(pk=refund_id)
    with transaction.atomic():
        charge = _charge_lock(refund.charge_id)
        refund = _refund_lock(refund_id)
        if refund.status != RefundStatus.PENDING:
            return refund
        if result.status == ProviderRefundStatus.SUCCEEDED:
            _succeed(refund, charge, result, by=by, request_id=request_id)
        elif result.status == ProviderRefundStatus.FAILED:
            _fail(refund, charge, result.failure_code or "refund_failed", result.failure_msg, by=by,
                  request_id=request_id)  # fmt: skip
    return refund


def refund_fail(*, refund_id: int, failure_code: str, failure_msg: str, by: str, request_id: str) -> Refund:
    refund = Refund.objects.only("charge_id").get(pk=refund_id)
    with transaction.atomic():
        charge = _charge_lock(refund.charge_id)
        refund = _refund_lock(refund_id)
        if refund.status == RefundStatus.PENDING:
            _fail(refund, charge, failure_code, failure_msg, by=by, request_id=request_id)
    return refund


def _succeed(refund: Refund, charge: Charge, result: RefundResult, *, by: str, request_id: str) -> None:
    refund.succeed(succeeded_at=result.succeeded_at or timezone.now(), transaction_no=result.refund_no or "")
    refund.save()
    _audit(refund, RefundStatus.PENDING, by=by, request_id=request_id)
    zero = Money(0, charge.amount.currency)
    refunded_before = charge.amount_refunded or zero
    refunded = refunded_before + refund.amount
    Charge.objects.filter(pk=charge.pk).update(amount_refunded=refunded)
    charge.amount_refunded = refunded
    if refund.automatic not in ORDER_UNTOUCHED:
        order = order_lock(order_id=charge.order_id)
        order_record_refund(
            order=order, fully_refunded=refunded == charge.refundable_base, by=by, request_id=request_id
        )
    event_create(app=charge.app, type="refund.succeeded", livemode=charge.livemode,
                 data_object=refund_to_wire(refund, charge=charge), request_id=request_id)  # fmt: skip
    # Last in the transaction: the ledger's account locks come after the charge, refund and order.
    ledger.refund_succeeded_post(
        reference=refund.public_id, livemode=charge.livemode, app_id=charge.app_id,
        merchant_id=charge.app.merchant_id, channel_account_id=charge.channel_account_id,
        charge_amount=charge.refundable_base, refunded_before=refunded_before, amount=refund.amount,
        platform_fee=charge.platform_fee or zero, channel_fee=charge.channel_fee or zero,
        occurred_at=refund.succeeded_at,
    )  # fmt: skip


def _fail(refund: Refund, charge: Charge, code: str, message: str, *, by: str, request_id: str) -> None:
    refund.fail(failure_code=code, failure_msg=message or code)
    refund.save()
    _audit(refund, RefundStatus.PENDING, by=by, request_id=request_id, detail={"failure_code": code})
    event_create(app=charge.app, type="refund.failed", livemode=charge.livemode,
                 data_object=refund_to_wire(refund, charge=charge), request_id=request_id)  # fmt: skip


def refund_retry(*, refund_id: int, by: str, request_id: str = "") -> Refund:
    """Console: a failed refund is submitted again (under the charge lock, still within refundable)."""
    refund = Refund.objects.only("charge_id").get(pk=refund_id)
    with transaction.atomic():
        charge = _charge_lock(refund.charge_id)
        refund = _refund_lock(refund_id)
        remaining = charge.refundable_base - _committed(charge)
        if refund.amount > remaining:
            raise errors.AmountExceedsRefundable("Retrying would refund more than was paid.", param="amount")
        refund.retry()
        refund.next_query_at = timezone.now() + query_delay(0)
        refund.save()
        _audit(refund, RefundStatus.FAILED, by=by, request_id=request_id)
    transaction.on_commit(lambda: _enqueue_submit(refund.pk))
    return refund


def _enqueue_submit(refund_id: int) -> None:
    from apps.payments.tasks import refund_submit_task

    refund_submit_task.delay(refund_id)


def refund_query(*, refund_id: int, request_id: str = "") -> Refund:
    """Active refund query: settles a pending refund from the provider's record."""
    refund = Refund.objects.select_related("charge__channel_account").get(pk=refund_id)
    if refund.status != RefundStatus.PENDING:
        return refund
    charge = refund.charge
    try:
        result = adapter_for(charge.channel_account).query_refund(
            out_trade_no=charge.public_id,
            out_refund_no=refund.public_id,
            currency=charge.amount.currency.code,
            requested_at=refund.created_at,
        )
    except (ChannelTimeout, ChannelResponseInvalid, ChannelUnavailable, ChannelRejected) as exc:
        logger.info("refund %s query failed: %s", refund.public_id, exc.message)
        schedule_next_query(Refund, refund.pk, attempts=refund.query_attempts)
        return refund
    if result.status == ProviderRefundStatus.NOT_FOUND:
        # The provider never received it (or dropped it): submit again; it deduplicates on our id.
        schedule_next_query(Refund, refund.pk, attempts=refund.query_attempts)
        return refund_submit(refund_id=refund.pk, request_id=request_id)
    if result.status == ProviderRefundStatus.PENDING:
        schedule_next_query(Refund, refund.pk, attempts=refund.query_attempts)
        return refund
    return refund_apply_provider_result(refund_id=refund.pk, result=result, by="query", request_id=request_id)
