"""Alipay open platform (`gateway.do`), through python-alipay-sdk (PROVIDERS.md A).

The SDK signs requests, GETs the gateway and verifies the response node's signature; this
adapter points it at the account's gateway URL, checks `code` itself (the SDK does not), and
translates every failure into the ChannelFailure family so no SDK exception escapes.

Methods: `alipay_qr` (precreate: the credential is the QR code string), `alipay_wap` (wap.pay)
and `alipay_pc_direct` (page.pay). The last two are browser redirects: their credential is the
object of signed gateway parameters plus `channel_url` (the gateway), so that
`channel_url + "?" + urlencode(params)` opens the cashier, as pingpp-js builds it.
"""

import binascii
import csv
import functools
import io
import itertools
import json
import math
import zipfile
from collections.abc import Iterator
from datetime import date, datetime
from typing import BinaryIO
from urllib.parse import parse_qs, parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import requests
import urllib3
from alipay import AliPay, AliPayConfig
from alipay.exceptions import AliPayException, AliPayValidationError
from django.utils import timezone
from moneyed import Money
from urllib3.util import Retry

from apps.channels.adapters.base import (
    AccountConfig,
    BillInvalid,
    BillLine,
    BillLineKind,
    BillNotReady,
    ChannelAdapter,
    ChannelRejected,
    ChannelResponseInvalid,
    ChannelTimeout,
    ChannelUnavailable,
    NotificationInvalid,
    PaymentCreated,
    PaymentRequest,
    PaymentResult,
    PaymentStatus,
    ProviderReply,
    RefundRequest,
    RefundResult,
    RefundStatus,
)
from apps.channels.adapters.bills import local_times, minor_units
from apps.core import crypto
from apps.core.errors import InvalidRequest
from apps.core.money import parse_decimal_string, to_decimal_string

