"""Thin Celery tasks of reconciliation (ids in, one service call)."""

from celery import shared_task

from apps.reconciliation.downloads import bill_download_attempt, bill_downloads_claim, bill_downloads_open


@shared_task(acks_late=True, reject_on_worker_lost=True)
def recon_download_task(download_id: int) -> None:
    bill_download_attempt(download_id=download_id)


@shared_task
def recon_bills_due() -> int:
    """Beat, every 5 minutes: open the days whose bill time passed, attempt the due downloads."""
    bill_downloads_open()
    ids = bill_downloads_claim()
    for download_id in ids:
        recon_download_task.delay(download_id)
    return len(ids)
