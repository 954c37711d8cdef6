"""The "emails" data source and the attributes email_consent / email_blocked (historical models, as in cdp's 0003).
Its stitching rule (payload `email` → email) is created through the stitching services by
emails.services.setup when the first email event is recorded, which also re-creates whatever is missing."""

from django.db import migrations

from emails.services.setup import ATTRIBUTES, SOURCE_NAME, SOURCE_SLUG


def create(apps, schema_editor):
    DataSource = apps.get_model("cdp", "DataSource")
    Attribute = apps.get_model("cdp", "Attribute")
    source, _ = DataSource.objects.get_or_create(
        slug=SOURCE_SLUG,
        defaults={"name": SOURCE_NAME, "type": "email",
                  "description": "Consent, block and delivery events of the email channel."},
    )  # fmt: skip
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
