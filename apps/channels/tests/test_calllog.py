"""The channel call log: every outbound provider call is one ChannelCall row, and logging never changes the call."""

import http.server
import socket
import threading

import pytest
from django.db import transaction

from apps.channels.adapters import adapter_class
from apps.channels.adapters.base import (
    AccountConfig,
    ChannelResponseInvalid,
    ChannelTimeout,
    ChannelUnavailable,
    NotificationInvalid,
)
from apps.channels.calllog import LoggedAdapter, channel_call_record
from apps.channels.models import CallOperation, CallOutcome, ChannelCall
from apps.channels.services import adapter_for, channel_account_upsert
from apps.core import crypto
from apps.core.context import reset_request_id, set_request_id
from apps.core.db import held_writes
from tests.support import assert_error, charge_payload

pytestmark = pytest.mark.usefixtures("celery_eager")


def account_at(base_url: str, *, name: str):
    key = crypto.rsa_generate()
    return channel_account_upsert(
        name=name,
        provider="alipay",
        base_url=base_url,
        credentials={
            "app_id": "2021000000000042",
            "app_private_key": crypto.private_key_pem(key),
            "alipay_public_key": crypto.public_key_pem(key),
        },
        methods=["alipay_qr"],
        currencies=["CNY"],
        livemode=False,
    )


@pytest.fixture
def answering_gateway():
    """A local gateway answering every request with a fixed status and body."""
    servers = []

    def start(status: int, body: bytes) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/gateway.do"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def only_call() -> ChannelCall:
    calls = list(ChannelCall.objects.all())
    assert len(calls) == 1, calls
    return calls[0]


def test_a_charge_create_through_the_api_logs_the_provider_call(api, merchant, sandbox_alipay):
    account, _ = sandbox_alipay

    response = api.post(
        "/v1/charges", charge_payload(merchant, order_no="calllog0001"), **{"X-Request-Id": "req-calllog-1"}
    )

    assert response.status_code == 200, response.content
    call = only_call()
    assert (call.provider, call.account_id, call.operation, call.outcome) == (
        "alipay",
        account.pk,
        CallOperation.CREATE_PAYMENT,
        CallOutcome.OK,
    )
    assert call.http_status == 200
    assert call.latency_ms > 0
    assert call.request_id == "req-calllog-1"
    assert call.result_code == ""  # Alipay's precreate answer is reduced to a credential and trade no


def test_a_charge_on_an_unreachable_account_logs_unavailable(
    api, merchant, unreachable_alipay_account, transactional_db
):
    response = api.post(
        "/v1/charges", charge_payload(merchant, order_no="calllog0002"), **{"X-Request-Id": "req-calllog-2"}
    )

    assert_error(response, 402, code="channel_unavailable")
    call = only_call()
    assert (call.account_id, call.operation, call.outcome) == (
        unreachable_alipay_account.pk,
        CallOperation.CREATE_PAYMENT,
        CallOutcome.UNAVAILABLE,
    )
    assert call.http_status is None  # a refused connection has no HTTP status
    assert call.result_code == "connection_failed"
    assert call.request_id == "req-calllog-2"
    assert call.latency_ms > 0


def test_a_query_records_the_providers_code_and_returns_the_adapters_answer(sandbox_alipay):
    account, _ = sandbox_alipay
    token = set_request_id("req-calllog-3")
    try:
        result = adapter_for(account).query_payment(out_trade_no="ch_never_created", currency="CNY")
    finally:
        reset_request_id(token)

    assert result.status == "not_found"
    call = only_call()
    assert (call.operation, call.outcome, call.http_status, call.result_code, call.request_id) == (
        CallOperation.QUERY_PAYMENT,
        CallOutcome.OK,
        200,
        "ACQ.TRADE_NOT_EXIST",
        "req-calllog-3",
    )


@pytest.mark.parametrize(
    "status, body, error, outcome, http_status, code",
    [
        (502, b"bad gateway", ChannelUnavailable, CallOutcome.UNAVAILABLE, 502, "http_502"),
        (
            200,
            b"<html>not json</html>",
            ChannelResponseInvalid,
            CallOutcome.INVALID_RESPONSE,
            200,
            "unreadable_response",
        ),
    ],
    ids=["5xx", "unreadable"],
)
def test_a_failed_call_is_logged_and_its_exception_reaches_the_caller_unchanged(
    transactional_db, answering_gateway, status, body, error, outcome, http_status, code
):
    account = account_at(answering_gateway(status, body), name="Broken gateway")

    with pytest.raises(error) as excinfo:
        adapter_for(account).close_payment(out_trade_no="ch_broken")

    assert type(excinfo.value) is error
    assert excinfo.value.code == code
    call = only_call()
    assert (call.operation, call.outcome, call.http_status, call.result_code) == (
        CallOperation.CLOSE_PAYMENT,
        outcome,
        http_status,
        code,
    )


