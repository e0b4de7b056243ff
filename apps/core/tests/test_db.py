import pytest
from django.db import IntegrityError, transaction
from django.forms.models import model_to_dict

from apps.core.db import held_writes, insert, insert_unless_exists, later, update, update_later
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


# Held writes ride only with autocommitted statements: these tests run outside a test transaction.
held = pytest.mark.django_db(transaction=True)


def _hash_of(key: IdempotencyKey) -> str:
    return IdempotencyKey.objects.get(pk=key.pk).request_hash


def _later_hash(key: IdempotencyKey, value: str) -> None:
    later("UPDATE core_idempotencykey SET request_hash = %s WHERE id = %s", [value, key.pk])


@held
def test_held_writes_ride_with_the_next_autocommitted_statement(django_assert_num_queries):
    first, second = insert(_key()), insert(_key(key="k2"))
    with held_writes():
        first.response_body = {"v": 1}
        update_later(first, ("response_body",))
        first.response_body = {"v": 2}
        update_later(first, ("response_body",))  # replaces the held update of the same row
        _later_hash(second, "held")
        assert IdempotencyKey.objects.get(pk=first.pk).response_body == {"a": [1, "é"]}
        assert _hash_of(second) == "h"  # nothing sent yet

        with django_assert_num_queries(1):
            insert(_key(key="k3"))

        assert IdempotencyKey.objects.get(pk=first.pk).response_body == {"v": 2}
        assert _hash_of(second) == "held"
    assert IdempotencyKey.objects.count() == 3


@held
def test_what_is_still_held_is_sent_when_the_block_ends_even_by_an_exception():
    key = insert(_key())
    with pytest.raises(RuntimeError), held_writes():
        _later_hash(key, "sent at the end")
        raise RuntimeError("the block failed")
    assert _hash_of(key) == "sent at the end"


@held
def test_inside_a_transaction_a_later_write_is_part_of_it():
    key = insert(_key())
    with held_writes(), pytest.raises(RuntimeError), transaction.atomic():
        _later_hash(key, "in the transaction")
        assert _hash_of(key) == "in the transaction"
        raise RuntimeError("roll back")
    assert _hash_of(key) == "h"


@held
def test_a_statement_that_fails_writes_nothing_and_the_held_writes_are_sent_later():
    key = insert(_key())
    with held_writes():
        _later_hash(key, "held")
        with pytest.raises(IntegrityError):
            insert(_key())  # the same key: the statement fails as a whole
        assert _hash_of(key) == "h"
    assert _hash_of(key) == "held"
    assert IdempotencyKey.objects.count() == 1


@held
def test_without_a_held_block_a_later_write_runs_at_once():
    key = insert(_key())
    _later_hash(key, "now")
    assert _hash_of(key) == "now"


@held
def test_a_statement_inside_a_transaction_carries_no_held_write():
    key = insert(_key())
    with held_writes():
        _later_hash(key, "held")
        with pytest.raises(RuntimeError), transaction.atomic():
            insert(_key(key="k2"))
            raise RuntimeError("roll back")
        assert _hash_of(key) == "h"  # not sent with the rolled-back insert, still held
    assert _hash_of(key) == "held"
    assert IdempotencyKey.objects.count() == 1


@held
def test_a_held_write_that_fails_costs_neither_the_statement_it_rides_on_nor_the_others(caplog):
    key = insert(_key())
    with held_writes():
        later("UPDATE core_idempotencykey SET request_hash = %s WHERE id = %s", [None, key.pk])  # NOT NULL
        update_later(_with(key, response_body={"good": True}), ("response_body",))
        inserted = insert(_key(key="k2"))
        assert inserted.pk is not None
    stored = IdempotencyKey.objects.get(pk=key.pk)
    assert stored.request_hash == "h" and stored.response_body == {"good": True}
    assert "could not send" in caplog.text


def _with(key: IdempotencyKey, **values) -> IdempotencyKey:
    for name, value in values.items():
        setattr(key, name, value)
    return key


@held
def test_an_update_of_a_row_with_a_held_update_leaves_that_one_held(django_assert_num_queries):
    key = insert(_key())
    with held_writes():
        update_later(_with(key, response_body={"held": True}), ("response_body",))
        with django_assert_num_queries(1):
            assert update(_with(key, request_hash="now"), ("request_hash",)) is True
        assert _hash_of(key) == "now"
        assert IdempotencyKey.objects.get(pk=key.pk).response_body == {"a": [1, "é"]}  # not in that statement
    stored = IdempotencyKey.objects.get(pk=key.pk)
    assert stored.response_body == {"held": True} and stored.request_hash == "now"


@held
def test_a_later_write_made_at_once_in_a_transaction_replaces_the_held_one_of_its_row():
    key = insert(_key())
    with held_writes():
        update_later(_with(key, response_body={"v": "held"}), ("response_body",))
        with transaction.atomic():
            update_later(_with(key, response_body={"v": "in the transaction"}), ("response_body",))
    assert IdempotencyKey.objects.get(pk=key.pk).response_body == {"v": "in the transaction"}


def test_a_statement_with_a_percent_that_is_not_a_placeholder_is_refused():
    with pytest.raises(ValueError, match="not a %s placeholder"):
        later("UPDATE core_idempotencykey SET request_hash = 'a%%b' WHERE id = %s", [1])
