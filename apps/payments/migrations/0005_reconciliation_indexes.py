# Reconciliation reads an account's payments and refunds of a day (and the days around it).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0004_amount_received"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="charge",
            index=models.Index(
                condition=models.Q(("paid_at__isnull", False)),
                fields=["channel_account", "paid_at"],
                name="charge_paid_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="refund",
            index=models.Index(
                condition=models.Q(("succeeded_at__isnull", False)),
                fields=["succeeded_at"],
                name="refund_succeeded_idx",
            ),
        ),
    ]
