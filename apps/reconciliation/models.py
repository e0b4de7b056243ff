"""Reconciliation: bill files, their standard lines, runs, cross-day holds and discrepancies.

Amounts here are integer minor units (the ledger's unit), so matching is exact integer SQL.
"""

from django.db import models
from django.utils import timezone
from django_fsm import ConcurrentTransitionMixin, FSMField, transition

from apps.channels.models import ChannelAccount


class BillSchedule(models.Model):
    """When an account's provider publishes the bill of day D (on D+1, provider time)."""

    account = models.OneToOneField(ChannelAccount, on_delete=models.CASCADE, related_name="bill_schedule")
    bill_time = models.TimeField(default="09:30", help_text="provider time (Asia/Shanghai) on D+1")
    working_days_only = models.BooleanField(default=False, help_text="no bill is published on Sat/Sun")
    deadline_hours = models.PositiveIntegerField(default=24, help_text="after bill_time: then manual handling")
    enabled = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"bills of {self.account_id} at {self.bill_time}"


class BillDownloadStatus(models.TextChoices):
    PENDING = "pending"
    DONE = "done"
    MANUAL = "manual"  # the deadline passed: finance uploads the file by hand


class BillDownload(models.Model):
    """The due work of fetching one account's bill of one day (retried with backoff)."""

    account = models.ForeignKey(ChannelAccount, on_delete=models.PROTECT, related_name="+")
    day = models.DateField()
    status = models.CharField(max_length=16, choices=BillDownloadStatus.choices, default=BillDownloadStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    deadline = models.DateTimeField()
    last_error = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "day"], name="recon_download_once")]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=models.Q(status="pending"), name="recon_download_due")
        ]

    def __str__(self) -> str:
        return f"download {self.account_id} {self.day} ({self.status})"


class BillFileStatus(models.TextChoices):
    STORED = "stored"
    LOADED = "loaded"  # normalized into bill lines and matched
    INVALID = "invalid"  # malformed, truncated or wrong encoding: nothing was loaded


class BillFileSource(models.TextChoices):
    DOWNLOAD = "download"
    UPLOAD = "upload"


class BillFile(models.Model):
    """A raw bill file as received for one account and day, kept under VAR_DIR/bills/<sha256>;
    the same file for the same account and day is never processed twice."""

    account = models.ForeignKey(ChannelAccount, on_delete=models.PROTECT, related_name="+")
    day = models.DateField()
    file_name = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField()
    source = models.CharField(max_length=16, choices=BillFileSource.choices)
    status = models.CharField(max_length=16, choices=BillFileStatus.choices, default=BillFileStatus.STORED)
    error = models.TextField(blank=True, default="")
    line_count = models.BigIntegerField(null=True, blank=True)
    uploaded_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "day", "sha256"], name="recon_billfile_once")]

    def __str__(self) -> str:
        return f"{self.file_name} ({self.status})"


class BillLine(models.Model):
    """One standard bill line, loaded with COPY. `ref` is what it matches on: paysys's refund id
    on a refund line that names one, else paysys's charge id.

    No foreign-key constraint on `bill`: checking it costs as much as loading the lines (a
    deferred check per row at commit), and only bill_lines_copy writes lines, with the bill of
    its own transaction. The account and day are the bill's."""

    bill = models.ForeignKey(BillFile, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False)
    kind = models.CharField(max_length=8)
    ref = models.CharField(max_length=64)
    trade_no = models.CharField(max_length=64)
    out_trade_no = models.CharField(max_length=64)
    out_refund_no = models.CharField(max_length=64)
    refund_no = models.CharField(max_length=64)
    amount = models.BigIntegerField()
    fee = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=32)
    occurred_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["bill", "ref"], name="recon_billline_ref")]

    def __str__(self) -> str:
        return f"{self.kind} {self.ref} {self.amount}"


