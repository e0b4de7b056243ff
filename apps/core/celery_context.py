"""Carries the request id from the publishing code into Celery tasks and their log lines."""

from celery import signals

from apps.core.context import current_request_id, new_request_id, set_request_id

HEADER = "paysys_request_id"


@signals.before_task_publish.connect
def _attach_request_id(headers=None, **kwargs):
    if headers is not None:
        headers.setdefault(HEADER, current_request_id() or new_request_id())


@signals.task_prerun.connect
def _restore_request_id(task=None, **kwargs):
    request_id = getattr(task.request, HEADER, None) or (task.request.headers or {}).get(HEADER)
    set_request_id(request_id or new_request_id())
