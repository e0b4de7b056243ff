"""The Alipay sandbox's bill file format, cashier refusals and fault console, checked on its own terms."""

import datetime as dt
import io
import zipfile
from decimal import Decimal

import pytest
import requests
from django.utils import timezone

from apps.sandbox import alipay_bill
from apps.sandbox.models import AlipayNotification, AlipayRefund, AlipayTrade, SandboxFault

pytestmark = pytest.mark.django_db(transaction=True)


def _pay(sdk, out_trade_no: str, amount: str, notify_url: str = "") -> AlipayTrade:
    qr = sdk.api_alipay_trade_precreate(
        subject="Tea, 茶", out_trade_no=out_trade_no, total_amount=amount, notify_url=notify_url
    )["qr_code"]
    requests.post(qr, data={"result": "success"}, timeout=5)
    return AlipayTrade.objects.get(out_trade_no=out_trade_no)


def test_the_bill_zip_is_alipays_format(sdk, alipay_app):
    trade = _pay(sdk, "ch_fmt", "7.50")
    sdk.api_alipay_trade_refund(refund_amount="2.50", out_trade_no="ch_fmt", out_request_no="re_fmt")
    day = dt.timedelta(days=1)
    AlipayTrade.objects.update(paid_at=trade.paid_at - day, created_at=trade.created_at - day)
    AlipayRefund.objects.update(refunded_at=AlipayRefund.objects.get().refunded_at - day)
    app = alipay_app.app
    bill_date = (timezone.now().astimezone(alipay_bill.proto.ALIPAY_TZ) - day).date()
    trade.refresh_from_db()
    refund = AlipayRefund.objects.get()
    exported = timezone.now()

    name, content = alipay_bill.bill_zip(app=app, bill_date=bill_date, now=exported)

    stem = f"{app.seller_id}0156_{bill_date:%Y%m%d}"
    assert name == f"{stem}.csv.zip"
    archive = zipfile.ZipFile(io.BytesIO(content))
    infos = archive.infolist()
    assert [info.flag_bits & 0x800 for info in infos] == [0, 0]  # GBK names, no UTF-8 flag
    assert [info.filename.encode("cp437").decode("gbk") for info in infos] == [
        f"{stem}_业务明细.csv",
        f"{stem}_业务明细(汇总).csv",
    ]
    detail = archive.read(infos[0]).decode("gbk").split("\r\n")
    cn = "%Y年%m月%d日 %H:%M:%S"
    start = dt.datetime.combine(bill_date, dt.time.min, tzinfo=alipay_bill.proto.ALIPAY_TZ)
    fmt = alipay_bill.proto.format_time
    assert detail == [
        "#支付宝业务明细查询",
        f"#账号：[{app.seller_id}0156]",
        f"#起始日期：[{start:{cn}}]   终止日期：[{start + day:{cn}}]",
        "#-----------------------------------------业务明细列表----------------------------------------",
        ",".join(alipay_bill.DETAIL_COLUMNS),
        f'{trade.trade_no}\t,ch_fmt\t,交易,"Tea, 茶",{fmt(trade.created_at)},{fmt(trade.paid_at)},,,,,'
        f"{trade.buyer_logon_id},7.50,7.50,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,,-0.05,0.00,",
        f'{trade.trade_no}\t,ch_fmt\t,退款,"Tea, 茶",{fmt(trade.created_at)},{fmt(refund.refunded_at)},,,,,'
        f"{trade.buyer_logon_id},-2.50,-2.50,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,re_fmt\t,0.02,0.00,",
        "#-----------------------------------------业务明细列表结束------------------------------------",
        "#交易合计：1笔，商家实收共7.50元，商家优惠共0.00元",
        "#退款合计：1笔，商家实收退款共-2.50元，商家优惠退款共0.00元",
        f"#导出时间：[{exported.astimezone(alipay_bill.proto.ALIPAY_TZ):{cn}}]",
        "",
    ]
    summary = archive.read(infos[1]).decode("gbk").split("\r\n")
    assert summary[0] == "#支付宝业务汇总查询"
    assert summary[4] == ",".join(alipay_bill.SUMMARY_COLUMNS)
    assert summary[5:7] == [
        ",,1,1,5.00,5.00,0.00,0.00,0.00,-0.03,0.00,4.97",
        "合计,,1,1,5.00,5.00,0.00,0.00,0.00,-0.03,0.00,4.97",
    ]


@pytest.mark.parametrize(
    "amount, fee", [("7.50", "0.05"), ("0.50", "0.00"), ("2.50", "0.02"), ("100.00", "0.60"), ("0.01", "0.00")]
)
def test_the_service_fee_is_six_per_mille_rounded_half_up(amount, fee):
    assert alipay_bill.service_fee(Decimal(amount)) == Decimal(fee)
    assert alipay_bill.service_fee(-Decimal(amount)) == Decimal(fee)


