"""The bulk path of a full restitch (stitching.services.bulk) where it rewrites customer_events in bulk."""

from __future__ import annotations

import pytest
from django.db import connection

from cdp.models import CustomerEvent, CustomerEventEntity, StaleEntity
from stitching.models import Identifier
from stitching.services import bulk, engine
from tests.stitching.helpers import ingest, partition

pytestmark = pytest.mark.django_db


@pytest.fixture
def source(shop_source):
    return shop_source


ROWS = [
    {"id": "1", "anonymousId": "c1"},
    {"id": "2", "anonymousId": "c1", "userId": "u1"},
    {"id": "3", "userId": "u1", "traits": {"email": "A@x.example"}},
    {"id": "4", "anonymousId": "c2"},
    {"id": "5", "anonymousId": "null"},
]


def _assignments_indexes() -> set[str]:
    """customer_event_entities' index definitions."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'customer_event_entities'")
        return {row[0] for row in cursor.fetchall()}


def _rows(query: str) -> set[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(query)
        return set(cursor.fetchall())


def _constraints() -> set[tuple[str, str, str]]:
    """(table, name, definition) of every constraint and index of the customer and stitching tables."""
    return _rows(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid::regclass::text ~ '^(customer|stitching)_' UNION ALL "
        "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE tablename ~ '^(customer|stitching)_'"
    )


def _twinned(column: str) -> dict:
    """`column` of pg_class (oid: a new table has a new one; reloptions) for each table a first stitch builds anew
    on other connections."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT relname, {column} FROM pg_class WHERE relkind = 'r' AND relname IN "
            "('customer_entities', 'customer_event_entities', 'customer_entities_stale', 'stitching_event_identifiers')"
        )
        return dict(cursor.fetchall())


def _oids() -> dict[str, int]:
    return _twinned("oid::bigint")


def _options() -> dict[str, list | None]:
    return _twinned("reloptions")


def _columns() -> set[tuple]:
    """Every column of the customer and stitching tables: type, collation, nullability, default, identity."""
    return _rows(
        "SELECT table_name, column_name, ordinal_position, data_type, character_maximum_length, collation_name, "
        "is_nullable, column_default, is_identity, identity_generation FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name ~ '^(customer|stitching)_'"
    )


