"""The attributes GIN index's pending list back to PostgreSQL's default 4 MB, set in place (no rebuild).

A 256 kB list made every attribute batch flush it several times (a third of a batch's cost); the recompute now
empties the list itself when it has written (attributes_recompute), so lookups between recomputes still find it
empty."""

import django.contrib.postgres.indexes
from django.db import migrations

INDEX = "customer_entities_attributes"


class Migration(migrations.Migration):
    dependencies = [("cdp", "0007_event_entities")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f"ALTER INDEX {INDEX} SET (gin_pending_list_limit = 4096)",
                    reverse_sql=f"ALTER INDEX {INDEX} SET (gin_pending_list_limit = 256)",
                )
            ],
            state_operations=[
                migrations.RemoveIndex(model_name="customerentity", name=INDEX),
                migrations.AddIndex(
                    model_name="customerentity",
                    index=django.contrib.postgres.indexes.GinIndex(
                        fields=["attributes"], gin_pending_list_limit=4096, name=INDEX, opclasses=["jsonb_path_ops"]
                    ),
                ),
            ],
        )
    ]
