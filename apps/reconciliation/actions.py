"""What finance does with a discrepancy from the console; every action is audited.

- `discrepancy_investigate`: open → investigating.
- `discrepancy_query_channel`: asks the provider now and records its answer.
- `discrepancy_correct_local`: asks the provider and applies its answer through the pay core's
  own services (the normal transitions, events and postings); resolved when paysys then agrees
  with the bill, and the item's net moves from channel clearing to bank.
- `discrepancy_write_off_request` / `_approve`: the difference (channel net − paysys net) goes
  between channel clearing and suspense by a ledger adjustment under maker-checker; on approval
  the discrepancy is written off and what the channel settles moves to bank.
- `discrepancy_resolve_duplicate`: a duplicate_line closed without money (the channel settles the
  item once); `discrepancy_resolve`: any discrepancy closed without money.

Lock order: the day's bill files (`day_lock`, where money moves: a run of the same day must not
count the item again), the discrepancy row, then whatever the pay core or the ledger lock.
"""

from dataclasses import asdict

from django.db import transaction

from apps.channels.adapters.base import PaymentResult, RefundResult
from apps.channels.services import adapter_for
from apps.ledger.adjustments import AdjustmentLineParams
from apps.ledger.models import Adjustment, AdjustmentStatus
from apps.ledger.services import adjustment_approve, adjustment_draft_create
from apps.payments.models import Charge, Refund
from apps.payments.refunds import refund_apply_provider_result
from apps.payments.services import charge_apply_provider_result
from apps.reconciliation.exceptions import ActionNotAllowed
from apps.reconciliation.models import Discrepancy, DiscrepancyAction, DiscrepancyKind, DiscrepancyStatus
from apps.reconciliation.services import clearing_post, day_lock

OPEN_STATES = (DiscrepancyStatus.OPEN, DiscrepancyStatus.INVESTIGATING)


def _lock(discrepancy_id: int, *, moves_money: bool = False) -> Discrepancy:
    if moves_money:
        account_id, day = Discrepancy.objects.values_list("account_id", "day").get(pk=discrepancy_id)
        day_lock(account_id=account_id, day=day)
    return Discrepancy.objects.select_for_update().select_related("account").get(pk=discrepancy_id)


def _audit(d: Discrepancy, action: str, source: str, *, by: str, detail: dict | None = None) -> None:
    DiscrepancyAction.objects.create(
        discrepancy=d, action=action, source=source, target=d.status, by=by, detail=detail or {}
    )


def _must_be_open(d: Discrepancy) -> None:
    if d.status not in OPEN_STATES:
        raise ActionNotAllowed(f"{d} is {d.status}.", code="discrepancy_closed")


def _settle(d: Discrepancy, *, description: str) -> None:
    """Saves the closed discrepancy with what the channel settles for its item (`settled`: the bill
    net) and moves that from channel clearing to bank, once per discrepancy."""
    d.settled = d.bill_net
    d.save()
    clearing_post(
        account=d.account, currency=d.currency, net=d.settled, reference=f"discrepancy:{d.pk}", description=description
    )


def _jsonable(result: PaymentResult | RefundResult) -> dict:
    data = asdict(result)
    data.pop("raw", None)
    return {k: (str(v) if v is not None and not isinstance(v, str | int | bool) else v) for k, v in data.items()}


@transaction.atomic
def discrepancy_investigate(*, discrepancy_id: int, by: str) -> Discrepancy:
    d = _lock(discrepancy_id)
    if d.status == DiscrepancyStatus.OPEN:
        d.investigate()
        d.save()
        _audit(d, "investigate", DiscrepancyStatus.OPEN, by=by)
    return d


def _ask_provider(d: Discrepancy) -> PaymentResult | RefundResult:
    adapter = adapter_for(d.account)
    # paysys's refund: on its side of the discrepancy, or named by a duplicate_line (which has no paysys side)
    refund = None
    if d.item_kind == "refund" and (d.local_kind == "refund" or d.kind == DiscrepancyKind.DUPLICATE_LINE):
        refund = Refund.objects.select_related("charge").filter(public_id=d.ref).first()
    if refund is not None:
        return adapter.query_refund(
            out_trade_no=refund.charge.public_id, out_refund_no=refund.public_id,
            currency=str(refund.amount.currency), requested_at=refund.created_at,
        )  # fmt: skip
    charge = Charge.objects.filter(public_id=d.ref).first()
    return adapter.query_payment(
        out_trade_no=d.ref, currency=d.currency, requested_at=charge.created_at if charge else None
    )


def discrepancy_query_channel(*, discrepancy_id: int, by: str) -> PaymentResult | RefundResult:
    """Asks the provider about the item now (outside any transaction), then records the answer."""
    d = Discrepancy.objects.select_related("account").get(pk=discrepancy_id)
    _must_be_open(d)
    result = _ask_provider(d)
    with transaction.atomic():
        d = _lock(discrepancy_id)
        source = d.status
        if d.status == DiscrepancyStatus.OPEN:
            d.investigate()
            d.save()
        _audit(d, "query_channel", source, by=by, detail=_jsonable(result))
    return result