def _from_scratch() -> None:
    """No event stitched, the graph tables and the customers empty: the next restitch is a first stitch."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE customer_event_entities SET customer_entity_id = NULL")
        for table in ("stitching_event_identifiers", "stitching_entitychange", "stitching_identifiers"):
            cursor.execute(f"DELETE FROM {table}")
        cursor.execute("DELETE FROM customer_entities")


def test_a_bulk_rewrite_gives_the_incremental_partition_and_restores_indexes(source, monkeypatch):
    ingest(source, ROWS)
    engine.stitch_pending()
    incremental = partition()
    owners = dict(Identifier.objects.values_list("id", "customer_entity_id"))
    indexes = _assignments_indexes()
    constraints = _constraints()
    # Among them the foreign keys to the identifiers, dropped with their primary key while it is built anew.
    assert {name for table, name, _ in constraints if table == "stitching_hubreview" and "fk" in name}
    assert len(indexes) == 3  # primary key, entity, unstitched queue
    with connection.cursor() as cursor:
        cursor.execute("UPDATE customer_event_entities SET customer_entity_id = NULL")
        for table in ("stitching_event_identifiers", "stitching_entitychange", "stitching_identifiers"):
            cursor.execute(f"DELETE FROM {table}")
        cursor.execute("DELETE FROM customer_entities")
        cursor.execute("DELETE FROM customer_entities_stale")
    # Every rebuild replaces the assignments table, and fills an empty attribute queue with its key built after.
    monkeypatch.setattr(bulk, "REWRITE_MIN_EVENTS", 1)
    with connection.cursor() as cursor:  # (a table's own autovacuum setting is kept too)
        cursor.execute("ALTER TABLE customer_event_entities SET (autovacuum_enabled = false)")
    oids, options, columns = _oids(), _options(), _columns()
    assert options["customer_entities_stale"]  # (its autovacuum thresholds)

    engine.restitch()

    assert partition() == incremental
    # The customers, the assignments and the queue were built anew on a second connection and swapped in, with
    # every index and constraint under its name, and the same storage options.
    assert all(oids[table] != oid for table, oid in _oids().items())
    assert _options() == options
    assert _columns() == columns
    assert _assignments_indexes() == indexes
    assert _constraints() == constraints
    assert StaleEntity.objects.count() == len(incremental)  # every customer is new
    assert CustomerEventEntity.objects.count() == CustomerEvent.objects.count()
    # New identifiers were inserted with their owner: the entity of the events that carried them.
    assert Identifier.objects.count() == len(owners)
    for identifier in Identifier.objects.exclude(customer_entity=None):
        carriers = CustomerEvent.objects.filter(
            pk__in=identifier.event_links.filter(status="linked").values("event_id")
        ).values_list("entity_link__customer_entity_id", flat=True)
        assert set(carriers) == {identifier.customer_entity_id}
        assert identifier.first_seen is not None
    assert Identifier.objects.filter(customer_entity=None).count() == 1  # the junk "null" cookie
    # The edges' id is an identity again, its sequence (same name) going on after the ids the rebuild drew.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.attidentity, pg_get_serial_sequence('stitching_event_identifiers', 'id') FROM pg_attribute a "
            "WHERE a.attrelid = 'stitching_event_identifiers'::regclass AND a.attname = 'id'"
        )
        assert cursor.fetchone() == ("d", "public.stitching_event_identifiers_id_seq")
        cursor.execute("SELECT max(id) FROM stitching_event_identifiers")
        (highest,) = cursor.fetchone()
    from stitching.models import EventIdentifier

    (late,) = ingest(source, [{"id": "late", "anonymousId": "c1", "userId": "u7"}])
    engine.stitch_pending()
    assert EventIdentifier.objects.filter(event_id=late).count() == 2
    assert min(EventIdentifier.objects.filter(event_id=late).values_list("id", flat=True)) > highest


def test_a_table_with_a_grant_is_rewritten_in_place_and_keeps_it(source, monkeypatch):
    """A table something else is tied to (here a grant; or a trigger, a view, a foreign key, ...) is not swapped
    for a new one: the rebuild writes it in place, with the same result."""
    ingest(source, ROWS)
    engine.stitch_pending()
    incremental = partition()
    _from_scratch()
    with connection.cursor() as cursor:
        cursor.execute("GRANT SELECT ON customer_event_entities TO PUBLIC")
    monkeypatch.setattr(bulk, "REWRITE_MIN_EVENTS", 1)
    oids = _oids()

    engine.restitch()

    assert partition() == incremental
    after = _oids()
    assert after["customer_event_entities"] == oids["customer_event_entities"]
    assert after["customer_entities"] != oids["customer_entities"]  # (no grant: swapped)
    with connection.cursor() as cursor:
        cursor.execute("SELECT has_table_privilege('public', 'customer_event_entities', 'SELECT')")
        assert cursor.fetchone()[0]


def _leftovers() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_class WHERE relname LIKE 'st\\_new\\_%%' AND relkind = 'r'")
        return cursor.fetchone()[0]


def test_a_failed_rebuild_keeps_the_old_tables_and_the_next_one_drops_what_it_built(source, monkeypatch):
    """The other connections commit the tables they build; the rebuild's transaction swaps them in. A rebuild that
    fails after the swap rolls it back (the old tables are in place again), and the next rebuild drops the new ones
    it left under their temporary names."""
    from stitching.services import replace

    ingest(source, ROWS)
    engine.stitch_pending()
    incremental = partition()
    _from_scratch()
    StaleEntity.objects.all().delete()
    monkeypatch.setattr(bulk, "REWRITE_MIN_EVENTS", 1)
    oids = _oids()
    swap = replace.Replacements.swap
    left = _leftovers()  # (earlier tests' rebuilds were rolled back with their transactions: theirs are left)

    def swapped_then_failed(self, cur):
        assert swap(self, cur) == set(oids)
        raise RuntimeError("failed after the swap")

    monkeypatch.setattr(replace.Replacements, "swap", swapped_then_failed)
    with pytest.raises(RuntimeError, match="after the swap"):
        engine.restitch()
    assert _oids() == oids
    assert _leftovers() == left + 4  # the edges, customers, assignments and queue built for it
    monkeypatch.setattr(replace.Replacements, "swap", swap)

    engine.restitch()

    assert partition() == incremental
    assert _leftovers() == 0


def test_customers_queued_for_an_identifier_change_survive_a_swapped_attribute_queue(source, monkeypatch):
    """The queue is built anew from the customers whose events moved; customers queued after that in the same
    rebuild (one that only lost an identifier) are carried over into it at the swap."""
    from stitching.models import BlockedValue

    a, b, x = ingest(
        source,
        [
            {"id": "1", "anonymousId": "c1", "userId": "u1"},
            {"id": "2", "anonymousId": "c1"},
            {"id": "3", "anonymousId": "c5", "traits": {"email": "e5@x.example"}},
        ],
    )
    engine.stitch_pending()
    StaleEntity.objects.all().delete()
    lone = CustomerEvent.objects.get(pk=x).customer_entity_id
    # c1 splits the first customer (its events move); e5 only leaves the third one (none of its events moves).
    BlockedValue.objects.create(category_id="cookie", value="c1")
    BlockedValue.objects.create(category_id="email", value="e5@x.example")
    monkeypatch.setattr(bulk, "REWRITE_MIN_EVENTS", 1)  # (the empty queue is built anew)
    oids = _oids()

    engine.restitch()

    assert _oids()["customer_entities_stale"] != oids["customer_entities_stale"]
    kept, split = CustomerEvent.objects.get(pk=a).customer_entity_id, CustomerEvent.objects.get(pk=b).customer_entity_id
    assert CustomerEvent.objects.get(pk=x).customer_entity_id == lone
    assert set(StaleEntity.objects.values_list("pk", flat=True)) == {kept, split, lone}


def test_an_error_while_the_second_connection_builds_is_the_one_raised_and_keeps_the_old_tables(source, monkeypatch):
    """The rebuild fails on its own connection while the second one builds: the second one's work is cancelled (or
    left unused), the rebuild's error is the one raised, and the old tables stay."""
    ingest(source, ROWS)
    engine.stitch_pending()
    incremental = partition()
    _from_scratch()
    monkeypatch.setattr(bulk, "REWRITE_MIN_EVENTS", 1)
    oids = _oids()

    def broken(cur, *args):
        raise RuntimeError("identifiers failed")

    monkeypatch.setattr(bulk, "_identifiers_write", broken)
    with pytest.raises(RuntimeError, match="identifiers failed"):
        engine.restitch()
    assert _oids() == oids
    monkeypatch.undo()
    engine.restitch()
    assert partition() == incremental


