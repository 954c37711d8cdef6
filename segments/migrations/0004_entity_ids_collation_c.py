"""Segment exports' entity ids (the checkpoint, the batch in flight, and the exported members) use the collation
"C", like customer_entities.id (cdp 0009): an export walks the members in entity id order and resumes after
its checkpoint, so these columns compare with the entity ids they were taken from.

The database's default collation, libc C.UTF-8, is compared with strcoll (no memcmp fast path, no abbreviated
keys); entity ids are 32-char lowercase hex, so their order is unchanged.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("segments", "0003_exported_members"),
    ]

    operations = [
        migrations.AlterField(
            model_name="exportedmember",
            name="entity_id",
            field=models.CharField(db_collation="C", max_length=32),
        ),
        migrations.AlterField(
            model_name="segmentexport",
            name="checkpoint_entity_id",
            field=models.CharField(blank=True, db_collation="C", max_length=32),
        ),
        migrations.AlterField(
            model_name="segmentexport",
            name="in_flight_entity_id",
            field=models.CharField(blank=True, db_collation="C", max_length=32),
        ),
    ]
