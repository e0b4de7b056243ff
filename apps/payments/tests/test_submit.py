"""Phase 3 is optimistic: it moves the charge only from the state phase 1 committed."""

import pytest
from moneyed import Money

from apps.channels.calllog import channel_call_record
from apps.channels.models import CallOperation, CallOutcome, ChannelCall
from apps.core.db import held_writes
from apps.payments import services
from apps.payments.models import Charge, ChargeStatus, ChargeTransition

pytestmark = pytest.mark.django_db


def _opened(merchant, account) -> Charge:
    params = services.ChargeParams(
        order_no="o-submit", channel="alipay_qr", amount=Money(100, "CNY"), client_ip="127.0.0.1",
        subject="s", body="b",
    )  # fmt: skip
    return services.charge_open(app=merchant.app, livemode=False, params=params, account=account, request_id="r1")


def test_submit_moves_a_created_charge_to_pending_with_one_transition(merchant, unreachable_alipay_account):
    charge = _opened(merchant, unreachable_alipay_account)

    submitted = services.charge_submit(
        charge=charge, credential={"alipay_qr": "u"}, transaction_no="t1", request_id="r2"
    )

    stored = Charge.objects.get(pk=charge.pk)
    assert submitted.status == stored.status == ChargeStatus.PENDING
    assert stored.credential == {"alipay_qr": "u"} and stored.transaction_no == "t1"
    moves = list(ChargeTransition.objects.filter(charge=charge).values_list("source", "target", "by"))
    assert moves == [("", "created", "api"), ("created", "pending", "provider")]


def test_submit_after_the_charge_moved_writes_nothing_and_returns_it_as_it_is(merchant, unreachable_alipay_account):
    charge = _opened(merchant, unreachable_alipay_account)
    Charge.objects.filter(pk=charge.pk).update(status=ChargeStatus.SUCCEEDED, transaction_no="paid-first")

    submitted = services.charge_submit(
        charge=charge, credential={"alipay_qr": "u"}, transaction_no="t1", request_id="r2"
    )

    stored = Charge.objects.get(pk=charge.pk)
    assert submitted.status == stored.status == ChargeStatus.SUCCEEDED
    assert stored.credential == {} and stored.transaction_no == "paid-first"
    assert ChargeTransition.objects.filter(charge=charge).count() == 1


def test_the_charge_and_its_audit_row_are_written_in_one_round_trip_each_phase(
    merchant, unreachable_alipay_account, django_assert_num_queries
):
    with django_assert_num_queries(1):  # the new order, the charge and its audit row
        charge = _opened(merchant, unreachable_alipay_account)
    with django_assert_num_queries(1):  # the conditional update with its audit row
        services.charge_submit(charge=charge, credential={"alipay_qr": "u"}, transaction_no="t1", request_id="r2")
    assert ChargeTransition.objects.filter(charge=charge).count() == 2


@pytest.mark.django_db(transaction=True)  # held writes ride only on autocommitted statements
def test_the_held_call_log_row_is_written_by_phase_3_even_when_the_charge_moved(merchant, unreachable_alipay_account):
    charge = _opened(merchant, unreachable_alipay_account)
    Charge.objects.filter(pk=charge.pk).update(status=ChargeStatus.SUCCEEDED)
    with held_writes():
        channel_call_record(
            provider="alipay", account_id=unreachable_alipay_account.pk, operation=CallOperation.CREATE_PAYMENT,
            outcome=CallOutcome.OK, http_status=200, result_code="", latency_ms=5, request_id="r2",
        )  # fmt: skip
        assert not ChannelCall.objects.exists()  # held
        services.charge_submit(charge=charge, credential={"alipay_qr": "u"}, transaction_no="t1", request_id="r2")
        assert ChannelCall.objects.filter(request_id="r2").count() == 1  # written by phase 3's statement
    assert Charge.objects.get(pk=charge.pk).status == ChargeStatus.SUCCEEDED