@pytest.mark.django_db(transaction=True)
def test_an_event_ingested_while_a_rebuild_replaces_the_assignments_gets_its_row_in_the_new_table(
    source, monkeypatch, settings
):
    """Ingestion waits for a rebuild that replaces the assignments (the new events' rows go into that table): when
    the rebuild commits, the waiting insert finds the new table under the name and its event is stitched next."""
    import threading
    import time

    from django.db import connections

    settings.CDP_STITCH_AFTER_INGEST = False  # (committed events would be stitched on commit)
    ingest(source, ROWS)
    monkeypatch.setattr(bulk, "REWRITE_MIN_EVENTS", 1)
    from stitching.services import replace

    swap = replace.Replacements.swap
    late: list[int] = []

    def ingest_late() -> None:
        try:
            late.extend(ingest(source, [{"id": "late", "anonymousId": "c1"}]))
        finally:
            connections.close_all()

    def swap_while_ingesting(self, cur):
        thread = threading.Thread(target=ingest_late)
        thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until the insert waits for the rebuild's lock
            cur.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted "
                "AND relation = 'customer_event_entities'::regclass)"
            )
            if cur.fetchone()[0]:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the late event's insert did not wait for the rebuild")
        swapped = swap(self, cur)
        swap_while_ingesting.thread = thread
        return swapped

    monkeypatch.setattr(replace.Replacements, "swap", swap_while_ingesting)
    oids = _oids()
    engine.restitch()
    swap_while_ingesting.thread.join(timeout=30)

    assert _oids()["customer_event_entities"] != oids["customer_event_entities"]
    (event,) = late
    assert CustomerEventEntity.objects.get(event_id=event).customer_entity_id is None  # queued for stitching
    engine.stitch_pending()
    first = CustomerEvent.objects.order_by("id").first()
    assert CustomerEvent.objects.get(pk=event).customer_entity_id == first.customer_entity_id  # cookie c1


