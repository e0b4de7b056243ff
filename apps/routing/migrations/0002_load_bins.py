"""Loads the BIN table from apps/routing/fixtures/bins.json (rows already present are kept)."""

import json
from pathlib import Path

from django.db import migrations

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "bins.json"


def load_bins(apps, schema_editor):
    CardBin = apps.get_model("routing", "CardBin")
    rows = json.loads(FIXTURE.read_text(encoding="utf-8"))
    CardBin.objects.bulk_create([CardBin(**row["fields"]) for row in rows], ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [("routing", "0001_initial")]

    operations = [migrations.RunPython(load_bins, migrations.RunPython.noop)]
