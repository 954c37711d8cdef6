"""The attribute recomputation queue moves from a flag on customer_entities to a narrow table of its own (queueing
a customer no longer rewrites its wide row and its GIN entries); the varchar_pattern_ops twin of the entity
primary key, which no query uses (ids are matched whole, never by LIKE), goes: every new row version paid for it."""

from django.db import migrations, models

LIKE_INDEX_DROP = """
DO $$
DECLARE name text;
BEGIN
    FOR name IN SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()
        AND tablename = 'customer_entities' AND indexdef LIKE '%varchar_pattern_ops%'
    LOOP
        EXECUTE format('DROP INDEX %I', name);
    END LOOP;
END $$;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("cdp", "0004_profile_customers_erase_feature"),
    ]

    operations = [
        # First: the old partial index has the name the new table takes.
        migrations.RemoveIndex(
            model_name="customerentity",
            name="customer_entities_stale",
        ),
        migrations.CreateModel(
            name="StaleEntity",
            fields=[
                ("entity_id", models.CharField(max_length=32, primary_key=True, serialize=False)),
            ],
            options={
                "db_table": "customer_entities_stale",
            },
        ),
        migrations.RunSQL(
            "INSERT INTO customer_entities_stale (entity_id) SELECT id FROM customer_entities WHERE attributes_stale",
            "UPDATE customer_entities SET attributes_stale = true WHERE id IN "
            "(SELECT entity_id FROM customer_entities_stale)",
        ),
        migrations.RemoveField(
            model_name="customerentity",
            name="attributes_stale",
        ),
        migrations.RunSQL(LIKE_INDEX_DROP, migrations.RunSQL.noop),
        # A queue: rows come and go all day. Vacuum it after a few thousand dead rows, not after 20% of the table,
        # so claims (an index scan in id order) do not wade through dead entries after a big recompute.
        migrations.RunSQL(
            "ALTER TABLE customer_entities_stale SET (autovacuum_vacuum_scale_factor = 0, "
            "autovacuum_vacuum_threshold = 5000, autovacuum_vacuum_insert_scale_factor = 0, "
            "autovacuum_vacuum_insert_threshold = 5000)",
            migrations.RunSQL.noop,
        ),
    ]
