"""The pay core: charges in three phases, and provider results applied exactly once.

Charge creation (DESIGN.md, the payment flow):
1. `charge_open`: one statement commits a new order and the charge as `created` (a transaction
   locks and checks an existing order instead).
2. The provider call, outside any transaction (`_provider_create`).
3. `charge_submit`: one statement stores the credential and moves the charge to `pending`.

A timeout in phase 2 leaves the charge `created`: the outcome is unknown and only a provider
query or notification settles it. Lock order: charge, then its order.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Model
from django.utils import timezone
from moneyed import Money

from apps.channels.adapters.base import (
    ChannelRejected,
    ChannelResponseInvalid,
    ChannelTimeout,
    ChannelUnavailable,
    PaymentCreated,
    PaymentRequest,
    PaymentResult,
    PaymentStatus,
)
from apps.channels.catalog import is_known_method
from apps.channels.models import ChannelAccount
from apps.channels.services import adapter_for, notify_url_for
from apps.core.db import Then, held_writes, insert, insert_unless_exists, update
from apps.core.money import to_minor
from apps.events.services import event_create
from apps.ledger import services as ledger
from apps.merchants.models import App
from apps.orders.services import (
    order_close_if_unpayable,
    order_existing_for_charge,
    order_lock,
    order_mark_paid,
    order_new,
)
from apps.payments import exceptions as errors
from apps.payments.due import query_delay
from apps.payments.models import OPEN_STATUSES, Charge, ChargeException, ChargeStatus, ChargeTransition
from apps.payments.wire import charge_to_wire
from apps.routing.cards import card_from_extra
from apps.routing.services import Route, failover_allowed, route_open, route_release

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChargeParams:
    order_no: str
    channel: str
    amount: Money
    client_ip: str
    subject: str
    body: str
    description: str = ""
    extra: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    time_expire: datetime | None = None


def _transition(charge: Charge, source: str, *, by: str, request_id: str, target: str = "", detail=None):
    """The audit row of a change of `charge` (to its current status unless `target` says)."""
    return ChargeTransition(
        charge=charge, source=source, target=target or charge.status, by=by, request_id=request_id, detail=detail or {}
    )


def _audit(charge: Charge, source: str, *, by: str, request_id: str, target: str = "", detail=None) -> None:
    insert(_transition(charge, source, by=by, request_id=request_id, target=target, detail=detail))


def charge_lock(*, charge_id: int) -> Charge:
    return Charge.objects.select_for_update().select_related("app", "order").get(pk=charge_id)


def _route(*, app: App, livemode: bool, params: ChargeParams, request_id: str) -> tuple[ChargeParams, Route]:
    """Routing's decision for the charge; the card number leaves `extra` here and is never stored."""
    if not is_known_method(params.channel):
        raise errors.ChannelUnsupported(f"Unknown channel: {params.channel!r}.", param="channel")
    card, extra = card_from_extra(method=params.channel, extra=params.extra)
    params = replace(params, extra=extra)
    route = route_open(
        app=app, livemode=livemode, method=params.channel, amount=params.amount, card=card, request_id=request_id
    )
    return params, route


def _no_account(params: ChargeParams, livemode: bool, route: Route) -> errors.ChannelUnavailable:
    return errors.ChannelUnavailable(
        f"No channel account can serve {params.channel} in {params.amount.currency.code} "
        f"({'live' if livemode else 'test'} mode): {route.explain()}.",
        param="channel",
    )


