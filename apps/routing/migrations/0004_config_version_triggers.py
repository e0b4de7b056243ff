"""Statement triggers that move `routing_configversion.version` in the same transaction as any
change to what routing caches per process (apps.routing.selectors): a decision compares the
version with the one its cache was built from and rebuilds on any difference.

The version comes from a sequence of its own (never reset by a test flush), so a version is never
reused; the row is updated, not the sequence read, so a reader sees the new version only once the
edit that made it is committed, and never before the edit itself.
"""

from django.db import migrations

TABLES = [
    "channels_channelaccount",
    "routing_routingpolicy",
    "routing_routingpolicy_allowed_apps",
    "routing_maintenancewindow",
    "routing_routeconfig",
    "ledger_feeplan",
]

FORWARD = """
CREATE SEQUENCE routing_config_version_seq;

CREATE FUNCTION routing_config_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO routing_configversion (id, version) VALUES (1, nextval('routing_config_version_seq'))
    ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version;
    RETURN NULL;
END
$$;
""" + "".join(
    f"CREATE TRIGGER routing_config_touch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}\n"
    "    FOR EACH STATEMENT EXECUTE FUNCTION routing_config_touch();\n"
    for table in TABLES
) + "INSERT INTO routing_configversion (id, version) VALUES (1, nextval('routing_config_version_seq'))\n    ON CONFLICT (id) DO NOTHING;\n"

BACKWARD = "DELETE FROM routing_configversion;\n" + "".join(f"DROP TRIGGER routing_config_touch ON {table};\n" for table in TABLES) + (
    "DROP FUNCTION routing_config_touch();\nDROP SEQUENCE routing_config_version_seq;\n"
)


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0003_probes_reservations_config_version"),
        ("channels", "0002_channel_calls"),
        ("ledger", "0002_ledger_triggers"),
    ]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
