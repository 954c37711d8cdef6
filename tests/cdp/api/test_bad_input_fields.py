"""Bad values inside otherwise valid payloads (ingestion, bulk events, global settings, segment conditions, email
feedback webhooks, export destinations) are 4xx naming the problem, never a 500; a batch keeps its good records."""

import json

import pytest

from tests.segment_api.conftest import basic_auth
from tests.segments.conftest import example_attributes_create

pytestmark = pytest.mark.django_db

TRACK = {"type": "track", "event": "E", "userId": "u1", "messageId": "m1"}


def test_a_segment_message_with_a_superscript_timestamp_is_a_400(client, web_source):
    r = client.post(
        "/v1/track",
        json.dumps({**TRACK, "timestamp": "²"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=basic_auth(web_source.plain_write_key),
    )
    assert r.status_code == 400


def test_a_segment_batch_keeps_its_good_messages_when_one_timestamp_is_a_superscript(client, web_source):
    body = {"batch": [{**TRACK, "messageId": "ok"}, {**TRACK, "messageId": "bad", "timestamp": "1²"}]}
    r = client.post(
        "/v1/batch",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=basic_auth(web_source.plain_write_key),
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1 and r.json()["rejected"][0]["index"] == 1


def _bulk(admin_client, web_source, bad):
    good = {"source_id": web_source.slug, "type": "t", "event_time": "2024-01-01T00:00:00Z", "message_id": "g"}
    return admin_client.post("/api/events/", json.dumps({"events": [good, bad]}), content_type="application/json")


def test_bulk_events_reject_a_superscript_event_time_and_keep_the_rest(admin_client, web_source):
    r = _bulk(admin_client, web_source, {"source_id": web_source.slug, "type": "t", "event_time": "²"})
    assert r.status_code == 200 and r.json()["rejected"][0]["index"] == 1


def test_bulk_events_reject_a_huge_integer_event_time_and_keep_the_rest(admin_client, web_source):
    r = _bulk(admin_client, web_source, {"source_id": web_source.slug, "type": "t", "event_time": 10**400})
    assert r.status_code == 200 and r.json()["rejected"][0]["index"] == 1


def test_bulk_events_reject_a_superscript_source_id_and_keep_the_rest(admin_client, web_source):
    r = _bulk(admin_client, web_source, {"source_id": "²", "type": "t", "event_time": "2024-01-01"})
    assert r.status_code == 200 and r.json()["rejected"][0]["index"] == 1


@pytest.mark.parametrize(
    "key,raw",
    [
        ("audience_api_returned_attributes", '{"value": ["a\\u0000"]}'),
        ("audience_api_returned_attributes", '{"value": ["\\ud800"]}'),
        ("public_cors_origins", '{"value": ["https://a\\u0000"]}'),
    ],
)
def test_a_global_setting_list_item_with_a_nul_or_lone_surrogate_is_a_400(admin_client, key, raw):
    r = admin_client.patch(f"/api/global_settings/{key}", raw, content_type="application/json")
    assert r.status_code == 400


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_a_segment_datetime_condition_out_of_range_in_utc_is_a_400(admin_client, value):
    example_attributes_create()
    tree = {"attribute": "last_seen", "operator": "gte", "value": value}
    r = admin_client.post(
        "/api/segments/preview_count/", json.dumps({"conditions": tree}), content_type="application/json"
    )
    assert r.status_code == 400


@pytest.mark.parametrize("url", ["/api/segments/preview_count/", "/api/segments/"])
@pytest.mark.parametrize(
    "cond",
    [
        '{"attribute":"gender","operator":"equals","value":"\\ud800"}',
        '{"attribute":"gender","operator":"contains","value":"a\\udc00"}',
    ],
)
def test_a_segment_string_condition_with_a_lone_surrogate_is_a_400(admin_client, url, cond):
    example_attributes_create()
    r = admin_client.post(url, '{"name":"x","conditions":' + cond + "}", content_type="application/json")
    assert r.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {"name": "d", "kind": "csv", "config": {"attributes": ["a\x00"]}},
        {"name": "d", "kind": "webhook", "config": {"url": "https://a.com/\x00", "secret": "s"}},
        {"name": "d", "kind": "customerio", "config": {"site_id": "x\x00", "api_key": "k"}},
        '{"name":"d","kind":"webhook","config":{"url":"https://a.com/","secret":"\\ud800"}}',
    ],
)
def test_an_export_destination_setting_with_a_nul_or_lone_surrogate_is_a_400(admin_client, body):
    example_attributes_create()
    r = admin_client.post(
        "/api/segment_export_destinations/",
        body if isinstance(body, str) else json.dumps(body),
        content_type="application/json",
    )
    assert r.status_code == 400
