"""Inserts and updates for the hot paths, in one round trip and without rebuilding the statement
every time.

`Model.objects.create` compiles its INSERT anew on every call (a few hundred Python calls per
row, field by field), and `bulk_create(ignore_conflicts=True)` cannot say whether it inserted.
These helpers build a model's INSERT once per process and only turn the instance's values into
parameters on each call, with the fields' own `pre_save` (auto_now_add, defaults already set by
the model's constructor) and `get_db_prep_save` (Money, JSON, …): the row is the one `save()`
would write. What they leave out: model signals (paysys connects none) and the saving of
unsaved related objects (a caller passes saved ones, or writes them in the same statement).

`update` is `save(update_fields=…)` the same way, with the optimistic condition of django-fsm's
ConcurrentTransitionMixin made explicit: `expect` names the columns' values the row must still
hold (a state field's source state), and the caller learns whether it did.

Both take `then`: new rows written by the same statement, each only if the row it depends on
was written (`Then`), instead of costing a round trip each: an audit row, or a charge and its
audit row after its order. Their pks are read back.

The statements run on a psycopg `RawCursor` of the request's connection, their `%s` turned into
`$n` once per statement text: psycopg converts (and caches) a statement's placeholders itself,
but not for one of more than 50 parameters, such as phase 1's (73), which it would otherwise
re-parse on every run. Django's error wrapping and query log are kept.

Writes that need no answer (a call-log row, the outcome on a decision record) can be held
(`held_writes`, `later`): they are sent with the next `insert` or `update` made outside a
transaction, as part of its statement, so that one round trip and one commit carry them all.
"""

import contextlib
import contextvars
import functools
import itertools
import logging
import time
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import psycopg
from django.db import DEFAULT_DB_ALIAS, Error, connections
from django.db.models import Field, Model

logger = logging.getLogger(__name__)


class Then(NamedTuple):
    """A new row written by the same statement as the first, only if the row it depends on was."""

    row: Model
    link: str = ""  # the name of its foreign key to the row it depends on ("": no link)
    to: Model | None = None  # the row it depends on: an earlier one; None for the first


class _Statement(NamedTuple):
    ctes: tuple[str, ...]  # "wN AS (…)" parts, in order
    final: str
    columns: tuple[tuple[Field, ...], ...]  # per row written (first, then the `then` rows)
    conditions: tuple[Field, ...] = ()  # an update's `expect` fields


def _columns(model: type[Model], *, leaving_out: str = "") -> tuple[Field, ...]:
    opts = model._meta
    return tuple(
        field
        for field in opts.local_concrete_fields
        if field is not opts.pk and not field.generated and field.name != leaving_out
    )


def _with_then(first: str, model: type[Model], shape: tuple, *, using: str) -> tuple[tuple[str, ...], str, list]:
    """`first` (… RETURNING <pk>) as is, or as the first of the CTEs that write the dependent
    rows; the CTEs, the final statement and the dependent rows' fields in parameter order."""
    if not shape:
        return (), first, []
    quote = connections[using].ops.quote_name
    pks = [model._meta.pk]
    ctes, fields_of = [f"w0 AS ({first})"], []
    for n, (child, link, to) in enumerate(shape, start=1):
        fields = _columns(child, leaving_out=link)
        names = ", ".join(quote(field.column) for field in fields)
        values = ", ".join(["%s"] * len(fields))
        if link:
            names = f"{quote(child._meta.get_field(link).column)}, {names}"
            values = f"w{to}.{quote(pks[to].column)}, {values}"
        pk = child._meta.pk
        ctes.append(
            f"w{n} AS (INSERT INTO {quote(child._meta.db_table)} ({names}) "
            f"SELECT {values} FROM w{to} RETURNING {quote(pk.column)})"
        )
        pks.append(pk)
        fields_of.append(fields)
    written = range(len(pks))
    final = "SELECT " + ", ".join(f"w{n}.{quote(pks[n].column)}" for n in written)
    final += " FROM " + ", ".join(f"w{n}" for n in written)
    return tuple(ctes), final, fields_of


def _shape(obj: Model, then: Sequence[Then]) -> tuple:
    rows = [obj]
    shape = []
    for row, link, to in then:
        target = obj if to is None else to
        shape.append((type(row), link, next(n for n, earlier in enumerate(rows) if earlier is target)))
        rows.append(row)
    return tuple(shape)


def _params(obj: Model, fields, connection, *, add: bool) -> list:
    return [field.get_db_prep_save(field.pre_save(obj, add), connection) for field in fields]


@functools.cache
def _insert_statement(model: type[Model], shape: tuple, *, unless_exists: bool, using: str) -> _Statement:
    quote = connections[using].ops.quote_name
    fields = _columns(model)
    columns = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    conflict = " ON CONFLICT DO NOTHING" if unless_exists else ""
    returning = quote(model._meta.pk.column)
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES ({placeholders}){conflict} RETURNING {returning}"
    )
    ctes, final, then_fields = _with_then(sql, model, shape, using=using)
    return _Statement(ctes, final, (fields, *then_fields))


