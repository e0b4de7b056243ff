from dataclasses import dataclass
from datetime import datetime

from apps.merchants.models import App
from apps.payments.exceptions import ChargeNotFound
from apps.payments.models import Charge, ChargeStatus

_CHARGE_RELATED = ("app", "order")


def charge_get_for_app(*, app: App, livemode: bool, public_id: str) -> Charge:
    """A charge of this app and mode; another app's charge is simply not found."""
    charge = (
        Charge.objects.select_related(*_CHARGE_RELATED).filter(app=app, livemode=livemode, public_id=public_id).first()
    )
    if charge is None:
        raise ChargeNotFound(f"No such charge: {public_id}.", param="id")
    return charge


@dataclass(frozen=True)
class ChargeListFilter:
    channel: str | None = None
    paid: bool | None = None
    created_gt: datetime | None = None
    created_gte: datetime | None = None
    created_lt: datetime | None = None
    created_lte: datetime | None = None


def charges_list(
    *,
    app: App,
    livemode: bool,
    limit: int,
    starting_after: str | None,
    ending_before: str | None,
    filters: ChargeListFilter,
) -> tuple[list[Charge], bool]:
    """A page of charges, newest first, and whether more exist beyond it (Ping++ cursor paging)."""
    qs = Charge.objects.select_related(*_CHARGE_RELATED).filter(app=app, livemode=livemode)
    qs = _apply_filters(qs, filters)
    if starting_after:
        cursor = charge_get_for_app(app=app, livemode=livemode, public_id=starting_after)
        page = list(qs.filter(pk__lt=cursor.pk).order_by("-pk")[: limit + 1])
        return page[:limit], len(page) > limit
    if ending_before:
        cursor = charge_get_for_app(app=app, livemode=livemode, public_id=ending_before)
        page = list(qs.filter(pk__gt=cursor.pk).order_by("pk")[: limit + 1])
        return list(reversed(page[:limit])), len(page) > limit
    page = list(qs.order_by("-pk")[: limit + 1])
    return page[:limit], len(page) > limit


def _apply_filters(qs, filters: ChargeListFilter):
    if filters.channel:
        qs = qs.filter(channel=filters.channel)
    if filters.paid is not None:
        qs = qs.filter(status=ChargeStatus.SUCCEEDED) if filters.paid else qs.exclude(status=ChargeStatus.SUCCEEDED)
    for lookup in ("gt", "gte", "lt", "lte"):
        value = getattr(filters, f"created_{lookup}")
        if value is not None:
            qs = qs.filter(**{f"created_at__{lookup}": value})
    return qs


def charge_for_notification(*, account_id: int, out_trade_no: str) -> Charge | None:
    return Charge.objects.filter(channel_account_id=account_id, public_id=out_trade_no).first()