ALIPAY_TZ = ZoneInfo("Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SUCCESS_CODE = "10000"
TRADE_NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
TRADE_STATUS_ERROR = "ACQ.TRADE_STATUS_ERROR"
MAX_TIMEOUT_MINUTES = 15 * 24 * 60  # Alipay accepts 1m to 15d
BILL_NOT_EXIST = "isp.bill_not_exist"
RETRYABLE_SUB_CODES = frozenset({"ACQ.SYSTEM_ERROR", "isp.unknow-error", "aop.unknow-error"})
REDIRECT_METHODS = {
    "alipay_wap": "api_alipay_trade_wap_pay",
    "alipay_pc_direct": "api_alipay_trade_page_pay",
}

TRADE_STATUSES = {
    "WAIT_BUYER_PAY": PaymentStatus.PENDING,
    "TRADE_SUCCESS": PaymentStatus.SUCCEEDED,
    "TRADE_FINISHED": PaymentStatus.SUCCEEDED,
    "TRADE_CLOSED": PaymentStatus.CLOSED,
}


class _AliPay(AliPay):
    """python-alipay-sdk with its RSA2 operations done by `cryptography` (apps.core.crypto, keys
    cached) instead of pycryptodome: the same PKCS#1 v1.5 SHA-256 signatures, several times less
    CPU per call on the charge path (profiled: ~12 ms vs ~1.7 ms per signature under load)."""

    def _load_key(self):
        # The SDK would parse both keys with pycryptodome (~100 ms, a primality test); the keys are
        # parsed (and cached) by apps.core.crypto instead, which fails the same way on a bad key.
        crypto.load_private_key(self._app_private_key_string)
        crypto.load_public_key(self._alipay_public_key_string)

    def _sign(self, unsigned_string):
        return crypto.rsa_sign(self._app_private_key_string, unsigned_string.encode())

    def _verify(self, raw_content, signature):
        return crypto.rsa_verify(self._alipay_public_key_string, raw_content.encode(), signature)

    def verified_sync_response(self, data, response_type):
        # The SDK opens a new connection per call (urlopen); the gateway is reached over a
        # kept-alive one instead, which saves a TCP handshake on both sides of every call.
        gateway = urlsplit(self._gateway)
        pool = _GATEWAY_POOLS.connection_from_host(gateway.hostname, gateway.port, gateway.scheme)
        query = f"{gateway.query}&{self.sign_data(data)}" if gateway.query else self.sign_data(data)
        target = f"{gateway.path or '/'}?{query}"  # handed to the pool as a path: parsed once
        response = pool.urlopen("GET", target, timeout=self._config.timeout, redirect=False)
        if response.status >= 400:
            unanswered = _first_error(response.retries)
            if unanswered is not None:  # the answer to a second try: the first one's outcome is unknown
                raise unanswered from _GatewayHttpError(response.status)
            raise _GatewayHttpError(response.status)
        return self._verify_and_return_sync_response(response.data.decode(), response_type)


def _first_error(retries: Retry | None) -> Exception | None:
    """The error of the first failed try of a call, if a try failed."""
    return next((entry.error for entry in (retries.history if retries else ()) if entry.error), None)


def _closed_unanswered(error: Exception | None) -> bool:
    """The gateway closed or reset the connection before a whole answer came: urllib3's
    `ProtocolError` over http.client's `RemoteDisconnected`, a reset or a broken pipe."""
    cause = error.args[-1] if isinstance(error, urllib3.exceptions.ProtocolError) and error.args else None
    return isinstance(cause, ConnectionResetError | BrokenPipeError)


class _ClosedUnansweredRetry(Retry):
    """Makes a gateway call once more when the gateway closed the connection without an answer,
    and never for anything else.

    That is what a kept-alive connection meets when the gateway closes it for idleness just as
    the next request goes out. bench/api_charge.py met it now and then as a `504 channel_timeout`
    (the sandbox's gunicorn closes connections idle for 2 s). The second try takes another pooled
    connection urllib3 finds open, or a new one.

    Repeating is safe: every gateway operation is keyed by out_trade_no or out_request_no (or
    only reads), and the gateway answers a repeat with the same trade or the same refund, so the
    second try cannot pay or refund twice. A second close is a success on the sandbox, and
    `ACQ.TRADE_STATUS_ERROR` on Alipay, after which paysys queries the trade.

    Whatever else fails is not tried again and reaches `AlipayAdapter._call` as raised: a
    timeout (the gateway may still be working on it: an unknown outcome, settled by query) and a
    refused connection (nothing was sent: routing fails over). And once a try went unanswered,
    any failure of the second (refused, timed out, an HTTP error) is reported as the first one's
    lost connection: the first may have been acted on, so the outcome stays unknown.
    """

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if error is None or (not self.history and _closed_unanswered(error)):
            return super().increment(method, url, response, error, _pool, _stacktrace)
        error = error.with_traceback(_stacktrace)
        unanswered = _first_error(self)
        if unanswered is not None:
            raise unanswered from error
        raise error


# One pool per process. Failures are classified by `AlipayAdapter._call`.
_GATEWAY_POOLS = urllib3.PoolManager(
    num_pools=16,
    maxsize=32,
    block=False,
    retries=_ClosedUnansweredRetry(total=1, redirect=False, respect_retry_after_header=False),
)


class _GatewayHttpError(Exception):
    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.status = status


@functools.lru_cache(maxsize=64)
def _client(
    account_id: int, app_id: str, app_private_key: str, alipay_public_key: str, gateway: str, timeout: float
) -> AliPay:
    """One SDK client per account and credentials (loading RSA keys is not free)."""
    client = _AliPay(
        appid=app_id,
        app_notify_url=None,
        app_private_key_string=app_private_key,
        alipay_public_key_string=alipay_public_key,
        sign_type="RSA2",
        config=AliPayConfig(timeout=timeout),
    )
    client._gateway = gateway  # the SDK hard-codes Alipay's hosts; the account names the gateway
    return client


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=ALIPAY_TZ)


def _unsigned_error_node(exc: AliPayException) -> dict:
    """The node of an unsigned error answer; the SDK keeps the raw body as the exception's message."""
    raw = getattr(exc, "_AliPayException__message", "") or ""
    try:
        document = json.loads(raw)
    except (TypeError, ValueError):
        return {"code": str(getattr(exc, "_AliPayException__code", "") or "")}
    for key, value in document.items():
        if key.endswith("_response") and isinstance(value, dict):
            return value
    return {}


