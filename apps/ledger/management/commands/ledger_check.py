"""Verifies the ledger's invariants; exits 1 naming each violation (docs/ledger.md)."""

from django.core.management.base import BaseCommand

from apps.ledger.selectors import ledger_violations


class Command(BaseCommand):
    help = "Check every ledger invariant; exit non-zero and name each violation."

    def handle(self, *args, **options):
        violations = ledger_violations()
        for violation in violations:
            self.stderr.write(f"VIOLATION: {violation}")
        if violations:
            self.stderr.write(f"ledger_check: {len(violations)} violation(s)")
            raise SystemExit(1)
        self.stdout.write("ledger_check: all invariants hold")
