"""GDPR erasure: a customer's events, identifiers and attribute values go; a record without PII stays."""

import json

import pytest

from cdp.models import CustomerEntity, CustomerEvent
from cdp.services.erasure import entity_erase
from stitching.models import EntityChange, EventIdentifier, HubReview, Identifier
from tests.stitching.graph_builder import GraphBuilder

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_customers(web_source):
    graph = GraphBuilder(web_source)
    ann = graph.entity(ps_email_address=["ann@example.com"], total_order_value=[120.5])
    bob = graph.entity(ps_email_address=["bob@example.com"])
    graph.event(ann, identifiers=[("email", "ann@example.com"), ("cookie", "cookie-ann-7f")], payload={"name": "Ann"})
    graph.event(ann, identifiers=[("cookie", "cookie-ann-7f"), ("phone", "+420777123456")], type="purchase")
    # A shared office address Ann's event carried but which was refused (blocked) and that Bob's event also carries.
    graph.event(ann, refused=[("email", "office@example.com", "blocked", "blocked value", None)])
    graph.event(bob, identifiers=[("email", "bob@example.com")], refused=[
        ("email", "office@example.com", "blocked", "blocked value", None)
    ])  # fmt: skip
    return graph, ann, bob


def test_erase_removes_events_identifiers_and_attribute_values(two_customers, admin_user):
    graph, ann, bob = two_customers
    HubReview.objects.create(identifier=Identifier.objects.get(value="cookie-ann-7f"), entity_count=2)
    EntityChange.objects.create(
        kind="merge",
        customer_entity_id=ann.pk,
        other_entity_ids=["a" * 32],
        identifier=Identifier.objects.get(value="cookie-ann-7f"),
        detail={"identifier_value": "ann@example.com"},
    )

    report = entity_erase(entity=ann, user=admin_user)

    assert (report.events, report.identifiers, report.event_links, report.history_rows_scrubbed) == (3, 3, 5, 1)
    assert not CustomerEntity.objects.filter(pk=ann.pk).exists()  # the attribute values lived on this row
    assert set(CustomerEvent.objects.values_list("entity_link__customer_entity_id", flat=True)) == {bob.pk}
    # Ann's own identifiers are gone; the shared address stays because Bob's event still carries it.
    assert set(Identifier.objects.values_list("value", flat=True)) == {"bob@example.com", "office@example.com"}
    assert EventIdentifier.objects.count() == 2
    assert not HubReview.objects.exists()
    assert CustomerEntity.objects.get(pk=bob.pk).attributes == {"ps_email_address": ["bob@example.com"]}


def test_erasure_is_recorded_without_personal_data(two_customers, admin_user):
    _, ann, _ = two_customers
    EntityChange.objects.create(
        kind="merge", customer_entity_id=ann.pk, other_entity_ids=[], detail={"value": "ann@example.com"}
    )
    entity_erase(entity=ann, user=admin_user)

    history = list(EntityChange.objects.filter(customer_entity_id=ann.pk).values("kind", "detail", "identifier_id"))
    assert history[0] == {
        "kind": "erase",
        "detail": {"events": 3, "identifiers": 3, "event_links": 5, "user_id": admin_user.pk},
        "identifier_id": None,
    }
    everything = json.dumps(list(EntityChange.objects.values()), default=str)
    for pii in ("ann@example.com", "+420777123456", "Ann", "cookie-ann-7f"):
        assert pii not in everything


def test_an_erased_identifier_seen_again_starts_a_fresh_customer(two_customers, admin_user):
    graph, ann, _ = two_customers
    entity_erase(entity=ann, user=admin_user)
    assert not Identifier.objects.filter(value="ann@example.com").exists()

    engine = pytest.importorskip("stitching.services.engine")
    from stitching.services import config

    config.rule_create(source=graph.source, category=graph.categories["email"], path="email")
    from cdp.services.events import event_record_build, events_ingest

    events_ingest([
        event_record_build(source_id=graph.source.pk, type="identify", event_time="2024-06-01T00:00:00Z",
                           payload={"email": "Ann@example.com"})
    ])  # fmt: skip
    engine.stitch_pending()
    event = CustomerEvent.objects.get(type="identify")
    assert event.customer_entity_id not in (None, ann.pk)
    assert Identifier.objects.get(value="ann@example.com").customer_entity_id == event.customer_entity_id


def test_erasing_twice_in_one_transaction_works(two_customers, admin_user):
    _, ann, bob = two_customers
    entity_erase(entity=ann, user=admin_user)
    entity_erase(entity=bob, user=None)
    assert not CustomerEvent.objects.exists() and not Identifier.objects.exists()
    assert EntityChange.objects.filter(kind="erase").count() == 2


def test_erasing_a_missing_customer_raises(web_source):
    ghost = CustomerEntity(id="0" * 32)
    with pytest.raises(CustomerEntity.DoesNotExist):
        entity_erase(entity=ghost, user=None)
