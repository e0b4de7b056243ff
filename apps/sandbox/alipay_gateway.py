"""`gateway.do`: Alipay's open-platform entry point (PROVIDERS.md A1-A3).

Checks the request as Alipay does (app, method, RSA2 signature), dispatches to the service for
the method, and answers with the signed envelope. Every answer is HTTP 200, business errors
included: python-alipay-sdk raises on any other status.
"""

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from apps.sandbox import alipay_protocol as proto
from apps.sandbox import selectors, services
from apps.sandbox.exceptions import AlipayGatewayError, business_error
from apps.sandbox.models import AlipayApp, AlipayTrade, AlipayTradeStatus

logger = logging.getLogger(__name__)

SUCCESS = {"code": "10000", "msg": "Success"}


@dataclass(frozen=True)
class GatewayAnswer:
    node_name: str
    node: dict
    signing_key: str | None  # the app's "Alipay" private key; None for an unsigned answer

    def text(self) -> str:
        return proto.response_envelope(self.node_name, self.node, self.signing_key)


def _precreate(app: AlipayApp, biz: dict, pay_url_for: Callable[[str], str], params: dict) -> dict:
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
        notify_url=params.get("notify_url", ""),
        timeout_minutes=timeout_minutes,
        time_expire=time_expire,
    )
    return {**SUCCESS, "out_trade_no": trade.out_trade_no, "qr_code": pay_url_for(trade.pay_token)}


def _existing_trade(app: AlipayApp, biz: dict) -> AlipayTrade:
    """The trade named by trade_no / out_trade_no; a precreated trade exists only once scanned."""
    trade = selectors.alipay_trade_find(
        app=app, out_trade_no=str(biz.get("out_trade_no") or ""), trade_no=str(biz.get("trade_no") or "")
    )
    if trade is None or not trade.scanned:
        raise business_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
    return trade


def _query(app: AlipayApp, biz: dict, pay_url_for, params: dict) -> dict:
    trade = services.alipay_trade_refresh(trade=_existing_trade(app, biz))
    amount = proto.format_amount(trade.total_amount)
    paid = trade.status == AlipayTradeStatus.TRADE_SUCCESS
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
    return node


def _close(app: AlipayApp, biz: dict, pay_url_for, params: dict) -> dict:
    trade = services.alipay_trade_close(trade=_existing_trade(app, biz))
    return {**SUCCESS, "out_trade_no": trade.out_trade_no, "trade_no": trade.trade_no}


METHODS = {
    "alipay.trade.precreate": _precreate,
    "alipay.trade.query": _query,
    "alipay.trade.close": _close,
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


def alipay_gateway_handle(params: dict[str, str], *, pay_url_for: Callable[[str], str]) -> GatewayAnswer:
    """One gateway request (GET query string or POST form, already decoded) to its answer."""
    method = params.get("method", "")
    node_name = proto.response_node_name(method) if method in METHODS else "error_response"
    app = None
    try:
        if not params.get("app_id"):
            raise AlipayGatewayError("40001", "isv.missing-app-id", "缺少AppID参数")
        app = selectors.alipay_app_get(app_id=params["app_id"])
        if app is None:
            raise AlipayGatewayError("40002", "isv.invalid-app-id", "无效的AppID参数")
        if not method:
            raise AlipayGatewayError("40001", "isv.missing-method", "缺少方法名参数")
        if method not in METHODS:
            raise AlipayGatewayError("40002", "isv.invalid-method", "不存在的方法名")
        if not params.get("sign"):
            raise AlipayGatewayError("40001", "isv.missing-signature", "缺少签名参数")
        if params.get("sign_type", "RSA2") != "RSA2":
            raise AlipayGatewayError("40002", "isv.invalid-signature-type", "无效的签名类型")
        if not proto.request_signature_valid(params, app.app_public_key_pem):
            raise AlipayGatewayError("40002", "isv.invalid-signature", "验签出错")
        node = METHODS[method](app, _biz_content(params), pay_url_for, params)
    except AlipayGatewayError as exc:
        node = exc.node()
    except Exception:
        logger.exception("sandbox alipay gateway failed on %s", method)
        node = AlipayGatewayError("20000", "isp.unknow-error", "系统繁忙").node()
    return GatewayAnswer(node_name=node_name, node=node, signing_key=app.alipay_private_key_pem if app else None)
