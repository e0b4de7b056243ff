from celery import shared_task

from apps.core.idempotency import idempotency_keys_purge


@shared_task(name="apps.core.tasks.idempotency_keys_purge", ignore_result=True)
def idempotency_keys_purge_task() -> int:
    return idempotency_keys_purge()
