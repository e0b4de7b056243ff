"""`/v3/…`: WeChat Pay API v3's endpoints for direct merchants (PROVIDERS.md B1-B3).

Checks each request as WeChat does (the merchant, its certificate serial, the SHA256-RSA
signature over `METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\nBODY\\n` on the raw target and body bytes),
applies the gateway faults (timeouts, 5xx, create-times-out-but-paid), dispatches to the
services, and returns an answer that the view signs with the merchant's platform key.
"""

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from apps.core import crypto
from apps.sandbox import wechatpay_protocol as proto
from apps.sandbox import wechatpay_selectors as selectors
from apps.sandbox import wechatpay_services as services
from apps.sandbox.faults import fault_take
from apps.sandbox.models import FaultKind, WechatpayMerchant, WechatpayTradeType
from apps.sandbox.wechatpay_services import WechatpayApiError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_FAULT_SECONDS = 15.0


@dataclass
class GatewayAnswer:
    status: int
    document: dict | None = None  # JSON body; None for an empty body (204)
    raw: bytes | None = None  # a file (bill download)
    content_type: str = "application/json; charset=utf-8"
    merchant: WechatpayMerchant | None = None  # signs the answer when known
    sleep_seconds: float = 0.0  # a timeout fault: the view sleeps before answering
    headers: dict = field(default_factory=dict)

    def body(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return b"" if self.document is None else proto.json_body(self.document)


@dataclass(frozen=True)
class Call:
    method: str
    target: str  # the request target as signed: /v3/… with the query string
    path: str  # /v3/… without the query string
    query: dict[str, str]
    body: bytes
    gateway_url: str  # the absolute URL the client configured as its gateway
    pay_url_for: Callable[[str], str]


def _json(call: Call) -> dict:
    try:
        document = json.loads(call.body or b"{}")
    except ValueError as exc:
        raise WechatpayApiError(400, "PARAM_ERROR", "请求体不是合法的JSON") from exc
    if not isinstance(document, dict):
        raise WechatpayApiError(400, "PARAM_ERROR", "请求体不是JSON对象")
    return document


def _fault(kind: str, merchant: WechatpayMerchant, out_trade_no: str = "", operation: str | None = None):
    return fault_take(
        provider=services.PROVIDER, kind=kind, merchant_ref=merchant.mchid, out_trade_no=out_trade_no,
        operation=operation,
    )  # fmt: skip


def _timeout_seconds(fault) -> float:
    return float((fault.params or {}).get("seconds", DEFAULT_TIMEOUT_FAULT_SECONDS))


def _check_5xx(merchant: WechatpayMerchant, operation: str, out_trade_no: str = "") -> None:
    """The ERROR_5XX fault for this operation (params.operations: list of names; empty = all).

    Operations: create, query, close, refund, refund_query, bill. A fault limited to some of them
    is spent only by those.
    """
    fault = _fault(FaultKind.ERROR_5XX, merchant, out_trade_no, operation=operation)
    if fault is not None:
        raise WechatpayApiError(int((fault.params or {}).get("status", 500)), "SYSTEM_ERROR", "系统错误")


# --- endpoints ---------------------------------------------------------------------------------

TRADE_TYPES = {"native": WechatpayTradeType.NATIVE, "jsapi": WechatpayTradeType.JSAPI, "h5": WechatpayTradeType.MWEB}


def _create(call: Call, merchant: WechatpayMerchant, kind: str) -> GatewayAnswer:
    data = _json(call)
    out_trade_no = str(data.get("out_trade_no") or "")
    amount = data.get("amount") if isinstance(data.get("amount"), dict) else {}
    total = amount.get("total")
    description = str(data.get("description") or "")
    notify_url = str(data.get("notify_url") or "")
    if str(data.get("mchid") or "") != merchant.mchid:
        raise WechatpayApiError(400, "PARAM_ERROR", "mchid与请求签名的商户号不一致")
    if str(data.get("appid") or "") != merchant.appid:
        raise WechatpayApiError(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
    if not re.fullmatch(r"[0-9A-Za-z_\-*|]{6,32}", out_trade_no):
        raise WechatpayApiError(400, "PARAM_ERROR", "out_trade_no 格式错误")
    if not description or len(description) > 127:
        raise WechatpayApiError(400, "PARAM_ERROR", "description 格式错误")
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise WechatpayApiError(400, "PARAM_ERROR", "amount.total 必须为正整数（分）")
    if str(amount.get("currency") or "CNY") != "CNY":
        raise WechatpayApiError(400, "PARAM_ERROR", "仅支持CNY")
    if not notify_url.startswith(("http://", "https://")):
        raise WechatpayApiError(400, "PARAM_ERROR", "notify_url 格式错误")
    payer = data.get("payer") if isinstance(data.get("payer"), dict) else {}
    scene = data.get("scene_info") if isinstance(data.get("scene_info"), dict) else {}
    if kind == "jsapi" and not payer.get("openid"):
        raise WechatpayApiError(400, "PARAM_ERROR", "缺少参数 payer.openid")
    if kind == "h5" and not scene.get("payer_client_ip"):
        raise WechatpayApiError(400, "PARAM_ERROR", "缺少参数 scene_info.payer_client_ip")
    time_expire = None
    if data.get("time_expire"):
        time_expire = proto.parse_time(str(data["time_expire"]))
        if time_expire is None:
            raise WechatpayApiError(400, "PARAM_ERROR", "time_expire 格式错误")
    _check_5xx(merchant, "create", out_trade_no)
    trade = services.wechatpay_transaction_create(
        merchant=merchant,
        trade_type=TRADE_TYPES[kind],
        out_trade_no=out_trade_no,
        description=description,
        total=total,
        currency="CNY",
        notify_url=notify_url,
        time_expire=time_expire,
        attach=str(data.get("attach") or "")[:128],
        payer_openid=str(payer.get("openid") or ""),
        payer_client_ip=str(scene.get("payer_client_ip") or ""),
    )
    answer = GatewayAnswer(200, _create_document(kind, trade, call))
    paid = _fault(FaultKind.CREATE_TIMEOUT_PAID, merchant, out_trade_no)
    if paid is not None:
        services.wechatpay_transaction_settle(trade=trade, succeed=True)  # the payer paid; the answer is lost
        answer.sleep_seconds = _timeout_seconds(paid)
    timeout = _fault(FaultKind.TIMEOUT_CREATE, merchant, out_trade_no)
    if timeout is not None:
        answer.sleep_seconds = max(answer.sleep_seconds, _timeout_seconds(timeout))
    return answer


def _create_document(kind: str, trade, call: Call) -> dict:
    if kind == "native":
        return {"code_url": call.pay_url_for(trade.pay_token)}
    if kind == "h5":
        return {"h5_url": call.pay_url_for(trade.pay_token)}
    return {"prepay_id": trade.prepay_id}


def _trade(merchant: WechatpayMerchant, out_trade_no: str = "", transaction_id: str = ""):
    trade = selectors.wechatpay_transaction_find(
        merchant=merchant, out_trade_no=out_trade_no, transaction_id=transaction_id
    )
    if trade is None:
        raise WechatpayApiError(404, "ORDER_NOT_EXIST", "订单不存在")
    return trade


def _query(call: Call, merchant: WechatpayMerchant, out_trade_no: str = "", transaction_id: str = "") -> GatewayAnswer:
    if call.query.get("mchid") != merchant.mchid:
        raise WechatpayApiError(400, "PARAM_ERROR", "mchid 参数错误")
    trade = _trade(merchant, out_trade_no, transaction_id)
    timeout = _fault(FaultKind.TIMEOUT_QUERY, merchant, trade.out_trade_no)
    _check_5xx(merchant, "query", trade.out_trade_no)
    trade = services.wechatpay_transaction_refresh(trade=trade)
    answer = GatewayAnswer(200, services.transaction_document(trade))
    if timeout is not None:
        answer.sleep_seconds = _timeout_seconds(timeout)
    return answer


def _close(call: Call, merchant: WechatpayMerchant, out_trade_no: str) -> GatewayAnswer:
    if str(_json(call).get("mchid") or "") != merchant.mchid:
        raise WechatpayApiError(400, "PARAM_ERROR", "mchid 参数错误")
    trade = _trade(merchant, out_trade_no)
    _check_5xx(merchant, "close", out_trade_no)
    services.wechatpay_transaction_close(trade=trade)
    return GatewayAnswer(204)


def _refund(call: Call, merchant: WechatpayMerchant) -> GatewayAnswer:
    data = _json(call)
    out_refund_no = str(data.get("out_refund_no") or "")
    amount = data.get("amount") if isinstance(data.get("amount"), dict) else {}
    refund, total = amount.get("refund"), amount.get("total")
    if not re.fullmatch(r"[0-9A-Za-z_\-*|@]{1,64}", out_refund_no):
        raise WechatpayApiError(400, "PARAM_ERROR", "out_refund_no 格式错误")
    for value in (refund, total):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise WechatpayApiError(400, "PARAM_ERROR", "amount.refund / amount.total 必须为正整数（分）")
    if str(amount.get("currency") or "CNY") != "CNY":
        raise WechatpayApiError(400, "PARAM_ERROR", "仅支持CNY")
    trade = _trade(merchant, str(data.get("out_trade_no") or ""), str(data.get("transaction_id") or ""))
    timeout = _fault(FaultKind.TIMEOUT_REFUND, merchant, trade.out_trade_no)
    _check_5xx(merchant, "refund", trade.out_trade_no)
    created, _ = services.wechatpay_refund_create(
        trade=trade,
        out_refund_no=out_refund_no,
        refund=refund,
        total=total,
        reason=str(data.get("reason") or "")[:80],
        notify_url=str(data.get("notify_url") or ""),
    )
    answer = GatewayAnswer(200, services.refund_document(created))
    if timeout is not None:
        answer.sleep_seconds = _timeout_seconds(timeout)  # accepted, but the answer never arrives in time
    return answer


def _refund_query(call: Call, merchant: WechatpayMerchant, out_refund_no: str) -> GatewayAnswer:
    refund = selectors.wechatpay_refund_find(merchant=merchant, out_refund_no=out_refund_no)
    if refund is None:
        raise WechatpayApiError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
    timeout = _fault(FaultKind.TIMEOUT_QUERY, merchant, refund.transaction.out_trade_no)
    _check_5xx(merchant, "refund_query", refund.transaction.out_trade_no)
    answer = GatewayAnswer(200, services.refund_document(refund))
    if timeout is not None:
        answer.sleep_seconds = _timeout_seconds(timeout)
    return answer


def _tradebill(call: Call, merchant: WechatpayMerchant) -> GatewayAnswer:
    try:
        bill_date = date.fromisoformat(call.query.get("bill_date", ""))
    except ValueError as exc:
        raise WechatpayApiError(400, "PARAM_ERROR", "bill_date 格式错误") from exc
    bill_type = call.query.get("bill_type") or "ALL"
    if bill_type != "ALL":
        raise WechatpayApiError(400, "PARAM_ERROR", "沙箱仅支持 bill_type=ALL")
    tar_type = call.query.get("tar_type")
    if tar_type not in (None, "GZIP"):
        raise WechatpayApiError(400, "PARAM_ERROR", "tar_type 仅支持 GZIP")
    _check_5xx(merchant, "bill")
    bill = services.wechatpay_bill_publish(merchant=merchant, bill_date=bill_date, bill_type=bill_type)
    return GatewayAnswer(
        200,
        {
            "hash_type": "SHA1",
            "hash_value": bill.sha1,
            "download_url": f"{call.gateway_url}/v3/billdownload/file?token={bill.token}",
        },
    )


def _billdownload(call: Call, merchant: WechatpayMerchant) -> GatewayAnswer:
    bill = selectors.wechatpay_bill_get(merchant=merchant, token=call.query.get("token", ""))
    if bill is None:
        raise WechatpayApiError(404, "RESOURCE_NOT_EXISTS", "账单文件不存在或已过期")
    return GatewayAnswer(200, raw=bytes(bill.content), content_type="application/octet-stream")


ROUTES: list[tuple[str, re.Pattern, Callable]] = [
    ("POST", re.compile(r"/v3/pay/transactions/(native|jsapi|h5)"), _create),
    ("GET", re.compile(r"/v3/pay/transactions/out-trade-no/([^/?]+)"), lambda c, m, no: _query(c, m, out_trade_no=no)),
    ("GET", re.compile(r"/v3/pay/transactions/id/([^/?]+)"), lambda c, m, tid: _query(c, m, transaction_id=tid)),
    ("POST", re.compile(r"/v3/pay/transactions/out-trade-no/([^/?]+)/close"), _close),
    ("POST", re.compile(r"/v3/refund/domestic/refunds"), _refund),
    ("GET", re.compile(r"/v3/refund/domestic/refunds/([^/?]+)"), _refund_query),
    ("GET", re.compile(r"/v3/bill/tradebill"), _tradebill),
    ("GET", re.compile(r"/v3/billdownload/file"), _billdownload),
]


def _authenticate(call: Call, authorization: str) -> WechatpayMerchant:
    auth = proto.parse_authorization(authorization)
    if auth is None:
        raise WechatpayApiError(401, "SIGN_ERROR", "Authorization 缺失或格式错误")
    merchant = selectors.wechatpay_merchant_get(mchid=auth.mchid)
    if merchant is None:
        raise WechatpayApiError(401, "SIGN_ERROR", "商户号不存在")
    if auth.serial_no.upper() != merchant.merchant_cert_serial_no.upper():
        raise SignedError(merchant, 401, "SIGN_ERROR", "商户证书序列号有误")
    if not proto.timestamp_fresh(auth.timestamp):
        raise SignedError(merchant, 401, "SIGN_ERROR", "时间戳超出允许范围")
    message = proto.request_message(call.method, call.target, auth.timestamp, auth.nonce_str, call.body)
    if not crypto.rsa_verify(merchant.merchant_public_key_pem, message, auth.signature):
        raise SignedError(merchant, 401, "SIGN_ERROR", "签名错误")
    return merchant


class SignedError(WechatpayApiError):
    """An error answered (and signed) for a known merchant."""

    def __init__(self, merchant: WechatpayMerchant, status: int, code: str, message: str):
        super().__init__(status, code, message)
        self.merchant = merchant


def wechatpay_gateway_handle(call: Call, *, authorization: str) -> GatewayAnswer:
    """One API request to its answer (the view signs it and honours `sleep_seconds`)."""
    merchant = None
    try:
        merchant = _authenticate(call, authorization)
        for method, pattern, handler in ROUTES:
            match = pattern.fullmatch(call.path)
            if match and method == call.method:
                answer = handler(call, merchant, *match.groups())
                break
        else:
            raise WechatpayApiError(404, "NOT_FOUND", "请求的资源不存在")
    except SignedError as exc:
        answer = GatewayAnswer(exc.status, proto.error_document(exc.code, exc.message))
        merchant = exc.merchant
    except WechatpayApiError as exc:
        answer = GatewayAnswer(exc.status, proto.error_document(exc.code, exc.message))
    except Exception:
        logger.exception("sandbox wechatpay gateway failed on %s %s", call.method, call.path)
        answer = GatewayAnswer(500, proto.error_document("SYSTEM_ERROR", "系统错误"))
    answer.merchant = merchant
    return answer


def sleep_for(answer: GatewayAnswer) -> None:
    if answer.sleep_seconds > 0:
        time.sleep(answer.sleep_seconds)