class ReconRunStatus(models.TextChoices):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class ReconRun(models.Model):
    """One reconciliation of one account and day against one bill file (the daily summary)."""

    account = models.ForeignKey(ChannelAccount, on_delete=models.PROTECT, related_name="+")
    day = models.DateField()
    bill = models.ForeignKey(BillFile, on_delete=models.PROTECT, null=True, blank=True, related_name="runs")
    status = models.CharField(max_length=16, choices=ReconRunStatus.choices, default=ReconRunStatus.RUNNING)
    error = models.TextField(blank=True, default="")
    lines = models.BigIntegerField(default=0)
    matched = models.BigIntegerField(default=0)
    held = models.BigIntegerField(default=0)
    local_missing = models.IntegerField(default=0)
    channel_missing = models.IntegerField(default=0)
    amount_mismatch = models.IntegerField(default=0)
    status_mismatch = models.IntegerField(default=0)
    fee_mismatch = models.IntegerField(default=0)
    duplicate_line = models.IntegerField(default=0, help_text="further copies of lines the bill lists more than once")
    internal_problems = models.JSONField(default=list, blank=True)
    bill_amount = models.BigIntegerField(default=0, help_text="minor units, payments minus refunds")
    bill_fee = models.BigIntegerField(default=0, help_text="channel fees on the bill, net of refunded fees")
    local_fee = models.BigIntegerField(default=0, help_text="channel fees paysys computed, same items")
    platform_fee = models.BigIntegerField(default=0, help_text="paysys's platform fees on the day's charges")
    cleared_to_bank = models.BigIntegerField(default=0, help_text="moved to bank by this run (main currency)")
    cleared = models.JSONField(default=dict, blank=True, help_text="moved to bank by this run, per currency")
    currency = models.CharField(max_length=3, blank=True, default="")
    by = models.CharField(max_length=150, default="system")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"recon {self.account_id} {self.day} ({self.status})"


class HoldStatus(models.TextChoices):
    HELD = "held"
    RELEASED = "released"  # found on the neighbouring day's bill
    EXPIRED = "expired"  # not there either: it became a discrepancy


class CrossDayHold(models.Model):
    """A local item near the day boundary, missing from its day's bill, waiting for the neighbour's."""

    account = models.ForeignKey(ChannelAccount, on_delete=models.PROTECT, related_name="+")
    day = models.DateField()
    neighbour_day = models.DateField()
    kind = models.CharField(max_length=8)
    ref = models.CharField(max_length=64)
    amount = models.BigIntegerField()
    fee = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=HoldStatus.choices, default=HoldStatus.HELD)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "day", "kind", "ref"], name="recon_hold_once")]

    def __str__(self) -> str:
        return f"hold {self.kind} {self.ref} ({self.status})"


class DiscrepancyKind(models.TextChoices):
    LOCAL_MISSING = "local_missing", "in the bill, not in paysys"
    CHANNEL_MISSING = "channel_missing", "in paysys, not in the bill"
    AMOUNT_MISMATCH = "amount_mismatch"
    STATUS_MISMATCH = "status_mismatch"
    FEE_MISMATCH = "fee_mismatch"
    # The bill lists the same payment or refund again (same kind, paysys id and status): the first
    # line is matched, the further copies are this, with their figures summed and no paysys side.
    DUPLICATE_LINE = "duplicate_line", "listed again on the same bill"


class DiscrepancyStatus(models.TextChoices):
    OPEN = "open"
    INVESTIGATING = "investigating"
    RESOLVED = "resolved"
    WRITTEN_OFF = "written_off"


