#!/usr/bin/env python3
"""Reconciliation of a 1,000,000-line Alipay bill against 1,000,000 local payments, and a raw COPY
of the same file, in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/recon.py \
        [--lines 1000000] [--discrepancies 400]

1. Recreates the database `paysys_bench_recon` on that server and migrates it.
2. Seeds (not timed): one merchant, app, order and Alipay channel account; then COPYs `--lines`
   succeeded charges straight into `payments_charge` (all on that one order: the bench needs the
   rows reconciliation reads, not a realistic order history) and one `payment.succeeded` journal
   entry per charge into `ledger_journalentry` (entries only, no postings: the internal check reads
   entries; ledger_check is not meant to pass on this database).
3. Writes the bill (not timed): Alipay's format exactly as the sandbox publishes it (zip, GBK
   detail member, `#` header and footer with the counts), one `交易` line per charge, with seeded
   discrepancies spread over the file: a fifth each of lines left out (channel_missing), extra
   lines nobody paid (local_missing), altered amounts, altered fees and flipped business types
   (status_mismatch).
4. Measures, in a fresh child process (so its peak RSS is the run's, not the seeding's), each
   phase after a CHECKPOINT (so that neither pays for the dirty pages of what came before):
   (a) the baseline, a raw COPY of the same file's detail lines (unzipped, CSV as is, GBK) into
       an unindexed table of 25 text columns; then (b) the upload (hash and store, reported
       apart) and `recon_run` on the stored bill: parse (adapter.parse_bill), COPY into bill
       lines, ANALYZE, internal check, two-way match, discrepancies and holds, the clearing
       posting, commit — wall seconds per stage and in all; the ratio b/a; ru_maxrss.
5. Prints the figures and PASS/FAIL against the targets: run ≤ 60 s, ≤ 5× raw COPY, < 300 MB,
   every seeded discrepancy found.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
import zipfile
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import make_log, with_database  # noqa: E402

log = make_log("bench-recon")
BENCH_DB = "paysys_bench_recon"
TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 1, 15)
TARGET_SECONDS, TARGET_RATIO, TARGET_MB = 60.0, 5.0, 300.0
RUN_FIELDS = ("lines", "matched", "held", "local_missing", "channel_missing", "amount_mismatch", "status_mismatch",
              "fee_mismatch", "cleared_to_bank")  # fmt: skip
BILL_DIR = ROOT / "var" / "bench" / "recon"

COLUMNS = (
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,"
    "订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,"
    "券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注"
)


def fee_of(minor: int) -> int:
    return int((Decimal(minor) * Decimal("0.006")).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def amount_of(i: int) -> int:
    return 100 + (i * 7919) % 99_900  # 1.00 … 999.99 CNY, deterministic


def paid_at_of(i: int, n: int) -> datetime:
    # Spread over the day, kept clear of the cross-day window at both ends.
    return datetime.combine(DAY, datetime.min.time(), TZ) + timedelta(seconds=900 + (i * 84_600 * 0.97) // n)


def yuan(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


# --------------------------------------------------------------------------- setup (parent)


def setup_django(db_url: str) -> None:
    os.environ["DATABASE_URL"] = db_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paysys.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def seed(n: int) -> dict:
    from django.db import connection

    from apps.channels.services import channel_account_upsert
    from apps.core import crypto
    from apps.merchants.services import app_create, merchant_get_or_create
    from apps.orders.models import Order

    key = crypto.rsa_generate()
    app, _ = app_create(merchant=merchant_get_or_create(name="Bench"), name="bench app", public_key_pem="",
                        webhook_url="")  # fmt: skip
    account = channel_account_upsert(
        name="Bench Alipay", provider="alipay", base_url="http://127.0.0.1:9/gateway.do",
        credentials={"app_id": "2021000000000001", "app_private_key": crypto.private_key_pem(key),
                     "alipay_public_key": crypto.public_key_pem(key)},
        methods=["alipay_qr"], currencies=["CNY"], livemode=False,
    )  # fmt: skip
    order = Order.objects.create(app=app, order_no="bench", livemode=False, amount_currency="CNY", amount=1,
                                 subject="s", body="b")  # fmt: skip
    started = time.perf_counter()
    raw = connection.cursor().connection
    cols = ("public_id, livemode, channel, amount_currency, amount, client_ip, subject, body, description, extra,"
            " metadata, credential, transaction_no, status, time_expire, paid_at, failure_code, failure_msg,"
            " exception, exception_detail, request_id, created_at, app_id, channel_account_id, order_id,"
            " query_attempts, reversed, channel_fee, channel_fee_currency, platform_fee,"
            " platform_fee_currency")  # fmt: skip
    with raw.cursor() as cur:
        with cur.copy(f"COPY payments_charge ({cols}) FROM STDIN") as copy:
            for i in range(n):
                at = paid_at_of(i, n)
                minor = amount_of(i)
                copy.write_row((
                    f"ch_b{i:012d}", False, "alipay_qr", "CNY", yuan(minor), "127.0.0.1", "s", "b", "", "{}", "{}",
                    "{}", f"2026{i:016d}", "succeeded", at + timedelta(hours=2), at, "", "", "", "{}", "", at,
                    app.pk, account.pk, order.pk, 0, False, yuan(fee_of(minor)), "CNY", "0", "CNY",
                ))  # fmt: skip
        with cur.copy(
            "COPY ledger_journalentry (event_type, reference, livemode, accounting_date, occurred_at, merchant_id,"
            " channel_account_id, description, created_at) FROM STDIN"
        ) as copy:
            for i in range(n):
                at = paid_at_of(i, n)
                copy.write_row(
                    ("payment.succeeded", f"ch_b{i:012d}", False, DAY, at, app.merchant_id, account.pk, "", at)
                )
    raw.commit()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE payments_charge")
        cursor.execute("ANALYZE ledger_journalentry")
    log(f"seeded {n} charges and entries in {time.perf_counter() - started:.1f} s")
    return {"account_id": account.pk}


def write_bill(path: Path, n: int, seeded: int) -> dict:
    """The Alipay trade bill zip with `seeded` discrepancies; returns what was seeded."""
    rng = random.Random(7)
    per = seeded // 5
    picked = rng.sample(range(n), 4 * per)
    missing, amount, fee, status = (set(picked[k * per : (k + 1) * per]) for k in range(4))
    extra_every = n // per
    expected = {"channel_missing": per, "local_missing": per, "amount_mismatch": per, "fee_mismatch": per,
                "status_mismatch": per, "cleared_to_bank": 0}  # fmt: skip
    counts = {"交易": 0, "退款": 0}
    totals = {"交易": 0, "退款": 0}
    start = datetime.combine(DAY, datetime.min.time())
    zero = "0.00"

    def line(trade_no, out_trade_no, kind, at, minor, fee_minor) -> str:
        stamp = at.strftime("%Y-%m-%d %H:%M:%S")
        money = yuan(minor) if kind == "交易" else "-" + yuan(minor)
        fee_text = ("-" if kind == "交易" else "") + yuan(fee_minor)
        counts[kind] += 1
        totals[kind] += minor if kind == "交易" else -minor
        return (
            f"{trade_no}\t,{out_trade_no}\t,{kind},s,{stamp},{stamp},,,,,buy***@sandbox.com,{money},{money},"
            f"{zero},{zero},{zero},{zero},{zero},,{zero},{zero},,{fee_text},{zero},\r\n"
        )

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:  # noqa: SIM117 - open needs it
        with archive.open(f"2088000000000001_{DAY:%Y%m%d}_业务明细.csv", "w", force_zip64=True) as member:
            head = (
                "#支付宝业务明细查询\r\n#账号：[20880000000000010156]\r\n"
                f"#起始日期：[{DAY:%Y年%m月%d日} 00:00:00]   "
                f"终止日期：[{DAY + timedelta(days=1):%Y年%m月%d日} 00:00:00]\r\n"
                f"#{'-' * 41}业务明细列表{'-' * 40}\r\n{COLUMNS}\r\n"
            )
            member.write(head.encode("gbk"))
            buffer: list[str] = []
            for i in range(n):
                at = paid_at_of(i, n).replace(tzinfo=None)
                minor = amount_of(i)
                if i not in missing:
                    kind = "退款" if i in status else "交易"
                    bill_minor = minor + 3 if i in amount else minor
                    bill_fee = fee_of(minor) + 2 if i in fee else fee_of(minor)
                    buffer.append(line(f"2026{i:016d}", f"ch_b{i:012d}", kind, at, bill_minor, bill_fee))
                    if i not in amount and i not in fee and i not in status:  # matched: cleared to bank
                        expected["cleared_to_bank"] += minor - fee_of(minor)
                if i % extra_every == 0 and i // extra_every < per:
                    buffer.append(line(f"2099{i:016d}", f"ch_x{i:012d}", "交易", at, 1234, fee_of(1234)))
                if len(buffer) >= 10_000:
                    member.write("".join(buffer).encode("gbk"))
                    buffer.clear()
            member.write("".join(buffer).encode("gbk"))
            foot = (
                f"#{'-' * 41}业务明细列表结束{'-' * 36}\r\n"
                f"#交易合计：{counts['交易']}笔，商家实收共{yuan(totals['交易'])}元，商家优惠共0.00元\r\n"
                f"#退款合计：{counts['退款']}笔，商家实收退款共-{yuan(-totals['退款'])}元，商家优惠退款共0.00元\r\n"
                f"#导出时间：[{start:%Y年%m月%d日} 09:00:00]\r\n"
            )
            member.write(foot.encode("gbk"))
    return {"lines": counts["交易"] + counts["退款"], "expected": expected}


# --------------------------------------------------------------------------- measure (child)


def checkpoint() -> None:
    """Writes out what earlier phases left dirty, so that neither measured phase pays for it."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")


