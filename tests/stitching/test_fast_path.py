"""Incremental stitching's fast path (`_attach_simple`): new events that cannot change an existing partition are
attached directly; the others still take the exact path. Either way the result equals a full restitch."""

from __future__ import annotations

import pytest
from django.db import connection

from cdp.models import CustomerEvent, StaleEntity
from stitching.models import EntityChange, EventIdentifier, Identifier
from stitching.services import engine
from tests.stitching.helpers import ingest, partition

pytestmark = pytest.mark.django_db


@pytest.fixture
def source(shop_source):
    return shop_source


def entity_of(event_id: int) -> str:
    return CustomerEvent.objects.get(pk=event_id).customer_entity_id


def stitch() -> None:
    while engine.stitch_pending(limit=100).remaining:
        pass


def component_queries(queries: list[str]) -> int:
    """Queries of the exact path's component discovery."""
    return sum(1 for q in queries if "status <> 'blocked'" in q)


def test_a_returning_customer_is_attached_without_discovering_its_component(source):
    (first,) = ingest(source, [{"id": "1", "userId": "u1", "traits": {"email": "ann@example.com"}}])
    stitch()
    StaleEntity.objects.all().delete()
    (second,) = ingest(source, [{"id": "2", "t": 5, "userId": "u1", "anonymousId": "cookie-9"}])

    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        report = engine.stitch_pending(limit=100)

    assert entity_of(second) == entity_of(first)
    assert report.events == 1 and report.entities_created == 0 and report.merges == 0
    assert component_queries([q["sql"] for q in captured.captured_queries]) == 0
    assert Identifier.objects.get(category_id="cookie", value="cookie-9").customer_entity_id == entity_of(first)
    assert list(StaleEntity.objects.values_list("pk", flat=True)) == [entity_of(first)]
    assert not EntityChange.objects.exists()


def test_a_new_customer_with_new_identifiers_gets_a_new_entity(source):
    a, b = ingest(
        source, [{"id": "1", "anonymousId": "c-new"}, {"id": "2", "t": 1, "anonymousId": "c-new", "userId": "u9"}]
    )
    report = engine.stitch_pending(limit=100)

    assert entity_of(a) == entity_of(b)
    assert report.entities_created == 1
    assert set(Identifier.objects.values_list("customer_entity_id", flat=True)) == {entity_of(a)}


def test_an_event_linking_two_customers_takes_the_exact_path_and_merges(source):
    a, b = ingest(source, [{"id": "1", "userId": "u1"}, {"id": "2", "anonymousId": "c2"}])
    stitch()
    (c,) = ingest(source, [{"id": "3", "t": 9, "userId": "u1", "anonymousId": "c2"}])
    report = engine.stitch_pending(limit=100)

    assert entity_of(a) == entity_of(b) == entity_of(c)
    assert report.merges == 1
    assert EntityChange.objects.filter(kind=EntityChange.Kind.MERGE).count() == 1


def test_an_event_over_a_limit_takes_the_exact_path_and_its_link_is_refused(source):
    (a,) = ingest(source, [{"id": "1", "userId": "u1", "traits": {"email": "ann@example.com"}}])
    stitch()
    # A second user id through the shared email: one user id per customer, so that link is refused.
    (b,) = ingest(source, [{"id": "2", "t": 3, "userId": "u2", "traits": {"email": "ann@example.com"}}])
    stitch()

    refused = EventIdentifier.objects.filter(event_id=b).exclude(status=EventIdentifier.Status.LINKED)
    assert refused.count() == 1
    assert refused.get().status == EventIdentifier.Status.LIMIT
    before = partition()
    engine.restitch()
    assert partition() == before


def test_a_customer_with_a_refused_link_is_never_fast_pathed(source):
    (a,) = ingest(source, [{"id": "1", "userId": "u1", "traits": {"email": "ann@example.com"}}])
    stitch()
    ingest(source, [{"id": "2", "t": 3, "userId": "u2", "traits": {"email": "ann@example.com"}}])
    stitch()
    # An earlier event of u1: the canonical order changes, so only the exact computation knows the outcome.
    (c,) = ingest(source, [{"id": "0", "t": -5, "userId": "u1", "anonymousId": "c0"}])
    stitch()

    incremental = partition()
    statuses = set(EventIdentifier.objects.values_list("event_id", "identifier_id", "status"))
    engine.restitch()
    assert partition() == incremental
    assert set(EventIdentifier.objects.values_list("event_id", "identifier_id", "status")) == statuses
    assert entity_of(c) == entity_of(a)
