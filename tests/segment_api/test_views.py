"""The /v1/* Segment HTTP Tracking API endpoints, through Django's test client."""

import gzip
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from cdp.models import CustomerEvent
from cdp.services.data_sources import data_source_create, data_source_rotate_write_key
from tests.segment_api.conftest import basic_auth

pytestmark = pytest.mark.django_db


def post_json(client: Client, path: str, body: object, **extra) -> object:
    return client.post(path, data=json.dumps(body), content_type="application/json", **extra)


def track(n: int = 1, **fields) -> dict:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": f"user-{n}",
        "messageId": f"msg-{n}",
        "timestamp": "2024-05-01T10:00:00.000Z",
        "properties": {"revenue": 10 * n},
        **fields,
    }


# --- single-message endpoints ---------------------------------------------------------------------------------


def test_track_stores_the_event_under_its_event_name(segment_client, auth, web_source):
    body = {
        "userId": "user-1",
        "anonymousId": "anon-1",
        "event": "Order Completed",
        "messageId": "m-1",
        "timestamp": "2024-05-01T10:00:00.123+02:00",
        "properties": {"revenue": 42},
        "context": {"traits": {"email": "a@example.com"}, "ip": "203.0.113.9"},
    }

    response = post_json(segment_client, "/v1/track", body, **auth)

    assert response.status_code == 200, response.content
    assert response.json() == {"success": True}
    event = CustomerEvent.objects.get()
    assert event.source_id == web_source.pk
    assert event.type == "Order Completed"
    assert event.event_time == datetime(2024, 5, 1, 8, 0, 0, 123000, tzinfo=UTC)
    assert event.idempotency_key == "m-1"
    assert event.payload["type"] == "track"
    assert event.payload["userId"] == "user-1"
    assert event.payload["context"]["traits"]["email"] == "a@example.com"
    assert event.payload["properties"] == {"revenue": 42}


def test_a_batch_from_a_device_two_days_ahead_is_stored_at_the_corrected_times(segment_client, auth):
    # Segment's clock-skew correction, receivedAt - (sentAt - timestamp), with the batch-level sentAt.
    ahead = datetime.now(UTC) + timedelta(days=2)
    body = {"batch": [track(1, timestamp=(ahead - timedelta(minutes=3)).isoformat())], "sentAt": ahead.isoformat()}

    response = post_json(segment_client, "/v1/batch", body, **auth)

    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 1
    stored = CustomerEvent.objects.get().event_time
    expected = datetime.now(UTC) - timedelta(minutes=3)
    assert abs(stored - expected) < timedelta(seconds=5)


@pytest.mark.parametrize(
    ("path", "stored_type", "body"),
    [
        ("/v1/identify", "identify", {"userId": "u1", "traits": {"email": "a@example.com"}}),
        ("/v1/page", "page", {"anonymousId": "a1", "name": "Home", "properties": {"url": "https://x.test/"}}),
        ("/v1/screen", "screen", {"userId": "u1", "name": "Settings"}),
        ("/v1/alias", "alias", {"userId": "u1", "previousId": "a1"}),
        ("/v1/group", "group", {"userId": "u1", "groupId": "g1", "traits": {"name": "ACME"}}),
        ("/v1/t", "Signed Up", {"userId": "u1", "event": "Signed Up"}),
        ("/v1/p", "page", {"anonymousId": "a1"}),
        ("/v1/i", "identify", {"anonymousId": "a1", "traits": {}}),
    ],
)
def test_each_endpoint_stores_its_message_type(segment_client, auth, path, stored_type, body):
    response = post_json(segment_client, path, {**body, "messageId": "m-1"}, **auth)

    assert response.status_code == 200, response.content
    event = CustomerEvent.objects.get()
    assert event.type == stored_type
    assert event.payload == {**body, "messageId": "m-1", "type": event.payload["type"]}


def test_the_endpoint_decides_the_message_type(segment_client, auth):
    response = post_json(segment_client, "/v1/identify", {"type": "track", "userId": "u1", "messageId": "m"}, **auth)

    assert response.status_code == 200
    event = CustomerEvent.objects.get()
    assert (event.type, event.payload["type"]) == ("identify", "identify")


def test_write_key_in_a_text_plain_body_is_accepted_and_not_stored(segment_client, web_source):
    # analytics.js sends text/plain (no CORS preflight) and puts the write key in the body.
    body = {"writeKey": web_source.plain_write_key, "anonymousId": "a1", "event": "Viewed", "messageId": "m"}

    response = segment_client.post("/v1/track", data=json.dumps(body), content_type="text/plain")

    assert response.status_code == 200, response.content
    assert "writeKey" not in CustomerEvent.objects.get().payload


