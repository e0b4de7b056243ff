"""Inserts and updates for the hot paths, in one round trip and without rebuilding the statement
every time.

`Model.objects.create` compiles its INSERT anew on every call (a few hundred Python calls per
row, field by field), and `bulk_create(ignore_conflicts=True)` cannot say whether it inserted.
These helpers build a model's INSERT once per process and only turn the instance's values into
parameters on each call, with the fields' own `pre_save` (auto_now_add, defaults already set by
the model's constructor) and `get_db_prep_save` (Money, JSON, …): the row is the one `save()`
would write. What they leave out: model signals (paysys connects none) and the saving of
unsaved related objects (a caller passes saved ones).

`update` is `save(update_fields=…)` the same way, with the optimistic condition of django-fsm's
ConcurrentTransitionMixin made explicit: `expect` names the columns' values the row must still
hold (a state field's source state), and the caller learns whether it did.
"""

import functools

from django.db import connections
from django.db.models import Field, Model


@functools.cache
def _insert_statement(model: type[Model], *, unless_exists: bool, using: str) -> tuple[str, tuple[Field, ...]]:
    opts = model._meta
    fields = tuple(field for field in opts.local_concrete_fields if field is not opts.pk and not field.generated)
    quote = connections[using].ops.quote_name
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    conflict = " ON CONFLICT DO NOTHING" if unless_exists else ""
    returning = quote(opts.pk.column)
    sql = f"INSERT INTO {quote(opts.db_table)} ({columns}) VALUES ({placeholders}){conflict} RETURNING {returning}"
    return sql, fields


def _insert(obj: Model, *, unless_exists: bool, using: str) -> bool:
    sql, fields = _insert_statement(type(obj), unless_exists=unless_exists, using=using)
    connection = connections[using]
    params = [field.get_db_prep_save(field.pre_save(obj, True), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    obj.pk = row[0]
    obj._state.adding = False
    obj._state.db = using
    return True


@functools.cache
def _update_statement(
    model: type[Model], names: tuple[str, ...], expected: tuple[str, ...], *, using: str
) -> tuple[str, tuple[Field, ...], tuple[Field, ...]]:
    opts = model._meta
    fields = tuple(opts.get_field(name) for name in names)
    conditions = tuple(opts.get_field(name) for name in expected)
    quote = connections[using].ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    where = " AND ".join(f"{quote(field.column)} = %s" for field in (opts.pk, *conditions))
    return f"UPDATE {quote(opts.db_table)} SET {assignments} WHERE {where}", fields, conditions


def update(obj: Model, fields: tuple[str, ...], *, expect: dict | None = None, using: str = "default") -> bool:
    """Writes `fields` of a saved instance (`UPDATE … WHERE pk = …`); True when its row was updated.

    `expect` ({field name: value}) adds conditions: the row is updated only while it still holds
    those values, e.g. `{"status": source}` for a transition that must not overtake a concurrent
    one. Runs in the caller's transaction.
    """
    expect = expect or {}
    sql, targets, conditions = _update_statement(type(obj), tuple(fields), tuple(expect), using=using)
    connection = connections[using]
    params = [field.get_db_prep_save(field.pre_save(obj, False), connection) for field in targets]
    params.append(obj.pk)
    params += [field.get_db_prep_save(expect[field.name], connection) for field in conditions]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount == 1


def insert(obj: Model, *, using: str = "default") -> Model:
    """Inserts a new model instance (`INSERT … RETURNING <pk>`), setting its pk; returns it."""
    _insert(obj, unless_exists=False, using=using)
    return obj


def insert_unless_exists(obj: Model, *, using: str = "default") -> bool:
    """Inserts a new model instance with `INSERT … ON CONFLICT DO NOTHING RETURNING <pk>`.

    True, with `obj.pk` set, when the row was inserted; False, with nothing written, when a row
    with one of its unique keys exists (a concurrent insert of the same key is waited for first,
    as PostgreSQL does for ON CONFLICT). Runs in the caller's transaction.
    """
    return _insert(obj, unless_exists=True, using=using)
