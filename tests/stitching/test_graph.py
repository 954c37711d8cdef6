"""The identity graph of a customer and the shortest chain explaining why two identifiers are one customer."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import F

from cdp.models import CustomerEntity
from stitching.models import EntityChange, EventIdentifier
from stitching.selectors import (
    MERGE_CHAIN_MAX,
    EntityFate,
    PathNotFound,
    PathSearchTooLarge,
    entity_fate,
    identity_graph,
    identity_path,
)
from tests.stitching.graph_builder import GraphBuilder

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer(web_source):
    """cookie c1 ─e1─ email ann ─e3─ user u1 ─e4─ phone; e2 repeats the cookie; e5 carried a refused address."""
    graph = GraphBuilder(web_source)
    ann, other = graph.entity(), graph.entity()
    events = {
        "e1": graph.event(ann, identifiers=[("cookie", "c1"), ("email", "ann@example.com")]),
        "e2": graph.event(ann, identifiers=[("cookie", "c1")]),
        "e3": graph.event(ann, identifiers=[("email", "ann@example.com"), ("user_id", "u1")], type="identify"),
        "e4": graph.event(ann, identifiers=[("user_id", "u1"), ("phone", "+420777123456")], type="purchase"),
        "e5": graph.event(
            ann,
            identifiers=[("cookie", "c1")],
            refused=[("email", "team@example.com", "blocked", "blocked value", None)],
        ),
        "b1": graph.event(other, identifiers=[("email", "bob@example.com")]),
    }
    return graph, ann, other, events


def test_graph_shows_which_events_brought_which_identifiers(customer):
    graph, ann, _, events = customer
    result = identity_graph(ann.pk)

    kinds = [node["kind"] for node in result["nodes"]]
    assert kinds.count("event") == 5 and kinds.count("identifier") == 5
    values = {node["value"] for node in result["nodes"] if node["kind"] == "identifier"}
    assert values == {"c1", "ann@example.com", "u1", "+420777123456", "team@example.com"}
    edges = {(edge["source"], edge["target"].split(":")[0], edge["status"]) for edge in result["edges"]}
    assert (f"event:{events['e5'].pk}", "identifier", "blocked") in edges
    assert sum(edge["status"] == "linked" for edge in result["edges"]) == 8
    first = next(edge for edge in result["edges"] if edge["source"] == f"event:{events['e1'].pk}")
    assert first["event_time"] == events["e1"].event_time.isoformat()
    assert result["truncated"] is False
    assert result["counts"] == {"events": 5, "identifiers": 5, "events_shown": 5, "identifiers_shown": 5}


def test_graph_is_bounded_and_keeps_the_event_that_first_brought_each_identifier(customer):
    graph, ann, _, events = customer
    for _ in range(30):
        graph.event(ann, identifiers=[("cookie", "c1")])
    result = identity_graph(ann.pk, limit=4)
    assert result["truncated"] is True
    assert result["counts"]["events"] == 35
    shown = {node["event_id"] for node in result["nodes"] if node["kind"] == "event"}
    # e1 brought c1 and ann, e3 u1, e4 the phone: the first three of four slots; e5 (team@) is the fourth.
    assert shown == {events["e1"].pk, events["e3"].pk, events["e4"].pk, events["e5"].pk}


def test_path_is_the_shortest_chain_of_events_and_identifiers(customer):
    _, ann, _, events = customer
    result = identity_path("cookie", "c1", "phone", "+420 777 123 456")  # the value is normalised first
    steps = [(step["kind"], step.get("value") or step["event_id"]) for step in result["path"]]
    assert steps == [
        ("identifier", "c1"),
        ("event", events["e1"].pk),
        ("identifier", "ann@example.com"),
        ("event", events["e3"].pk),
        ("identifier", "u1"),
        ("event", events["e4"].pk),
        ("identifier", "+420777123456"),
    ]
    assert result["events"] == 3 and result["customer_entity_id"] == ann.pk
    assert result["from"]["value"] == "c1" and result["to"]["category"] == "phone"


def test_path_takes_a_shortcut_when_one_event_links_both(customer):
    graph, ann, _, _ = customer
    shortcut = graph.event(ann, identifiers=[("phone", "+420777123456"), ("cookie", "c1")])
    result = identity_path("phone", "+420777123456", "cookie", "c1")
    assert [step.get("event_id") for step in result["path"]] == [None, shortcut.pk, None]


def test_path_ignores_refused_links(customer, web_source):
    graph, ann, _, _ = customer
    # team@ is held on an event of ann's and belongs to nobody: no path through it even if shared.
    with pytest.raises(PathNotFound, match="'team@example.com' is blocked, so it belongs to no customer"):
        identity_path("email", "team@example.com", "cookie", "c1")
    assert EventIdentifier.objects.filter(status="blocked").count() == 1


def test_path_between_different_customers_or_unknown_values_is_not_found(customer):
    with pytest.raises(PathNotFound, match="different customers"):
        identity_path("email", "ann@example.com", "email", "bob@example.com")
    with pytest.raises(PathNotFound, match="No event carried"):
        identity_path("email", "nobody@example.com", "email", "ann@example.com")


def test_path_of_an_unknown_category_or_invalid_value_names_the_parameter(customer):
    with pytest.raises(ValidationError) as unknown:
        identity_path("fax", "1", "email", "ann@example.com")
    assert unknown.value.message_dict == {"from_category": ["Unknown stitching category 'fax'."]}
    with pytest.raises(ValidationError) as invalid:
        identity_path("email", "ann@example.com", "phone", "call me")
    assert invalid.value.message_dict == {"to_value": ["'call me' is not a valid Phone value."]}


def test_path_of_an_identifier_to_itself_is_one_step(customer):
    assert len(identity_path("email", "ANN@example.com", "email", "ann@example.com")["path"]) == 1


def test_path_search_is_bounded(customer):
    with pytest.raises(PathSearchTooLarge):
        identity_path("cookie", "c1", "phone", "+420777123456", max_nodes=3)


def test_changes_of_a_merged_away_customer_point_to_the_survivor(db):
    from stitching.models import EntityChange
    from stitching.selectors import entity_changes_list

    EntityChange.objects.create(kind="merge", customer_entity_id="a" * 32, other_entity_ids=["b" * 32])
    assert [c.customer_entity_id for c in entity_changes_list(entity_id="b" * 32)] == ["a" * 32]
    assert entity_changes_list(entity_id="c" * 32).count() == 0


# --- what became of an id that no longer exists -------------------------------------------------------------------

A, B, C, D = ("a" * 32, "b" * 32, "c" * 32, "d" * 32)


def _merge(survivor: str, *merged: str) -> None:
    EntityChange.objects.create(kind="merge", customer_entity_id=survivor, other_entity_ids=list(merged))


def test_a_merged_away_id_leads_through_a_chain_of_merges_to_the_customer_that_exists(db):
    CustomerEntity.objects.create(id=C)
    _merge(B, D, A)
    _merge(C, B)

    assert entity_fate(entity_id=A) == EntityFate(merged_into=C)
    assert entity_fate(entity_id=B) == EntityFate(merged_into=C)
    assert entity_fate(entity_id="e" * 32) is None


def test_a_merged_away_id_whose_customer_was_split_later_names_the_split_off_customers(db, analyst_client):
    CustomerEntity.objects.create(id=C)
    CustomerEntity.objects.create(id=D)
    _merge(B, A)
    _merge(C, B)
    # C split later: D split off (and a customer split off and since gone is not named).
    EntityChange.objects.create(kind="split", customer_entity_id=C, other_entity_ids=[D, "e" * 32])

    assert entity_fate(entity_id=A) == EntityFate(merged_into=C, split_into=(D,))
    response = analyst_client.get(f"/api/customer_entities/{A}")
    assert response.status_code == 404
    assert response.json() == {
        "status": "error",
        "message": f"Customer entity {A} was merged into {C}, which was split later: its events are now in {C} or {D}.",
        "merged_into": C,
        "split_into": [D],
    }
    # A split before the merge says nothing about where the merged id's events went.
    EntityChange.objects.filter(kind="split").update(created=F("created") - timedelta(days=1))
    assert entity_fate(entity_id=A) == EntityFate(merged_into=C)


def test_an_erased_id_and_one_merged_into_an_erased_customer_lead_to_the_erasure(db):
    _merge(B, A)
    EntityChange.objects.create(kind="erase", customer_entity_id=B, other_entity_ids=[])

    assert entity_fate(entity_id=B) == EntityFate(erased=B)
    assert entity_fate(entity_id=A) == EntityFate(erased=B)


def test_an_id_merged_away_split_off_again_and_then_erased_was_erased(db):
    CustomerEntity.objects.create(id=B)
    _merge(B, A)  # A merged into B, later split off again under its own id, then erased
    EntityChange.objects.create(kind="erase", customer_entity_id=A, other_entity_ids=[])

    assert entity_fate(entity_id=A) == EntityFate(erased=A)


def test_the_lookup_stops_at_a_cycle_and_after_a_bounded_number_of_merges(db, django_assert_max_num_queries):
    _merge(A, B)
    _merge(B, A)
    assert entity_fate(entity_id=A) is None

    ids = [f"{n:032x}" for n in range(MERGE_CHAIN_MAX + 2)]
    for merged, survivor in zip(ids, ids[1:], strict=False):
        _merge(survivor, merged)
    CustomerEntity.objects.create(id=ids[-1])
    with django_assert_max_num_queries(3 * MERGE_CHAIN_MAX):
        assert entity_fate(entity_id=ids[0]) is None
    assert entity_fate(entity_id=ids[2]) == EntityFate(merged_into=ids[-1])


def test_the_lookups_use_the_history_indexes(db):
    merges = EntityChange.objects.filter(kind="merge", other_entity_ids__contains=[A])
    erasures = EntityChange.objects.filter(kind="erase", customer_entity_id=A)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # an empty table would be scanned whatever the indexes
        assert "entity_change_others" in merges.explain()
        assert "Index" in erasures.explain() and "Seq Scan" not in erasures.explain()
