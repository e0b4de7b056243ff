import pytest
import requests

from apps.sandbox.models import AlipayNotification, AlipayTrade, AlipayTradeStatus

pytestmark = pytest.mark.django_db(transaction=True)

JSON = {"Accept": "application/json"}


@pytest.fixture
def qr_code(sdk, receiver):
    return sdk.api_alipay_trade_precreate(
        subject="Tea 茶", out_trade_no="ch_pay", total_amount="3.50", notify_url=receiver.url
    )["qr_code"]


def test_get_shows_the_page_and_counts_as_the_scan(qr_code, sdk, receiver):
    response = requests.get(qr_code, timeout=5)

    assert response.status_code == 200
    assert "text/html" in response.headers["Content-Type"]
    assert "3.50" in response.text and "Tea 茶" in response.text and "ch_pay" in response.text
    assert 'name="result" value="success"' in response.text and 'value="fail"' in response.text
    trade = AlipayTrade.objects.get(out_trade_no="ch_pay")
    assert trade.scanned is True and trade.status == AlipayTradeStatus.WAIT_BUYER_PAY
    assert sdk.api_alipay_trade_query(out_trade_no="ch_pay")["trade_status"] == "WAIT_BUYER_PAY"
    assert receiver.requests == []  # WAIT_BUYER_PAY is not notified


def test_post_success_pays_without_a_get_first_and_is_idempotent(qr_code, receiver):
    first = requests.post(qr_code, data={"result": "success"}, headers=JSON, timeout=5)
    again = requests.post(qr_code, data={"result": "fail"}, headers=JSON, timeout=5)

    trade = AlipayTrade.objects.get(out_trade_no="ch_pay")
    assert first.status_code == 200
    assert first.json() == {
        "app_id": trade.app.app_id,
        "out_trade_no": "ch_pay",
        "trade_no": trade.trade_no,
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "3.50",
        "subject": "Tea 茶",
        "paid_at": first.json()["paid_at"],
        "closed_at": "",
        "changed": True,
        "return_url": "",  # a precreated (QR) trade has no return_url
    }
    assert again.json()["trade_status"] == "TRADE_SUCCESS" and again.json()["changed"] is False
    assert trade.status == AlipayTradeStatus.TRADE_SUCCESS and trade.scanned is True and trade.closed_at is None
    assert [r["form"]["trade_status"] for r in receiver.requests] == ["TRADE_SUCCESS"]
    assert AlipayNotification.objects.count() == 1


def test_post_fail_closes_the_trade(qr_code, sdk, receiver):
    response = requests.post(qr_code, data={"result": "fail"}, timeout=5)

    assert response.status_code == 200 and "TRADE_CLOSED" in response.text
    assert AlipayTrade.objects.get(out_trade_no="ch_pay").status == AlipayTradeStatus.TRADE_CLOSED
    assert sdk.api_alipay_trade_query(out_trade_no="ch_pay")["trade_status"] == "TRADE_CLOSED"
    assert [r["form"]["trade_status"] for r in receiver.requests] == ["TRADE_CLOSED"]


def test_a_bad_result_or_token_changes_nothing(qr_code, live_server):
    bad = requests.post(qr_code, data={"result": "maybe"}, headers=JSON, timeout=5)
    missing = requests.post(f"{live_server.url}/sandbox/alipay/pay/nope", data={"result": "success"}, timeout=5)

    assert bad.status_code == 400
    assert missing.status_code == 404
    trade = AlipayTrade.objects.get(out_trade_no="ch_pay")
    assert (trade.status, trade.scanned) == (AlipayTradeStatus.WAIT_BUYER_PAY, False)


def test_an_expired_trade_cannot_be_paid(qr_code, receiver):
    from django.utils import timezone

    AlipayTrade.objects.filter(out_trade_no="ch_pay").update(expires_at=timezone.now())

    response = requests.post(qr_code, data={"result": "success"}, headers=JSON, timeout=5)

    assert response.json()["trade_status"] == "TRADE_CLOSED" and response.json()["changed"] is False
    assert [r["form"]["trade_status"] for r in receiver.requests] == ["TRADE_CLOSED"]


def test_index_lists_apps_and_trades_with_pay_links(qr_code, alipay_app, live_server):
    response = requests.get(f"{live_server.url}/sandbox/", timeout=5)

    token = AlipayTrade.objects.get(out_trade_no="ch_pay").pay_token
    assert response.status_code == 200
    assert alipay_app.app_id in response.text
    assert f'href="/sandbox/alipay/pay/{token}"' in response.text


def test_admin_never_shows_the_sandbox_private_key(alipay_app, admin_client):
    response = admin_client.get(f"/admin/sandbox/alipayapp/{alipay_app.app.id}/change/")

    assert response.status_code == 200
    assert alipay_app.app_id in response.content.decode()
    assert b"PRIVATE KEY" not in response.content
    assert b"BEGIN PUBLIC KEY" in response.content
