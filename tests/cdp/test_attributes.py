"""cdp.services.attributes: definitions, their validation, and the SQL computation on real PostgreSQL."""

import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import psycopg
import pytest
from django.core.exceptions import ValidationError
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.models import Attribute, CustomerEntity, StaleEntity
from cdp.services import attributes as svc
from cdp.services.attributes import entities_mark_stale
from cdp.services.data_sources import data_source_create
from cdp.services.events import event_record_build, events_ingest
from cdp.services.global_settings import global_setting_set
from cdp.tasks import attributes_recompute as attributes_recompute_task
from segments.exports.services import destination_create
from segments.services import segment_create, segment_trash
from stitching.models import Identifier, StitchingCategory
from tests.entities import events_attach

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def events_add(source, entity, events: list[tuple[str, dict]], *, start=T0) -> None:
    """Store events (type, payload), one minute apart from `start`, and assign them to `entity`."""
    records = [
        event_record_build(source_id=source.pk, type=kind, event_time=start + timedelta(minutes=n), payload=payload)
        for n, (kind, payload) in enumerate(events)
    ]
    ids = [outcome.id for outcome in events_ingest(records)]
    events_attach(ids, entity)
    entities_mark_stale(entity_ids=[entity.pk])  # as stitching queues the customers it touched


def values(entity) -> dict:
    entity.refresh_from_db()
    return entity.attributes


@pytest.fixture
def no_default_attributes(db):
    """Start from no definitions (the migration's defaults are tested on their own)."""
    Attribute.objects.all().delete()


@pytest.fixture
def shop(no_default_attributes, web_source):
    """A few definitions over the web source, and a customer with orders (one with a junk revenue)."""
    svc.attribute_create(id="orders", name="Orders", computation="count", data_type="int", event_types=["order"])
    svc.attribute_create(
        id="revenue", name="Revenue", computation="sum", data_type="float", event_types=["order"],
        path="properties.revenue",
    )  # fmt: skip
    svc.attribute_create(id="seen_first", name="First seen", computation="first_event_time", data_type="datetime")
    entity = CustomerEntity.objects.create()
    events_add(
        web_source,
        entity,
        [
            ("page", {"properties": {"path": "/"}}),
            ("order", {"properties": {"revenue": 10.5}}),
            ("order", {"properties": {"revenue": "abc"}}),
            ("order", {"properties": {"revenue": " 4.50 "}}),
        ],
    )
    return entity


def test_recompute_computes_counts_sums_and_times_skipping_a_non_numeric_revenue(shop):
    assert svc.attributes_recompute() == 1

    assert values(shop) == {"orders": [3], "revenue": [15], "seen_first": ["2025-03-01T12:00:00.000000Z"]}
    assert not StaleEntity.objects.filter(pk=shop.pk).exists()


def test_every_computation_and_type_from_payload_paths(no_default_attributes, web_source):
    define = svc.attribute_create
    define(id="first_city", name="c", computation="first_value", path="traits.city")
    define(id="last_city", name="c", computation="last_value", path="traits.city")
    define(id="cities", name="c", computation="unique_values", path="traits.city")
    define(id="ages", name="a", computation="unique_values", data_type="int", path="traits.age")
    define(id="min_age", name="a", computation="min", data_type="int", path="traits.age")
    define(id="max_age", name="a", computation="max", data_type="float", path="traits.age")
    define(id="avg_age", name="a", computation="average", data_type="float", path="traits.age")
    define(id="vip", name="v", computation="last_value", data_type="bool", path="traits.vip")
    define(id="birthday", name="b", computation="first_value", data_type="date", path="traits.birthday")
    define(id="signed_up", name="s", computation="last_value", data_type="datetime", path="traits.signed_up")
    define(id="last_seen_day", name="d", computation="last_event_time", data_type="date")
    define(id="never", name="n", computation="last_value", path="traits.nothing_here")
    define(id="identifies", name="i", computation="count", data_type="int", event_types=["identify"])
    define(id="nothing_counted", name="n", computation="count", data_type="int", event_types=["missing"])
    entity = CustomerEntity.objects.create()
    events_add(
        web_source,
        entity,
        [
            ("identify", {"traits": {"city": "Brno", "age": 30, "vip": "yes", "birthday": "1990-02-30"}}),
            ("identify", {"traits": {"city": " Praha ", "age": "31", "vip": {"x": 1}, "birthday": "1990-05-01"}}),
            ("identify", {"traits": {"city": "", "age": "old", "signed_up": "2024-01-02T03:04:05+01:00"}}),
            ("identify", {"traits": {"city": 7, "age": 29.6, "vip": False, "signed_up": "tomorrow"}}),
            ("identify", {"traits": {"city": None, "age": [1], "vip": "maybe"}}),
        ],
    )

    svc.attributes_recompute()

    assert values(entity) == {
        "first_city": ["Brno"],
        "last_city": ["7"],  # numbers become text for a string attribute; null and "" are no value
        "cities": ["7", "Brno", "Praha"],
        "ages": [30, 31],
        "min_age": [30],
        "max_age": [31],
        "avg_age": [30.2],
        "vip": [False],
        "birthday": ["1990-05-01"],  # 1990-02-30 is not a date: skipped
        "signed_up": ["2024-01-02T02:04:05.000000Z"],
        "last_seen_day": ["2025-03-01"],
        "identifies": [5],
        "nothing_counted": [0],
    }


