"""The app's own index is dropped: the unique constraint (app, livemode, order_no) leads with `app_id`.

Only the index goes (CONCURRENTLY: writes to the table go on meanwhile); the foreign key stays as
it is. Django's own AlterField would drop and re-add the constraint, re-checking every row under a
lock that blocks writes.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False  # DROP INDEX CONCURRENTLY runs outside a transaction

    dependencies = [
        ("merchants", "0001_initial"),
        ("orders", "0004_currency_choices_pinned"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="order",
                    name="app",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="orders",
                        to="merchants.app",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX CONCURRENTLY IF EXISTS "orders_order_app_id_09cbc63e"',
                    reverse_sql='CREATE INDEX CONCURRENTLY IF NOT EXISTS "orders_order_app_id_09cbc63e" ON "orders_order" ("app_id")',
                ),
            ],
        ),
    ]
