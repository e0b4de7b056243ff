"""Due work for the pay core: active queries of open charges and refunds.

Rows carry `next_query_at`; a periodic sweep claims due rows with SKIP LOCKED, pushes them a
lease ahead (so the next sweep does not claim them again while their task runs) and enqueues one
task per row. Long Celery ETAs are never used: a lost task is found again by the next sweep.
"""

from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

# Seconds after each attempt: 5 s, 15 s, 30 s, 1 m, 2 m, 5 m, then every 10 m.
QUERY_BACKOFF = (5, 15, 30, 60, 120, 300)
QUERY_INTERVAL_AFTER = 600
LEASE_SECONDS = 60


def query_delay(attempts: int) -> timedelta:
    """The wait before query number `attempts + 1`."""
    seconds = QUERY_BACKOFF[attempts] if attempts < len(QUERY_BACKOFF) else QUERY_INTERVAL_AFTER
    return timedelta(seconds=seconds)


def claim_due(model, *, statuses, limit: int = 500) -> list[int]:
    """Ids of due rows, each pushed one lease ahead; concurrent sweeps never claim a row twice."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            model.objects.select_for_update(skip_locked=True)
            .filter(status__in=statuses, next_query_at__lte=now)
            .order_by("next_query_at")
            .values_list("pk", flat=True)[:limit]
        )
        model.objects.filter(pk__in=ids).update(next_query_at=now + timedelta(seconds=LEASE_SECONDS))
    return ids


def schedule_next_query(model, pk: int, *, attempts: int) -> None:
    """After inconclusive query number `attempts + 1`: the next one per the backoff schedule.

    The first query waits `query_delay(0)` from creation; after it, `query_delay(1)`, and so on.
    """
    model.objects.filter(pk=pk).update(
        next_query_at=timezone.now() + query_delay(attempts + 1), query_attempts=F("query_attempts") + 1
    )
