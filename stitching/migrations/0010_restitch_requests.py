# Configuration changes queue their re-stitch here, in their own transaction (engine.restitch_request).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('stitching', '0009_identifier_unique_value_first'),
    ]

    operations = [
        migrations.CreateModel(
            name='RestitchRequest',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('identifier_id', models.BigIntegerField(blank=True, null=True)),
                ('customer_entity_id', models.CharField(blank=True, db_collation='C', max_length=32, null=True)),
                ('created', models.DateTimeField(auto_now_add=True)),
                ('attempts', models.PositiveIntegerField(default=0, help_text='Runs that failed on it so far.')),
            ],
            options={
                'db_table': 'stitching_restitch_requests',
                'constraints': [models.CheckConstraint(condition=models.Q(('identifier_id__isnull', False), ('customer_entity_id__isnull', False), _connector='OR'), name='stitching_restitch_request_target')],
            },
        ),
    ]
