"""Alipay's daily trade bill (`bill_type=trade`), as the sandbox publishes it (PROVIDERS.md A5).

A zip whose two members, `<account>_<yyyymmdd>_业务明细.csv` and `…_业务明细(汇总).csv`, are GBK
text, named in GBK with the zip's UTF-8 flag unset. The detail lists the app's payments (`交易`,
by payment time) and refunds (`退款`, negative amounts, by refund time) of one Asia/Shanghai day,
between Alipay's `#` comment header and footer. `<account>` is the seller id + `0156`.

Service fee (the sandbox's rule, documented for reconciliation): 0.6% of each line's amount,
rounded half-up to the fen; written negative on a payment line (the merchant pays it) and
positive on a refund line (the fee of the refunded part is given back).

Bill faults, read without being consumed (the same bill is the same file every download), per
app or per out_trade_no: BILL_MISSING_LINE drops a line; BILL_EXTRA_LINE adds a payment nobody
made (params.amount yuan, default "1.00"; params.out_trade_no); BILL_ALTERED_LINE changes one
line: params.field `amount` (params.delta fen, default 1, added to the amount's size), `fee`
(the same on the fee) or `status` (the business type flips: 交易 <-> 退款, Alipay's bill having no
status column). The target line is the fault's out_trade_no, else params.out_trade_no, else the
day's first payment line. The footer totals describe the lines as published.
"""

import csv
import io
import zipfile
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import urlencode

from django.core import signing
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from apps.sandbox import alipay_protocol as proto
from apps.sandbox.models import AlipayApp, AlipayRefund, AlipayTrade, FaultKind, SandboxFault

FEE_RATE = Decimal("0.006")
FEN = Decimal("0.01")
LINK_MAX_AGE_SECONDS = 30  # Alipay's download links live about 30 s
LINK_SALT = "sandbox.alipay.bill"
LINE_END = "\r\n"
RULE = "-" * 41

DETAIL_COLUMNS = (  # noqa: SIM905 - the header line exactly as Alipay writes it
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,"
    "订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,"
    "券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注"
).split(",")
SUMMARY_COLUMNS = (  # noqa: SIM905
    "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,商家优惠（元）,"
    "卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）"
).split(",")
PAYMENT, REFUND = "交易", "退款"
BILL_FAULTS = (FaultKind.BILL_MISSING_LINE, FaultKind.BILL_EXTRA_LINE, FaultKind.BILL_ALTERED_LINE)


def service_fee(amount: Decimal) -> Decimal:
    """0.6% of the amount's size, rounded half-up to the fen."""
    return (abs(amount) * FEE_RATE).quantize(FEN, rounding=ROUND_HALF_UP)


def bill_account(app: AlipayApp) -> str:
    return f"{app.seller_id}0156"


def bill_file_name(app: AlipayApp, bill_date: date) -> str:
    return f"{bill_account(app)}_{bill_date:%Y%m%d}.csv.zip"


# --- download links ----------------------------------------------------------------------------


def bill_download_path(*, app: AlipayApp, bill_date: date) -> str:
    """The path (and query) of a short-lived link to the app's bill of that day."""
    token = signing.TimestampSigner(salt=LINK_SALT).sign(f"{app.app_id}:{bill_date:%Y%m%d}")
    query = urlencode({"bill": token, "downloadFileName": bill_file_name(app, bill_date)})
    return f"{reverse('sandbox:alipay-bill-file')}?{query}"


def bill_link_read(token: str) -> tuple[str, date] | None:
    """(app_id, bill date) of a link still valid; None when expired or forged."""
    try:
        value = signing.TimestampSigner(salt=LINK_SALT).unsign(token, max_age=LINK_MAX_AGE_SECONDS)
        app_id, day = value.split(":", 1)
        return app_id, datetime.strptime(day, "%Y%m%d").date()
    except (signing.BadSignature, ValueError):
        return None


# --- lines -------------------------------------------------------------------------------------


