from django.utils import timezone
from moneyed import Money

from apps.merchants.models import App
from apps.orders.exceptions import OrderMismatch, OrderNotPayable
from apps.orders.models import Order, OrderStatus, OrderTransition


def _audit(order: Order, source: str, *, by: str, request_id: str) -> None:
    OrderTransition.objects.create(order=order, source=source, target=order.status, by=by, request_id=request_id)


def order_lock(*, order_id: int) -> Order:
    return Order.objects.select_for_update().get(pk=order_id)


def order_new(
    *, app: App, livemode: bool, order_no: str, amount: Money, subject: str, body: str, request_id: str
) -> Order:
    """A new order for a charge, unsaved: the caller inserts it unless its `order_no` exists
    (`insert_unless_exists`, with the charge in the same statement), and otherwise pays the
    existing one (`order_existing_for_charge`)."""
    return Order(
        app=app, livemode=livemode, order_no=order_no, amount=amount, subject=subject, body=body, request_id=request_id
    )


def order_existing_for_charge(new: Order) -> Order:
    """The existing order whose `order_no` the unsaved `new` repeats, locked; it must carry the
    same amount and currency, and still be open. Runs in the caller's transaction."""
    order = Order.objects.select_for_update().get(app=new.app, livemode=new.livemode, order_no=new.order_no)
    if order.amount != new.amount:
        raise OrderMismatch(
            f"order_no {new.order_no!r} is already used with another amount or currency.", param="order_no"
        )
    if order.status != OrderStatus.CREATED:
        raise OrderNotPayable(
            f"Order {new.order_no!r} is {order.status} and cannot take a new charge.", param="order_no"
        )
    return order


def order_mark_paid(*, order: Order, paid_at, by: str, request_id: str) -> bool:
    """Moves a locked order to paid; False when it was already paid (a duplicate payment)."""
    if order.status != OrderStatus.CREATED:
        return False
    source = order.status
    order.pay(paid_at=paid_at)
    order.save()
    _audit(order, source, by=by, request_id=request_id)
    return True


def order_close(*, order: Order, by: str, request_id: str) -> None:
    source = order.status
    order.close(closed_at=timezone.now())
    order.save()
    _audit(order, source, by=by, request_id=request_id)


def order_record_refund(*, order: Order, fully_refunded: bool, by: str, request_id: str) -> None:
    """A locked paid order after a refund succeeded: partially refunded, or refunded in full."""
    source = order.status
    if fully_refunded:
        order.refund_fully()
    else:
        order.refund_partially()
    order.save()
    _audit(order, source, by=by, request_id=request_id)


def order_close_if_unpayable(*, order: Order, open_charges: int, by: str, request_id: str) -> bool:
    """Closes a locked, unpaid order once none of its charges can still succeed."""
    if order.status != OrderStatus.CREATED or open_charges:
        return False
    order_close(order=order, by=by, request_id=request_id)
    return True
