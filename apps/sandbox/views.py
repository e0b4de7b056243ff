"""HTTP for the sandbox: Alipay's gateway, the payer's pay page, and a small console."""

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from apps.sandbox import alipay_protocol as proto
from apps.sandbox import selectors, services
from apps.sandbox.alipay_gateway import alipay_gateway_handle
from apps.sandbox.models import AlipayTrade


@csrf_exempt
@require_http_methods(["GET", "POST"])
def alipay_gateway(request: HttpRequest) -> HttpResponse:
    """`gateway.do`. The SDK sends everything in the query string; a form body is accepted too."""
    params = {key: request.GET.get(key, "") for key in request.GET}
    if request.method == "POST":
        params.update({key: request.POST.get(key, "") for key in request.POST})
    answer = alipay_gateway_handle(
        params, pay_url_for=lambda token: request.build_absolute_uri(reverse("sandbox:alipay-pay", args=[token]))
    )
    # Always 200: python-alipay-sdk raises on any other status, business errors included.
    return HttpResponse(answer.text().encode("utf-8"), content_type="application/json;charset=utf-8")


def _trade_view(trade: AlipayTrade) -> dict:
    return {
        "app_id": trade.app.app_id,
        "out_trade_no": trade.out_trade_no,
        "trade_no": trade.trade_no,
        "trade_status": trade.status,
        "total_amount": proto.format_amount(trade.total_amount),
        "subject": trade.subject,
        "paid_at": proto.format_time(trade.paid_at),
        "closed_at": proto.format_time(trade.closed_at),
    }


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


@csrf_exempt
@require_http_methods(["GET", "POST"])
def alipay_pay(request: HttpRequest, token: str) -> HttpResponse:
    """The payer's page behind the QR code. GET counts as the scan; POST result=success|fail settles."""
    trade = selectors.alipay_trade_get_by_token(pay_token=token)
    if trade is None:
        if _wants_json(request):
            return JsonResponse({"error": "no such trade"}, status=404)
        return render(request, "sandbox/alipay_pay.html", {"missing": True}, status=404)
    changed = None
    if request.method == "POST":
        result = request.POST.get("result", "")
        if result not in ("success", "fail"):
            if _wants_json(request):
                return JsonResponse({"error": "result must be success or fail"}, status=400)
            return HttpResponseBadRequest("result must be success or fail")
        trade, changed = services.alipay_trade_settle(trade=trade, succeed=result == "success")
    else:
        trade = services.alipay_trade_scan(trade=trade)
    if _wants_json(request):
        return JsonResponse({**_trade_view(trade), "changed": changed})
    return render(request, "sandbox/alipay_pay.html", {"trade": trade, "view": _trade_view(trade), "changed": changed})


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """The console: sandbox apps and recent trades, with links to their pay pages."""
    return render(
        request,
        "sandbox/index.html",
        {"apps": selectors.alipay_apps_list(), "trades": selectors.alipay_trades_recent(limit=50)},
    )
