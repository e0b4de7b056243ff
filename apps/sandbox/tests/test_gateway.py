import json
import re
from decimal import Decimal
from urllib.parse import unquote_plus

import pytest
import requests
from alipay.exceptions import AliPayException

from apps.core import crypto
from apps.sandbox import alipay_protocol as proto
from apps.sandbox.models import AlipayTrade, AlipayTradeStatus
from apps.sandbox.tests.conftest import make_client

pytestmark = pytest.mark.django_db(transaction=True)


def test_precreate_returns_an_absolute_pay_page_url_and_stores_the_trade(sdk, alipay_app, live_server):
    node = sdk.api_alipay_trade_precreate(
        subject="Coffee", out_trade_no="ch_001", total_amount="12.30", notify_url="http://127.0.0.1:9/n"
    )

    trade = AlipayTrade.objects.get(app=alipay_app.app, out_trade_no="ch_001")
    assert node == {
        "code": "10000",
        "msg": "Success",
        "out_trade_no": "ch_001",
        "qr_code": f"{live_server.url}/sandbox/alipay/pay/{trade.pay_token}",
    }
    assert trade.total_amount == Decimal("12.30")
    assert trade.subject == "Coffee"
    assert trade.status == AlipayTradeStatus.WAIT_BUYER_PAY
    assert trade.scanned is False
    assert trade.notify_url == "http://127.0.0.1:9/n"
    assert re.fullmatch(r"\d{8}2200\d{16}", trade.trade_no)
    assert trade.expires_at is not None


def test_precreate_accepts_a_json_number_amount_and_timeout_express(sdk, alipay_app):
    sdk.server_api(
        "alipay.trade.precreate",
        {"out_trade_no": "ch_num", "total_amount": 0.1, "subject": "x", "timeout_express": "30m"},
    )

    trade = AlipayTrade.objects.get(out_trade_no="ch_num")
    assert trade.total_amount == Decimal("0.10")
    assert round((trade.expires_at - trade.created_at).total_seconds()) == 1800


def test_repeated_precreate_same_amount_returns_the_same_qr_code(sdk):
    first = sdk.api_alipay_trade_precreate(subject="A", out_trade_no="ch_rep", total_amount="5.00")
    second = sdk.api_alipay_trade_precreate(subject="A", out_trade_no="ch_rep", total_amount=5)

    assert second["qr_code"] == first["qr_code"]
    assert AlipayTrade.objects.filter(out_trade_no="ch_rep").count() == 1


def test_repeated_precreate_with_another_amount_is_context_inconsistent(sdk):
    sdk.api_alipay_trade_precreate(subject="A", out_trade_no="ch_inc", total_amount="5.00")

    node = sdk.api_alipay_trade_precreate(subject="A", out_trade_no="ch_inc", total_amount="5.01")

    assert node == {
        "code": "40004",
        "msg": "Business Failed",
        "sub_code": "ACQ.CONTEXT_INCONSISTENT",
        "sub_msg": "交易信息被篡改",
    }
    assert list(AlipayTrade.objects.values_list("total_amount", flat=True)) == [Decimal("5.00")]


@pytest.mark.parametrize(
    "amount, sub_code",
    [("0", "ACQ.INVALID_PARAMETER"), ("1.001", "ACQ.INVALID_PARAMETER"), ("abc", "ACQ.INVALID_PARAMETER"),
     ("100000000.01", "ACQ.TOTAL_FEE_EXCEED")],
    ids=["zero", "three-decimals", "not-a-number", "over-limit"],
)  # fmt: skip
def test_precreate_refuses_bad_amounts(sdk, amount, sub_code):
    node = sdk.api_alipay_trade_precreate(subject="A", out_trade_no="ch_bad", total_amount=amount)

    assert (node["code"], node["sub_code"]) == ("40004", sub_code)
    assert AlipayTrade.objects.count() == 0


