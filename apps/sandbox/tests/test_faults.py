"""fault_take: which fault fires for a request, and how often."""

import pytest

from apps.sandbox.faults import fault_set, fault_take
from apps.sandbox.models import FaultKind, SandboxFault

pytestmark = pytest.mark.django_db


def take(operation: str | None, out_trade_no: str = "") -> SandboxFault | None:
    return fault_take(
        provider="wechatpay", kind=FaultKind.ERROR_5XX, merchant_ref="1900000001", out_trade_no=out_trade_no,
        operation=operation,
    )  # fmt: skip


def test_a_fault_limited_to_an_operation_is_neither_taken_nor_spent_by_another():
    fault = fault_set(provider="wechatpay", kind=FaultKind.ERROR_5XX, params={"operations": ["create"]}, remaining=1)

    assert take("query") is None
    assert take("refund") is None
    assert SandboxFault.objects.get(pk=fault.pk).remaining == 1  # untouched
    assert take("create").pk == fault.pk
    assert take("create") is None  # spent
    assert SandboxFault.objects.values_list("remaining", "fired").get(pk=fault.pk) == (0, 1)


@pytest.mark.parametrize("params", [{}, {"operations": []}, {"operations": None}], ids=["absent", "empty", "null"])
def test_a_fault_without_operations_fires_for_any(params):
    fault_set(provider="wechatpay", kind=FaultKind.ERROR_5XX, params=params, remaining=2)

    assert take("query") is not None
    assert take("bill") is not None
    assert take("create") is None


def test_the_payment_scoped_fault_fires_before_the_merchant_wide_one_for_its_operation():
    wide = fault_set(provider="wechatpay", kind=FaultKind.ERROR_5XX, params={"operations": ["query"]})
    scoped = fault_set(
        provider="wechatpay", kind=FaultKind.ERROR_5XX, out_trade_no="ch_1", params={"operations": ["refund"]}
    )

    assert take("query", "ch_1").pk == wide.pk  # the scoped one targets refunds only
    assert take("refund", "ch_1").pk == scoped.pk
    assert take("refund", "ch_2") is None
