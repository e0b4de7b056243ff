"""The double-entry ledger: accounts, journal entries, postings, balances, day cut and fee plans.

Sign convention: a posting's `amount` is in integer minor units, debit positive and credit
negative, so every journal entry sums to zero per currency (the database checks this with a
deferred constraint trigger, migration 0002). An account's balance on its normal side is
`sum(amount)` for a debit-normal account and `-sum(amount)` for a credit-normal one.

Other apps' objects (charges, refunds, channel accounts) are referred to by plain ids and
public ids: the ledger sits below them in the dependency direction (DESIGN.md).
"""

from django.db import models
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from apps.core.ids import PublicIdFactory
from apps.merchants.models import Merchant

PLATFORM_OWNER = 0  # owner id of the platform's own accounts


class AccountType(models.TextChoices):
    MERCHANT_PENDING = "merchant_pending"
    MERCHANT_AVAILABLE = "merchant_available"
    USER_BALANCE = "user_balance"
    CHANNEL_CLEARING = "channel_clearing"  # owner: channel account id
    CHANNEL_FEE_EXPENSE = "channel_fee_expense"  # owner: channel account id
    PLATFORM_FEE_REVENUE = "platform_fee_revenue"
    MARKETING_EXPENSE = "marketing_expense"
    SUSPENSE = "suspense"
    BANK = "bank"


class NormalSide(models.TextChoices):
    DEBIT = "debit"
    CREDIT = "credit"


class Account(models.Model):
    """One account per (book, type, owner, currency), created on demand and never deleted.

    `livemode` separates the live books from the test-mode books. `slot_count` > 1 marks a hot
    account whose balance is spread over that many BalanceSlot rows (docs/ledger.md, Balances).
    """

    livemode = models.BooleanField()
    type = models.CharField(max_length=32, choices=AccountType.choices)
    owner_id = models.BigIntegerField(help_text="merchant, channel account or user id; 0 for the platform")
    currency = models.CharField(max_length=3)
    normal_side = models.CharField(max_length=6, choices=NormalSide.choices)
    may_go_negative = models.BooleanField()
    slot_count = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["livemode", "type", "owner_id", "currency"], name="ledger_account_key"),
            models.CheckConstraint(condition=models.Q(slot_count__gte=1), name="ledger_account_slot_count"),
        ]
        indexes = [models.Index(fields=["owner_id", "type"], name="ledger_account_owner")]

    def __str__(self) -> str:
        book = "live" if self.livemode else "test"
        return f"{self.type}:{self.owner_id}:{self.currency} ({book})"

    def normal_balance(self, raw: int) -> int:
        return raw if self.normal_side == NormalSide.DEBIT else -raw


class BalanceSlot(models.Model):
    """A share of an account's balance (raw, debit positive). The balance is the sum of its slots.

    No foreign-key constraint in the database: a key-share lock on the account row per update
    would serialize the hot accounts again. Accounts are never deleted, and `ledger_check`
    verifies every slot's account exists.
    """

    # No index of its own: the unique (account, slot) key serves every lookup by account.
    account = models.ForeignKey(
        Account, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="slots"
    )
    slot = models.PositiveSmallIntegerField()
    balance = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "slot"], name="ledger_balance_slot_key")]

    def __str__(self) -> str:
        return f"{self.account_id}#{self.slot}: {self.balance}"