def raw_copy(bill_file: str) -> tuple[float, int]:
    """The baseline: the file's detail lines, unzipped, CSV as is, into an unindexed table of 25
    text columns with a plain COPY (PostgreSQL parses the CSV and converts from GBK)."""
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS bench_raw_bill")
        cursor.execute(f"CREATE TABLE bench_raw_bill ({', '.join(f'c{i} text' for i in range(25))})")
    checkpoint()
    started = time.perf_counter()
    with transaction.atomic():
        pg = connection.cursor().connection
        with pg.cursor() as cursor, zipfile.ZipFile(bill_file) as archive:
            member = next(i for i in archive.infolist() if "汇总" not in i.filename)
            with (
                archive.open(member) as source,
                cursor.copy("COPY bench_raw_bill FROM STDIN (FORMAT csv, ENCODING 'GBK')") as copy,
            ):
                for _ in range(5):  # the # header lines and the column header
                    source.readline()
                chunk: list[bytes] = []
                for raw_line in source:
                    if raw_line.startswith(b"#"):
                        break  # the footer
                    chunk.append(raw_line)
                    if len(chunk) >= 20_000:
                        copy.write(b"".join(chunk))
                        chunk.clear()
                copy.write(b"".join(chunk))
    seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM bench_raw_bill")
        return seconds, cursor.fetchone()[0]


