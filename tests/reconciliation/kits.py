"""One kit per provider: how the reconciliation tests make a day of business at its sandbox, move
it in time, inject its bill faults and damage its bill file. The tests themselves are the same for
every provider format (Alipay's zipped GBK CSV, WeChat Pay's gzipped backtick text, UnionPay's
zipped fixed-width ZM file)."""

import csv
import gzip
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import requests
from django.core.management import call_command
from django.db import connection

from apps.channels.models import ChannelAccount
from apps.channels.services import adapter_for, channel_account_upsert
from apps.ledger.models import FeePlan
from apps.payments.models import Refund, RefundStatus
from apps.payments.refunds import refund_query
from apps.sandbox.faults import fault_set
from tests.support import charge_payload

NOBODY = "ch_nobody00001"  # a charge id no one made (UnionPay's orderId needs 8+ letters and digits)


def channel_cost_plan(account: ChannelAccount) -> None:
    """The channel's real cost: 0.6 %, half-up, returned on refunds (as every sandbox charges)."""
    FeePlan.objects.create(
        name=f"{account.provider} cost", kind="channel", owner_type="channel_account", owner_id=account.pk,
        currency="CNY", rate=Decimal("0.006"), rounding="ROUND_HALF_UP", refund_returns_fee=True,
    )  # fmt: skip


def sandbox_account(provider: str, base_url: str, method: str) -> tuple[ChannelAccount, dict]:
    out = io.StringIO()
    call_command("sandbox_account_create", provider=provider, json=True, stdout=out)
    credentials = {k: v for k, v in json.loads(out.getvalue()).items() if k != "provider"}
    account = channel_account_upsert(
        name=f"Sandbox {provider} (recon)", provider=provider, base_url=base_url, credentials=credentials,
        methods=[method], currencies=["CNY"], livemode=False,
    )  # fmt: skip
    return account, credentials