def test_a_second_restitch_of_unchanged_data_moves_nothing(source, monkeypatch):
    ingest(source, ROWS)
    monkeypatch.setattr(bulk, "REWRITE_MIN_EVENTS", 1)
    first = engine.restitch()
    before = partition()
    owners = dict(Identifier.objects.values_list("id", "customer_entity_id"))

    second = engine.restitch()

    assert first.events == len(ROWS) and second.events == 0 and "events_reindex" not in second.timings
    assert partition() == before
    assert dict(Identifier.objects.values_list("id", "customer_entity_id")) == owners


def test_a_rebuild_that_splits_a_customer_queues_both_for_their_attributes(source):
    from cdp.models import StaleEntity
    from stitching.models import BlockedValue

    a, b = ingest(source, [{"id": "1", "anonymousId": "c1", "userId": "u1"}, {"id": "2", "anonymousId": "c1"}])
    while engine.stitch_pending(limit=100).remaining:
        pass
    assert CustomerEvent.objects.get(pk=a).customer_entity_id == CustomerEvent.objects.get(pk=b).customer_entity_id
    StaleEntity.objects.all().delete()
    BlockedValue.objects.create(category_id="cookie", value="c1")  # directly: no component restitch of its own

    engine.restitch()

    kept, split = CustomerEvent.objects.get(pk=a).customer_entity_id, CustomerEvent.objects.get(pk=b).customer_entity_id
    assert kept != split
    assert set(StaleEntity.objects.values_list("pk", flat=True)) == {kept, split}


@pytest.mark.parametrize("rewrite_min", [1, 10_000])  # the assignments table replaced / rows updated
def test_a_customer_id_of_another_length_is_kept_through_a_rebuild(source, monkeypatch, rewrite_min):
    # Customer ids are 32 hex characters (written as fixed-width binary COPY); one of another length (an import
    # from elsewhere) takes the text path and is kept like any other.
    from cdp.models import CustomerEntity
    from tests.entities import events_attach

    a, b, c = ingest(source, [{"id": "1", "anonymousId": "c1"}, {"id": "2", "anonymousId": "c1"}, {"id": "3"}])
    legacy = CustomerEntity.objects.create(id="legacy-7")
    events_attach([a, b], legacy)
    monkeypatch.setattr(bulk, "REWRITE_MIN_EVENTS", rewrite_min)

    engine.restitch()

    assert CustomerEvent.objects.get(pk=a).customer_entity_id == "legacy-7"
    assert CustomerEvent.objects.get(pk=b).customer_entity_id == "legacy-7"
    other = CustomerEvent.objects.get(pk=c).customer_entity_id
    assert other not in (None, "legacy-7") and len(other) == 32
    assert Identifier.objects.get(value="c1").customer_entity_id == "legacy-7"


def test_two_rules_finding_one_identifier_in_an_event_make_one_link_from_the_first_rule(source):
    """traits.email (priority 10) and context.traits.email (5) giving the same address link it once, by the
    trusted rule, in a full rebuild as in incremental stitching; different addresses link both."""
    from stitching.models import EventIdentifier, StitchingRule

    # A third email rule of traits.email's priority, created later (larger id): ties go to the smaller id.
    StitchingRule.objects.create(source=source, category_id="email", path="properties.email", priority=10)
    a, b, c = ingest(
        source,
        [
            {"id": "1", "traits": {"email": "a@x.example"}, "context": {"traits": {"email": " A@x.example"}},
             "properties": {"email": "a@x.example"}},
            {"id": "2", "context": {"traits": {"email": "b@x.example"}}, "properties": {"email": "B@x.example"}},
            {"id": "3", "traits": {"email": "c@x.example"}, "context": {"traits": {"email": "d@x.example"}}},
        ],
    )  # fmt: skip
    rule_of = {rule.path: rule.id for rule in StitchingRule.objects.filter(source=source)}

    def links() -> set[tuple[int, str, int]]:
        return set(
            EventIdentifier.objects.filter(identifier__category_id="email").values_list(
                "event_id", "identifier__value", "rule_id"
            )
        )

    expected = {
        (a, "a@x.example", rule_of["traits.email"]),
        (b, "b@x.example", rule_of["properties.email"]),
        (c, "c@x.example", rule_of["traits.email"]),
        (c, "d@x.example", rule_of["context.traits.email"]),
    }
    engine.stitch_pending()
    assert links() == expected
    engine.restitch()
    assert links() == expected
    _from_scratch()
    engine.restitch()
    assert links() == expected


