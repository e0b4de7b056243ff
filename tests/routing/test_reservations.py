"""A charge that closes or fails unpaid gives its daily-cap reservation back, exactly once."""

import threading

import pytest
import requests
from django.db import connection

from apps.channels.adapters.base import PaymentResult, PaymentStatus
from apps.payments.models import Charge, ChargeStatus
from apps.payments.queries import charge_close_locally
from apps.payments.services import charge_apply_provider_result
from apps.routing.models import DailyCounter, RoutingDecision
from apps.routing.services import route_release
from apps.sandbox.faults import fault_set
from apps.sandbox.models import FaultKind
from tests.support import charge_payload

pytestmark = pytest.mark.usefixtures("celery_eager")


def create(api, merchant, order_no: str, amount: int) -> dict:
    response = api.post("/v1/charges", charge_payload(merchant, order_no=order_no, amount=amount))
    assert response.status_code == 200, response.content
    return response.json()


def usage(account) -> tuple[int, int]:
    counter = DailyCounter.objects.get(account=account)
    return counter.amount, counter.count


def test_a_charge_closed_unpaid_gives_its_reservation_back_once(api, merchant, sandbox_accounts):
    account, _ = sandbox_accounts("Capped", priority=1, daily_amount_cap=10_000)
    kept = create(api, merchant, "keep1", 100)
    reversed_ = create(api, merchant, "reverse1", 250)
    expired = create(api, merchant, "expire1", 50)
    assert usage(account) == (400, 3)

    requests.get(reversed_["credential"]["alipay_qr"], timeout=10)  # scanned: the trade exists at Alipay
    response = api.post(f"/v1/charges/{reversed_['id']}/reverse", {})  # closed at the provider, then here
    assert response.status_code == 200, response.content
    assert Charge.objects.get(public_id=reversed_["id"]).status == ChargeStatus.CLOSED
    assert usage(account) == (150, 2)
    record = RoutingDecision.objects.get(charge_id=reversed_["id"])
    assert record.released_at is not None and (record.reserved_account_id, record.reserved_day) == (None, None)
    assert route_release(charge_id=reversed_["id"]) is False  # once only
    assert usage(account) == (150, 2)

    # Expiry: the provider confirmed the close, the charge closes here.
    charge = Charge.objects.get(public_id=expired["id"])
    charge_close_locally(charge_id=charge.pk, by="expiry", request_id="")
    assert usage(account) == (100, 1)
    charge_close_locally(charge_id=charge.pk, by="expiry", request_id="")  # already closed: nothing more
    assert usage(account) == (100, 1)

    # The provider says the last one closed (a query or a notification): its 100 come back too.
    charge = Charge.objects.get(public_id=kept["id"])
    result = PaymentResult(out_trade_no=kept["id"], status=PaymentStatus.CLOSED)
    charge_apply_provider_result(charge_id=charge.pk, result=result, by="query", request_id="")
    assert Charge.objects.get(pk=charge.pk).status == ChargeStatus.CLOSED
    assert usage(account) == (0, 0)
    charge_apply_provider_result(charge_id=charge.pk, result=result, by="query", request_id="")
    assert usage(account) == (0, 0)


def test_a_charge_failing_after_its_attempt_gave_the_reservation_back_gives_nothing_more(
    api, merchant, sandbox_accounts
):
    account, provider_app = sandbox_accounts("Only", priority=1)
    create(api, merchant, "ok1", 100)
    fault_set(
        provider="alipay",
        kind=FaultKind.ERROR_5XX,
        merchant_ref=provider_app.app.app_id,
        params={"operations": ["alipay.trade.precreate"]},
    )

    response = api.post("/v1/charges", charge_payload(merchant, order_no="fail1", amount=300))

    assert response.status_code == 402, response.content
    failed = Charge.objects.get(order__order_no="fail1")
    assert failed.status == ChargeStatus.FAILED
    assert usage(account) == (100, 1)  # the attempt gave its 300 back; the failure gave nothing more
    record = RoutingDecision.objects.get(charge_id=failed.public_id)
    assert record.released_at is not None and record.reserved_account_id is None


def test_concurrent_releases_of_one_charge_give_back_once(api, merchant, sandbox_accounts):
    account, _ = sandbox_accounts("Capped", priority=1, daily_amount_cap=10_000)
    create(api, merchant, "keep2", 100)
    closing = create(api, merchant, "close2", 250)
    barrier = threading.Barrier(8)
    answers = []

    def release():
        try:
            barrier.wait()
            answers.append(route_release(charge_id=closing["id"]))
        finally:
            connection.close()

    threads = [threading.Thread(target=release) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(answers) == [False] * 7 + [True]
    assert usage(account) == (100, 1)
