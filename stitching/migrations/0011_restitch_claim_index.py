# The queue is claimed in (attempts, id) order.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('stitching', '0010_restitch_requests'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='restitchrequest',
            index=models.Index(fields=['attempts', 'id'], name='stitching_restitch_claim'),
        ),
    ]