def test_a_rule_for_an_event_type_with_a_percent_sign_links_in_a_rebuild_as_incrementally(source):
    """The rebuild's extraction statement has no parameters: a % in a rule's event type (or path) is sent as it is,
    not doubled, so the rebuild finds what incremental stitching finds."""
    from stitching.models import StitchingRule

    StitchingRule.objects.create(source=source, category_id="email", path="properties.mail", event_type="50% off")
    a, b, c = ingest(
        source,
        [
            {"id": "1", "type": "50% off", "anonymousId": "c1", "properties": {"mail": "p@x.example"}},
            {"id": "2", "type": "50% off", "anonymousId": "c2", "properties": {"mail": "p@x.example"}},
            {"id": "3", "type": "50%% off", "anonymousId": "c3", "properties": {"mail": "p@x.example"}},
        ],
    )
    engine.stitch_pending()
    incremental = partition()
    assert incremental == {frozenset({a, b}), frozenset({c})}
    engine.restitch()
    assert partition() == incremental
    _from_scratch()
    engine.restitch()
    assert partition() == incremental


def test_an_error_during_the_plan_rolls_the_rebuild_back_and_is_the_one_raised(source, monkeypatch):
    ingest(source, ROWS)
    engine.stitch_pending()
    before = partition()

    def broken(graph, groups):
        raise RuntimeError("plan failed")

    monkeypatch.setattr(bulk, "_entities_plan", broken)
    with pytest.raises(RuntimeError, match="plan failed"):
        engine.restitch()
    monkeypatch.undo()
    assert partition() == before  # rolled back, and the connection still works
    engine.restitch()
    assert partition() == before


def test_an_error_writing_the_edges_is_the_one_raised_when_the_exact_algorithm_reads_behind_it(
    source, monkeypatch, settings
):
    settings.STITCHING_HUB_LIMIT = 1  # every component with two identifiers goes through the exact algorithm
    _restitch_raises_from(source, monkeypatch, "_edges_write")


def test_an_error_building_the_identifiers_rows_is_the_one_raised(source, monkeypatch):
    """st_ids is built first on the statement thread: its error, not the edges' "transaction is aborted", is raised."""
    _restitch_raises_from(source, monkeypatch, "_identifiers_materialise")


def _restitch_raises_from(source, monkeypatch, step: str) -> None:
    """A rebuild whose `step` fails with a statement error raises that error."""
    ingest(source, ROWS)
    engine.stitch_pending()

    def broken(cur, *args):
        cur.execute("SELECT 1/0")

    monkeypatch.setattr(bulk, step, broken)
    with pytest.raises(Exception, match="division by zero"):
        engine.restitch()


def _graph_rows() -> tuple[set, dict]:
    """Every edge (event, category, value, rule, status, reason) and every identifier's owner, as the customer's
    event set (ids differ between runs, the grouping must not)."""
    from stitching.models import EventIdentifier

    edges = set(
        EventIdentifier.objects.values_list(
            "event_id", "identifier__category_id", "identifier__value", "rule_id", "status", "reason"
        )
    )
    members: dict[str, frozenset] = {}
    for event_id, entity in CustomerEventEntity.objects.values_list("event_id", "customer_entity_id"):
        members[entity] = members.get(entity, frozenset()) | {event_id}
    owners = {
        (category, value): members.get(entity)
        for category, value, entity in Identifier.objects.values_list("category_id", "value", "customer_entity_id")
    }
    return edges, owners


LINKS_ROWS = ROWS + [
    {"id": "6", "anonymousId": "c3", "userId": "u2"},
    {"id": "7", "anonymousId": "c3", "userId": "u3"},  # a second user id for c3's customer: refused (limit)
    {"id": "8", "anonymousId": "c9", "traits": {"email": "b@x.example"}},  # c9 blocked by an administrator
]


