"""`gateway.do`: Alipay's open-platform entry point (PROVIDERS.md A1-A3).

Checks the request as Alipay does (app, method, RSA2 signature), dispatches to the service for
the method, and answers with the signed envelope. Every answer is HTTP 200, business errors
included: python-alipay-sdk raises on any other status. The browser methods (`page.pay`,
`wap.pay`) open the cashier instead (`alipay_cashier_open`).

Gateway faults: ERROR_5XX (params.operations: Alipay method names, empty = all; params.status,
default 502) answers before anything is done; TIMEOUT_CREATE / TIMEOUT_QUERY / TIMEOUT_REFUND
(params.seconds, default 30) do the work and answer that late; CREATE_TIMEOUT_PAID creates the
trade, has the payer pay it at once, and answers late too.
"""

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from urllib.parse import urlencode

from django.utils import timezone

from apps.sandbox import alipay_bill, selectors, services
from apps.sandbox import alipay_protocol as proto
from apps.sandbox.exceptions import AlipayGatewayError, business_error
from apps.sandbox.models import (
    AlipayApp,
    AlipayProductCode,
    AlipayTrade,
    AlipayTradeStatus,
    FaultKind,
    SandboxFault,
)

logger = logging.getLogger(__name__)

SUCCESS = {"code": "10000", "msg": "Success"}
DEFAULT_FAULT_SECONDS = 30.0
CASHIER_METHODS = {
    "alipay.trade.page.pay": AlipayProductCode.FAST_INSTANT_TRADE_PAY,
    "alipay.trade.wap.pay": AlipayProductCode.QUICK_WAP_PAY,
}
RETURN_METHODS = {
    AlipayProductCode.FAST_INSTANT_TRADE_PAY: "alipay.trade.page.pay.return",
    AlipayProductCode.QUICK_WAP_PAY: "alipay.trade.wap.pay.return",
}


@dataclass(frozen=True)
class GatewayAnswer:
    node_name: str
    node: dict
    signing_key: str | None  # the app's "Alipay" private key; None for an unsigned answer
    http_status: int = 200  # other than 200 only under the ERROR_5XX fault
    delay_seconds: float = 0.0  # a timeout fault: the view answers this late

    def text(self) -> str:
        if self.http_status >= 500:
            return f"<html><body><h1>{self.http_status} Bad Gateway</h1></body></html>"
        return proto.response_envelope(self.node_name, self.node, self.signing_key)


class _Late(Exception):
    """Raised by a method handler whose answer a timeout fault delays (the work is done)."""

    def __init__(self, node: dict, seconds: float):
        super().__init__("late answer")
        self.node = node
        self.seconds = seconds


def _fault_seconds(fault: SandboxFault) -> float:
    return float((fault.params or {}).get("seconds", DEFAULT_FAULT_SECONDS))


@dataclass(frozen=True)
class GatewayUrls:
    """How the gateway names its own pages in answers: absolute URLs on the host that was called."""

    pay: Callable[[str], str]  # pay token -> the payer's page
    absolute: Callable[[str], str]  # a path (with query) -> an absolute URL


@dataclass(frozen=True)
class GatewayCall:
    """One checked gateway request, as the method handlers see it."""

    app: AlipayApp
    biz: dict
    urls: GatewayUrls
    params: dict
    armed: frozenset[str]  # fault kinds armed for this app and order when the request arrived

    def fault_take(self, kind: str, out_trade_no: str) -> SandboxFault | None:
        return services.alipay_fault_take(kind, app=self.app, out_trade_no=out_trade_no, armed=self.armed)


def _late_if(kind: str, call: GatewayCall, out_trade_no: str, node: dict) -> dict:
    """The node, or _Late when a timeout fault of this kind fires."""
    fault = call.fault_take(kind, out_trade_no)
    if fault is not None:
        raise _Late(node, _fault_seconds(fault))
    return node


def _error_5xx_take(app: AlipayApp, method: str, out_trade_no: str, armed: frozenset[str]) -> SandboxFault | None:
    """The ERROR_5XX fault for this method, consumed; one limited to other methods is not spent."""
    return services.alipay_fault_take(
        FaultKind.ERROR_5XX, app=app, out_trade_no=out_trade_no, operation=method, armed=armed
    )


