"""Reconciliation runs: one account and day against its bill (download, load, check, match, post).

`recon_run` is the one entry point (the command, the task and the console call it). Its
transaction covers everything it changes: a malformed bill rolls the whole run back, then the
bill file is flagged `invalid` and the run `failed` with the parser's message, in their own
small transaction. A bill already loaded and matched is not processed again: the run returns the
earlier one (re-running or re-uploading the same file changes nothing).

Money moves from channel clearing to bank once per item, however many files a day has: each
run posts only the difference between what its file says the channel settles and what the
day's earlier runs moved (`ReconRun.cleared`). Runs of one account and day, and the discrepancy
actions that move money, are serialized by a lock on the day's bill files (`day_lock`).
"""

from collections.abc import Callable
from datetime import date

from django.db import connection, transaction
from django.utils import timezone

from apps.channels.adapters.base import BillInvalid
from apps.channels.models import ChannelAccount
from apps.channels.services import adapter_for
from apps.ledger.services import channel_settlement_post
from apps.reconciliation import checks, matching
from apps.reconciliation.bills import bill_download, bill_path
from apps.reconciliation.exceptions import BillFileInvalid
from apps.reconciliation.loading import bill_lines_copy
from apps.reconciliation.models import BillFile, BillFileStatus, BillLine, ReconRun, ReconRunStatus

# For the run's transaction only. The check and match statements look costly to the planner: JIT
# would spend seconds compiling them and save nothing on hash joins. They return few rows out of
# a million joined in parallel, which the default cost of a row through a Gather hides. A hash of
# a day's items (a million: ~100 MB) fits in one batch in work_mem × hash_mem_multiplier × the
# participants (leader and two workers), instead of spilling in 16 batches at the default 4 MB.
RUN_SETTINGS = ("SET LOCAL jit = off", "SET LOCAL parallel_tuple_cost = 0.001", "SET LOCAL work_mem = '32MB'")
STAGES = ("load", "internal check", "match", "post")

# progress(stage, advance, total): a stage's total is known when it starts (None for the load).
Progress = Callable[[str, int, int | None], None]


def _noop(stage: str, advance: int, total: int | None) -> None:
    return None


def bill_for(*, account: ChannelAccount, day: date) -> BillFile:
    """The day's newest stored bill, downloading it from the provider when there is none."""
    bill = BillFile.objects.filter(account=account, day=day).exclude(status=BillFileStatus.INVALID).order_by("-id")
    return bill.first() or bill_download(account=account, day=day)[0]


def clearing_post(*, account: ChannelAccount, currency: str, net: int, reference: str, description: str) -> None:
    """What the channel settles moves from its channel_clearing to bank (once per reference)."""
    channel_settlement_post(
        reference=reference, livemode=account.livemode, channel_account_id=account.pk, currency=currency, amount=net,
        description=description,
    )  # fmt: skip


def day_lock(*, account_id: int, day: date) -> None:
    """Locks the account's bill files of the day (pk order): one run or money action at a time."""
    list(BillFile.objects.select_for_update().filter(account_id=account_id, day=day).order_by("pk").values("pk"))


def recon_run(
    *, account: ChannelAccount, day: date, bill: BillFile | None = None, by: str = "system", progress: Progress = _noop
) -> ReconRun:
    """Reconciles one account and day; BillFileInvalid after flagging a malformed bill."""
    bill = bill or bill_for(account=account, day=day)
    try:
        with transaction.atomic():
            day_lock(account_id=account.pk, day=day)
            bill.refresh_from_db()
            earlier = ReconRun.objects.filter(bill=bill, status=ReconRunStatus.DONE).order_by("-id").first()
            if bill.status == BillFileStatus.LOADED and earlier is not None:
                return earlier
            if bill.status == BillFileStatus.INVALID:
                raise BillFileInvalid(f"bill {bill.file_name} ({bill.sha256[:12]}) is invalid: {bill.error}")
            run = ReconRun.objects.create(account=account, day=day, bill=bill, by=by)
            _run(run, bill, account, day, progress)
    except BillInvalid as exc:
        message = f"bill {bill.file_name} of account {account.pk} for {day} is invalid: {exc}"
        with transaction.atomic():
            BillFile.objects.filter(pk=bill.pk).update(status=BillFileStatus.INVALID, error=str(exc))
            ReconRun.objects.create(
                account=account, day=day, bill=bill, by=by, status=ReconRunStatus.FAILED, error=message,
                finished_at=timezone.now(),
            )  # fmt: skip
        raise BillFileInvalid(message) from exc
    return run


