"""Database helpers the ORM does not offer in one round trip."""

from django.db import connections
from django.db.models import Model
from django.db.models.constants import OnConflict
from django.db.models.sql.subqueries import InsertQuery


def insert_unless_exists(obj: Model, *, using: str = "default") -> bool:
    """Inserts a new model instance with `INSERT … ON CONFLICT DO NOTHING RETURNING <pk>`.

    True, with `obj.pk` set, when the row was inserted; False, with nothing written, when a row
    with one of its unique keys exists (a concurrent insert of the same key is waited for first,
    as PostgreSQL does for ON CONFLICT). Runs in the caller's transaction. Django's
    `bulk_create(ignore_conflicts=True)` cannot tell which of the two happened, so it costs a
    second query.
    """
    opts = obj._meta
    fields = [field for field in opts.local_concrete_fields if field is not opts.pk and not field.generated]
    query = InsertQuery(type(obj), on_conflict=OnConflict.IGNORE)
    query.insert_values(fields, [obj])
    compiler = query.get_compiler(using=using)
    compiler.returning_fields = [opts.pk]
    [(sql, params)] = compiler.as_sql()
    with connections[using].cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return False
    obj.pk = row[0]
    obj._state.adding = False
    obj._state.db = using
    return True