class JournalEntry(models.Model):
    """One business event, posted at most once: unique on (event type, reference). Append-only.

    Complete when its transaction commits: the database checks then that its postings balance
    per currency, and refuses postings added to it by any later transaction (migration 0003).
    """

    event_type = models.CharField(max_length=32)
    reference = models.CharField(max_length=96)
    livemode = models.BooleanField()
    accounting_date = models.DateField(help_text="day cut (日切); a closed day's entries move to the next open day")
    occurred_at = models.DateTimeField()
    # Plain ids (the ledger may not depend on channels or payments): filters for statements,
    # fee volumes and the console.
    merchant_id = models.BigIntegerField(null=True, blank=True)
    channel_account_id = models.BigIntegerField(null=True, blank=True)
    description = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    xact_id = models.BigIntegerField(
        default=0, editable=False, help_text="set by the database: the transaction that inserted the entry"
    )

    class Meta:
        verbose_name_plural = "journal entries"
        constraints = [models.UniqueConstraint(fields=["event_type", "reference"], name="ledger_entry_once")]
        indexes = [
            models.Index(fields=["accounting_date"], name="ledger_entry_date"),
            models.Index(fields=["merchant_id", "event_type", "accounting_date"], name="ledger_entry_merchant"),
            models.Index(fields=["channel_account_id", "event_type", "accounting_date"], name="ledger_entry_channel"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.reference}"


class Posting(models.Model):
    """One line of a journal entry. Append-only (database triggers refuse UPDATE and DELETE).

    The account reference carries no database foreign key, for the same reason as BalanceSlot.
    """

    entry = models.ForeignKey(JournalEntry, on_delete=models.PROTECT, related_name="postings")
    # No index of its own: the (account, entry) index serves every lookup by account.
    account = models.ForeignKey(
        Account, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="postings"
    )
    amount = models.BigIntegerField(help_text="minor units; debit positive, credit negative")
    currency = models.CharField(max_length=3)

    class Meta:
        indexes = [models.Index(fields=["account", "entry"], name="ledger_posting_account")]
        constraints = [models.CheckConstraint(condition=~models.Q(amount=0), name="ledger_posting_nonzero")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.amount:+d} {self.currency}"


class AccountingDay(models.Model):
    """A closed accounting day. Days close in order; entries dated on or before the last closed
    day are moved to the next open day by a database trigger (migration 0002)."""

    date = models.DateField(primary_key=True)
    closed_at = models.DateTimeField()
    closed_by = models.CharField(max_length=150)

    def __str__(self) -> str:
        return f"{self.date} (closed)"


class TrialBalanceLine(models.Model):
    """The trial balance of a closed day, per book, account type and currency, stored at close."""

    date = models.DateField()
    livemode = models.BooleanField()
    account_type = models.CharField(max_length=32, choices=AccountType.choices)
    currency = models.CharField(max_length=3)
    opening = models.BigIntegerField(help_text="raw, debit positive")
    debits = models.BigIntegerField()
    credits = models.BigIntegerField(help_text="positive total of credit postings")
    closing = models.BigIntegerField(help_text="raw, debit positive")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["date", "livemode", "account_type", "currency"], name="ledger_trial_balance_line_key"
            )
        ]
        ordering = ["-date", "livemode", "currency", "account_type"]

    def __str__(self) -> str:
        return f"{self.date} {self.account_type} {self.currency}"


class FeePlanKind(models.TextChoices):
    PLATFORM = "platform", "platform fee (charged to the merchant)"
    CHANNEL = "channel", "channel cost (charged by the provider)"


class FeeRounding(models.TextChoices):
    HALF_UP = "ROUND_HALF_UP", "half up"
    HALF_EVEN = "ROUND_HALF_EVEN", "half even (banker's)"
    UP = "ROUND_UP", "up (away from zero)"
    DOWN = "ROUND_DOWN", "down (toward zero)"


class FeePlanOwner(models.TextChoices):
    MERCHANT = "merchant"
    APP = "app"
    CHANNEL_ACCOUNT = "channel_account"


