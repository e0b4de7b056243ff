"""Alipay open platform (`gateway.do`), through python-alipay-sdk (PROVIDERS.md A).

The SDK signs requests, GETs the gateway and verifies the response node's signature; this
adapter points it at the account's gateway URL, checks `code` itself (the SDK does not), and
translates every failure into the ChannelFailure family so no SDK exception escapes.
"""

import binascii
import functools
import http.client
import json
import math
import socket
import urllib.error
from datetime import datetime
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from alipay import AliPay, AliPayConfig
from alipay.exceptions import AliPayException, AliPayValidationError
from django.utils import timezone
from moneyed import Money

from apps.channels.adapters.base import (
    AccountConfig,
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
)
from apps.core.errors import InvalidRequest
from apps.core.money import parse_decimal_string, to_decimal_string

ALIPAY_TZ = ZoneInfo("Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SUCCESS_CODE = "10000"
TRADE_NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
TRADE_STATUS_ERROR = "ACQ.TRADE_STATUS_ERROR"
MAX_TIMEOUT_MINUTES = 15 * 24 * 60  # Alipay accepts 1m to 15d

TRADE_STATUSES = {
    "WAIT_BUYER_PAY": PaymentStatus.PENDING,
    "TRADE_SUCCESS": PaymentStatus.SUCCEEDED,
    "TRADE_FINISHED": PaymentStatus.SUCCEEDED,
    "TRADE_CLOSED": PaymentStatus.CLOSED,
}


@functools.lru_cache(maxsize=64)
def _client(
    account_id: int, app_id: str, app_private_key: str, alipay_public_key: str, gateway: str, timeout: float
) -> AliPay:
    """One SDK client per account and credentials (loading RSA keys is not free)."""
    client = AliPay(
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


def _is_timeout(reason) -> bool:
    return isinstance(reason, (TimeoutError, socket.timeout)) or "timed out" in str(reason)


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
    methods = frozenset({"alipay_qr"})
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

    def _call(self, api_name: str, **kwargs) -> dict:
        """Calls an SDK method and returns the verified response node, or raises a ChannelFailure."""
        client = self._client()
        try:
            return getattr(client, api_name)(**kwargs)
        except AliPayValidationError as exc:
            raise ChannelResponseInvalid("alipay response signature does not verify", code="invalid_signature") from exc
        except AliPayException as exc:  # an unsigned answer (an error the gateway did not sign)
            self._raise_for_node(_unsigned_error_node(exc) or {"code": "", "sub_msg": str(exc)})
            raise ChannelResponseInvalid("alipay answered an unsigned response", code="unsigned_response") from exc
        except urllib.error.HTTPError as exc:
            raise ChannelUnavailable(
                f"alipay gateway answered HTTP {exc.code}", code=f"http_{exc.code}", reached_provider=exc.code >= 500
            ) from exc
        except urllib.error.URLError as exc:
            if _is_timeout(exc.reason):
                raise ChannelTimeout(f"alipay gateway timed out: {exc.reason}", code="timeout") from exc
            raise ChannelUnavailable(
                f"alipay gateway unreachable: {exc.reason}", code="connection_failed", reached_provider=False
            ) from exc
        except TimeoutError as exc:  # socket.timeout while reading the answer
            raise ChannelTimeout("alipay gateway timed out", code="timeout") from exc
        except (http.client.HTTPException, OSError) as exc:  # the connection dropped after the request
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

    def query_payment(self, *, out_trade_no: str, currency: str) -> PaymentResult:
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

    def close_payment(self, *, out_trade_no: str) -> None:
        """Closed, or never existed (a precreated QR code nobody scanned): both mean no payment."""
        node = self._call("api_alipay_trade_close", out_trade_no=out_trade_no)
        if str(node.get("code")) == SUCCESS_CODE or node.get("sub_code") == TRADE_NOT_EXIST:
            return None
        self._raise_for_node(node)
        return None

    # --- notifications -------------------------------------------------------------------------

    def parse_notification(self, *, headers: dict, body: bytes, currency: str | None = None) -> PaymentResult:
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
