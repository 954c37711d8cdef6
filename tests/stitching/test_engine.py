"""The stitching engine on real PostgreSQL: linking, merging, protections, reversibility, history."""

from __future__ import annotations

import pytest
from django.db import connection

from cdp.models import CustomerEntity, CustomerEvent
from stitching.models import BlockedValue, EntityChange, EventIdentifier, HubReview, Identifier, StitchingCategory
from stitching.selectors import EntityFate, entity_fate
from stitching.services import engine
from tests.stitching.helpers import ingest, partition

pytestmark = pytest.mark.django_db


@pytest.fixture
def source(shop_source):
    return shop_source


def entity_of(event_id: int) -> str:
    return CustomerEvent.objects.get(pk=event_id).customer_entity_id


def test_ingestion_stitches_after_commit_and_shared_identifiers_link(source, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        a, b, c = ingest(
            source,
            [
                {"id": "1", "anonymousId": "c1"},
                {"id": "2", "anonymousId": "c1", "userId": "u1"},
                {"id": "3", "anonymousId": "c2"},
            ],
        )
    assert entity_of(a) == entity_of(b) != entity_of(c)
    assert Identifier.objects.get(category_id="cookie", value="c1").customer_entity_id == entity_of(a)


def test_an_event_linking_two_customers_merges_them_and_records_the_merge(source):
    a, b = ingest(source, [{"id": "1", "t": 0, "anonymousId": "cookie-zz"}, {"id": "2", "t": 1, "userId": "user-zz"}])
    engine.stitch_pending()
    assert entity_of(a) != entity_of(b)
    survivor = entity_of(a)  # the older entity survives (created first, then id)
    (c,) = ingest(source, [{"id": "3", "t": 2, "anonymousId": "cookie-zz", "userId": "user-zz"}])
    report = engine.stitch_pending()
    assert report.merges == 1
    assert entity_of(a) == entity_of(b) == entity_of(c)
    assert entity_of(a) in {survivor, entity_of(b)}
    change = EntityChange.objects.get(kind="merge")
    assert change.event_id == c and change.customer_entity_id == entity_of(a)
    assert change.identifier.category_id in ("cookie", "user_id")
    # Emitted as a system event without the identifier value (values with non-hex letters, so an entity id in
    # the payload cannot contain them by chance), attached to the customer, not stitched again.
    merged = CustomerEvent.objects.get(type="customer_entities_merged")
    assert merged.customer_entity_id == entity_of(a)
    assert "cookie-zz" not in str(merged.payload) and "user-zz" not in str(merged.payload)
    assert merged.payload["identifier_category"] == change.identifier.category_id
    assert CustomerEntity.objects.count() == 1


def test_the_id_a_merge_took_away_leads_to_the_customer_that_took_it(source):
    a, b = ingest(source, [{"id": "1", "t": 0, "anonymousId": "cookie-zz"}, {"id": "2", "t": 1, "userId": "user-zz"}])
    engine.stitch_pending()
    before = {entity_of(a), entity_of(b)}
    ingest(source, [{"id": "3", "t": 2, "anonymousId": "cookie-zz", "userId": "user-zz"}])
    engine.stitch_pending()

    (merged_away,) = before - {entity_of(a)}
    assert entity_fate(entity_id=merged_away) == EntityFate(merged_into=entity_of(a))


def test_events_without_identifiers_become_their_own_customers(source):
    a, b = ingest(source, [{"id": "1", "event": "x"}, {"id": "2", "event": "y"}])
    engine.stitch_pending()
    assert entity_of(a) and entity_of(b) and entity_of(a) != entity_of(b)
    assert not CustomerEvent.objects.filter(entity_link__customer_entity__isnull=True).exists()


def test_email_and_phone_are_normalised_before_matching(source):
    ids = ingest(
        source,
        [
            {"id": "1", "traits": {"email": " Jana.Novak@Example.COM "}},
            {"id": "2", "context": {"traits": {"email": "jana.novak@example.com"}}},
            {"id": "3", "traits": {"phone": "+420 601 234 567"}},
            {"id": "4", "traits": {"phone": "00420601234567"}},
            {"id": "5", "traits": {"phone": "601-234-567"}},
        ],
    )
    engine.stitch_pending()
    assert len({entity_of(i) for i in ids[:2]}) == 1
    assert len({entity_of(i) for i in ids[2:]}) == 1
    assert Identifier.objects.filter(category_id="phone", value="+420601234567").exists()


@pytest.mark.parametrize("junk", ["", "  ", "null", "UNDEFINED", '"none"', "[object Object]", "0", "-1", "000-000"])
def test_junk_values_never_link_and_the_refusal_is_recorded(source, junk):
    a, b = ingest(source, [{"id": "1", "anonymousId": junk}, {"id": "2", "anonymousId": junk}])
    engine.stitch_pending()
    assert entity_of(a) != entity_of(b)
    links = EventIdentifier.objects.filter(event_id__in=[a, b])
    assert {link.status for link in links} == {"blocked"}
    assert all(link.reason.startswith("junk value") for link in links)


def test_user_id_limit_drops_the_least_trusted_identifier(source):
    # A shared cookie seen with two different user ids: at most one user id per customer, so the second event
    # keeps its (more trusted) user id and loses the cookie link.
    a, b = ingest(
        source,
        [
            {"id": "1", "t": 0, "anonymousId": "shared", "userId": "u1"},
            {"id": "2", "t": 1, "anonymousId": "shared", "userId": "u2"},
        ],
    )
    engine.stitch_pending()
    assert entity_of(a) != entity_of(b)
    refused = EventIdentifier.objects.get(event_id=b, status="limit")
    assert refused.identifier.category_id == "cookie"
    assert "limit 1" in refused.reason


DAY = 24 * 60  # helpers.ingest's "t" is in minutes


@pytest.mark.parametrize("rebuild", [False, True], ids=["incremental", "full rebuild"])
def test_a_limit_per_time_window_counts_only_the_values_gained_within_it(source, rebuild):
    """At most 2 emails per day (Segment Unify's windowed limits): a third address the same day is refused, a new
    one two days later is linked; without the window it would be refused too."""
    StitchingCategory.objects.filter(pk="email").update(max_per_entity=2, limit_window_days=1)
    ids = ingest(
        source,
        [
            {"id": "1", "t": 0, "userId": "u1", "traits": {"email": "a@example.com"}},
            {"id": "2", "t": 10, "userId": "u1", "traits": {"email": "b@example.com"}},
            {"id": "3", "t": 20, "userId": "u1", "traits": {"email": "c@example.com"}},
            {"id": "4", "t": 2 * DAY, "userId": "u1", "traits": {"email": "d@example.com"}},
            {"id": "5", "t": 2 * DAY + 5, "userId": "u1", "traits": {"email": "e@example.com"}},
        ],
    )
    engine.restitch() if rebuild else engine.stitch_pending()
    assert len({entity_of(e) for e in ids}) == 1
    statuses = dict(
        EventIdentifier.objects.filter(identifier__category_id="email").values_list("identifier__value", "status")
    )
    assert statuses == {
        "a@example.com": "linked",
        "b@example.com": "linked",
        "c@example.com": "limit",
        "d@example.com": "linked",
        "e@example.com": "linked",  # d and e gained within the day: 2
    }
    refused = EventIdentifier.objects.get(identifier__value="c@example.com")
    assert "3 email values within 1 day (limit 2)" in refused.reason

    # The same events without the window: every address after the second is refused.
    StitchingCategory.objects.filter(pk="email").update(limit_window_days=None)
    engine.restitch()
    refused = EventIdentifier.objects.filter(identifier__category_id="email", status="limit")
    assert set(refused.values_list("identifier__value", flat=True)) == {f"{x}@example.com" for x in "cde"}


@pytest.mark.parametrize("rebuild", [False, True], ids=["incremental", "full rebuild"])
def test_a_customer_cannot_grow_past_the_hard_caps(source, settings, rebuild):
    # Six people (a cookie and an address each), chained by events that carry one person's address and the next
    # one's cookie: no category limit applies (none on emails here, none on cookies) and no identifier joins more
    # than two customers, yet without a cap they would all become one customer of 12 identifiers.
    StitchingCategory.objects.filter(pk="email").update(max_per_entity=None)
    rows = [{"id": f"p{n}", "t": n, "anonymousId": f"cookie-{n}", "traits": {"email": f"p{n}@x.com"}} for n in range(6)]
    rows += [
        {"id": f"l{n}", "t": 10 + n, "anonymousId": f"cookie-{n + 1}", "traits": {"email": f"p{n}@x.com"}}
        for n in range(5)
    ]

    def stitch() -> None:
        if rebuild:
            engine.restitch()
        else:
            engine.stitch_pending()

    def largest() -> int:
        owned = Identifier.objects.exclude(customer_entity_id=None).values_list("customer_entity_id", flat=True)
        return max(list(owned).count(entity) for entity in set(owned))

    settings.STITCHING_MAX_IDENTIFIERS = 5
    ingest(source, rows)
    stitch()
    assert largest() <= 5
    refused = EventIdentifier.objects.filter(status="limit")
    assert refused.exists() and all("identifiers (cap 5)" in r.reason for r in refused)

    settings.STITCHING_MAX_IDENTIFIERS, settings.STITCHING_MAX_MERGES = 1000, 1
    engine.restitch()
    assert largest() == 4  # two people, one merge
    refused = EventIdentifier.objects.filter(status="limit")
    assert refused.exists() and all("merges (cap 1)" in r.reason for r in refused)


def test_hub_linking_many_customers_is_held_for_review(source, settings):
    settings.STITCHING_HUB_LIMIT = 3  # below the email limit (5), which protects first
    rows = [{"id": f"u{n}", "t": n, "traits": {"email": f"p{n}@example.com"}} for n in range(8)]
    rows += [
        {"id": f"h{n}", "t": 100 + n, "traits": {"email": f"p{n}@example.com"}, "anonymousId": "kiosk"}
        for n in range(8)
    ]
    ingest(source, rows)
    engine.stitch_pending()
    review = HubReview.objects.get()
    assert review.identifier.value == "kiosk" and review.status == "pending" and review.entity_count > 3
    assert len(partition()) == 8  # not merged
    assert EventIdentifier.objects.filter(identifier=review.identifier, status="held").count() == 8


def test_blocking_a_value_and_restitching_splits_what_it_joined(source, admin_user):
    a, b, c = ingest(
        source,
        [
            {"id": "1", "t": 0, "userId": "u1", "traits": {"email": "team@firma.cz"}},
            {"id": "2", "t": 1, "userId": "u2"},
            {"id": "3", "t": 2, "traits": {"email": "team@firma.cz"}, "anonymousId": "c2"},
        ],
    )
    ingest(source, [{"id": "4", "t": 3, "userId": "u2", "anonymousId": "c2"}])
    engine.stitch_pending()
    # u1 and u2 cannot be one customer (limit 1), but team@ joined event 3 to u1's customer.
    assert entity_of(a) == entity_of(c)
    email = Identifier.objects.get(category_id="email", value="team@firma.cz")
    BlockedValue.objects.create(
        category_id="email", value="team@firma.cz", reason="shared mailbox", created_by=admin_user
    )
    report = engine.component_restitch(identifier_ids=[email.pk])
    assert entity_of(a) != entity_of(c) == entity_of(b)
    assert report.splits >= 1
    assert EntityChange.objects.filter(kind="split").exists()
    assert CustomerEvent.objects.filter(type="customer_entity_split").exists()
    assert set(EventIdentifier.objects.filter(identifier=email).values_list("status", "reason")) == {
        ("blocked", "blocked value: shared mailbox")
    }
    # Unblocking joins them again.
    BlockedValue.objects.all().delete()
    engine.component_restitch(identifier_ids=[email.pk])
    assert entity_of(a) == entity_of(c)


def test_restitch_everything_gives_the_same_partition(source):
    ingest(
        source,
        [
            {"id": "1", "t": 0, "anonymousId": "c1"},
            {"id": "2", "t": 1, "anonymousId": "c1", "userId": "u1"},
            {"id": "3", "t": 2, "userId": "u1", "traits": {"email": "a@b.cz"}},
            {"id": "4", "t": 3, "userId": "u2", "traits": {"email": "a@b.cz"}},
            {"id": "5", "t": 4, "anonymousId": "null"},
            {"id": "6", "t": 5},
        ],
    )
    engine.stitch_pending()
    before = partition()
    engine.restitch()
    assert partition() == before
    with connection.cursor() as cursor:
        cursor.execute("UPDATE customer_event_entities SET customer_entity_id = NULL")
        cursor.execute("UPDATE stitching_identifiers SET customer_entity_id = NULL")
        cursor.execute("DELETE FROM customer_entities")
    engine.restitch()
    assert partition() == before
    engine.restitch(source=source)
    assert partition() == before


def test_restitch_of_one_entity_rebuilds_its_component(source):
    a, b = ingest(source, [{"id": "1", "anonymousId": "c1"}, {"id": "2", "anonymousId": "c1"}])
    engine.stitch_pending()
    report = engine.restitch(entity_id=entity_of(a))
    assert report.events == 0 and entity_of(a) == entity_of(b)


def test_a_new_category_rule_change_restitches_the_affected_customers(source):
    StitchingCategory.objects.create(id="crm_id", name="CRM id", normalizer="trim", max_per_entity=1, priority=90)
    a, b = ingest(source, [{"id": "1", "crm": "X1"}, {"id": "2", "crm": "X1"}])
    engine.stitch_pending()
    assert entity_of(a) != entity_of(b)
    from stitching.models import StitchingRule

    StitchingRule.objects.create(source=source, category_id="crm_id", path="crm")
    engine.component_restitch(entity_ids=[entity_of(a), entity_of(b)])
    assert entity_of(a) == entity_of(b)


def _raise_sqlstate(code: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DO $$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = '{code}'; END $$")


def test_a_transaction_postgresql_aborted_to_break_a_deadlock_is_retried(monkeypatch):
    monkeypatch.setattr(engine.time, "sleep", lambda seconds: None)
    calls = []

    def work():
        calls.append(1)
        if len(calls) < 3:
            _raise_sqlstate("40P01")  # deadlock_detected, as PostgreSQL reports it
        return engine.StitchReport(events=7)

    assert engine.with_retries(work).events == 7
    assert len(calls) == 3


def test_other_database_errors_and_endless_deadlocks_are_not_retried(monkeypatch):
    from django.db import OperationalError

    monkeypatch.setattr(engine.time, "sleep", lambda seconds: None)
    calls = []

    def canceled():
        calls.append(1)
        _raise_sqlstate("57014")  # query_canceled

    with pytest.raises(OperationalError):
        engine.with_retries(canceled)
    assert len(calls) == 1

    def deadlocked():
        calls.append(1)
        _raise_sqlstate("40P01")

    with pytest.raises(OperationalError):
        engine.with_retries(deadlocked)
    assert len(calls) == 1 + engine.MAX_DEADLOCK_RETRIES + 1
