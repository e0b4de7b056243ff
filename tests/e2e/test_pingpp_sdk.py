"""A merchant's own code, unchanged but for `pingpp.api_base`, takes an Alipay QR payment.

The real `pingpp` SDK signs its requests; a real Celery worker carries the sandbox's
notification and paysys's webhook; the merchant verifies the webhook with the platform key.
"""

import json
import time

import pingpp
import pytest
import requests

from apps.core import crypto
from apps.core.services import platform_public_key_pem
from apps.events.models import Event
from apps.merchants.services import webhook_endpoint_create
from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture
def sdk(merchant, sandbox_alipay, live_server):
    saved = (pingpp.api_key, pingpp.api_base, pingpp.private_key, pingpp.private_key_path)
    pingpp.api_key = merchant.test_secret_key
    pingpp.api_base = live_server.url
    pingpp.private_key = merchant.private_pem
    pingpp.private_key_path = None
    yield pingpp
    pingpp.api_key, pingpp.api_base, pingpp.private_key, pingpp.private_key_path = saved


def create_charge(sdk, merchant, order_no: str, amount: int = 100):
    return sdk.Charge.create(
        order_no=order_no, app={"id": merchant.app.public_id}, channel="alipay_qr", amount=amount, currency="cny",
        client_ip="127.0.0.1", subject="paysys e2e", body="an Alipay QR payment",
    )  # fmt: skip


def retrieve_until_paid(sdk, charge_id: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        charge = sdk.Charge.retrieve(charge_id)
        if charge.paid:
            return charge
        time.sleep(1.1)  # one signature per second: an identical request would be a replay
    raise AssertionError(f"{charge_id} not paid within {timeout}s")


def test_an_alipay_qr_charge_is_paid_end_to_end(sdk, merchant, receiver, celery_worker):
    webhook_endpoint_create(app=merchant.app, url=receiver.url)

    charge = create_charge(sdk, merchant, "e2e00000001", amount=2599)
    assert (charge.object, charge.paid, charge.livemode, charge.amount) == ("charge", False, False, 2599)
    qr_url = charge.credential["alipay_qr"]
    assert qr_url.startswith("http")

    assert requests.get(qr_url, timeout=10).status_code == 200  # the payer scans
    assert requests.post(qr_url, data={"result": "success"}, timeout=10).status_code == 200  # and pays

    paid = retrieve_until_paid(sdk, charge.id)
    assert paid.paid is True
    assert isinstance(paid.time_paid, int) and paid.time_paid > 0
    assert paid.transaction_no
    assert paid.credential == {}

    hooks = receiver.wait_for(lambda r: b'"charge.succeeded"' in r.body, timeout=60)
    delivered = hooks[0]
    signature = {k.lower(): v for k, v in delivered.headers.items()}["x-pingplusplus-signature"]
    assert crypto.rsa_verify(platform_public_key_pem(), delivered.body, signature)
    event = json.loads(delivered.body)
    assert (event["object"], event["type"]) == ("event", "charge.succeeded")
    assert event["data"]["object"]["id"] == charge.id
    assert event["data"]["object"]["transaction_no"] == paid.transaction_no

    # one request id follows the payment: the notification's id is on the event, the worker's log
    # lines for the webhook task carry it, and the delivery names it
    stored = Event.objects.get(public_id=event["id"])
    assert stored.request_id and event["request"] == stored.request_id
    assert delivered.headers.get("X-Request-Id") == stored.request_id
    assert f"[{stored.request_id}]" in (ROOT / "var" / "test-celery-worker.log").read_text()


def test_charge_list_pages_with_the_sdk(sdk, merchant):
    created = [create_charge(sdk, merchant, f"e2elist{i:04d}").id for i in range(5)]
    newest_first = list(reversed(created))

    first = sdk.Charge.list(app={"id": merchant.app.public_id}, limit=2)
    assert [c.id for c in first.data] == newest_first[:2]
    assert first.has_more is True
    second = sdk.Charge.list(app={"id": merchant.app.public_id}, limit=2, starting_after=first.data[-1].id)
    assert [c.id for c in second.data] == newest_first[2:4]
    assert second.has_more is True
    third = sdk.Charge.list(app={"id": merchant.app.public_id}, limit=2, starting_after=second.data[-1].id)
    assert [c.id for c in third.data] == newest_first[4:]
    assert third.has_more is False
    back = sdk.Charge.list(app={"id": merchant.app.public_id}, limit=2, ending_before=third.data[0].id)
    assert [c.id for c in back.data] == newest_first[2:4]


def test_sdk_errors_carry_the_pingpp_error_object(sdk, merchant):
    with pytest.raises(pingpp.error.InvalidRequestError) as raised:
        create_charge(sdk, merchant, "e2ebad00001", amount=0)
    assert raised.value.param == "amount"
    with pytest.raises(pingpp.error.InvalidRequestError):
        sdk.Charge.retrieve("ch_doesnotexist000000000000")
