"""One name per stitching category (case-insensitive): identifiers are named by it. Names that an earlier version
let two categories share get the category's id appended first."""

from django.db import migrations, models
from django.db.models.functions import Lower


def names_deduplicate(apps, schema_editor):
    StitchingCategory = apps.get_model("stitching", "StitchingCategory")
    seen: set[str] = set()
    for category in StitchingCategory.objects.order_by("-priority", "id"):
        if category.name.lower() in seen:
            category.name = f"{category.name} ({category.pk})"[:200]
            category.save(update_fields=["name"])
        seen.add(category.name.lower())


class Migration(migrations.Migration):
    dependencies = [("stitching", "0016_refused_link_proxy")]

    operations = [
        migrations.RunPython(names_deduplicate, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="stitchingcategory",
            constraint=models.UniqueConstraint(Lower("name"), name="stitching_category_name_unique"),
        ),
    ]
