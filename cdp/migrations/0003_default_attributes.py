"""Default attribute definitions a marketer expects, and the safe date casts attribute computation uses.

The identifier attributes name stitching categories by id (email, phone, user_id, cookie); Attribute.category is
a plain string, so this works whether or not those categories exist yet (their values are simply empty until
they do).
"""

from django.db import migrations

ORDER = "Order Completed"

# (id, name, data_type, computation, unit, category, event_types, path, description)
DEFAULT_ATTRIBUTES = [
    ("ps_email_address", "Email addresses", "string", "identifier_values", "", "email", [], "",
     "Every email address stitched to the customer (normalised: trimmed, lower-case)."),
    ("ps_phone", "Phone numbers", "string", "identifier_values", "", "phone", [], "",
     "Every phone number stitched to the customer, in E.164 format."),
    ("ps_user_id", "User ids", "string", "identifier_values", "", "user_id", [], "",
     "The customer's login ids (Segment userId)."),
    ("ps_cookie", "Cookie ids", "string", "identifier_values", "", "cookie", [], "",
     "Browser cookies and device ids (Segment anonymousId)."),
    ("first_name", "First name", "string", "last_value", "", "", [], "traits.firstName",
     "The latest first name the customer gave (identify calls)."),
    ("last_name", "Last name", "string", "last_value", "", "", [], "traits.lastName",
     "The latest last name the customer gave (identify calls)."),
    ("first_event_time", "First seen", "datetime", "first_event_time", "", "", [], "",
     "Time of the customer's first event."),
    ("last_event_time", "Last seen", "datetime", "last_event_time", "", "", [], "",
     "Time of the customer's latest event."),
    ("events_count", "Number of events", "int", "count", "events", "", [], "", "All events of the customer."),
    ("orders_count", "Number of orders", "int", "count", "orders", "", [ORDER], "", "Completed orders."),
    ("total_revenue", "Total revenue", "float", "sum", "", "", [ORDER], "properties.revenue",
     "Sum of the revenue of completed orders."),
    ("average_order_value", "Average order value", "float", "average", "", "", [ORDER], "properties.revenue",
     "Average revenue of a completed order."),
    ("largest_order_value", "Largest order", "float", "max", "", "", [ORDER], "properties.revenue",
     "Revenue of the customer's biggest order."),
    ("first_order_time", "First order", "datetime", "first_event_time", "", "", [ORDER], "",
     "Time of the customer's first completed order."),
    ("last_order_time", "Last order", "datetime", "last_event_time", "", "", [ORDER], "",
     "Time of the customer's latest completed order."),
    ("last_page_path", "Last page visited", "string", "last_value", "", "", ["page"], "properties.path",
     "Path of the latest page the customer viewed on the website."),
    ("viewed_product_categories", "Viewed product categories", "string", "unique_values", "", "",
     ["Product Viewed"], "properties.category", "Every product category the customer looked at."),
    ("lifecycle_stage", "Lifecycle stage", "string", "last_value", "", "", ["contact_created", "contact_updated"],
     "lifecycle_stage", "The stage the CRM gives the contact (lead, customer, loyal customer)."),
    ("emails_opened_count", "Emails opened", "int", "count", "emails", "", ["email_opened"], "",
     "How many campaign emails the customer opened."),
]  # fmt: skip


def attributes_create(apps, schema_editor):
    Attribute = apps.get_model("cdp", "Attribute")
    for (
        attribute_id,
        name,
        data_type,
        computation,
        unit,
        category,
        event_types,
        path,
        description,
    ) in DEFAULT_ATTRIBUTES:
        # An administrator may have created one with this id already: leave theirs alone.
        Attribute.objects.get_or_create(
            id=attribute_id,
            defaults={
                "name": name,
                "data_type": data_type,
                "computation": computation,
                "unit": unit,
                "category": category,
                "event_types": event_types,
                "path": path,
                "description": description,
            },
        )


def attributes_delete(apps, schema_editor):
    apps.get_model("cdp", "Attribute").objects.filter(id__in=[row[0] for row in DEFAULT_ATTRIBUTES]).delete()


# Payload values are whatever clients sent: a cast that raises would fail a whole recompute batch. These return
# NULL instead. Callers pre-filter with a regular expression, so the exception path (a subtransaction) is rare.
SAFE_CASTS = """
CREATE OR REPLACE FUNCTION cdp_try_timestamptz(value text) RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    RETURN value::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;
CREATE OR REPLACE FUNCTION cdp_try_date(value text) RETURNS date
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    RETURN value::date;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;
"""

SAFE_CASTS_DROP = """
DROP FUNCTION IF EXISTS cdp_try_timestamptz(text);
DROP FUNCTION IF EXISTS cdp_try_date(text);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("cdp", "0002_attribute_customerentity_attributes_and_more"),
    ]

    operations = [
        migrations.RunSQL(SAFE_CASTS, SAFE_CASTS_DROP),
        migrations.RunPython(attributes_create, attributes_delete),
    ]