class AlipayAdapter(ChannelAdapter):
    provider = "alipay"
    methods = frozenset({"alipay_qr", "alipay_wap", "alipay_pc_direct"})
    currencies = frozenset({"CNY"})
    refunds_notify = False

    # --- plumbing ------------------------------------------------------------------------------

    @property
    def app_id(self) -> str:
        return str(self.account.credentials.get("app_id", ""))

    def _client(self) -> AliPay:
        account: AccountConfig = self.account
        credentials = account.credentials
        try:
            return _client(
                account.id,
                str(credentials["app_id"]),
                credentials["app_private_key"],
                credentials["alipay_public_key"],
                account.base_url,
                float(account.timeout_seconds),
            )
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise ChannelUnavailable(
                f"alipay account {account.id} credentials are incomplete or unreadable",
                code="account_misconfigured",
                reached_provider=False,
            ) from exc

    def _call(self, api_name: str, /, **kwargs) -> dict:
        """Calls an SDK method and returns the verified response node, or raises a ChannelFailure."""
        client = self._client()
        try:
            return getattr(client, api_name)(**kwargs)
        except AliPayValidationError as exc:
            raise ChannelResponseInvalid("alipay response signature does not verify", code="invalid_signature") from exc
        except AliPayException as exc:  # an unsigned answer (an error the gateway did not sign)
            self._raise_for_node(_unsigned_error_node(exc) or {"code": "", "sub_msg": str(exc)})
            raise ChannelResponseInvalid("alipay answered an unsigned response", code="unsigned_response") from exc
        except _GatewayHttpError as exc:
            raise ChannelUnavailable(
                f"alipay gateway answered HTTP {exc.status}",
                code=f"http_{exc.status}",
                reached_provider=exc.status >= 500,
                http_status=exc.status,
            ) from exc
        except urllib3.exceptions.NewConnectionError as exc:  # refused, unreachable: nothing was sent
            raise ChannelUnavailable(
                f"alipay gateway unreachable: {exc}", code="connection_failed", reached_provider=False
            ) from exc
        except urllib3.exceptions.TimeoutError as exc:  # connecting or waiting for the answer
            raise ChannelTimeout(f"alipay gateway timed out: {exc}", code="timeout") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # the connection dropped after the request
            raise ChannelTimeout(f"alipay connection lost: {exc!r}", code="connection_lost") from exc
        except (ValueError, KeyError, AttributeError, TypeError, IndexError) as exc:  # not Alipay's JSON
            raise ChannelResponseInvalid(f"alipay response unreadable: {exc!r}", code="unreadable_response") from exc

    @staticmethod
    def _raise_for_node(node: dict) -> None:
        """Raises for any answer but 10000. Service errors (20000) are unavailability, the rest refusals."""
        code = str(node.get("code", ""))
        if code == SUCCESS_CODE:
            return
        sub_code = str(node.get("sub_code") or "")
        message = str(node.get("sub_msg") or node.get("msg") or f"alipay answered code {code}")
        if code == "20000":
            raise ChannelUnavailable(message, code=sub_code or code, reached_provider=True)
        if not code:
            raise ChannelResponseInvalid(message, code="unreadable_response")
        raise ChannelRejected(message, code=sub_code or code)

    def _money(self, value, currency: str) -> Money:
        try:
            return parse_decimal_string(value, currency)
        except (ArithmeticError, ValueError, TypeError, InvalidRequest) as exc:  # not an amount
            raise ChannelResponseInvalid(f"alipay amount unreadable: {value!r}", code="unreadable_response") from exc

    # --- payments ------------------------------------------------------------------------------

    def create_payment(self, request: PaymentRequest) -> PaymentCreated:
        if request.method not in self.methods:
            raise ChannelRejected(f"alipay adapter does not support {request.method}", code="method_unsupported")
        if request.amount.currency.code not in self.currencies:
            raise ChannelRejected(f"alipay does not take {request.amount.currency.code}", code="currency_unsupported")
        seconds_left = (request.time_expire - timezone.now()).total_seconds()
        minutes = min(MAX_TIMEOUT_MINUTES, max(1, math.ceil(seconds_left / 60)))
        extra = {"body": request.body[:128]} if request.body else {}
        if request.method in REDIRECT_METHODS:
            return self._create_redirect(request, timeout_express=f"{minutes}m", extra=extra)
        node = self._call(
            "api_alipay_trade_precreate",
            subject=request.subject[:256],
            out_trade_no=request.out_trade_no,
            total_amount=to_decimal_string(request.amount),
            notify_url=request.notify_url,
            timeout_express=f"{minutes}m",
            **extra,
        )
        self._raise_for_node(node)
        qr_code = node.get("qr_code")
        if not qr_code or node.get("out_trade_no", request.out_trade_no) != request.out_trade_no:
            raise ChannelResponseInvalid(
                "alipay precreate answer lacks qr_code or names another order", code="unreadable_response"
            )
        return PaymentCreated(credential=str(qr_code))

    def _create_redirect(self, request: PaymentRequest, *, timeout_express: str, extra: dict) -> PaymentCreated:
        """wap.pay / page.pay: nothing is sent now; the payer's browser opens the signed URL.

        Ping++'s `extra.success_url` (required) becomes Alipay's `return_url`; for alipay_wap
        `extra.cancel_url` becomes `quit_url`.
        """
        success_url = str((request.extra or {}).get("success_url") or "")
        if not success_url:
            raise ChannelRejected(f"{request.method} needs extra.success_url", code="success_url_required")
        if request.method == "alipay_wap" and request.extra.get("cancel_url"):
            extra["quit_url"] = str(request.extra["cancel_url"])
        signed_query = getattr(self._client(), REDIRECT_METHODS[request.method])(
            subject=request.subject[:256],
            out_trade_no=request.out_trade_no,
            total_amount=to_decimal_string(request.amount),
            return_url=success_url,
            notify_url=request.notify_url,
            timeout_express=timeout_express,
            **extra,
        )
        params = dict(parse_qsl(signed_query, keep_blank_values=True))
        return PaymentCreated(credential={**params, "channel_url": self.account.base_url})

    def query_payment(self, *, out_trade_no: str, currency: str, requested_at=None) -> PaymentResult:
        node = self._call("api_alipay_trade_query", out_trade_no=out_trade_no)
        if str(node.get("code")) != SUCCESS_CODE and node.get("sub_code") == TRADE_NOT_EXIST:
            return PaymentResult(out_trade_no=out_trade_no, status=PaymentStatus.NOT_FOUND, raw=node)
        self._raise_for_node(node)
        status = TRADE_STATUSES.get(str(node.get("trade_status")))
        if status is None or node.get("out_trade_no", out_trade_no) != out_trade_no:
            raise ChannelResponseInvalid(
                f"alipay query answer unreadable: trade_status={node.get('trade_status')!r}",
                code="unreadable_response",
            )
        if status != PaymentStatus.SUCCEEDED:
            return PaymentResult(
                out_trade_no=out_trade_no, status=status, transaction_no=node.get("trade_no") or None, raw=node
            )
        try:
            paid_at = _parse_time(node.get("send_pay_date"))
        except ValueError as exc:
            raise ChannelResponseInvalid("alipay send_pay_date unreadable", code="unreadable_response") from exc
        return PaymentResult(
            out_trade_no=out_trade_no,
            status=status,
            transaction_no=node.get("trade_no") or None,
            amount=self._money(node.get("total_amount"), currency),
            paid_at=paid_at,
            raw=node,
        )

    def close_payment(self, *, out_trade_no: str, requested_at=None) -> None:
        """Closed, or never existed (a precreated QR code nobody scanned): both mean no payment."""
        node = self._call("api_alipay_trade_close", out_trade_no=out_trade_no)
        if str(node.get("code")) == SUCCESS_CODE or node.get("sub_code") == TRADE_NOT_EXIST:
            return None
        self._raise_for_node(node)
        return None

    # --- refunds -------------------------------------------------------------------------------

    def _refusal(self, node: dict, out_refund_no: str, out_trade_no: str) -> RefundResult:
        """A definitive business refusal (40004) as data; anything else raises as _raise_for_node."""
        sub_code = str(node.get("sub_code") or "")
        if str(node.get("code")) == "40004" and sub_code not in RETRYABLE_SUB_CODES:
            return RefundResult(
                out_refund_no=out_refund_no,
                status=RefundStatus.FAILED,
                out_trade_no=out_trade_no,
                failure_code=sub_code,
                failure_msg=str(node.get("sub_msg") or node.get("msg") or ""),
                raw=node,
            )
        if sub_code in RETRYABLE_SUB_CODES:
            raise ChannelUnavailable(str(node.get("sub_msg") or sub_code), code=sub_code, reached_provider=True)
        self._raise_for_node(node)
        raise ChannelResponseInvalid("alipay refund answer unreadable", code="unreadable_response")

    def refund(self, request: RefundRequest) -> RefundResult:
        """`alipay.trade.refund`, synchronous: 10000 with fund_change=Y means refunded now.

        out_request_no is paysys's refund id, so a retry of the same refund is idempotent at
        Alipay. 10000 without fund_change=Y (a repeat, or money not moved in this call) is
        settled by a refund query. Business refusals are a FAILED result with Alipay's sub_code.
        """
        currency = request.amount.currency.code
        extra = {"refund_reason": request.reason[:256]} if request.reason else {}
        node = self._call(
            "api_alipay_trade_refund",
            refund_amount=to_decimal_string(request.amount),
            out_trade_no=request.out_trade_no,
            trade_no=request.transaction_no or None,
            out_request_no=request.out_refund_no,
            **extra,
        )
        if str(node.get("code")) != SUCCESS_CODE:
            return self._refusal(node, request.out_refund_no, request.out_trade_no)
        if node.get("out_trade_no", request.out_trade_no) != request.out_trade_no:
            raise ChannelResponseInvalid("alipay refund answer names another order", code="unreadable_response")
        if node.get("fund_change") != "Y":
            return self.query_refund(
                out_trade_no=request.out_trade_no, out_refund_no=request.out_refund_no, currency=currency
            )
        try:
            succeeded_at = _parse_time(node.get("gmt_refund_pay")) or timezone.now()
        except ValueError as exc:
            raise ChannelResponseInvalid("alipay gmt_refund_pay unreadable", code="unreadable_response") from exc
        return RefundResult(
            out_refund_no=request.out_refund_no,
            status=RefundStatus.SUCCEEDED,
            out_trade_no=request.out_trade_no,
            amount=self._money(node.get("send_back_fee") or to_decimal_string(request.amount), currency),
            succeeded_at=succeeded_at,
            raw=node,
        )

    def query_refund(self, *, out_trade_no: str, out_refund_no: str, currency: str, requested_at=None) -> RefundResult:
        """`alipay.trade.fastpay.refund.query`: REFUND_SUCCESS (or, from older gateways, a filled
        answer without refund_status) is SUCCEEDED; an empty 10000 means Alipay holds no such
        refund (NOT_FOUND: it was never made); another refund_status is PENDING."""
        node = self._call(
            "api_alipay_trade_fastpay_refund_query", out_request_no=out_refund_no, out_trade_no=out_trade_no
        )
        if str(node.get("code")) != SUCCESS_CODE and node.get("sub_code") == TRADE_NOT_EXIST:
            return RefundResult(out_refund_no=out_refund_no, status=RefundStatus.NOT_FOUND, out_trade_no=out_trade_no,
                                raw=node)  # fmt: skip
        self._raise_for_node(node)
        if not node.get("out_request_no") and not node.get("refund_amount"):
            return RefundResult(out_refund_no=out_refund_no, status=RefundStatus.NOT_FOUND, out_trade_no=out_trade_no,
                                raw=node)  # fmt: skip
        if node.get("out_request_no", out_refund_no) != out_refund_no:
            raise ChannelResponseInvalid("alipay refund query names another refund", code="unreadable_response")
        refund_status = str(node.get("refund_status") or "REFUND_SUCCESS")
        if refund_status != "REFUND_SUCCESS":
            return RefundResult(out_refund_no=out_refund_no, status=RefundStatus.PENDING, out_trade_no=out_trade_no,
                                raw=node)  # fmt: skip
        try:
            succeeded_at = _parse_time(node.get("gmt_refund_pay"))
        except ValueError as exc:
            raise ChannelResponseInvalid("alipay gmt_refund_pay unreadable", code="unreadable_response") from exc
        return RefundResult(
            out_refund_no=out_refund_no,
            status=RefundStatus.SUCCEEDED,
            out_trade_no=out_trade_no,
            amount=self._money(node.get("refund_amount"), currency),
            succeeded_at=succeeded_at,
            raw=node,
        )

    # --- bills ---------------------------------------------------------------------------------

    def download_bill(self, *, bill_date: date, dest: BinaryIO) -> str:
        """`alipay.data.dataservice.bill.downloadurl.query` (trade bill), then the zip behind the
        short-lived link, streamed into `dest`. BillNotReady on `isp.bill_not_exist`."""
        node = self._call(
            "server_api",
            api_name="alipay.data.dataservice.bill.downloadurl.query",
            biz_content={"bill_type": "trade", "bill_date": bill_date.isoformat()},
        )
        if node.get("sub_code") == BILL_NOT_EXIST:
            raise BillNotReady(f"alipay has no bill for {bill_date} yet", code=BILL_NOT_EXIST)
        self._raise_for_node(node)
        url = str(node.get("bill_download_url") or "")
        if not url.startswith(("http://", "https://")):
            raise ChannelResponseInvalid("alipay bill answer lacks bill_download_url", code="unreadable_response")
        name = (parse_qs(urlsplit(url).query).get("downloadFileName") or [""])[0]
        name = name.replace("\\", "/").rsplit("/", 1)[-1] or f"{self.app_id}_{bill_date:%Y%m%d}.csv.zip"
        timeout = float(self.account.timeout_seconds)
        try:
            with requests.get(url, stream=True, timeout=timeout) as response:
                if response.status_code != 200:
                    raise ChannelUnavailable(
                        f"alipay bill download answered HTTP {response.status_code}",
                        code=f"http_{response.status_code}",
                    )
                for chunk in response.iter_content(chunk_size=1 << 16):
                    dest.write(chunk)
        except requests.Timeout as exc:
            raise ChannelTimeout("alipay bill download timed out", code="timeout") from exc
        except requests.RequestException as exc:
            raise ChannelUnavailable(f"alipay bill download failed: {exc!r}", code="connection_failed") from exc
        return name

    def parse_bill(self, source: BinaryIO) -> Iterator[BillLine]:
        """Streams the lines of a trade bill zip (PROVIDERS.md A5) from its GBK detail member.

        `交易` lines are payments (amount: 订单金额), `退款` lines refunds (amount: the size of
        商家实收, out_refund_no: 退款批次号/请求号); the fee is the size of 服务费; both succeeded
        (the bill lists nothing else). Other business types are not payments or refunds and are
        skipped. BillInvalid, possibly after some lines were yielded, when the file is not a
        zip, is truncated, is not GBK, lacks the header or footer, has a line it cannot read,
        or its footer counts disagree with its lines.
        """
        try:
            archive = zipfile.ZipFile(source)
            member = _bill_detail_member(archive)
            with archive.open(member) as raw:
                yield from _bill_lines(io.TextIOWrapper(raw, encoding="gbk", newline=""))
        except BillInvalid as exc:
            raise BillInvalid(f"alipay bill: {exc}") from exc.__cause__
        except UnicodeDecodeError as exc:
            raise BillInvalid(f"alipay bill: the detail is not GBK text ({exc.reason})") from exc
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
            raise BillInvalid(f"alipay bill: not a readable zip archive ({exc})") from exc
        except Exception as exc:  # zlib.error and other decompressor failures on a damaged member
            if type(exc).__module__ in ("zlib", "bz2", "lzma", "_lzma", "_bz2"):
                raise BillInvalid(f"alipay bill: the archive is damaged ({exc})") from exc
            raise

    # --- notifications -------------------------------------------------------------------------

    def parse_notification(
        self, *, headers: dict, body: bytes, currency: str | None = None
    ) -> PaymentResult | RefundResult:
        """A payment's notification, or a refund's (Alipay's trade_status_sync with out_biz_no,
        refund_fee and gmt_refund: a RefundResult whose amount is None, since refund_fee is
        the trade's cumulative refund, not this refund's)."""
        try:
            text = body.decode("ascii")  # a form body is percent-encoded ASCII
            fields = dict(parse_qsl(text, keep_blank_values=True))
            charset = fields.get("charset", "utf-8").lower()
            if charset not in ("utf-8", "utf8"):
                fields = dict(parse_qsl(text, keep_blank_values=True, encoding=charset, errors="strict"))
        except (UnicodeDecodeError, LookupError, ValueError) as exc:
            raise NotificationInvalid("alipay notification is not a readable form") from exc
        signature = fields.get("sign", "")
        if not signature:
            raise NotificationInvalid("alipay notification has no signature")
        unsigned = {k: v for k, v in fields.items() if k != "sign"}
        client = self._client()
        try:
            valid = client.verify(unsigned, signature)  # pops sign_type itself, checks it is RSA2
        except (AliPayException, binascii.Error, ValueError, TypeError) as exc:
            raise NotificationInvalid("alipay notification signature unreadable") from exc
        if not valid:
            raise NotificationInvalid("alipay notification signature does not verify")
        if fields.get("app_id") != self.app_id:
            raise NotificationInvalid("alipay notification is for another app_id")
        status = TRADE_STATUSES.get(fields.get("trade_status", ""))
        out_trade_no = fields.get("out_trade_no", "")
        if status is None or not out_trade_no:
            raise NotificationInvalid("alipay notification lacks out_trade_no or a known trade_status")
        if fields.get("out_biz_no") and fields.get("refund_fee") and fields.get("gmt_refund"):
            try:
                refunded_at = _parse_time(fields["gmt_refund"])
            except ValueError as exc:
                raise NotificationInvalid("alipay refund notification has an unreadable gmt_refund") from exc
            return RefundResult(
                out_refund_no=fields["out_biz_no"],
                status=RefundStatus.SUCCEEDED,
                out_trade_no=out_trade_no,
                refund_no=None,
                succeeded_at=refunded_at,
                raw=fields,
            )
        try:
            amount = (
                parse_decimal_string(fields["total_amount"], currency or "CNY") if "total_amount" in fields else None
            )
            paid_at = _parse_time(fields.get("gmt_payment")) if status == PaymentStatus.SUCCEEDED else None
        except (ArithmeticError, ValueError, TypeError, InvalidRequest) as exc:  # signed, yet unusable
            raise NotificationInvalid("alipay notification has an unreadable amount or time") from exc
        return PaymentResult(
            out_trade_no=out_trade_no,
            status=status,
            transaction_no=fields.get("trade_no") or None,
            amount=amount,
            paid_at=paid_at,
            raw=fields,
        )

    def notification_ack(self) -> ProviderReply:
        return ProviderReply(200, b"success")

    def notification_nack(self) -> ProviderReply:
        return ProviderReply(400, b"fail")


