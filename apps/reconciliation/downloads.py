"""Scheduled bill downloads: due work with backoff until a deadline, then manual handling.

Each account with a `BillSchedule` gets one `BillDownload` row per day once the provider's bill
time has passed (working days only where the provider publishes only then). The beat sweep
claims due rows (SKIP LOCKED, pushed one lease ahead like apps.payments.due) and attempts them:
retries at 10 m, 30 m, 1 h, 2 h, then every 4 h; past the deadline the row becomes `manual`
(finance uploads the file in the console). A downloaded bill is reconciled at once.
"""

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.channels.adapters.base import ChannelFailure
from apps.reconciliation.bills import bill_download
from apps.reconciliation.matching import bill_zone
from apps.reconciliation.models import BillDownload, BillDownloadStatus, BillSchedule

logger = logging.getLogger(__name__)

BACKOFF_SECONDS = (600, 1800, 3600, 7200)
BACKOFF_AFTER = 14400
LEASE_SECONDS = 300


def retry_delay(attempts: int) -> timedelta:
    """The wait after failed attempt number `attempts` (1-based)."""
    index = attempts - 1
    return timedelta(seconds=BACKOFF_SECONDS[index] if index < len(BACKOFF_SECONDS) else BACKOFF_AFTER)


def bill_downloads_open(*, now: datetime | None = None) -> int:
    """Opens yesterday's download for every account whose bill time has passed today."""
    now = now or timezone.now()
    local = now.astimezone(bill_zone())
    created = 0
    for schedule in BillSchedule.objects.filter(enabled=True, account__enabled=True):
        if schedule.working_days_only and local.weekday() >= 5:
            continue
        due_at = datetime.combine(local.date(), schedule.bill_time, bill_zone())
        if now < due_at:
            continue
        _, was_created = BillDownload.objects.get_or_create(
            account_id=schedule.account_id,
            day=local.date() - timedelta(days=1),
            defaults={"next_attempt_at": now, "deadline": due_at + timedelta(hours=schedule.deadline_hours)},
        )
        created += was_created
    return created


def bill_downloads_claim(*, limit: int = 100) -> list[int]:
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            BillDownload.objects.select_for_update(skip_locked=True)
            .filter(status=BillDownloadStatus.PENDING, next_attempt_at__lte=now)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:limit]
        )
        BillDownload.objects.filter(pk__in=ids).update(next_attempt_at=now + timedelta(seconds=LEASE_SECONDS))
    return ids


def bill_download_attempt(*, download_id: int) -> BillDownload:
    """One attempt (idempotent: a done or manual row is left alone). Reconciles what arrives."""
    from apps.reconciliation.services import recon_run  # services imports bills; avoid a cycle at import

    download = BillDownload.objects.select_related("account").get(pk=download_id)
    if download.status != BillDownloadStatus.PENDING:
        return download
    try:
        bill, _ = bill_download(account=download.account, day=download.day)
    except ChannelFailure as exc:
        now = timezone.now()
        attempts = download.attempts + 1
        following = now + retry_delay(attempts)
        status = BillDownloadStatus.MANUAL if following > download.deadline else BillDownloadStatus.PENDING
        BillDownload.objects.filter(pk=download.pk).update(
            attempts=F("attempts") + 1, next_attempt_at=None if status == BillDownloadStatus.MANUAL else following,
            status=status, last_error=f"{type(exc).__name__}: {exc.message}"[:255],
        )  # fmt: skip
        download.refresh_from_db()
        return download
    BillDownload.objects.filter(pk=download.pk).update(
        status=BillDownloadStatus.DONE, attempts=F("attempts") + 1, next_attempt_at=None, last_error=""
    )
    try:
        recon_run(account=download.account, day=download.day, bill=bill, by="system:schedule")
    except Exception:  # the run and the bill carry the reason; the console shows both
        logger.exception("reconciliation of %s %s failed", download.account_id, download.day)
    download.refresh_from_db()
    return download
