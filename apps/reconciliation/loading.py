"""Normalization: a provider's bill file streamed into `reconciliation_billline` with COPY.

`adapter.parse_bill` yields one standard BillLine (plain values, minor units) at a time; each
becomes one line of COPY text, written in blocks to a psycopg 3 COPY … FROM STDIN on Django's own
connection (same transaction). Neither the file nor its lines are ever held in memory: at most
one block of COPY text. PostgreSQL stores the block while the next one is parsed (two processes).
"""

from collections.abc import Callable, Iterator
from datetime import datetime

from django.db import connection

from apps.channels.adapters.base import BillLine, BillLineKind, ChannelAdapter
from apps.channels.adapters.bills import Memo
from apps.reconciliation.models import BillFile

COLUMNS = ("bill_id", "kind", "ref", "trade_no", "out_trade_no", "out_refund_no", "refund_no", "amount", "fee",
           "currency", "status", "occurred_at")  # fmt: skip
TABS = len(COLUMNS) - 1
REFUND = BillLineKind.REFUND.value
BLOCK = 2000  # lines per write: big enough to amortise the call, small enough to keep memory flat
PROGRESS_EVERY = 10_000


def _escaped(value: str) -> str:
    """A text value in COPY's text format (backslash escapes)."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _row(prefix: str, line: BillLine, stamp: str) -> str:
    """One line of COPY text with every text value escaped (the rare path of copy_blocks)."""
    kind, out_trade_no, out_refund_no, trade_no, refund_no, amount, fee, currency, status, _ = line
    ref = out_refund_no if kind == REFUND and out_refund_no else out_trade_no
    texts = (kind, ref, trade_no, out_trade_no, out_refund_no, refund_no, currency, status)
    kind, ref, trade_no, out_trade_no, out_refund_no, refund_no, currency, status = (_escaped(v) for v in texts)
    return (
        f"{prefix}{kind}\t{ref}\t{trade_no}\t{out_trade_no}\t{out_refund_no}\t{refund_no}\t{amount:d}\t{fee:d}\t"
        f"{currency}\t{status}\t{stamp}\n"
    )


def copy_blocks(lines: Iterator[BillLine], *, prefix: str) -> Iterator[tuple[str, int]]:
    """(COPY text, line count) per block of lines, `prefix` (the bill's id and a tab) first on each.

    Values are written as they are; a block whose text shows a tab, a newline or a backslash
    inside a value (none does in a sane bill) is written again with every value escaped.
    """
    times = Memo(datetime.isoformat)  # a bill repeats its times (to the second): each formatted once
    block: list[BillLine] = []
    rows: list[str] = []
    for line in lines:  # the hot loop: _row's format, inline
        block.append(line)
        kind, out_trade_no, out_refund_no, trade_no, refund_no, amount, fee, currency, status, at = line
        stamp = times[at]
        ref = out_refund_no if kind == REFUND and out_refund_no else out_trade_no
        rows.append(
            f"{prefix}{kind}\t{ref}\t{trade_no}\t{out_trade_no}\t{out_refund_no}\t{refund_no}\t{amount}\t{fee}\t"
            f"{currency}\t{status}\t{stamp}\n"
        )  # amount and fee are ints (BillLine)
        if len(rows) == BLOCK:
            yield _checked(prefix, block, rows, times), len(rows)
            block.clear()
            rows = []
    if rows:
        yield _checked(prefix, block, rows, times), len(rows)


def _checked(prefix: str, block: list[BillLine], rows: list[str], times: Memo) -> str:
    text = "".join(rows)
    n = len(rows)
    if text.count("\t") == TABS * n and text.count("\n") == n and "\\" not in text and "\r" not in text:
        return text
    return "".join(_row(prefix, line, times[line.occurred_at]) for line in block)


def bill_lines_copy(
    *, bill: BillFile, adapter: ChannelAdapter, source, progress: Callable[[int], None] | None = None
) -> int:
    """COPYs the bill's lines into the table inside the caller's transaction; returns the count.

    BillInvalid from the parser propagates: the caller's transaction rolls the partial COPY back.
    """
    count = 0
    raw = connection.cursor().connection  # the psycopg 3 connection under Django's wrapper
    with raw.cursor() as cursor:
        with cursor.copy(f"COPY reconciliation_billline ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            prefix = f"{bill.pk}\t"
            for text, lines in copy_blocks(adapter.parse_bill(source), prefix=prefix):
                copy.write(text)
                count += lines
                if progress is not None and not count % PROGRESS_EVERY:
                    progress(PROGRESS_EVERY)
        # Fresh statistics, or the planner takes a just-loaded million lines for a handful and
        # anti-joins them in a nested loop (minutes instead of seconds).
        cursor.execute("ANALYZE reconciliation_billline")
    if progress is not None:
        progress(count % PROGRESS_EVERY)
    return count