def _precreate(call: GatewayCall) -> dict:
    app, biz = call.app, call.biz
    out_trade_no = str(biz.get("out_trade_no") or "").strip()
    subject = str(biz.get("subject") or "").strip()
    amount = proto.parse_amount(biz.get("total_amount"))
    if not out_trade_no or len(out_trade_no) > 64:
        raise business_error("ACQ.INVALID_PARAMETER", "参数无效: out_trade_no")
    if not subject or len(subject) > 256:
        raise business_error("ACQ.INVALID_PARAMETER", "参数无效: subject")
    if amount is None:
        raise business_error("ACQ.INVALID_PARAMETER", "参数无效: total_amount")
    if amount > proto.MAX_TOTAL_AMOUNT:
        raise business_error("ACQ.TOTAL_FEE_EXCEED", "订单金额超过限额")
    timeout_minutes = proto.parse_timeout_express(str(biz.get("timeout_express") or ""))
    time_expire = proto.parse_time(str(biz.get("time_expire") or ""))
    trade = services.alipay_trade_precreate(
        app=app,
        out_trade_no=out_trade_no,
        total_amount=amount,
        subject=subject,
        body=str(biz.get("body") or "")[:128],
        notify_url=call.params.get("notify_url", ""),
        timeout_minutes=timeout_minutes,
        time_expire=time_expire,
    )
    node = {**SUCCESS, "out_trade_no": trade.out_trade_no, "qr_code": call.urls.pay(trade.pay_token)}
    paid_fault = call.fault_take(FaultKind.CREATE_TIMEOUT_PAID, out_trade_no)
    if paid_fault is not None:
        services.alipay_trade_settle(trade=trade, succeed=True)
        raise _Late(node, _fault_seconds(paid_fault))
    return _late_if(FaultKind.TIMEOUT_CREATE, call, out_trade_no, node)


def _existing_trade(app: AlipayApp, biz: dict) -> AlipayTrade:
    """The trade named by trade_no / out_trade_no; a precreated trade exists only once scanned."""
    trade = selectors.alipay_trade_find(
        app=app, out_trade_no=str(biz.get("out_trade_no") or ""), trade_no=str(biz.get("trade_no") or "")
    )
    if trade is None or not trade.scanned:
        raise business_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
    return trade


def _query(call: GatewayCall) -> dict:
    trade = services.alipay_trade_refresh(trade=_existing_trade(call.app, call.biz))
    amount = proto.format_amount(trade.total_amount)
    paid = trade.paid_at is not None  # a trade closed by a full refund was paid all the same
    node = {
        **SUCCESS,
        "buyer_logon_id": trade.buyer_logon_id,
        "buyer_pay_amount": amount if paid else "0.00",
        "buyer_user_id": trade.buyer_user_id,
        "invoice_amount": amount if paid else "0.00",
        "out_trade_no": trade.out_trade_no,
        "point_amount": "0.00",
        "receipt_amount": amount if paid else "0.00",
        "total_amount": amount,
        "trade_no": trade.trade_no,
        "trade_status": trade.status,
    }
    if paid:
        node["send_pay_date"] = proto.format_time(trade.paid_at)
        node["fund_bill_list"] = [{"amount": amount, "fund_channel": "ALIPAYACCOUNT"}]
    return _late_if(FaultKind.TIMEOUT_QUERY, call, trade.out_trade_no, node)


def _close(call: GatewayCall) -> dict:
    trade = services.alipay_trade_close(trade=_existing_trade(call.app, call.biz))
    return {**SUCCESS, "out_trade_no": trade.out_trade_no, "trade_no": trade.trade_no}


def _refund(call: GatewayCall) -> dict:
    biz = call.biz
    trade = _existing_trade(call.app, biz)
    amount = proto.parse_amount(biz.get("refund_amount"))
    if amount is None:
        raise business_error("ACQ.INVALID_PARAMETER", "参数无效: refund_amount")
    # Without out_request_no Alipay takes the request as a refund of the whole trade, once.
    out_request_no = str(biz.get("out_request_no") or trade.out_trade_no).strip()[:64]
    outcome = services.alipay_trade_refund(
        trade=trade,
        out_request_no=out_request_no,
        refund_amount=amount,
        refund_reason=str(biz.get("refund_reason") or ""),
    )
    trade = outcome.trade
    node = {
        **SUCCESS,
        "buyer_logon_id": trade.buyer_logon_id,
        "buyer_user_id": trade.buyer_user_id,
        "fund_change": "Y" if outcome.fund_change else "N",
        "gmt_refund_pay": proto.format_time(outcome.refund.refunded_at),
        "out_trade_no": trade.out_trade_no,
        "refund_fee": proto.format_amount(trade.refund_fee),
        "send_back_fee": proto.format_amount(outcome.refund.refund_amount),
        "trade_no": trade.trade_no,
    }
    return _late_if(FaultKind.TIMEOUT_REFUND, call, trade.out_trade_no, node)


