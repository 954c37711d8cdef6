"""Customer profile API: attributes CRUD, customer detail with attributes, search, events, counts."""

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from cdp.models import Attribute, CustomerEntity
from cdp.services.attributes import attributes_recompute, entities_mark_stale
from cdp.services.data_sources import data_source_create
from cdp.services.events import event_record_build, events_ingest
from segments.services import segment_create
from stitching.models import EntityChange, Identifier, StitchingCategory
from tests.entities import events_attach

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def events_add(source, entity, events, *, start=T0):
    records = [
        event_record_build(source_id=source.pk, type=kind, event_time=start + timedelta(minutes=n), payload=payload)
        for n, (kind, payload) in enumerate(events)
    ]
    ids = [outcome.id for outcome in events_ingest(records)]
    events_attach(ids, entity)
    entities_mark_stale(entity_ids=[entity.pk])  # as stitching queues the customers it touched


@pytest.fixture
def jana(web_source):
    """A customer with an email identifier, page views and two orders, attributes computed."""
    entity = CustomerEntity.objects.create()
    email, _ = StitchingCategory.objects.get_or_create(id="email", defaults={"name": "Email", "normalizer": "email"})
    Identifier.objects.create(category=email, value="jana@example.com", customer_entity=entity)
    crm, _ = data_source_create(slug="crm", name="CRM", type="crm")
    order = {"event": "Order Completed", "properties": {"revenue": 100}}
    events_add(
        web_source,
        entity,
        [
            ("page", {"properties": {"path": "/"}}),
            ("page", {"properties": {"path": "/sale"}}),
            ("identify", {"traits": {"firstName": "Jana"}}),
            ("Order Completed", order),
            ("Order Completed", {**order, "properties": {"revenue": 50}}),
        ],
    )
    events_add(crm, entity, [("contact_created", {"lifecycle_stage": "lead"})], start=T0 - timedelta(days=1))
    attributes_recompute()
    entity.refresh_from_db()
    return entity


@pytest.fixture
def petr(web_source):
    entity = CustomerEntity.objects.create()
    events_add(web_source, entity, [("identify", {"traits": {"firstName": "Petr"}}), ("page", {"properties": {}})])
    attributes_recompute()
    return entity


# --- attribute definitions -----------------------------------------------------------------------------------


def test_attributes_list_shows_the_default_definitions(analyst_client):
    response = analyst_client.get("/api/attributes?limit=100")

    assert response.status_code == 200
    ids = {row["id"] for row in response.json()["results"]}
    assert {"ps_email_address", "total_revenue", "events_count", "last_event_time"} <= ids


def test_attribute_create_needs_attributes_edit(analyst_client):
    body = {"id": "pages", "name": "Pages", "computation": "count", "data_type": "int"}

    response = analyst_client.post("/api/attributes", body, format="json")

    assert response.status_code == 403
    assert "attributes_edit" in response.json()["message"]


