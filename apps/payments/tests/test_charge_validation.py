"""Every refused charge request gets a Ping++ error object and writes nothing."""

import pytest
from moneyed import Money

from apps.core.db import insert
from apps.orders.models import Order
from apps.orders.services import order_new
from apps.payments.models import Charge
from tests.support import assert_error, charge_payload

pytestmark = pytest.mark.django_db


def counts():
    return Order.objects.count(), Charge.objects.count()


@pytest.mark.parametrize(
    "amount",
    [0, -1, "100", 100.5, 100.0, True, None, 10**13],
    ids=["zero", "negative", "string", "fraction", "float", "bool", "null", "too-large"],
)
def test_an_amount_that_is_not_a_positive_integer_is_refused(api, merchant, amount):
    response = api.post("/v1/charges", charge_payload(merchant, amount=amount))
    assert_error(response, 400, param="amount")
    assert counts() == (0, 0)


def test_an_unknown_channel_is_refused(api, merchant):
    response = api.post("/v1/charges", charge_payload(merchant, channel="bitcoin"))
    assert_error(response, 400, code="channel_unsupported", param="channel")
    assert counts() == (0, 0)


def test_a_known_channel_without_an_account_is_refused(api, merchant):
    response = api.post("/v1/charges", charge_payload(merchant, channel="wx_pub_qr"))
    error = assert_error(response, 402, code="channel_unavailable", param="channel")
    assert error["type"] == "channel_error"
    assert counts() == (0, 0)


@pytest.mark.parametrize("currency", ["xyz", "", "cnyy", 156], ids=["unknown", "empty", "too-long", "number"])
def test_an_unknown_currency_is_refused(api, merchant, currency):
    response = api.post("/v1/charges", charge_payload(merchant, currency=currency))
    assert_error(response, 400, param="currency")
    assert counts() == (0, 0)


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"amount": 1', b"[1, 2]", b'"text"', b""],
    ids=["garbage", "truncated", "array", "string", "empty"],
)
def test_malformed_json_is_refused(api, body):
    response = api.post("/v1/charges", body)
    assert_error(response, 400)
    assert counts() == (0, 0)


@pytest.mark.parametrize("field", ["order_no", "app", "channel", "amount", "currency", "client_ip", "subject", "body"])
def test_a_missing_required_field_is_refused(api, merchant, field):
    payload = charge_payload(merchant)
    del payload[field]
    response = api.post("/v1/charges", payload)
    error = assert_error(response, 400)
    assert error["param"].startswith(field)
    assert counts() == (0, 0)


@pytest.mark.parametrize(
    "overrides, param",
    [
        ({"client_ip": "not-an-ip"}, "client_ip"),
        ({"subject": "x" * 33}, "subject"),
        ({"order_no": "has space"}, "order_no"),
        ({"extra": [1]}, "extra"),
        ({"metadata": "m"}, "metadata"),
        ({"time_expire": 1}, "time_expire"),
    ],
    ids=["ip", "subject-too-long", "order-no-chars", "extra-not-object", "metadata-not-object", "expire-past"],
)
def test_other_bad_fields_are_refused(api, merchant, overrides, param):
    response = api.post("/v1/charges", charge_payload(merchant, **overrides))
    assert_error(response, 400, param=param)
    assert counts() == (0, 0)


def test_another_apps_id_in_the_body_is_refused(api, merchant):
    response = api.post("/v1/charges", charge_payload(merchant, app={"id": "app_someoneelse0001"}))
    assert_error(response, 400, code="app_mismatch", param="app[id]")
    assert counts() == (0, 0)


def test_an_order_no_reused_with_another_amount_is_refused(api, merchant, unreachable_alipay_account):
    insert(order_new(
        app=merchant.app, livemode=False, order_no="reuse0001", amount=Money("1.00", "CNY"), subject="s", body="b",
        request_id="",
    ))  # fmt: skip
    response = api.post("/v1/charges", charge_payload(merchant, order_no="reuse0001", amount=200))
    assert_error(response, 400, code="order_no_used", param="order_no")
    assert counts() == (1, 0)
    assert Order.objects.get().amount == Money("1.00", "CNY")


def test_an_order_no_reused_with_another_currency_is_refused(api, merchant):
    insert(order_new(
        app=merchant.app, livemode=False, order_no="reuse0002", amount=Money("1.00", "CNY"), subject="s", body="b",
        request_id="",
    ))  # fmt: skip
    response = api.post("/v1/charges", charge_payload(merchant, order_no="reuse0002", currency="usd"))
    assert response.status_code in (400, 402)
    assert counts() == (1, 0)


def test_another_apps_charge_is_404(api, merchant):
    response = api.get("/v1/charges/ch_doesnotexist000000000000")
    assert_error(response, 404, param="id")


def test_listing_another_apps_charges_is_refused(api):
    response = api.get("/v1/charges?app%5Bid%5D=app_other0000000000&limit=3")
    assert_error(response, 400, code="app_mismatch")


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc"], ids=["zero", "over-100", "not-a-number"])
def test_a_bad_list_limit_is_refused(api, merchant, query):
    response = api.get(f"/v1/charges?app%5Bid%5D={merchant.app.public_id}&{query}")
    assert_error(response, 400, param="limit")
