# Blocks kept, as a digest of the address, after the customer was erased (emails.services.erasure).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('emails', '0004_entity_ids_collation_c'),
    ]

    operations = [
        migrations.CreateModel(
            name='EmailSuppression',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('digest', models.CharField(max_length=64, unique=True)),
                ('blocked_by', models.CharField(blank=True, max_length=255)),
                ('blocked_at', models.DateTimeField(blank=True, null=True)),
                ('created', models.DateTimeField(auto_now_add=True)),
            ],
            options={
                'verbose_name': 'suppressed address (erased)',
                'verbose_name_plural': 'suppressed addresses (erased)',
            },
        ),
    ]
