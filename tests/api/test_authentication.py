import base64
import json
import math
import time

import pytest

from apps.core import crypto
from apps.core.services import platform_public_key_pem
from apps.orders.models import Order
from apps.payments.models import Charge
from tests.support import MerchantClient, assert_error, charge_payload, list_path, make_merchant, sign_headers

pytestmark = pytest.mark.django_db


def assert_nothing_written():
    assert Order.objects.count() == 0
    assert Charge.objects.count() == 0


def test_a_signed_request_with_a_test_key_is_accepted(client, merchant):
    response = MerchantClient(client, merchant).get(list_path(merchant))
    assert response.status_code == 200
    assert response.json() == {"object": "list", "url": "/v1/charges", "has_more": False, "data": []}


def test_the_response_is_signed_with_the_platform_key(client, merchant):
    response = MerchantClient(client, merchant).get(list_path(merchant))
    signature = response["x-pingplusplus-signature"]
    assert crypto.rsa_verify(platform_public_key_pem(), response.content, signature)


def test_the_request_id_is_echoed_or_generated(client, merchant):
    given = MerchantClient(client, merchant).get(list_path(merchant), **{"X-Request-Id": "req-abc-1"})
    assert given["X-Request-Id"] == "req-abc-1"
    generated = MerchantClient(client, merchant).get(list_path(merchant) + "&x=1")
    assert generated["X-Request-Id"].startswith("iar_")


def test_a_missing_key_is_401(client, merchant):
    response = client.post("/v1/charges", json.dumps(charge_payload(merchant)), content_type="application/json")
    assert_error(response, 401, code="api_key_missing")
    assert_nothing_written()


@pytest.mark.parametrize(
    "authorization",
    ["Bearer sk_test_not-a-real-key", "Bearer ", "Token abc", "Basic !!!", "Bearer pk_test_abc"],
    ids=["unknown-key", "empty-bearer", "other-scheme", "bad-basic", "wrong-prefix"],
)
def test_an_invalid_key_is_401(client, merchant, authorization):
    body = json.dumps(charge_payload(merchant)).encode()
    response = client.generic(
        "POST", "/v1/charges", body, content_type="application/json", headers={"Authorization": authorization}
    )
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert_nothing_written()


def test_basic_auth_with_the_key_as_user_name_is_accepted(client, merchant):
    path = list_path(merchant)
    token = base64.b64encode(f"{merchant.test_secret_key}:".encode()).decode()
    headers = {"Authorization": f"Basic {token}", **sign_headers(private_pem=merchant.private_pem, body=b"", uri=path)}
    response = client.generic("GET", path, headers=headers)
    assert response.status_code == 200


def test_a_bad_signature_is_401(client, merchant):
    other = crypto.private_key_pem(crypto.rsa_generate())
    body = json.dumps(charge_payload(merchant)).encode()
    headers = {
        "Authorization": f"Bearer {merchant.test_secret_key}",
        **sign_headers(private_pem=other, body=body, uri="/v1/charges"),
    }
    response = client.generic("POST", "/v1/charges", body, content_type="application/json", headers=headers)
    assert_error(response, 401, code="signature_invalid")
    assert_nothing_written()


def test_a_signature_over_another_body_is_401(client, merchant):
    signed_body = json.dumps(charge_payload(merchant)).encode()
    sent_body = json.dumps(charge_payload(merchant, amount=1)).encode()
    headers = {
        "Authorization": f"Bearer {merchant.test_secret_key}",
        **sign_headers(private_pem=merchant.private_pem, body=signed_body, uri="/v1/charges"),
    }
    response = client.generic("POST", "/v1/charges", sent_body, content_type="application/json", headers=headers)
    assert_error(response, 401, code="signature_invalid")
    assert_nothing_written()


def test_a_missing_signature_is_401_when_the_app_has_a_public_key(client, merchant):
    response = MerchantClient(client, merchant, sign=False).post("/v1/charges", charge_payload(merchant))
    assert_error(response, 401, code="signature_invalid")
    assert_nothing_written()


@pytest.mark.parametrize("skew", [-301, 301, -3600], ids=["301s-old", "301s-ahead", "an-hour-old"])
def test_a_stale_timestamp_is_401(client, merchant, skew):
    body = json.dumps(charge_payload(merchant)).encode()
    # Whole seconds away from the true time, rounded away from it: int(time.time()) + 301 is only
    # 300.x s ahead, and the check, a moment later, would see 300 s or less.
    now = time.time()
    timestamp = math.ceil(now) + skew if skew > 0 else math.floor(now) + skew
    headers = {
        "Authorization": f"Bearer {merchant.test_secret_key}",
        **sign_headers(private_pem=merchant.private_pem, body=body, uri="/v1/charges", timestamp=timestamp),
    }
    response = client.generic("POST", "/v1/charges", body, content_type="application/json", headers=headers)
    assert_error(response, 401, code="signature_timestamp_invalid")
    assert_nothing_written()


def test_a_replayed_signature_is_401(client, merchant):
    path = list_path(merchant)
    headers = {
        "Authorization": f"Bearer {merchant.test_secret_key}",
        **sign_headers(private_pem=merchant.private_pem, body=b"", uri=path),
    }
    assert client.generic("GET", path, headers=headers).status_code == 200
    replay = client.generic("GET", path, headers=headers)
    assert_error(replay, 401, code="signature_replayed")


def test_a_live_key_needs_a_signature_even_without_a_public_key(client):
    creds = make_merchant("No Key Merchant", with_public_key=False)
    response = MerchantClient(client, creds, livemode=True, sign=False).get(list_path(creds))
    assert_error(response, 401, code="signature_invalid")


def test_a_test_key_without_a_public_key_needs_no_signature(client):
    creds = make_merchant("Unsigned Merchant", with_public_key=False)
    response = MerchantClient(client, creds, sign=False).get(list_path(creds))
    assert response.status_code == 200


def test_the_platform_public_key_is_downloadable(client):
    response = client.get("/v1/platform_public_key.pem")
    assert response.status_code == 200
    assert response.content.decode() == platform_public_key_pem()
