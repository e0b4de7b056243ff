"""UnionPay's gateway entry points: frontTransReq.do, backTransReq.do, queryTrans.do and the file
download (PROVIDERS.md C1-C5).

Each request is checked as UnionPay does (version, signMethod, merId, certId, signature), then
dispatched; sync answers are `k=v&…` with raw values, signed with the sandbox's signing
certificate. Business errors are HTTP 200 with a respCode; injected 5xx faults are not.
"""

import logging
import re
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from apps.core import crypto
from apps.sandbox import unionpay_protocol as proto
from apps.sandbox import unionpay_services as services
from apps.sandbox.models import FaultKind, UnionPayMerchant, UnionPayTxn, UnionPayTxnStatus, UnionPayTxnType
from apps.sandbox.unionpay_services import UnionPayError

logger = logging.getLogger(__name__)

ORDER_ID = re.compile(r"^[A-Za-z0-9]{8,40}$")
TXN_TIME_SKEW = timedelta(days=1)  # "must be the current time": the sandbox tolerates clock skew
# Ping++'s convention for redirect channels: the target URL travels beside the form fields. It is
# not a UnionPay field and not signed, so the gateway ignores it if a client posts it along.
IGNORED_FIELDS = ("channel_url",)
SUCCESS = {"respCode": "00", "respMsg": "成功[0000000]"}


@dataclass(frozen=True)
class GatewayAnswer:
    status: int
    fields: dict[str, str]
    txn: UnionPayTxn | None = None

    def text(self) -> str:
        return proto.query_string(self.fields)


class ServerFault(Exception):
    """An injected 5xx: the gateway answers HTTP 5xx and does nothing."""


def _echo(params: dict[str, str], *keys: str) -> dict[str, str]:
    return {k: params[k] for k in keys if params.get(k)}


def _base(params: dict[str, str]) -> dict[str, str]:
    return {
        "version": proto.VERSION,
        "encoding": "UTF-8",
        "signMethod": "01",
        **_echo(params, "bizType", "txnType", "txnSubType", "accessType", "merId", "orderId", "txnTime", "reqReserved"),
    }


def _merchant(params: dict[str, str]) -> UnionPayMerchant:
    """Checks the common fields and the signature; the merchant whose key signed the request."""
    if params.get("version") != proto.VERSION:
        raise UnionPayError("10", "报文格式错误: version")
    if params.get("encoding", "").upper() != "UTF-8":
        raise UnionPayError("10", "报文格式错误: encoding")
    if params.get("signMethod") != "01":
        raise UnionPayError("10", "报文格式错误: signMethod")
    merchant = UnionPayMerchant.objects.filter(mer_id=params.get("merId", "")).first()
    if merchant is None:
        raise UnionPayError("10", "商户未开通或不存在")
    if params.get("certId") != merchant.cert_id:
        raise UnionPayError("11", "验证签名失败: certId")
    public_key = proto.load_certificate(merchant.cert_pem).public_key()
    if not proto.signature_valid(params, crypto.public_key_pem(public_key)):
        raise UnionPayError("11", "验证签名失败")
    return merchant


def _order_id(params: dict[str, str]) -> str:
    order_id = params.get("orderId", "")
    if not ORDER_ID.match(order_id):
        raise UnionPayError("10", "报文格式错误: orderId")
    return order_id


def _txn_time(params: dict[str, str], *, current: bool) -> str:
    value = params.get("txnTime", "")
    moment = proto.parse_time(value)
    if moment is None or len(value) != 14:
        raise UnionPayError("10", "报文格式错误: txnTime")
    if current and abs(moment - timezone.now()) > TXN_TIME_SKEW:
        raise UnionPayError("10", "报文格式错误: txnTime不是当前时间")
    return value


def _amount(params: dict[str, str]) -> int:
    value = params.get("txnAmt", "")
    if not value.isdigit() or not 0 < int(value) <= 10**12 or value.startswith("0"):
        raise UnionPayError("10", "报文格式错误: txnAmt")
    if params.get("currencyCode") != "156":
        raise UnionPayError("10", "报文格式错误: currencyCode")
    return int(value)


def _expect(params: dict[str, str], **expected: str) -> None:
    for key, value in expected.items():
        if params.get(key) != value:
            raise UnionPayError("10", f"报文格式错误: {key}")


