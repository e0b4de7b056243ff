"""Channel health: what the call log says about each channel account over a recent window.

Reads only (selectors). Routing reads `account_stats` for its success rates and latencies; the
console's channel health pages read the same numbers and the per-bucket series for their charts.

Outcomes fall in three groups. `ok` is a success. `rejected` is the provider answering and
refusing (a business answer: the channel is working). Every other outcome (timeout, unavailable,
invalid_response, error) is a channel fault. Success rate = ok / calls, error rate = faults /
calls; the two do not sum to one when there are refusals. Latency percentiles (PostgreSQL's
`percentile_cont`, interpolated) are over every call in the window, faults included: a timeout
is time the caller waited.
"""

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Aggregate, Count, FloatField, Q
from django.db.models.functions import Trunc

from apps.channels.models import CallOutcome, ChannelCall

FAULTS = (CallOutcome.TIMEOUT, CallOutcome.UNAVAILABLE, CallOutcome.INVALID_RESPONSE, CallOutcome.ERROR)

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


class PercentileCont(Aggregate):
    """`percentile_cont(p) WITHIN GROUP (ORDER BY expr)`: the interpolated p-th percentile."""

    function = "percentile_cont"
    name = "PercentileCont"
    template = "%(function)s(%(percentile)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, percentile: float, **extra):
        if not 0 <= percentile <= 1:
            raise ValueError("percentile must be within [0, 1]")
        super().__init__(expression, percentile=repr(float(percentile)), **extra)


@dataclass(frozen=True)
class Stats:
    """One account's calls in a window. Rates and percentiles are None when there were no calls."""

    calls: int = 0
    ok: int = 0
    rejected: int = 0
    faults: int = 0
    timeouts: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None

    @property
    def success_rate(self) -> float | None:
        return self.ok / self.calls if self.calls else None

    @property
    def error_rate(self) -> float | None:
        return self.faults / self.calls if self.calls else None


def account_stats(account_ids: Iterable[int], since: dt.datetime, until: dt.datetime | None = None) -> dict[int, Stats]:
    """Call statistics per account over [since, until) (until defaults to now), in one query.

    Every requested id is in the answer; an account without calls gets an empty `Stats`.
    """
    ids = list(account_ids)
    window = Q(account_id__in=ids, created_at__gte=since)
    if until is not None:
        window &= Q(created_at__lt=until)
    rows = (
        ChannelCall.objects.filter(window)
        .values("account_id")
        .annotate(
            calls=Count("id"),
            ok=Count("id", filter=Q(outcome=CallOutcome.OK)),
            rejected=Count("id", filter=Q(outcome=CallOutcome.REJECTED)),
            faults=Count("id", filter=Q(outcome__in=FAULTS)),
            timeouts=Count("id", filter=Q(outcome=CallOutcome.TIMEOUT)),
            p50_ms=PercentileCont("latency_ms", 0.5),
            p95_ms=PercentileCont("latency_ms", 0.95),
        )
        .order_by()
    )
    stats = {account_id: Stats() for account_id in ids}
    for row in rows:
        account_id = row.pop("account_id")
        stats[account_id] = Stats(**row)
    return stats


@dataclass(frozen=True)
class Bucket:
    start: dt.datetime
    calls: int
    faults: int


def account_call_series(*, account_id: int, since: dt.datetime, until: dt.datetime, step: str) -> list[Bucket]:
    """Calls and faults per minute or per hour (`step`), every bucket of [since, until) present."""
    if step not in ("minute", "hour"):
        raise ValueError("step must be 'minute' or 'hour'")
    rows = (
        ChannelCall.objects.filter(account_id=account_id, created_at__gte=since, created_at__lt=until)
        .annotate(bucket=Trunc("created_at", step, tzinfo=dt.UTC))
        .values("bucket")
        .annotate(calls=Count("id"), faults=Count("id", filter=Q(outcome__in=FAULTS)))
        .order_by()
    )
    counted = {row["bucket"]: (row["calls"], row["faults"]) for row in rows}
    width = dt.timedelta(minutes=1) if step == "minute" else HOUR
    start = since.astimezone(dt.UTC).replace(second=0, microsecond=0)
    if step == "hour":
        start = start.replace(minute=0)
    series = []
    while start < until:
        calls, faults = counted.get(start, (0, 0))
        series.append(Bucket(start=start, calls=calls, faults=faults))
        start += width
    return series


def account_recent_failures(*, account_id: int, limit: int = 20) -> list[ChannelCall]:
    """The latest calls that did not succeed (refusals and faults), newest first."""
    return list(
        ChannelCall.objects.filter(account_id=account_id)
        .exclude(outcome=CallOutcome.OK)
        .order_by("-created_at", "-id")[:limit]
    )
