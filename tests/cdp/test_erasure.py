"""GDPR erasure: a customer's events, identifiers and attribute values go; a record without PII stays."""

import json
import threading

import pytest
from django.db import connections

from cdp.models import CustomerEntity, CustomerEvent
from cdp.services import erasure
from cdp.services.erasure import ErasureBacklog, entity_erase
from stitching.models import EntityChange, EventIdentifier, HubReview, Identifier
from stitching.selectors import EntityFate, entity_fate
from stitching.services import engine
from tests.stitching.graph_builder import GraphBuilder
from tests.stitching.helpers import ingest, partition

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
    blocked = EntityChange.objects.create(
        kind="split",
        customer_entity_id=ann.pk,
        other_entity_ids=[],
        detail={"identifier_category": "email", "cause": "value_blocked", "value": "ann@example.com"},
    )
    entity_erase(entity=ann, user=admin_user)

    # Why and through which kind of identifier stay (no personal data): the history does not turn into ordinary
    # merges.
    blocked.refresh_from_db()
    assert blocked.detail == {"identifier_category": "email", "cause": "value_blocked"}
    assert blocked.cause_label == "a value was blocked"

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


# --- with the engine: neighbours re-stitched, queued events erased, customers gone meanwhile -------------------


@pytest.fixture
def shop(shop_source):
    return shop_source


def entity_of(message_id: str) -> CustomerEntity:
    return CustomerEvent.objects.get(idempotency_key=message_id).customer_entity


def stitching_state() -> dict:
    """What a re-stitch decides, named by message ids and values instead of entity ids: the partition, every
    link's status and reason, each identifier's owner (as its events) and the hub reviews."""
    groups = {frozenset(group) for group in partition(by="key")}
    group_of = {key: group for group in groups for key in group}
    events = dict(CustomerEvent.objects.values_list("id", "idempotency_key"))
    owners = {}
    for event_id, entity_id in CustomerEvent.objects.values_list("id", "entity_link__customer_entity_id"):
        owners[entity_id] = group_of.get(events[event_id])
    links = {
        (events[e], c, v): (status, reason)
        for e, c, v, status, reason in EventIdentifier.objects.values_list(
            "event_id", "identifier__category_id", "identifier__value", "status", "reason"
        )
    }
    identifiers = {(c, v): owners.get(owner) for c, v, owner in Identifier.objects.values_list(
        "category_id", "value", "customer_entity_id"
    )}  # fmt: skip
    reviews = set(HubReview.objects.values_list("identifier__value", "entity_count", "status"))
    return {"partition": groups, "links": links, "identifiers": identifiers, "reviews": reviews}


@pytest.mark.parametrize("scenario", ["limit", "hub"])
def test_after_an_erase_the_other_customers_are_what_a_restitch_makes_them(
    shop, settings, scenario, django_capture_on_commit_callbacks
):
    if scenario == "limit":
        # e2's cookie link is refused (one user id per customer) only because e1 brought u1 to the cookie first.
        ingest(shop, [{"id": "e1", "t": 0, "userId": "u1", "anonymousId": "c1"},
                      {"id": "e2", "t": 1, "userId": "u2", "anonymousId": "c1"}])  # fmt: skip
    else:
        # A kiosk cookie seen with five customers' addresses is held for review (more than 3 customers).
        settings.STITCHING_HUB_LIMIT = 3
        rows = [{"id": f"p{n}", "t": n, "traits": {"email": f"p{n}@example.com"}} for n in range(5)]
        rows += [{"id": f"k{n}", "t": 10 + n, "traits": {"email": f"p{n}@example.com"}, "anonymousId": "kiosk"}
                 for n in range(5)]  # fmt: skip
        ingest(shop, rows)
    engine.stitch_pending()
    erased = entity_of("e1" if scenario == "limit" else "p0")

    with django_capture_on_commit_callbacks(execute=True):
        entity_erase(entity=erased)

    after_erase = stitching_state()
    if scenario == "limit":
        assert after_erase["links"][("e2", "cookie", "c1")] == ("linked", "")
        assert after_erase["identifiers"][("cookie", "c1")] == frozenset({"e2"})
    else:
        assert after_erase["reviews"] == {("kiosk", 4, "pending")}
    engine.restitch()
    assert stitching_state() == after_erase


def test_an_erase_does_not_restitch_the_customers_sharing_a_junk_value_with_it(shop):
    # Thirty customers with the junk cookie "undefined" (a blocked link each): erasing one changes nothing for the
    # others, so none of them is queued for re-stitching.
    from stitching.models import RestitchRequest

    ingest(shop, [{"id": f"m{n}", "t": n, "anonymousId": "undefined", "traits": {"email": f"p{n}@example.com"}}
                  for n in range(30)])  # fmt: skip
    engine.stitch_pending()
    RestitchRequest.objects.all().delete()
    entity_erase(entity=entity_of("m0"))
    assert not RestitchRequest.objects.exists()


def test_events_still_waiting_to_be_stitched_are_erased_with_the_customer(shop):
    ingest(shop, [{"id": "1", "t": 0, "userId": "u1", "traits": {"email": "ann@example.com"}}])
    engine.stitch_pending()
    ann = entity_of("1")
    # Received just before the erase, not stitched yet: Ann's address with a new cookie, an event with only that
    # cookie, and someone else's event.
    ingest(shop, [{"id": "2", "t": 1, "anonymousId": "cookie-ann", "traits": {"email": "ann@example.com"}},
                  {"id": "3", "t": 2, "anonymousId": "cookie-ann"},
                  {"id": "4", "t": 3, "userId": "u9"}])  # fmt: skip

    report = entity_erase(entity=ann)

    assert report.events == 3
    assert list(CustomerEvent.objects.values_list("idempotency_key", flat=True)) == ["4"]
    assert set(Identifier.objects.values_list("value", flat=True)) == {"u9"}
    assert entity_of("4") is not None


