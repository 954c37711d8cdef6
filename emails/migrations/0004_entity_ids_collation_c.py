"""A campaign recipient's customer entity id uses the collation "C", like customer_entities.id (cdp 0009).

The database's default collation, libc C.UTF-8, is compared with strcoll (no memcmp fast path, no abbreviated
keys); entity ids are 32-char lowercase hex, so their order is unchanged and every entity id column shares one
collation.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("emails", "0003_feedback_inbox"),
    ]

    operations = [
        migrations.AlterField(
            model_name="campaignrecipient",
            name="customer_entity_id",
            field=models.CharField(blank=True, db_collation="C", max_length=32),
        ),
    ]
