"""HTTP for the sandbox: Alipay's gateway and cashier, the payer's pay page, bill files, a console."""

import time

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from apps.sandbox import alipay_bill, selectors, services
from apps.sandbox import alipay_protocol as proto
from apps.sandbox.alipay_gateway import (
    GatewayUrls,
    alipay_cashier_open,
    alipay_gateway_handle,
    alipay_return_url,
    is_cashier_request,
)
from apps.sandbox.models import AlipayTrade
from apps.sandbox.payer import not_found, payer_choice, wants_json


@csrf_exempt
@require_http_methods(["GET", "POST"])
def alipay_gateway(request: HttpRequest) -> HttpResponse:
    """`gateway.do`. The SDK sends everything in the query string; a form body is accepted too.

    The browser methods (page.pay, wap.pay) get the cashier page; every other method JSON.
    """
    params = {key: request.GET.get(key, "") for key in request.GET}
    if request.method == "POST":
        params.update({key: request.POST.get(key, "") for key in request.POST})
    if is_cashier_request(params):
        return _alipay_cashier(request, params)
    urls = GatewayUrls(
        pay=lambda token: request.build_absolute_uri(reverse("sandbox:alipay-pay", args=[token])),
        absolute=request.build_absolute_uri,
    )
    answer = alipay_gateway_handle(params, urls=urls)
    if answer.delay_seconds:
        time.sleep(answer.delay_seconds)  # a timeout fault: the work is done, the answer comes too late
    # 200 but under the ERROR_5XX fault: python-alipay-sdk raises on any other status.
    content_type = "application/json;charset=utf-8" if answer.http_status == 200 else "text/html;charset=utf-8"
    return HttpResponse(answer.text().encode("utf-8"), status=answer.http_status, content_type=content_type)


def _alipay_cashier(request: HttpRequest, params: dict) -> HttpResponse:
    answer = alipay_cashier_open(params)
    if answer.trade is None:
        context = {"error": answer.error.node() if answer.error else {}}
        return render(request, "sandbox/alipay_pay.html", context, status=answer.http_status)
    trade = answer.trade
    return render(
        request,
        "sandbox/alipay_pay.html",
        {"trade": trade, "view": _trade_view(trade), "pay_url": reverse("sandbox:alipay-pay", args=[trade.pay_token])},
    )


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


@csrf_exempt
@require_http_methods(["GET", "POST"])
def alipay_pay(request: HttpRequest, token: str) -> HttpResponse:
    """The payer's page behind the QR code. GET counts as the scan; POST result=success|fail settles."""
    trade = selectors.alipay_trade_get_by_token(pay_token=token)
    if trade is None:
        return not_found(request, template="sandbox/alipay_pay.html", what="trade")
    changed = None
    if request.method == "POST":
        succeed, refusal = payer_choice(request)
        if refusal:
            return refusal
        trade, changed = services.alipay_trade_settle(trade=trade, succeed=succeed)
    else:
        trade = services.alipay_trade_scan(trade=trade)
    # A cashier trade (page.pay / wap.pay) sends the payer back to return_url once paid.
    return_url = alipay_return_url(trade) if request.method == "POST" else ""
    if wants_json(request):
        return JsonResponse({**_trade_view(trade), "changed": changed, "return_url": return_url})
    if return_url:
        return redirect(return_url)
    return render(request, "sandbox/alipay_pay.html", {"trade": trade, "view": _trade_view(trade), "changed": changed})


@require_GET
def alipay_bill_file(request: HttpRequest) -> HttpResponse:
    """The zip behind `bill_download_url`, generated from the sandbox's records as it is asked for."""
    link = alipay_bill.bill_link_read(request.GET.get("bill", ""))
    app = selectors.alipay_app_get(app_id=link[0]) if link else None
    if app is None:
        raise Http404("the download link is invalid or has expired")
    name, content = alipay_bill.bill_zip(app=app, bill_date=link[1])
    response = HttpResponse(content, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """The console: sandbox apps and recent trades, with links to their pay pages."""
    return render(
        request,
        "sandbox/index.html",
        {"apps": selectors.alipay_apps_list(), "trades": selectors.alipay_trades_recent(limit=50)},
    )