def test_attribute_create_update_and_delete(admin_client, web_source, jana):
    body = {
        "id": "pages_viewed", "name": "Pages viewed", "computation": "count", "data_type": "int",
        "event_types": ["page"], "sources": [web_source.pk],
    }  # fmt: skip
    response = admin_client.post("/api/attributes", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["sources"] == [web_source.pk]
    attributes_recompute()  # the on-commit task does not run inside the test transaction
    jana.refresh_from_db()
    assert jana.attributes["pages_viewed"] == [2]

    response = admin_client.patch(
        "/api/attributes/pages_viewed", {"name": "Page views", "unit": "views"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert Attribute.objects.get(pk="pages_viewed").unit == "views"

    response = admin_client.delete("/api/attributes/pages_viewed")
    assert response.status_code == 204
    jana.refresh_from_db()
    assert "pages_viewed" not in jana.attributes


def test_an_attribute_a_segment_uses_is_not_deleted_or_retyped_and_the_400_says_why(admin_client):
    segment_create(
        owner=None, name="Big spenders",
        conditions={"operator": "and", "children": [{"attribute": "total_revenue", "operator": "gt", "value": 100}]},
    )  # fmt: skip

    response = admin_client.delete("/api/attributes/total_revenue")

    assert response.status_code == 400, response.json()
    assert response.json()["status"] == "error"
    assert response.json()["message"] == (
        "“Total revenue” (total_revenue) cannot be deleted: it is used by 1 segment (“Big spenders”). "
        "Remove it from them first."
    )
    assert Attribute.objects.filter(pk="total_revenue").exists()

    response = admin_client.patch(
        "/api/attributes/total_revenue", {"computation": "last_value", "data_type": "date"}, format="json"
    )
    assert response.status_code == 400, response.json()
    assert response.json()["message"].startswith("data_type: “Total revenue” cannot become date: the conditions")
    assert "“Big spenders”" in response.json()["errors"]["data_type"][0]
    assert Attribute.objects.get(pk="total_revenue").data_type == "float"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"id": "x", "name": "X", "computation": "sum", "data_type": "float"}, "path"),
        ({"id": "x", "name": "X", "computation": "count", "data_type": "string"}, "data_type"),
        ({"id": "Bad Id", "name": "X", "computation": "count", "data_type": "int"}, "id"),
        ({"id": "x", "name": "X", "computation": "median"}, "computation"),
        ({"id": "x", "name": "X", "computation": "count", "data_type": "int", "sources": [999999]}, "sources"),
        ({"id": "x", "name": "X", "computation": "identifier_values"}, "category"),
    ],
)
def test_attribute_create_bad_input_is_a_400_naming_the_field(admin_client, body, message):
    response = admin_client.post("/api/attributes", body, format="json")

    assert response.status_code == 400, response.json()
    assert response.json()["message"].startswith(message)
    assert not Attribute.objects.filter(pk="x").exists()


def test_an_unknown_attribute_is_a_404_naming_it(admin_client):
    response = admin_client.get("/api/attributes/nope")
    assert response.status_code == 404 and response.json()["message"] == "No attribute 'nope'."


def test_attribute_id_cannot_change(admin_client):
    response = admin_client.patch("/api/attributes/events_count", {"id": "other"}, format="json")

    # Refused, not silently ignored: a client renaming it would think it had.
    assert response.status_code == 400
    assert response.json()["message"] == "id: The id of an attribute cannot be changed."
    assert Attribute.objects.filter(pk="events_count").exists()
    # The same id sent back with the rest (a client echoing what it read) is fine.
    response = admin_client.patch(
        "/api/attributes/events_count", {"id": "events_count", "unit": "events"}, format="json"
    )
    assert response.status_code == 200 and response.json()["unit"] == "events"


# --- customer detail and attributes ---------------------------------------------------------------------------


def test_customer_detail_has_attribute_values(analyst_client, jana, django_assert_max_num_queries):
    with django_assert_max_num_queries(4):  # token, user + role, entity, its place in the attributes queue
        response = analyst_client.get(f"/api/customer_entities/{jana.pk}")

    assert response.status_code == 200
    body = response.json()
    assert body["attributes"]["total_revenue"] == [150]
    assert body["attributes"]["ps_email_address"] == ["jana@example.com"]
    assert body["attributes_stale"] is False


def test_customer_list_stays_cheap(analyst_client, jana, petr):
    response = analyst_client.get("/api/customer_entities")

    assert response.status_code == 200
    assert {row["id"] for row in response.json()["results"]} == {jana.pk, petr.pk}
    assert "attributes" not in response.json()["results"][0]


def test_a_merged_away_customer_is_a_404_naming_the_customer_it_belongs_to_now(analyst_client, jana):
    merged_away, merged_later = "a" * 32, "b" * 32
    EntityChange.objects.create(kind="merge", customer_entity_id=merged_later, other_entity_ids=[merged_away])
    EntityChange.objects.create(kind="merge", customer_entity_id=jana.pk, other_entity_ids=[merged_later])

    for path in ("", "/attributes", "/events", "/event_counts"):
        response = analyst_client.get(f"/api/customer_entities/{merged_away.upper()}{path}")

        assert response.status_code == 404, path
        assert response.json() == {
            "status": "error",
            "message": f"Customer entity {merged_away} was merged into {jana.pk}.",
            "merged_into": jana.pk,
        }