# --- bill files --------------------------------------------------------------------------------

BILL_TITLE = "#支付宝业务明细查询"
BILL_FOOTER_MARK = "业务明细列表结束"
BILL_COLUMNS = {
    "trade_no": "支付宝交易号",
    "out_trade_no": "商户订单号",
    "kind": "业务类型",
    "finished_at": "完成时间",
    "order_amount": "订单金额（元）",
    "received": "商家实收（元）",
    "refund_no": "退款批次号/请求号",
    "fee": "服务费（元）",
}
SUCCEEDED = PaymentStatus.SUCCEEDED.value  # the trade bill lists only what succeeded (交易 and 退款)
PAYMENT_TEXT, REFUND_TEXT = "交易", "退款"
_UTF8_NAME_FLAG = 0x800


def _bill_detail_member(archive: zipfile.ZipFile) -> zipfile.ZipInfo:
    """The detail member (`…_业务明细.csv`, not `…(汇总).csv`); its name is GBK with no UTF-8 flag,
    which zipfile reads as cp437."""
    for info in archive.infolist():
        name = info.filename
        if not info.flag_bits & _UTF8_NAME_FLAG:
            name = name.encode("cp437").decode("gbk", errors="replace")
        if name.endswith("业务明细.csv"):
            return info
    raise BillInvalid("the archive has no 业务明细.csv member")


