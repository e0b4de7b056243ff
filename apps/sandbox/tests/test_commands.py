import io
import json

import pytest
from django.core.management import call_command

from apps.core import crypto
from apps.sandbox.models import AlipayApp

pytestmark = pytest.mark.django_db


def test_sandbox_account_create_prints_one_json_object_with_matching_keys():
    out = io.StringIO()

    call_command("sandbox_account_create", "--provider", "alipay", "--json", stdout=out)

    document = json.loads(out.getvalue())
    assert sorted(document) == ["alipay_public_key", "app_id", "app_private_key", "provider"]
    assert document["provider"] == "alipay"
    app = AlipayApp.objects.get()
    assert document["app_id"] == app.app_id and len(app.app_id) == 16 and app.app_id.isdigit()
    assert document["app_private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert document["alipay_public_key"] == app.alipay_public_key_pem
    assert document["alipay_public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    # The printed private key signs what the stored app public key verifies; Alipay's pair is another.
    signature = crypto.rsa_sign(document["app_private_key"], b"probe")
    assert crypto.rsa_verify(app.app_public_key_pem, b"probe", signature)
    assert not crypto.rsa_verify(app.alipay_public_key_pem, b"probe", signature)
    assert crypto.rsa_verify(app.alipay_public_key_pem, b"probe", crypto.rsa_sign(app.alipay_private_key_pem, b"probe"))


def test_the_sandbox_private_key_is_encrypted_at_rest():
    call_command("sandbox_account_create", "--provider", "alipay", "--json", stdout=io.StringIO())

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT alipay_private_key_pem FROM sandbox_alipayapp")
        (stored,) = cursor.fetchone()
    assert stored.startswith("v1:") and "PRIVATE KEY" not in stored
