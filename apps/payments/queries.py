"""Active query, expiry and reverse: how an open charge reaches the state the provider holds.

A succeeded answer takes the same code path as a notification (`charge_apply_provider_result`).
At `time_expire` the charge is closed at the provider first, then locally; the order closes when
none of its charges can still succeed.
"""

import logging

from django.db import transaction
from django.utils import timezone

from apps.channels.adapters import adapter_class
from apps.channels.adapters.base import (
    ChannelFailure,
    ChannelRejected,
    PaymentStatus,
)
from apps.channels.services import adapter_for
from apps.payments import exceptions as errors
from apps.payments.due import schedule_next_query
from apps.payments.models import OPEN_STATUSES, Charge, ChargeException, ChargeStatus
from apps.payments.services import charge_apply_provider_result, charge_close_locked, charge_lock

logger = logging.getLogger(__name__)


def charge_query(*, charge_id: int, request_id: str = "") -> Charge:
    """Asks the provider about an open charge and applies the answer; expires it when due."""
    charge = Charge.objects.select_related("channel_account").get(pk=charge_id)
    if charge.status not in OPEN_STATUSES:
        Charge.objects.filter(pk=charge.pk).update(next_query_at=None)
        return charge
    try:
        result = adapter_for(charge.channel_account).query_payment(
            out_trade_no=charge.public_id, currency=charge.amount.currency.code, requested_at=charge.created_at
        )
    except ChannelFailure as exc:
        logger.info("charge %s query failed: %s", charge.public_id, exc.message)
        schedule_next_query(Charge, charge.pk, attempts=charge.query_attempts)
        return charge
    if result.status in (PaymentStatus.SUCCEEDED, PaymentStatus.CLOSED, PaymentStatus.FAILED):
        charge = charge_apply_provider_result(charge_id=charge.pk, result=result, by="query", request_id=request_id)
        if charge.status in OPEN_STATUSES and charge.exception == ChargeException.AMOUNT_MISMATCH:
            # The provider's own record holds another amount: asking again changes nothing, and the
            # paid trade cannot be closed at expiry. The console settles it (accept or refund).
            Charge.objects.filter(pk=charge.pk).update(next_query_at=None)
            charge.next_query_at = None
        return charge
    if timezone.now() >= charge.time_expire:
        return charge_expire(charge_id=charge.pk, request_id=request_id)
    schedule_next_query(Charge, charge.pk, attempts=charge.query_attempts)
    return charge


def charge_expire(*, charge_id: int, request_id: str = "", by: str = "expiry") -> Charge:
    """Closes an open charge at the provider, then locally (and its order when nothing can pay it)."""
    charge = Charge.objects.select_related("channel_account").get(pk=charge_id)
    if charge.status not in OPEN_STATUSES:
        return charge
    try:
        adapter_for(charge.channel_account).close_payment(out_trade_no=charge.public_id, requested_at=charge.created_at)
    except ChannelRejected:
        # The provider refuses to close: it was paid meanwhile. Its record decides, once it answers.
        try:
            result = adapter_for(charge.channel_account).query_payment(
                out_trade_no=charge.public_id, currency=charge.amount.currency.code, requested_at=charge.created_at
            )
        except ChannelFailure as exc:
            logger.info("charge %s: close refused and query failed (%s); retried later", charge.public_id, exc.message)
            schedule_next_query(Charge, charge.pk, attempts=charge.query_attempts)
            return charge
        return charge_apply_provider_result(charge_id=charge.pk, result=result, by=by, request_id=request_id)
    except ChannelFailure as exc:
        logger.info("charge %s close failed: %s; retried by the next query", charge.public_id, exc.message)
        schedule_next_query(Charge, charge.pk, attempts=charge.query_attempts)
        return charge
    return charge_close_locally(charge_id=charge.pk, by=by, request_id=request_id)


@transaction.atomic
def charge_close_locally(*, charge_id: int, by: str, request_id: str, reversed_: bool = False) -> Charge:
    """After the provider confirmed the close: the charge, and the order if nothing can pay it now."""
    charge = charge_lock(charge_id=charge_id)
    if charge.status in OPEN_STATUSES:
        charge_close_locked(charge=charge, by=by, request_id=request_id, reversed_=reversed_)
    return charge


def charge_reverse(*, charge: Charge, request_id: str) -> Charge:
    """Ping++ reverse: close an unpaid charge at the provider, then locally. A paid charge refuses."""
    if charge.status == ChargeStatus.SUCCEEDED:
        raise errors.ChargeAlreadyPaid(f"Charge {charge.public_id} is paid: refund it instead of reversing it.")
    if charge.status not in OPEN_STATUSES:
        return charge
    if not adapter_class(charge.channel_account.provider).closes_payments and timezone.now() < charge.time_expire:
        # Closed here, the payment would stay payable at the provider: the payer could still pay.
        raise errors.ChargeNotReversible(
            f"{charge.channel} has no way to close a payment before it expires: charge {charge.public_id} "
            f"stays payable until its time_expire ({int(charge.time_expire.timestamp())}) and closes then."
        )
    closed = charge_expire(charge_id=charge.pk, request_id=request_id, by="reverse")
    if closed.status == ChargeStatus.SUCCEEDED:
        raise errors.ChargeAlreadyPaid(f"Charge {charge.public_id} was paid before it could be reversed.")
    if closed.status == ChargeStatus.CLOSED and not closed.reversed:
        Charge.objects.filter(pk=closed.pk).update(reversed=True)
        closed.reversed = True
    if closed.status in OPEN_STATUSES:
        raise errors.ChannelUnavailable("The channel could not close the charge now; try again.")
    return closed