def charge_create(*, app: App, livemode: bool, params: ChargeParams, request_id: str) -> Charge:
    """Creates a charge and asks the provider for the payer's credential (three phases).

    Routing ranks the accounts; if the chosen one fails before the payer is involved (not reached,
    or 5xx) the charge moves to the next one (failover), each attempt in the decision record.
    """
    params, route = _route(app=app, livemode=livemode, params=params, request_id=request_id)
    account = route.next_account()
    if account is None:
        raise _no_account(params, livemode, route)
    try:  # the charge and its decision record: one commit
        charge = charge_open(
            app=app, livemode=livemode, params=params, account=account, request_id=request_id, along=route.record
        )
    except BaseException:
        route.abandon()
        raise
    # The call-log row and the attempt's outcome on the decision record need no answer: they are
    # held and written by phase 3's statement (one round trip, one commit after the provider call).
    with held_writes():
        created, account = _provider_create(charge, route, account, request_id=request_id)
        route.attempt_succeeded()  # a fact about the provider call, whatever phase 3 finds
        submitted = charge_submit(
            charge=charge,
            credential={charge.channel: created.credential},
            transaction_no=created.transaction_no or "",
            request_id=request_id,
        )
    submitted.app, submitted.order = charge.app, charge.order  # already loaded in phase 1
    submitted.channel_account = account
    return submitted


def _provider_create(
    charge: Charge, route: Route, account: ChannelAccount, *, request_id: str
) -> tuple[PaymentCreated, ChannelAccount]:
    """Phase 2: asks the provider to create the payment, failing over to the next account while
    the failure allows it; the provider's answer and the account that gave it."""
    while True:
        try:
            created = adapter_for(account).create_payment(
                PaymentRequest(
                    out_trade_no=charge.public_id,
                    method=route.provider_method(account),
                    amount=charge.amount,
                    subject=charge.subject,
                    body=charge.body,
                    client_ip=charge.client_ip,
                    time_expire=charge.time_expire,
                    notify_url=notify_url_for(account),
                    extra=charge.extra,
                    requested_at=charge.created_at,
                )
            )
        except ChannelTimeout as exc:
            route.attempt_unknown(exc)
            logger.warning("charge %s: provider create timed out; outcome unknown", charge.public_id)
            raise errors.ChannelOutcomeUnknown(
                f"The channel did not answer in time; charge {charge.public_id} will be settled by query."
            ) from exc
        except (ChannelUnavailable, ChannelRejected, ChannelResponseInvalid) as exc:
            route.attempt_failed(exc)
            following = route.next_account() if failover_allowed(exc) else None
            if following is not None:
                logger.warning("charge %s: account %s failed (%s); failover", charge.public_id, account.pk, exc.code)
                account = following
                charge_switch_account(charge_id=charge.pk, account=account, request_id=request_id)
                continue
            charge_fail(
                charge_id=charge.pk,
                failure_code=exc.code or type(exc).__name__,
                failure_msg=exc.message,
                by="provider",
                request_id=request_id,
            )
            error = errors.ChannelUnavailable if isinstance(exc, ChannelUnavailable) else errors.ChannelRefused
            raise error(f"The channel refused the payment: {exc.message}") from exc
        return created, account


@transaction.atomic
def charge_switch_account(*, charge_id: int, account: ChannelAccount, request_id: str) -> Charge:
    """Failover: a `created` charge whose account failed before the payer was involved moves on."""
    charge = Charge.objects.select_for_update().get(pk=charge_id)
    if charge.status == ChargeStatus.CREATED and charge.channel_account_id != account.pk:
        previous = charge.channel_account_id
        charge.channel_account = account
        charge.save(update_fields=["channel_account"])
        detail = {"failover_from": previous, "failover_to": account.pk}
        _audit(charge, ChargeStatus.CREATED, by="routing", request_id=request_id, detail=detail)
    return charge


def _time_expire(params: ChargeParams, now: datetime) -> datetime:
    return params.time_expire or now + timedelta(seconds=settings.PAYSYS_CHARGE_DEFAULT_EXPIRY_SECONDS)


