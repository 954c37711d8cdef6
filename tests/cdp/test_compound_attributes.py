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
        (
            {"fields": [{"id": "t", "data_type": "compound", "path": "x"}]},
            "fields",
            "The data_type of field 't' is one of",
        ),
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


def test_compound_attributes_in_the_api_admin_profile_search_and_wbs(orders, admin_client, admin_user, client):
    from segments.services import segment_create

    body = admin_client.get("/api/attributes/last_order").json()
    assert body["data_type"] == "compound" and [f["id"] for f in body["fields"]] == ["order_id", "total", "paid"]
    assert body["fields"][1]["name"] == "total"  # a name defaults to the id
    response = admin_client.post(
        "/api/attributes", {"id": "first_visit", "name": "First visit", "computation": "first_value",
                            "data_type": "compound", "fields": [{"id": "url", "data_type": "string"}]},
        format="json",
    )  # fmt: skip
    assert response.status_code == 400 and "needs the payload path" in response.json()["message"]

    # The profile names each field and formats it by its type; the attribute's page lists the values.
    client.force_login(admin_user)
    page = client.get(f"/admin/cdp/customerentity/{orders.pk}/change/").content.decode()
    assert "Order: A1 · total: 120.50" in page
    page = client.get("/admin/cdp/attribute/all_orders/change/")
    assert page.status_code == 200 and "Order: A2 · total: 80" in page.content.decode()

    # A compound attribute is no search key, nor a /wbs lookup key: 400s that say why.
    response = admin_client.get("/api/customers/search", {"attribute": "last_order", "value": "A1"})
    assert response.status_code == 400 and "compound" in response.json()["message"]
    segment = segment_create(
        owner=admin_user, name="Has ordered", conditions={"attribute": "last_order", "operator": "is_set"}
    )
    response = admin_client.get("/wbs", {"attribute": "last_order", "value": "A1", "segment": segment.pk})
    assert response.status_code == 400 and "compound" in response.json()["message"]


def test_segments_test_whether_a_customer_has_a_compound_value(orders, admin_user):
    from segments.selectors import segment_members_count
    from segments.services import segment_create

    CustomerEntity.objects.create()  # no order
    has = segment_create(owner=admin_user, name="Ordered", conditions={"attribute": "last_order", "operator": "is_set"})
    hasnt = segment_create(
        owner=admin_user, name="Never", conditions={"attribute": "last_order", "operator": "is_not_set"}
    )
    assert segment_members_count(segment=has) == 1 and segment_members_count(segment=hasnt) == 1
    with pytest.raises(ValidationError):
        segment_create(
            owner=admin_user, name="Bad", conditions={"attribute": "last_order", "operator": "equals", "value": "A1"}
        )


def test_an_administrator_defines_a_compound_attribute_in_the_admin(no_definitions, admin_user, client):
    client.force_login(admin_user)
    assert client.get("/admin/cdp/attribute/add/").status_code == 200
    form = {"id": "last_cart", "name": "Last cart", "data_type": "compound", "computation": "last_value",
            "event_types": "cart_updated", "path": "", "category": "", "unit": "", "description": ""}  # fmt: skip
    response = client.post("/admin/cdp/attribute/add/", {**form, "fields": "[]"})
    assert response.status_code == 200 and "needs a list of fields" in response.content.decode()
    fields = '[{"id": "items", "data_type": "int", "path": "properties.items"}]'
    response = client.post("/admin/cdp/attribute/add/", {**form, "fields": fields})
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Attribute.objects.get(pk="last_cart").fields == [
        {"id": "items", "name": "items", "data_type": "int", "path": "properties.items"}
    ]


@pytest.mark.parametrize(
    ("condition", "members"),
    [
        ({"field": "total", "operator": "gt", "value": 100}, {"ann"}),
        ({"field": "total", "operator": "equals", "value": 80}, {"ann", "bob"}),
        ({"field": "order_id", "operator": "in", "value": ["A1", "B9"]}, {"ann"}),
        ({"field": "order_id", "operator": "starts_with", "value": "B"}, {"bob"}),
        ({"field": "total", "operator": "not_equals", "value": 80}, {"ann"}),
        ({"field": "total", "operator": "is_set"}, {"ann", "bob"}),
        ({"field": "order_id", "operator": "is_not_set"}, {"cid"}),
        ({"field": "total", "operator": "lt", "value": 100, "negate": True}, {"cid"}),
        ({"field": "total", "operator": "gte", "value": 100, "negate": True}, {"bob", "cid"}),
    ],
)
def test_conditions_on_a_compound_attributes_field(no_definitions, web_source, condition, members):
    """SQL and the Python reference agree, each value an object: "any order over 100"."""
    from segments.conditions import tree_evaluate, tree_validate
    from segments.selectors import attribute_types, conditions_members_count

    svc.attribute_create(
        id="orders", name="Orders", computation="unique_values", data_type="compound", fields=ORDER_FIELDS[:2]
    )
    stored = {
        "ann": [{"order_id": "A1", "total": 120.5}, {"order_id": "A2", "total": 80}],
        "bob": [{"total": 80}, {"order_id": "B7", "total": "80"}],  # (a text where a number belongs never matches)
        "cid": None,
    }
    for name, orders in stored.items():
        CustomerEntity.objects.create(id=name.ljust(32, "0"), attributes={"orders": orders} if orders else {})
    tree = tree_validate({"attribute": "orders", **condition}, attributes=attribute_types())
    expected = {n for n, orders in stored.items() if tree_evaluate(tree, {"orders": orders} if orders else {},
                                                                     attributes=attribute_types())}  # fmt: skip
    assert expected == members
    assert conditions_members_count(conditions={"attribute": "orders", **condition}) == len(members)


