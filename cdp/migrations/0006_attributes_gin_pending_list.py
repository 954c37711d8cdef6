"""Bound the attributes GIN index's pending list (see CustomerEntity.Meta): a storage parameter set in place,
not a rebuild of the index."""

import django.contrib.postgres.indexes
from django.db import migrations

INDEX = "customer_entities_attributes"


class Migration(migrations.Migration):
    dependencies = [("cdp", "0005_attributes_queue")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f"ALTER INDEX {INDEX} SET (gin_pending_list_limit = 256)",
                    reverse_sql=f"ALTER INDEX {INDEX} RESET (gin_pending_list_limit)",
                )
            ],
            state_operations=[
                migrations.RemoveIndex(model_name="customerentity", name=INDEX),
                migrations.AddIndex(
                    model_name="customerentity",
                    index=django.contrib.postgres.indexes.GinIndex(
                        fields=["attributes"], gin_pending_list_limit=256, name=INDEX, opclasses=["jsonb_path_ops"]
                    ),
                ),
            ],
        )
    ]