def _refund_query(call: GatewayCall) -> dict:
    """An unknown out_request_no is an empty success (Alipay's "not refunded"), not an error."""
    biz = call.biz
    trade = _existing_trade(call.app, biz)
    out_request_no = str(biz.get("out_request_no") or "").strip()
    if not out_request_no:
        raise AlipayGatewayError("40001", "isv.missing-parameter", "缺少必选参数: out_request_no")
    refund = selectors.alipay_refund_find(trade=trade, out_request_no=out_request_no)
    node = dict(SUCCESS)
    if refund is not None:
        node.update(
            {
                "gmt_refund_pay": proto.format_time(refund.refunded_at),
                "out_request_no": refund.out_request_no,
                "out_trade_no": trade.out_trade_no,
                "refund_amount": proto.format_amount(refund.refund_amount),
                "refund_status": "REFUND_SUCCESS",
                "total_amount": proto.format_amount(trade.total_amount),
                "trade_no": trade.trade_no,
            }
        )
    return _late_if(FaultKind.TIMEOUT_QUERY, call, trade.out_trade_no, node)


def _bill_downloadurl_query(call: GatewayCall) -> dict:
    """A link to the day's zip, valid about 30 s; no bill before the day is over (T+1)."""
    app, biz = call.app, call.biz
    bill_type = str(biz.get("bill_type") or "")
    if bill_type not in ("trade", "signcustomer"):
        raise AlipayGatewayError("40002", "isv.invalid-parameter", "参数无效: bill_type")
    try:
        bill_date = date.fromisoformat(str(biz.get("bill_date") or ""))
    except ValueError:
        raise AlipayGatewayError("40002", "isv.invalid-parameter", "参数无效: bill_date") from None
    today = timezone.now().astimezone(proto.ALIPAY_TZ).date()
    if bill_date >= today or bill_date < app.created_at.astimezone(proto.ALIPAY_TZ).date():
        raise business_error("isp.bill_not_exist", "账单不存在")
    path = alipay_bill.bill_download_path(app=app, bill_date=bill_date)
    return {**SUCCESS, "bill_download_url": call.urls.absolute(path)}


METHODS = {
    "alipay.trade.precreate": _precreate,
    "alipay.trade.query": _query,
    "alipay.trade.close": _close,
    "alipay.trade.refund": _refund,
    "alipay.trade.fastpay.refund.query": _refund_query,
    "alipay.data.dataservice.bill.downloadurl.query": _bill_downloadurl_query,
}


def _biz_content(params: dict) -> dict:
    try:
        # Amounts may come as JSON numbers: read them as Decimal, never float.
        biz = json.loads(params.get("biz_content") or "{}", parse_float=Decimal)
    except ValueError as exc:
        raise AlipayGatewayError("40002", "isv.invalid-parameter", "biz_content不是合法的JSON") from exc
    if not isinstance(biz, dict):
        raise AlipayGatewayError("40002", "isv.invalid-parameter", "biz_content不是JSON对象")
    return biz


def _out_trade_no_of(params: dict) -> str:
    """The order a request is about, read leniently (for fault scope only)."""
    try:
        biz = json.loads(params.get("biz_content") or "{}")
    except ValueError:
        return ""
    return str(biz.get("out_trade_no") or "") if isinstance(biz, dict) else ""


def _checked_app(params: dict, methods, app: AlipayApp | None) -> AlipayApp:
    """The app (read by the caller) of a well-formed, correctly signed request for one of
    `methods`, or the error."""
    method = params.get("method", "")
    if not params.get("app_id"):
        raise AlipayGatewayError("40001", "isv.missing-app-id", "缺少AppID参数")
    if app is None:
        raise AlipayGatewayError("40002", "isv.invalid-app-id", "无效的AppID参数")
    if not method:
        raise AlipayGatewayError("40001", "isv.missing-method", "缺少方法名参数")
    if method not in methods:
        raise AlipayGatewayError("40002", "isv.invalid-method", "不存在的方法名")
    if not params.get("sign"):
        raise AlipayGatewayError("40001", "isv.missing-signature", "缺少签名参数")
    if params.get("sign_type", "RSA2") != "RSA2":
        raise AlipayGatewayError("40002", "isv.invalid-signature-type", "无效的签名类型")
    if not proto.request_signature_valid(params, app.app_public_key_pem):
        raise AlipayGatewayError("40002", "isv.invalid-signature", "验签出错")
    return app


