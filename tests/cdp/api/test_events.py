import gzip
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cdp.models import CustomerEntity, CustomerEvent

pytestmark = pytest.mark.django_db


def event(**overrides):
    body = {
        "source_id": "web",
        "type": "purchase",
        "event_time": "2025-03-01T10:00:00Z",
        "payload": {"email": "a@example.com", "amount": 10},
    }
    body.update(overrides)
    return body


def test_bulk_create_stores_events_and_lists_their_ids(analyst_client, web_source):
    response = analyst_client.post(
        "/api/events/", {"events": [event(message_id="m1"), event(message_id="m2")]}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert [row["index"] for row in body["accepted"]] == [0, 1]
    assert body["duplicates"] == [] and body["rejected"] == []
    stored = CustomerEvent.objects.get(id=body["accepted"][0]["id"])
    assert stored.source == web_source and stored.type == "purchase"
    assert stored.payload == {"email": "a@example.com", "amount": 10}
    assert stored.event_time.isoformat() == "2025-03-01T10:00:00+00:00"


def test_a_bare_array_body_is_accepted(analyst_client, web_source):
    response = analyst_client.post("/api/events/", [event()], format="json")
    assert response.status_code == 200
    assert len(response.json()["accepted"]) == 1


def test_repeated_request_stores_nothing_twice(analyst_client, web_source):
    batch = [event(message_id="m1"), event(type="page_view", payload={"url": "/"})]
    first = analyst_client.post("/api/events/", batch, format="json").json()
    second = analyst_client.post("/api/events/", batch, format="json").json()
    assert second["accepted"] == []
    assert second["duplicates"] == first["accepted"]
    assert CustomerEvent.objects.count() == 2


def test_duplicates_within_one_request_are_stored_once(analyst_client, web_source):
    body = analyst_client.post("/api/events/", [event(message_id="x"), event(message_id="x")], format="json").json()
    assert len(body["accepted"]) == 1
    assert body["duplicates"] == [{"index": 1, "id": body["accepted"][0]["id"]}]


def test_bad_events_are_reported_and_good_ones_kept(analyst_client, web_source):
    batch = [
        event(),
        event(type=""),
        event(event_time="yesterday"),
        event(payload=[1, 2]),
        event(source_id="nope"),
        "not an object",
        event(payload={"text": "nul\u0000byte"}),
        event(event_time="2999-01-01T00:00:00Z"),
        event(message_id="x" * 500),
        event(source_id=None),
        event(type="Order\nCompleted"),
        event(message_id="a\u0000b"),
    ]
    response = analyst_client.post("/api/events/", batch, format="json")
    assert response.status_code == 200
    body = response.json()
    assert [row["index"] for row in body["accepted"]] == [0]
    reasons = {row["index"]: row["reason"] for row in body["rejected"]}
    assert reasons == {
        1: "type is required and must be a non-empty string",
        2: "event_time 'yesterday' is not an ISO 8601 date-time",
        3: "payload must be a JSON object",
        4: "unknown data source 'nope'",
        5: "an event must be a JSON object",
        6: "payload contains a NUL character (\\u0000), which cannot be stored",
        7: "event_time 2999-01-01T00:00:00+00:00 is more than a day in the future",
        8: "message_id must be 1 to 120 characters",
        9: "source_id is required",
        10: "type 'Order\\nCompleted' contains a control character (a line break, a tab ...)",
        11: "message_id contains a NUL character",
    }
    assert CustomerEvent.objects.count() == 1


def test_all_rejected_is_400(analyst_client, web_source):
    response = analyst_client.post("/api/events/", [event(type=None)], format="json")
    assert response.status_code == 400
    assert response.json()["message"] == "All 1 events were rejected; see 'rejected'."


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        ("{not json", "application/json", "JSON parse error"),
        ('{"foo": 1}', "application/json", "JSON array of events"),
        ("[]", "application/json", "No events given"),
        ('"text"', "application/json", "JSON array of events"),
        ("a,b", "text/csv", "Unsupported media type"),
    ],
)
def test_malformed_bodies_are_4xx(analyst_client, web_source, body, content_type, fragment):
    response = analyst_client.generic("POST", "/api/events/", body, content_type=content_type)
    assert 400 <= response.status_code < 500
    assert fragment in response.json()["message"]