def test_a_gateway_that_never_answers_is_logged_as_a_timeout(transactional_db, settings):
    settings.PAYSYS_CHANNEL_TIMEOUT_SECONDS = 0.3
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts into the backlog, never answers
    try:
        account = account_at(f"http://127.0.0.1:{listener.getsockname()[1]}/gateway.do", name="Silent gateway")
        with pytest.raises(ChannelTimeout):
            adapter_for(account).query_payment(out_trade_no="ch_slow", currency="CNY")
    finally:
        listener.close()

    call = only_call()
    assert (call.outcome, call.http_status, call.result_code) == (CallOutcome.TIMEOUT, None, "timeout")
    assert call.latency_ms >= 300


def test_the_log_row_survives_the_callers_rollback(transactional_db, unreachable_alipay_account):
    class CallerGaveUp(Exception):
        pass

    with pytest.raises(CallerGaveUp), transaction.atomic():
        with pytest.raises(ChannelUnavailable):
            adapter_for(unreachable_alipay_account).query_payment(out_trade_no="ch_x", currency="CNY")
        raise CallerGaveUp

    assert only_call().outcome == CallOutcome.UNAVAILABLE


def test_a_failure_to_log_does_not_break_the_call(transactional_db, unreachable_alipay_account, caplog):
    # An account id with no row: the insert violates the foreign key and fails for real.
    config = AccountConfig(
        id=2_000_000_000,
        provider="alipay",
        base_url=unreachable_alipay_account.base_url,
        credentials=unreachable_alipay_account.credentials,
        livemode=False,
    )
    adapter = LoggedAdapter(adapter_class("alipay")(config))

    with pytest.raises(ChannelUnavailable) as excinfo:
        adapter.query_payment(out_trade_no="ch_x", currency="CNY")

    assert excinfo.value.code == "connection_failed"
    assert ChannelCall.objects.count() == 0
    assert "channel call log: could not record query_payment on account 2000000000" in caplog.text


def test_local_operations_are_not_logged(transactional_db, unreachable_alipay_account):
    adapter = adapter_for(unreachable_alipay_account)

    with pytest.raises(NotificationInvalid):
        adapter.parse_notification(headers={}, body=b"not=a&signed=form")
    ack, nack = adapter.notification_ack(), adapter.notification_nack()

    assert (ack.body, nack.body) == (b"success", b"fail")
    assert ChannelCall.objects.count() == 0


def test_the_proxy_reads_as_the_adapter_it_wraps(transactional_db, unreachable_alipay_account):
    adapter = adapter_for(unreachable_alipay_account)

    assert isinstance(adapter, LoggedAdapter)
    inner = adapter.wrapped
    assert (adapter.provider, adapter.methods, adapter.currencies, adapter.refunds_notify) == (
        inner.provider,
        inner.methods,
        inner.currencies,
        inner.refunds_notify,
    )
    assert adapter.account is inner.account
    assert adapter.app_id == inner.app_id == "2021000000000009"  # adapter-specific attributes pass through


def _record(account_id: int, outcome: str, request_id: str) -> None:
    channel_call_record(
        provider="alipay", account_id=account_id, operation=CallOperation.CREATE_PAYMENT, outcome=outcome,
        http_status=None, result_code="", latency_ms=3, request_id=request_id,
    )  # fmt: skip


def test_in_a_held_block_a_fault_is_logged_at_once_and_a_success_with_the_next_statement(
    unreachable_alipay_account, transactional_db
):
    account_id = unreachable_alipay_account.pk
    with held_writes():
        _record(account_id, CallOutcome.UNAVAILABLE, "fault")
        _record(account_id, CallOutcome.OK, "ok")
        assert list(ChannelCall.objects.values_list("request_id", flat=True)) == ["fault"]  # routing sees it now
    assert sorted(ChannelCall.objects.values_list("request_id", flat=True)) == ["fault", "ok"]
