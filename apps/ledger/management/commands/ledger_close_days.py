"""Closes every accounting day before today (what the beat task does), or up to --through."""

from datetime import date

from django.core.management.base import BaseCommand

from apps.ledger import services


class Command(BaseCommand):
    help = "Close accounting days (day cut) and store their trial balances."

    def add_arguments(self, parser):
        parser.add_argument("--through", type=date.fromisoformat, help="last day to close (default: yesterday)")

    def handle(self, *args, through=None, **options):
        if through is None:
            closed = services.ledger_days_close_due(by="command:ledger_close_days")
        else:
            closed = services.ledger_days_close(through=through, by="command:ledger_close_days")
        self.stdout.write(f"closed {len(closed)} day(s): {', '.join(d.isoformat() for d in closed) or '-'}")
