"""Provider notifications: `/notify/<provider>/<account>/`.

The adapter verifies the provider's signature and states the result; the pay core applies it
once. The answer is in the provider's own format (Alipay: plain `success`). A notification that
cannot be applied is recorded as a NotificationProblem for the console, and not acknowledged,
so the provider keeps it until it can be.
"""

import logging

from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from apps.channels.adapters.base import NotificationInvalid, PaymentResult, RefundResult
from apps.channels.selectors import channel_account_get
from apps.channels.services import adapter_for
from apps.payments import refunds, selectors, services
from apps.payments.models import NotificationProblem

logger = logging.getLogger(__name__)


def _reply(reply) -> HttpResponse:
    return HttpResponse(reply.body, status=reply.status, content_type=reply.content_type)


def _problem(request, account, kind: str, reference: str, detail: str) -> None:
    logger.error("%s notification problem on account %s: %s %s (%s)", account.provider, account.pk, kind, reference,
                 detail)  # fmt: skip
    NotificationProblem.objects.create(
        kind=kind, provider=account.provider, channel_account=account, reference=reference[:64],
        detail=detail[:255], request_id=request.request_id,
    )  # fmt: skip


def _apply(request, account, result: PaymentResult | RefundResult) -> bool:
    by = f"{account.provider}:notification"
    if isinstance(result, RefundResult):
        refund = selectors.refund_for_notification(account_id=account.pk, out_refund_no=result.out_refund_no)
        if refund is None:
            _problem(request, account, NotificationProblem.Kind.UNKNOWN_REFUND, result.out_refund_no, "no such refund")
            return False
        refunds.refund_apply_provider_result(refund_id=refund.pk, result=result, by=by, request_id=request.request_id)
        return True
    charge = selectors.charge_for_notification(account_id=account.pk, out_trade_no=result.out_trade_no)
    if charge is None:
        _problem(request, account, NotificationProblem.Kind.UNKNOWN_CHARGE, result.out_trade_no, "no such charge")
        return False
    services.charge_apply_provider_result(charge_id=charge.pk, result=result, by=by, request_id=request.request_id)
    return True


@csrf_exempt
def provider_notification(request, provider: str, account_id: int):
    account = channel_account_get(account_id=account_id)
    if account is None or account.provider != provider or request.method != "POST":
        return HttpResponse(b"unknown channel account", status=404, content_type="text/plain")
    adapter = adapter_for(account)
    try:
        result = adapter.parse_notification(headers=dict(request.headers), body=request.body)
    except NotificationInvalid as exc:
        _problem(request, account, NotificationProblem.Kind.INVALID_SIGNATURE, "", str(exc))
        return _reply(adapter.notification_nack())
    if not _apply(request, account, result):
        return _reply(adapter.notification_nack())
    return _reply(adapter.notification_ack())