def _footer_count(text: str, label: str) -> int | None:
    if not text.startswith(label):
        return None
    digits = text[len(label) :].split("笔", 1)[0]
    if not digits.isdigit():
        raise BillInvalid(f"unreadable footer line {text!r}")
    return int(digits)


def _quoted_cells(line: str, lines: Iterator[tuple[int, str]]) -> list[str]:
    """The cells of a raw line with a quote, read by csv: a quoted cell may hold commas, doubled
    quotes and line breaks (csv reads on into the following lines), and a quote inside an
    unquoted cell is a character like any other."""
    ended = False

    def following() -> Iterator[str]:
        nonlocal ended
        for _, more in lines:
            yield more
        ended = True  # csv asked for more: the file ended inside a quoted cell

    try:
        cells = next(csv.reader(itertools.chain([line], following())))
    except csv.Error as exc:  # e.g. a cell over csv's size limit: an open quote that never closes
        raise BillInvalid(f"unreadable quoted cells ({exc})") from None
    if ended:
        raise BillInvalid("the file ends inside a quoted cell")
    return cells


def _column_index(header: list[str]) -> dict[str, int]:
    try:
        return {key: header.index(column) for key, column in BILL_COLUMNS.items()}
    except ValueError:
        raise BillInvalid("the column header is missing or unknown") from None


