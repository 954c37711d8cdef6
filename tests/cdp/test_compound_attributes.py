"""Compound attributes (SPEC §2's `compound` data type): several fields read from the same event, stored as
objects; defined, computed, validated, shown and searched without surprises."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from cdp.models import Attribute, CustomerEntity
from cdp.services import attributes as svc
from tests.cdp.test_attributes import events_add, values

pytestmark = pytest.mark.django_db

ORDER_FIELDS = [
    {"id": "order_id", "name": "Order", "data_type": "string", "path": "properties.order_id"},
    {"id": "total", "data_type": "float", "path": "properties.revenue"},
    {"id": "paid", "data_type": "bool", "path": "properties.paid"},
]


@pytest.fixture
def no_definitions(db):
    Attribute.objects.all().delete()


@pytest.fixture
def orders(no_definitions, web_source):
    svc.attribute_create(
        id="last_order", name="Last order", computation="last_value", data_type="compound",
        event_types=["order"], fields=ORDER_FIELDS,
    )  # fmt: skip
    svc.attribute_create(
        id="all_orders", name="Orders", computation="unique_values", data_type="compound",
        event_types=["order"], fields=ORDER_FIELDS[:2],
    )  # fmt: skip
    entity = CustomerEntity.objects.create()
    events_add(
        web_source,
        entity,
        [
            ("order", {"properties": {"order_id": "A1", "revenue": 120.5, "paid": True}}),
            ("page", {"properties": {"order_id": "nope", "revenue": 1}}),
            ("order", {"properties": {"order_id": "A2", "revenue": "80", "paid": "yes"}}),
            ("order", {"properties": {"order_id": "A1", "revenue": 120.5}}),  # the same order again
            ("order", {"properties": {"note": "no field of the attribute"}}),
        ],
    )
    svc.attributes_recompute()
    return entity


def test_compound_values_are_objects_of_the_fields_typed_values(orders):
    stored = values(orders)
    # The last order that had any field (the last event has none); a field without a value is left out.
    assert stored["last_order"] == [{"order_id": "A1", "total": 120.5}]
    # Unique objects; "80" read as the float field's number.
    assert sorted(stored["all_orders"], key=lambda o: o["order_id"]) == [
        {"order_id": "A1", "total": 120.5},
        {"order_id": "A2", "total": 80},
    ]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"fields": []}, "fields", "needs a list of fields"),
        ({"fields": [{"id": "Total", "data_type": "float", "path": "x"}]}, "fields", "Use lower-case letters"),
        ({"fields": [{"id": "t", "data_type": "compound", "path": "x"}]}, "fields", "data_type is one of"),
        ({"fields": [{"id": "t", "data_type": "float", "path": "$.x"}]}, "fields", "JSONPath"),
        ({"fields": [{"id": "t", "data_type": "float", "path": "x"}] * 2}, "fields", "Two fields have the id"),
        ({"fields": [{"id": "t", "data_type": "float", "path": "x", "sql": 1}]}, "fields", "unknown keys: sql"),
        ({"fields": "total"}, "fields", "needs a list of fields"),
        ({"path": "properties"}, "path", "leave its own path empty"),
        ({"computation": "sum"}, "data_type", "not compound"),
    ],
)
def test_compound_definitions_are_checked(no_definitions, changes, field, message):
    definition = {"id": "x", "name": "X", "computation": "last_value", "data_type": "compound",
                  "fields": [{"id": "t", "data_type": "float", "path": "x"}], **changes}  # fmt: skip
    with pytest.raises(ValidationError) as exc:
        svc.attribute_create(**definition)
    assert message in " ".join(exc.value.message_dict[field])


def test_only_a_compound_attribute_has_fields(no_definitions):
    with pytest.raises(ValidationError) as exc:
        svc.attribute_create(id="x", name="X", computation="last_value", path="x", fields=ORDER_FIELDS)
    assert exc.value.message_dict["fields"] == ["Only a compound attribute has fields."]
