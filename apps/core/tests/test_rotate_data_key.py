"""rotate_data_key: every encrypted column moves to the active key, values unchanged, old key then removable."""

import base64
import io
import os

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.db import connection

from apps.core.management.commands.rotate_data_key import encrypted_models
from apps.core.models import PlatformKey

pytestmark = pytest.mark.django_db(transaction=True)  # the command commits row by row

KEY_A = base64.b64encode(os.urandom(32)).decode()
KEY_B = base64.b64encode(os.urandom(32)).decode()
KEY_C = base64.b64encode(os.urandom(32)).decode()


def raw_column(model, field: str) -> list[str]:
    opts = model._meta
    column = opts.get_field(field).column
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT "{column}" FROM "{opts.db_table}" ORDER BY "{opts.pk.column}"')
        return [row[0] for row in cursor.fetchall()]


def rotate(*args) -> str:
    out = io.StringIO()
    call_command("rotate_data_key", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def secrets_under_a(settings):
    """Five platform keys and three channel accounts, all encrypted under key A."""
    settings.PAYSYS_DATA_KEYS = f"A:{KEY_A}"
    channel_account = apps.get_model("channels", "ChannelAccount")  # core may not import channels
    for n in range(5):
        PlatformKey.objects.create(
            kid=f"k{n}", public_key_pem=f"public {n}", private_key_pem=f"private {n}", active=n == 0
        )
    for n in range(3):
        channel_account.objects.create(
            name=f"account {n}",
            provider="alipay",
            base_url="http://127.0.0.1:9/",
            credentials={"app_id": str(n), "app_private_key": f"secret {n}"},
        )
    assert {token[:5] for token in raw_column(PlatformKey, "private_key_pem")} == {"v1:A:"}
    assert {token[:5] for token in raw_column(channel_account, "credentials")} == {"v1:A:"}
    return channel_account


def plaintexts(channel_account):
    return (
        list(PlatformKey.objects.order_by("pk").values_list("private_key_pem", flat=True)),
        list(channel_account.objects.order_by("pk").values_list("credentials", flat=True)),
    )


def test_rotation_re_encrypts_every_column_under_the_new_key(secrets_under_a, settings):
    channel_account = secrets_under_a
    before = plaintexts(channel_account)
    settings.PAYSYS_DATA_KEYS = f"B:{KEY_B},A:{KEY_A}"

    output = rotate("--new-key-id", "B", "--batch-size", "2")

    assert "core.PlatformKey (private_key_pem): 5 rows, 5 re-encrypted, 0 already current" in output
    assert "channels.ChannelAccount (credentials): 3 rows, 3 re-encrypted, 0 already current" in output
    assert "every encrypted value is under 'B'; keys no longer needed: A" in output
    assert {token[:5] for token in raw_column(PlatformKey, "private_key_pem")} == {"v1:B:"}
    assert {token[:5] for token in raw_column(channel_account, "credentials")} == {"v1:B:"}
    assert plaintexts(channel_account) == before

    settings.PAYSYS_DATA_KEYS = f"B:{KEY_B}"  # the old key removed: everything still reads
    assert plaintexts(channel_account) == before


def test_rotation_is_idempotent(secrets_under_a, settings):
    settings.PAYSYS_DATA_KEYS = f"B:{KEY_B},A:{KEY_A}"
    rotate("--new-key-id", "B")
    tokens = raw_column(PlatformKey, "private_key_pem")

    output = rotate("--new-key-id", "B")

    assert "core.PlatformKey (private_key_pem): 5 rows, 0 re-encrypted, 5 already current" in output
    assert raw_column(PlatformKey, "private_key_pem") == tokens  # nothing rewritten


def test_rotation_refuses_when_the_new_key_is_not_active(secrets_under_a, settings):
    settings.PAYSYS_DATA_KEYS = f"A:{KEY_A},B:{KEY_B}"  # B added, but not first
    tokens = raw_column(PlatformKey, "private_key_pem")

    with pytest.raises(CommandError, match="the active data key is 'A', not 'B': put 'B' first in PAYSYS_DATA_KEYS"):
        rotate("--new-key-id", "B")

    assert raw_column(PlatformKey, "private_key_pem") == tokens


def test_a_value_under_an_unconfigured_key_is_reported_and_the_rest_rotated(secrets_under_a, settings):
    settings.PAYSYS_DATA_KEYS = f"C:{KEY_C}"
    PlatformKey.objects.create(kid="stray", public_key_pem="p", private_key_pem="under C", active=False)
    settings.PAYSYS_DATA_KEYS = f"B:{KEY_B},A:{KEY_A}"  # C is unknown here

    with pytest.raises(CommandError, match="1 values could not be re-encrypted"):
        rotate("--new-key-id", "B")

    assert [token[:5] for token in raw_column(PlatformKey, "private_key_pem")] == ["v1:B:"] * 5 + ["v1:C:"]


def test_the_dry_run_writes_nothing(secrets_under_a, settings):
    settings.PAYSYS_DATA_KEYS = f"B:{KEY_B},A:{KEY_A}"
    tokens = raw_column(PlatformKey, "private_key_pem")

    output = rotate("--new-key-id", "B", "--dry-run")

    assert "core.PlatformKey (private_key_pem): 5 rows, 5 to re-encrypt" in output
    assert raw_column(PlatformKey, "private_key_pem") == tokens


def test_every_encrypted_field_in_the_project_is_found(db):
    found = {model._meta.label: [f.name for f in fields] for model, fields in encrypted_models()}

    assert found["core.PlatformKey"] == ["private_key_pem"]
    assert found["channels.ChannelAccount"] == ["credentials"]
    declared = {
        model._meta.label
        for model in apps.get_models()
        for f in model._meta.local_concrete_fields
        if type(f).__name__ in ("EncryptedTextField", "EncryptedJSONField")
    }
    assert set(found) == declared