def test_unique_values_of_every_data_type_are_stored_as_their_scalars(no_default_attributes, web_source):
    columns = ("string", "int", "float", "bool", "date", "datetime")
    for data_type in columns:
        path = f"v.{data_type}"
        svc.attribute_create(
            id=f"all_{data_type}", name="u", computation="unique_values", data_type=data_type, path=path
        )
    entity = CustomerEntity.objects.create()
    rows = [
        ('say "hi"\n', 2.5, "1.50", "yes", "2024-02-29", "2024-01-02T03:04:05.6+01:00"),
        ("ü", -7, 10, False, "2024-02-29T10:00:00Z", "2024-01-02T02:04:05.600Z"),
        (12, "1e3", -0.25, 1, "1999-12-31", "2024-01-02"),
    ]
    events_add(web_source, entity, [("x", {"v": dict(zip(columns, row, strict=True))}) for row in rows])

    svc.attributes_recompute()

    with connection.cursor() as cursor:  # the stored text: numbers as JSON numbers, in jsonb's key order
        cursor.execute("SELECT attributes::text FROM customer_entities WHERE id = %s", [entity.pk])
        stored = json.loads(cursor.fetchone()[0], parse_float=Decimal)
    # (jsonb orders a unique-values list by the values' texts: shorter first, then bytewise)
    assert stored == {
        "all_string": ["12", "ü", 'say "hi"\n'],  # a number is text for a string attribute; only spaces trimmed
        "all_int": [3, -7, 1000],  # 2.5 rounds half away from zero
        "all_float": [10, Decimal("1.5"), Decimal("-0.25")],  # no trailing zeros
        "all_bool": [True, False],
        "all_date": ["1999-12-31", "2024-02-29"],  # a date-time's day
        "all_datetime": ["2024-01-02T00:00:00.000000Z", "2024-01-02T02:04:05.600000Z"],  # one moment, twice: once
    }


def test_filters_by_source_and_event_type(no_default_attributes, web_source):
    crm, _ = data_source_create(slug="crm", name="CRM", type="crm")
    svc.attribute_create(id="crm_events", name="c", computation="count", data_type="int", sources=[crm])
    svc.attribute_create(
        id="crm_stage", name="s", computation="last_value", path="stage", sources=[crm], event_types=["contact"]
    )
    entity = CustomerEntity.objects.create()
    events_add(web_source, entity, [("contact", {"stage": "web"})])
    events_add(crm, entity, [("contact", {"stage": "lead"}), ("note", {"stage": "ignored"})], start=T0 + timedelta(1))

    svc.attributes_recompute()

    assert values(entity) == {"crm_events": [2], "crm_stage": ["lead"]}


def test_identifier_values_come_from_the_identifiers_stitched_to_the_entity(no_default_attributes):
    email, _ = StitchingCategory.objects.get_or_create(id="email", defaults={"name": "Email", "normalizer": "email"})
    StitchingCategory.objects.get_or_create(id="phone", defaults={"name": "Phone", "normalizer": "phone"})
    svc.attribute_create(id="emails", name="Emails", computation="identifier_values", category="email")
    svc.attribute_create(id="phones", name="Phones", computation="identifier_values", category="phone")
    entity, other = CustomerEntity.objects.create(), CustomerEntity.objects.create()
    Identifier.objects.create(category=email, value="b@example.com", customer_entity=entity)
    Identifier.objects.create(category=email, value="a@example.com", customer_entity=entity)
    Identifier.objects.create(category=email, value="c@example.com", customer_entity=other)
    Identifier.objects.create(category=email, value='"o\\brien"@example.com', customer_entity=other)

    svc.attributes_recompute(entity_ids=[entity.pk, other.pk])

    assert values(entity) == {"emails": ["a@example.com", "b@example.com"]}
    assert values(other) == {"emails": ['"o\\brien"@example.com', "c@example.com"]}