class FeePlan(models.Model):
    """A fee formula: `rate × amount` rounded once with `rounding`, plus `fixed`, clamped to
    [`minimum`, `maximum`] and to [0, amount]. `tiers` (by the owner's volume in the previous
    calendar month) replace `rate` and `fixed`: `[{"from": 0, "rate": "0.006", "fixed": 0}, …]`.

    The most specific active plan wins: app over merchant for platform plans. Amounts are minor
    units of `currency`.
    """

    name = models.CharField(max_length=128)
    kind = models.CharField(max_length=16, choices=FeePlanKind.choices)
    owner_type = models.CharField(max_length=16, choices=FeePlanOwner.choices)
    owner_id = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    rate = models.DecimalField(max_digits=9, decimal_places=6, default=0, help_text="0.006 = 0.6%")
    fixed = models.BigIntegerField(default=0, help_text="minor units")
    tiers = models.JSONField(default=list, blank=True)
    minimum = models.BigIntegerField(null=True, blank=True)
    maximum = models.BigIntegerField(null=True, blank=True)
    rounding = models.CharField(max_length=16, choices=FeeRounding.choices, default=FeeRounding.HALF_UP)
    refund_returns_fee = models.BooleanField(
        default=True, help_text="on a refund, the fee is returned in proportion to the refunded amount"
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "owner_type", "owner_id", "currency"],
                condition=models.Q(active=True),
                name="ledger_fee_plan_one_active",
            ),
            models.CheckConstraint(condition=models.Q(rate__gte=0, fixed__gte=0), name="ledger_fee_plan_nonnegative"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind} {self.owner_type}:{self.owner_id} {self.currency})"


class SettlementSchedule(models.Model):
    """T+N: pending funds with an accounting date at least N days old become available."""

    merchant = models.OneToOneField(Merchant, on_delete=models.PROTECT, related_name="settlement_schedule")
    delay_days = models.PositiveSmallIntegerField(default=1)
    enabled = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"{self.merchant} T+{self.delay_days}"


class AdjustmentStatus(models.TextChoices):
    DRAFT = "draft"
    APPROVED = "approved"
    REJECTED = "rejected"


class Adjustment(ConcurrentTransitionMixin, models.Model):
    """A manual journal (maker-checker): drafted by one staff member, approved by another."""

    public_id = models.CharField(max_length=32, unique=True, default=PublicIdFactory("adj"), editable=False)
    livemode = models.BooleanField(default=True)
    description = models.CharField(max_length=255)
    status = FSMField(choices=AdjustmentStatus.choices, default=AdjustmentStatus.DRAFT, protected=True)
    maker = models.CharField(max_length=150)
    checker = models.CharField(max_length=150, blank=True, default="")
    decided_at = models.DateTimeField(null=True, blank=True)
    entry_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.public_id} ({self.status})"

    @transition(
        field=status,
        source=AdjustmentStatus.DRAFT,
        target=AdjustmentStatus.APPROVED,
        custom={"admin": True, "label": "Approve", "help_text": "Post this adjustment (not by its maker)."},
    )
    def approve(self, *, checker: str, at):
        self.checker = checker
        self.decided_at = at

    @transition(
        field=status,
        source=AdjustmentStatus.DRAFT,
        target=AdjustmentStatus.REJECTED,
        custom={"admin": True, "label": "Reject", "help_text": "Refuse this adjustment; nothing is posted."},
    )
    def reject(self, *, checker: str, at):
        self.checker = checker
        self.decided_at = at


class AdjustmentLine(models.Model):
    """One line of an adjustment: debit positive, credit negative, minor units."""

    adjustment = models.ForeignKey(Adjustment, on_delete=models.CASCADE, related_name="lines")
    account_type = models.CharField(max_length=32, choices=AccountType.choices)
    owner_id = models.BigIntegerField(default=PLATFORM_OWNER)
    currency = models.CharField(max_length=3)
    amount = models.BigIntegerField(help_text="minor units; debit positive, credit negative")

    def __str__(self) -> str:
        return f"{self.account_type}:{self.owner_id} {self.amount:+d} {self.currency}"


class AdjustmentTransition(models.Model):
    adjustment = models.ForeignKey(Adjustment, on_delete=models.CASCADE, related_name="transitions")
    source = models.CharField(max_length=16)
    target = models.CharField(max_length=16)
    by = models.CharField(max_length=150)
    at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.source} → {self.target} by {self.by}"
