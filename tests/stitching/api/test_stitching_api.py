"""Stitching REST API: configuration CRUD with feature permissions, refused links, hub reviews, the customer
stitching graph, change history, "why" paths and GDPR erasure."""

import pytest

from cdp.features import Feature
from cdp.models import CustomerEntity, CustomerEvent
from cdp.services import erasure
from cdp.services.auth import role_create, user_create
from stitching.models import BlockedValue, EntityChange, HubReview, Identifier
from stitching.services import engine
from stitching.services.defaults import segment_default_rules_ensure
from tests.conftest import client_for
from tests.stitching.graph_builder import GraphBuilder
from tests.stitching.helpers import ingest

pytestmark = pytest.mark.django_db


@pytest.fixture
def editor_client(db):
    role = role_create(name="Stitching editor", features=[Feature.CUSTOMERS_VIEW, Feature.STITCHING_EDIT])
    return client_for(user_create(username="editor", password="Editor-password!", role=role))


@pytest.fixture
def graph(web_source):
    return GraphBuilder(web_source)


def test_categories_are_read_with_customers_view_and_written_with_stitching_edit(graph, analyst_client, editor_client):
    listed = analyst_client.get("/api/stitching_categories/").json()
    assert [row["id"] for row in listed["results"]] == ["user_id", "email", "phone", "cookie"]  # by priority

    response = analyst_client.post("/api/stitching_categories/", {"id": "crm_id", "name": "CRM id"}, format="json")
    assert response.status_code == 403 and "stitching_edit" in response.json()["message"]

    response = editor_client.post(
        "/api/stitching_categories/", {"id": "crm_id", "name": "CRM id", "max_per_entity": 1}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["normalizer"] == "trim"
    response = editor_client.patch("/api/stitching_categories/crm_id", {"priority": 40, "id": "x"}, format="json")
    assert response.status_code == 200 and response.json()["priority"] == 40 and response.json()["id"] == "crm_id"
    response = editor_client.patch("/api/stitching_categories/crm_id", {"max_per_entity": 0}, format="json")
    assert response.status_code == 400 and "max_per_entity" in response.json()["message"]
    response = editor_client.post("/api/stitching_categories/", {"id": "email", "name": "Email"}, format="json")
    assert response.status_code == 400 and "already exists" in response.json()["message"]
    assert editor_client.delete("/api/stitching_categories/crm_id").status_code == 204


def test_a_category_limit_takes_a_window_of_days(graph, editor_client):
    url = "/api/stitching_categories/email"
    response = editor_client.patch(url, {"limit_window_days": 30}, format="json")
    assert response.status_code == 200 and response.json()["limit_window_days"] == 30
    assert response.json()["max_per_entity"] == 5

    response = editor_client.patch(url, {"limit_window_days": 0}, format="json")
    assert response.status_code == 400
    assert response.json()["message"] == (
        "limit_window_days: The window must be a whole number of days from 1 to 3650, or empty (the limit counts "
        "every value ever)."
    )
    response = editor_client.patch("/api/stitching_categories/cookie", {"limit_window_days": 7}, format="json")
    assert response.status_code == 400
    assert response.json()["message"] == "limit_window_days: A window needs a limit per customer to apply to."
    # Removing the limit removes its window.
    response = editor_client.patch(url, {"max_per_entity": None}, format="json")
    assert response.status_code == 200 and response.json()["limit_window_days"] is None


def test_rules_crud_and_filters(graph, web_source, editor_client):
    body = {"source": web_source.pk, "category": "email", "path": "traits.email", "event_type": "identify"}
    response = editor_client.post("/api/stitching_rules", body, format="json")
    assert response.status_code == 201, response.json()
    rule_id = response.json()["id"]
    assert editor_client.post("/api/stitching_rules", body, format="json").status_code == 400

    response = editor_client.post("/api/stitching_rules", {**body, "path": "traits..email"}, format="json")
    assert response.status_code == 400 and response.json()["message"].startswith("path:")
    response = editor_client.post("/api/stitching_rules", {**body, "category": "fax"}, format="json")
    assert response.status_code == 400 and "category" in response.json()["message"]
    for event_type in ("a\nb", "x\u0001y"):  # no event has such a type (attributes refuse them too)
        response = editor_client.post("/api/stitching_rules", {**body, "event_type": event_type}, format="json")
        assert response.status_code == 400 and "control character" in response.json()["message"]

    assert editor_client.get("/api/stitching_rules?source=web&category=email").json()["count"] == 1
    # The source by its slug too, as the events API and the filters take it; an unknown one is named.
    response = editor_client.post(
        "/api/stitching_rules", {**body, "source": "web", "path": "traits.mail"}, format="json"
    )
    assert response.status_code == 201 and response.json()["source"] == web_source.pk
    response = editor_client.post("/api/stitching_rules", {**body, "source": "nope"}, format="json")
    assert response.status_code == 400 and response.json()["message"] == "source: No data source 'nope'."
    assert editor_client.get("/api/stitching_rules?category=phone").json()["count"] == 0
    full = editor_client.get(f"/api/stitching_rules/{rule_id}?load_full_structure=1").json()
    assert full["source"]["slug"] == "web" and full["category"]["normalizer"] == "email"

    response = editor_client.patch(f"/api/stitching_rules/{rule_id}", {"priority": 3}, format="json")
    assert response.json()["priority"] == 3
    assert editor_client.delete(f"/api/stitching_rules/{rule_id}").status_code == 204


def test_a_rule_on_the_system_source_is_refused_as_it_would_read_nothing(web_source, editor_client):
    system = engine.system_source_get()
    body = {"source": "cdp", "category": "email", "path": "traits.email"}

    response = editor_client.post("/api/stitching_rules", body, format="json")

    assert response.status_code == 400
    assert response.json()["message"].startswith("source: The system source 'cdp' holds merges and splits")
    created = editor_client.post("/api/stitching_rules", {**body, "source": "web"}, format="json").json()
    response = editor_client.patch(f"/api/stitching_rules/{created['id']}", {"source": system.pk}, format="json")
    assert response.status_code == 400


def test_blocked_values_are_normalised_and_record_the_acting_user(graph, editor_client):
    response = editor_client.post(
        "/api/stitching_blocked_values", {"category": "email", "value": " Team@Example.com", "reason": "shared"},
        format="json",
    )  # fmt: skip
    assert response.status_code == 201, response.json()
    assert response.json()["value"] == "team@example.com"
    blocked = BlockedValue.objects.get()
    assert blocked.created_by.username == "editor"
    full = editor_client.get(f"/api/stitching_blocked_values/{blocked.pk}?load_full_structure=1").json()
    assert full["created_by"]["username"] == "editor"

    response = editor_client.post("/api/stitching_blocked_values", {"category": "phone", "value": "n/a"}, format="json")
    assert response.status_code == 400 and "not a valid Phone value" in response.json()["message"]
    assert editor_client.delete(f"/api/stitching_blocked_values/{blocked.pk}").status_code == 204
    assert not BlockedValue.objects.exists()


def test_refused_links_list_reasons_and_filter_by_status(graph, analyst_client):
    entity = graph.entity()
    graph.event(
        entity,
        identifiers=[("email", "ann@example.com")],
        refused=[
            ("email", "null", "blocked", "placeholder value", None),
            ("user_id", "u2", "limit", "at most 1 User id per customer", None),
        ],
    )
    rows = analyst_client.get("/api/stitching_refused_links").json()
    assert rows["count"] is None
    assert {(row["status"], row["identifier"]["value"], row["reason"]) for row in rows["results"]} == {
        ("blocked", "null", "placeholder value"),
        ("limit", "u2", "at most 1 User id per customer"),
    }
    assert rows["results"][0]["customer_entity"] == entity.pk
    limited = analyst_client.get("/api/stitching_refused_links?status=limit").json()["results"]
    assert [row["identifier"]["category"] for row in limited] == ["user_id"]
    assert analyst_client.get("/api/stitching_refused_links?status=linked").status_code == 400


def test_refused_links_filter_by_an_identifier_value_as_each_category_normalises_it(graph, analyst_client):
    """`?value=` was not a filter: it was ignored and the answer listed every refused link, as if all were of it."""
    entity = graph.entity()
    graph.event(
        entity,
        identifiers=[("user_id", "u1")],
        refused=[
            ("email", "team@example.com", "limit", "the customer would have 2 user_id values (limit 1)", None),
            ("phone", "+420777123456", "limit", "the customer would have 2 user_id values (limit 1)", None),
        ],
    )
    rows = analyst_client.get("/api/stitching_refused_links?value= Team@Example.com").json()["results"]
    assert [row["identifier"]["value"] for row in rows] == ["team@example.com"]
    rows = analyst_client.get("/api/stitching_refused_links?value=777 123 456").json()["results"]
    assert [row["identifier"]["value"] for row in rows] == ["+420777123456"]
    assert analyst_client.get("/api/stitching_refused_links?value=nobody@example.com").json()["results"] == []


def test_hub_review_decide(graph, editor_client, analyst_client):
    graph.event(graph.entity(), identifiers=[("cookie", "kiosk")])
    review = HubReview.objects.create(identifier=Identifier.objects.get(value="kiosk"), entity_count=25)
    assert analyst_client.get("/api/stitching_hub_reviews?status=pending").json()["count"] == 1
    url = f"/api/stitching_hub_reviews/{review.pk}/decide"
    assert analyst_client.post(url, {"decision": "block"}, format="json").status_code == 403
    response = editor_client.post(url, {"decision": "maybe"}, format="json")
    assert response.status_code == 400 and response.json()["message"].startswith("decision:")
    response = editor_client.post(url, {"decision": "block"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "blocked"
    assert BlockedValue.objects.filter(category_id="cookie", value="kiosk").exists()
    response = editor_client.post(url, {"decision": "approve"}, format="json")
    assert response.status_code == 400 and "already decided" in response.json()["message"]


def test_customer_stitching_graph(graph, analyst_client, outsider_client):
    entity = graph.entity()
    event = graph.event(entity, identifiers=[("email", "ann@example.com"), ("cookie", "c1")])
    for _ in range(3):
        graph.event(entity, identifiers=[("cookie", "c1")])
    url = f"/api/customer_entities/{entity.pk}/stitching_graph"
    body = analyst_client.get(url).json()
    assert body["customer_entity_id"] == entity.pk and body["truncated"] is False
    assert {node["id"] for node in body["nodes"]} >= {f"event:{event.pk}"}
    assert len(body["edges"]) == 5

    limited = analyst_client.get(url + "?limit=1").json()
    assert limited["truncated"] is True and limited["counts"]["events_shown"] == 1
    assert analyst_client.get(url + "?limit=abc").status_code == 400
    assert analyst_client.get(url + "?limit=0").status_code == 400
    assert analyst_client.get(url.upper().replace("/API/CUSTOMER_ENTITIES/", "/api/customer_entities/").replace(
        "/STITCHING_GRAPH", "/stitching_graph")).status_code == 200  # fmt: skip
    assert analyst_client.get(f"/api/customer_entities/{'0' * 32}/stitching_graph").status_code == 404
    assert outsider_client.get(url).status_code == 403


def test_why_path_endpoint(graph, analyst_client):
    entity = graph.entity()
    graph.event(entity, identifiers=[("email", "ann@example.com"), ("cookie", "c1")])
    graph.event(graph.entity(), identifiers=[("email", "bob@example.com")])
    params = "from_category=email&from_value=ANN@example.com&to_category=cookie&to_value=c1"
    body = analyst_client.get(f"/api/stitching/path?{params}").json()
    assert body["linked"] is True and body["events"] == 1 and len(body["path"]) == 3

    response = analyst_client.get("/api/stitching/path?from_category=email&from_value=ann@example.com"
                                  "&to_category=email&to_value=bob@example.com")  # fmt: skip
    assert response.status_code == 404 and "not one customer" in response.json()["message"]
    response = analyst_client.get("/api/stitching/path?from_category=email&from_value=ann@example.com")
    assert response.status_code == 400
    assert response.json()["message"] == "to_category: This query parameter is required."


@pytest.mark.parametrize(
    "query, message",
    [
        ("from_category=fax&from_value=1&to_category=email&to_value=ann@example.com",
         "from_category: Unknown stitching category 'fax'."),
        ("from_category=email&from_value=ann@example.com&to_category=phone&to_value=abc",
         "to_value: 'abc' is not a valid Phone value."),
        ("from_category=email&from_value=a%00&to_category=email&to_value=ann@example.com",
         "from_value: must not contain NUL characters"),
        ("from_category=%00&from_value=a&to_category=email&to_value=ann@example.com",
         "from_category: must not contain NUL characters"),
    ],
)  # fmt: skip
def test_why_path_with_a_bad_parameter_is_400_naming_it(graph, analyst_client, query, message):
    graph.event(graph.entity(), identifiers=[("email", "ann@example.com")])
    response = analyst_client.get(f"/api/stitching/path?{query}")
    assert response.status_code == 400 and response.json()["message"] == message


def test_why_path_with_a_value_no_event_carried_is_404(graph, analyst_client):
    graph.event(graph.entity(), identifiers=[("email", "ann@example.com")])
    response = analyst_client.get(
        "/api/stitching/path?from_category=email&from_value=nobody@example.com&to_category=email&to_value=ann@example.com"
    )
    assert response.status_code == 404 and "No event carried" in response.json()["message"]


def test_changes_and_erase(graph, analyst_client, admin_client):
    entity = graph.entity(ps_email_address=["ann@example.com"])
    graph.event(entity, identifiers=[("email", "ann@example.com")])
    EntityChange.objects.create(kind="merge", customer_entity_id=entity.pk, other_entity_ids=["f" * 32], detail={})
    EntityChange.objects.create(
        kind="split", customer_entity_id=entity.pk, other_entity_ids=["e" * 32], detail={"cause": "rule_changed"}
    )
    changes = analyst_client.get(f"/api/customer_entities/{entity.pk}/changes").json()
    assert [(row["kind"], row["cause"]) for row in changes["results"]] == [("split", "rule_changed"), ("merge", None)]

    url = f"/api/customer_entities/{entity.pk}/erase"
    response = analyst_client.post(url)
    assert response.status_code == 403 and "customers_erase" in response.json()["message"]
    response = admin_client.post(url)
    assert response.status_code == 200
    assert response.json() == {
        "customer_entity_id": entity.pk, "events": 1, "identifiers": 1, "event_links": 1, "history_rows_scrubbed": 2,
    }  # fmt: skip
    assert not CustomerEntity.objects.filter(pk=entity.pk).exists() and not CustomerEvent.objects.exists()
    assert admin_client.post(url).status_code == 404
    kinds = [row["kind"] for row in analyst_client.get(f"/api/customer_entities/{entity.pk}/changes").json()["results"]]
    assert kinds == ["erase", "split", "merge"]


def test_erasing_a_merged_away_id_names_the_customer_to_erase_and_a_second_erasure_says_it_was_done(
    graph, admin_client
):
    survivor = graph.entity()
    graph.event(survivor, identifiers=[("email", "ann@example.com")])
    merged_away = "f" * 32
    EntityChange.objects.create(kind="merge", customer_entity_id=survivor.pk, other_entity_ids=[merged_away])

    response = admin_client.post(f"/api/customer_entities/{merged_away}/erase")
    assert response.status_code == 404
    assert response.json() == {
        "status": "error",
        "message": f"Customer entity {merged_away} was merged into {survivor.pk}.",
        "merged_into": survivor.pk,
    }
    assert CustomerEntity.objects.filter(pk=survivor.pk).exists()

    assert admin_client.post(f"/api/customer_entities/{survivor.pk}/erase").status_code == 200
    for entity_id, message in [
        (survivor.pk, f"Customer entity {survivor.pk} was erased."),
        (merged_away, f"Customer entity {merged_away} was merged into {survivor.pk}, which was erased."),
    ]:
        for response in (
            admin_client.post(f"/api/customer_entities/{entity_id}/erase"),
            admin_client.get(f"/api/customer_entities/{entity_id}/stitching_graph"),
        ):
            assert response.status_code == 404
            assert response.json() == {"status": "error", "message": message, "erased": True}


def test_erasing_a_customer_events_received_before_merge_away_names_it_and_a_stitching_backlog_is_503(
    web_source, admin_client, monkeypatch
):
    segment_default_rules_ensure(source=web_source)
    ingest(web_source, [{"id": "1", "t": 0, "anonymousId": "c1"}])
    engine.stitch_pending()
    ingest(web_source, [{"id": "2", "t": 1, "traits": {"email": "ann@example.com"}}])
    engine.stitch_pending()
    older, ann = (CustomerEvent.objects.get(idempotency_key=key).customer_entity_id for key in ("1", "2"))
    # Not stitched yet: it makes Ann's customer and the older one one person.
    ingest(web_source, [{"id": "3", "t": 2, "anonymousId": "c1", "traits": {"email": "ann@example.com"}}])
    url = f"/api/customer_entities/{ann}/erase"

    monkeypatch.setattr(erasure, "CATCH_UP_SECONDS", 0)
    response = admin_client.post(url)
    assert response.status_code == 503 and response["Retry-After"] == "60"
    assert "still being stitched" in response.json()["message"] and "nothing was erased" in response.json()["message"]
    monkeypatch.undo()

    response = admin_client.post(url)
    assert response.status_code == 404
    assert response.json() == {
        "status": "error", "message": f"Customer entity {ann} was merged into {older}.", "merged_into": older,
    }  # fmt: skip
    assert CustomerEvent.objects.exclude(source__slug="cdp").count() == 3  # nothing erased


def test_schema_documents_the_stitching_endpoints(admin_client):
    paths = admin_client.get("/api/schema/?format=json").json()["paths"]
    for path in [
        "/api/stitching_categories/",
        "/api/stitching_rules/",
        "/api/stitching_blocked_values/",
        "/api/stitching_refused_links/",
        "/api/stitching_hub_reviews/{id}/decide",
        "/api/customer_entities/{id}/stitching_graph",
        "/api/customer_entities/{id}/changes",
        "/api/customer_entities/{id}/erase",
        "/api/stitching/path",
    ]:
        assert any(p.rstrip("/") == path.rstrip("/") for p in paths), path


def test_a_category_an_attribute_reads_cannot_be_deleted(graph, editor_client, admin_client):
    """An identifier-values attribute of a deleted category could no longer be saved: the delete is refused,
    naming the attribute, until the attribute is changed or deleted."""
    from cdp.services.attributes import attribute_create

    editor_client.post("/api/stitching_categories/", {"id": "crm_id", "name": "CRM id"}, format="json")
    attribute_create(id="crm_ids", name="CRM ids", computation="identifier_values", category="crm_id")

    response = editor_client.delete("/api/stitching_categories/crm_id")

    assert response.status_code == 400
    assert "crm_ids" in response.json()["message"]
    assert admin_client.patch("/api/attributes/crm_ids", {"name": "CRM numbers"}, format="json").status_code == 200


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "url, body",
    [
        ("/api/stitching_blocked_values/", {"category": "email", "value": "x@example.com"}),
        ("/api/stitching_categories/", {"id": "crm_id", "name": "CRM id"}),
    ],
)
def test_a_create_retried_while_the_first_is_running_is_a_400_and_writes_nothing_twice(web_source, url, body):
    """Both requests pass the service's "already exists" check; the database's unique constraint stops the
    second, which is a 400 saying so (not a 500). The first holds its insert open in another connection."""
    import threading

    from django.db import connections, transaction

    from cdp.services.auth import role_create, user_create
    from stitching.models import StitchingCategory
    from tests.stitching.graph_builder import categories

    categories()
    role = role_create(name="Stitching editor", features=[Feature.CUSTOMERS_VIEW, Feature.STITCHING_EDIT])
    client = client_for(user_create(username="editor", password="Editor-password!", role=role))
    inserted, release = threading.Event(), threading.Event()

    def first_request() -> None:
        try:
            with transaction.atomic():
                if "blocked" in url:
                    BlockedValue.objects.create(category_id="email", value="x@example.com")
                else:
                    StitchingCategory.objects.create(id="crm_id", name="CRM id", normalizer="trim")
                inserted.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=first_request)
    thread.start()
    assert inserted.wait(10)
    timer = threading.Timer(0.5, release.set)  # the second request waits on the first's uncommitted row
    timer.start()
    try:
        response = client.post(url, body, format="json")
    finally:
        release.set()
        thread.join()
    assert response.status_code == 400, response.content
    assert "already exists" in response.json()["message"]
    if "blocked" in url:
        assert BlockedValue.objects.filter(value="x@example.com").count() == 1
    else:
        assert StitchingCategory.objects.filter(id="crm_id").count() == 1