def _maybe_5xx(merchant: UnionPayMerchant, operation: str, order_id: str = "") -> None:
    if services.operation_fails_5xx(merchant=merchant, operation=operation, order_id=order_id):
        raise ServerFault(operation)


def _maybe_timeout(kind: str, merchant: UnionPayMerchant, order_id: str) -> None:
    fault = services.fault_for(kind, merchant=merchant, order_id=order_id)
    if fault is not None:
        services.fault_sleep(fault)


# --- operations --------------------------------------------------------------------------------


def front_consume(params: dict[str, str]) -> GatewayAnswer:
    """frontTransReq.do: the payer's browser posts the merchant's signed form; the answer is the
    cashier (rendered by the view). Create faults act here, where the transaction begins."""
    params = {k: v for k, v in params.items() if k not in IGNORED_FIELDS}
    try:
        merchant = _merchant(params)
        order_id = _order_id(params)
        _maybe_5xx(merchant, "front", order_id)
        _expect(params, txnType="01", txnSubType="01", bizType="000201", accessType="0")
        if params.get("channelType") not in ("07", "08"):
            raise UnionPayError("10", "报文格式错误: channelType")
        pay_timeout = None
        if params.get("payTimeout"):
            pay_timeout = proto.parse_time(params["payTimeout"])
            if pay_timeout is None:
                raise UnionPayError("10", "报文格式错误: payTimeout")
            if pay_timeout <= timezone.now():
                raise UnionPayError("10", "订单已超时")
        txn = services.unionpay_front_consume(
            merchant=merchant,
            order_id=order_id,
            txn_time=_txn_time(params, current=True),
            txn_amt=_amount(params),
            channel_type=params["channelType"],
            front_url=params.get("frontUrl", ""),
            back_url=params.get("backUrl", ""),
            req_reserved=params.get("reqReserved", ""),
            pay_timeout=pay_timeout,
        )
        paid_fault = services.fault_for(FaultKind.CREATE_TIMEOUT_PAID, merchant=merchant, order_id=order_id)
        if paid_fault is not None:  # the payment is made, the page never comes back
            txn, _ = services.unionpay_consume_settle(txn=txn, succeed=True)
            services.fault_sleep(paid_fault)
        _maybe_timeout(FaultKind.TIMEOUT_CREATE, merchant, order_id)
    except UnionPayError as exc:
        return GatewayAnswer(200, {**_base(params), "respCode": exc.resp_code, "respMsg": exc.resp_msg})
    return GatewayAnswer(200, {**_base(params), **SUCCESS}, txn=txn)


def _refund(merchant: UnionPayMerchant, params: dict[str, str]) -> GatewayAnswer:
    _expect(params, txnSubType="00", bizType="000201", accessType="0")
    order_id = _order_id(params)
    consume = UnionPayTxn.objects.filter(merchant=merchant, query_id=params.get("origQryId", "")).first()
    consume_order = consume.order_id if consume else ""
    _maybe_5xx(merchant, "refund", consume_order or order_id)
    refund = services.unionpay_refund(
        merchant=merchant,
        order_id=order_id,
        txn_time=_txn_time(params, current=True),
        txn_amt=_amount(params),
        orig_qry_id=params.get("origQryId", ""),
        back_url=params.get("backUrl", ""),
        req_reserved=params.get("reqReserved", ""),
    )
    for scope in (order_id, consume_order):
        fault = services.fault_for(FaultKind.TIMEOUT_REFUND, merchant=merchant, order_id=scope)
        if fault is not None:  # the refund is made; the answer comes too late
            services.fault_sleep(fault)
            break
    answer = {
        **_base(params),
        **SUCCESS,
        "txnAmt": str(refund.txn_amt),
        "currencyCode": refund.currency_code,
        "origQryId": consume.query_id,
        "queryId": refund.query_id,
    }
    return GatewayAnswer(200, answer, txn=refund)


def back_trans(params: dict[str, str]) -> GatewayAnswer:
    """backTransReq.do: only refunds (txnType 04) are simulated."""
    try:
        merchant = _merchant(params)
        if params.get("txnType") != UnionPayTxnType.REFUND:
            raise UnionPayError("10", "报文格式错误: txnType")
        answer = _refund(merchant, params)
    except UnionPayError as exc:
        return GatewayAnswer(200, {**_base(params), "respCode": exc.resp_code, "respMsg": exc.resp_msg})
    return answer


