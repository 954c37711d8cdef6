"""Identifiers are looked up by their entity's whole id, never by LIKE: the varchar_pattern_ops twin of the
entity foreign-key index only cost writes."""

from django.db import migrations

LIKE_INDEX_DROP = """
DO $$
DECLARE name text;
BEGIN
    FOR name IN SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()
        AND tablename = 'stitching_identifiers' AND indexdef LIKE '%varchar_pattern_ops%'
    LOOP
        EXECUTE format('DROP INDEX %I', name);
    END LOOP;
END $$;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("stitching", "0004_perf_derived_foreign_keys_without_constraints"),
    ]

    operations = [migrations.RunSQL(LIKE_INDEX_DROP, migrations.RunSQL.noop)]
