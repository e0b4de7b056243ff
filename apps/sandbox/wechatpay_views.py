"""HTTP for the WeChat Pay sandbox: the API v3 endpoints, the payer's pay page, the JSAPI bridge, faults."""

import json

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from apps.core import crypto
from apps.sandbox import wechatpay_protocol as proto
from apps.sandbox import wechatpay_selectors as selectors
from apps.sandbox import wechatpay_services as services
from apps.sandbox.faults import fault_set
from apps.sandbox.models import WechatpayTradeState, WechatpayTransaction
from apps.sandbox.payer import not_found, payer_choice, wants_json
from apps.sandbox.wechatpay_gateway import Call, sleep_for, wechatpay_gateway_handle


def _raw_target(request: HttpRequest) -> str:
    """The request target as the client sent (and signed) it, from `/v3/` on."""
    raw = request.META.get("RAW_URI") or request.META.get("REQUEST_URI") or request.get_full_path()
    return raw[raw.index("/v3/") :]


@csrf_exempt
@require_http_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
def wechatpay_api(request: HttpRequest, rest: str) -> HttpResponse:
    """Every `/v3/…` call: verified, handled, and answered with the five `Wechatpay-*` headers."""
    full = request.get_full_path()
    gateway_url = request.build_absolute_uri(full[: full.index("/v3/")])
    call = Call(
        method=request.method,
        target=_raw_target(request),
        path=request.path[request.path.index("/v3/") :],
        query={key: request.GET.get(key, "") for key in request.GET},
        body=request.body,
        gateway_url=gateway_url,
        pay_url_for=lambda token: request.build_absolute_uri(reverse("sandbox:wechatpay-pay", args=[token])),
    )
    answer = wechatpay_gateway_handle(call, authorization=request.headers.get("Authorization", ""))
    sleep_for(answer)  # a timeout fault: the work is done (and committed), the answer comes too late
    body = answer.body()
    response = HttpResponse(body, status=answer.status, content_type=answer.content_type)
    if not body:
        del response["Content-Type"]  # WeChat's 204 has no body and no type (the SDK then returns b"")
    if answer.merchant is not None:
        headers = proto.signature_headers(
            body,
            private_key_pem=answer.merchant.platform_private_key_pem,
            serial=answer.merchant.public_key_id,
        )
        for name, value in headers.items():
            response[name] = value
    response["Request-ID"] = proto.new_nonce()
    return response


def _transaction_view(trade: WechatpayTransaction) -> dict:
    return {
        "mchid": trade.merchant.mchid,
        "appid": trade.appid,
        "out_trade_no": trade.out_trade_no,
        "transaction_id": trade.transaction_id,
        "trade_type": trade.trade_type,
        "trade_state": trade.trade_state,
        "total": trade.total,
        "amount": proto.yuan(trade.total),
        "refunded": trade.refunded,
        "description": trade.description,
        "success_time": proto.format_time(trade.success_time),
    }


@csrf_exempt
@require_http_methods(["GET", "POST"])
def wechatpay_pay(request: HttpRequest, token: str) -> HttpResponse:
    """The payer's page behind code_url / h5_url (or a prepay_id). POST result=success|fail settles."""
    trade = selectors.wechatpay_transaction_get_by_token(token=token)
    if trade is None:
        return not_found(request, template="sandbox/wechatpay_pay.html", what="order")
    changed = None
    if request.method == "POST":
        succeed, refusal = payer_choice(request)
        if refusal:
            return refusal
        trade, changed = services.wechatpay_transaction_settle(trade=trade, succeed=succeed)
    else:
        trade = services.wechatpay_transaction_refresh(trade=trade)
    view = _transaction_view(trade)
    if wants_json(request):
        return JsonResponse({**view, "changed": changed})
    return render(
        request,
        "sandbox/wechatpay_pay.html",
        {"view": view, "changed": changed, "open": trade.trade_state == WechatpayTradeState.NOTPAY},
    )


@require_GET
def wechatpay_jsapi(request: HttpRequest) -> HttpResponse:
    """Stands in for `WeixinJSBridge.invoke("getBrandWCPayRequest", credential)` in WeChat's browser.

    Takes the JSAPI credential as query parameters, checks it as WeChat does (the appid, and
    paySign over `appId\\ntimeStamp\\nnonceStr\\npackage\\n` with the merchant's key), and leads
    the payer to the pay page.
    """
    params = {key: request.GET.get(key, "") for key in ("appId", "timeStamp", "nonceStr", "package", "signType",
                                                         "paySign")}  # fmt: skip
    prepay_id = params["package"].removeprefix("prepay_id=")
    trade = selectors.wechatpay_transaction_get_by_token(token=prepay_id) if prepay_id else None
    if trade is None or params["appId"] != trade.appid or params["signType"] != "RSA":
        return JsonResponse({"err_msg": "get_brand_wcpay_request:fail", "detail": "unknown prepay_id or appId"},
                            status=400)  # fmt: skip
    message = "".join(f"{params[k]}\n" for k in ("appId", "timeStamp", "nonceStr", "package")).encode()
    if not crypto.rsa_verify(trade.merchant.merchant_public_key_pem, message, params["paySign"]):
        return JsonResponse({"err_msg": "get_brand_wcpay_request:fail", "detail": "paySign does not verify"},
                            status=400)  # fmt: skip
    return HttpResponseRedirect(reverse("sandbox:wechatpay-pay", args=[trade.pay_token]))


@csrf_exempt
@require_http_methods(["POST"])
def wechatpay_fault_create(request: HttpRequest) -> HttpResponse:
    """Console (and tests over HTTP): inject a fault for a merchant (`mchid`) or one payment.

    JSON body: `kind` (a FaultKind value), `mchid`, optional `out_trade_no`, `params`, `remaining`.
    """
    try:
        data = json.loads(request.body or b"{}")
        created = fault_set(
            provider=services.PROVIDER,
            kind=str(data["kind"]),
            merchant_ref=str(data.get("mchid") or ""),
            out_trade_no=str(data.get("out_trade_no") or ""),
            params=data.get("params") if isinstance(data.get("params"), dict) else {},
            remaining=data.get("remaining"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        return JsonResponse({"error": f"bad fault: {exc}"}, status=400)
    return JsonResponse({"id": created.id, "kind": created.kind, "remaining": created.remaining}, status=201)