def test_a_bill_link_expires_and_cannot_be_forged(sdk, alipay_app, live_server):
    path = alipay_bill.bill_download_path(app=alipay_app.app, bill_date=dt.date(2026, 1, 2))

    fresh = requests.get(f"{live_server.url}{path}", timeout=5)
    forged = requests.get(f"{live_server.url}{path.replace('bill=', 'bill=x')}", timeout=5)

    assert fresh.status_code == 200 and fresh.headers["Content-Type"] == "application/zip"
    assert forged.status_code == 404


def test_a_repeated_refund_request_is_idempotent_and_an_over_refund_changes_nothing(sdk, receiver):
    _pay(sdk, "ch_idem", "10.00", receiver.url)

    first = sdk.api_alipay_trade_refund(refund_amount="4.00", out_trade_no="ch_idem", out_request_no="r1")
    again = sdk.api_alipay_trade_refund(refund_amount="4.00", out_trade_no="ch_idem", out_request_no="r1")
    over = sdk.api_alipay_trade_refund(refund_amount="6.01", out_trade_no="ch_idem", out_request_no="r2")

    assert (first["fund_change"], first["refund_fee"], again["fund_change"], again["refund_fee"]) == (
        "Y",
        "4.00",
        "N",
        "4.00",
    )
    assert (over["code"], over["sub_code"]) == ("40004", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL")
    assert AlipayTrade.objects.get().refund_fee == Decimal("4.00")
    assert list(AlipayRefund.objects.values_list("out_request_no", "refund_amount")) == [("r1", Decimal("4.00"))]
    assert [r["form"].get("out_biz_no") for r in receiver.requests] == [None, "r1"]


def test_the_fault_console_lists_adds_and_disables(client, alipay_app):
    response = client.post(
        "/sandbox/faults/",
        {"action": "add", "provider": "alipay", "merchant_ref": alipay_app.app_id, "kind": "notify_delay",
         "params": '{"seconds": 5}', "remaining": "2"},
    )  # fmt: skip
    fault = SandboxFault.objects.get()
    bad = client.post(
        "/sandbox/faults/", {"action": "add", "provider": "alipay", "kind": "notify_lost", "params": "[1]"}
    )
    page = client.get("/sandbox/faults/")
    disabled = client.post("/sandbox/faults/", {"action": "disable", "id": str(fault.id)})

    assert response.status_code == 302 and disabled.status_code == 302
    assert (fault.kind, fault.params, fault.remaining, fault.enabled) == ("notify_delay", {"seconds": 5}, 2, True)
    assert bad.status_code == 400 and SandboxFault.objects.count() == 1
    assert (
        page.status_code == 200
        and "notify_delay" in page.content.decode()
        and alipay_app.app_id in page.content.decode()
    )
    assert SandboxFault.objects.get().enabled is False


def test_a_delayed_notification_is_enqueued_with_the_countdown(sdk, alipay_app, receiver, monkeypatch):
    from apps.sandbox import tasks

    SandboxFault.objects.create(provider="alipay", kind="notify_delay", params={"seconds": 7})
    calls = []
    monkeypatch.setattr(tasks.sandbox_alipay_notify, "apply_async", lambda *a, **kw: calls.append(kw))

    _pay(sdk, "ch_delay", "1.00", receiver.url)

    notification = AlipayNotification.objects.get()
    assert calls == [{"args": [notification.id], "countdown": 7.0}]
    assert receiver.requests == []


def test_the_admin_lists_faults(admin_client):
    SandboxFault.objects.create(provider="alipay", kind="error_5xx", params={"operations": ["alipay.trade.query"]})

    response = admin_client.get("/admin/sandbox/sandboxfault/")

    assert response.status_code == 200 and "error_5xx" in response.content.decode()


def test_a_paid_trade_cannot_be_opened_again_in_the_cashier(sdk, gateway_url):
    query = sdk.api_alipay_trade_page_pay(subject="A", out_trade_no="ch_again", total_amount="1.00",
                                          return_url="http://shop/r")  # fmt: skip
    opened = requests.get(f"{gateway_url}?{query}", timeout=5)
    trade = AlipayTrade.objects.get()
    requests.post(f"{gateway_url.rsplit('/gateway.do', 1)[0]}/pay/{trade.pay_token}", data={"result": "success"},
                  allow_redirects=False, timeout=5)  # fmt: skip

    again = requests.get(f"{gateway_url}?{query}", timeout=5)

    assert opened.status_code == 200 and trade.product_code == "FAST_INSTANT_TRADE_PAY"
    assert again.status_code == 400 and "ACQ.TRADE_HAS_SUCCESS" in again.text
    assert AlipayTrade.objects.get().status == "TRADE_SUCCESS"