@pytest.mark.django_db(transaction=True)
def test_an_event_another_worker_is_stitching_is_waited_for_and_erased(shop, settings):
    settings.CDP_STITCH_AFTER_INGEST = False  # committed events stay queued until stitched here
    ingest(shop, [{"id": "1", "t": 0, "traits": {"email": "ann@example.com"}}])
    engine.stitch_pending()
    (queued,) = ingest(shop, [{"id": "2", "t": 1, "anonymousId": "c1", "traits": {"email": "ann@example.com"}}])
    claimed, released = threading.Event(), threading.Event()

    def other_worker():
        with connections["default"].cursor() as cursor:  # this thread's own connection
            cursor.execute("BEGIN")
            # What another worker's claim holds (stitch_pending's SKIP LOCKED passes it by).
            cursor.execute("SELECT 1 FROM customer_event_entities WHERE event_id = %s FOR UPDATE", [queued])
            claimed.set()
            released.wait(10)
            cursor.execute("ROLLBACK")  # e.g. its component was busy: the event is back in the queue
        connections["default"].close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert claimed.wait(10)
        threading.Timer(0.3, released.set).start()
        report = entity_erase(entity=entity_of("1"))
    finally:
        released.set()
        thread.join()
    assert report.events == 2 and not CustomerEvent.objects.exists() and not Identifier.objects.exists()


def test_an_erase_that_cannot_catch_up_with_stitching_erases_nothing(shop, monkeypatch):
    ingest(shop, [{"id": "1", "userId": "u1"}])
    engine.stitch_pending()
    ingest(shop, [{"id": "2", "userId": "u1"}])
    monkeypatch.setattr(erasure, "CATCH_UP_SECONDS", 0)

    with pytest.raises(ErasureBacklog, match="still being stitched"):
        entity_erase(entity=entity_of("1"))

    assert CustomerEvent.objects.count() == 2 and Identifier.objects.filter(value="u1").exists()


@pytest.mark.django_db(transaction=True)
def test_an_erase_during_a_full_rebuild_does_not_wait_for_it(shop, settings):
    settings.CDP_STITCH_AFTER_INGEST = False
    ingest(shop, [{"id": "1", "userId": "u1"}])
    engine.stitch_pending()
    ingest(shop, [{"id": "2", "userId": "u1"}])
    holding, done = threading.Event(), threading.Event()

    def rebuild():
        with connections["default"].cursor() as cursor:  # this thread's own connection
            cursor.execute("BEGIN")
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [engine.LOCK_NAMESPACE, engine.GLOBAL_LOCK_KEY])
            holding.set()
            done.wait(30)
            cursor.execute("ROLLBACK")
        connections["default"].close()

    thread = threading.Thread(target=rebuild)
    thread.start()
    try:
        assert holding.wait(10)
        # Raised while the lock is held (until `done`): the erasure gave up instead of waiting for the rebuild,
        # after which it would have gone through.
        with pytest.raises(ErasureBacklog, match="still being stitched"):
            entity_erase(entity=entity_of("1"))
    finally:
        done.set()
        thread.join()
    assert CustomerEvent.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_an_erase_waits_for_a_worker_holding_the_customers_identifiers_only_until_its_deadline(
    shop, settings, monkeypatch
):
    """A worker re-stitching a large component holds its identifiers' locks as long as that takes: the erase waited
    for them past its deadline (minutes in the soak), instead of answering that it cannot be done now."""
    settings.CDP_STITCH_AFTER_INGEST = False
    ingest(shop, [{"id": "1", "userId": "u1"}])
    engine.stitch_pending()
    monkeypatch.setattr(erasure, "CATCH_UP_SECONDS", 1)
    holding, done = threading.Event(), threading.Event()

    def worker():
        with connections["default"].cursor() as cursor:  # this thread's own connection
            cursor.execute("BEGIN")
            key = engine._identifier_key("user_id", "u1")
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [engine.LOCK_NAMESPACE, key])
            holding.set()
            done.wait(30)
            cursor.execute("ROLLBACK")
        connections["default"].close()

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert holding.wait(10)
        with pytest.raises(ErasureBacklog, match="identifiers are being stitched"):
            entity_erase(entity=entity_of("1"))
    finally:
        done.set()
        thread.join()
    assert CustomerEvent.objects.count() == 1
    assert entity_erase(entity=entity_of("1")).events == 1  # and once the worker is done, it goes


def test_a_customer_events_received_before_merge_away_is_not_erased_and_says_where_it_went(shop):
    ingest(shop, [{"id": "1", "t": 0, "anonymousId": "c1"}])
    engine.stitch_pending()
    ingest(shop, [{"id": "2", "t": 1, "traits": {"email": "ann@example.com"}}])
    engine.stitch_pending()
    older, ann = entity_of("1"), entity_of("2")
    # Received before the erase: one person, so Ann's customer merges into the older one when it is stitched.
    ingest(shop, [{"id": "3", "t": 2, "anonymousId": "c1", "traits": {"email": "ann@example.com"}}])

    with pytest.raises(CustomerEntity.DoesNotExist):
        entity_erase(entity=ann)

    assert entity_fate(entity_id=ann.pk) == EntityFate(merged_into=older.pk)
    assert CustomerEvent.objects.exclude(source__slug="cdp").count() == 3  # nothing erased
