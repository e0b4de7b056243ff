"""WeChat Pay API v3 (direct merchant), through the wechatpayv3 SDK (PROVIDERS.md B).

The SDK signs requests (`Authorization: WECHATPAY2-SHA256-RSA2048 …`), verifies the signature of
2xx answers and decrypts notifications. It runs in public-key mode (platform public key and its
`PUB_KEY_ID_…`), so it never calls `/v3/certificates` on the production host, and its gateway is
set to the account's base URL. The SDK raises bare `Exception`s and returns error answers as
`(status, text)`; this adapter translates both into the ChannelFailure family.

Amounts are integer fen on the wire (`amount.total`); bills are in yuan. Fees in bills have five
decimals: a bill line's fee is rounded to whole fen, half up (see `_fee`).
"""

import functools
import gzip
import hashlib
import io
import json
import secrets
import time
import zlib
from collections.abc import Iterator
from datetime import date, datetime
from decimal import ROUND_HALF_UP
from typing import BinaryIO
from zoneinfo import ZoneInfo

import requests
from django.utils import timezone
from moneyed import Money
from requests.structures import CaseInsensitiveDict
from wechatpayv3 import WeChatPay, WeChatPayType

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
from apps.core.errors import InvalidRequest
from apps.core.money import SUPPORTED_CURRENCIES, from_minor, to_minor

WECHAT_TZ = ZoneInfo("Asia/Shanghai")
BILL_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
NOTIFICATION_MAX_AGE_SECONDS = 300  # a notification signed longer ago than this may be a replay

PAY_TYPES = {"wx_pub_qr": WeChatPayType.NATIVE, "wx_pub": WeChatPayType.JSAPI, "wx_wap": WeChatPayType.H5}

TRADE_STATES = {
    "NOTPAY": PaymentStatus.PENDING,
    "USERPAYING": PaymentStatus.PENDING,
    "SUCCESS": PaymentStatus.SUCCEEDED,
    "REFUND": PaymentStatus.SUCCEEDED,  # it was paid; refunds are reported on their own
    "CLOSED": PaymentStatus.CLOSED,
    "REVOKED": PaymentStatus.CLOSED,
    "PAYERROR": PaymentStatus.FAILED,
}

REFUND_STATUSES = {
    "PROCESSING": RefundStatus.PENDING,
    "SUCCESS": RefundStatus.SUCCEEDED,
    "CLOSED": RefundStatus.FAILED,
    "ABNORMAL": RefundStatus.FAILED,  # the money could not reach the payer; needs the merchant's action
}

REFUND_EVENTS = {"REFUND.SUCCESS", "REFUND.ABNORMAL", "REFUND.CLOSED"}
NO_STATEMENT = "NO_STATEMENT_EXIST"  # after the bill time: the merchant had no trade that day
BILL_NOT_READY = {NO_STATEMENT, "STATEMENT_CREATING"}
UNAVAILABLE_STATUSES = {429}

BILL_DETAIL_FIRST_COLUMN = "交易时间"
BILL_SUMMARY_FIRST_COLUMN = "总交易单数"
# A day without any trade has no statement (NO_STATEMENT_EXIST): it is stored as the ALL bill
# WeChat would write with no rows (PROVIDERS.md B4), so that every day has a bill to reconcile.
EMPTY_BILL = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
    "应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
    "手续费,费率,订单金额,申请退款金额,费率备注\r\n"
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n"
    "`0,`0.00,`0.00,`0.00,`0.00000,`0.00,`0.00\r\n"
)


@functools.lru_cache(maxsize=64)
def _client(
    account_id: int,
    mchid: str,
    appid: str,
    private_key: str,
    cert_serial_no: str,
    apiv3_key: str,
    public_key: str,
    public_key_id: str,
    gateway: str,
    timeout: float,
) -> WeChatPay:
    """One SDK client per account and credentials (loading RSA keys is not free)."""
    client = WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE,
        mchid=mchid,
        private_key=private_key,
        cert_serial_no=cert_serial_no,
        appid=appid,
        apiv3_key=apiv3_key,
        timeout=timeout,
        public_key=public_key,
        public_key_id=public_key_id,
    )
    client._core._gate_way = gateway  # the SDK hard-codes WeChat's host; the account names the gateway
    return client


