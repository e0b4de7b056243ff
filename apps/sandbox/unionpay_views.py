"""HTTP for the UnionPay sandbox: the gateway's .do endpoints, the payer's cashier and a console."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.sandbox import unionpay_services as services
from apps.sandbox.models import UnionPayMerchant, UnionPayTxn, UnionPayTxnStatus
from apps.sandbox.payer import not_found, payer_choice, wants_json
from apps.sandbox.unionpay_gateway import unionpay_gateway_handle


def _form(request: HttpRequest) -> dict[str, str]:
    return {key: request.POST.get(key, "") for key in request.POST}


def _sync_answer(operation: str, request: HttpRequest) -> HttpResponse:
    answer = unionpay_gateway_handle(operation, _form(request))
    if answer.status != 200:
        return HttpResponse(b"Service Unavailable", status=answer.status, content_type="text/plain")
    return HttpResponse(answer.text().encode("utf-8"), content_type="text/plain;charset=UTF-8")


@csrf_exempt
@require_POST
def back_trans(request: HttpRequest) -> HttpResponse:
    return _sync_answer("back", request)


@csrf_exempt
@require_POST
def query_trans(request: HttpRequest) -> HttpResponse:
    return _sync_answer("query", request)


@csrf_exempt
@require_POST
def file_transfer(request: HttpRequest) -> HttpResponse:
    return _sync_answer("file", request)


def _txn_view(txn: UnionPayTxn) -> dict:
    return {
        "merId": txn.merchant.mer_id,
        "orderId": txn.order_id,
        "txnTime": txn.txn_time,
        "txnAmt": txn.txn_amt,
        "queryId": txn.query_id,
        "status": txn.status,
        "origRespCode": txn.orig_resp_code,
        "settleDate": txn.settle_date.strftime("%m%d") if txn.settle_date else "",
    }


def _front_return_form(txn: UnionPayTxn) -> dict[str, str] | None:
    """What the browser posts back to frontUrl once the payment is final (the notification's fields)."""
    if not txn.front_url or not txn.is_final:
        return None
    if txn.status == UnionPayTxnStatus.SUCCESS:
        fields = services.notification_fields(txn)
    else:
        fields = {**services.notification_fields(txn), "respCode": txn.orig_resp_code, "respMsg": txn.orig_resp_msg}
    return services.unionpay_sign(fields)


@csrf_exempt
@require_POST
def front_trans(request: HttpRequest) -> HttpResponse:
    """frontTransReq.do: the browser's auto-submitted form; answers the cashier page.

    With `Accept: application/json` (tests) it answers `{"pay_url": …}` instead of the page.
    """
    answer = unionpay_gateway_handle("front", _form(request))
    if answer.status != 200:
        return HttpResponse(b"Service Unavailable", status=answer.status, content_type="text/plain")
    txn = answer.txn
    if txn is None:
        error = {"respCode": answer.fields.get("respCode", ""), "respMsg": answer.fields.get("respMsg", "")}
        if wants_json(request):
            return JsonResponse(error, status=400, json_dumps_params={"ensure_ascii": False})
        return render(request, "sandbox/unionpay_pay.html", {"error": error}, status=400)
    pay_url = request.build_absolute_uri(reverse("sandbox:unionpay-pay", args=[txn.pay_token]))
    if wants_json(request):
        return JsonResponse({**_txn_view(txn), "pay_url": pay_url})
    return render(request, "sandbox/unionpay_pay.html", {"txn": txn, "view": _txn_view(txn), "pay_url": pay_url})


@csrf_exempt
@require_http_methods(["GET", "POST"])
def pay(request: HttpRequest, token: str) -> HttpResponse:
    """The cashier. POST result=success|fail settles (a test posts here directly)."""
    txn = UnionPayTxn.objects.select_related("merchant").filter(pay_token=token).first()
    if txn is None:
        return not_found(request, template="sandbox/unionpay_pay.html", what="transaction")
    changed = None
    if request.method == "POST":
        succeed, refusal = payer_choice(request)
        if refusal:
            return refusal
        txn, changed = services.unionpay_consume_settle(txn=txn, succeed=succeed)
    if wants_json(request):
        return JsonResponse({**_txn_view(txn), "changed": changed})
    context = {"txn": txn, "view": _txn_view(txn), "changed": changed, "front_return": _front_return_form(txn)}
    return render(request, "sandbox/unionpay_pay.html", context)


@require_GET
def console(request: HttpRequest) -> HttpResponse:
    """Merchants and recent transactions, with links to the cashier of unfinished consumes."""
    context = {
        "merchants": list(UnionPayMerchant.objects.order_by("-created_at")[:100]),
        "txns": list(UnionPayTxn.objects.select_related("merchant").order_by("-created_at", "-id")[:50]),
    }
    return render(request, "sandbox/unionpay_console.html", context)