@dataclass
class _Line:
    kind: str  # PAYMENT or REFUND
    trade_no: str
    out_trade_no: str
    subject: str
    created_at: datetime
    finished_at: datetime
    buyer: str
    amount: Decimal  # signed: negative on refund lines
    fee: Decimal  # signed: negative on payment lines
    out_request_no: str = ""

    def cells(self) -> list[str]:
        zero = "0.00"
        amount = proto.format_amount(self.amount)
        return [
            f"{self.trade_no}\t", f"{self.out_trade_no}\t", self.kind, self.subject,
            proto.format_time(self.created_at), proto.format_time(self.finished_at), "", "", "", "", self.buyer,
            amount, amount, zero, zero, zero, zero, zero, "", zero, zero,
            f"{self.out_request_no}\t" if self.out_request_no else "", proto.format_amount(self.fee), zero, "",
        ]  # fmt: skip


def _day_window(bill_date: date) -> tuple[datetime, datetime]:
    start = datetime.combine(bill_date, time.min, tzinfo=proto.ALIPAY_TZ)
    return start, start + timedelta(days=1)


def _lines(app: AlipayApp, bill_date: date) -> list[_Line]:
    start, end = _day_window(bill_date)
    lines = [
        _Line(PAYMENT, t.trade_no, t.out_trade_no, t.subject, t.created_at, t.paid_at, t.buyer_logon_id,
              t.total_amount, -service_fee(t.total_amount))
        for t in AlipayTrade.objects.filter(app=app, paid_at__gte=start, paid_at__lt=end).order_by("paid_at", "id")
    ]  # fmt: skip
    refunds = (
        AlipayRefund.objects.filter(trade__app=app, refunded_at__gte=start, refunded_at__lt=end)
        .select_related("trade")
        .order_by("refunded_at", "id")
    )
    lines += [
        _Line(REFUND, r.trade.trade_no, r.trade.out_trade_no, r.trade.subject, r.trade.created_at, r.refunded_at,
              r.trade.buyer_logon_id, -r.refund_amount, service_fee(r.refund_amount), r.out_request_no)
        for r in refunds
    ]  # fmt: skip
    lines.sort(key=lambda line: line.finished_at)
    return lines


def _bill_faults(app: AlipayApp) -> list[SandboxFault]:
    """The enabled bill faults of the app (apps.sandbox.faults' scope rule), not consumed."""
    return list(
        SandboxFault.objects.filter(provider="alipay", kind__in=BILL_FAULTS, enabled=True)
        .filter(Q(merchant_ref="") | Q(merchant_ref=app.app_id))
        .filter(Q(remaining__isnull=True) | Q(remaining__gt=0))
        .order_by("id")
    )


def _target(lines: list[_Line], fault: SandboxFault) -> _Line | None:
    wanted = fault.out_trade_no or str((fault.params or {}).get("out_trade_no") or "")
    candidates = [line for line in lines if not wanted or line.out_trade_no == wanted]
    payments = [line for line in candidates if line.kind == PAYMENT]
    return (payments or candidates or [None])[0]


def _apply_faults(lines: list[_Line], faults: list[SandboxFault], bill_date: date) -> list[_Line]:
    lines = list(lines)
    for fault in faults:
        params = fault.params or {}
        if fault.kind == FaultKind.BILL_EXTRA_LINE:
            amount = proto.parse_amount(params.get("amount", "1.00")) or Decimal("1.00")
            at = datetime.combine(bill_date, time(12, 0), tzinfo=proto.ALIPAY_TZ)
            out_trade_no = fault.out_trade_no or str(params.get("out_trade_no") or f"extra{proto.random_digits(12)}")
            lines.append(
                _Line(PAYMENT, proto.new_trade_no(at), out_trade_no, "extra", at, at, "ext***@sandbox.com",
                      amount, -service_fee(amount))
            )  # fmt: skip
            continue
        target = _target(lines, fault)
        if target is None:
            continue
        if fault.kind == FaultKind.BILL_MISSING_LINE:
            lines.remove(target)
        elif fault.kind == FaultKind.BILL_ALTERED_LINE:
            field = params.get("field", "amount")
            delta = Decimal(int(params.get("delta", 1))).scaleb(-2)
            if field == "amount":
                target.amount += delta if target.amount >= 0 else -delta
            elif field == "fee":
                target.fee += delta if target.fee >= 0 else -delta
            elif field == "status":
                target.kind = REFUND if target.kind == PAYMENT else PAYMENT
    lines.sort(key=lambda line: line.finished_at)
    return lines


