import pytest

from apps.orders.models import Order
from apps.payments.models import Charge, ChargeTransition
from tests.support import charge_payload


@pytest.mark.usefixtures("sandbox_alipay")
def test_the_request_id_is_stored_on_every_row_the_request_creates(api, merchant):
    response = api.post("/v1/charges", charge_payload(merchant, order_no="reqid0001"), **{"X-Request-Id": "req-42"})
    assert response.status_code == 200
    assert response["X-Request-Id"] == "req-42"
    charge = Charge.objects.get(public_id=response.json()["id"])
    assert charge.request_id == "req-42"
    assert Order.objects.get(pk=charge.order_id).request_id == "req-42"
    assert set(ChargeTransition.objects.filter(charge=charge).values_list("request_id", flat=True)) == {"req-42"}


def test_an_unusable_request_id_is_replaced(api, merchant):
    path = f"/v1/charges?app%5Bid%5D={merchant.app.public_id}"
    response = api.get(path, **{"X-Request-Id": "bad id with spaces\n"})
    assert response["X-Request-Id"].startswith("iar_")
