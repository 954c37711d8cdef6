"""Drop the attribute queue's `varchar_pattern_ops` index: under the "C" collation (0009) the primary key serves
LIKE prefixes too, and every queued or claimed customer wrote both indexes."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("cdp", "0009_entity_ids_collation_c")]

    operations = [
        migrations.RunSQL(
            "DROP INDEX IF EXISTS customer_entities_stale_entity_id_b067e808_like",
            reverse_sql=migrations.RunSQL.noop,
        )
    ]