def alipay_gateway_handle(params: dict[str, str], *, urls: GatewayUrls) -> GatewayAnswer:
    """One gateway request (GET query string or POST form, already decoded) to its answer."""
    method = params.get("method", "")
    node_name = proto.response_node_name(method) if method in METHODS else "error_response"
    app = None
    delay = 0.0
    try:
        out_trade_no = _out_trade_no_of(params)
        app, armed = services.alipay_app_and_armed(app_id=params.get("app_id", ""), out_trade_no=out_trade_no)
        if app is not None and method in METHODS:
            fault = _error_5xx_take(app, method, out_trade_no, armed)
            if fault is not None:
                status = int((fault.params or {}).get("status", 502))
                return GatewayAnswer(node_name=node_name, node={}, signing_key=None, http_status=status)
        app = _checked_app(params, METHODS, app)
        try:
            node = METHODS[method](GatewayCall(app, _biz_content(params), urls, params, armed))
        except _Late as late:
            node, delay = late.node, late.seconds
    except AlipayGatewayError as exc:
        node = exc.node()
    except Exception:
        logger.exception("sandbox alipay gateway failed on %s", method)
        node = AlipayGatewayError("20000", "isp.unknow-error", "系统繁忙").node()
    return GatewayAnswer(
        node_name=node_name,
        node=node,
        signing_key=app.alipay_private_key_pem if app else None,
        delay_seconds=delay,
    )


# --- the cashier (page.pay / wap.pay) ------------------------------------------------------------


def is_cashier_request(params: dict) -> bool:
    return params.get("method", "") in CASHIER_METHODS


@dataclass(frozen=True)
class CashierAnswer:
    trade: AlipayTrade | None
    error: AlipayGatewayError | None = None
    http_status: int = 200


def alipay_cashier_open(params: dict[str, str]) -> CashierAnswer:
    """The browser arrives with the signed `page.pay` / `wap.pay` query: check it as the gateway
    does, create the trade (or find the same one again) and let the payer see it.

    A paid or closed trade opened again, or the same out_trade_no with another amount, is refused
    as Alipay's cashier refuses it. ERROR_5XX applies here too (operation = the method name).
    """
    method = params.get("method", "")
    try:
        out_trade_no = _out_trade_no_of(params)
        app, armed = services.alipay_app_and_armed(app_id=params.get("app_id", ""), out_trade_no=out_trade_no)
        if app is not None and _error_5xx_take(app, method, out_trade_no, armed) is not None:
            return CashierAnswer(trade=None, error=AlipayGatewayError("20000", "isp.unknow-error", "系统繁忙"),
                                 http_status=502)  # fmt: skip
        app = _checked_app(params, CASHIER_METHODS, app)
        biz = _biz_content(params)
        product_code = str(biz.get("product_code") or CASHIER_METHODS[method])
        if product_code != CASHIER_METHODS[method]:
            raise business_error("ACQ.INVALID_PARAMETER", "参数无效: product_code")
        out_trade_no = str(biz.get("out_trade_no") or "").strip()
        subject = str(biz.get("subject") or "").strip()
        amount = proto.parse_amount(biz.get("total_amount"))
        if not out_trade_no or len(out_trade_no) > 64:
            raise business_error("ACQ.INVALID_PARAMETER", "参数无效: out_trade_no")
        if not subject or len(subject) > 256:
            raise business_error("ACQ.INVALID_PARAMETER", "参数无效: subject")
        if amount is None:
            raise business_error("ACQ.INVALID_PARAMETER", "参数无效: total_amount")
        if amount > proto.MAX_TOTAL_AMOUNT:
            raise business_error("ACQ.TOTAL_FEE_EXCEED", "订单金额超过限额")
        trade = services.alipay_trade_precreate(
            app=app,
            out_trade_no=out_trade_no,
            total_amount=amount,
            subject=subject,
            body=str(biz.get("body") or "")[:128],
            notify_url=params.get("notify_url", ""),
            timeout_minutes=proto.parse_timeout_express(str(biz.get("timeout_express") or "")),
            time_expire=proto.parse_time(str(biz.get("time_expire") or "")),
            product_code=product_code,
            return_url=params.get("return_url", ""),
        )
        return CashierAnswer(trade=services.alipay_trade_cashier_open(trade=trade))
    except AlipayGatewayError as exc:
        return CashierAnswer(trade=None, error=exc, http_status=400)


def alipay_return_url(trade: AlipayTrade, *, now: datetime | None = None) -> str:
    """Where the cashier sends the payer after paying: return_url plus the signed return fields
    (PROVIDERS.md A1), signed as a notification is. Empty when the trade has no return_url."""
    if not trade.return_url or trade.status != AlipayTradeStatus.TRADE_SUCCESS:
        return ""
    app = trade.app
    fields = {
        "charset": "utf-8",
        "out_trade_no": trade.out_trade_no,
        "method": RETURN_METHODS.get(trade.product_code, "alipay.trade.page.pay.return"),
        "total_amount": proto.format_amount(trade.total_amount),
        "trade_no": trade.trade_no,
        "auth_app_id": app.app_id,
        "version": "1.0",
        "app_id": app.app_id,
        "seller_id": app.seller_id,
        "timestamp": proto.format_time(now or timezone.now()),
    }
    form = proto.notification_form(fields, app.alipay_private_key_pem)
    separator = "&" if "?" in trade.return_url else "?"
    return f"{trade.return_url}{separator}{urlencode(form)}"
