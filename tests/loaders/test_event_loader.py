"""The CDP event loader (inbound): `manage.py load_events` (cdp.services.event_files) and the bulk events API
(cdp.services.events.events_create_bulk) validate every event with the one function `event_record_build`, so
they accept, reject (with the same reason) and deduplicate alike. These tests hold both paths to that."""

import orjson
import pytest

from cdp.models import CustomerEvent
from cdp.services.data_sources import data_source_create
from cdp.services.event_files import event_file_load
from cdp.services.events import events_create_bulk

BAD_EVENTS = [
    ({"type": "", "event_time": "2024-05-01T10:00:00Z"}, "type is required"),
    ({"type": "x" * 200, "event_time": "2024-05-01T10:00:00Z"}, "longer than"),
    ({"type": "buy", "event_time": "yesterday"}, "ISO 8601"),
    ({"type": "buy", "event_time": "2999-01-01T00:00:00Z"}, "future"),
    ({"type": "buy", "event_time": "2024-05-01T10:00:00Z", "payload": [1]}, "payload must be a JSON object"),
    ({"type": "buy", "event_time": "2024-05-01T10:00:00Z", "payload": {"x": "nul\u0000"}}, "NUL"),
    ({"type": "buy", "event_time": "2024-05-01T10:00:00Z", "message_id": "m" * 300}, "message_id must be"),
]


@pytest.fixture
def source(transactional_db):
    source, _ = data_source_create(slug="inbound", name="Inbound", type="import", with_write_key=False)
    return source


@pytest.mark.parametrize(("raw", "reason"), BAD_EVENTS)
def test_file_and_api_reject_the_same_event_with_the_same_reason(source, tmp_path, raw, reason):
    api = events_create_bulk(events=[{**raw, "source_id": source.slug}])
    path = tmp_path / "events.jsonl"
    path.write_bytes(orjson.dumps(raw) + b"\n")
    rejected = []
    event_file_load(path=path, source=source, on_rejected=lambda line, why: rejected.append(why))
    assert len(api.rejected) == 1 and len(rejected) == 1
    assert reason in api.rejected[0]["reason"]
    assert api.rejected[0]["reason"] == rejected[0]
    assert not CustomerEvent.objects.exists()


def test_an_event_is_stored_once_whichever_path_brings_it(source, tmp_path):
    good = {"type": "buy", "event_time": "2024-05-01T10:00:00Z", "payload": {"email": "a@b.co"}}
    path = tmp_path / "events.jsonl"
    path.write_bytes(orjson.dumps(good) + b"\n" + orjson.dumps({**good, "message_id": "order-1"}) + b"\n")
    report = event_file_load(path=path, source=source)
    assert report.inserted == 2
    again = events_create_bulk(
        events=[{**good, "source_id": source.slug}, {**good, "message_id": "order-1", "source_id": source.slug}]
    )
    assert len(again.duplicates) == 2 and not again.accepted
    assert CustomerEvent.objects.count() == 2
