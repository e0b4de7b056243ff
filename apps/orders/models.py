from django.db import models
from django_fsm import ConcurrentTransitionMixin, FSMField, transition
from djmoney.models.fields import MoneyField

from apps.merchants.models import App


class OrderStatus(models.TextChoices):
    CREATED = "created"
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    CLOSED = "closed"


class Order(ConcurrentTransitionMixin, models.Model):
    """What the merchant sells: one per (app, order_no). Charges pay it."""

    # No index of its own: the unique (app, livemode, order_no) leads with it.
    app = models.ForeignKey(App, on_delete=models.PROTECT, related_name="orders", db_index=False)
    order_no = models.CharField(max_length=64)
    livemode = models.BooleanField()
    amount = MoneyField(max_digits=18, decimal_places=3, default_currency=None)
    subject = models.CharField(max_length=64)
    body = models.CharField(max_length=256)
    status = FSMField(choices=OrderStatus.choices, default=OrderStatus.CREATED, protected=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["app", "livemode", "order_no"], name="order_no_unique_per_app")]

    def __str__(self) -> str:
        return f"order {self.order_no}"

    @transition(field=status, source=OrderStatus.CREATED, target=OrderStatus.PAID)
    def pay(self, *, paid_at):
        self.paid_at = paid_at

    @transition(
        field=status, source=[OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED], target=OrderStatus.PARTIALLY_REFUNDED
    )
    def refund_partially(self):
        pass

    @transition(field=status, source=[OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED], target=OrderStatus.REFUNDED)
    def refund_fully(self):
        pass

    @transition(field=status, source=OrderStatus.CREATED, target=OrderStatus.CLOSED)
    def close(self, *, closed_at):
        self.closed_at = closed_at


class OrderTransition(models.Model):
    """Audit row for every order state change."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="transitions")
    source = models.CharField(max_length=32)
    target = models.CharField(max_length=32)
    by = models.CharField(max_length=150)
    request_id = models.CharField(max_length=64, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.order_id}: {self.source} -> {self.target} by {self.by}"