def test_missing_timestamp_falls_back_to_original_timestamp_then_receive_time(segment_client, auth):
    post_json(segment_client, "/v1/track", track(1, timestamp=None, originalTimestamp="2023-01-02T03:04:05Z"), **auth)
    before = datetime.now(UTC)
    post_json(segment_client, "/v1/track", {k: v for k, v in track(2).items() if k != "timestamp"}, **auth)

    times = dict(CustomerEvent.objects.values_list("idempotency_key", "event_time"))
    assert times["msg-1"] == datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert before - timedelta(seconds=1) <= times["msg-2"] <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        ("/v1/track", {"userId": "u1", "messageId": "m"}, "event name"),
        ("/v1/track", {"event": "X", "messageId": "m"}, "userId or an anonymousId"),
        ("/v1/identify", {"userId": {"id": 1}}, "userId must be a string or a number"),
        ("/v1/alias", {"userId": "u1"}, "previousId"),
        ("/v1/group", {"userId": "u1"}, "groupId"),
        ("/v1/page", {"userId": "u1", "properties": [1, 2]}, "properties must be a JSON object"),
        ("/v1/track", {"userId": "u1", "event": "X", "timestamp": "yesterday"}, "timestamp 'yesterday'"),
        ("/v1/track", {"userId": "u1", "event": "X", "timestamp": "2999-01-01T00:00:00Z"}, "timestamp 2999"),
        ("/v1/track", {"userId": "u1", "event": "X", "messageId": {"a": 1}}, "messageId must be a string"),
        ("/v1/track", {"userId": "u1", "event": "X" * 200}, "event is longer than 128"),
    ],
)
def test_a_bad_message_is_a_400_naming_the_problem(segment_client, auth, path, body, reason):
    response = post_json(segment_client, path, body, **auth)

    assert response.status_code == 400
    assert reason in response.json()["message"]
    assert response.json()["status"] == "error"
    assert not CustomerEvent.objects.exists()


def test_repeated_single_message_is_stored_once(segment_client, auth):
    for _ in range(3):
        assert post_json(segment_client, "/v1/track", track(1), **auth).status_code == 200

    assert CustomerEvent.objects.count() == 1


# --- auth ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "write key missing"),
        ({"HTTP_AUTHORIZATION": basic_auth("wk_not-a-real-key")}, "invalid write key"),
        ({"HTTP_AUTHORIZATION": "Bearer abc"}, "basic auth"),
        ({"HTTP_AUTHORIZATION": "Basic ***"}, "not valid basic auth"),
    ],
)
def test_requests_without_a_valid_write_key_get_401(segment_client, web_source, headers, message):
    response = post_json(segment_client, "/v1/batch", {"batch": [track()]}, **headers)

    assert response.status_code == 401
    assert message in response.json()["message"]
    assert response.json()["code"] == "unauthorized"
    assert not CustomerEvent.objects.exists()


def test_wrong_write_key_in_the_body_gets_401(segment_client, web_source):
    response = post_json(segment_client, "/v1/batch", {"writeKey": "nope", "batch": [track()]})

    assert response.status_code == 401


def test_a_rotated_write_key_stops_working_at_once(segment_client, web_source):
    old_key = web_source.plain_write_key
    new_key = data_source_rotate_write_key(source=web_source)

    old = post_json(segment_client, "/v1/track", track(1), HTTP_AUTHORIZATION=basic_auth(old_key))
    new = post_json(segment_client, "/v1/track", track(2), HTTP_AUTHORIZATION=basic_auth(new_key))

    assert (old.status_code, new.status_code) == (401, 200)


def test_events_are_stored_under_the_source_of_the_write_key(segment_client, web_source):
    crm, crm_key = data_source_create(slug="crm", name="CRM", type="crm")

    post_json(segment_client, "/v1/track", track(1), HTTP_AUTHORIZATION=basic_auth(crm_key))
    post_json(segment_client, "/v1/track", track(1), HTTP_AUTHORIZATION=basic_auth(web_source.plain_write_key))

    # Same messageId from two sources: two events, idempotency is per source.
    assert sorted(CustomerEvent.objects.values_list("source__slug", flat=True)) == ["crm", "web"]


# --- bodies ----------------------------------------------------------------------------------------------------


def test_gzip_body_is_accepted(segment_client, auth):
    data = gzip.compress(json.dumps({"batch": [track(1), track(2)]}).encode())

    response = segment_client.post(
        "/v1/batch", data=data, content_type="application/json", HTTP_CONTENT_ENCODING="gzip", **auth
    )

    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 2