def _bill_lines(text: Iterator[str]) -> Iterator[BillLine]:
    """The hot loop of parse_bill: one text line to one BillLine, nothing kept but counters and
    the bounded memos of repeated values. Lines without a quote are split on commas (what
    csv.reader does for them, at a fraction of the cost); lines with one go through csv."""
    lines = enumerate(text, start=1)
    if next(lines, (0, ""))[1].rstrip("\r\n") != BILL_TITLE:
        raise BillInvalid("not an Alipay detail bill (its title line is missing)")
    header = None
    for _, row in lines:
        if not row.startswith("#"):
            header = next(csv.reader([row.rstrip("\r\n")]))
            break
    if header is None:
        raise BillInvalid("the file is truncated: no column header")
    index = _column_index(header)
    i_trade, i_out, i_kind, i_at, i_order, i_received, i_refund, i_fee = index.values()
    width = len(header)
    payment, refund = BillLineKind.PAYMENT.value, BillLineKind.REFUND.value
    payments = refunds = 0
    footer: dict = {}
    ended = False
    sizes, times = minor_units("CNY", size=True), local_times(ALIPAY_TZ)
    payment_text, refund_text, line_of, succeeded = PAYMENT_TEXT, REFUND_TEXT, BillLine, SUCCEEDED  # locals: hot
    for number, line in lines:
        row = line.rstrip("\r\n")
        if not row:
            continue
        if row[0] == "#":
            if BILL_FOOTER_MARK in row:
                ended = True
            elif ended:
                for kind, label in ((payment, "#交易合计："), (refund, "#退款合计：")):
                    count = _footer_count(row, label)
                    if count is not None:
                        footer[kind] = count
            continue
        if ended:
            raise BillInvalid("data after the footer")
        cells = _quoted_cells(line, lines) if '"' in row else row.split(",")
        if len(cells) != width:
            raise BillInvalid(f"line {number} has {len(cells)} cells, not {width}")
        kind_text = cells[i_kind]
        try:
            if kind_text == payment_text:
                kind, out_refund_no, amount = payment, "", sizes[cells[i_order]]
                payments += 1
            elif kind_text == refund_text:  # negative amounts: money going back
                kind, out_refund_no, amount = refund, cells[i_refund].strip(), sizes[cells[i_received]]
                refunds += 1
            else:
                continue
            fee = sizes[cells[i_fee] or "0"]  # an empty fee is no fee
            occurred_at = times[cells[i_at]]
        except ValueError as exc:
            raise BillInvalid(f"line {number}: {exc}") from None
        yield line_of(
            kind, cells[i_out].strip(), out_refund_no, cells[i_trade].strip(), "", amount, fee, "CNY", succeeded,
            occurred_at,
        )  # fmt: skip
    if not ended:
        raise BillInvalid("the file is truncated: no footer")
    counts = {payment: payments, refund: refunds}
    if any(footer.get(kind, -1) != count for kind, count in counts.items()):
        raise BillInvalid(f"the footer counts {footer} disagree with the lines {counts}")