# --- files -------------------------------------------------------------------------------------


def _cn_time(value: datetime) -> str:
    return value.astimezone(proto.ALIPAY_TZ).strftime("%Y年%m月%d日 %H:%M:%S")


def _csv_text(rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=LINE_END)
    writer.writerows(rows)
    return out.getvalue()


def detail_text(app: AlipayApp, bill_date: date, lines: list[_Line], *, exported_at: datetime) -> str:
    start, end = _day_window(bill_date)
    payments = [line for line in lines if line.kind == PAYMENT]
    refunds = [line for line in lines if line.kind == REFUND]
    head = [
        "#支付宝业务明细查询",
        f"#账号：[{bill_account(app)}]",
        f"#起始日期：[{_cn_time(start)}]   终止日期：[{_cn_time(end)}]",
        f"#{RULE}业务明细列表{'-' * 40}",
    ]
    paid = proto.format_amount(sum((p.amount for p in payments), Decimal(0)))
    refunded = proto.format_amount(sum((r.amount for r in refunds), Decimal(0)))
    foot = [
        f"#{RULE}业务明细列表结束{'-' * 36}",
        f"#交易合计：{len(payments)}笔，商家实收共{paid}元，商家优惠共0.00元",
        f"#退款合计：{len(refunds)}笔，商家实收退款共{refunded}元，商家优惠退款共0.00元",
        f"#导出时间：[{_cn_time(exported_at)}]",
    ]
    body = _csv_text([DETAIL_COLUMNS, *(line.cells() for line in lines)])
    return LINE_END.join(head) + LINE_END + body + LINE_END.join(foot) + LINE_END


def summary_text(app: AlipayApp, bill_date: date, lines: list[_Line], *, exported_at: datetime) -> str:
    start, end = _day_window(bill_date)
    received = sum((line.amount for line in lines), Decimal(0))
    fees = sum((line.fee for line in lines), Decimal(0))
    counts = [str(sum(line.kind == PAYMENT for line in lines)), str(sum(line.kind == REFUND for line in lines))]
    money = [proto.format_amount(v) for v in (received, received, Decimal(0), Decimal(0), Decimal(0), fees,
                                               Decimal(0), received + fees)]  # fmt: skip
    head = [
        "#支付宝业务汇总查询",
        f"#账号：[{bill_account(app)}]",
        f"#起始日期：[{_cn_time(start)}]   终止日期：[{_cn_time(end)}]",
        f"#{RULE}业务汇总列表{'-' * 40}",
    ]
    foot = [f"#{RULE}业务汇总列表结束{'-' * 36}", f"#导出时间：[{_cn_time(exported_at)}]"]
    body = _csv_text([SUMMARY_COLUMNS, ["", "", *counts, *money], ["合计", "", *counts, *money]])
    return LINE_END.join(head) + LINE_END + body + LINE_END.join(foot) + LINE_END


class _GbkZipInfo(zipfile.ZipInfo):
    """A member named in GBK with the UTF-8 flag unset, as Alipay's archives are."""

    def _encodeFilenameFlags(self):  # zipfile's own hook
        return self.filename.encode("gbk"), self.flag_bits


def bill_zip(*, app: AlipayApp, bill_date: date, now: datetime | None = None) -> tuple[str, bytes]:
    """(file name, zip bytes) of the app's trade bill of `bill_date`, faults applied."""
    now = now or timezone.now()
    lines = _apply_faults(_lines(app, bill_date), _bill_faults(app), bill_date)
    stem = f"{bill_account(app)}_{bill_date:%Y%m%d}"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in (
            (f"{stem}_业务明细.csv", detail_text(app, bill_date, lines, exported_at=now)),
            (f"{stem}_业务明细(汇总).csv", summary_text(app, bill_date, lines, exported_at=now)),
        ):
            info = _GbkZipInfo(name, date_time=now.astimezone(proto.ALIPAY_TZ).timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text.encode("gbk", errors="replace"))
    return bill_file_name(app, bill_date), out.getvalue()