def test_modified_moves_only_when_a_value_changes(shop, web_source):
    svc.attributes_recompute()
    first = CustomerEntity.objects.get(pk=shop.pk).modified

    svc.attributes_recompute(entity_ids=[shop.pk])
    assert CustomerEntity.objects.get(pk=shop.pk).modified == first

    events_add(web_source, shop, [("order", {"properties": {"revenue": 1}})], start=T0 + timedelta(days=1))
    svc.attributes_recompute(entity_ids=[shop.pk])
    entity = CustomerEntity.objects.get(pk=shop.pk)
    assert entity.modified > first
    assert entity.attributes["revenue"] == [16]


def test_only_stale_entities_are_recomputed_and_limit_bounds_a_run(shop, monkeypatch):
    svc.attributes_recompute()
    fresh = CustomerEntity.objects.create()
    stale = [CustomerEntity.objects.create() for _ in range(5)]
    svc.entities_mark_stale(entity_ids=[e.pk for e in stale])
    monkeypatch.setattr(svc, "BATCH_SIZE", 2)

    assert svc.attributes_recompute(limit=3) == 3
    assert StaleEntity.objects.count() == 2
    assert svc.attributes_recompute() == 2
    assert svc.attributes_recompute() == 0
    assert values(fresh) == {}
    assert all(values(e) == {"orders": [0], "revenue": [0]} for e in stale)


def test_one_statement_per_batch(shop, monkeypatch):
    svc.entities_mark_stale(entity_ids=[CustomerEntity.objects.create().pk for _ in range(3)])
    monkeypatch.setattr(svc, "BATCH_SIZE", 2)
    statements = []
    execute = psycopg.Cursor.execute

    def recorded(cursor, query, *args, **kwargs):  # the batch UPDATE runs on a server-side binding cursor
        statements.append(str(query))
        return execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", recorded)
    with CaptureQueriesContext(connection) as queries:
        svc.attributes_recompute()

    sql = statements + [q["sql"] for q in queries.captured_queries]
    updates = [q for q in sql if q.startswith("UPDATE customer_entities")]
    assert len(updates) == 2  # 4 entities, batches of 2


def test_unknown_entity_ids_are_ignored(shop):
    assert svc.attributes_recompute(entity_ids=["0" * 32, shop.pk.upper()]) == 1


@pytest.mark.django_db(transaction=True)
def test_a_batch_locked_by_another_worker_is_skipped_not_waited_for(no_default_attributes):
    svc.attribute_create(id="n", name="n", computation="count", data_type="int")
    entities = sorted(CustomerEntity.objects.create().pk for _ in range(4))
    # Queued directly: the service would also run the (eager) task and empty the queue before the test.
    StaleEntity.objects.bulk_create(StaleEntity(entity_id=e) for e in entities)
    locked, released = threading.Event(), threading.Event()

    def other_worker():
        with connections["default"].cursor() as cursor:  # this thread's own connection
            cursor.execute("BEGIN")
            # What another worker's claim holds: those customers' rows of the queue.
            cursor.execute(
                "SELECT entity_id FROM customer_entities_stale WHERE entity_id = ANY(%s) FOR UPDATE", [entities[:2]]
            )
            locked.set()
            released.wait(10)
            cursor.execute("ROLLBACK")
        connections["default"].close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert locked.wait(10)
        assert svc.attributes_recompute() == 2
    finally:
        released.set()
        thread.join()
    assert set(StaleEntity.objects.values_list("pk", flat=True)) == set(entities[:2])
    assert svc.attributes_recompute() == 2


