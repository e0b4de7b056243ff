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

Both take a `then=(row, link)`: a new row of another model whose foreign key `link` points at
the inserted or updated row (an audit row), written by the same statement — and only if that row
was written — instead of costing a round trip of its own. Its pk is not read back.
"""

import functools

from django.db import connections
from django.db.models import Field, Model

Then = tuple[Model, str] | None  # (a new row, the name of its foreign key to the written row)


def _columns(model: type[Model], *, leaving_out: str = "") -> tuple[Field, ...]:
    opts = model._meta
    return tuple(
        field
        for field in opts.local_concrete_fields
        if field is not opts.pk and not field.generated and field.name != leaving_out
    )


def _with_then(sql: str, model: type[Model], then: tuple[type[Model], str] | None, *, using: str):
    """`sql` (… RETURNING <pk>) as is, or wrapped so that it also inserts the dependent row: the
    statement, and the dependent row's fields in parameter order."""
    if then is None:
        return sql, ()
    child, link = then
    quote = connections[using].ops.quote_name
    fields = _columns(child, leaving_out=link)
    link_column = quote(child._meta.get_field(link).column)
    columns = ", ".join([link_column, *(quote(field.column) for field in fields)])
    values = ", ".join([f"w.{quote(model._meta.pk.column)}", *(["%s"] * len(fields))])
    wrapped = (
        f"WITH w AS ({sql}) INSERT INTO {quote(child._meta.db_table)} ({columns}) "
        f"SELECT {values} FROM w RETURNING {link_column}"
    )
    return wrapped, fields


def _params(obj: Model, fields, connection, *, add: bool) -> list:
    return [field.get_db_prep_save(field.pre_save(obj, add), connection) for field in fields]


@functools.cache
def _insert_statement(model: type[Model], then, *, unless_exists: bool, using: str):
    quote = connections[using].ops.quote_name
    fields = _columns(model)
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    conflict = " ON CONFLICT DO NOTHING" if unless_exists else ""
    returning = quote(model._meta.pk.column)
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({placeholders}){conflict} RETURNING {returning}"
    )
    return (*_with_then(sql, model, then, using=using), fields)


def _insert(obj: Model, *, then: Then, unless_exists: bool, using: str) -> bool:
    sql, then_fields, fields = _insert_statement(type(obj), _shape(then), unless_exists=unless_exists, using=using)
    connection = connections[using]
    params = _params(obj, fields, connection, add=True)
    if then is not None:
        params += _params(then[0], then_fields, connection, add=True)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    obj.pk = row[0]
    obj._state.adding = False
    obj._state.db = using
    return True


def _shape(then: Then) -> tuple[type[Model], str] | None:
    return None if then is None else (type(then[0]), then[1])


def insert(obj: Model, *, then: Then = None, using: str = "default") -> Model:
    """Inserts a new model instance (`INSERT … RETURNING <pk>`), setting its pk; returns it.
    `then`: a dependent row inserted by the same statement (module docstring)."""
    _insert(obj, then=then, unless_exists=False, using=using)
    return obj


def insert_unless_exists(obj: Model, *, using: str = "default") -> bool:
    """Inserts a new model instance with `INSERT … ON CONFLICT DO NOTHING RETURNING <pk>`.

    True, with `obj.pk` set, when the row was inserted; False, with nothing written, when a row
    with one of its unique keys exists (a concurrent insert of the same key is waited for first,
    as PostgreSQL does for ON CONFLICT). Runs in the caller's transaction.
    """
    return _insert(obj, then=None, unless_exists=True, using=using)


@functools.cache
def _update_statement(model: type[Model], names: tuple[str, ...], expected: tuple[str, ...], then, *, using: str):
    opts = model._meta
    fields = tuple(opts.get_field(name) for name in names)
    conditions = tuple(opts.get_field(name) for name in expected)
    quote = connections[using].ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    where = " AND ".join(f"{quote(field.column)} = %s" for field in (opts.pk, *conditions))
    sql = f"UPDATE {quote(opts.db_table)} SET {assignments} WHERE {where} RETURNING {quote(opts.pk.column)}"
    return (*_with_then(sql, model, then, using=using), fields, conditions)


def update(
    obj: Model, fields: tuple[str, ...], *, expect: dict | None = None, then: Then = None, using: str = "default"
) -> bool:
    """Writes `fields` of a saved instance (`UPDATE … WHERE pk = …`); True when its row was updated.

    `expect` ({field name: value}) adds conditions: the row is updated only while it still holds
    those values, e.g. `{"status": source}` for a transition that must not overtake a concurrent
    one. `then`: a dependent row inserted by the same statement, only if the row was updated
    (module docstring). Runs in the caller's transaction.
    """
    expect = expect or {}
    sql, then_fields, targets, conditions = _update_statement(
        type(obj), tuple(fields), tuple(expect), _shape(then), using=using
    )
    connection = connections[using]
    params = _params(obj, targets, connection, add=False)
    params.append(obj.pk)
    params += [field.get_db_prep_save(expect[field.name], connection) for field in conditions]
    if then is not None:
        params += _params(then[0], then_fields, connection, add=True)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() is not None
