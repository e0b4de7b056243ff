"""UnionPay online gateway (全渠道 ACP 5.1.0), signed form protocol written with `cryptography`
(PROVIDERS.md C; the signing and verification rules are in unionpay_protocol.py).

Channel account:
- `base_url`: the gateway's API folder, e.g. `https://gateway.95516.com/gateway/api/` (test
  `https://gateway.test.95516.com/gateway/api/`; sandbox `<host>/sandbox/unionpay/gateway/api/`);
  the adapter appends `frontTransReq.do`, `backTransReq.do` and `queryTrans.do`.
- `credentials`: `mer_id`; `sign_private_key` (PEM) and `sign_cert_id` (the merchant signing
  certificate's serial, decimal); `root_cert` and `middle_cert` (PEM: the CAs UnionPay's signing
  certificate must chain to); `validate_cn_name` (default true: only 中国银联股份有限公司; false
  also accepts the test-mode `00040000:SIGN`); optional `file_trans_url` (default: UnionPay's
  file host for UnionPay's gateways, else `<base_url>fileTransfer.do`).

Decisions:
- orderId: UnionPay allows 8–40 letters and digits, paysys ids are `ch_`/`re_` + 24 of them, so
  orderId is the id without its prefix; notifications and bills map it back by txnType
  (01 → `ch_`, 04 → `re_`). Any other id shape is refused before the call.
- txnTime: a query must name the original orderId *and* txnTime. The create credential carries
  `txnTime` (and the refund answer's `raw["txnTime"]`); callers pass it back as `requested_at=` to
  query_payment, close_payment and query_refund, an optional keyword this adapter adds.
- close: UnionPay has no close for front consumes; a consume dies at `payTimeout` (= the
  charge's time_expire). close_payment therefore queries: not found or failed means nothing can
  be paid any more (the caller closes at time_expire); paid is refused (`trade_paid`).
"""

import base64
import binascii
import io
import re
import zipfile
import zlib
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import BinaryIO
from urllib.parse import parse_qsl, urljoin, urlsplit
from zoneinfo import ZoneInfo

import requests
from django.utils import timezone
from moneyed import Money
from urllib3.exceptions import NewConnectionError