def charge_open(
    *,
    app: App,
    livemode: bool,
    params: ChargeParams,
    account: ChannelAccount,
    request_id: str,
    along: Callable[[str], Model] | None = None,
) -> Charge:
    """Phase 1: the order (created, or found open with the same amount) and the charge, committed
    as `created` with its audit row and the row `along` builds for the charge's id (routing's
    decision record). For a new order that is one statement, atomic on its own; an existing order
    is locked and checked first, in a transaction."""
    order = order_new(
        app=app,
        livemode=livemode,
        order_no=params.order_no,
        amount=params.amount,
        subject=params.subject,
        body=params.body,
        request_id=request_id,
    )
    charge = Charge(
        app=app,
        order=order,
        livemode=livemode,
        channel=params.channel,
        channel_account=account,
        amount=params.amount,
        client_ip=params.client_ip,
        subject=params.subject,
        body=params.body,
        description=params.description,
        extra=params.extra,
        metadata=params.metadata,
        time_expire=_time_expire(params, timezone.now()),
        request_id=request_id,
        next_query_at=timezone.now() + query_delay(0),
    )
    rows = [Then(_transition(charge, "", by="api", request_id=request_id), "charge", to=charge)]
    if along is not None:
        rows.append(Then(along(charge.public_id), to=charge))
    if insert_unless_exists(order, then=[Then(charge, "order"), *rows]):
        return charge
    with transaction.atomic():
        charge.order = order_existing_for_charge(order)
        insert(charge, then=rows)
    return charge


def charge_submit(*, charge: Charge, credential: dict, transaction_no: str, request_id: str) -> Charge:
    """Phase 3: the provider accepted the payment; the payer can now pay with the credential.

    One statement, atomic on its own: the move to `pending` with its audit row.

    `charge` is the `created` charge as phase 1 committed it. The save is optimistic (as django-fsm's
    ConcurrentTransitionMixin: `UPDATE … WHERE status = 'created'`), so no lock is taken first. If a
    notification, the active query or a reverse moved the charge meanwhile, the charge is returned
    as it now is and nothing is written.
    """
    source = charge.status
    charge.submit(credential=credential, transaction_no=transaction_no)
    audit = _transition(charge, source, by="provider", request_id=request_id)
    if not update(
        charge, ("status", "credential", "transaction_no"), expect={"status": source}, then=[Then(audit, "charge")]
    ):
        return Charge.objects.get(pk=charge.pk)
    charge._update_initial_state()  # as ConcurrentTransitionMixin.save: later saves start from here
    return charge


@transaction.atomic
def charge_fail(*, charge_id: int, failure_code: str, failure_msg: str, by: str, request_id: str) -> Charge:
    charge = charge_lock(charge_id=charge_id)
    if charge.status in OPEN_STATUSES:
        source = charge.status
        charge.fail(failure_code=failure_code, failure_msg=failure_msg)
        charge.save()
        _audit(charge, source, by=by, request_id=request_id)
        route_release(charge_id=charge.public_id)  # its daily-cap reservation, once
    return charge


def charge_apply_provider_result(*, charge_id: int, result: PaymentResult, by: str, request_id: str) -> Charge:
    """Applies what the provider states about a charge (notification or query answer), once.

    One transaction moves the charge to `succeeded`, the order to `paid` and writes the
    `charge.succeeded` event. A repeat changes nothing. An amount that disagrees flags the charge
    for the console and moves no money.
    """
    with transaction.atomic():
        charge = charge_lock(charge_id=charge_id)
        if result.status == PaymentStatus.SUCCEEDED:
            _apply_success(charge, result, by=by, request_id=request_id)
        elif result.status in (PaymentStatus.CLOSED, PaymentStatus.FAILED) and charge.status in OPEN_STATUSES:
            charge_close_locked(charge=charge, by=by, request_id=request_id, detail={"provider_status": result.status})
    return charge


def charge_close_locked(
    *, charge: Charge, by: str, request_id: str, reversed_: bool = False, detail: dict | None = None
) -> None:
    """Closes an open charge locked in the caller's transaction: its audit row, its daily-cap
    reservation given back (once), and its order closed if nothing can pay it now."""
    source = charge.status
    charge.close(closed_at=timezone.now())
    charge.next_query_at = None
    charge.reversed = charge.reversed or reversed_
    charge.save()
    _audit(charge, source, by=by, request_id=request_id, detail=detail)
    route_release(charge_id=charge.public_id)
    order = order_lock(order_id=charge.order_id)
    open_charges = order.charges.filter(status__in=OPEN_STATUSES).count()
    order_close_if_unpayable(order=order, open_charges=open_charges, by=by, request_id=request_id)