def discrepancy_correct_local(*, discrepancy_id: int, by: str, request_id: str = "") -> Discrepancy:
    """Applies the provider's current answer to paysys's charge or refund (pay core services).

    Only for items paysys has (status_mismatch, channel_missing …): a local_missing item has no
    charge to correct and can only be written off.
    """
    d = Discrepancy.objects.select_related("account").get(pk=discrepancy_id)
    _must_be_open(d)
    if d.kind == DiscrepancyKind.DUPLICATE_LINE:
        raise ActionNotAllowed(
            "a further copy of a bill line: paysys's item is matched to the first one. Resolve it as a duplicate,"
            " or write it off if the channel settles it again.",
            code="nothing_to_correct",
        )
    if not d.local_kind:
        raise ActionNotAllowed("paysys has no charge or refund to correct: write it off.", code="nothing_to_correct")
    result = _ask_provider(d)
    identity = f"recon:{by}"
    if isinstance(result, RefundResult):
        refund = Refund.objects.get(public_id=d.ref)
        refund_apply_provider_result(refund_id=refund.pk, result=result, by=identity, request_id=request_id)
        local = Refund.objects.get(pk=refund.pk)
    else:
        charge = Charge.objects.get(public_id=d.ref)
        charge_apply_provider_result(charge_id=charge.pk, result=result, by=identity, request_id=request_id)
        local = Charge.objects.get(pk=charge.pk)
    with transaction.atomic():
        d = _lock(discrepancy_id, moves_money=True)
        source = d.status
        detail = {"provider": _jsonable(result), "local_status": local.status}
        agrees = (
            local.status == "succeeded"
            and d.kind == DiscrepancyKind.STATUS_MISMATCH
            and d.bill_kind == d.local_kind
            and d.bill_status in ("succeeded", "")
        )
        if agrees and d.status in OPEN_STATES:
            d.local_status = local.status
            d.resolve(resolution=f"local state corrected from the provider's answer by {by}")
            _settle(d, description=f"resolved discrepancy {d.pk}")
        elif d.status == DiscrepancyStatus.OPEN:
            d.investigate()
            d.save()
        _audit(d, "correct_local", source, by=by, detail=detail)
    return d


@transaction.atomic
def discrepancy_write_off_request(*, discrepancy_id: int, maker: str) -> Adjustment:
    """Drafts the ledger adjustment that writes the difference off to suspense (maker)."""
    d = _lock(discrepancy_id)
    _must_be_open(d)
    if d.adjustment_id is not None:
        return Adjustment.objects.get(pk=d.adjustment_id)
    difference = d.difference
    if not difference:
        raise ActionNotAllowed("the channel's net and paysys's net agree: nothing to write off.", code="no_difference")
    adjustment = adjustment_draft_create(
        livemode=d.account.livemode,
        description=f"write-off of discrepancy {d.pk} ({d.kind} {d.ref})"[:255],
        lines=[
            AdjustmentLineParams("channel_clearing", d.account_id, d.currency, difference),
            AdjustmentLineParams("suspense", 0, d.currency, -difference),
        ],
        maker=maker,
    )
    source = d.status
    d.adjustment_id = adjustment.pk
    if d.status == DiscrepancyStatus.OPEN:
        d.investigate()
    d.save()
    _audit(d, "write_off_request", source, by=maker, detail={"adjustment": adjustment.public_id, "amount": difference})
    return adjustment


@transaction.atomic
def discrepancy_write_off_approve(*, discrepancy_id: int, checker: str) -> Discrepancy:
    """Approves the write-off (checker ≠ maker, the ledger's rule), posts it, and clears to bank
    what the channel settles for the item."""
    d = _lock(discrepancy_id, moves_money=True)
    if d.adjustment_id is None:
        raise ActionNotAllowed("no write-off was requested.", code="no_write_off")
    if d.status == DiscrepancyStatus.WRITTEN_OFF:
        return d
    adjustment = adjustment_approve(adjustment_id=d.adjustment_id, checker=checker)
    if adjustment.status != AdjustmentStatus.APPROVED:
        raise ActionNotAllowed(f"adjustment {adjustment.public_id} is {adjustment.status}.", code="write_off_rejected")
    source = d.status
    d.write_off(resolution=f"written off to suspense ({adjustment.public_id}) by {checker}")
    _settle(d, description=f"written-off discrepancy {d.pk}")
    _audit(d, "write_off_approve", source, by=checker, detail={"adjustment": adjustment.public_id})
    return d


@transaction.atomic
def discrepancy_resolve_duplicate(*, discrepancy_id: int, by: str) -> Discrepancy:
    """Closes a duplicate_line without money: the channel settles the item once (its bill listed it
    again by mistake). The item's money moved with its first line; the copies' never moves."""
    d = _lock(discrepancy_id)
    _must_be_open(d)
    if d.kind != DiscrepancyKind.DUPLICATE_LINE:
        raise ActionNotAllowed(f"{d} is not a duplicate line.", code="not_a_duplicate_line")
    resolution = f"listed more than once on the bill; the channel settles the item once ({by})"
    return _close_without_money(d, by=by, action="resolve_duplicate", resolution=resolution)


@transaction.atomic
def discrepancy_resolve(*, discrepancy_id: int, by: str, resolution: str) -> Discrepancy:
    """Closes a discrepancy that needs no money movement (e.g. the provider corrected its bill)."""
    d = _lock(discrepancy_id)
    _must_be_open(d)
    return _close_without_money(
        d,
        by=by,
        action="resolve",
        resolution=resolution[:255] or f"resolved by {by}",
        detail={"resolution": resolution},
    )


def _close_without_money(d: Discrepancy, *, by: str, action: str, resolution: str, detail=None) -> Discrepancy:
    """Resolves the locked open discrepancy, nothing posted, and audits the action."""
    source = d.status
    d.resolve(resolution=resolution)
    d.save()
    _audit(d, action, source, by=by, detail=detail)
    return d