def _run(run: ReconRun, bill: BillFile, account: ChannelAccount, day: date, progress: Progress) -> None:
    with connection.cursor() as cursor:
        for setting in RUN_SETTINGS:
            cursor.execute(setting)
    # A newer file for the same day supersedes the lines of the older ones.
    BillLine.objects.filter(bill__in=BillFile.objects.filter(account=account, day=day).values("pk")).delete()
    earlier_runs = list(
        ReconRun.objects.filter(account=account, day=day, status=ReconRunStatus.DONE).values_list("cleared", flat=True)
    )
    progress("load", 0, None)
    with open(bill_path(bill), "rb") as source:
        lines = bill_lines_copy(
            bill=bill, adapter=adapter_for(account), source=source, progress=lambda n: progress("load", n, None)
        )
    BillFile.objects.filter(pk=bill.pk).update(status=BillFileStatus.LOADED, line_count=lines, error="")
    bill.status = BillFileStatus.LOADED
    progress("internal check", 0, 1)
    problems = checks.internal_problems(account_id=account.pk, day=day)
    progress("internal check", 1, 1)
    progress("match", 0, 1)
    result = matching.match(
        account_id=account.pk, day=day, bill_id=bill.pk, run_id=run.pk, supersede=bool(earlier_runs)
    )
    progress("match", 1, 1)
    moved = _clearing_moves(result.cleared, earlier_runs)
    progress("post", 0, len(moved))
    for currency, amount in moved.items():
        clearing_post(
            account=account, currency=currency, net=amount,
            reference=f"{account.pk}:{day}:{currency}:{bill.sha256[:16]}",
            description=f"matched on the {account.provider} bill of {day}",
        )  # fmt: skip
        progress("post", 1, len(moved))
    counts = result.counts
    ReconRun.objects.filter(pk=run.pk).update(
        status=ReconRunStatus.DONE, lines=lines, matched=counts["matched"], held=counts["held"],
        local_missing=counts["local_missing"], channel_missing=counts["channel_missing"],
        amount_mismatch=counts["amount_mismatch"], status_mismatch=counts["status_mismatch"],
        fee_mismatch=counts["fee_mismatch"], duplicate_line=counts["duplicate_line"], internal_problems=problems,
        bill_amount=result.bill_amount, bill_fee=result.bill_fee, local_fee=result.local_fee,
        platform_fee=matching.day_platform_fee(account_id=account.pk, day=day, currency=result.currency),
        cleared_to_bank=moved.get(result.currency, 0), cleared=moved, currency=result.currency,
        finished_at=timezone.now(),
    )  # fmt: skip
    run.refresh_from_db()


def _clearing_moves(settles: dict[str, int], earlier_runs: list[dict]) -> dict[str, int]:
    """Per currency: what this file says the channel settles for the day, less what the day's
    earlier runs moved already (negative when a newer file takes an item back)."""
    moved: dict[str, int] = {}
    for cleared in earlier_runs:
        for currency, amount in cleared.items():
            moved[currency] = moved.get(currency, 0) + amount
    deltas = {currency: settles.get(currency, 0) - moved.get(currency, 0) for currency in {*settles, *moved}}
    return {currency: delta for currency, delta in sorted(deltas.items()) if delta}


def recon_run_all(*, day: date, by: str = "system", progress: Progress = _noop) -> list[tuple[ChannelAccount, object]]:
    """Every enabled account: (account, its run or the error that stopped it)."""
    outcomes: list[tuple[ChannelAccount, object]] = []
    for account in ChannelAccount.objects.filter(enabled=True).order_by("pk"):
        try:
            outcomes.append((account, recon_run(account=account, day=day, by=by, progress=progress)))
        except Exception as exc:
            outcomes.append((account, exc))
    return outcomes
