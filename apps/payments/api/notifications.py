"""Provider notifications: `/notify/<provider>/<account>/`.

The adapter verifies the provider's signature and states the result; the pay core applies it
once. The answer is in the provider's own format (Alipay: plain `success`).
"""

import logging

from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from apps.channels.adapters.base import NotificationInvalid
from apps.channels.selectors import channel_account_get
from apps.channels.services import adapter_for
from apps.payments import selectors, services

logger = logging.getLogger(__name__)


def _reply(reply) -> HttpResponse:
    return HttpResponse(reply.body, status=reply.status, content_type=reply.content_type)


@csrf_exempt
def provider_notification(request, provider: str, account_id: int):
    account = channel_account_get(account_id=account_id)
    if account is None or account.provider != provider or request.method != "POST":
        return HttpResponse(b"unknown channel account", status=404, content_type="text/plain")
    adapter = adapter_for(account)
    try:
        result = adapter.parse_notification(headers=dict(request.headers), body=request.body)
    except NotificationInvalid as exc:
        logger.warning("rejected %s notification for account %s: %s", provider, account_id, exc)
        return _reply(adapter.notification_nack())
    charge = selectors.charge_for_notification(account_id=account.pk, out_trade_no=result.out_trade_no)
    if charge is None:
        logger.error("%s notification for unknown charge %r on account %s", provider, result.out_trade_no, account_id)
        return _reply(adapter.notification_nack())
    services.charge_apply_provider_result(
        charge_id=charge.pk, result=result, by=f"{provider}:notification", request_id=request.request_id
    )
    return _reply(adapter.notification_ack())