def test_an_erased_customer_is_told_apart_from_an_id_that_never_existed(analyst_client, admin_client, jana):
    assert admin_client.post(f"/api/customer_entities/{jana.pk}/erase").status_code == 200

    response = analyst_client.get(f"/api/customer_entities/{jana.pk}/attributes")
    assert response.status_code == 404
    assert response.json() == {"status": "error", "message": f"Customer entity {jana.pk} was erased.", "erased": True}

    response = analyst_client.get(f"/api/customer_entities/{'0' * 32}")
    assert response.status_code == 404
    assert response.json() == {"status": "error", "message": "Customer entity not found."}


def test_customer_attributes_lists_every_definition_with_values(analyst_client, jana, django_assert_max_num_queries):
    with django_assert_max_num_queries(5):
        response = analyst_client.get(f"/api/customer_entities/{jana.pk}/attributes")

    assert response.status_code == 200
    rows = {row["id"]: row for row in response.json()["attributes"]}
    assert rows["orders_count"]["values"] == [2]
    assert rows["orders_count"]["data_type"] == "int"
    assert rows["first_name"]["values"] == ["Jana"]
    assert rows["ps_phone"]["values"] == []
    assert rows["lifecycle_stage"]["values"] == ["lead"]


def test_unknown_customer_is_a_404(analyst_client):
    for suffix in ("", "/attributes", "/events", "/event_counts"):
        response = analyst_client.get(f"/api/customer_entities/{'0' * 32}{suffix}")
        assert response.status_code == 404, suffix
        assert response.json()["status"] == "error"


def test_profile_needs_customers_view(outsider_client, jana):
    assert outsider_client.get(f"/api/customer_entities/{jana.pk}/attributes").status_code == 403
    assert outsider_client.get("/api/customers/search?q=jana@example.com").status_code == 403


# --- events and counts ---------------------------------------------------------------------------------------


def test_customer_events_newest_first_and_filtered(analyst_client, jana, django_assert_max_num_queries):
    with django_assert_max_num_queries(4):
        response = analyst_client.get(f"/api/customer_entities/{jana.pk}/events?limit=2")

    assert response.status_code == 200
    body = response.json()
    assert [e["type"] for e in body["results"]] == ["Order Completed", "Order Completed"]
    assert body["count"] is None and body["next"]

    response = analyst_client.get(f"/api/customer_entities/{jana.pk}/events?type=page&source=web")
    assert [e["payload"]["properties"]["path"] for e in response.json()["results"]] == ["/sale", "/"]

    response = analyst_client.get(
        f"/api/customer_entities/{jana.pk}/events?event_time_to=2025-03-01T00:00:00Z&load_full_structure=1"
    )
    assert [e["source"]["slug"] for e in response.json()["results"]] == ["crm"]
    # A date alone takes in that whole day (the CRM event is at noon), as the admin's date range does.
    response = analyst_client.get(
        f"/api/customer_entities/{jana.pk}/events?event_time_to=2025-02-28&load_full_structure=1"
    )
    assert [e["source"]["slug"] for e in response.json()["results"]] == ["crm"]
    response = analyst_client.get(f"/api/customer_entities/{jana.pk}/events?event_time_to=2025-02-28T12:00:00Z")
    assert response.json()["results"] == []  # a time is an exclusive bound
    response = analyst_client.get(f"/api/customer_entities/{jana.pk}/events?event_time_to=20250228")
    assert len(response.json()["results"]) == 1  # the basic date format too
    response = analyst_client.get(f"/api/customer_entities/{jana.pk}/events?event_time_to=9999-12-31")
    assert response.status_code == 200 and len(response.json()["results"]) == 6  # (no day after it: no bound)


