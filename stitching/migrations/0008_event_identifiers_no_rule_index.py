"""Drop the identity-graph edges' index on the rule: nothing looks edges up by rule (deleting a rule may scan),
and a full restitch builds every index of this table."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("stitching", "0007_entitychange_drop_like_index"),
    ]

    operations = [
        migrations.AlterField(
            model_name="eventidentifier",
            name="rule",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="stitching.stitchingrule",
            ),
        ),
    ]
