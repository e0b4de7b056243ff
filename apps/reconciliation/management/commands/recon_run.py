"""`python manage.py recon_run --account A --date D` (or `--all --date D`): reconcile with a
progress bar per stage. Exit 1 when a run failed (e.g. a malformed bill), with the reason."""

from datetime import date

from django.core.management.base import BaseCommand, CommandError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from apps.channels.models import ChannelAccount
from apps.reconciliation.models import ReconRun
from apps.reconciliation.services import recon_run


class Command(BaseCommand):
    help = "Reconcile channel accounts' bills of a day against paysys."

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--account", help="channel account id or name")
        target.add_argument("--all", action="store_true", help="every enabled channel account")
        parser.add_argument("--date", required=True, type=date.fromisoformat, help="bill day, YYYY-MM-DD")

    def handle(self, *args, **options):
        day = options["date"]
        if options["all"]:
            accounts = list(ChannelAccount.objects.filter(enabled=True).order_by("pk"))
        else:
            ref = options["account"]
            account = ChannelAccount.objects.filter(pk=int(ref) if ref.isdigit() else None).first() or (
                ChannelAccount.objects.filter(name=ref).first()
            )
            if account is None:
                raise CommandError(f"no channel account {ref!r}")
            accounts = [account]
        console = Console(file=self.stdout, force_terminal=False, width=100)
        failures = 0
        for account in accounts:
            console.print(f"[bold]{account.name}[/bold] (#{account.pk}) {day}")
            try:
                run = self._run(account, day, console)
            except Exception as exc:
                failures += 1
                console.print(f"  ERROR: {exc}")
                continue
            console.print(f"  {summary(run)}")
        if failures:
            raise CommandError(f"{failures} of {len(accounts)} account(s) failed")

    def _run(self, account, day, console) -> ReconRun:
        columns = (TextColumn("  {task.description:<15}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=False) as bars:
            tasks: dict[str, int] = {}

            def progress(stage: str, advance: int, total: int | None) -> None:
                if stage not in tasks:
                    tasks[stage] = bars.add_task(stage, total=total)
                bars.update(tasks[stage], advance=advance)
                if stage == "load" and total is None:
                    bars.update(tasks[stage], total=bars.tasks[tasks[stage]].completed)

            return recon_run(account=account, day=day, by="command:recon_run", progress=progress)


def summary(run: ReconRun) -> str:
    return (
        f"run {run.pk}: {run.lines} lines, {run.matched} matched, {run.held} held; local_missing {run.local_missing},"
        f" channel_missing {run.channel_missing}, amount_mismatch {run.amount_mismatch}, status_mismatch"
        f" {run.status_mismatch}, fee_mismatch {run.fee_mismatch}, duplicate_line {run.duplicate_line};"
        f" internal problems {len(run.internal_problems)}"
    )