def query(params: dict[str, str]) -> GatewayAnswer:
    """queryTrans.do: the original transaction by orderId and its original txnTime.

    A front consume the payer has not completed is not a transaction yet (respCode 34), as is any
    orderId + txnTime UnionPay does not know.
    """
    try:
        merchant = _merchant(params)
        _expect(params, txnType="00", txnSubType="00", accessType="0")
        order_id = _order_id(params)
        txn_time = _txn_time(params, current=False)
        _maybe_5xx(merchant, "query", order_id)
        _maybe_timeout(FaultKind.TIMEOUT_QUERY, merchant, order_id)
        txn = (
            UnionPayTxn.objects.select_related("orig")
            .filter(merchant=merchant, order_id=order_id, txn_time=txn_time)
            .first()
        )
        if txn is None or (txn.status == UnionPayTxnStatus.PENDING and txn.txn_type == UnionPayTxnType.CONSUME):
            raise UnionPayError("34", "查无此交易")
    except UnionPayError as exc:
        return GatewayAnswer(200, {**_base(params), "respCode": exc.resp_code, "respMsg": exc.resp_msg})
    fields = {
        **_base(params),
        **SUCCESS,
        "txnType": txn.txn_type,
        "txnSubType": txn.txn_sub_type,
        "bizType": txn.biz_type,
        "orderId": txn.order_id,
        "txnTime": txn.txn_time,
        "txnAmt": str(txn.txn_amt),
        "currencyCode": txn.currency_code,
        "origRespCode": txn.orig_resp_code or "05",
        "origRespMsg": txn.orig_resp_msg or "交易处理中",
        "queryId": txn.query_id,
        "traceNo": txn.trace_no,
        "traceTime": txn.trace_time,
        "reqReserved": txn.req_reserved,
    }
    if txn.status == UnionPayTxnStatus.SUCCESS:
        fields.update(
            {
                "settleAmt": str(txn.txn_amt),
                "settleCurrencyCode": txn.currency_code,
                "settleDate": txn.settle_date.strftime("%m%d"),
            }
        )
        if txn.acc_no:
            fields["accNo"] = txn.acc_no[:6] + "*" * (len(txn.acc_no) - 10) + txn.acc_no[-4:]
    if txn.orig_id:
        fields["origQryId"] = txn.orig.query_id
    return GatewayAnswer(200, {k: v for k, v in fields.items() if v != ""}, txn=txn)


def file_transfer(params: dict[str, str]) -> GatewayAnswer:
    """The file download (txnType 76): the day's archive as base64(zlib(zip)); 98 when not ready."""
    try:
        merchant = _merchant(params)
        _expect(params, txnType="76", txnSubType="01", bizType="000000", accessType="0", fileType="00")
        _maybe_5xx(merchant, "file")
        today = timezone.now().astimezone(proto.UNIONPAY_TZ).date()
        settle_date = proto.resolve_settle_date(params.get("settleDate", ""), today)
        if settle_date is None:
            raise UnionPayError("10", "报文格式错误: settleDate")
        file_name, content = services.unionpay_bill(merchant=merchant, settle_date=settle_date)
    except UnionPayError as exc:
        return GatewayAnswer(200, {**_base(params), "respCode": exc.resp_code, "respMsg": exc.resp_msg})
    fields = {**_base(params), **SUCCESS, "settleDate": params["settleDate"], "fileType": "00"}
    fields.update({"fileName": file_name, "fileContent": content})
    return GatewayAnswer(200, fields)


OPERATIONS = {"front": front_consume, "back": back_trans, "query": query, "file": file_transfer}


def unionpay_gateway_handle(operation: str, params: dict[str, str]) -> GatewayAnswer:
    """One request to its answer; the answer's fields are signed here (every answer is)."""
    try:
        answer = OPERATIONS[operation](params)
    except ServerFault:
        return GatewayAnswer(503, {})
    except Exception:
        logger.exception("sandbox unionpay gateway failed on %s", operation)
        answer = GatewayAnswer(200, {**_base(params), "respCode": "06", "respMsg": "系统繁忙"})
    return GatewayAnswer(answer.status, services.unionpay_sign(answer.fields), txn=answer.txn)