def _then_params(then: Sequence[Then], columns, connection) -> list:
    params = []
    for (row, _, _), fields in zip(then, columns, strict=True):
        params += _params(row, fields, connection, add=True)
    return params


def _written(obj: Model, then: Sequence[Then], pks: Sequence, *, using: str) -> None:
    """Marks the rows saved with the pks read back, and points each link at its row."""
    rows = [obj, *(t.row for t in then)]
    for row, pk in zip(rows, pks, strict=True):
        row.pk = pk
        row._state.adding = False
        row._state.db = using
    for row, link, to in then:
        if link:
            setattr(row, link, obj if to is None else to)  # its id now, the object still cached


def _insert(obj: Model, *, then: Sequence[Then], unless_exists: bool, using: str) -> bool:
    statement = _insert_statement(type(obj), _shape(obj, then), unless_exists=unless_exists, using=using)
    connection = connections[using]
    params = _params(obj, statement.columns[0], connection, add=True)
    params += _then_params(then, statement.columns[1:], connection)
    row = _execute(statement, params, using=using)
    if row is None:
        return False
    _written(obj, then, row, using=using)
    return True


def insert(obj: Model, *, then: Sequence[Then] = (), using: str = DEFAULT_DB_ALIAS) -> Model:
    """Inserts a new model instance (`INSERT … RETURNING <pk>`), setting its pk; returns it.
    `then`: dependent rows inserted by the same statement (module docstring)."""
    _insert(obj, then=then, unless_exists=False, using=using)
    return obj


def insert_unless_exists(obj: Model, *, then: Sequence[Then] = (), using: str = DEFAULT_DB_ALIAS) -> bool:
    """Inserts a new model instance with `INSERT … ON CONFLICT DO NOTHING RETURNING <pk>`.

    True, with `obj.pk` set, when the row was inserted; False, with nothing written (`then` rows
    included), when a row with one of its unique keys exists (a concurrent insert of the same key
    is waited for first, as PostgreSQL does for ON CONFLICT). Runs in the caller's transaction.
    """
    return _insert(obj, then=then, unless_exists=True, using=using)


@functools.cache
def _update_sql(model: type[Model], names: tuple[str, ...], expected: tuple[str, ...], *, using: str):
    opts = model._meta
    fields = tuple(opts.get_field(name) for name in names)
    conditions = tuple(opts.get_field(name) for name in expected)
    quote = connections[using].ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    where = " AND ".join(f"{quote(field.column)} = %s" for field in (opts.pk, *conditions))
    sql = f"UPDATE {quote(opts.db_table)} SET {assignments} WHERE {where} RETURNING {quote(opts.pk.column)}"
    return sql, fields, conditions


@functools.cache
def _update_statement(model: type[Model], names: tuple[str, ...], expected: tuple[str, ...], shape, *, using: str):
    sql, fields, conditions = _update_sql(model, names, expected, using=using)
    ctes, final, then_fields = _with_then(sql, model, shape, using=using)
    return _Statement(ctes, final, (fields, *then_fields), conditions)


def _update_params(obj: Model, fields, conditions, expect: dict, connection) -> list:
    params = _params(obj, fields, connection, add=False)
    params.append(obj.pk)
    params += [field.get_db_prep_save(expect[field.name], connection) for field in conditions]
    return params


def update(
    obj: Model,
    fields: tuple[str, ...],
    *,
    expect: dict | None = None,
    then: Sequence[Then] = (),
    using: str = DEFAULT_DB_ALIAS,
) -> bool:
    """Writes `fields` of a saved instance (`UPDATE … WHERE pk = …`); True when its row was updated.

    `expect` ({field name: value}) adds conditions: the row is updated only while it still holds
    those values, e.g. `{"status": source}` for a transition that must not overtake a concurrent
    one. `then`: dependent rows inserted by the same statement, only if the row was updated
    (module docstring). Runs in the caller's transaction.
    """
    expect = expect or {}
    statement = _update_statement(type(obj), tuple(fields), tuple(expect), _shape(obj, then), using=using)
    connection = connections[using]
    params = _update_params(obj, statement.columns[0], statement.conditions, expect, connection)
    params += _then_params(then, statement.columns[1:], connection)
    row = _execute(statement, params, using=using, own=_row_key(obj))
    if row is None:
        return False
    _written(obj, then, row, using=using)
    return True


# --- held writes ---------------------------------------------------------------------------------


class _Held:
    """The writes held by one `held_writes` block: key → (statement, params), in order."""

    def __init__(self, using: str):
        self.using = using
        self.writes: dict[object, tuple[str, Sequence]] = {}
        self._unkeyed = itertools.count()

    def add(self, sql: str, params: Sequence, key) -> None:
        self.writes.pop(key, None)
        self.writes[(None, next(self._unkeyed)) if key is None else key] = (sql, params)

    def take(self, *, leaving=None) -> dict:
        """All held writes but the one keyed `leaving`, which stays held."""
        taken = {key: write for key, write in self.writes.items() if key != leaving}
        self.writes = {key: write for key, write in self.writes.items() if key == leaving}
        return taken