def measure(account_id: int, bill_file: str) -> dict:
    """The raw COPY first, then the upload and the run (each after a checkpoint): the run pays
    for anything the baseline left behind, never the other way round."""
    from apps.channels.models import ChannelAccount
    from apps.reconciliation.bills import bill_upload
    from apps.reconciliation.services import RUN_SETTINGS, recon_run

    raw_seconds, raw_rows = raw_copy(bill_file)
    account = ChannelAccount.objects.get(pk=account_id)
    stages: dict[str, float] = {}
    marks = {"t": time.perf_counter(), "stage": "store"}

    def progress(stage: str, advance: int, total: int | None) -> None:
        if stage != marks["stage"]:
            now = time.perf_counter()
            stages[marks["stage"]] = stages.get(marks["stage"], 0) + now - marks["t"]
            marks.update(t=now, stage=stage)

    checkpoint()
    started = time.perf_counter()
    with open(bill_file, "rb") as content:
        bill, _ = bill_upload(account=account, day=DAY, file_name=Path(bill_file).name, content=content, by="bench")
    stored = time.perf_counter()
    marks.update(t=stored, stage="load")
    run = recon_run(account=account, day=DAY, bill=bill, by="bench", progress=progress)
    finished = time.perf_counter()
    stages[marks["stage"]] = stages.get(marks["stage"], 0) + finished - marks["t"]
    return {
        "store_seconds": round(stored - started, 2),
        "run_seconds": round(finished - stored, 2),
        "stages": {k: round(v, 2) for k, v in stages.items()},
        "raw_copy_seconds": round(raw_seconds, 2),
        "raw_rows": raw_rows,
        "ratio": round((finished - stored) / raw_seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "run_settings": list(RUN_SETTINGS),
        "run": {k: getattr(run, k) for k in RUN_FIELDS},
        "internal_problems": len(run.internal_problems),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--discrepancies", type=int, default=400)
    parser.add_argument("--measure", nargs=2, metavar=("ACCOUNT", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    server = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    if args.measure:
        setup_django(server)
        print(json.dumps(measure(int(args.measure[0]), args.measure[1])))
        return 0

    import psycopg

    with psycopg.connect(with_database(server, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    db_url = with_database(server, BENCH_DB)
    env = {**os.environ, "DATABASE_URL": db_url, "PAYSYS_VAR_DIR": str(BILL_DIR)}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    os.environ["PAYSYS_VAR_DIR"] = str(BILL_DIR)
    setup_django(db_url)
    BILL_DIR.mkdir(parents=True, exist_ok=True)
    seeded = seed(args.lines)
    bill_file = BILL_DIR / f"bench_{args.lines}.csv.zip"
    started = time.perf_counter()
    bill = write_bill(bill_file, args.lines, args.discrepancies)
    log(f"wrote {bill['lines']} bill lines ({bill_file.stat().st_size / 1e6:.1f} MB zipped) in"
        f" {time.perf_counter() - started:.1f} s")  # fmt: skip
    child = subprocess.run(
        [sys.executable, __file__, "--measure", str(seeded["account_id"]), str(bill_file)],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    result = json.loads(child.stdout.strip().splitlines()[-1])
    result["expected"] = bill["expected"]
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    print(json.dumps(result, indent=2, ensure_ascii=False))
    found_ok = all(result["run"][k] == v for k, v in bill["expected"].items())
    checks = {
        f"run ≤ {TARGET_SECONDS:.0f} s": result["run_seconds"] <= TARGET_SECONDS,
        f"ratio ≤ {TARGET_RATIO:.0f}× raw COPY": result["ratio"] <= TARGET_RATIO,
        f"peak RSS < {TARGET_MB:.0f} MB": result["peak_rss_mb"] < TARGET_MB,
        "every seeded discrepancy found, the matched net cleared to bank": found_ok,
    }
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