def test_more_than_the_limit_is_refused(analyst_client, web_source, settings):
    settings.CDP_MAX_EVENTS_PER_REQUEST = 3
    response = analyst_client.post("/api/events/", [event(message_id=str(i)) for i in range(4)], format="json")
    assert response.status_code == 400
    assert "At most 3 events" in response.json()["message"]


def test_unix_times_and_naive_times_are_utc(analyst_client, web_source):
    batch = [
        event(event_time=1740823200),
        event(event_time=1740823200000, type="b"),
        event(event_time="2025-03-01 10:00", type="c"),
    ]
    body = analyst_client.post("/api/events/", batch, format="json").json()
    times = {e.type: e.event_time.isoformat() for e in CustomerEvent.objects.all()}
    assert len(body["accepted"]) == 3
    assert times == {
        "purchase": "2025-03-01T10:00:00+00:00",
        "b": "2025-03-01T10:00:00+00:00",
        "c": "2025-03-01T10:00:00+00:00",
    }


def test_utc_written_as_a_database_export_or_rfc_3339_writes_it_is_utc(analyst_client, web_source):
    # BigQuery's CSV exports write "2025-03-01 10:00:00 UTC"; RFC 3339 allows a lower-case "z".
    batch = [
        event(event_time="2025-03-01 10:00:00 UTC", type="a"),
        event(event_time="2025-03-01T10:00:00.5z", type="b"),
        event(event_time="2025-03-01 10:00:00 CET", type="c"),
    ]
    body = analyst_client.post("/api/events/", batch, format="json").json()
    reason = "event_time '2025-03-01 10:00:00 CET' is not an ISO 8601 date-time"
    assert body["rejected"] == [{"index": 2, "reason": reason}]
    times = {e.type: e.event_time.isoformat() for e in CustomerEvent.objects.all()}
    assert times == {"a": "2025-03-01T10:00:00+00:00", "b": "2025-03-01T10:00:00.500000+00:00"}


def test_source_can_be_given_by_id(analyst_client, web_source):
    body = analyst_client.post("/api/events/", [event(source_id=web_source.id)], format="json").json()
    assert len(body["accepted"]) == 1


def test_event_list_is_newest_first_paginated_and_filterable(analyst_client, web_source):
    batch = [
        event(type="page_view", event_time=f"2025-03-{day:02d}T00:00:00Z", payload={"d": day}) for day in range(1, 26)
    ]
    analyst_client.post("/api/events/", batch, format="json")
    page = analyst_client.get("/api/events/").json()
    assert page["count"] is None and page["limit"] == 20 and len(page["results"]) == 20
    assert page["results"][0]["event_time"].startswith("2025-03-25")
    assert page["next"] is not None
    last = analyst_client.get("/api/events/?limit=20&offset=20").json()
    assert len(last["results"]) == 5 and last["next"] is None
    window = analyst_client.get(
        "/api/events/?event_time_from=2025-03-10T00:00:00Z&event_time_to=2025-03-12T00:00:00Z&source=web&type=page_view"
    ).json()
    assert [row["payload"]["d"] for row in window["results"]] == [11, 10]


def test_message_id_is_what_the_client_sent_and_finds_the_event(analyst_client, web_source):
    batch = [event(message_id="order-1"), event(message_id="h:looks-generated"), event(type="no-id")]
    analyst_client.post("/api/events/", batch, format="json")

    rows = analyst_client.get("/api/events/?limit=10").json()["results"]
    # Not the internal keys ("h:<content hash>" when none was sent, "m:h:…" escaped).
    assert sorted((row["type"], row["message_id"] or "") for row in rows) == [
        ("no-id", ""),
        ("purchase", "h:looks-generated"),
        ("purchase", "order-1"),
    ]
    for message_id in ("h:looks-generated", "order-1"):
        found = analyst_client.get("/api/events/", {"message_id": message_id}).json()["results"]
        assert [row["message_id"] for row in found] == [message_id]


