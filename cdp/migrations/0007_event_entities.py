"""The event → customer assignment moves from a column of the wide `customer_events` row to the narrow
`customer_event_entities` table (one row per event, created by a statement-level trigger)."""

import django.db.models.deletion
from django.db import migrations, models

TRIGGER = """
CREATE FUNCTION customer_event_entities_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO customer_event_entities (event_id) SELECT id FROM new_events;
    RETURN NULL;
END $$;
CREATE TRIGGER customer_event_entities_add AFTER INSERT ON customer_events
    REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION customer_event_entities_add();
"""
TRIGGER_DROP = """
DROP TRIGGER customer_event_entities_add ON customer_events;
DROP FUNCTION customer_event_entities_add();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("cdp", "0006_attributes_gin_pending_list"),
    ]

    operations = [
        migrations.CreateModel(
            name="CustomerEventEntity",
            fields=[
                (
                    "event",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="entity_link",
                        serialize=False,
                        to="cdp.customerevent",
                    ),
                ),
                (
                    "customer_entity",
                    models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="event_links",
                        to="cdp.customerentity",
                    ),
                ),
            ],
            options={"db_table": "customer_event_entities"},
        ),
        migrations.RunSQL(
            "INSERT INTO customer_event_entities (event_id, customer_entity_id) "
            "SELECT id, customer_entity_id FROM customer_events",
            "UPDATE customer_events e SET customer_entity_id = a.customer_entity_id FROM customer_event_entities a "
            "WHERE a.event_id = e.id AND a.customer_entity_id IS NOT NULL",
        ),
        migrations.RemoveIndex(model_name="customerevent", name="customer_events_entity_time"),
        migrations.RemoveIndex(model_name="customerevent", name="customer_events_unstitched"),
        migrations.RemoveField(model_name="customerevent", name="customer_entity"),
        migrations.AddIndex(
            model_name="customerevententity",
            index=models.Index(
                condition=models.Q(("customer_entity__isnull", False)),
                fields=["customer_entity"],
                name="customer_event_entities_entity",
            ),
        ),
        migrations.AddIndex(
            model_name="customerevententity",
            index=models.Index(
                condition=models.Q(("customer_entity__isnull", True)),
                fields=["event"],
                name="customer_events_unstitched",
            ),
        ),
        migrations.RunSQL(TRIGGER, TRIGGER_DROP),
    ]