_held: contextvars.ContextVar[_Held | None] = contextvars.ContextVar("paysys_held_writes", default=None)


def _holding(using: str) -> _Held | None:
    """The block holding writes for `using`, unless a transaction is open (its writes are its own)."""
    held = _held.get()
    if held is None or held.using != using or connections[using].in_atomic_block:
        return None
    return held


@functools.lru_cache(maxsize=256)
def _numbered(sql: str) -> str:
    """`sql` with its `%s` placeholders as `$1…$n`; any other `%` is refused (these statements,
    built here or passed to `later`, hold none)."""
    parts = sql.split("%s")
    if any("%" in part for part in parts):
        raise ValueError(f"a statement for apps.core.db holds a '%' that is not a %s placeholder: {sql[:80]!r}")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], start=1)) + parts[-1]


def _run(sql: str, params: Sequence, *, using: str):
    """Runs one statement on the connection `using`, in its transaction if one is open; its first
    row, or None."""
    numbered = _numbered(sql)
    connection = connections[using]
    connection.ensure_connection()
    connection.validate_no_broken_transaction()
    started = time.monotonic()
    with connection.wrap_database_errors, psycopg.RawCursor(connection.connection) as cursor:
        cursor.execute(numbered, params)
        row = cursor.fetchone() if cursor.description else None
    if connection.queries_logged:
        connection.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})
    return row


def _with_riders(statement: _Statement, writes: dict, params: list) -> tuple[str, list]:
    ctes = [f"r{n} AS ({sql})" for n, (sql, _) in enumerate(writes.values())] + list(statement.ctes)
    sql = f"WITH {', '.join(ctes)} {statement.final}" if ctes else statement.final
    return sql, [p for _, write_params in writes.values() for p in write_params] + params


def _execute(statement: _Statement, params: list, *, using: str, own=None):
    """Runs a statement; when it autocommits, the held writes ride with it (but one of its own
    row `own`, which stays held: one statement must not write a row twice). Its first row.

    A statement that fails with its riders is run again without them (they are sent one by one
    when the block ends): a record that cannot be written never costs the write it rides on.
    """
    held = _holding(using)
    writes = held.take(leaving=own) if held is not None else {}
    try:
        return _run(*_with_riders(statement, writes, params), using=using)
    except Error:
        if not writes:
            raise
        logger.warning("held writes: a statement failed with %d riding; running it again without them", len(writes))
        held.writes = {**writes, **held.writes}
        return _run(*_with_riders(statement, {}, params), using=using)


def later(sql: str, params: Sequence, *, key=None, using: str = DEFAULT_DB_ALIAS) -> None:
    """A write whose answer nobody waits for (`sql`: one INSERT or UPDATE, no WITH).

    Inside `held_writes` and outside a transaction it is held and sent with the next statement
    (a held write with the same `key` is replaced: the row's latest state is what gets written).
    Otherwise it runs now, in the caller's transaction if there is one, and replaces a held write
    with the same `key`.
    """
    held = _holding(using)
    if held is not None:
        held.add(sql, params, key)
        return
    outer = _held.get()
    if key is not None and outer is not None:
        outer.writes.pop(key, None)
    _run(sql, params, using=using)


def update_later(obj: Model, fields: tuple[str, ...], *, using: str = DEFAULT_DB_ALIAS) -> None:
    """`update(obj, fields)` as a held write (`later`); a later one of the same row replaces it."""
    sql, targets, _ = _update_sql(type(obj), tuple(fields), (), using=using)
    params = _update_params(obj, targets, (), {}, connections[using])
    later(sql, params, key=_row_key(obj), using=using)


def _row_key(obj: Model) -> tuple[str, object]:
    return (obj._meta.db_table, obj.pk)


@contextlib.contextmanager
def held_writes(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Holds the `later` writes made in the block for the block's next autocommitted `insert` or
    `update`; what is still held at the end is sent then (`_send`).

    Held writes are records that need no answer; a failure to send them when the block ends is
    logged, not raised (the block's own outcome has happened and must reach its caller).
    """
    if _held.get() is not None:
        yield  # the outer block sends them
        return
    held = _Held(using)
    token = _held.set(held)
    try:
        yield
    finally:
        _held.reset(token)
        _send(held)


def _send(held: _Held) -> None:
    """Sends what is still held: together, or one by one if that fails (each failure logged)."""
    writes = held.take()
    if not writes:
        return
    try:
        _run(*_with_riders(_Statement((), "SELECT 1", ()), writes, []), using=held.using)
        return
    except Error:
        logger.warning("held writes: %d could not be sent together; sending them one by one", len(writes))
    for sql, params in writes.values():
        try:
            _run(sql, params, using=held.using)
        except Error:
            logger.exception("held writes: could not send %s", sql[:80])