def test_customer_events_read_types_and_times_as_a_client_writes_them(analyst_client, jana):
    """`type=page, identify` (a space after the comma) dropped the identify events without a word, and a time
    with its "+00:00" not escaped in the URL (it arrives as " 00:00") was "Enter a valid date/time."."""
    url = f"/api/customer_entities/{jana.pk}/events"
    types = [e["type"] for e in analyst_client.get(f"{url}?type=page, identify ").json()["results"]]
    assert sorted(types) == ["identify", "page", "page"]
    assert len(analyst_client.get(f"{url}?type=,").json()["results"]) == 6  # no type named: no filter

    moment = analyst_client.get(f"{url}?type=identify").json()["results"][0]["event_time"]
    unescaped = moment.replace("Z", " 00:00")
    response = analyst_client.get(f"{url}?type=identify&event_time_from={unescaped}")
    assert response.status_code == 200, response.json()
    assert [e["event_time"] for e in response.json()["results"]] == [moment]
    response = analyst_client.get(f"{url}?type=identify&event_time_to={unescaped}")
    assert response.status_code == 200 and response.json()["results"] == []


def test_customer_events_bad_filter_is_a_400(analyst_client, jana):
    response = analyst_client.get(f"/api/customer_entities/{jana.pk}/events?event_time_from=yesterday")

    assert response.status_code == 400
    assert "event_time_from" in response.json()["message"]


def test_customer_events_do_not_offer_the_filters_that_make_no_sense_for_one_customer(client):
    schema = yaml.safe_load(client.get("/api/schema/").content)
    names = {p["name"] for p in schema["paths"]["/api/customer_entities/{id}/events/"]["get"]["parameters"]}
    assert {"type", "source", "event_time_from", "message_id"} <= names
    assert not names & {"customer_entity", "stitched"}


def test_customer_event_counts_per_source_and_type(analyst_client, jana, django_assert_max_num_queries):
    with django_assert_max_num_queries(4):
        response = analyst_client.get(f"/api/customer_entities/{jana.pk}/event_counts")

    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 6
    assert [(s["slug"], s["count"]) for s in body["by_source"]] == [("web", 5), ("crm", 1)]
    assert body["by_type"][0] == {"type": "Order Completed", "count": 2}
    assert {(r["slug"], r["type"], r["count"]) for r in body["by_source_and_type"]} >= {("crm", "contact_created", 1)}
    assert body["system_events"] == 0


def test_a_merge_is_not_counted_or_drawn_as_the_customers_activity(analyst_client, shop_source, default_attributes):
    from stitching.services import engine
    from tests.stitching.helpers import ingest

    ingest(shop_source, [{"id": "1", "t": 0, "anonymousId": "c1"}, {"id": "2", "t": 1, "userId": "u1"}])
    engine.stitch_pending()
    ingest(shop_source, [{"id": "3", "t": 2, "anonymousId": "c1", "userId": "u1"}])
    engine.stitch_pending()
    attributes_recompute()
    customer = CustomerEntity.objects.get()
    assert customer.attributes["events_count"] == [3]

    body = analyst_client.get(f"/api/customer_entities/{customer.pk}/event_counts").json()
    # The merge's system event is counted apart: the total is what the profile and events_count say.
    assert (body["total"], body["system_events"]) == (3, 1)
    assert [s["slug"] for s in body["by_source"]] == ["shop"]
    graph = analyst_client.get(f"/api/customer_entities/{customer.pk}/stitching_graph").json()
    assert graph["counts"]["events"] == 3
    assert sum(node["kind"] == "event" for node in graph["nodes"]) == 3


# --- search --------------------------------------------------------------------------------------------------


def test_search_by_an_identifier_as_typed(analyst_client, jana, petr):
    response = analyst_client.get("/api/customers/search", {"q": "  Jana@Example.COM "})

    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["id"] for r in results] == [jana.pk]
    assert results[0]["attributes"]["orders_count"] == [2]


def test_search_by_a_text_attribute_value(analyst_client, jana, petr):
    response = analyst_client.get("/api/customers/search", {"q": "Petr"})

    assert [r["id"] for r in response.json()["results"]] == [petr.pk]


