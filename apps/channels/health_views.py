"""The console's channel health pages (admin views, wired by ChannelAccountAdmin.get_urls).

`/admin/channels/channelaccount/health/` lists every account with its last hour and last day;
`/admin/channels/channelaccount/<id>/health/` adds a chart per window and the latest failures.
The charts are inline SVG bars (calls, with the faulty part in red): no JavaScript.
"""

from dataclasses import dataclass

from django.http import Http404
from django.template.response import TemplateResponse
from django.utils import timezone

from apps.channels import health
from apps.channels.models import ChannelAccount
from apps.channels.selectors import channel_account_get

CHART_WIDTH = 720
CHART_HEIGHT = 90


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} ms"


@dataclass(frozen=True)
class StatsView:
    """One window's numbers as the page shows them."""

    window: str
    calls: int
    ok: int
    rejected: int
    faults: int
    timeouts: int
    success_rate: str
    error_rate: str
    p50: str
    p95: str


def _stats_view(window: str, stats: health.Stats) -> StatsView:
    return StatsView(
        window=window,
        calls=stats.calls,
        ok=stats.ok,
        rejected=stats.rejected,
        faults=stats.faults,
        timeouts=stats.timeouts,
        success_rate=_rate(stats.success_rate),
        error_rate=_rate(stats.error_rate),
        p50=_ms(stats.p50_ms),
        p95=_ms(stats.p95_ms),
    )


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    calls_y: float
    calls_height: float
    faults_y: float
    faults_height: float
    title: str


def _chart(series: list[health.Bucket], *, label_format: str) -> dict:
    """SVG geometry for a series: one bar per bucket, scaled to the busiest bucket."""
    peak = max((bucket.calls for bucket in series), default=0)
    slot = CHART_WIDTH / max(len(series), 1)
    bars = []
    for index, bucket in enumerate(series):
        calls_height = CHART_HEIGHT * bucket.calls / peak if peak else 0
        faults_height = CHART_HEIGHT * bucket.faults / peak if peak else 0
        label = timezone.localtime(bucket.start).strftime(label_format)
        bars.append(
            Bar(
                x=round(index * slot, 2),
                width=round(max(slot - 1, 1), 2),
                calls_y=round(CHART_HEIGHT - calls_height, 2),
                calls_height=round(calls_height, 2),
                faults_y=round(CHART_HEIGHT - faults_height, 2),
                faults_height=round(faults_height, 2),
                title=f"{label}: {bucket.calls} calls, {bucket.faults} faults",
            )
        )
    return {
        "bars": bars,
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "peak": peak,
        "first": timezone.localtime(series[0].start).strftime(label_format) if series else "",
        "last": timezone.localtime(series[-1].start).strftime(label_format) if series else "",
        "calls": sum(bucket.calls for bucket in series),
        "faults": sum(bucket.faults for bucket in series),
    }


def health_overview(request, *, model_admin):
    now = timezone.now()
    accounts = list(ChannelAccount.objects.order_by("provider", "name"))
    ids = [account.pk for account in accounts]
    hour = health.account_stats(ids, now - health.HOUR, now)
    day = health.account_stats(ids, now - health.DAY, now)
    rows = [
        {
            "account": account,
            "hour": _stats_view("last hour", hour[account.pk]),
            "day": _stats_view("last day", day[account.pk]),
        }
        for account in accounts
    ]
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": "Channel health",
        "rows": rows,
        "now": now,
    }
    return TemplateResponse(request, "channels/health_overview.html", context)


def health_detail(request, account_id: int, *, model_admin):
    account = channel_account_get(account_id=account_id)
    if account is None:
        raise Http404("no such channel account")
    now = timezone.now()
    hour = health.account_stats([account.pk], now - health.HOUR, now)[account.pk]
    day = health.account_stats([account.pk], now - health.DAY, now)[account.pk]
    minute_series = health.account_call_series(account_id=account.pk, since=now - health.HOUR, until=now, step="minute")
    hour_series = health.account_call_series(account_id=account.pk, since=now - health.DAY, until=now, step="hour")
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": f"Channel health: {account.name}",
        "account": account,
        "windows": [
            {
                "stats": _stats_view("last hour", hour),
                "chart": _chart(minute_series, label_format="%H:%M"),
                "step": "minute",
            },
            {
                "stats": _stats_view("last day", day),
                "chart": _chart(hour_series, label_format="%m-%d %H:00"),
                "step": "hour",
            },
        ],
        "failures": health.account_recent_failures(account_id=account.pk),
        "now": now,
    }
    return TemplateResponse(request, "channels/health_detail.html", context)