@pytest.mark.parametrize("existing_id", [None, "legacy-customer-id-of-32-chars-x"])
@pytest.mark.parametrize("rewrite_min", [1, bulk.REWRITE_MIN_EVENTS])  # tables built on other connections, or not
def test_a_rebuild_into_empty_graph_tables_writes_the_edges_and_owners_incremental_stitching_does(
    source, existing_id, rewrite_min, monkeypatch
):
    """The first stitch's fast writes (edges by binary COPY, into a new table or in place, refused links marked
    after; new identifiers' owners as packed bytes; a customer id that is not uuid hex takes the general path) give
    what incremental stitching gives: every edge with its rule, status and reason, every identifier with its owner
    or none."""
    from stitching.models import BlockedValue

    monkeypatch.setattr(bulk, "REWRITE_MIN_EVENTS", rewrite_min)

    assert existing_id is None or len(existing_id) == 32
    BlockedValue.objects.create(category_id="cookie", value="c9", reason="shared kiosk")
    ingest(source, LINKS_ROWS)
    engine.stitch_pending()
    if existing_id is not None:  # the first customer keeps an id of another form (a rebuild keeps old ids)
        first = CustomerEventEntity.objects.order_by("event_id").first().customer_entity_id
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO customer_entities (id, created, modified, attributes) "
                           "SELECT %s, created - interval '1 day', modified, attributes FROM customer_entities "
                           "WHERE id = %s", [existing_id, first])  # fmt: skip
            cursor.execute("UPDATE customer_event_entities SET customer_entity_id = %s "
                           "WHERE customer_entity_id = %s", [existing_id, first])  # fmt: skip
            cursor.execute("UPDATE stitching_identifiers SET customer_entity_id = %s "
                           "WHERE customer_entity_id = %s", [existing_id, first])  # fmt: skip
            cursor.execute("DELETE FROM customer_entities WHERE id = %s", [first])
    edges, owners = _graph_rows()
    statuses = {status for *_, status, _ in edges}
    assert {"linked", "blocked", "limit"} <= statuses
    with connection.cursor() as cursor:
        for table in ("stitching_event_identifiers", "stitching_entitychange", "stitching_identifiers"):
            cursor.execute(f"DELETE FROM {table}")

    engine.restitch()

    assert _graph_rows() == (edges, owners)
    if existing_id is not None:
        assert Identifier.objects.filter(customer_entity_id=existing_id).exists()


def test_a_rebuild_leaves_the_transaction_s_settings_as_it_found_them(source):
    """The rebuild changes planner, statistics and logging settings for some of its statements (SET LOCAL, as the
    caller's transaction goes on after it): each comes back to what it was, a caller's own value included."""
    settings = ("max_parallel_workers_per_gather", "default_statistics_target", "log_parameter_max_length")
    ingest(source, LINKS_ROWS)
    with connection.cursor() as cursor:
        cursor.execute(
            "SET LOCAL max_parallel_workers_per_gather = 1; SET LOCAL default_statistics_target = 55; "
            "SET LOCAL log_parameter_max_length = 77"
        )
        cursor.execute(f"SELECT {', '.join('current_setting(%s)' for _ in settings)}", settings)
        before = cursor.fetchone()

    engine.restitch()  # a first stitch: every fast path

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join('current_setting(%s)' for _ in settings)}", settings)
        assert cursor.fetchone() == before == ("1", "55", "77B")


def test_identifier_keys_that_share_their_first_half_are_told_apart():
    """_key_order sorts by the first 64 bits of the key (mixed with the category): rows that differ but share them
    (values made to collide on 64 bits) fall back to a sort of all three columns, so equal rows stay adjacent."""
    import numpy as np

    codes = np.array([0, 0, 0, 1, 0, 0], dtype=np.int64)
    keys = np.array([[7, 1], [7, 2], [7, 1], [7, 1], [5, 9], [7, 2]], dtype=np.uint64)
    order = bulk._key_order(codes, keys)
    rows = [(int(codes[k]), int(keys[k, 0]), int(keys[k, 1])) for k in order]
    runs = [rows[0]] + [b for a, b in zip(rows, rows[1:], strict=False) if a != b]
    assert sorted(runs) == sorted(set(rows))  # each distinct row in one run
    events = np.array([3, 1, 3, 2], dtype=np.int64)
    identifiers = np.array([9, 4, 2, 8], dtype=np.int64)
    assert bulk._pair_order(events, identifiers).tolist() == [1, 3, 2, 0]


def _rebuilds_match_incremental() -> None:
    """Incremental stitching, then a re-stitch over the stored identifiers and a first stitch from empty tables:
    the same partition, edges (rule, status, reason) and owners."""
    while engine.stitch_pending(limit=1000).remaining:
        pass
    incremental, rows = partition(), _graph_rows()
    engine.restitch()
    assert (partition(), _graph_rows()) == (incremental, rows)
    _from_scratch()
    engine.restitch()
    assert (partition(), _graph_rows()) == (incremental, rows)