def _sql(statement: str, params=None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


@dataclass
class Kit:
    provider: str
    account: ChannelAccount
    merchant_ref: str  # the sandbox's fault scope: Alipay app_id, WeChat mchid, UnionPay merId
    channel: str
    extra: dict = field(default_factory=dict)

    # --- a day of business ---------------------------------------------------------------------

    def charge(self, api, merchant, order_no: str, amount: int) -> dict:
        payload = charge_payload(merchant, order_no=order_no, channel=self.channel, extra=self.extra, amount=amount)
        response = api.post("/v1/charges", payload)
        assert response.status_code == 200, response.content
        return response.json()

    def pay(self, api, merchant, order_no: str, amount: int) -> str:
        """A charge the payer pays at the sandbox; its id."""
        charge = self.charge(api, merchant, order_no, amount)
        self.payer_pays(charge["credential"][self.channel])
        return charge["id"]

    def payer_pays(self, credential) -> None:
        assert requests.post(credential, data={"result": "success"}, timeout=10).status_code == 200

    def refund(self, api, charge_id: str, amount: int) -> str:
        response = api.post(f"/v1/charges/{charge_id}/refunds", {"amount": amount, "description": "r"})
        assert response.status_code == 200, response.content
        refund = Refund.objects.get(public_id=response.json()["id"])
        if refund.status == RefundStatus.PENDING:  # a provider that settles refunds later: ask it
            refund_query(refund_id=refund.pk)
        assert Refund.objects.get(pk=refund.pk).status == RefundStatus.SUCCEEDED
        return refund.public_id

    # --- time ----------------------------------------------------------------------------------

    def shift_days(self, days: int) -> None:
        """What both systems recorded happened `days` days earlier (ledger entries keep their
        dates: reconciliation finds them by reference)."""
        interval = f"interval '{days} day'"
        _sql(f"UPDATE payments_charge SET paid_at = paid_at - {interval}, created_at = created_at - {interval}")
        _sql(
            f"UPDATE payments_refund SET succeeded_at = succeeded_at - {interval}, created_at = created_at - {interval}"
        )
        self._sandbox_shift(interval)

    def _sandbox_shift(self, interval: str) -> None:
        raise NotImplementedError

    def move_paid_at(self, charge_id: str, *, local: datetime, channel: datetime) -> None:
        """paysys saw the payment at `local`; the channel booked it at `channel` (cross-day tests)."""
        _sql("UPDATE payments_charge SET paid_at = %s WHERE public_id = %s", [local, charge_id])
        self.book_at(charge_id, channel)

    def book_at(self, charge_id: str, at: datetime) -> None:
        """The channel booked the payment at `at` (its bill lists it on that day)."""
        raise NotImplementedError

    # --- bill faults ---------------------------------------------------------------------------

    def fault_ref(self, paysys_id: str) -> str:
        """The payment as the sandbox names it in a fault's scope."""
        return paysys_id

    def missing_line(self, charge_id: str) -> None:
        fault_set(provider=self.provider, kind="bill_missing_line", merchant_ref=self.merchant_ref,
                  out_trade_no=self.fault_ref(charge_id))  # fmt: skip

    def altered_line(self, charge_id: str, what: str, delta: int = 0) -> None:
        """`what`: amount or fee (+delta minor units), or status (the bill says it did not succeed)."""
        params = {"field": what, **({"delta": delta} if delta else {})}
        fault_set(provider=self.provider, kind="bill_altered_line", merchant_ref=self.merchant_ref,
                  out_trade_no=self.fault_ref(charge_id), params=params)  # fmt: skip

    def extra_line(self, amount: int, charge_id: str = NOBODY) -> None:
        fault_set(provider=self.provider, kind="bill_extra_line", merchant_ref=self.merchant_ref,
                  params=self._extra_params(amount, charge_id))  # fmt: skip

    def _extra_params(self, amount: int, charge_id: str) -> dict:
        return {"amount": amount, "out_trade_no": charge_id}

    # --- other files of the same day ----------------------------------------------------------

    def corrected_bill(self, day) -> bytes:
        """The day's bill as the provider publishes it now (e.g. after it fixed a fault)."""
        dest = io.BytesIO()
        adapter_for(self.account).download_bill(bill_date=day, dest=dest)
        return dest.getvalue()

    def reissued(self, content: bytes) -> bytes:
        """Another file with the very same lines (here: a zip whose members have other timestamps)."""
        return _rezip(content, lambda name, data: data, date_time=(2099, 1, 1, 0, 0, 0))

    def repeated(self, content: bytes, paysys_id: str, times: int = 2) -> bytes:
        """The bill file with the line of `paysys_id` (a charge's payment line, or a refund's line)
        listed `times` times, the copies right after it; the file's own counts and totals count
        every copy, as the provider's would if it published the line twice."""
        raise NotImplementedError

    # --- damaged files -------------------------------------------------------------------------

    def damaged(self, content: bytes, how: str) -> bytes:
        """The bill file `truncated`, in the `wrong-encoding` or with one amount made unreadable
        (`malformed`)."""
        raise NotImplementedError


class _SameNameInfo(zipfile.ZipInfo):
    """A member written under the very name bytes it was read with (GBK without the UTF-8 flag)."""

    def _encodeFilenameFlags(self):  # zipfile's own hook
        if self.flag_bits & 0x800:
            return self.filename.encode("utf-8"), self.flag_bits
        return self.filename.encode("cp437"), self.flag_bits


def _rezip(content: bytes, change, date_time: tuple | None = None) -> bytes:
    """The zip with `change(name, data)` applied to each member's data, names kept as they were."""
    source = zipfile.ZipFile(io.BytesIO(content))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            same = _SameNameInfo(info.filename, date_time=date_time or info.date_time)
            same.flag_bits, same.compress_type = info.flag_bits & 0x800, zipfile.ZIP_DEFLATED
            target.writestr(same, change(info.filename, source.read(info)))
    return out.getvalue()


class AlipayKit(Kit):
    def _sandbox_shift(self, interval: str) -> None:
        _sql(f"UPDATE sandbox_alipayapp SET created_at = created_at - {interval}")
        _sql(f"UPDATE sandbox_alipaytrade SET created_at = created_at - {interval}, paid_at = paid_at - {interval}")
        _sql(f"UPDATE sandbox_alipayrefund SET refunded_at = refunded_at - {interval}")

    def book_at(self, charge_id: str, at: datetime) -> None:
        _sql("UPDATE sandbox_alipaytrade SET paid_at = %s WHERE out_trade_no = %s", [at, charge_id])

    def _extra_params(self, amount: int, charge_id: str) -> dict:
        return {"amount": f"{Decimal(amount).scaleb(-2):.2f}", "out_trade_no": charge_id}

    def repeated(self, content: bytes, paysys_id: str, times: int = 2) -> bytes:
        def change(name: str, data: bytes) -> bytes:
            if "汇总".encode("gbk") in name.encode("cp437"):  # the summary member: the adapter reads the detail
                return data
            out, found = [], None
            for line in data.decode("gbk").split("\r\n"):
                out.append(line)
                cells = next(csv.reader([line])) if line and not line.startswith("#") else []
                # 商户订单号 of a 交易 (payment) line, or 退款批次号 of a refund line
                if len(cells) > 21 and paysys_id in (cells[1].strip() if cells[2] == "交易" else "", cells[21].strip()):
                    out += [line] * (times - 1)
                    found = cells[2], Decimal(cells[12])  # business type, 商家实收 (negative on a refund)
            assert found is not None, f"{paysys_id} is not on the bill"
            kind, amount = found
            label = "#交易合计：" if kind == "交易" else "#退款合计："

            def footer(m: re.Match) -> str:
                return f"{label}{int(m[1]) + times - 1}笔，{m[2]}{Decimal(m[3]) + (times - 1) * amount:.2f}元"

            return re.sub(rf"{label}(\d+)笔，(商家实收(?:退款)?共)(-?[\d.]+)元", footer, "\r\n".join(out)).encode("gbk")

        return _rezip(content, change)

    def damaged(self, content: bytes, how: str) -> bytes:
        if how == "truncated":
            return content[: len(content) // 2]

        def change(name: str, data: bytes) -> bytes:
            if "汇总".encode("gbk") in name.encode("cp437"):
                return data
            if how == "wrong-encoding":  # UTF-8 instead of GBK
                return data.decode("gbk").encode("utf-8")
            return data.replace(b"7.50", b"7.5x", 1)

        return _rezip(content, change)


class WechatpayKit(Kit):
    def reissued(self, content: bytes) -> bytes:
        return gzip.compress(gzip.decompress(content), mtime=1)  # only the gzip header differs

    def repeated(self, content: bytes, paysys_id: str, times: int = 2) -> bytes:
        from apps.sandbox import wechatpay_protocol as proto

        lines = gzip.decompress(content).decode("utf-8").split("\r\n")
        rows = [dict(zip(proto.BILL_COLUMNS, line[1:].split(",`"), strict=True))
                for line in lines[1 : lines.index(proto.BILL_SUMMARY_HEADER)]]  # fmt: skip
        out = []
        for row in rows:
            refund = row["商户退款单号"] not in ("", "0")
            named = row["商户退款单号"] if refund else row["商户订单号"]
            out += [row] * (times if named == paysys_id else 1)
        assert len(out) == len(rows) + times - 1, f"{paysys_id} is not on the bill"
        return gzip.compress(proto.bill_text(out).encode("utf-8"), mtime=0)  # the summary recomputed

    def _sandbox_shift(self, interval: str) -> None:
        _sql(f"UPDATE sandbox_wechatpaytransaction SET created_at = created_at - {interval},"
             f" success_time = success_time - {interval}")  # fmt: skip
        _sql(f"UPDATE sandbox_wechatpayrefund SET created_at = created_at - {interval},"
             f" success_time = success_time - {interval}")  # fmt: skip

    def book_at(self, charge_id: str, at: datetime) -> None:
        _sql("UPDATE sandbox_wechatpaytransaction SET success_time = %s WHERE out_trade_no = %s", [at, charge_id])

    def damaged(self, content: bytes, how: str) -> bytes:
        if how == "truncated":
            return content[: len(content) // 2]
        text = gzip.decompress(content)
        if how == "wrong-encoding":  # GBK instead of UTF-8
            return gzip.compress(text.decode("utf-8").encode("gbk"), mtime=0)
        return gzip.compress(text.replace(b"`7.50", b"`7.5x", 1), mtime=0)


class UnionpayKit(Kit):
    def payer_pays(self, credential) -> None:
        form = {k: v for k, v in credential.items() if k != "channel_url"}
        front = requests.post(credential["channel_url"], data=form, headers={"Accept": "application/json"}, timeout=10)
        assert front.status_code == 200, front.content
        assert requests.post(front.json()["pay_url"], data={"result": "success"}, timeout=10).status_code == 200

    def fault_ref(self, paysys_id: str) -> str:
        return paysys_id.split("_", 1)[1]  # UnionPay's orderId is paysys's id without its prefix

    def _sandbox_shift(self, interval: str) -> None:
        # txnTime (the merchant's request time) names a transaction in queries: it moves too.
        moved = f"to_timestamp(txn_time, 'YYYYMMDDHH24MISS') - {interval}"
        _sql(f"UPDATE sandbox_unionpaytxn SET created_at = created_at - {interval},"
             f" completed_at = completed_at - {interval}, settle_date = settle_date - {interval},"
             f" txn_time = to_char({moved}, 'YYYYMMDDHH24MISS'),"
             f" trace_time = to_char((created_at - {interval}) AT TIME ZONE 'Asia/Shanghai', 'MMDDHH24MISS')"
             )  # fmt: skip

    def book_at(self, charge_id: str, at: datetime) -> None:
        local = at.astimezone(self.zone)
        _sql("UPDATE sandbox_unionpaytxn SET completed_at = %s, settle_date = %s, trace_time = %s WHERE order_id = %s",
             [at, local.date(), local.strftime("%m%d%H%M%S"), self.fault_ref(charge_id)])  # fmt: skip

    @property
    def zone(self):
        from apps.reconciliation.matching import bill_zone

        return bill_zone()

    def _extra_params(self, amount: int, charge_id: str) -> dict:
        return {"amount": amount, "order_id": self.fault_ref(charge_id)}

    def repeated(self, content: bytes, paysys_id: str, times: int = 2) -> bytes:
        from apps.channels.adapters.unionpay import ZM_OFFSETS, ZM_WIDTHS

        start, end = ZM_OFFSETS[11], ZM_OFFSETS[11] + ZM_WIDTHS[11]  # orderId: the consume's, or the refund's
        order_id = self.fault_ref(paysys_id).encode()
        copies = 0

        def change(name: str, data: bytes) -> bytes:  # the ZM file has no totals
            nonlocal copies
            if "ZM_" not in name:
                return data
            out = []
            for line in data.split(b"\r\n"):
                out.append(line)
                if line[start:end].strip() == order_id:
                    out += [line] * (times - 1)
                    copies += times - 1
            return b"\r\n".join(out)

        repeated = _rezip(content, change)
        assert copies == times - 1, f"{paysys_id} is not on the bill"
        return repeated

    def damaged(self, content: bytes, how: str) -> bytes:
        if how == "truncated":
            return content[: len(content) // 2]

        def change(name: str, data: bytes) -> bytes:
            if "ZM_" not in name:
                return data
            if how == "wrong-encoding":  # saved as UTF-16 ("Unicode") instead of GBK
                return data.decode("gbk").encode("utf-16")
            return data.replace(b"000000000750", b"0000000007.5", 1)

        return _rezip(content, change)


def alipay_kit(account: ChannelAccount, credentials: dict) -> Kit:
    return AlipayKit("alipay", account, credentials["app_id"], "alipay_qr")


def wechatpay_kit(live_server) -> Kit:
    account, credentials = sandbox_account("wechatpay", f"{live_server.url}/sandbox/wechatpay", "wx_pub_qr")
    return WechatpayKit("wechatpay", account, credentials["mchid"], "wx_pub_qr", {"product_id": "p1"})


def unionpay_kit(live_server) -> Kit:
    account, credentials = sandbox_account("unionpay", f"{live_server.url}/sandbox/unionpay/gateway/api/", "upacp_pc")
    return UnionpayKit("unionpay", account, credentials["mer_id"], "upacp_pc",
                       {"result_url": "https://shop.example/result"})  # fmt: skip
