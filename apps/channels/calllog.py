"""The channel call log: every outbound provider call, timed and recorded as one `ChannelCall` row.

`adapter_for(account)` returns a `LoggedAdapter`: a transparent proxy around the provider adapter.
Its outbound operations (create, query and close payment, refund, refund query, bill download) are
timed and recorded; everything else (parsing a notification or a bill, the answers a provider
expects, the capabilities) is handed to the adapter untouched. The adapter's result is returned
and its exceptions re-raised unchanged: callers cannot tell the proxy is there.

The row is one plain INSERT. Outside a transaction (the normal case: DESIGN.md forbids holding one
across a network call) it autocommits on the request's own connection: one round trip. A
successful call's row inside `apps.core.db.held_writes` costs none: it rides with the caller's
next statement. A failed call's row is written at once, since routing's next decision (a failover
among them) must count the fault. Inside a caller's atomic block it goes through a short-lived
connection of its own, so a caller that rolls back does not erase the record of a call that
really happened. Logging never breaks the call: a failed insert is logged and swallowed. No
body, credential or message is recorded: only codes, status and timing.
"""

import functools
import logging
import math
import time
import urllib.error

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from apps.channels.adapters.base import (
    BillNotReady,
    ChannelAdapter,
    ChannelFailure,
    ChannelRejected,
    ChannelResponseInvalid,
    ChannelTimeout,
    ChannelUnavailable,
)
from apps.channels.models import CallOperation, CallOutcome, ChannelCall
from apps.core.context import current_request_id
from apps.core.db import later

logger = logging.getLogger(__name__)

_COLUMNS = (
    "provider",
    "account",
    "operation",
    "outcome",
    "http_status",
    "result_code",
    "latency_ms",
    "request_id",
    "created_at",
)


@functools.cache
def _insert_sql() -> str:
    opts = ChannelCall._meta
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    columns = ", ".join(quote(opts.get_field(name).column) for name in _COLUMNS)
    placeholders = ", ".join(["%s"] * len(_COLUMNS))
    return f"INSERT INTO {quote(opts.db_table)} ({columns}) VALUES ({placeholders})"


def channel_call_record(
    *,
    provider: str,
    account_id: int,
    operation: str,
    outcome: str,
    http_status: int | None,
    result_code: str,
    latency_ms: int,
    request_id: str,
) -> None:
    """Writes one call-log row, surviving any rollback of the caller's transaction.

    Never raises: the call being logged has already happened and its result must reach the caller
    (a held row that cannot be written is left out of the statement it rides on; apps.core.db).
    """
    params = (
        provider,
        account_id,
        operation,
        outcome,
        http_status,
        result_code[:64],
        latency_ms,
        request_id[:64],
        timezone.now(),
    )
    try:
        connection = connections[DEFAULT_DB_ALIAS]
        if not connection.in_atomic_block:
            if outcome == CallOutcome.OK:
                later(_insert_sql(), params)  # autocommitted now, or held for the caller's next statement
            else:  # a fault counts in routing's very next decision: written now
                with connection.cursor() as cursor:
                    cursor.execute(_insert_sql(), params)
            return
        # Inside a caller's transaction: an autocommitting connection of our own (rare path).
        side = connections.create_connection(DEFAULT_DB_ALIAS)
        try:
            with side.cursor() as cursor:
                cursor.execute(_insert_sql(), params)
        finally:
            side.close()
    except Exception:
        logger.exception("channel call log: could not record %s on account %s (%s)", operation, account_id, outcome)


def _http_status_of(exc: BaseException) -> int | None:
    """The HTTP status behind a failure, when the adapter or its transport made it known."""
    status = getattr(exc, "http_status", None)
    if isinstance(status, int):
        return status
    seen = set()
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, urllib.error.HTTPError):
            return cause.code
        response = getattr(cause, "response", None)  # requests / httpx style errors
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            return status
        cause = cause.__cause__ or cause.__context__
    answered = getattr(exc, "reached_provider", True)  # False: refused locally or never connected
    if answered and isinstance(exc, ChannelRejected | ChannelResponseInvalid | BillNotReady):
        return 200  # the provider answered; an HTTP error would have been found above
    return None


