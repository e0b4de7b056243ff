import pytest
from django.forms.models import model_to_dict

from apps.core.db import insert, insert_unless_exists, update
from apps.core.models import IdempotencyKey


def _key(**overrides) -> IdempotencyKey:
    fields = {"app_id": 7, "livemode": False, "key": "k1", "request_hash": "h", "response_body": {"a": [1, "é"]}}
    return IdempotencyKey(**{**fields, **overrides})


@pytest.mark.django_db
def test_insert_writes_the_row_save_would_write():
    inserted = insert(_key())
    saved = IdempotencyKey.objects.create(**model_to_dict(_key(key="k2"), exclude=["id"]))

    assert inserted.pk is not None and not inserted._state.adding
    assert inserted.created_at is not None  # auto_now_add, as save() sets it
    stored, reference = IdempotencyKey.objects.get(pk=inserted.pk), IdempotencyKey.objects.get(pk=saved.pk)
    assert model_to_dict(stored, exclude=["id", "key"]) == model_to_dict(reference, exclude=["id", "key"])
    assert stored.response_body == {"a": [1, "é"]} and stored.created_at == inserted.created_at


@pytest.mark.django_db
def test_insert_unless_exists_writes_nothing_for_an_existing_key():
    first = _key()
    assert insert_unless_exists(first) is True

    again = _key(request_hash="other")
    assert insert_unless_exists(again) is False
    assert again.pk is None
    assert list(IdempotencyKey.objects.values_list("pk", "request_hash")) == [(first.pk, "h")]


@pytest.mark.django_db
def test_update_writes_only_the_named_fields():
    key = insert(_key())
    IdempotencyKey.objects.filter(pk=key.pk).update(request_hash="changed elsewhere")
    key.response_body, key.request_hash = {"b": "é"}, "stale"

    assert update(key, ("response_body",)) is True
    stored = IdempotencyKey.objects.get(pk=key.pk)
    assert stored.response_body == {"b": "é"} and stored.request_hash == "changed elsewhere"


@pytest.mark.django_db
def test_update_with_an_expectation_the_row_no_longer_meets_writes_nothing():
    key = insert(_key())
    IdempotencyKey.objects.filter(pk=key.pk).update(request_hash="moved")
    key.response_body = {"late": True}

    assert update(key, ("response_body",), expect={"request_hash": "h"}) is False
    assert IdempotencyKey.objects.get(pk=key.pk).response_body == {"a": [1, "é"]}
    assert update(key, ("response_body",), expect={"request_hash": "moved"}) is True
    assert IdempotencyKey.objects.get(pk=key.pk).response_body == {"late": True}
