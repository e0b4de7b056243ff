"""Idempotency-Key on POST /v1/charges: Stripe semantics."""

import json
import threading
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from apps.core.idempotency import idempotency_keys_purge
from apps.core.models import IdempotencyKey
from apps.orders.models import Order
from apps.payments.models import Charge
from tests.support import MerchantClient, assert_error, charge_payload, sign_headers


@pytest.mark.usefixtures("sandbox_alipay")
def test_a_repeat_replays_the_first_response_and_creates_nothing(api, merchant):
    first = api.post("/v1/charges", charge_payload(merchant, order_no="idem0001"), **{"Idempotency-Key": "k1"})
    assert first.status_code == 200
    again = api.post("/v1/charges", charge_payload(merchant, order_no="idem0001"), **{"Idempotency-Key": "k1"})
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Charge.objects.count() == 1


@pytest.mark.usefixtures("sandbox_alipay")
def test_the_same_key_with_other_parameters_is_422(api, merchant):
    assert api.post("/v1/charges", charge_payload(merchant, order_no="idem0002"), **{"Idempotency-Key": "k2"})
    other = api.post("/v1/charges", charge_payload(merchant, order_no="idem0003"), **{"Idempotency-Key": "k2"})
    assert_error(other, 422, code="idempotency_key_reused")
    assert Charge.objects.count() == 1


def test_a_validation_error_releases_the_key(api, merchant, unreachable_alipay_account):
    bad = api.post("/v1/charges", charge_payload(merchant, amount=0), **{"Idempotency-Key": "k3"})
    assert bad.status_code == 400
    assert not IdempotencyKey.objects.filter(key="k3").exists()


def test_keys_are_scoped_to_the_app(client, merchant):
    from tests.support import make_merchant

    other = make_merchant("Other Merchant")
    IdempotencyKey.objects.create(app_id=other.app.pk, livemode=False, key="shared", request_hash="x",
                                  response_status=200, response_body={"id": "ch_other"})  # fmt: skip
    response = MerchantClient(client, merchant).post(
        "/v1/charges", charge_payload(merchant, amount=0), **{"Idempotency-Key": "shared"}
    )
    assert response.status_code == 400  # ran for this app, did not replay the other app's answer


def test_a_request_in_flight_makes_a_repeat_409(api, merchant):
    IdempotencyKey.objects.create(app_id=merchant.app.pk, livemode=False, key="busy",
                                  request_hash=_hash_of(merchant, "idem0004"))  # fmt: skip
    response = api.post("/v1/charges", charge_payload(merchant, order_no="idem0004"), **{"Idempotency-Key": "busy"})
    assert_error(response, 409, code="idempotency_key_in_use")
    assert Order.objects.count() == 0


def _hash_of(merchant, order_no):
    import hashlib
    import hmac

    from django.conf import settings

    body = json.dumps(charge_payload(merchant, order_no=order_no)).encode()
    return hmac.new(settings.SECRET_KEY.encode(), b"POST /v1/charges\n" + body, hashlib.sha256).hexdigest()


def test_concurrent_identical_requests_create_exactly_one_charge(merchant, sandbox_alipay):
    barrier = threading.Barrier(6)
    statuses = []

    body = json.dumps(charge_payload(merchant, order_no="idem0005")).encode()
    now = int(time.time())

    def send(i):
        # the same request retried: re-signed (a replayed signature would be refused before anything runs)
        headers = {
            "Authorization": f"Bearer {merchant.test_secret_key}",
            "Idempotency-Key": "race",
            **sign_headers(private_pem=merchant.private_pem, body=body, uri="/v1/charges", timestamp=now - i),
        }
        barrier.wait()
        response = Client().generic("POST", "/v1/charges", body, content_type="application/json", headers=headers)
        statuses.append(response.status_code)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Charge.objects.count() == 1
    assert statuses.count(200) >= 1
    assert set(statuses) <= {200, 409}


def test_keys_older_than_a_day_are_purged(merchant):
    old = IdempotencyKey.objects.create(app_id=merchant.app.pk, livemode=False, key="old", request_hash="x")
    fresh = IdempotencyKey.objects.create(app_id=merchant.app.pk, livemode=False, key="fresh", request_hash="x")
    IdempotencyKey.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=25))
    assert idempotency_keys_purge() == 1
    assert list(IdempotencyKey.objects.values_list("pk", flat=True)) == [fresh.pk]
