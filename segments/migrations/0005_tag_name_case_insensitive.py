"""Tag names are unique ignoring case, as tags are matched ("VIP" is "vip"). Tags an earlier version let differ only in
case (two requests creating them at once) are merged first: their segments get the oldest of them."""

from django.db import migrations, models
from django.db.models.functions import Lower


def tags_merge(apps, schema_editor):
    Tag = apps.get_model("segments", "Tag")
    kept: dict[str, object] = {}
    for tag in Tag.objects.order_by("id"):
        keep = kept.setdefault(tag.name.lower(), tag)
        if keep.pk == tag.pk:
            continue
        for segment in tag.segments.all():
            segment.tags.add(keep)
        tag.delete()
    # The deferred foreign key checks of those rows now, not at commit: the index below cannot be built while
    # they are pending.
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


class Migration(migrations.Migration):
    dependencies = [("segments", "0004_entity_ids_collation_c")]

    operations = [
        migrations.RunPython(tags_merge, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="tag",
            constraint=models.UniqueConstraint(
                Lower("name"),
                name="segments_tag_name_ci_unique",
                violation_error_message="A tag with this name (in any case) already exists.",
            ),
        ),
    ]
