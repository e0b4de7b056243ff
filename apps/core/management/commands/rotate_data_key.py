"""Re-encrypts every secret at rest under the active data key, with no downtime.

The procedure:
1. Put the new key FIRST in PAYSYS_DATA_KEYS, keeping the old ones after it, and roll it out to
   every process. Each process then encrypts new writes with the new key and still reads the old.
2. `python manage.py rotate_data_key --new-key-id NEW`: rewrites every encrypted column of every
   model (found through the app registry: every EncryptedTextField and EncryptedJSONField) under
   the active key, in batches, one short single-row UPDATE at a time. Rows already under the
   active key are left alone, so the command is idempotent and can be re-run after an interruption.
3. When it reports nothing left under an old key, remove that key from PAYSYS_DATA_KEYS.

Each UPDATE is a compare-and-swap on the ciphertext read (`WHERE pk = … AND col = <old>`): a row
that a process rewrote meanwhile is skipped (it was rewritten under the active key) and counted
as changed concurrently; a re-run picks it up if it was not.
"""

from collections import Counter
from dataclasses import dataclass, field

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, models

from apps.core import crypto
from apps.core.fields import EncryptedJSONField, EncryptedTextField


@dataclass
class ModelReport:
    label: str
    columns: list[str]
    rows: int = 0
    rotated: int = 0
    current: int = 0
    concurrent: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)


def encrypted_models() -> list[tuple[type[models.Model], list[models.Field]]]:
    """Every concrete model with encrypted columns of its own table, in a stable order."""
    found = []
    for model in apps.get_models():
        opts = model._meta
        if opts.proxy or not opts.managed:
            continue
        fields = [f for f in opts.local_concrete_fields if isinstance(f, EncryptedTextField | EncryptedJSONField)]
        if fields:
            found.append((model, fields))
    return sorted(found, key=lambda item: item[0]._meta.label)


def _rotate_model(model, fields, *, active: str, batch_size: int, dry_run: bool) -> ModelReport:
    opts = model._meta
    quote = connection.ops.quote_name
    table, pk = quote(opts.db_table), quote(opts.pk.column)
    columns = [quote(f.column) for f in fields]
    report = ModelReport(label=opts.label, columns=[f.name for f in fields])
    select = f"SELECT {pk}, {', '.join(columns)} FROM {table}"
    first_batch = f"{select} ORDER BY {pk} LIMIT %s"
    next_batch = f"{select} WHERE {pk} > %s ORDER BY {pk} LIMIT %s"
    assignments = ", ".join(f"{c} = %s" for c in columns)
    unchanged = " AND ".join(f"{c} IS NOT DISTINCT FROM %s" for c in columns)
    update = f"UPDATE {table} SET {assignments} WHERE {pk} = %s AND {unchanged}"

    last = None
    while True:
        with connection.cursor() as cursor:
            if last is None:
                cursor.execute(first_batch, [batch_size])
            else:
                cursor.execute(next_batch, [last, batch_size])
            batch = cursor.fetchall()
        if not batch:
            return report
        for row_pk, *tokens in batch:
            last = row_pk
            report.rows += 1
            try:
                fresh = [
                    t if t is None or crypto.key_id_of(t) == active else crypto.encrypt(crypto.decrypt(t))
                    for t in tokens
                ]
            except Exception as exc:  # a value under a key that is not configured, or corrupt
                report.failed += 1
                report.failures.append(f"{opts.label} pk={row_pk}: {type(exc).__name__}: {exc}")
                continue
            if fresh == tokens:
                report.current += 1
                continue
            if dry_run:
                report.rotated += 1
                continue
            # One statement in autocommit: its own short transaction, touching one row.
            with connection.cursor() as cursor:
                cursor.execute(update, [*fresh, row_pk, *tokens])
                if cursor.rowcount == 1:
                    report.rotated += 1
                else:
                    report.concurrent += 1


def key_usage() -> Counter:
    """How many encrypted values each key id protects, over every encrypted column."""
    usage = Counter()
    quote = connection.ops.quote_name
    for model, fields in encrypted_models():
        for f in fields:
            column = quote(f.column)
            sql = (
                f"SELECT split_part({column}, ':', 2), count(*) FROM {quote(model._meta.db_table)} "
                f"WHERE {column} IS NOT NULL GROUP BY 1"
            )
            with connection.cursor() as cursor:
                cursor.execute(sql)
                for kid, count in cursor.fetchall():
                    usage[kid] += count
    return usage


class Command(BaseCommand):
    help = "Re-encrypts every encrypted column under the active data key (the first in PAYSYS_DATA_KEYS)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--new-key-id",
            required=True,
            help="the key id expected to be active (first in PAYSYS_DATA_KEYS); the command refuses otherwise",
        )
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--dry-run", action="store_true", help="count what would be re-encrypted; write nothing")

    def handle(self, *args, new_key_id: str, batch_size: int, dry_run: bool, **options):
        active, keys = crypto.data_keys()
        if active != new_key_id:
            raise CommandError(
                f"the active data key is {active!r}, not {new_key_id!r}: put {new_key_id!r} first in "
                f"PAYSYS_DATA_KEYS (keeping the old keys after it) on every process, then run this again"
            )
        if connection.in_atomic_block:
            raise CommandError("rotate_data_key must not run inside a transaction (each row commits on its own)")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")

        totals = ModelReport(label="total", columns=[])
        for model, fields in encrypted_models():
            report = _rotate_model(model, fields, active=active, batch_size=batch_size, dry_run=dry_run)
            self.stdout.write(
                f"{report.label} ({', '.join(report.columns)}): {report.rows} rows, "
                f"{report.rotated} {'to re-encrypt' if dry_run else 're-encrypted'}, {report.current} already current, "
                f"{report.concurrent} changed concurrently, {report.failed} failed"
            )
            for line in report.failures:
                self.stderr.write(f"  {line}")
            for name in ("rows", "rotated", "current", "concurrent", "failed"):
                setattr(totals, name, getattr(totals, name) + getattr(report, name))

        usage = key_usage()
        left = {kid: count for kid, count in usage.items() if kid != active}
        self.stdout.write(
            f"total: {totals.rows} rows, {totals.rotated} {'to re-encrypt' if dry_run else 're-encrypted'}, "
            f"{totals.concurrent} changed concurrently, {totals.failed} failed"
        )
        if left:
            described = ", ".join(f"{kid}: {count}" for kid, count in sorted(left.items()))
            self.stdout.write(f"values still under other keys: {described}; run again before removing those keys")
        else:
            removable = sorted(kid for kid in keys if kid != active)
            self.stdout.write(
                f"every encrypted value is under {active!r}"
                + (f"; keys no longer needed: {', '.join(removable)}" if removable else "")
            )
        if totals.failed:
            raise CommandError(f"{totals.failed} values could not be re-encrypted (see above)")