from apps.channels.adapters import unionpay_protocol as proto
from apps.channels.adapters.base import (
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
from apps.core.errors import InvalidRequest
from apps.core.money import from_minor, to_minor

UNIONPAY_TZ = ZoneInfo("Asia/Shanghai")
TIME_FORMAT = "%Y%m%d%H%M%S"
VERSION = "5.1.0"
CHANNEL_TYPES = {"upacp_pc": "07", "upacp_wap": "08"}
ORDER_ID = re.compile(r"^[A-Za-z0-9]{8,40}$")
ID_PREFIXES = {"01": "ch", "04": "re"}  # txnType -> the paysys id prefix its orderId lost
SUCCESS_CODES = ("00", "A6")
UNKNOWN_CODES = ("03", "04", "05")  # "in progress / unknown": ask again later
NOT_FOUND_CODE = "34"
DUPLICATE_CODE = "12"  # the orderId is taken (重复交易)
BILL_NOT_READY_CODE = "98"
FILE_HOSTS = {  # the file host beside UnionPay's own gateways (acpsdk.fileTransUrl)
    "gateway.95516.com": "https://filedownload.95516.com/",
    "gateway.test.95516.com": "https://filedownload.test.95516.com/",
}
CANCEL = "31"  # 消费撤销: a consume reversed in full on its day
PAYMENT, REFUND = BillLineKind.PAYMENT.value, BillLineKind.REFUND.value
ZM_NAME = re.compile(r"INN(\d{6})88ZM_\w+$")
ZM_WIDTHS = (3, 11, 11, 6, 10, 19, 12, 4, 2, 21, 2, 32, 2, 6, 10, 13, 13, 4, 15, 2, 2, 6, 2, 4, 32, 1, 21, 15, 1, 15,
             32, 13, 13, 8, 32, 13, 13, 12, 2, 1, 32, 98)  # fmt: skip
ZM_OFFSETS = tuple(sum(ZM_WIDTHS[:i]) + i for i in range(len(ZM_WIDTHS)))
ZM_MIN_LENGTH = ZM_OFFSETS[27]  # through the fields the parser reads (orig queryId, merchant)


def order_id_for(paysys_id: str) -> str:
    """`ch_…`/`re_…` → UnionPay's orderId (the letters and digits after the prefix)."""
    prefix, sep, tail = paysys_id.partition("_")
    if not sep or prefix not in ID_PREFIXES.values() or not ORDER_ID.match(tail):
        raise ChannelRejected(
            f"{paysys_id!r} does not map to a UnionPay orderId (8-40 letters and digits)",
            code="order_id_unmappable",
            reached_provider=False,
        )
    return tail


def paysys_id_for(order_id: str, txn_type: str) -> str:
    return f"{ID_PREFIXES.get(txn_type, 'ch')}_{order_id}"


def format_time(value: datetime) -> str:
    return value.astimezone(UNIONPAY_TZ).strftime(TIME_FORMAT)


def _txn_time_text(value: datetime | str | None) -> str:
    if isinstance(value, datetime):
        return format_time(value)
    value = (value or "").strip()
    if len(value) != 14 or not value.isdigit():
        raise ChannelRejected(
            "UnionPay queries need the original txnTime (yyyyMMddHHmmss): pass requested_at",
            code="txn_time_required",
            reached_provider=False,
        )
    return value


def _trace_datetime(trace_time: str, reference: datetime) -> datetime | None:
    """traceTime is `MMDDhhmmss` without a year: the one nearest the reference time."""
    if len(trace_time) != 10 or not trace_time.isdigit():
        return None
    local = reference.astimezone(UNIONPAY_TZ)
    candidates = []
    for year in (local.year - 1, local.year, local.year + 1):
        try:
            candidates.append(datetime.strptime(f"{year}{trace_time}", TIME_FORMAT).replace(tzinfo=UNIONPAY_TZ))
        except ValueError:
            continue
    return min(candidates, key=lambda c: abs(c - local)) if candidates else None


def _parse_time(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=UNIONPAY_TZ)
    except (TypeError, ValueError):
        return None


class UnionPayAdapter(ChannelAdapter):
    provider = "unionpay"
    methods = frozenset(CHANNEL_TYPES)
    currencies = frozenset({"CNY"})
    refunds_notify = True
    closes_payments = False  # a front consume dies only at its payTimeout (the charge's time_expire)

    # --- plumbing ------------------------------------------------------------------------------

    def _credential(self, key: str) -> str:
        value = self.account.credentials.get(key)
        if not value or not isinstance(value, str):
            raise ChannelUnavailable(
                f"unionpay account {self.account.id} credentials lack {key}",
                code="account_misconfigured",
                reached_provider=False,
            )
        return value

    @property
    def mer_id(self) -> str:
        return self._credential("mer_id")

    @property
    def validate_cn_name(self) -> bool:
        return bool(self.account.credentials.get("validate_cn_name", True))

    def _url(self, endpoint: str) -> str:
        base = self.account.base_url if self.account.base_url.endswith("/") else self.account.base_url + "/"
        return urljoin(base, endpoint)

    def _file_url(self) -> str:
        configured = self.account.credentials.get("file_trans_url")
        if configured:
            return str(configured)
        host = urlsplit(self.account.base_url).hostname or ""
        return FILE_HOSTS.get(host) or self._url("fileTransfer.do")

    def _common(self, *, txn_type: str, txn_sub_type: str, biz_type: str = "000201") -> dict[str, str]:
        return {
            "version": VERSION,
            "encoding": "UTF-8",
            "signMethod": "01",
            "txnType": txn_type,
            "txnSubType": txn_sub_type,
            "bizType": biz_type,
            "accessType": "0",
            "merId": self.mer_id,
        }

    def _sign(self, fields: dict[str, str]) -> dict[str, str]:
        try:
            return proto.signed_request(
                fields, private_key_pem=self._credential("sign_private_key"), cert_id=self._credential("sign_cert_id")
            )
        except (ValueError, TypeError) as exc:
            raise ChannelUnavailable(
                f"unionpay account {self.account.id} signing key is unreadable",
                code="account_misconfigured",
                reached_provider=False,
            ) from exc

    def _verify(self, fields: dict[str, str]) -> None:
        """Raises proto.SignatureInvalid unless UnionPay signed the fields."""
        proto.verify(
            fields,
            root_pem=self._credential("root_cert"),
            middle_pem=self._credential("middle_cert"),
            validate_cn_name=self.validate_cn_name,
        )

    def _post(self, url: str, fields: dict[str, str]) -> dict[str, str]:
        """POSTs a signed form and returns the verified answer, or raises a ChannelFailure.

        An unsigned answer is trusted only as a refusal (UnionPay leaves some errors unsigned).
        """
        form = self._sign(fields)
        try:
            response = requests.post(
                url,
                data=form,
                headers={"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"},
                timeout=self.account.timeout_seconds,
                allow_redirects=False,
            )
        except requests.ConnectTimeout as exc:
            raise ChannelUnavailable("unionpay gateway unreachable: connect timeout", code="connection_failed",
                                     reached_provider=False) from exc  # fmt: skip
        except requests.Timeout as exc:
            raise ChannelTimeout("unionpay gateway timed out", code="timeout") from exc
        except requests.ConnectionError as exc:
            reason = exc.args[0] if exc.args else None
            if isinstance(getattr(reason, "reason", None), NewConnectionError):
                raise ChannelUnavailable(
                    f"unionpay gateway unreachable: {reason.reason}", code="connection_failed", reached_provider=False
                ) from exc
            raise ChannelTimeout(f"unionpay connection lost: {exc!r}", code="connection_lost") from exc
        except requests.RequestException as exc:
            raise ChannelUnavailable(f"unionpay request failed: {exc!r}", code="connection_failed",
                                     reached_provider=False) from exc  # fmt: skip
        if response.status_code != 200:
            raise ChannelUnavailable(
                f"unionpay gateway answered HTTP {response.status_code}",
                code=f"http_{response.status_code}",
                reached_provider=response.status_code >= 500,
            )
        try:
            answer = proto.parse_qstring(response.content.decode("utf-8").strip())
        except (UnicodeDecodeError, ValueError) as exc:
            raise ChannelResponseInvalid("unionpay answer is not k=v&…", code="unreadable_response") from exc
        if "respCode" not in answer:
            raise ChannelResponseInvalid("unionpay answer has no respCode", code="unreadable_response")
        if "signature" not in answer:
            if answer["respCode"] != "00":
                self._raise_for_code(answer)
            raise ChannelResponseInvalid("unionpay answered an unsigned success", code="unsigned_response")
        try:
            self._verify(answer)
        except proto.SignatureInvalid as exc:
            raise ChannelResponseInvalid(f"unionpay answer does not verify: {exc}", code="invalid_signature") from exc
        if answer.get("merId", self.mer_id) != self.mer_id:
            raise ChannelResponseInvalid("unionpay answer names another merId", code="unreadable_response")
        return answer

    @staticmethod
    def _raise_for_code(answer: dict[str, str]) -> None:
        """A respCode other than 00 for the request itself: busy or unknown is unavailability."""
        code = answer.get("respCode", "")
        message = answer.get("respMsg") or f"unionpay answered respCode {code}"
        if code in UNKNOWN_CODES or code == "06":
            raise ChannelUnavailable(message, code=code, reached_provider=True)
        raise ChannelRejected(message, code=code)

    @staticmethod
    def _fen(value: str, currency: str, what: str) -> Money:
        if not value or not value.isdigit():
            raise ValueError(f"unionpay {what} unreadable: {value!r}")
        return from_minor(int(value), currency)

    @classmethod
    def _answer_fen(cls, answer: dict[str, str], currency: str) -> Money:
        try:
            return cls._fen(answer.get("txnAmt", ""), currency, "txnAmt")
        except (ValueError, InvalidRequest) as exc:
            raise ChannelResponseInvalid(str(exc), code="unreadable_response") from exc

    # --- payments ------------------------------------------------------------------------------

    def create_payment(self, request: PaymentRequest) -> PaymentCreated:
        """The front consume form, signed; the payer's browser POSTs it to `channel_url`.

        Nothing is sent to UnionPay here: the transaction begins when the browser posts the form.
        `channel_url` is not a UnionPay field and is not signed; a client posts the other fields.
        """
        channel_type = CHANNEL_TYPES.get(request.method)
        if channel_type is None:
            raise ChannelRejected(f"unionpay adapter does not support {request.method}", code="method_unsupported",
                                  reached_provider=False)  # fmt: skip
        if request.amount.currency.code not in self.currencies:
            raise ChannelRejected(f"unionpay does not take {request.amount.currency.code}",
                                  code="currency_unsupported", reached_provider=False)  # fmt: skip
        result_url = str(request.extra.get("result_url") or "")
        if not result_url:
            raise ChannelRejected("upacp needs extra.result_url", code="result_url_required", reached_provider=False)
        now = timezone.now()
        if request.time_expire <= now:
            raise ChannelRejected("time_expire has passed", code="time_expire_passed", reached_provider=False)
        fields = {
            **self._common(txn_type="01", txn_sub_type="01"),
            "channelType": channel_type,
            "orderId": order_id_for(request.out_trade_no),
            "txnTime": format_time(request.requested_at or now),
            "txnAmt": str(to_minor(request.amount)),
            "currencyCode": "156",
            "frontUrl": result_url,
            "backUrl": request.notify_url,
            "payTimeout": format_time(request.time_expire),
        }
        return PaymentCreated(credential={**self._sign(fields), "channel_url": self._url("frontTransReq.do")})

    def _query(self, *, paysys_id: str, requested_at: datetime | str | None) -> dict[str, str] | None:
        """The original transaction's answer, or None when UnionPay does not know it (34)."""
        order_id = order_id_for(paysys_id)
        fields = {
            **self._common(txn_type="00", txn_sub_type="00"),
            "orderId": order_id,
            "txnTime": _txn_time_text(requested_at),
        }
        answer = self._post(self._url("queryTrans.do"), fields)
        if answer["respCode"] == NOT_FOUND_CODE:
            return None
        if answer["respCode"] != "00":
            self._raise_for_code(answer)
        if answer.get("orderId") != order_id or not answer.get("origRespCode"):
            raise ChannelResponseInvalid("unionpay query answer names another order or lacks origRespCode",
                                         code="unreadable_response")  # fmt: skip
        return answer

    def query_payment(
        self, *, out_trade_no: str, currency: str, requested_at: datetime | str | None = None
    ) -> PaymentResult:
        """queryTrans.do with the original orderId and txnTime (`requested_at`: the credential's txnTime)."""
        answer = self._query(paysys_id=out_trade_no, requested_at=requested_at)
        if answer is None:
            return PaymentResult(out_trade_no=out_trade_no, status=PaymentStatus.NOT_FOUND)
        orig = answer["origRespCode"]
        if orig in UNKNOWN_CODES:
            return PaymentResult(out_trade_no=out_trade_no, status=PaymentStatus.PENDING, raw=answer)
        if orig not in SUCCESS_CODES:
            return PaymentResult(out_trade_no=out_trade_no, status=PaymentStatus.FAILED, raw=answer)
        amount = self._answer_fen(answer, currency)
        reference = _parse_time(answer.get("txnTime", "")) or timezone.now()
        return PaymentResult(
            out_trade_no=out_trade_no,
            status=PaymentStatus.SUCCEEDED,
            transaction_no=answer.get("queryId") or None,
            amount=amount,
            paid_at=_trace_datetime(answer.get("traceTime", ""), reference),
            raw=answer,
        )

    def close_payment(self, *, out_trade_no: str, requested_at: datetime | str | None = None) -> None:
        """No close exists for a front consume: it dies at payTimeout. Called at time_expire, this
        confirms nothing was paid: not found or failed is success, paid is `trade_paid`, in
        progress is `trade_in_progress` (ask again later)."""
        result = self.query_payment(out_trade_no=out_trade_no, currency="CNY", requested_at=requested_at)
        if result.status == PaymentStatus.SUCCEEDED:
            raise ChannelRejected("unionpay consume is already paid", code="trade_paid")
        if result.status == PaymentStatus.PENDING:
            raise ChannelRejected("unionpay consume is still in progress", code="trade_in_progress")
        return None

    # --- refunds -------------------------------------------------------------------------------

    def refund(self, request: RefundRequest) -> RefundResult:
        """backTransReq.do txnType 04 against the consume's queryId. respCode 00 only means
        accepted: the result is PENDING until the notification or a refund query. The refund's
        txnTime (needed to query it) is in `raw["txnTime"]`."""
        if not request.transaction_no:
            raise ChannelRejected("a unionpay refund needs the consume's queryId", code="transaction_no_required",
                                  reached_provider=False)  # fmt: skip
        fields = {
            **self._common(txn_type="04", txn_sub_type="00"),
            "orderId": order_id_for(request.out_refund_no),
            "txnTime": format_time(request.requested_at or timezone.now()),
            "txnAmt": str(to_minor(request.amount)),
            "currencyCode": "156",
            "origQryId": request.transaction_no,
            "backUrl": request.notify_url,
            "reqReserved": request.out_trade_no,  # echoed in the notification: which charge
        }
        answer = self._post(self._url("backTransReq.do"), fields)
        code = answer["respCode"]
        if code == DUPLICATE_CODE:
            known = self._refund_sent_before(request, txn_time=fields["txnTime"])
            if known is not None:
                return known
        raw = {**answer, "txnTime": answer.get("txnTime") or fields["txnTime"]}
        if code == "00" or code in UNKNOWN_CODES:
            return RefundResult(
                out_refund_no=request.out_refund_no,
                status=RefundStatus.PENDING,
                out_trade_no=request.out_trade_no,
                refund_no=answer.get("queryId") or None,
                amount=request.amount,
                raw=raw,
            )
        return RefundResult(
            out_refund_no=request.out_refund_no,
            status=RefundStatus.FAILED,
            out_trade_no=request.out_trade_no,
            amount=request.amount,
            failure_code=code,
            failure_msg=answer.get("respMsg", ""),
            raw=raw,
        )

    def _refund_sent_before(self, request: RefundRequest, *, txn_time: str) -> RefundResult | None:
        """A refund answered "duplicate" (12): UnionPay does not deduplicate, it refuses a used orderId.
        The same refund sent again (a task run twice, a resubmission) is found by its own orderId
        and txnTime and its state is the answer; None when the orderId belongs to something else."""
        known = self.query_refund(
            out_trade_no=request.out_trade_no, out_refund_no=request.out_refund_no,
            currency=request.amount.currency.code, requested_at=txn_time,
        )  # fmt: skip
        if known.status == RefundStatus.NOT_FOUND or known.amount != request.amount:
            return None
        return known

    def query_refund(
        self, *, out_trade_no: str, out_refund_no: str, currency: str, requested_at: datetime | str | None = None
    ) -> RefundResult:
        """queryTrans.do for the refund's own orderId and txnTime (the refund answer's raw txnTime)."""
        answer = self._query(paysys_id=out_refund_no, requested_at=requested_at)
        if answer is None:
            return RefundResult(out_refund_no=out_refund_no, status=RefundStatus.NOT_FOUND, out_trade_no=out_trade_no)
        orig = answer["origRespCode"]
        status = (
            RefundStatus.SUCCEEDED
            if orig in SUCCESS_CODES
            else RefundStatus.PENDING
            if orig in UNKNOWN_CODES
            else RefundStatus.FAILED
        )
        amount = self._answer_fen(answer, currency)
        reference = _parse_time(answer.get("txnTime", "")) or timezone.now()
        return RefundResult(
            out_refund_no=out_refund_no,
            status=status,
            out_trade_no=out_trade_no,
            refund_no=answer.get("queryId") or None,
            amount=amount,
            succeeded_at=_trace_datetime(answer.get("traceTime", ""), reference)
            if status == RefundStatus.SUCCEEDED
            else None,
            failure_code="" if status != RefundStatus.FAILED else orig,
            failure_msg="" if status != RefundStatus.FAILED else answer.get("origRespMsg", ""),
            raw=answer,
        )

    # --- notifications -------------------------------------------------------------------------

    def parse_notification(
        self, *, headers: dict, body: bytes, currency: str | None = None
    ) -> PaymentResult | RefundResult:
        """A backend notification (form POST, sent only for successful transactions)."""
        try:
            fields = dict(parse_qsl(body.decode("ascii"), keep_blank_values=True, errors="strict"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise NotificationInvalid("unionpay notification is not a readable form") from exc
        fields = {k: v for k, v in fields.items() if v != ""}
        try:
            self._verify(fields)
        except proto.SignatureInvalid as exc:
            raise NotificationInvalid(f"unionpay notification does not verify: {exc}") from exc
        if fields.get("merId") != self.mer_id:
            raise NotificationInvalid("unionpay notification is for another merId")
        txn_type = fields.get("txnType", "")
        order_id = fields.get("orderId", "")
        if txn_type not in ID_PREFIXES or not ORDER_ID.match(order_id):
            raise NotificationInvalid("unionpay notification is not for a consume or refund orderId")
        try:
            amount = self._fen(fields.get("txnAmt", ""), currency or "CNY", "txnAmt")
        except (ValueError, InvalidRequest) as exc:  # signed, yet unusable
            raise NotificationInvalid("unionpay notification has an unreadable amount") from exc
        succeeded = fields.get("respCode") in SUCCESS_CODES
        reference = _parse_time(fields.get("txnTime", "")) or timezone.now()
        at = _trace_datetime(fields.get("traceTime", ""), reference) if succeeded else None
        if txn_type == "01":
            return PaymentResult(
                out_trade_no=paysys_id_for(order_id, txn_type),
                status=PaymentStatus.SUCCEEDED if succeeded else PaymentStatus.FAILED,
                transaction_no=fields.get("queryId") or None,
                amount=amount,
                paid_at=at,
                raw=fields,
            )
        charge = fields.get("reqReserved", "")
        return RefundResult(
            out_refund_no=paysys_id_for(order_id, txn_type),
            status=RefundStatus.SUCCEEDED if succeeded else RefundStatus.FAILED,
            out_trade_no=charge if charge.startswith("ch_") else "",
            refund_no=fields.get("queryId") or None,
            amount=amount,
            succeeded_at=at,
            failure_code="" if succeeded else fields.get("respCode", ""),
            failure_msg="" if succeeded else fields.get("respMsg", ""),
            raw=fields,
        )

    def notification_ack(self) -> ProviderReply:
        return ProviderReply(200, b"ok")

    def notification_nack(self) -> ProviderReply:
        return ProviderReply(400, b"fail")

    # --- the reconciliation file ---------------------------------------------------------------

    def download_bill(self, *, bill_date: date, dest: BinaryIO) -> str:
        """fileTransfer (txnType 76) for the settle date; writes the zip (ZM and ZME files) to
        `dest` and returns UnionPay's fileName. BillNotReady on respCode 98 (no file yet)."""
        fields = {
            **self._common(txn_type="76", txn_sub_type="01", biz_type="000000"),
            "settleDate": bill_date.strftime("%m%d"),
            "txnTime": format_time(timezone.now()),
            "fileType": "00",
        }
        answer = self._post(self._file_url(), fields)
        if answer["respCode"] == BILL_NOT_READY_CODE:
            raise BillNotReady(answer.get("respMsg") or "unionpay has no file yet", code=BILL_NOT_READY_CODE)
        if answer["respCode"] != "00":
            self._raise_for_code(answer)
        try:
            archive = zlib.decompress(base64.b64decode(answer.get("fileContent", ""), validate=True))
        except (binascii.Error, ValueError, zlib.error) as exc:
            raise ChannelResponseInvalid(
                "unionpay fileContent is not base64(zlib(…))", code="unreadable_response"
            ) from exc
        if not zipfile.is_zipfile(io.BytesIO(archive)):
            raise ChannelResponseInvalid("unionpay fileContent is not a zip archive", code="unreadable_response")
        dest.write(archive)
        return answer.get("fileName") or f"{self.mer_id}_{bill_date.strftime('%Y%m%d')}.zip"

    def parse_bill(self, source: BinaryIO) -> Iterator[BillLine]:
        """Streams the ZM file's lines (GBK, fixed width, `\\r\\n`) out of the downloaded zip.

        Consumes (txnType 01) are payments and refunds (04) refunds, both succeeded: the file lists
        only what settled. A cancel (31, 消费撤销) is the original consume's payment line with status
        `closed`. Other transaction types are not paysys's and are skipped. The ZM file has no
        totals: a file cut at a line's end cannot be told from a complete one.
        """
        try:
            archive = zipfile.ZipFile(source)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise BillInvalid(f"unionpay bill is not a zip archive ({exc})") from exc
        with archive:
            members = [(ZM_NAME.search(name), name) for name in archive.namelist()]
            members = [(match, name) for match, name in members if match]
            if len(members) != 1:
                raise BillInvalid(f"unionpay bill holds {len(members)} ZM files, expected one")
            match, name = members[0]
            try:
                file_day = datetime.strptime(match.group(1), "%y%m%d").replace(tzinfo=UNIONPAY_TZ)
            except ValueError as exc:
                raise BillInvalid(f"unionpay ZM file name has no date: {name}") from exc
            try:
                with archive.open(name) as stream:
                    for number, raw_line in enumerate(stream, start=1):
                        line = raw_line.rstrip(b"\r\n")
                        if line.strip():
                            bill_line = _zm_line(line, number, file_day + timedelta(hours=12))
                            if bill_line is not None:
                                yield bill_line
            except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
                raise BillInvalid(f"unionpay bill: the archive is damaged ({exc})") from exc


def _minor(text: str, number: int) -> int:
    if not (text.isascii() and text.isdigit()):
        raise BillInvalid(f"unionpay ZM line {number} has an unreadable amount or fee {text!r}")
    return int(text)


def _zm_line(line: bytes, number: int, around: datetime) -> BillLine | None:
    """One ZM line as a standard bill line (None for a transaction type that is not paysys's);
    `around`: noon of the file's day, to place the year-less traceTime."""
    if len(line) < ZM_MIN_LENGTH:
        raise BillInvalid(f"unionpay ZM line {number} is truncated ({len(line)} bytes)")
    if b"\x00" in line:
        raise BillInvalid(f"unionpay ZM line {number} is not GBK text (NUL bytes: UTF-16?)")

    def field(index: int) -> str:
        start = ZM_OFFSETS[index]
        try:
            return line[start : start + ZM_WIDTHS[index]].decode("gbk").strip()
        except UnicodeDecodeError as exc:
            raise BillInvalid(f"unionpay ZM line {number} is not GBK text") from exc

    txn_type = field(19)
    if txn_type not in ID_PREFIXES and txn_type != CANCEL:
        return None  # other transaction kinds (pre-authorisations …) are not paysys's
    amount, fee = _minor(field(6), number), _minor(field(15).lstrip("CD") or "0", number)
    occurred_at = _trace_datetime(field(4), around)
    order_id = field(11)
    if occurred_at is None or not order_id:
        raise BillInvalid(f"unionpay ZM line {number} lacks its time or orderId")
    orig_order_id = field(40) if len(line) >= ZM_OFFSETS[40] + 1 else ""
    succeeded = PaymentStatus.SUCCEEDED.value
    if txn_type == "01":
        return BillLine(
            PAYMENT, paysys_id_for(order_id, "01"), "", field(9), "", amount, fee, "CNY", succeeded,
            occurred_at,
        )  # fmt: skip
    if not orig_order_id and txn_type == CANCEL:
        raise BillInvalid(f"unionpay ZM line {number}: a cancel without its original orderId")
    out_trade_no = paysys_id_for(orig_order_id, "01") if orig_order_id else ""
    if txn_type == CANCEL:  # the channel reversed a consume: its payment line says closed
        closed = PaymentStatus.CLOSED.value
        return BillLine(PAYMENT, out_trade_no, "", field(26), "", amount, fee, "CNY", closed, occurred_at)
    return BillLine(
        REFUND, out_trade_no, paysys_id_for(order_id, "04"), field(26), field(9), amount, fee, "CNY",
        succeeded, occurred_at,
    )  # fmt: skip
