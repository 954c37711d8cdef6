"""Default stitching categories: user_id, email, phone, cookie (see stitching/services/defaults.py)."""

from django.db import migrations

DEFAULT_CATEGORIES = [
    {"id": "user_id", "name": "User ID", "normalizer": "trim", "max_per_entity": 1, "priority": 100},
    {"id": "email", "name": "Email", "normalizer": "email", "max_per_entity": 5, "priority": 80},
    {"id": "phone", "name": "Phone", "normalizer": "phone", "max_per_entity": 5, "priority": 60},
    {"id": "cookie", "name": "Cookie / anonymous ID", "normalizer": "trim", "max_per_entity": None, "priority": 40},
]


def categories_create(apps, schema_editor):
    Category = apps.get_model("stitching", "StitchingCategory")
    for spec in DEFAULT_CATEGORIES:
        fields = {k: v for k, v in spec.items() if k != "id"}
        Category.objects.get_or_create(id=spec["id"], defaults=fields)


class Migration(migrations.Migration):
    dependencies = [("stitching", "0001_initial")]

    operations = [migrations.RunPython(categories_create, migrations.RunPython.noop)]