def _apply_success(charge: Charge, result: PaymentResult, *, by: str, request_id: str) -> None:
    if charge.status == ChargeStatus.SUCCEEDED:
        return
    if result.amount != charge.amount:
        _flag(
            charge,
            ChargeException.AMOUNT_MISMATCH,
            by=by,
            request_id=request_id,
            detail={
                "provider_amount": to_minor(result.amount) if result.amount is not None else None,
                "provider_currency": result.amount.currency.code if result.amount is not None else None,
                "charge_amount": to_minor(charge.amount),
                "currency": charge.amount.currency.code,
                "transaction_no": result.transaction_no or "",
            },
        )
        return
    if charge.status not in OPEN_STATUSES:
        _flag(
            charge,
            ChargeException.PAID_AFTER_CLOSE,
            by=by,
            request_id=request_id,
            detail={"transaction_no": result.transaction_no or ""},
        )
        return
    if charge.exception == ChargeException.AMOUNT_MISMATCH:
        # An earlier answer claimed another amount; the provider now states the charge's own.
        charge.exception_detail = {**charge.exception_detail, "resolution": "provider_confirmed_amount",
                                   "resolved_by": by}  # fmt: skip
        charge.exception = ""
    _record_payment(charge, result, by=by, request_id=request_id, pay_order=True)


def _record_payment(charge: Charge, result: PaymentResult, *, by: str, request_id: str, pay_order: bool) -> None:
    """The locked open charge succeeds with what the provider received: fees fixed, order paid
    (unless `pay_order` is False, or another charge paid it: then this one is refunded), the
    `charge.succeeded` event, and the ledger journal, all in the caller's transaction."""
    source = charge.status
    received = result.amount if result.amount is not None else charge.amount
    move = charge.succeed if charge.status in OPEN_STATUSES else charge.succeed_after_close
    move(paid_at=result.paid_at or timezone.now(), transaction_no=result.transaction_no or "")
    charge.next_query_at = None
    charge.amount_received = received
    fees = ledger.payment_fees_quote(
        app_id=charge.app_id, merchant_id=charge.app.merchant_id, channel_account_id=charge.channel_account_id,
        livemode=charge.livemode, amount=received, at=charge.paid_at,
    )  # fmt: skip
    charge.platform_fee, charge.channel_fee = fees.platform_fee, fees.channel_fee  # fixed once, at success
    charge.save()
    _audit(charge, source, by=by, request_id=request_id)
    order = order_lock(order_id=charge.order_id)
    if pay_order and not order_mark_paid(order=order, paid_at=charge.paid_at, by=by, request_id=request_id):
        _refund_duplicate_payment(charge, by=by, request_id=request_id)
    charge.order = order
    event_create(
        app=charge.app,
        type="charge.succeeded",
        livemode=charge.livemode,
        data_object=charge_to_wire(charge),
        request_id=request_id,
    )
    # Last in the transaction: the ledger's balance-slot locks come after the charge and order.
    ledger.payment_succeeded_post(
        reference=charge.public_id, livemode=charge.livemode, merchant_id=charge.app.merchant_id,
        channel_account_id=charge.channel_account_id, amount=received, platform_fee=charge.platform_fee,
        channel_fee=charge.channel_fee, occurred_at=charge.paid_at,
    )  # fmt: skip


def charge_resolve_amount_mismatch(*, charge_id: int, accept: bool, by: str, request_id: str = "") -> Charge:
    """Console: a charge held because the provider received another amount.

    The provider is asked again (its record decides, never the held notification). `accept`
    records the payment as paying the order with the amount actually received; otherwise the
    payment is recorded and the whole received amount refunded, and the order stays unpaid.
    """
    return _resolve_held(
        charge_id=charge_id, held=_HeldFor.AMOUNT_MISMATCH, accept=accept, by=by, request_id=request_id
    )


def charge_refund_paid_after_close(*, charge_id: int, by: str, request_id: str = "") -> Charge:
    """Console: the provider took the payer's money after paysys had closed (or failed) the charge.

    The provider is asked again (its record decides). The payment is recorded on the charge
    (`succeeded`, its ledger journal and `charge.succeeded` event), the order is left as it is,
    and the whole received amount is refunded to the payer automatically.
    """
    return _resolve_held(
        charge_id=charge_id, held=_HeldFor.PAID_AFTER_CLOSE, accept=False, by=by, request_id=request_id
    )


