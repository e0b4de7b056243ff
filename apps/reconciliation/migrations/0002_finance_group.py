"""The finance permission group: reads reconciliation and the ledger, acts on discrepancies,
downloads reports."""

from django.db import migrations

PERMISSIONS = {
    "reconciliation": [
        "view_billfile", "add_billfile", "view_reconrun", "view_discrepancy", "change_discrepancy",
        "export_reports", "view_discrepancyaction", "view_crossdayhold", "view_billdownload",
    ],
    "ledger": ["view_adjustment", "add_adjustment", "change_adjustment", "view_journalentry", "view_account"],
}


def forwards(apps, schema_editor):
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions

    for label in PERMISSIONS:
        config = global_apps.get_app_config(label)
        create_permissions(config, verbosity=0, apps=apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name="finance")
    for label, codenames in PERMISSIONS.items():
        group.permissions.add(*Permission.objects.filter(content_type__app_label=label, codename__in=codenames))


class Migration(migrations.Migration):
    dependencies = [
        ("reconciliation", "0001_initial"),
        ("ledger", "0002_ledger_triggers"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