@pytest.mark.parametrize(
    ("attribute", "value", "who"),
    [
        ("orders_count", "2", "jana"),
        ("total_revenue", "150.0", "jana"),
        ("total_revenue", "0", "petr"),
        ("last_page_path", "/sale", "jana"),
        ("ps_email_address", "JANA@example.com", "jana"),
        ("first_event_time", "2025-03-01T12:00:00Z", "petr"),
    ],
)
def test_search_by_an_exact_attribute_value(analyst_client, jana, petr, attribute, value, who):
    response = analyst_client.get("/api/customers/search", {"attribute": attribute, "value": value})

    assert response.status_code == 200, response.json()
    assert [r["id"] for r in response.json()["results"]] == [{"jana": jana, "petr": petr}[who].pk]


def test_search_finds_a_name_in_any_case_and_by_several_words(analyst_client, jana, petr):
    sofia = CustomerEntity.objects.create(attributes={"first_name": ["Sofia"], "last_name": ["Pokorny"]})
    CustomerEntity.objects.create(attributes={"first_name": ["Sofia"], "last_name": ["Novak"]})

    def found(q: str) -> set[str]:
        response = analyst_client.get("/api/customers/search", {"q": q})
        assert response.status_code == 200
        return {r["id"] for r in response.json()["results"]}

    assert found("petr") == found("PETR") == {petr.pk}
    assert len(found("sofia")) == 2
    assert found("sofia  pokorny") == found("Pokorny Sofia") == {sofia.pk}  # each word a value
    assert found("sofia pokorny novak") == set()


def test_search_by_q_and_an_attribute_narrows_the_result(analyst_client, jana, petr):
    both = {"q": "jana@example.com", "attribute": "orders_count", "value": "2"}
    assert [r["id"] for r in analyst_client.get("/api/customers/search", both).json()["results"]] == [jana.pk]
    # An attribute value Jana does not have: a filter added gives fewer results, not Jana's by `q` as well.
    other = {**both, "value": "7"}
    assert analyst_client.get("/api/customers/search", other).json()["results"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({}, "q"),
        ({"attribute": "nope", "value": "1"}, "attribute"),
        ({"attribute": "orders_count"}, "value"),
        ({"attribute": "orders_count", "value": "two"}, "value"),
        ({"attribute": "total_revenue", "value": "nan"}, "value"),
        ({"attribute": "last_event_time", "value": "soon"}, "value"),
        ({"q": "x" * 500}, "q"),
        ({"q": "a", "limit": "-1"}, "limit"),
    ],
)
def test_search_bad_input_is_a_400(analyst_client, query, field):
    response = analyst_client.get("/api/customers/search", query)

    assert response.status_code == 400
    assert response.json()["message"].startswith(field)


# --- attribute value counts ----------------------------------------------------------------------------------


def test_attribute_value_counts_most_frequent_first(analyst_client, web_source, jana, petr):
    other = CustomerEntity.objects.create()
    events_add(web_source, other, [("identify", {"traits": {"firstName": "Jana"}})])
    attributes_recompute()

    response = analyst_client.get("/api/attributes/first_name/value_counts?limit=5")

    assert response.status_code == 200
    assert response.json() == {
        "attribute": "first_name",
        "entities_with_value": 3,
        "values": [{"value": "Jana", "count": 2}, {"value": "Petr", "count": 1}],
    }


def test_attribute_value_counts_of_numbers_and_bad_limits(analyst_client, jana, petr):
    response = analyst_client.get("/api/attributes/orders_count/value_counts")
    assert response.json()["values"] == [{"value": 0, "count": 1}, {"value": 2, "count": 1}]

    for limit in ("0", "x", "100000"):
        response = analyst_client.get(f"/api/attributes/orders_count/value_counts?limit={limit}")
        assert response.status_code == 400, limit
    response = analyst_client.get("/api/attributes/nope/value_counts")
    assert response.status_code == 404
    assert response.json() == {"status": "error", "message": "No attribute 'nope'."}
