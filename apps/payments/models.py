from django.db import models
from django_fsm import ConcurrentTransitionMixin, FSMField, transition
from djmoney.models.fields import MoneyField

from apps.channels.models import ChannelAccount
from apps.core.ids import PublicIdFactory
from apps.merchants.models import App
from apps.orders.models import Order


class ChargeStatus(models.TextChoices):
    CREATED = "created"  # committed, provider not yet (or not known to be) asked
    PENDING = "pending"  # the provider holds the payment; the payer may pay
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CLOSED = "closed"


OPEN_STATUSES = (ChargeStatus.CREATED, ChargeStatus.PENDING)


class ChargeException(models.TextChoices):
    """Disputes of fact, held for the console; they never move money by themselves."""

    NONE = "", "none"
    AMOUNT_MISMATCH = "amount_mismatch", "provider reported another amount"
    PAID_AFTER_CLOSE = "paid_after_close", "provider reported payment of a closed or failed charge"
    DUPLICATE_PAYMENT = "duplicate_payment", "the order was already paid by another charge"


class Charge(ConcurrentTransitionMixin, models.Model):
    public_id = models.CharField(max_length=32, unique=True, default=PublicIdFactory("ch"), editable=False)
    # No index of its own: charge_list_idx (app, livemode, -id) leads with it.
    app = models.ForeignKey(App, on_delete=models.PROTECT, related_name="charges", db_index=False)
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="charges")
    livemode = models.BooleanField()
    channel = models.CharField(max_length=32, help_text="Ping++ channel code")
    channel_account = models.ForeignKey(ChannelAccount, on_delete=models.PROTECT, related_name="charges")
    amount = MoneyField(max_digits=18, decimal_places=3, default_currency=None)
    client_ip = models.GenericIPAddressField()
    subject = models.CharField(max_length=64)
    body = models.CharField(max_length=256)
    description = models.CharField(max_length=255, blank=True, default="")
    extra = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    credential = models.JSONField(default=dict, blank=True)
    transaction_no = models.CharField(max_length=64, blank=True, default="")
    status = FSMField(choices=ChargeStatus.choices, default=ChargeStatus.CREATED, protected=True)
    time_expire = models.DateTimeField()
    paid_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    failure_code = models.CharField(max_length=64, blank=True, default="")
    failure_msg = models.CharField(max_length=255, blank=True, default="")
    exception = models.CharField(max_length=32, choices=ChargeException.choices, blank=True, default="")
    exception_detail = models.JSONField(default=dict, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # active query: the due-work pattern (a sweep picks due rows with SKIP LOCKED)
    next_query_at = models.DateTimeField(null=True, blank=True)
    query_attempts = models.PositiveIntegerField(default=0)
    reversed = models.BooleanField(default=False)
    amount_refunded = MoneyField(max_digits=18, decimal_places=3, default_currency=None, null=True, blank=True)
    # What the provider actually received (equal to `amount` unless accepted after a mismatch).
    amount_received = MoneyField(max_digits=18, decimal_places=3, default_currency=None, null=True, blank=True)
    # Fees fixed when the charge succeeds (ledger fee plans), never recomputed: what the ledger posted.
    platform_fee = MoneyField(max_digits=18, decimal_places=3, default_currency=None, null=True, blank=True)
    channel_fee = MoneyField(max_digits=18, decimal_places=3, default_currency=None, null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["next_query_at"],
                condition=models.Q(status__in=["created", "pending"]),
                name="charge_query_due_idx",
            ),
            models.Index(fields=["app", "livemode", "-id"], name="charge_list_idx"),
            models.Index(fields=["exception"], condition=~models.Q(exception=""), name="charge_exception_idx"),
            # Reconciliation: an account's payments of a day (and the days around it).
            models.Index(
                fields=["channel_account", "paid_at"], condition=models.Q(paid_at__isnull=False), name="charge_paid_idx"
            ),
        ]

    def __str__(self) -> str:
        return self.public_id

    @property
    def paid(self) -> bool:
        return self.status == ChargeStatus.SUCCEEDED

    @property
    def refundable_base(self):
        """What refunds are measured against: what the provider received."""
        return self.amount_received or self.amount

    @transition(field=status, source=ChargeStatus.CREATED, target=ChargeStatus.PENDING)
    def submit(self, *, credential: dict, transaction_no: str = ""):
        self.credential = credential
        self.transaction_no = transaction_no or self.transaction_no

    @transition(field=status, source=OPEN_STATUSES, target=ChargeStatus.SUCCEEDED)
    def succeed(self, *, paid_at, transaction_no: str):
        self.paid_at = paid_at
        self.transaction_no = transaction_no

    @transition(field=status, source=[ChargeStatus.CLOSED, ChargeStatus.FAILED], target=ChargeStatus.SUCCEEDED)
    def succeed_after_close(self, *, paid_at, transaction_no: str):
        """Console only: the provider took the payer's money after paysys had closed (or failed)
        the charge; recorded so that it can be refunded (`charge_refund_paid_after_close`)."""
        self.paid_at = paid_at
        self.transaction_no = transaction_no

    @transition(field=status, source=OPEN_STATUSES, target=ChargeStatus.FAILED)
    def fail(self, *, failure_code: str, failure_msg: str):
        self.failure_code = failure_code[:64]
        self.failure_msg = failure_msg[:255]

    @transition(field=status, source=OPEN_STATUSES, target=ChargeStatus.CLOSED)
    def close(self, *, closed_at):
        self.closed_at = closed_at