@pytest.mark.django_db(transaction=True)
def test_queueing_every_customer_while_stitching_queues_some_cannot_deadlock(no_default_attributes):
    """Saving an attribute definition queues every customer while workers queue the ones they stitch: inserted in
    table order instead of id order (as stitching does), the two waited for each other's uncommitted ids."""
    later = CustomerEntity.objects.create(id="c" * 32)  # first in the table, last by id
    earlier = CustomerEntity.objects.create(id="b" * 32)
    holding, release, errors = threading.Event(), threading.Event(), []

    def in_thread(work):
        def run():
            try:
                work()
            except Exception as error:  # noqa: BLE001 - reported by the test
                errors.append(error)
            finally:
                connections.close_all()

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def stitching():
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(svc.entities_queue_sql(), [[earlier.pk]])
            holding.set()
            release.wait(10)
            cursor.execute(svc.entities_queue_sql(), [[later.pk]])

    def definition_saved():
        with transaction.atomic():
            entities_mark_stale(enqueue=False)

    worker = in_thread(stitching)
    try:
        assert holding.wait(10)
        saving = in_thread(definition_saved)
        with connection.cursor() as cursor:  # until the second waits for the first's uncommitted id
            for _ in range(500):
                cursor.execute(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted AND locktype = 'transactionid')"
                )
                if cursor.fetchone()[0]:
                    break
                time.sleep(0.02)
    finally:
        release.set()
        worker.join(15)
    saving.join(15)
    assert not errors
    assert set(StaleEntity.objects.values_list("pk", flat=True)) == {earlier.pk, later.pk}


# --- definitions ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"computation": "sum", "data_type": "float"}, "path", "needs the payload path"),
        ({"computation": "count", "data_type": "int", "path": "a.b"}, "path", "does not read a payload path"),
        ({"computation": "count", "data_type": "string"}, "data_type", "has the data type int"),
        ({"computation": "last_event_time", "data_type": "int"}, "data_type", "date or datetime (date and time), not"),
        ({"computation": "sum", "data_type": "bool", "path": "x"}, "data_type", "float (decimal number) or int"),
        ({"computation": "identifier_values"}, "category", "need a stitching category"),
        ({"computation": "identifier_values", "category": "nope_nope"}, "category", "Unknown stitching category"),
        ({"computation": "last_value", "path": "a..b"}, "path", "empty part"),
        ({"computation": "last_value", "path": "x", "category": "email"}, "category", "Only identifier_values"),
        ({"computation": "median", "path": "x"}, "computation", "Unknown computation"),
        ({"computation": "last_value", "path": "x", "data_type": "money"}, "data_type", "Unknown data type"),
        ({"computation": "count", "data_type": "int", "event_types": [""]}, "event_types", "non-empty"),
    ],
)
def test_attribute_create_refuses_a_computation_that_makes_no_sense(no_default_attributes, fields, field, message):
    with pytest.raises(ValidationError) as caught:
        svc.attribute_create(id="x", name="X", **fields)

    assert message in caught.value.message_dict[field][0]
    assert not Attribute.objects.exists()


def test_attribute_create_refuses_a_bad_or_taken_id(shop):
    with pytest.raises(ValidationError, match="lower-case"):
        svc.attribute_create(id="Bad Id", name="x", computation="count", data_type="int")
    with pytest.raises(ValidationError, match="exists already"):
        svc.attribute_create(id="orders", name="x", computation="count", data_type="int")


def test_attribute_create_queues_every_customer_after_commit(shop, django_capture_on_commit_callbacks):
    svc.attributes_recompute()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        svc.attribute_create(id="pages", name="Pages", computation="count", data_type="int", event_types=["page"])

    assert len(callbacks) == 1  # the recompute task, run eagerly here
    assert values(shop)["pages"] == [1]


def test_attribute_update_of_the_name_keeps_values_but_a_new_path_recomputes(shop):
    svc.attributes_recompute()
    revenue = Attribute.objects.get(pk="revenue")

    svc.attribute_update(attribute=revenue, name="Total revenue", unit="EUR")
    assert not StaleEntity.objects.exists()

    svc.attribute_update(attribute=revenue, path="properties.missing")
    assert StaleEntity.objects.filter(pk=shop.pk).exists()
    svc.attributes_recompute()
    assert values(shop)["revenue"] == [0]


def test_attribute_update_validates_the_result(shop):
    with pytest.raises(ValidationError, match="has the data type int"):
        svc.attribute_update(attribute=Attribute.objects.get(pk="orders"), data_type="string")
    with pytest.raises(ValidationError, match="cannot be changed"):
        svc.attribute_update(attribute=Attribute.objects.get(pk="orders"), id="other")
    assert Attribute.objects.get(pk="orders").data_type == "int"


def test_attribute_delete_removes_its_values(shop):
    svc.attributes_recompute()

    svc.attribute_delete(attribute=Attribute.objects.get(pk="revenue"))

    assert "revenue" not in values(shop)
    assert "orders" in values(shop)


# --- what depends on an attribute ------------------------------------------------------------------------------