def test_query_and_close_before_the_scan_say_the_trade_does_not_exist(sdk):
    sdk.api_alipay_trade_precreate(subject="A", out_trade_no="ch_ns", total_amount="1.00")

    query = sdk.api_alipay_trade_query(out_trade_no="ch_ns")
    close = sdk.api_alipay_trade_close(out_trade_no="ch_ns")

    expected = {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"}
    assert query == expected
    assert close == expected
    assert AlipayTrade.objects.get(out_trade_no="ch_ns").status == AlipayTradeStatus.WAIT_BUYER_PAY


def test_query_after_payment_reports_the_paid_trade(sdk, live_server):
    qr_code = sdk.api_alipay_trade_precreate(subject="A", out_trade_no="ch_q", total_amount="8.88")["qr_code"]
    requests.post(qr_code, data={"result": "success"}, timeout=5)
    trade = AlipayTrade.objects.get(out_trade_no="ch_q")

    node = sdk.api_alipay_trade_query(out_trade_no="ch_q")

    assert node == {
        "code": "10000",
        "msg": "Success",
        "buyer_logon_id": trade.buyer_logon_id,
        "buyer_pay_amount": "8.88",
        "buyer_user_id": trade.buyer_user_id,
        "invoice_amount": "8.88",
        "out_trade_no": "ch_q",
        "point_amount": "0.00",
        "receipt_amount": "8.88",
        "total_amount": "8.88",
        "trade_no": trade.trade_no,
        "trade_status": "TRADE_SUCCESS",
        "send_pay_date": proto.format_time(trade.paid_at),
        "fund_bill_list": [{"amount": "8.88", "fund_channel": "ALIPAYACCOUNT"}],
    }
    assert re.fullmatch(r"[a-z]{3}\*\*\*@sandbox\.com", trade.buyer_logon_id)
    assert sdk.api_alipay_trade_query(trade_no=trade.trade_no)["out_trade_no"] == "ch_q"


def test_close_on_a_scanned_unpaid_trade_closes_it_and_on_a_paid_trade_is_a_status_error(sdk):
    open_qr = sdk.api_alipay_trade_precreate(subject="A", out_trade_no="ch_c1", total_amount="1.00")["qr_code"]
    paid_qr = sdk.api_alipay_trade_precreate(subject="A", out_trade_no="ch_c2", total_amount="1.00")["qr_code"]
    requests.get(open_qr, timeout=5)
    requests.post(paid_qr, data={"result": "success"}, timeout=5)

    closed = sdk.api_alipay_trade_close(out_trade_no="ch_c1")
    refused = sdk.api_alipay_trade_close(out_trade_no="ch_c2")

    c1 = AlipayTrade.objects.get(out_trade_no="ch_c1")
    assert closed == {"code": "10000", "msg": "Success", "out_trade_no": "ch_c1", "trade_no": c1.trade_no}
    assert c1.status == AlipayTradeStatus.TRADE_CLOSED
    assert c1.closed_at is not None
    assert (refused["code"], refused["sub_code"]) == ("40004", "ACQ.TRADE_STATUS_ERROR")
    assert AlipayTrade.objects.get(out_trade_no="ch_c2").status == AlipayTradeStatus.TRADE_SUCCESS
    assert sdk.api_alipay_trade_close(out_trade_no="ch_c1")["code"] == "10000"  # closing again is harmless


def test_a_request_signed_with_another_key_is_refused_with_a_signed_40002(alipay_app, gateway_url):
    wrong = crypto.private_key_pem(crypto.rsa_generate())
    client = make_client(gateway_url, alipay_app.app_id, wrong, alipay_app.alipay_public_key)

    node = client.api_alipay_trade_precreate(subject="A", out_trade_no="ch_sig", total_amount="1.00")

    assert node == {
        "code": "40002",
        "msg": "Invalid Arguments",
        "sub_code": "isv.invalid-signature",
        "sub_msg": "验签出错",
    }
    assert AlipayTrade.objects.count() == 0


def test_an_unknown_app_id_gets_an_unsigned_error_the_sdk_raises_on(alipay_app, gateway_url):
    client = make_client(gateway_url, "2021999999999999", alipay_app.app_private_key, alipay_app.alipay_public_key)

    with pytest.raises(AliPayException, match=r"isv\.invalid-app-id"):
        client.api_alipay_trade_query(out_trade_no="x")


def test_an_unknown_method_gets_an_error_response(sdk):
    with pytest.raises(AliPayException, match=r"isv\.invalid-method"):
        sdk.server_api("alipay.trade.nonexistent", {"out_trade_no": "x"})


def test_the_envelope_puts_the_node_first_and_signs_its_exact_text(sdk, alipay_app, gateway_url):
    # Braces and non-ASCII in values must not break the SDK's brace counting.
    signed_query = sdk.sign_data(
        sdk.build_body(
            "alipay.trade.precreate",
            {"out_trade_no": "ch_{brace}", "total_amount": "1.00", "subject": "咖啡 {large}"},
        )
    )

    response = requests.get(f"{gateway_url}?{signed_query}", timeout=5)

    assert response.status_code == 200
    text = response.content.decode("utf-8")
    assert text.startswith('{"alipay_trade_precreate_response":{')
    node_text = text[len('{"alipay_trade_precreate_response":') : text.index(',"sign":"')]
    assert "{brace}" not in node_text and "\\u007bbrace\\u007d" in node_text
    document = json.loads(text)
    assert document["alipay_trade_precreate_response"]["out_trade_no"] == "ch_{brace}"
    assert crypto.rsa_verify(alipay_app.alipay_public_key, node_text.encode("utf-8"), document["sign"])
    assert sdk._verify_and_return_sync_response(text, "alipay_trade_precreate_response")["code"] == "10000"


def test_business_errors_are_http_200_and_a_form_post_is_accepted(sdk, gateway_url):
    form = dict(
        pair.split("=", 1)
        for pair in sdk.sign_data(sdk.build_body("alipay.trade.query", {"out_trade_no": "none"})).split("&")
    )

    response = requests.post(gateway_url, data={k: unquote_plus(v) for k, v in form.items()}, timeout=5)

    assert response.status_code == 200
    assert json.loads(response.text)["alipay_trade_query_response"]["sub_code"] == "ACQ.TRADE_NOT_EXIST"