@dataclass(frozen=True)
class _Hold:
    exceptions: tuple[str, ...]  # the flags this resolution settles
    statuses: tuple[str, ...]  # the charge states it applies to
    refund_kind: str  # `Refund.automatic` of the refund it opens (refunds.ORDER_UNTOUCHED)
    label: str


class _HeldFor:
    AMOUNT_MISMATCH = _Hold(
        (ChargeException.AMOUNT_MISMATCH,), OPEN_STATUSES, ChargeException.AMOUNT_MISMATCH, "an amount mismatch"
    )
    # A closed charge paid with another amount is flagged amount_mismatch: refunded the same way.
    PAID_AFTER_CLOSE = _Hold(
        (ChargeException.PAID_AFTER_CLOSE, ChargeException.AMOUNT_MISMATCH),
        (ChargeStatus.CLOSED, ChargeStatus.FAILED),
        ChargeException.PAID_AFTER_CLOSE,
        "a payment after close",
    )


def _is_held(charge: Charge, held: _Hold) -> bool:
    return charge.exception in held.exceptions and charge.status in held.statuses


def _resolve_held(*, charge_id: int, held: _Hold, accept: bool, by: str, request_id: str) -> Charge:
    charge = Charge.objects.select_related("channel_account").get(pk=charge_id)
    if not _is_held(charge, held):
        raise errors.ChargeNotHeld(f"Charge {charge.public_id} is not held for {held.label}.")
    result = adapter_for(charge.channel_account).query_payment(
        out_trade_no=charge.public_id, currency=charge.amount.currency.code, requested_at=charge.created_at
    )
    if result.status != PaymentStatus.SUCCEEDED:
        raise errors.ChargeNotHeld(f"The channel now reports {result.status} for {charge.public_id}; nothing to do.")
    with transaction.atomic():
        charge = charge_lock(charge_id=charge_id)
        if not _is_held(charge, held):
            raise errors.ChargeNotHeld(f"Charge {charge.public_id} changed meanwhile.")
        charge.exception_detail = {**charge.exception_detail, "resolution": "accepted" if accept else "refunded",
                                   "resolved_by": by}  # fmt: skip
        charge.exception = ""
        _record_payment(charge, result, by=by, request_id=request_id, pay_order=accept)
        if not accept:
            from apps.payments import refunds  # refunds builds on this module

            refund = refunds.refund_open_locked(
                charge=charge, amount=None, description=f"{held.label} refunded", metadata={},
                request_id=request_id, by=by, automatic=held.refund_kind,
            )  # fmt: skip
            transaction.on_commit(lambda: refunds._enqueue_submit(refund.pk))
    return charge


def _refund_duplicate_payment(charge: Charge, *, by: str, request_id: str) -> None:
    """A second charge paid an already paid order: flag it and refund it in full automatically."""
    from apps.payments import refunds  # refunds builds on this module

    _flag(charge, ChargeException.DUPLICATE_PAYMENT, by=by, request_id=request_id)
    refund = refunds.refund_open_locked(
        charge=charge, amount=None, description="duplicate payment", metadata={}, request_id=request_id, by=by,
        automatic=refunds.AUTOMATIC_DUPLICATE_PAYMENT,
    )  # fmt: skip
    transaction.on_commit(lambda: refunds._enqueue_submit(refund.pk))


def _flag(charge: Charge, reason: str, *, by: str, request_id: str, detail: dict | None = None) -> None:
    """Holds a charge for the console; its state and money stay as they are."""
    if charge.exception == reason:
        return
    charge.exception = reason
    charge.exception_detail = detail or {}
    charge.save(update_fields=["exception", "exception_detail"])
    logger.error("charge %s flagged: %s %s", charge.public_id, reason, detail or "")
    _audit(charge, charge.status, target=f"exception:{reason}", by=by, request_id=request_id, detail=detail)
