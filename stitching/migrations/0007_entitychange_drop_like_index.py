"""Drop the merge and split history's `varchar_pattern_ops` index on the customer id: under the "C" collation
(0006) the plain index serves LIKE prefixes too."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("stitching", "0006_entity_ids_and_identifier_values_collation_c")]

    operations = [
        migrations.RunSQL(
            "DROP INDEX IF EXISTS stitching_entitychange_customer_entity_id_94b718c9_like",
            reverse_sql=migrations.RunSQL.noop,
        )
    ]
