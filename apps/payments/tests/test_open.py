"""Phase 1: a new order, the charge, its audit row and routing's decision record in one statement."""

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext
from moneyed import Money

from apps.channels.models import ChannelCall
from apps.core.db import insert
from apps.orders.models import Order
from apps.orders.services import order_new
from apps.payments import services
from apps.payments.models import Charge, ChargeStatus, ChargeTransition
from apps.routing.models import RoutingDecision


def _params(order_no: str, amount: int = 100) -> services.ChargeParams:
    return services.ChargeParams(
        order_no=order_no, channel="alipay_qr", amount=Money(amount, "CNY"), client_ip="127.0.0.1",
        subject="s", body="b",
    )  # fmt: skip


def _along(app_id: int | None):
    """Builds the decision record written with the charge (`app_id` None: one that cannot be)."""

    def record(charge_id: str) -> RoutingDecision:
        return RoutingDecision(
            charge_id=charge_id, app_id=app_id, livemode=False, method="alipay_qr", currency="CNY", amount=100
        )

    return record


def _open(merchant, account, order_no: str, along=None) -> Charge:
    return services.charge_open(
        app=merchant.app, livemode=False, params=_params(order_no), account=account, request_id="r1", along=along
    )


@pytest.mark.django_db
def test_a_new_order_its_charge_the_audit_row_and_the_record_along_are_one_statement(
    merchant, unreachable_alipay_account, django_assert_num_queries
):
    with django_assert_num_queries(1):
        charge = _open(merchant, unreachable_alipay_account, "open0001", along=_along(merchant.app.pk))

    stored = Charge.objects.select_related("order").get(pk=charge.pk)
    assert stored.status == ChargeStatus.CREATED and stored.order.order_no == "open0001"
    assert charge.order.pk == charge.order_id == stored.order_id  # the links point at the written rows
    moves = ChargeTransition.objects.filter(charge=charge).values_list("source", "target", "by")
    assert list(moves) == [("", "created", "api")]
    assert RoutingDecision.objects.get().charge_id == charge.public_id


@pytest.mark.django_db
def test_an_existing_open_order_with_the_same_amount_takes_the_charge(merchant, unreachable_alipay_account):
    order = insert(
        order_new(
            app=merchant.app, livemode=False, order_no="open0002", amount=Money(100, "CNY"), subject="s", body="b",
            request_id="",
        )
    )  # fmt: skip

    charge = _open(merchant, unreachable_alipay_account, "open0002", along=_along(merchant.app.pk))

    assert Order.objects.count() == 1 and Charge.objects.get().order_id == order.pk == charge.order_id
    assert ChargeTransition.objects.filter(charge=charge).count() == 1
    assert RoutingDecision.objects.get().charge_id == charge.public_id


@pytest.mark.django_db(transaction=True)  # the statement autocommits, as in a request
def test_when_one_row_cannot_be_written_none_is(merchant, unreachable_alipay_account):
    with pytest.raises(IntegrityError):
        _open(merchant, unreachable_alipay_account, "open0003", along=_along(None))

    assert (Order.objects.count(), Charge.objects.count(), ChargeTransition.objects.count()) == (0, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_a_charge_takes_four_statements_with_the_call_log_and_the_outcome_in_phase_3(merchant, sandbox_alipay):
    def create(order_no: str) -> Charge:
        return services.charge_create(app=merchant.app, livemode=False, params=_params(order_no), request_id="r")

    create("open0004")  # loads routing's snapshot
    with CaptureQueriesContext(connection) as statements:
        charge = create("open0005")

    assert charge.status == ChargeStatus.PENDING
    # routing's live read, the daily-cap reservation, phase 1, phase 3
    assert len(statements.captured_queries) == 4, [q["sql"][:80] for q in statements.captured_queries]
    record = RoutingDecision.objects.get(charge_id=charge.public_id)
    assert [a["outcome"] for a in record.attempts] == ["chosen", "ok"]
    assert ChannelCall.objects.filter(operation="create_payment").count() == 2