def _outcome_of(exc: BaseException) -> str:
    if isinstance(exc, ChannelTimeout):
        return CallOutcome.TIMEOUT
    if isinstance(exc, ChannelUnavailable):
        return CallOutcome.UNAVAILABLE
    if isinstance(exc, ChannelResponseInvalid):
        return CallOutcome.INVALID_RESPONSE
    if isinstance(exc, ChannelRejected | BillNotReady):
        return CallOutcome.REJECTED
    return CallOutcome.ERROR


def _result_code_of(result) -> str:
    """A provider code carried by a successful answer (e.g. Alipay's `10000` or `ACQ.TRADE_NOT_EXIST`)."""
    code = getattr(result, "code", None)
    if code:
        return str(code)
    raw = getattr(result, "raw", None)
    if isinstance(raw, dict):
        return str(raw.get("sub_code") or raw.get("code") or "")
    return ""


class LoggedAdapter(ChannelAdapter):
    """A transparent proxy that records every outbound call of the adapter it wraps."""

    def __init__(self, adapter: ChannelAdapter):
        # Deliberately not calling super().__init__: every attribute comes from the wrapped adapter.
        self._adapter = adapter

    def __getattr__(self, name):
        return getattr(self._adapter, name)

    def __repr__(self) -> str:
        return f"LoggedAdapter({self._adapter!r})"

    @property
    def wrapped(self) -> ChannelAdapter:
        return self._adapter

    # The interface's attributes, read from the wrapped adapter (spelled out rather than left to
    # __getattr__ so that the proxy's surface is the interface's, visibly).
    provider = property(lambda self: self._adapter.provider)
    methods = property(lambda self: self._adapter.methods)
    currencies = property(lambda self: self._adapter.currencies)
    refunds_notify = property(lambda self: self._adapter.refunds_notify)
    closes_payments = property(lambda self: self._adapter.closes_payments)
    account = property(lambda self: self._adapter.account)

    def _logged(self, operation: str, method, /, *args, **kwargs):
        started = time.perf_counter()
        try:
            result = method(*args, **kwargs)
        except NotImplementedError:
            raise  # the adapter does not offer this operation: no call was made
        except Exception as exc:
            self._record(operation, started, outcome=_outcome_of(exc), http_status=_http_status_of(exc), exc=exc)
            raise
        self._record(operation, started, outcome=CallOutcome.OK, http_status=200, result_code=_result_code_of(result))
        return result

    def _record(self, operation, started, *, outcome, http_status, result_code="", exc=None) -> None:
        # Rounded up: a call that happened took time, and a 0 would read as "not measured".
        latency_ms = max(1, math.ceil((time.perf_counter() - started) * 1000))
        if exc is not None:
            result_code = exc.code if isinstance(exc, ChannelFailure) else type(exc).__name__
        account = self._adapter.account
        channel_call_record(
            provider=account.provider,
            account_id=account.id,
            operation=operation,
            outcome=outcome,
            http_status=http_status,
            result_code=result_code or "",
            latency_ms=latency_ms,
            request_id=current_request_id(),
        )

    # --- outbound: timed and recorded ----------------------------------------------------------

    def create_payment(self, request):
        return self._logged(CallOperation.CREATE_PAYMENT, self._adapter.create_payment, request)

    def query_payment(self, **kwargs):
        return self._logged(CallOperation.QUERY_PAYMENT, self._adapter.query_payment, **kwargs)

    def close_payment(self, **kwargs):
        return self._logged(CallOperation.CLOSE_PAYMENT, self._adapter.close_payment, **kwargs)

    def refund(self, request):
        return self._logged(CallOperation.REFUND, self._adapter.refund, request)

    def query_refund(self, **kwargs):
        return self._logged(CallOperation.QUERY_REFUND, self._adapter.query_refund, **kwargs)

    def download_bill(self, **kwargs):
        return self._logged(CallOperation.DOWNLOAD_BILL, self._adapter.download_bill, **kwargs)

    # --- local: handed through unrecorded ------------------------------------------------------

    def parse_notification(self, **kwargs):
        return self._adapter.parse_notification(**kwargs)

    def parse_bill(self, source):
        return self._adapter.parse_bill(source)

    def notification_ack(self):
        return self._adapter.notification_ack()

    def notification_nack(self):
        return self._adapter.notification_nack()