def _format_time(value: datetime) -> str:
    return value.astimezone(WECHAT_TZ).isoformat(timespec="seconds")


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"time without zone: {value!r}")
    return parsed


def _reached(exc: requests.ConnectionError) -> bool:
    """Whether a connection error happened after the request could have been sent."""
    text = repr(exc)
    return not any(marker in text for marker in ("NewConnectionError", "NameResolutionError", "Connection refused"))


class WechatpayAdapter(ChannelAdapter):
    provider = "wechatpay"
    methods = frozenset(PAY_TYPES)
    currencies = frozenset({"CNY"})
    refunds_notify = True

    # --- plumbing ------------------------------------------------------------------------------

    @property
    def mchid(self) -> str:
        return str(self.account.credentials.get("mchid", ""))

    @property
    def appid(self) -> str:
        return str(self.account.credentials.get("appid", ""))

    def _client(self) -> WeChatPay:
        account: AccountConfig = self.account
        credentials = account.credentials
        try:
            return _client(
                account.id,
                str(credentials["mchid"]),
                str(credentials["appid"]),
                credentials["merchant_private_key"],
                str(credentials["merchant_cert_serial_no"]),
                str(credentials["apiv3_key"]),
                credentials["platform_public_key"],
                str(credentials["platform_public_key_id"]),
                account.base_url.rstrip("/"),
                float(account.timeout_seconds),
            )
        except Exception as exc:  # a missing key, or the SDK's bare Exception for an unreadable PEM
            raise ChannelUnavailable(
                f"wechatpay account {account.id} credentials are incomplete or unreadable",
                code="account_misconfigured",
                reached_provider=False,
            ) from exc

    def _call(self, api_name: str, *args, **kwargs) -> tuple[int, str | bytes]:
        """Calls an SDK method; returns (status, body) or raises a ChannelFailure for transport,
        signature and SDK errors."""
        client = self._client()
        try:
            return getattr(client, api_name)(*args, **kwargs)
        except requests.ConnectTimeout as exc:
            raise ChannelUnavailable(
                "wechatpay gateway did not accept the connection in time",
                code="connect_timeout",
                reached_provider=False,
            ) from exc
        except requests.Timeout as exc:
            raise ChannelTimeout(f"wechatpay gateway timed out: {exc}", code="timeout") from exc
        except requests.ConnectionError as exc:
            if _reached(exc):
                raise ChannelTimeout(f"wechatpay connection lost: {exc}", code="connection_lost") from exc
            raise ChannelUnavailable(
                f"wechatpay gateway unreachable: {exc}", code="connection_failed", reached_provider=False
            ) from exc
        except requests.RequestException as exc:
            raise ChannelTimeout(f"wechatpay request failed: {exc!r}", code="connection_lost") from exc
        except Exception as exc:  # the SDK raises bare Exception: bad signature, unknown algorithm, bad args
            message = str(exc)
            if "signature" in message or "algorithm" in message:
                raise ChannelResponseInvalid(
                    f"wechatpay response signature does not verify: {message}", code="invalid_signature"
                ) from exc
            raise ChannelRejected(f"wechatpay SDK refused the call: {message}", code="invalid_request",
                                  reached_provider=False) from exc  # fmt: skip

    @staticmethod
    def _document(body: str | bytes) -> dict:
        try:
            document = json.loads(body) if body else {}
        except (ValueError, TypeError) as exc:
            raise ChannelResponseInvalid("wechatpay answer is not JSON", code="unreadable_response") from exc
        if not isinstance(document, dict):
            raise ChannelResponseInvalid("wechatpay answer is not a JSON object", code="unreadable_response")
        return document

    def _ok(self, status: int, body: str | bytes) -> dict:
        """The document of a 2xx answer; raises for any other status, as the Alipay adapter does:
        5xx and 429 are unavailability, other 4xx refusals with WeChat's code."""
        if 200 <= status < 300:
            return self._document(body)
        raise self._failure(status, body)

    def _failure(self, status: int, body: str | bytes) -> Exception:
        try:
            document = self._document(body)
        except ChannelResponseInvalid:
            document = {}
        code = str(document.get("code") or f"http_{status}")
        message = str(document.get("message") or f"wechatpay answered HTTP {status}")
        if status >= 500 or status in UNAVAILABLE_STATUSES:
            return ChannelUnavailable(message, code=code, reached_provider=True, http_status=status)
        return ChannelRejected(message, code=code, http_status=status)

    @staticmethod
    def _error_code(body: str | bytes) -> str:
        try:
            return str(json.loads(body).get("code") or "")
        except (ValueError, TypeError, AttributeError):
            return ""

    def _money(self, fen, currency: str) -> Money:
        if isinstance(fen, bool) or not isinstance(fen, int):
            raise ChannelResponseInvalid(f"wechatpay amount unreadable: {fen!r}", code="unreadable_response")
        try:
            return from_minor(fen, currency)
        except InvalidRequest as exc:
            raise ChannelResponseInvalid(
                f"wechatpay currency unreadable: {currency!r}", code="unreadable_response"
            ) from exc

    # --- payments ------------------------------------------------------------------------------

    def create_payment(self, request: PaymentRequest) -> PaymentCreated:
        pay_type = PAY_TYPES.get(request.method)
        if pay_type is None:
            raise ChannelRejected(f"wechatpay adapter does not support {request.method}", code="method_unsupported")
        if request.amount.currency.code not in self.currencies:
            raise ChannelRejected(
                f"wechatpay does not take {request.amount.currency.code}", code="currency_unsupported"
            )
        kwargs = {}
        if pay_type == WeChatPayType.JSAPI:
            open_id = str(request.extra.get("open_id") or "")
            if not open_id:
                raise ChannelRejected("wx_pub needs extra.open_id", code="open_id_required", reached_provider=False)
            kwargs["payer"] = {"openid": open_id}
        if pay_type == WeChatPayType.H5:
            kwargs["scene_info"] = {"payer_client_ip": request.client_ip, "h5_info": {"type": "Wap"}}
        status, body = self._call(
            "pay",
            description=request.subject[:127],
            out_trade_no=request.out_trade_no,
            amount={"total": to_minor(request.amount), "currency": request.amount.currency.code},
            time_expire=_format_time(request.time_expire),
            notify_url=request.notify_url,
            pay_type=pay_type,
            **kwargs,
        )
        document = self._ok(status, body)
        if pay_type == WeChatPayType.NATIVE:
            return PaymentCreated(credential=self._field(document, "code_url"))
        if pay_type == WeChatPayType.H5:
            return PaymentCreated(credential=self._field(document, "h5_url"))
        return PaymentCreated(credential=self._jsapi_credential(self._field(document, "prepay_id")))

    @staticmethod
    def _field(document: dict, name: str) -> str:
        value = document.get(name)
        if not value or not isinstance(value, str):
            raise ChannelResponseInvalid(f"wechatpay answer lacks {name}", code="unreadable_response")
        return value

    def _jsapi_credential(self, prepay_id: str) -> dict:
        """What `WeixinJSBridge.invoke("getBrandWCPayRequest", …)` takes, paySign by the merchant key
        over `appId\\ntimeStamp\\nnonceStr\\npackage\\n`."""
        timestamp = str(int(time.time()))
        nonce = secrets.token_hex(16).upper()
        package = f"prepay_id={prepay_id}"
        pay_sign = self._client().sign([self.appid, timestamp, nonce, package])
        return {
            "appId": self.appid,
            "timeStamp": timestamp,
            "nonceStr": nonce,
            "package": package,
            "signType": "RSA",
            "paySign": pay_sign,
        }

    def _payment_result(self, document: dict, *, out_trade_no: str, currency: str | None) -> PaymentResult:
        status = TRADE_STATES.get(str(document.get("trade_state")))
        if status is None or document.get("out_trade_no", out_trade_no) != out_trade_no:
            raise ChannelResponseInvalid(
                f"wechatpay transaction unreadable: trade_state={document.get('trade_state')!r}",
                code="unreadable_response",
            )
        transaction_no = document.get("transaction_id") or None
        if status != PaymentStatus.SUCCEEDED:
            return PaymentResult(out_trade_no=out_trade_no, status=status, transaction_no=transaction_no, raw=document)
        amount = document.get("amount") if isinstance(document.get("amount"), dict) else {}
        try:
            paid_at = _parse_time(document.get("success_time"))
        except ValueError as exc:
            raise ChannelResponseInvalid("wechatpay success_time unreadable", code="unreadable_response") from exc
        return PaymentResult(
            out_trade_no=out_trade_no,
            status=status,
            transaction_no=transaction_no,
            amount=self._money(amount.get("total"), currency or str(amount.get("currency") or "CNY")),
            paid_at=paid_at,
            raw=document,
        )

    def query_payment(self, *, out_trade_no: str, currency: str, requested_at=None) -> PaymentResult:
        status, body = self._call("query", out_trade_no=out_trade_no)
        if status == 404 and self._error_code(body) == "ORDER_NOT_EXIST":
            return PaymentResult(out_trade_no=out_trade_no, status=PaymentStatus.NOT_FOUND, raw=self._document(body))
        document = self._ok(status, body)
        if document.get("mchid", self.mchid) != self.mchid:
            raise ChannelResponseInvalid("wechatpay answer is for another mchid", code="unreadable_response")
        return self._payment_result(document, out_trade_no=out_trade_no, currency=currency)

    def close_payment(self, *, out_trade_no: str, requested_at=None) -> None:
        """Closed (204), or never existed: both mean no payment. A paid order cannot be closed."""
        status, body = self._call("close", out_trade_no=out_trade_no)
        if status == 204 or (status == 404 and self._error_code(body) == "ORDER_NOT_EXIST"):
            return None
        if 200 <= status < 300:
            return None
        raise self._failure(status, body)

    # --- refunds -------------------------------------------------------------------------------

    def _refund_result(self, document: dict, *, out_refund_no: str, currency: str | None) -> RefundResult:
        raw_status = str(document.get("status") or document.get("refund_status") or "")
        status = REFUND_STATUSES.get(raw_status)
        if status is None or document.get("out_refund_no", out_refund_no) != out_refund_no:
            raise ChannelResponseInvalid(
                f"wechatpay refund unreadable: status={raw_status!r}", code="unreadable_response"
            )
        amount = document.get("amount") if isinstance(document.get("amount"), dict) else {}
        try:
            succeeded_at = _parse_time(document.get("success_time")) if status == RefundStatus.SUCCEEDED else None
        except ValueError as exc:
            raise ChannelResponseInvalid(
                "wechatpay refund success_time unreadable", code="unreadable_response"
            ) from exc
        failed = status == RefundStatus.FAILED
        return RefundResult(
            out_refund_no=out_refund_no,
            status=status,
            out_trade_no=str(document.get("out_trade_no") or ""),
            refund_no=document.get("refund_id") or None,
            amount=self._money(amount.get("refund"), currency or str(amount.get("currency") or "CNY")),
            succeeded_at=succeeded_at,
            failure_code=raw_status if failed else "",
            failure_msg=f"wechatpay refund {raw_status}" if failed else "",
            raw=document,
        )

    def refund(self, request: RefundRequest) -> RefundResult:
        currency = request.amount.currency.code
        status, body = self._call(
            "refund",
            out_refund_no=request.out_refund_no,
            amount={"refund": to_minor(request.amount), "total": to_minor(request.total_amount), "currency": currency},
            transaction_id=request.transaction_no or None,
            out_trade_no=request.out_trade_no,
            reason=request.reason[:80] or None,
            notify_url=request.notify_url or None,
        )
        document = self._ok(status, body)
        return self._refund_result(document, out_refund_no=request.out_refund_no, currency=currency)

    def query_refund(self, *, out_trade_no: str, out_refund_no: str, currency: str, requested_at=None) -> RefundResult:
        status, body = self._call("query_refund", out_refund_no=out_refund_no)
        if status == 404 and self._error_code(body) == "RESOURCE_NOT_EXISTS":
            return RefundResult(
                out_refund_no=out_refund_no, status=RefundStatus.NOT_FOUND, out_trade_no=out_trade_no,
                raw=self._document(body),
            )  # fmt: skip
        document = self._ok(status, body)
        if document.get("out_trade_no", out_trade_no) != out_trade_no:
            raise ChannelResponseInvalid("wechatpay refund belongs to another order", code="unreadable_response")
        return self._refund_result(document, out_refund_no=out_refund_no, currency=currency)

    # --- notifications -------------------------------------------------------------------------

    @staticmethod
    def _signature_headers(headers) -> dict:
        """The `Wechatpay-*` headers from any form (Django META `HTTP_WECHATPAY_…`, any case)."""
        found = CaseInsensitiveDict()
        for key, value in dict(headers).items():
            name = str(key)
            if name.upper().startswith("HTTP_"):
                name = name[5:].replace("_", "-")
            found[name] = value
        names = ("Wechatpay-Signature", "Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Serial",
                 "Wechatpay-Signature-Type")  # fmt: skip
        return {name: str(found.get(name, "")) for name in names}

    def parse_notification(
        self, *, headers: dict, body: bytes, currency: str | None = None
    ) -> PaymentResult | RefundResult:
        signed = self._signature_headers(headers)
        if not signed["Wechatpay-Signature"]:
            raise NotificationInvalid("wechatpay notification has no signature")
        # Checked here so the SDK never goes to fetch /v3/certificates for an unknown serial.
        if signed["Wechatpay-Serial"] != str(self.account.credentials.get("platform_public_key_id", "")):
            raise NotificationInvalid("wechatpay notification is signed with an unknown key")
        timestamp = signed["Wechatpay-Timestamp"]
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > NOTIFICATION_MAX_AGE_SECONDS:
            raise NotificationInvalid("wechatpay notification timestamp is missing or too old")
        try:
            text = body.decode("utf-8")
            envelope = self._client().callback(signed, text)
        except ChannelUnavailable as exc:
            raise NotificationInvalid("wechatpay account cannot verify notifications") from exc
        except Exception as exc:  # the SDK's bare Exception (algorithm), or a body that is not UTF-8/JSON
            raise NotificationInvalid(f"wechatpay notification unreadable: {exc}") from exc
        if not envelope or not isinstance(envelope.get("resource"), dict):
            raise NotificationInvalid("wechatpay notification signature or encryption does not verify")
        resource = envelope["resource"]
        event_type = str(envelope.get("event_type") or "")
        if resource.get("mchid", self.mchid) != self.mchid:
            raise NotificationInvalid("wechatpay notification is for another mchid")
        try:
            if event_type == "TRANSACTION.SUCCESS":
                out_trade_no = str(resource.get("out_trade_no") or "")
                if not out_trade_no or resource.get("appid", self.appid) != self.appid:
                    raise NotificationInvalid(
                        "wechatpay payment notification lacks out_trade_no or names another appid"
                    )
                return self._payment_result(resource, out_trade_no=out_trade_no, currency=currency)
            if event_type in REFUND_EVENTS:
                out_refund_no = str(resource.get("out_refund_no") or "")
                if not out_refund_no:
                    raise NotificationInvalid("wechatpay refund notification lacks out_refund_no")
                return self._refund_result(resource, out_refund_no=out_refund_no, currency=currency)
        except ChannelResponseInvalid as exc:  # signed, yet unusable
            raise NotificationInvalid(f"wechatpay notification content unreadable: {exc.message}") from exc
        raise NotificationInvalid(f"wechatpay notification of an unknown event_type {event_type!r}")

    def notification_ack(self) -> ProviderReply:
        return ProviderReply(204, b"", content_type="application/json")

    def notification_nack(self) -> ProviderReply:
        body = json.dumps({"code": "FAIL", "message": "失败"}, ensure_ascii=False).encode("utf-8")
        return ProviderReply(400, body, content_type="application/json; charset=utf-8")

    # --- bills ---------------------------------------------------------------------------------

    def download_bill(self, *, bill_date: date, dest: BinaryIO) -> str:
        """The day's ALL trade bill, gzip as WeChat serves it, checked against its SHA-1.

        NO_STATEMENT_EXIST for a day that is over means the merchant had no trade that day: the
        empty ALL bill is written (callers ask after the bill time). STATEMENT_CREATING, or no
        statement for today or later, is BillNotReady.
        """
        status, body = self._call("trade_bill", bill_date=bill_date.isoformat(), bill_type="ALL", tar_type="GZIP")
        code = self._error_code(body) if status == 400 else ""
        if code == NO_STATEMENT and bill_date < timezone.now().astimezone(WECHAT_TZ).date():
            dest.write(EMPTY_BILL.encode("utf-8"))
            return f"wechatpay_{self.mchid}_{bill_date:%Y%m%d}_ALL_no_trade.csv"
        if code in BILL_NOT_READY:
            raise BillNotReady(f"wechatpay has no bill for {bill_date}", code=code)
        document = self._ok(status, body)
        url = self._field(document, "download_url")
        gateway = self._client()._core._gate_way
        if not url.startswith(gateway):
            raise ChannelResponseInvalid(
                "wechatpay download_url is not on the account's gateway", code="unreadable_response"
            )
        status, content = self._call("download_bill", url)
        if not 200 <= status < 300:
            raise self._failure(status, content)
        if isinstance(content, str):
            content = content.encode("utf-8")
        try:
            plain = zlib.decompress(content, 16 + zlib.MAX_WBITS)
        except zlib.error as exc:
            raise BillInvalid("wechatpay bill is not gzip") from exc
        expected = str(document.get("hash_value") or "").lower()
        if str(document.get("hash_type") or "SHA1").upper() != "SHA1" or hashlib.sha1(plain).hexdigest() != expected:
            raise BillInvalid("wechatpay bill does not match its SHA-1 hash_value")
        dest.write(content)
        return f"wechatpay_{self.mchid}_{bill_date:%Y%m%d}_ALL.csv.gz"

    def parse_bill(self, source: BinaryIO) -> Iterator[BillLine]:
        """Streams the lines of an ALL trade bill (gzip or plain UTF-8 text).

        Payment rows give `amount` = 订单金额 and `status` from 交易状态 (SUCCESS → succeeded,
        REVOKED → closed …); refund rows (a 商户退款单号) give `amount` = 退款金额 and `status` from
        退款状态 (SUCCESS → succeeded, PROCESSING → pending …); the fee is the size of 手续费 in
        whole fen, half up. The summary row's count and totals are checked against the rows
        read: a file that ends early or disagrees is BillInvalid.
        """
        head = source.read(2)
        stream = io.BufferedReader(_Prefixed(head, source))
        raw = gzip.GzipFile(fileobj=stream) if head == b"\x1f\x8b" else stream
        try:
            yield from _bill_lines(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        except BillInvalid as exc:
            raise BillInvalid(f"wechatpay bill: {exc}") from exc.__cause__
        except UnicodeDecodeError as exc:
            raise BillInvalid(f"wechatpay bill: not UTF-8 text ({exc.reason})") from exc
        except (EOFError, OSError, zlib.error) as exc:
            raise BillInvalid(f"wechatpay bill: the file is truncated or damaged ({exc})") from exc


# --- bill files --------------------------------------------------------------------------------

BILL_COLUMNS = {  # key: (column, required)
    "at": ("交易时间", True), "trade_no": ("微信订单号", True), "out_trade_no": ("商户订单号", True),
    "trade_state": ("交易状态", True), "settled": ("应结订单金额", True), "fee": ("手续费", True),
    "currency": ("货币种类", False), "refund_no": ("微信退款单号", False), "out_refund_no": ("商户退款单号", False),
    "refunded": ("退款金额", False), "refund_status": ("退款状态", False), "ordered": ("订单金额", False),
}  # fmt: skip


def _column_index(header: list[str]) -> dict[str, int]:
    """Where each column is; an optional one a narrower bill lacks points past the row's end,
    at the empty cell each row gets appended."""
    index = {}
    for key, (column, required) in BILL_COLUMNS.items():
        if column in header:
            index[key] = header.index(column)
        elif required:
            raise BillInvalid(f"the header lacks {column}")
        else:
            index[key] = len(header)
    return index


class _Amounts(dict):
    """currency → its memo of bill amounts (signed minor units) and of fees (rounded to the fen)."""

    def __missing__(self, currency: str):
        if currency not in SUPPORTED_CURRENCIES:
            raise BillInvalid(f"unsupported currency {currency!r}")
        memos = self[currency] = (minor_units(currency), minor_units(currency, rounding=ROUND_HALF_UP))
        return memos


def _bill_lines(text: Iterator[str]) -> Iterator[BillLine]:
    """The hot loop of parse_bill: one row to one BillLine, keeping counters and bounded memos."""
    header: list[str] | None = None
    summary_header: list[str] | None = None
    count, settled, refunded = 0, 0, 0
    memos = _Amounts()
    times = local_times(WECHAT_TZ, BILL_TIME_FORMAT)
    payment, refund = BillLineKind.PAYMENT.value, BillLineKind.REFUND.value
    for number, line in enumerate(text, start=1):
        row = line.rstrip("\r\n").lstrip("\ufeff")
        if not row:
            continue
        if header is None:
            header = row.split(",")
            if header[0] != BILL_DETAIL_FIRST_COLUMN:
                raise BillInvalid("it does not start with the trade header")
            index = _column_index(header)
            i_at, i_trade, i_out, i_state, i_settled, i_fee, i_currency, i_refund_no, i_out_refund, i_refunded, \
                i_refund_status, i_ordered = index.values()  # fmt: skip
            width = len(header)
            continue
        if row[0] != "`":
            if row.startswith(BILL_SUMMARY_FIRST_COLUMN):
                summary_header = row.split(",")
                continue
            raise BillInvalid(f"line {number} is not a backtick-prefixed row")
        cells = row[1:].split(",`")
        if summary_header is not None:
            _check_summary(dict(zip(summary_header, cells, strict=False)), count, settled, refunded, memos)
            return
        if len(cells) != width:
            raise BillInvalid(f"line {number} has {len(cells)} cells, not {width}")
        cells.append("")
        currency = cells[i_currency] or "CNY"
        amounts, fees = memos[currency]
        out_refund_no = cells[i_out_refund]
        try:
            line_settled, line_refunded = amounts[cells[i_settled] or "0"], amounts[cells[i_refunded] or "0"]
            if out_refund_no and out_refund_no != "0":
                kind, amount, refund_no = refund, line_refunded, cells[i_refund_no]
                status = _bill_status(REFUND_STATUSES, cells[i_refund_status])
            else:
                kind, amount, refund_no, out_refund_no = payment, amounts[cells[i_ordered] or cells[i_settled]], "", ""
                status = _bill_status(TRADE_STATES, cells[i_state])
            fee = fees[cells[i_fee] or "0"]
            occurred_at = times[cells[i_at]]
        except ValueError as exc:
            raise BillInvalid(f"line {number}: {exc}") from None
        count += 1
        settled += line_settled
        refunded += line_refunded
        yield BillLine(
            kind, cells[i_out], out_refund_no, cells[i_trade], refund_no, abs(amount), abs(fee), currency, status,
            occurred_at,
        )  # fmt: skip
    raise BillInvalid("it ends without its summary")


def _check_summary(summary: dict[str, str], count: int, settled: int, refunded: int, memos: _Amounts) -> None:
    amounts = memos["CNY"][0]
    try:
        stated = (int(summary["总交易单数"]), amounts[summary["应结订单总金额"]], amounts[summary["退款总金额"]])
    except (KeyError, ValueError) as exc:
        raise BillInvalid(f"the summary is unreadable ({exc})") from None
    if stated != (count, settled, refunded):
        raise BillInvalid(f"the summary {stated} disagrees with the rows {(count, settled, refunded)} (minor units)")


def _bill_status(statuses: dict, text: str) -> str:
    """A bill row's state in paysys's words (the query answers' mapping); unknown ones lower-cased."""
    known = statuses.get(text)
    return known.value if known is not None else text.lower()


class _Prefixed(io.RawIOBase):
    """`source` with the bytes already read from it put back in front (for sniffing gzip)."""

    def __init__(self, head: bytes, source: BinaryIO):
        self._head = head
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._source.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