def _segment(name: str, *conditions: dict, trashed: bool = False):
    segment = segment_create(owner=None, name=name, conditions={"operator": "and", "children": list(conditions)})
    return segment_trash(segment=segment) if trashed else segment


def test_an_attribute_segments_use_is_not_deleted_and_the_message_names_them(shop):
    svc.attributes_recompute()
    nested = {"operator": "or", "children": [{"attribute": "orders", "operator": "gte", "value": 2}]}
    _segment("Repeat buyers", nested)
    _segment("Old campaign", {"attribute": "orders", "operator": "is_set"}, trashed=True)
    _segment("Big spenders", {"attribute": "revenue", "operator": "gt", "value": 100})

    with pytest.raises(ValidationError) as refused:
        svc.attribute_delete(attribute=Attribute.objects.get(pk="orders"))

    assert refused.value.messages == [
        "“Orders” (orders) cannot be deleted: it is used by 2 segments (“Old campaign” in the trash, "
        "“Repeat buyers”). Remove it from them first."
    ]
    assert Attribute.objects.filter(pk="orders").exists() and values(shop)["orders"] == [3]


def test_a_refusal_names_the_first_few_dependents_of_each_kind_and_counts_the_rest(shop):
    for n in range(7):
        _segment(f"Segment {n}", {"attribute": "revenue", "operator": "is_set"})
    destination_create(name="CRM file", kind="csv", config={}, mandatory_attributes=["revenue", "orders"])
    global_setting_set(key="audience_api_returned_attributes", value=["revenue"], user=None)

    with pytest.raises(ValidationError) as refused:
        svc.attribute_delete(attribute=Attribute.objects.get(pk="revenue"))

    assert refused.value.messages == [
        "“Revenue” (revenue) cannot be deleted: it is used by 7 segments (“Segment 0”, “Segment 1”, “Segment 2”, "
        "“Segment 3”, “Segment 4” and 2 more), 1 export destination (“CRM file”) and the Audience API's returned "
        "attributes (global setting audience_api_returned_attributes). Remove it from them first."
    ]


def test_an_attribute_nothing_uses_is_deleted(shop):
    _segment("Repeat buyers", {"attribute": "orders", "operator": "gte", "value": 2})
    destination_create(name="CRM file", kind="csv", config={}, mandatory_attributes=["orders"])

    svc.attribute_delete(attribute=Attribute.objects.get(pk="revenue"))

    assert not Attribute.objects.filter(pk="revenue").exists()


def test_a_data_type_change_that_would_break_a_segment_is_refused(shop):
    _segment("Repeat buyers", {"attribute": "revenue", "operator": "gte", "value": 2})
    revenue = Attribute.objects.get(pk="revenue")

    with pytest.raises(ValidationError) as refused:
        svc.attribute_update(attribute=revenue, computation="last_value", data_type="string")

    assert refused.value.message_dict == {
        "data_type": [
            "“Revenue” cannot become text: the conditions of 1 segment (“Repeat buyers”) would no longer fit. "
            "Change them first."
        ]
    }
    assert Attribute.objects.get(pk="revenue").data_type == "float"


def test_a_data_type_change_the_segments_conditions_still_fit_is_allowed(shop):
    _segment("Repeat buyers", {"attribute": "revenue", "operator": "gte", "value": 2})
    destination_create(name="CRM file", kind="csv", config={}, mandatory_attributes=["revenue"])

    svc.attribute_update(attribute=Attribute.objects.get(pk="revenue"), data_type="int")

    assert Attribute.objects.get(pk="revenue").data_type == "int"


def test_default_attributes_compute_on_demo_like_events(db, web_source):
    """The migration's definitions, with no stitching categories present, compute without error."""
    entity = CustomerEntity.objects.create()
    order = {"event": "Order Completed", "properties": {"revenue": 100, "order_id": "A"}}
    events_add(
        web_source,
        entity,
        [
            ("page", {"properties": {"path": "/sale"}}),
            ("identify", {"traits": {"firstName": "Jana", "email": "jana@example.com"}}),
            ("Order Completed", order),
            ("Order Completed", {**order, "properties": {"revenue": 50.5}}),
        ],
    )

    svc.attributes_recompute()

    got = values(entity)
    assert got["events_count"] == [4]
    assert got["orders_count"] == [2]
    assert got["total_revenue"] == [150.5]
    assert got["average_order_value"] == [75.25]
    assert got["last_page_path"] == ["/sale"]
    assert got["first_name"] == ["Jana"]
    assert got["last_order_time"] == ["2025-03-01T12:03:00.000000Z"]
    assert "ps_email_address" not in got