class ChargeTransition(models.Model):
    """Audit row for every charge state change and exception flag."""

    charge = models.ForeignKey(Charge, on_delete=models.CASCADE, related_name="transitions")
    source = models.CharField(max_length=16)
    target = models.CharField(max_length=32)
    by = models.CharField(max_length=150)
    request_id = models.CharField(max_length=64, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.charge_id}: {self.source} -> {self.target} by {self.by}"


class RefundStatus(models.TextChoices):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Refund(ConcurrentTransitionMixin, models.Model):
    """A refund of part or all of a succeeded charge. Same three phases as a charge."""

    public_id = models.CharField(max_length=32, unique=True, default=PublicIdFactory("re"), editable=False)
    charge = models.ForeignKey(Charge, on_delete=models.PROTECT, related_name="refunds")
    amount = MoneyField(max_digits=18, decimal_places=3, default_currency=None)
    status = FSMField(choices=RefundStatus.choices, default=RefundStatus.PENDING, protected=True)
    description = models.CharField(max_length=255, blank=True, default="")
    metadata = models.JSONField(default=dict, blank=True)
    funding_source = models.CharField(max_length=32, blank=True, default="")
    transaction_no = models.CharField(max_length=64, blank=True, default="")
    failure_code = models.CharField(max_length=64, blank=True, default="")
    failure_msg = models.CharField(max_length=255, blank=True, default="")
    succeeded_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True, help_text="when the provider accepted the request")
    automatic = models.CharField(max_length=32, blank=True, default="", help_text="why paysys refunded by itself")
    next_query_at = models.DateTimeField(null=True, blank=True)
    query_attempts = models.PositiveIntegerField(default=0)
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["next_query_at"], condition=models.Q(status="pending"), name="refund_query_due_idx"),
            # Reconciliation: the refunds of a day (and the days around it).
            models.Index(
                fields=["succeeded_at"], condition=models.Q(succeeded_at__isnull=False), name="refund_succeeded_idx"
            ),
        ]

    def __str__(self) -> str:
        return self.public_id

    @transition(field=status, source=RefundStatus.PENDING, target=RefundStatus.SUCCEEDED)
    def succeed(self, *, succeeded_at, transaction_no: str):
        self.succeeded_at = succeeded_at
        self.transaction_no = transaction_no or self.transaction_no
        self.next_query_at = None

    @transition(field=status, source=RefundStatus.PENDING, target=RefundStatus.FAILED)
    def fail(self, *, failure_code: str, failure_msg: str):
        self.failure_code = failure_code[:64]
        self.failure_msg = failure_msg[:255]
        self.next_query_at = None

    @transition(field=status, source=RefundStatus.FAILED, target=RefundStatus.PENDING)
    def retry(self):
        self.failure_code = ""
        self.failure_msg = ""
        self.submitted_at = None


class RefundTransition(models.Model):
    refund = models.ForeignKey(Refund, on_delete=models.CASCADE, related_name="transitions")
    source = models.CharField(max_length=16)
    target = models.CharField(max_length=32)
    by = models.CharField(max_length=150)
    request_id = models.CharField(max_length=64, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.refund_id}: {self.source} -> {self.target} by {self.by}"


class NotificationProblem(models.Model):
    """A provider notification paysys could not apply: shown in the console and counted as an alert."""

    class Kind(models.TextChoices):
        UNKNOWN_CHARGE = "unknown_charge"
        UNKNOWN_REFUND = "unknown_refund"
        INVALID_SIGNATURE = "invalid_signature"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    provider = models.CharField(max_length=16)
    channel_account = models.ForeignKey(ChannelAccount, on_delete=models.PROTECT, related_name="+")
    reference = models.CharField(max_length=64, blank=True, default="")
    detail = models.CharField(max_length=255, blank=True, default="")
    request_id = models.CharField(max_length=64, blank=True)
    resolved = models.BooleanField(default=False)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.kind} {self.reference}"