def test_corrupt_gzip_is_a_400(segment_client, auth):
    response = segment_client.post(
        "/v1/batch", data=b"\x1f\x8bnot gzip", content_type="application/json", HTTP_CONTENT_ENCODING="gzip", **auth
    )

    assert response.status_code == 400
    assert "not valid gzip" in response.json()["message"]


def test_gzip_that_inflates_past_the_limit_is_a_413(segment_client, auth):
    # 10 MB of spaces compress to ~10 KB: the size that counts is the decompressed one.
    data = gzip.compress(b'{"batch": [' + b" " * 10_000_000 + b"]}")

    response = segment_client.post(
        "/v1/batch", data=data, content_type="application/json", HTTP_CONTENT_ENCODING="gzip", **auth
    )

    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("data", "content_type", "headers", "message"),
    [
        (b'{"batch": [', "application/json", {}, "body is not valid JSON"),
        (b"[1, 2]", "application/json", {}, "body must be a JSON object"),
        (b"", "application/json", {}, "body is empty"),
        (b"batch=1", "application/x-www-form-urlencoded", {}, "Content-Type"),
        (b"{}", "application/json", {"HTTP_CONTENT_ENCODING": "br"}, "Content-Encoding 'br'"),
        (b'{"batch": {}}', "application/json", {}, "batch is required and must be a list"),
        (b'{"batch": []}', "application/json", {}, "batch is empty"),
        (b'{"batch": [1] ', "text/plain", {}, "line 1 column"),
    ],
)
def test_malformed_bodies_are_a_400_naming_the_problem(segment_client, auth, data, content_type, headers, message):
    response = segment_client.post("/v1/batch", data=data, content_type=content_type, **auth, **headers)

    assert response.status_code == 400
    assert message in response.json()["message"]


def test_batch_over_500_kb_is_a_413(segment_client, auth):
    messages = [track(n, properties={"blob": "x" * 20_000}) for n in range(30)]  # ~600 KB

    response = post_json(segment_client, "/v1/batch", {"batch": messages}, **auth)

    assert response.status_code == 413
    assert not CustomerEvent.objects.exists()


def test_single_message_over_32_kb_is_a_413(segment_client, auth):
    response = post_json(segment_client, "/v1/track", track(1, properties={"blob": "x" * 33_000}), **auth)

    assert response.status_code == 413


def test_message_over_32_kb_in_a_batch_is_rejected_alone(segment_client, auth):
    batch = [track(1), track(2, properties={"blob": "x" * 33_000}), track(3)]

    response = post_json(segment_client, "/v1/batch", {"batch": batch}, **auth)

    assert response.status_code == 200
    assert response.json()["accepted"] == 2
    assert response.json()["rejected"] == [{"index": 1, "reason": response.json()["rejected"][0]["reason"]}]
    assert "32 KB" in response.json()["rejected"][0]["reason"]


# --- batches ---------------------------------------------------------------------------------------------------


def test_batch_keeps_the_good_messages_and_lists_the_bad_ones(segment_client, auth):
    batch = [track(0), {"type": "track", "userId": "u"}, "not a message", track(3), {"type": "explode", "userId": "u"}]

    response = post_json(segment_client, "/v1/batch", {"batch": batch}, **auth)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["success"] is True
    assert (body["accepted"], body["duplicates"]) == (2, 0)
    assert [r["index"] for r in body["rejected"]] == [1, 2, 4]
    assert "event name" in body["rejected"][0]["reason"]
    assert "JSON object" in body["rejected"][1]["reason"]
    assert "type must be one of" in body["rejected"][2]["reason"]
    assert sorted(CustomerEvent.objects.values_list("idempotency_key", flat=True)) == ["msg-0", "msg-3"]


def test_batch_where_every_message_is_bad_is_a_400_with_the_list(segment_client, auth):
    response = post_json(segment_client, "/v1/batch", {"batch": [{"type": "track"}, {"type": "page"}]}, **auth)

    assert response.status_code == 400
    body = response.json()
    assert [r["index"] for r in body["rejected"]] == [0, 1]
    assert "message 0" in body["message"]
    assert body["accepted"] == 0


def test_a_replayed_batch_stores_nothing_twice(segment_client, auth):
    batch = {"batch": [track(n) for n in range(20)] + [track(3)]}  # msg-3 twice in the batch too

    first = post_json(segment_client, "/v1/batch", batch, **auth).json()
    second = post_json(segment_client, "/v1/batch", batch, **auth).json()

    assert (first["accepted"], first["duplicates"]) == (20, 1)
    assert (second["accepted"], second["duplicates"]) == (0, 21)
    assert CustomerEvent.objects.count() == 20


def test_messages_without_message_id_are_deduplicated_by_content(segment_client, auth):
    message = {k: v for k, v in track(1).items() if k != "messageId"}

    post_json(segment_client, "/v1/batch", {"batch": [message]}, **auth)
    replay = post_json(segment_client, "/v1/batch", {"batch": [message]}, **auth)

    assert replay.json()["duplicates"] == 1
    assert CustomerEvent.objects.count() == 1


