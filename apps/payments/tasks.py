"""Thin tasks: ids in, one service call. Sweeps re-find anything whose task was lost."""

import logging

from celery import shared_task

from apps.payments import queries, refunds
from apps.payments.due import claim_due
from apps.payments.models import OPEN_STATUSES, Charge, Refund, RefundStatus
from apps.payments.selectors import attention_counts

logger = logging.getLogger(__name__)

RELIABLE = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(name="apps.payments.tasks.charge_query", **RELIABLE)
def charge_query_task(charge_id: int) -> None:
    queries.charge_query(charge_id=charge_id)


@shared_task(name="apps.payments.tasks.refund_query", **RELIABLE)
def refund_query_task(refund_id: int) -> None:
    refunds.refund_query(refund_id=refund_id)


@shared_task(name="apps.payments.tasks.refund_submit", **RELIABLE)
def refund_submit_task(refund_id: int) -> None:
    refunds.refund_submit(refund_id=refund_id, request_id="")


@shared_task(name="apps.payments.tasks.charges_query_sweep", ignore_result=True)
def charges_query_sweep() -> int:
    ids = claim_due(Charge, statuses=OPEN_STATUSES)
    for charge_id in ids:
        charge_query_task.delay(charge_id)
    return len(ids)


@shared_task(name="apps.payments.tasks.refunds_query_sweep", ignore_result=True)
def refunds_query_sweep() -> int:
    ids = claim_due(Refund, statuses=[RefundStatus.PENDING])
    for refund_id in ids:
        refund_query_task.delay(refund_id)
    return len(ids)


@shared_task(name="apps.payments.tasks.attention_sweep", ignore_result=True)
def attention_sweep() -> dict:
    """The compensation sweep: counts what is stuck or held and raises an alert (an ERROR log line,
    which monitoring picks up) while anything needs a person; the console front page shows the same."""
    counts = {item.label: item.count for item in attention_counts()}
    stuck = {label: count for label, count in counts.items() if count}
    if stuck:
        logger.error("paysys needs attention: %s", ", ".join(f"{label}: {n}" for label, n in stuck.items()))
    return counts