def test_message_ids_that_look_escaped_are_distinct_events(analyst_client, web_source):
    # "h:x" is stored escaped as "m:h:x": a client's own "m:h:x" must not be taken for a retry of it.
    message_ids = ["h:x", "m:h:x", "m:m:h:x", "m:x", "x"]
    answer = analyst_client.post("/api/events/", [event(message_id=m) for m in message_ids], format="json").json()
    assert [row["index"] for row in answer["accepted"]] == [0, 1, 2, 3, 4]

    rows = analyst_client.get("/api/events/?limit=10").json()["results"]
    assert sorted(row["message_id"] for row in rows) == sorted(message_ids)
    for message_id in message_ids:
        found = analyst_client.get("/api/events/", {"message_id": message_id}).json()["results"]
        assert [row["message_id"] for row in found] == [message_id]
    # Sent again: each one is a duplicate of itself.
    again = analyst_client.post("/api/events/", [event(message_id=m) for m in message_ids], format="json").json()
    assert again["accepted"] == []
    assert again["duplicates"] == answer["accepted"]


def test_event_detail_embeds_source_with_load_full_structure(analyst_client, web_source):
    event_id = analyst_client.post("/api/events/", [event()], format="json").json()["accepted"][0]["id"]
    plain = analyst_client.get(f"/api/events/{event_id}/").json()
    full = analyst_client.get(f"/api/events/{event_id}/?load_full_structure=1").json()
    assert plain["source"] == web_source.id
    assert full["source"] == {"id": web_source.id, "slug": "web", "name": "Website", "type": "web"}


@pytest.mark.parametrize(
    "query",
    ["limit=abc", "offset=-1", "limit=100000", "event_time_from=notadate", "stitched=maybe", "load_full_structure=7"],
)
def test_bad_query_parameters_are_400(analyst_client, web_source, query):
    response = analyst_client.get(f"/api/events/?{query}")
    assert response.status_code == 400, response.content
    assert response.json()["status"] == "error"


def test_event_list_does_not_count_the_table(analyst_client, web_source):
    analyst_client.post("/api/events/", [event()], format="json")
    with CaptureQueriesContext(connection) as queries:
        analyst_client.get("/api/events/?load_full_structure=1")
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)
    assert len(queries.captured_queries) <= 4


def test_customer_entities_list_and_detail(analyst_client):
    entity = CustomerEntity.objects.create()
    assert analyst_client.get("/api/customer_entities/").json()["results"][0]["id"] == entity.id
    assert analyst_client.get(f"/api/customer_entities/{entity.id}/").json()["id"] == entity.id
    assert analyst_client.get(f"/api/customer_entities/{'0' * 32}/").status_code == 404
    assert analyst_client.get("/api/customer_entities/not-an-id/").status_code == 404


def test_customers_can_be_synced_page_after_page_without_missing_one_changed_meanwhile(analyst_client):
    start = timezone.now() - timedelta(hours=1)
    entities = [CustomerEntity.objects.create() for _ in range(5)]
    for n, entity in enumerate(entities):  # two share a time, as a recompute batch leaves them: the id orders them
        CustomerEntity.objects.filter(pk=entity.pk).update(modified=start + timedelta(minutes=min(n, 3)))
    expected = entities[:3] + sorted(entities[3:], key=lambda e: e.pk)

    def page(after: str | None) -> list[dict]:
        query = {"ordering": "modified", "limit": 2, **({"after": after} if after else {})}
        response = analyst_client.get("/api/customer_entities/", query)
        assert response.status_code == 200, response.json()
        return response.json()["results"]

    first = page(None)
    # Meanwhile the first customer changes: it moves to the end and is read again; no other is skipped.
    CustomerEntity.objects.filter(pk=entities[0].pk).update(modified=timezone.now())
    seen, rows = [row["id"] for row in first], first
    while rows:
        rows = page(f"{rows[-1]['modified']},{rows[-1]['id']}")
        seen += [row["id"] for row in rows]
    assert seen == [e.pk for e in expected] + [entities[0].pk]