class Discrepancy(ConcurrentTransitionMixin, models.Model):
    """One difference between a bill and paysys; found once per (account, day, kind, kind of item, ref)."""

    account = models.ForeignKey(ChannelAccount, on_delete=models.PROTECT, related_name="+")
    day = models.DateField()
    kind = models.CharField(max_length=16, choices=DiscrepancyKind.choices)
    item_kind = models.CharField(max_length=8, help_text="payment or refund")
    ref = models.CharField(max_length=64, help_text="paysys's charge or refund id (as the bill names it)")
    trade_no = models.CharField(max_length=64, blank=True, default="")
    currency = models.CharField(max_length=3)
    bill_kind = models.CharField(max_length=8, blank=True, default="")
    bill_status = models.CharField(
        max_length=16, blank=True, default="", help_text="succeeded, or what else the bill says"
    )
    bill_amount = models.BigIntegerField(null=True, blank=True)
    bill_fee = models.BigIntegerField(null=True, blank=True)
    local_kind = models.CharField(max_length=8, blank=True, default="")
    local_status = models.CharField(max_length=16, blank=True, default="")
    local_amount = models.BigIntegerField(null=True, blank=True)
    local_fee = models.BigIntegerField(null=True, blank=True)
    status = FSMField(choices=DiscrepancyStatus.choices, default=DiscrepancyStatus.OPEN, protected=True)
    run = models.ForeignKey(ReconRun, on_delete=models.PROTECT, related_name="discrepancies")
    adjustment_id = models.BigIntegerField(null=True, blank=True, help_text="the write-off (ledger adjustment)")
    settled = models.BigIntegerField(
        null=True, blank=True, help_text="what closing it moved from channel clearing to bank; empty: no money moved"
    )
    resolution = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "discrepancies"
        constraints = [
            models.UniqueConstraint(
                fields=["account", "day", "kind", "item_kind", "ref"], name="recon_discrepancy_once"
            )
        ]
        indexes = [models.Index(fields=["status", "day"], name="recon_discrepancy_status")]
        permissions = [("export_reports", "Can download reconciliation reports")]

    def __str__(self) -> str:
        return f"{self.kind} {self.ref} ({self.status})"

    @property
    def bill_net(self) -> int:
        """What the channel settles for the item by its bill: nothing for a line it says did not succeed."""
        return _net_if_succeeded(self.bill_kind, self.bill_status, self.bill_amount, self.bill_fee)

    @property
    def difference(self) -> int:
        """What the channel's net says minus what paysys's net says (minor units, signed)."""
        return self.bill_net - _net_if_succeeded(self.local_kind, self.local_status, self.local_amount, self.local_fee)

    @transition(field=status, source=DiscrepancyStatus.OPEN, target=DiscrepancyStatus.INVESTIGATING)
    def investigate(self):
        pass

    @transition(
        field=status,
        source=[DiscrepancyStatus.OPEN, DiscrepancyStatus.INVESTIGATING],
        target=DiscrepancyStatus.RESOLVED,
    )
    def resolve(self, *, resolution: str):
        self.resolution = resolution

    @transition(
        field=status,
        source=[DiscrepancyStatus.OPEN, DiscrepancyStatus.INVESTIGATING],
        target=DiscrepancyStatus.WRITTEN_OFF,
    )
    def write_off(self, *, resolution: str):
        self.resolution = resolution


def net(kind: str, amount: int | None, fee: int | None) -> int:
    """What an item moves through channel clearing: +(amount − fee) for a payment, −(…) for a refund."""
    if not kind or amount is None:
        return 0
    value = amount - (fee or 0)
    return value if kind == "payment" else -value


def _net_if_succeeded(kind: str, status: str, amount: int | None, fee: int | None) -> int:
    """An item's net by one side of a discrepancy: nothing when that side says it did not succeed."""
    return net(kind if status in ("succeeded", "") else "", amount, fee)


class DiscrepancyAction(models.Model):
    """The audit of every action on a discrepancy (append-only)."""

    discrepancy = models.ForeignKey(Discrepancy, on_delete=models.PROTECT, related_name="actions")
    action = models.CharField(max_length=32)
    source = models.CharField(max_length=16)
    target = models.CharField(max_length=16)
    by = models.CharField(max_length=150)
    detail = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.action} by {self.by}"
