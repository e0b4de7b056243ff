"""Inserts for the hot paths, in one round trip and without rebuilding the statement every time.

`Model.objects.create` compiles its INSERT anew on every call (a few hundred Python calls per
row, field by field), and `bulk_create(ignore_conflicts=True)` cannot say whether it inserted.
These helpers build a model's INSERT once per process and only turn the instance's values into
parameters on each call, with the fields' own `pre_save` (auto_now_add, defaults already set by
the model's constructor) and `get_db_prep_save` (Money, JSON, …): the row is the one `save()`
would write. What they leave out: model signals (paysys connects none) and the saving of
unsaved related objects (a caller passes saved ones).
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
