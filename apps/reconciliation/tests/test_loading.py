"""Bill lines as COPY text: written as they are, escaped when a value holds a tab, newline or backslash."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.db import connection

from apps.channels.adapters.base import BillLine
from apps.reconciliation.loading import COLUMNS, copy_blocks

AT = datetime(2026, 1, 15, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def line(out_trade_no: str, out_refund_no: str = "", kind: str = "payment") -> BillLine:
    return BillLine(kind, out_trade_no, out_refund_no, "T1", "", 750, 5, "CNY", "succeeded", AT)


def test_plain_lines_are_one_copy_line_each_with_the_refund_id_as_ref_on_refund_lines():
    ((text, count),) = copy_blocks(iter([line("ch_a"), line("ch_a", "re_b", "refund")]), prefix="7\t")

    assert count == 2
    assert text.splitlines() == [
        "7\tpayment\tch_a\tT1\tch_a\t\t\t750\t5\tCNY\tsucceeded\t2026-01-15T10:00:00+08:00",
        "7\trefund\tre_b\tT1\tch_a\tre_b\t\t750\t5\tCNY\tsucceeded\t2026-01-15T10:00:00+08:00",
    ]


@pytest.mark.django_db
def test_a_value_with_a_tab_newline_or_backslash_reaches_the_table_as_it_was():
    odd = ["ch_\ttab", "ch_\\slash", "ch_new\nline", "ch_cr\rx"]
    blocks = list(copy_blocks(iter([line("ch_plain"), *(line(v) for v in odd)]), prefix="1\t"))

    with connection.cursor() as cursor:
        with (
            cursor.connection.cursor() as raw,
            raw.copy(f"COPY reconciliation_billline ({', '.join(COLUMNS)}) FROM STDIN") as copy,
        ):
            for text, _ in blocks:
                copy.write(text)
        cursor.execute("SELECT out_trade_no, amount, occurred_at FROM reconciliation_billline ORDER BY id")
        rows = cursor.fetchall()

    assert rows == [(v, 750, AT) for v in ["ch_plain", *odd]]