# --- the task ------------------------------------------------------------------------------------------------


def test_task_reenqueues_itself_while_stale_customers_remain(shop, monkeypatch):
    import cdp.tasks

    for _ in range(4):
        CustomerEntity.objects.create()
    monkeypatch.setattr(cdp.tasks, "ATTRIBUTES_RECOMPUTE_LIMIT", 2)

    attributes_recompute_task.delay()

    assert not StaleEntity.objects.exists()


def test_task_is_a_beat_safety_net(settings):
    entries = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == attributes_recompute_task.name]

    assert len(entries) == 1
    assert entries[0]["schedule"] <= 300


@pytest.mark.worker
def test_task_recomputes_through_a_real_worker(no_default_attributes, celery_worker_process):
    # Created directly: the service would enqueue a recompute of its own and race the one under test.
    Attribute.objects.create(id="n", name="n", computation="count", data_type="int")
    entities = [CustomerEntity.objects.create() for _ in range(3)]
    StaleEntity.objects.bulk_create(StaleEntity(entity_id=e.pk) for e in entities)

    result = attributes_recompute_task.delay()

    assert celery_worker_process.result_wait(result, timeout=30) == 3
    assert all(values(e) == {"n": [0]} for e in entities)


def test_demo_data_ends_with_attributes_computed(db):
    from cdp.services.demo import demo_data_load

    demo_data_load(customers=5)

    assert not StaleEntity.objects.exists()
    with_orders = CustomerEntity.objects.filter(attributes__has_key="total_revenue").exclude(
        attributes__total_revenue=[0]
    )
    assert with_orders.exists()
    assert CustomerEntity.objects.filter(attributes__has_key="ps_email_address").exists()


# --- the SQL against a Python reference ----------------------------------------------------------------------

NUMBER_TEXT = re.compile(svc.NUMBER_RE)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(-1000, 1000, allow_nan=False).map(lambda x: round(x, 2)),
    st.sampled_from(["", " ", "abc", "Brno", " Praha ", "12", " 4.50 ", "1e2", "-3", "x1", "2024-01-01", "ü"]),
    # Text that JSON escapes (values are assembled as JSON text in SQL).
    st.sampled_from(['say "hi"', "back\\slash", "line\nbreak", "tab\tend", "\u0001ctl", "😀 emoji", "</script>"]),
    st.just({"nested": 1}),
    st.just([1, 2]),
)
event_lists = st.lists(
    st.tuples(st.sampled_from(["order", "page"]), scalars, st.integers(0, 5)),  # type, value, minutes
    min_size=0,
    max_size=8,
)


