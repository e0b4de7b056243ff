"""Routing through the merchant API against sandbox Alipay accounts (issue 5)."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from apps.channels.models import ChannelCall
from apps.orders.models import Order
from apps.payments.models import Charge, ChargeStatus
from apps.routing.models import CircuitBreaker, DailyCounter, RoutingDecision
from apps.sandbox.faults import fault_clear, fault_set
from apps.sandbox.models import FaultKind
from tests.support import MerchantClient, assert_error, charge_payload

pytestmark = pytest.mark.usefixtures("celery_eager")


def luhn(prefix: str, length: int = 16) -> str:
    """A valid card number starting with `prefix`."""
    body = prefix + "0" * (length - len(prefix) - 1)
    for check in "0123456789":
        digits = body + check
        total = sum(
            (d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 else d for i, d in enumerate(int(c) for c in reversed(digits))
        )
        if total % 10 == 0:
            return digits
    raise AssertionError


def create(api, merchant, order_no, amount=100, **overrides):
    return api.post("/v1/charges", charge_payload(merchant, order_no=order_no, amount=amount, **overrides))


def served_by(response) -> int:
    assert response.status_code == 200, response.content
    return Charge.objects.get(public_id=response.json()["id"]).channel_account_id


def test_a_daily_cap_reached_mid_run_moves_traffic_to_the_next_account(api, merchant, sandbox_accounts):
    first, _ = sandbox_accounts("Capped", priority=1, daily_amount_cap=300)
    second, _ = sandbox_accounts("Spare", priority=2)

    served = [served_by(create(api, merchant, f"cap{i}")) for i in range(5)]

    assert served == [first.pk] * 3 + [second.pk] * 2
    assert DailyCounter.objects.get(account=first).amount == 300
    last = RoutingDecision.objects.get(charge_id=Charge.objects.get(order__order_no="cap4").public_id)
    removed = {c["account_id"]: c["removed"] for c in last.candidates}
    assert removed == {first.pk: "daily_amount_cap", second.pk: None}
    assert last.winner_id == second.pk


def test_concurrent_charges_never_exceed_the_daily_cap(merchant, sandbox_accounts):
    first, _ = sandbox_accounts("Capped", priority=1, daily_amount_cap=500, daily_count_cap=100)
    second, _ = sandbox_accounts("Spare", priority=2)
    barrier = threading.Barrier(12)
    codes = []

    def send(i):
        try:
            client = MerchantClient(Client(), merchant)
            barrier.wait()
            codes.append(
                client.post("/v1/charges", charge_payload(merchant, order_no=f"race{i}", amount=100)).status_code
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert codes == [200] * 12
    on_first = Charge.objects.filter(channel_account=first).count()
    assert on_first == 5  # exactly the cap: 5 × 100 = 500
    assert Charge.objects.filter(channel_account=second).count() == 7
    counter = DailyCounter.objects.get(account=first)
    assert (counter.amount, counter.count) == (500, 5)


def test_an_account_answering_5xx_trips_the_breaker_and_traffic_fails_over(api, merchant, sandbox_accounts):
    broken, broken_app = sandbox_accounts(
        "Broken", priority=1, breaker_min_calls=2, breaker_error_rate="0.5", breaker_cooldown_seconds=60
    )
    healthy, _ = sandbox_accounts("Healthy", priority=2)
    fault_set(
        provider="alipay",
        kind=FaultKind.ERROR_5XX,
        merchant_ref=broken_app.app.app_id,
        params={"operations": ["alipay.trade.precreate"]},
    )

    # Two charges: each tries the broken account first, gets a 5xx, and fails over.
    for i in range(2):
        response = create(api, merchant, f"brk{i}")
        assert served_by(response) == healthy.pk
        assert response.json()["credential"]["alipay_qr"]
        record = RoutingDecision.objects.get(charge_id=response.json()["id"])
        outcomes = [(a["account_id"], a["outcome"]) for a in record.attempts]
        assert outcomes == [(broken.pk, "chosen"), (broken.pk, "failed"), (healthy.pk, "ok")]
        assert record.attempts[1]["code"].startswith("http_5")
        charge = Charge.objects.get(public_id=response.json()["id"])
        assert charge.status == ChargeStatus.PENDING
        assert list(charge.transitions.order_by("id").values_list("by", flat=True)) == ["api", "routing", "provider"]
        assert record.winner_id == healthy.pk
    assert ChannelCall.objects.filter(account=broken, outcome="unavailable").count() == 2

    # The third sees 2 faults in 2 calls: the breaker opens and the broken account is not tried.
    response = create(api, merchant, "brk2")
    assert served_by(response) == healthy.pk
    record = RoutingDecision.objects.get(charge_id=response.json()["id"])
    assert {c["account_id"]: c["removed"] for c in record.candidates}[broken.pk] == "circuit_open"
    assert [a["outcome"] for a in record.attempts] == ["chosen", "ok"]
    assert CircuitBreaker.objects.get(account=broken).state == "open"
    assert ChannelCall.objects.filter(account=broken).count() == 2

    # The provider recovers; after the cool-down the breaker half-opens and its probe's success closes it.
    fault_clear(provider="alipay")
    CircuitBreaker.objects.filter(account=broken).update(changed_at=timezone.now() - timedelta(seconds=61))
    assert served_by(create(api, merchant, "brk3")) == broken.pk  # the probe
    breaker = CircuitBreaker.objects.get(account=broken)
    assert (breaker.state, breaker.reason, breaker.probes) == ("closed", "probe succeeded", 0)
    assert served_by(create(api, merchant, "brk4")) == broken.pk


def test_a_card_whose_bank_one_acquirer_serves_goes_there(api, merchant, sandbox_accounts):
    # No card-acquirer sandbox exists: bank_card accounts are sandbox Alipay apps whose policy maps
    # bank_card to Alipay's cashier product (provider_method), as docs/routing.md says.
    icbc, _ = sandbox_accounts(
        "ICBC acquirer", priority=5, methods=["bank_card"], banks=["ICBC"], provider_method="alipay_qr"
    )
    others, _ = sandbox_accounts(
        "CCB+BOC acquirer", priority=1, methods=["bank_card"], banks=["CCB", "BOC"], provider_method="alipay_qr"
    )
    number = luhn("622202")  # ICBC in the BIN table

    response = create(api, merchant, "card1", channel="bank_card", extra={"card_number": number, "note": "kept"})

    assert served_by(response) == icbc.pk
    body = response.json()
    assert body["extra"] == {"note": "kept"}
    assert body["credential"]["bank_card"]
    charge = Charge.objects.get(public_id=body["id"])
    assert charge.extra == {"note": "kept"}
    record = RoutingDecision.objects.get(charge_id=charge.public_id)
    assert (record.card_bin, record.card_last4, record.card_bank) == ("622202", number[-4:], "ICBC")
    assert len(record.card_fingerprint) == 64 and number not in record.card_fingerprint
    assert {c["account_id"]: c["removed"] for c in record.candidates} == {icbc.pk: None, others.pk: "bank_unsupported"}
    with connection.cursor() as cursor:  # the number is nowhere in the charge or decision tables
        cursor.execute(
            "SELECT count(*) FROM payments_charge c, routing_routingdecision d "
            "WHERE c.extra::text LIKE %s OR d.candidates::text LIKE %s OR d.attempts::text LIKE %s",
            [f"%{number}%"] * 3,
        )
        assert cursor.fetchone()[0] == 0


def test_a_card_no_acquirer_serves_is_refused_with_no_charge(api, merchant, sandbox_accounts):
    sandbox_accounts("ICBC acquirer", priority=1, methods=["bank_card"], banks=["ICBC"], provider_method="alipay_qr")

    response = create(api, merchant, "card2", channel="bank_card", extra={"card_number": luhn("436742")})  # CCB

    error = assert_error(response, 402, code="channel_unavailable", param="channel")
    assert "bank_unsupported" in error["message"]
    assert (Charge.objects.count(), Order.objects.count(), RoutingDecision.objects.count()) == (0, 0, 0)
    assert DailyCounter.objects.count() == 0


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        ({"max_amount": 99}, "above_maximum"),
        ({"min_amount": 101}, "below_minimum"),
        ({"daily_count_cap": 0}, "daily_count_cap"),
    ],
    ids=["above-max", "below-min", "count-cap"],
)
def test_no_eligible_account_is_a_clear_error_and_no_charge_row(api, merchant, sandbox_accounts, policy, reason):
    sandbox_accounts("Only", priority=1, **policy)

    response = create(api, merchant, "none1", amount=100)

    error = assert_error(response, 402, code="channel_unavailable", param="channel")
    assert error["type"] == "channel_error" and reason in error["message"]
    assert (Charge.objects.count(), Order.objects.count(), RoutingDecision.objects.count()) == (0, 0, 0)


def test_bank_card_without_a_card_number_is_invalid(api, merchant, sandbox_accounts):
    sandbox_accounts("ICBC acquirer", priority=1, methods=["bank_card"], banks=["*"], provider_method="alipay_qr")
    assert_error(
        create(api, merchant, "card3", channel="bank_card"), 400, code="card_invalid", param="extra[card_number]"
    )
    assert_error(
        create(api, merchant, "card4", channel="bank_card", extra={"card_number": "4111111111111112"}),
        400,
        code="card_invalid",
    )
    assert Charge.objects.count() == 0
