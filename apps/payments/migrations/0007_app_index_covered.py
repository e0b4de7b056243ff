"""The app's own index is dropped: charge_list_idx (app, livemode, -id) leads with `app_id`.

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
        ("payments", "0006_currency_choices_pinned"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="charge",
                    name="app",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="charges",
                        to="merchants.app",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX CONCURRENTLY IF EXISTS "payments_charge_app_id_1756b833"',
                    reverse_sql='CREATE INDEX CONCURRENTLY IF NOT EXISTS "payments_charge_app_id_1756b833" ON "payments_charge" ("app_id")',
                ),
            ],
        ),
    ]
