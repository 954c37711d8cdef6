"""Customer entity ids use the collation "C" (customer_entities.id, customer_entities_stale.entity_id, and the
foreign-key column customer_event_entities.customer_entity_id, which follows the primary key).

The database's default collation, libc C.UTF-8, is compared with strcoll: no memcmp fast path, no abbreviated
keys. Building a btree on 1M entity ids took 1.37 s instead of 0.50 s with "C", and btree inserts into
customer_entities_pkey are a hot spot of attribute recomputation. Entity ids are 32-char lowercase hex
(uuid4().hex), so their order is unchanged.

Depends on stitching 0005 so that stitching_identifiers.customer_entity_id (a foreign key to the entity id) is in
the migration state here and follows the primary key's collation in the same ALTER.
"""

import cdp.models
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("cdp", "0008_attributes_gin_pending_list_4mb"),
        ("stitching", "0005_drop_entity_like_index"),
    ]

    operations = [
        migrations.AlterField(
            model_name="customerentity",
            name="id",
            field=models.CharField(
                db_collation="C",
                default=cdp.models.new_entity_id,
                editable=False,
                max_length=32,
                primary_key=True,
                serialize=False,
            ),
        ),
        migrations.AlterField(
            model_name="staleentity",
            name="entity_id",
            field=models.CharField(db_collation="C", max_length=32, primary_key=True, serialize=False),
        ),
    ]
