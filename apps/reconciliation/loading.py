"""Normalization: a provider's bill file streamed into `reconciliation_billline` with COPY.

`adapter.parse_bill` yields one standard BillLine at a time; each becomes one row written to a
psycopg 3 COPY … FROM STDIN on Django's own connection (same transaction), so neither the file
nor its lines are ever held in memory. Amounts become integer minor units.
"""

from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal

from django.db import connection

from apps.channels.adapters.base import BillLine, BillLineKind, ChannelAdapter
from apps.core.money import exponent
from apps.reconciliation.models import BillFile

COLUMNS = (
    "bill_id", "account_id", "day", "kind", "ref", "trade_no", "out_trade_no", "out_refund_no", "refund_no",
    "amount", "fee", "currency", "status", "occurred_at",
)  # fmt: skip
REFUND = BillLineKind.REFUND.value


class _Minor:
    """Decimal → minor units with the currency's exponent, memoised per currency."""

    def __init__(self):
        self.scale: dict[str, int] = {}

    def __call__(self, value: Decimal, currency: str) -> int:
        exp = self.scale.get(currency)
        if exp is None:
            exp = self.scale[currency] = exponent(currency)
        return int(value.scaleb(exp))


def rows(lines: Iterator[BillLine], *, bill_id: int, account_id: int, day: date) -> Iterator[tuple]:
    minor = _Minor()
    for line in lines:
        currency = str(line.amount.currency)
        kind = line.kind.value
        ref = line.out_refund_no if kind == REFUND and line.out_refund_no else line.out_trade_no
        yield (
            bill_id, account_id, day, kind, ref, line.trade_no, line.out_trade_no, line.out_refund_no, line.refund_no,
            minor(line.amount.amount, currency), minor(line.fee.amount, currency), currency, line.status,
            line.occurred_at,
        )  # fmt: skip


def bill_lines_copy(
    *, bill: BillFile, adapter: ChannelAdapter, source, progress: Callable[[int], None] | None = None
) -> int:
    """COPYs the bill's lines into the table inside the caller's transaction; returns the count.

    BillInvalid from the parser propagates: the caller's transaction rolls the partial COPY back.
    """
    count = 0
    raw = connection.cursor().connection  # the psycopg 3 connection under Django's wrapper
    with raw.cursor() as cursor:
        sql = f"COPY reconciliation_billline ({', '.join(COLUMNS)}) FROM STDIN"
        with cursor.copy(sql) as copy:
            for row in rows(adapter.parse_bill(source), bill_id=bill.pk, account_id=bill.account_id, day=bill.day):
                copy.write_row(row)
                count += 1
                if progress is not None and not count % 10000:
                    progress(10000)
        # Fresh statistics, or the planner takes a just-loaded million lines for a handful and
        # anti-joins them in a nested loop (minutes instead of seconds).
        cursor.execute("ANALYZE reconciliation_billline")
    if progress is not None:
        progress(count % 10000)
    return count
