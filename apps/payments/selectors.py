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


def refund_get_for_charge(*, charge: Charge, public_id: str):
    from apps.payments.exceptions import RefundNotFound
    from apps.payments.models import Refund

    refund = Refund.objects.filter(charge=charge, public_id=public_id).first()
    if refund is None:
        raise RefundNotFound(f"No such refund: {public_id}.", param="id")
    return refund


def refunds_list(*, charge: Charge, limit: int, starting_after: str | None, ending_before: str | None):
    """A page of a charge's refunds, newest first, and whether more exist beyond it."""
    qs = charge.refunds.all()
    if starting_after:
        cursor = refund_get_for_charge(charge=charge, public_id=starting_after)
        page = list(qs.filter(pk__lt=cursor.pk).order_by("-pk")[: limit + 1])
        return page[:limit], len(page) > limit
    if ending_before:
        cursor = refund_get_for_charge(charge=charge, public_id=ending_before)
        page = list(qs.filter(pk__gt=cursor.pk).order_by("pk")[: limit + 1])
        return list(reversed(page[:limit])), len(page) > limit
    page = list(qs.order_by("-pk")[: limit + 1])
    return page[:limit], len(page) > limit


def refund_for_notification(*, account_id: int, out_refund_no: str):
    from apps.payments.models import Refund

    return Refund.objects.filter(charge__channel_account_id=account_id, public_id=out_refund_no).first()


@dataclass(frozen=True)
class Attention:
    label: str
    count: int
    url: str


def attention_counts() -> list[Attention]:
    """What the compensation sweep surfaces: anything stuck or held, for the console's front page."""
    from datetime import timedelta

    from django.urls import reverse
    from django.utils import timezone

    from apps.events.models import WebhookDelivery
    from apps.payments.models import OPEN_STATUSES, NotificationProblem, Refund, RefundStatus

    now = timezone.now()
    charges = reverse("admin:payments_charge_changelist")
    return [
        Attention("charges open past expiry", Charge.objects.filter(
            status__in=OPEN_STATUSES, time_expire__lt=now - timedelta(minutes=10)).count(),
            f"{charges}?status__exact=pending"),
        Attention("charges held for the console", Charge.objects.exclude(exception="").count(),
                  f"{charges}?exception__isnull=False"),
        Attention("refunds pending over a day", Refund.objects.filter(
            status=RefundStatus.PENDING, created_at__lt=now - timedelta(days=1)).count(),
            f"{reverse('admin:payments_refund_changelist')}?status__exact=pending"),
        Attention("refunds failed", Refund.objects.filter(status=RefundStatus.FAILED).count(),
                  f"{reverse('admin:payments_refund_changelist')}?status__exact=failed"),
        Attention("webhook deliveries failing or dead", WebhookDelivery.objects.filter(
            status__in=["failing", "dead"]).count(), reverse("admin:events_webhookdelivery_changelist")),
        Attention("notifications not applied", NotificationProblem.objects.filter(resolved=False).count(),
                  f"{reverse('admin:payments_notificationproblem_changelist')}?resolved__exact=0"),
    ]  # fmt: skip
