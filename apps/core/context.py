"""The request id that follows one payment through requests, rows, tasks, channel calls and logs."""

import contextvars
import logging
import re
import uuid

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def new_request_id() -> str:
    return f"iar_{uuid.uuid4().hex[:24]}"


def accept_request_id(value: str | None) -> str:
    """The caller's X-Request-Id when it is sane, else a fresh one."""
    return value if value and _VALID.match(value) else new_request_id()


def current_request_id() -> str:
    return _request_id.get()


def set_request_id(value: str) -> contextvars.Token:
    return _request_id.set(value)


def reset_request_id(token: contextvars.Token) -> None:
    _request_id.reset(token)


class RequestIdLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        return True