def as_text(value) -> str | None:
    """What a string attribute stores for a JSON value (None: no value)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value + 0.0 if isinstance(value, float) else value)  # numeric has no -0.0
    if isinstance(value, str):
        return value.strip() or None
    return None


def as_number(value) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(json.dumps(value))
    if isinstance(value, str) and NUMBER_TEXT.match(value):
        return Decimal(value.strip())
    return None


def reference(events) -> dict:
    """The attributes below computed in Python from (type, value, minutes, insertion index) events."""
    ordered = sorted(events, key=lambda e: (e[2], e[3]))
    orders = [e for e in ordered if e[0] == "order"]
    texts = [t for e in ordered if (t := as_text(e[1])) is not None]
    numbers = [n for e in orders if (n := as_number(e[1])) is not None]
    result: dict = {"orders": [len(orders)], "revenue": [sum(numbers, Decimal(0))]}
    if texts:
        result["first"], result["last"] = [texts[0]], [texts[-1]]
        result["unique"] = sorted(set(texts), key=lambda t: (len(t.encode()), t.encode()))
    if numbers:
        result["biggest"] = [max(numbers)]
        result["average"] = [sum(numbers) / len(numbers)]
        result["rounded_min"] = [min(numbers).quantize(Decimal(1), rounding=ROUND_HALF_UP)]
    return result


@pytest.fixture
def reference_attributes(no_default_attributes):
    define = svc.attribute_create
    define(id="orders", name="o", computation="count", data_type="int", event_types=["order"])
    define(id="revenue", name="r", computation="sum", data_type="float", event_types=["order"], path="v")
    define(id="biggest", name="b", computation="max", data_type="float", event_types=["order"], path="v")
    define(id="average", name="a", computation="average", data_type="float", event_types=["order"], path="v")
    define(id="rounded_min", name="m", computation="min", data_type="int", event_types=["order"], path="v")
    define(id="first", name="f", computation="first_value", path="v")
    define(id="last", name="l", computation="last_value", path="v")
    define(id="unique", name="u", computation="unique_values", path="v")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=event_lists)
def test_sql_computation_matches_a_python_reference(reference_attributes, web_source, events):
    entity = CustomerEntity.objects.create()
    records = [
        event_record_build(
            source_id=web_source.pk, type=kind, event_time=T0 + timedelta(minutes=minutes), payload={"v": value}
        )
        for kind, value, minutes in events
    ]
    ids = [outcome.id for outcome in events_ingest(records)]
    events_attach(ids, entity)
    entities_mark_stale(entity_ids=[entity.pk])  # as stitching queues the customers it touched
    # Identical events are stored once (the content hash is their idempotency key): the reference sees each once.
    stored = {}
    for (kind, value, minutes), event_id in zip(events, ids, strict=True):
        stored.setdefault(event_id, (kind, value, minutes, event_id))

    svc.attributes_recompute(entity_ids=[entity.pk])

    with connection.cursor() as cursor:
        cursor.execute("SELECT attributes::text FROM customer_entities WHERE id = %s", [entity.pk])
        got = json.loads(cursor.fetchone()[0], parse_float=Decimal)
    expected = reference(list(stored.values()))
    assert got.keys() == expected.keys()
    for key, values in expected.items():
        if key == "average":
            assert abs(Decimal(got[key][0]) - values[0]) < Decimal("1e-9")
        else:
            assert [Decimal(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in got[key]] == values


@pytest.mark.parametrize(
    ("computation", "path", "data_type"),
    [("count", "", "int"), ("last_event_time", "", "datetime"), ("sum", "x", "float"), ("last_value", "x", "string")],
)
def test_attribute_create_without_a_data_type_takes_the_computations_natural_one(
    no_default_attributes, computation, path, data_type
):
    attribute = svc.attribute_create(id="a", name="A", computation=computation, path=path)

    assert attribute.data_type == data_type


def test_more_attributes_than_a_function_takes_arguments(no_default_attributes, web_source):
    # The stored object is joined from chunks (a function takes at most 100 arguments).
    for n in range(95):
        svc.attribute_create(id=f"a{n}", name=f"a{n}", computation="count", event_types=["order"])
    entity = CustomerEntity.objects.create()
    events_add(web_source, entity, [("order", {})])

    svc.attributes_recompute(entity_ids=[entity.pk])

    assert values(entity) == {f"a{n}": [1] for n in range(95)}


def test_a_run_also_takes_customers_queued_behind_its_position(shop, monkeypatch):
    # Batches claim in id order from where the previous one ended; a customer queued meanwhile with a smaller id
    # is found by the pass from the start at the end.
    svc.attributes_recompute()
    late, first, second = (CustomerEntity.objects.create(id=c * 32) for c in "089")
    svc.entities_mark_stale(entity_ids=[first.pk, second.pk])
    monkeypatch.setattr(svc, "BATCH_SIZE", 1)
    batch_run = svc._batch_run

    def batch_then_queue_behind(*args, **kwargs):
        result = batch_run(*args, **kwargs)
        if result[2] == first.pk:
            svc.entities_mark_stale(entity_ids=[late.pk])
        return result

    monkeypatch.setattr(svc, "_batch_run", batch_then_queue_behind)

    assert svc.attributes_recompute() == 3
    assert all(values(e) == {"orders": [0], "revenue": [0]} for e in (late, first, second))
    assert not StaleEntity.objects.exists()


def test_a_customer_whose_values_did_not_change_is_not_written(shop, web_source):
    def row_version() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT xmin::text FROM customer_entities WHERE id = %s", [shop.pk])
            return cursor.fetchone()[0]

    assert svc.attributes_recompute(entity_ids=[shop.pk]) == 1
    before = row_version()

    assert svc.attributes_recompute(entity_ids=[shop.pk]) == 1  # recomputed, nothing changed: not written
    assert row_version() == before
    events_add(web_source, shop, [("order", {"properties": {"revenue": 1}})], start=T0 + timedelta(days=1))
    assert svc.attributes_recompute() == 1
    assert row_version() != before


def test_a_dense_batch_is_read_by_id_range_with_the_same_values_and_writes_only_its_customers(
    shop, web_source, monkeypatch
):
    email, _ = StitchingCategory.objects.get_or_create(id="email", defaults={"name": "Email", "normalizer": "email"})
    svc.attribute_create(id="emails", name="Emails", computation="identifier_values", category="email")
    customers = [shop] + [CustomerEntity.objects.create() for _ in range(5)]
    for n, entity in enumerate(customers[1:]):
        events_add(web_source, entity, [("order", {"properties": {"revenue": n}}), ("page", {})])
        Identifier.objects.create(category=email, value=f"c{n}@example.com", customer_entity=entity)
    ids = sorted(entity.pk for entity in customers)
    monkeypatch.setattr(svc, "RANGE_MIN", 10**9)  # every batch by its ids
    svc.attributes_recompute()
    by_ids = {pk: values(CustomerEntity(pk=pk)) for pk in ids}
    assert by_ids[customers[1].pk]["emails"] == ["c0@example.com"]

    # Everyone queued again with cleared values but one customer inside the range, which keeps a planted value.
    CustomerEntity.objects.update(attributes={})
    left_out = ids[2]
    CustomerEntity.objects.filter(pk=left_out).update(attributes={"planted": [1]})
    entities_mark_stale(entity_ids=[pk for pk in ids if pk != left_out])
    monkeypatch.setattr(svc, "RANGE_MIN", 2)
    dense: list[bool] = []
    is_dense = svc._is_dense
    monkeypatch.setattr(svc, "_is_dense", lambda cursor, batch: dense.append(is_dense(cursor, batch)) or dense[-1])
    assert svc.attributes_recompute() == 5

    assert dense == [True]  # 5 of the 6 customers from the first id to the last
    for pk in ids:
        assert values(CustomerEntity(pk=pk)) == ({"planted": [1]} if pk == left_out else by_ids[pk])


def test_a_sparse_batch_is_read_by_its_ids(shop, monkeypatch):
    customers = sorted([shop.pk] + [CustomerEntity.objects.create().pk for _ in range(5)])
    monkeypatch.setattr(svc, "RANGE_MIN", 2)
    with connection.cursor() as cursor:
        assert svc._is_dense(cursor, customers[:2]) is True
        assert svc._is_dense(cursor, [customers[0], customers[-1]]) is False  # 2 customers, 6 in their range
        assert svc._is_dense(cursor, customers[:1]) is False  # fewer than RANGE_MIN


def test_a_batch_postgresql_aborted_to_break_a_deadlock_is_run_again(shop, monkeypatch):
    monkeypatch.setattr(svc.time, "sleep", lambda seconds: None)
    transaction_run = svc._batch_transaction
    calls = []

    def deadlocked_once(program, **claim):
        calls.append(claim)
        if len(calls) == 1:  # what PostgreSQL raises in the transaction it picks (rolled back)
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("DO $$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = '40P01'; END $$")
        return transaction_run(program, **claim)

    monkeypatch.setattr(svc, "_batch_transaction", deadlocked_once)
    assert svc.attributes_recompute() == 1
    assert values(shop)["orders"] == [3]
    assert calls[0] == calls[1]


def test_merge_events_are_not_the_customers_activity(no_default_attributes, shop_source):
    """A merge is bookkeeping: counts and last-seen times leave the system events out, so a dormant customer is not
    "seen" at the merge; an attribute that names the system source reads them."""
    from cdp.models import DataSource
    from stitching.services import engine
    from tests.stitching.helpers import T0 as STITCH_T0
    from tests.stitching.helpers import ingest

    source = shop_source
    svc.attribute_create(id="events", name="Events", computation="count", data_type="int")
    svc.attribute_create(id="last_seen", name="Last seen", computation="last_event_time", data_type="datetime")
    ingest(source, [{"id": "1", "t": 0, "anonymousId": "c"}, {"id": "2", "t": 1, "userId": "u"}])
    engine.stitch_pending()
    ingest(source, [{"id": "3", "t": 2, "anonymousId": "c", "userId": "u"}])
    assert engine.stitch_pending().merges == 1
    svc.attributes_recompute()
    entity = CustomerEntity.objects.get()
    assert values(entity) == {
        "events": [3],
        "last_seen": [(STITCH_T0 + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")],
    }

    system = DataSource.objects.get(slug=engine.SYSTEM_SOURCE_SLUG)
    svc.attribute_create(id="merges", name="Merges", computation="count", data_type="int", sources=[system])
    svc.attributes_recompute(entity_ids=[entity.pk])
    assert values(entity)["merges"] == [1] and values(entity)["events"] == [3]
