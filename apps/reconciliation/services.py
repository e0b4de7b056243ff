"""Reconciliation runs: one account and day against its bill (download, load, check, match, post).

`recon_run` is the one entry point (the command, the task and the console call it). Its
transaction covers everything it changes: a malformed bill rolls the whole run back, then the
bill file is flagged `invalid` and the run `failed` with the parser's message, in their own
small transaction. A bill already loaded and matched is not processed again: the run returns the
earlier one (re-running or re-uploading the same file changes nothing).
"""

from collections.abc import Callable
from datetime import date

from django.db import connection, transaction
from django.utils import timezone

from apps.channels.adapters.base import BillInvalid
from apps.channels.models import ChannelAccount
from apps.channels.services import adapter_for
from apps.ledger.accounts import AccountKey
from apps.ledger.journal import Line, journal_post
from apps.reconciliation import matching
from apps.reconciliation.bills import bill_download, bill_path
from apps.reconciliation.exceptions import BillFileInvalid
from apps.reconciliation.loading import bill_lines_copy
from apps.reconciliation.models import BillFile, BillFileStatus, BillLine, ReconRun, ReconRunStatus

CLEARING_EVENT = "recon.clearing"
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
    """What the channel settles moves from channel_clearing to bank (once per reference).

    Reconciliation posts through the ledger's engine: the ledger has no service for this event
    yet (a ledger-owned `channel_settlement_post` should replace this call).
    """
    if not net:
        return
    journal_post(
        event_type=CLEARING_EVENT,
        reference=reference[:96],
        livemode=account.livemode,
        lines=[
            Line.debit(AccountKey("bank", 0, currency), net),
            Line.credit(AccountKey("channel_clearing", account.pk, currency), net),
        ],
        channel_account_id=account.pk,
        description=description,
    )


def recon_run(
    *, account: ChannelAccount, day: date, bill: BillFile | None = None, by: str = "system", progress: Progress = _noop
) -> ReconRun:
    """Reconciles one account and day; BillFileInvalid after flagging a malformed bill."""
    bill = bill or bill_for(account=account, day=day)
    earlier = ReconRun.objects.filter(bill=bill, status=ReconRunStatus.DONE).order_by("-id").first()
    if bill.status == BillFileStatus.LOADED and earlier is not None:
        return earlier
    if bill.status == BillFileStatus.INVALID:
        raise BillFileInvalid(f"bill {bill.file_name} ({bill.sha256[:12]}) is invalid: {bill.error}")
    try:
        with transaction.atomic():
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
        # The check and match statements are costed high (correlated subqueries per refund): JIT
        # would spend seconds compiling them and save nothing on hash joins.
        cursor.execute("SET LOCAL jit = off")
    # A newer file for the same day supersedes the lines of the older ones.
    BillLine.objects.filter(account_id=account.pk, day=day).exclude(bill=bill).delete()
    BillLine.objects.filter(bill=bill).delete()
    progress("load", 0, None)
    with open(bill_path(bill), "rb") as source:
        lines = bill_lines_copy(
            bill=bill, adapter=adapter_for(account), source=source, progress=lambda n: progress("load", n, None)
        )
    BillFile.objects.filter(pk=bill.pk).update(status=BillFileStatus.LOADED, line_count=lines, error="")
    bill.status = BillFileStatus.LOADED
    progress("internal check", 0, 1)
    problems = matching.internal_problems(account_id=account.pk, day=day)
    progress("internal check", 1, 1)
    progress("match", 0, 1)
    result = matching.match(account_id=account.pk, day=day, bill_id=bill.pk, run_id=run.pk)
    progress("match", 1, 1)
    progress("post", 0, len(result.cleared))
    cleared = 0
    for currency, net in result.cleared.items():
        clearing_post(
            account=account, currency=currency, net=net, reference=f"{account.pk}:{day}:{currency}:{bill.sha256[:16]}",
            description=f"matched on the {account.provider} bill of {day}",
        )  # fmt: skip
        cleared += net if currency == result.currency else 0
        progress("post", 1, len(result.cleared))
    counts = result.counts
    ReconRun.objects.filter(pk=run.pk).update(
        status=ReconRunStatus.DONE, lines=lines, matched=counts["matched"], held=counts["held"],
        local_missing=counts["local_missing"], channel_missing=counts["channel_missing"],
        amount_mismatch=counts["amount_mismatch"], status_mismatch=counts["status_mismatch"],
        fee_mismatch=counts["fee_mismatch"], internal_problems=problems, bill_amount=result.bill_amount,
        bill_fee=result.bill_fee, local_fee=result.local_fee, cleared_to_bank=cleared, currency=result.currency,
        finished_at=timezone.now(),
    )  # fmt: skip
    run.refresh_from_db()


def recon_run_all(*, day: date, by: str = "system", progress: Progress = _noop) -> list[tuple[ChannelAccount, object]]:
    """Every enabled account: (account, its run or the error that stopped it)."""
    outcomes: list[tuple[ChannelAccount, object]] = []
    for account in ChannelAccount.objects.filter(enabled=True).order_by("pk"):
        try:
            outcomes.append((account, recon_run(account=account, day=day, by=by, progress=progress)))
        except Exception as exc:
            outcomes.append((account, exc))
    return outcomes