MIXED_ROWS = [
    {"id": "1", "anonymousId": "c1"},
    {"id": "2", "anonymousId": "c1", "userId": "u1"},
    {"id": "3", "userId": "u1", "traits": {"email": "A@x.example", "phone": "+420 601 234 567"}},
    {"id": "4", "anonymousId": "c2", "traits": {"email": "null"}},
    {"id": "5", "anonymousId": "null"},
    {"id": "6", "anonymousId": "ž😀\u0301 é", "userId": "  'undefined' "},
    {"id": "7", "anonymousId": "ž😀\u0301 é"},
    {"id": "8", "anonymousId": "shared"},
    {"id": "9", "anonymousId": "shared", "userId": "u9"},
]


def test_event_ids_near_the_top_of_bigint_stitch_in_a_rebuild(source):
    """A pair is read as its event id and its rule's column, not as one number made of both (which overflowed
    bigint for event ids above 2^63 / the number of rules)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT last_value FROM customer_events_id_seq")
        (was,) = cursor.fetchone()
        cursor.execute("SELECT setval('customer_events_id_seq', %s)", [2**62])
    try:
        ingest(source, MIXED_ROWS)
        _rebuilds_match_incremental()
    finally:
        with connection.cursor() as cursor:  # (sequences are not transactional)
            cursor.execute("SELECT setval('customer_events_id_seq', %s)", [was])


def test_a_rebuild_read_in_several_id_ranges_gives_the_same_result(source, monkeypatch):
    """Pairs and stored identifiers are read in id ranges of at most MAX_FETCH_RECORDS (a bytea value holds at most
    1 GB): several ranges give what one does."""
    ingest(source, MIXED_ROWS + [{"id": f"x{k}", "anonymousId": f"c{k % 4}", "userId": f"u{k % 3}"} for k in range(30)])
    monkeypatch.setattr(bulk, "MAX_FETCH_RECORDS", 7)
    _rebuilds_match_incremental()


@pytest.mark.parametrize("span", [bulk.DENSE_SPAN, 0])  # ids ranked through their span / sorted and searched
def test_ids_are_ranked_and_looked_up_as_numpy_s_unique_and_searchsorted_do(monkeypatch, span):
    """_ranked and _positions give np.unique(..., return_inverse=True) and np.searchsorted, through arrays over the
    ids' span when they are dense, else by numpy's sort and binary search."""
    import numpy as np

    monkeypatch.setattr(bulk, "DENSE_SPAN", span)
    monkeypatch.setattr(bulk, "DENSE_SLACK", 0 if span == 0 else bulk.DENSE_SLACK)
    rng = np.random.default_rng(7)
    for values in (rng.integers(1_000, 1_200, 500), rng.integers(0, 2**62, 300), np.array([5], dtype=np.int64)):
        values = values.astype(np.int64)
        distinct, inverse = bulk._ranked(values)
        expected_distinct, expected_inverse = np.unique(values, return_inverse=True)
        assert distinct.tolist() == expected_distinct.tolist()
        assert inverse.tolist() == expected_inverse.tolist()
        queries = rng.choice(expected_distinct, 200)
        assert (
            bulk._positions(expected_distinct, queries).tolist() == np.searchsorted(expected_distinct, queries).tolist()
        )
    if span:  # (a value that is not among the ids is an error, not a position)
        for missing in ([12, 13], [9], [15]):
            with pytest.raises(ValueError, match="not among the ids"):
                bulk._positions(np.array([10, 12, 14], dtype=np.int64), np.array(missing, dtype=np.int64))


def test_a_rebuild_gives_the_same_result_with_ids_sorted_and_searched(source, monkeypatch):
    """The union-find and the plan rank sparse ids by numpy's sort (no array over their span): the same partition,
    edges and owners as incremental stitching."""
    ingest(source, MIXED_ROWS + [{"id": f"x{k}", "anonymousId": f"c{k % 4}", "userId": f"u{k % 3}"} for k in range(30)])
    monkeypatch.setattr(bulk, "DENSE_SPAN", 0)
    monkeypatch.setattr(bulk, "DENSE_SLACK", 0)
    _rebuilds_match_incremental()
