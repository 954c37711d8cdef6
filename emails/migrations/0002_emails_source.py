"""The "emails" data source, its stitching rule (payload `email` → email) and the attributes email_consent /
email_blocked. Historical models, as in cdp's 0003; emails.services.setup re-creates them when missing."""

from django.db import migrations

from emails.services.setup import ATTRIBUTES, SOURCE_NAME, SOURCE_SLUG


def create(apps, schema_editor):
    DataSource = apps.get_model("cdp", "DataSource")
    Attribute = apps.get_model("cdp", "Attribute")
    StitchingCategory = apps.get_model("stitching", "StitchingCategory")
    StitchingRule = apps.get_model("stitching", "StitchingRule")
    source, _ = DataSource.objects.get_or_create(
        slug=SOURCE_SLUG,
        defaults={"name": SOURCE_NAME, "type": "email",
                  "description": "Consent, block and delivery events of the email channel."},
    )  # fmt: skip
    category = StitchingCategory.objects.filter(pk="email").first()
    if category is not None:
        StitchingRule.objects.get_or_create(
            source=source, event_type="*", category=category, path="email", defaults={"priority": 10}
        )
    for spec in ATTRIBUTES:
        attribute, created = Attribute.objects.get_or_create(
            id=spec["id"],
            defaults={k: spec[k] for k in ("name", "computation", "data_type", "path", "event_types", "description")},
        )
        if created:
            attribute.sources.add(source)


class Migration(migrations.Migration):
    dependencies = [
        ("emails", "0001_initial"),
        ("cdp", "0004_profile_customers_erase_feature"),
        ("stitching", "0002_default_categories"),
    ]

    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