def test_a_sync_that_follows_next_reads_on_after_the_last_customer_not_at_an_offset(analyst_client):
    """`next` was `?offset=2`, so a client that follows it (what generic clients do) paged by offsets, and a
    customer changed meanwhile made it miss another, which the README warns against. With ordering=modified it is
    the `after` of the page's last customer."""
    start = timezone.now() - timedelta(hours=1)
    entities = [CustomerEntity.objects.create() for _ in range(5)]
    for n, entity in enumerate(entities):
        CustomerEntity.objects.filter(pk=entity.pk).update(modified=start + timedelta(minutes=n))

    body = analyst_client.get("/api/customer_entities/", {"ordering": "modified", "limit": 2}).json()
    CustomerEntity.objects.filter(pk=entities[0].pk).update(modified=timezone.now())  # moves to the end
    seen = [row["id"] for row in body["results"]]
    while body["next"]:
        assert "offset=" not in body["next"]
        body = analyst_client.get(body["next"]).json()
        seen += [row["id"] for row in body["results"]]

    assert seen == [e.pk for e in entities] + [entities[0].pk]
    newest_first = analyst_client.get("/api/customer_entities/", {"limit": 2}).json()["next"]
    assert "offset=2" in newest_first and "after=" not in newest_first  # other orders page by offset as before


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ({"ordering": "created"}, "ordering: Select a valid choice"),
        ({"after": f"2026-01-01T00:00:00Z,{'0' * 32}"}, "after: after needs ordering=modified"),
        ({"ordering": "modified", "after": "yesterday"}, "after: Give '<modified>,<id>'"),
        ({"ordering": "modified", "after": "2026-01-01T00:00:00Z,not an id!"}, "after: Give '<modified>,<id>'"),
    ],
)
def test_bad_sync_parameters_are_a_400_naming_them(analyst_client, query, fragment):
    response = analyst_client.get("/api/customer_entities/", query)
    assert response.status_code == 400
    assert response.json()["message"].startswith(fragment)


def test_unknown_api_path_is_json_404(analyst_client):
    response = analyst_client.get("/api/nothing-here/")
    assert response.status_code == 404
    assert response.json()["status"] == "error"


def test_a_gzip_body_is_read_like_the_segment_endpoints_do(analyst_client, web_source):
    body = gzip.compress(b'[{"source_id": "web", "type": "purchase", "event_time": "2025-03-01T10:00:00Z"}]')
    response = analyst_client.generic(
        "POST", "/api/events/", body, content_type="application/json", HTTP_CONTENT_ENCODING="gzip"
    )
    assert response.status_code == 200, response.json()
    assert len(response.json()["accepted"]) == 1


@pytest.mark.parametrize(
    ("body", "encoding", "status", "fragment"),
    [
        (b"[]", "br", 415, "Content-Encoding 'br' is not supported"),
        (b"[not gzip]", "gzip", 400, "not valid gzip"),
        (gzip.compress(b"[]")[:-6], "gzip", 400, "truncated"),
    ],
)
def test_a_body_in_another_encoding_is_a_4xx_naming_it(analyst_client, web_source, body, encoding, status, fragment):
    response = analyst_client.generic(
        "POST", "/api/events/", body, content_type="application/json", HTTP_CONTENT_ENCODING=encoding
    )
    assert response.status_code == status
    assert fragment in response.json()["message"]


def test_a_body_over_the_size_limit_is_a_413_even_compressed(analyst_client, web_source, settings):
    # DRF reads its parsers' stream past Django's DATA_UPLOAD_MAX_MEMORY_SIZE: the limit is the parser's to keep.
    settings.CDP_MAX_REQUEST_BYTES = 4096
    events = [event(message_id=str(i), payload={"note": "x" * 400}) for i in range(20)]
    response = analyst_client.post("/api/events/", events, format="json")
    assert response.status_code == 413
    assert response.json() == {"status": "error", "message": response.json()["message"]}
    assert "4 KB limit" in response.json()["message"]

    bomb = gzip.compress(b"[" + b" " * 100_000 + b"]")  # small compressed, far over the limit expanded
    response = analyst_client.generic(
        "POST", "/api/events/", bomb, content_type="application/json", HTTP_CONTENT_ENCODING="gzip"
    )
    assert response.status_code == 413
    assert "decompressed" in response.json()["message"]
    assert not CustomerEvent.objects.exists()