def test_batch_context_and_integrations_are_merged_into_each_message(segment_client, auth):
    body = {
        "batch": [track(1, context={"ip": "203.0.113.1"}), track(2)],
        "context": {"library": {"name": "curl"}, "ip": "198.51.100.1"},
        "integrations": {"All": False},
    }

    post_json(segment_client, "/v1/batch", body, **auth)

    contexts = dict(CustomerEvent.objects.values_list("idempotency_key", "payload__context"))
    assert contexts["msg-1"] == {"library": {"name": "curl"}, "ip": "203.0.113.1"}
    assert contexts["msg-2"] == {"library": {"name": "curl"}, "ip": "198.51.100.1"}
    assert CustomerEvent.objects.filter(payload__integrations={"All": False}).count() == 2


def test_batch_mixes_message_types(segment_client, auth):
    batch = [
        track(1),
        {"type": "identify", "userId": "u1", "traits": {"email": "a@example.com"}, "messageId": "i1"},
        {"type": "page", "anonymousId": "a1", "name": "Home", "messageId": "p1"},
        {"type": "screen", "userId": "u1", "name": "Home", "messageId": "s1"},
        {"type": "alias", "userId": "u1", "previousId": "a1", "messageId": "a1"},
        {"type": "group", "userId": "u1", "groupId": "g1", "messageId": "g1"},
    ]

    response = post_json(segment_client, "/v1/batch", {"batch": batch}, **auth)

    assert response.json()["accepted"] == 6
    assert sorted(CustomerEvent.objects.values_list("type", flat=True)) == sorted(
        ["Order Completed", "identify", "page", "screen", "alias", "group"]
    )


def test_a_batch_of_thousands_of_tiny_messages_is_stored_in_one_request(segment_client, auth):
    batch = [{"type": "identify", "userId": f"u{n}", "messageId": f"m{n}"} for n in range(6000)]

    response = post_json(segment_client, "/v1/batch", {"batch": batch}, **auth)

    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 6000
    assert CustomerEvent.objects.count() == 6000


def test_batch_costs_a_fixed_number_of_queries(segment_client, auth, django_assert_max_num_queries):
    batch = {"batch": [track(n) for n in range(100)]}
    post_json(segment_client, "/v1/batch", {"batch": [track(999)]}, **auth)  # warm the rate-limit setting

    with django_assert_max_num_queries(6):
        response = post_json(segment_client, "/v1/batch", batch, **auth)

    assert response.json()["accepted"] == 100


# --- HTTP details ----------------------------------------------------------------------------------------------


def test_cors_preflight_is_answered_for_any_origin(segment_client):
    response = segment_client.options(
        "/v1/track", HTTP_ORIGIN="https://shop.example.com", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST"
    )

    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert "Authorization" in response["Access-Control-Allow-Headers"]


def test_responses_carry_cors_headers_errors_too(segment_client, auth):
    ok = post_json(segment_client, "/v1/track", track(), HTTP_ORIGIN="https://shop.example.com", **auth)
    unauthorized = post_json(segment_client, "/v1/track", track(), HTTP_ORIGIN="https://shop.example.com")

    assert ok["Access-Control-Allow-Origin"] == "*"
    assert unauthorized["Access-Control-Allow-Origin"] == "*"


def test_get_is_a_405(segment_client):
    response = segment_client.get("/v1/batch")

    assert response.status_code == 405
    assert response["Allow"] == "POST, OPTIONS"
    assert "use POST" in response.json()["message"]


def test_an_alias_joins_the_anonymous_visitor_to_the_user(segment_client, auth, web_source):
    from stitching.services import engine

    post_json(segment_client, "/v1/page", {"anonymousId": "anon-7", "name": "Home", "messageId": "p-1"}, **auth)
    post_json(segment_client, "/v1/identify", {"userId": "u-7", "traits": {"plan": "pro"}, "messageId": "i-1"}, **auth)
    engine.stitch_pending()
    entities = dict(CustomerEvent.objects.values_list("idempotency_key", "entity_link__customer_entity_id"))
    assert entities["p-1"] != entities["i-1"]

    response = post_json(
        segment_client, "/v1/alias", {"userId": "u-7", "previousId": "anon-7", "messageId": "a-1"}, **auth
    )

    assert response.status_code == 200
    engine.stitch_pending()
    entities = dict(CustomerEvent.objects.values_list("idempotency_key", "entity_link__customer_entity_id"))
    assert entities["p-1"] == entities["i-1"] == entities["a-1"]