def test_a_field_condition_names_a_field_the_attribute_has(orders):
    from segments.conditions import ConditionInvalid, tree_validate
    from segments.selectors import attribute_types

    with pytest.raises(ConditionInvalid, match="has no field 'price'; one of: order_id, total, paid"):
        tree_validate({"attribute": "last_order", "field": "price", "operator": "is_set"}, attributes=attribute_types())
    with pytest.raises(ConditionInvalid, match="'gt' is not an operator for string field 'order_id'"):
        tree_validate(
            {"attribute": "last_order", "field": "order_id", "operator": "gt", "value": 1}, attributes=attribute_types()
        )
    with pytest.raises(ConditionInvalid, match="or name one of its fields"):
        tree_validate({"attribute": "last_order", "operator": "equals", "value": "A1"}, attributes=attribute_types())


def test_a_field_condition_reads_as_words(orders):
    from segments.builder import tree_describe

    tree = {"attribute": "last_order", "field": "total", "operator": "gt", "value": 100}
    assert tree_describe(tree) == "Last order's total is greater than 100"


def test_a_field_a_segment_uses_cannot_be_removed(orders, admin_user):
    from cdp.models import Attribute
    from segments.services import segment_create

    segment_create(
        owner=admin_user, name="Big spenders",
        conditions={"attribute": "last_order", "field": "total", "operator": "gt", "value": 100},
    )  # fmt: skip
    attribute = Attribute.objects.get(pk="last_order")
    with pytest.raises(ValidationError, match="Big spenders"):
        svc.attribute_update(attribute=attribute, fields=[f for f in ORDER_FIELDS if f["id"] != "total"])
    # Another field may go.
    svc.attribute_update(attribute=attribute, fields=[f for f in ORDER_FIELDS if f["id"] != "paid"])
    assert [f["id"] for f in Attribute.objects.get(pk="last_order").fields] == ["order_id", "total"]


def test_review_fixes_wbs_admin_ids_nulls_groups_and_type_changes(orders, admin_user, client):
    from segments.audience import audience_cache_forget
    from segments.conditions import ConditionInvalid, tree_evaluate, tree_validate
    from segments.selectors import attribute_types, conditions_members_count
    from segments.services import segment_create

    # /wbs evaluates a segment with a field condition (looked up by another attribute).
    svc.attribute_create(id="ps_cookie", name="Cookie", computation="identifier_values", category="cookie")
    CustomerEntity.objects.filter(pk=orders.pk).update(attributes={**values(orders), "ps_cookie": ["c-1"]})
    big = segment_create(
        owner=admin_user, name="Big spenders",
        conditions={"attribute": "last_order", "field": "total", "operator": "gt", "value": 100},
    )  # fmt: skip
    audience_cache_forget()  # (definitions are cached per process)
    response = client.get("/wbs", {"attribute": "ps_cookie", "value": "c-1", "segment": big.pk})
    assert response.status_code == 200, response.content

    # Removing a field that segment uses is refused at the field, not a 500.
    client.force_login(admin_user)
    form = {"id": "last_order", "name": "Last order", "data_type": "compound", "computation": "last_value",
            "event_types": "order", "path": "", "category": "", "unit": "", "description": "",
            "fields": '[{"id": "order_id", "data_type": "string", "path": "properties.order_id"}]'}  # fmt: skip
    response = client.post("/admin/cdp/attribute/last_order/change/", form)
    assert response.status_code == 200 and "Big spenders" in response.content.decode()

    # A field id ending in a line break is no id.
    with pytest.raises(ValidationError):
        svc.attribute_create(id="x", name="X", computation="last_value", data_type="compound",
                             fields=[{"id": "total\n", "data_type": "float", "path": "x"}])  # fmt: skip

    # A field holding null is no value, in SQL as in the reference.
    CustomerEntity.objects.create(id="n".ljust(32, "0"), attributes={"last_order": [{"total": None}]})
    condition = {"attribute": "last_order", "field": "total", "operator": "is_set"}
    tree = tree_validate(condition, attributes=attribute_types())
    assert not tree_evaluate(tree, {"last_order": [{"total": None}]}, attributes=attribute_types())
    assert conditions_members_count(conditions=condition) == 1  # the customer with the 120.5 order only
    with pytest.raises(ConditionInvalid, match="either a group"):
        tree_validate({"operator": "and", "children": [], "field": "total"}, attributes=attribute_types())


def test_a_compound_attribute_becoming_another_type_leaves_its_fields(orders):
    attribute = Attribute.objects.get(pk="all_orders")
    svc.attribute_update(attribute=attribute, data_type="string", path="properties.order_id")
    assert Attribute.objects.get(pk="all_orders").fields == []
