"""cdp.segment_api.services: Segment messages mapped to customer event records."""

from datetime import UTC, datetime

import orjson
import pytest

from cdp.segment_api.services import (
    BatchInvalid,
    MessageTooLarge,
    segment_batch_messages,
    segment_message_record,
)
from cdp.services.events import EventRejected

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def record(message: dict, message_type: str | None = None):
    return segment_message_record(source_id=7, message=message, message_type=message_type, received_at=NOW)


def test_payload_is_the_whole_message_without_the_write_key():
    message = {
        "type": "identify",
        "userId": 42,
        "traits": {"email": "a@example.com"},
        "context": {"traits": {"phone": "+420777000000"}},
        "writeKey": "wk_secret",
        "messageId": "m-1",
    }

    built = record(message)

    assert orjson.loads(built.payload_json) == {k: v for k, v in message.items() if k != "writeKey"}
    assert (built.source_id, built.type, built.idempotency_key) == (7, "identify", "m-1")


def test_event_time_is_timestamp_then_original_timestamp_then_receive_time():
    assert record({"type": "page", "userId": "u", "timestamp": 1717243200}).event_time == NOW
    assert record({"type": "page", "userId": "u", "originalTimestamp": "2024-06-01T12:00:00Z"}).event_time == NOW
    assert record({"type": "page", "userId": "u"}).event_time == NOW


def test_a_bad_timestamp_is_not_replaced_by_the_fallback():
    with pytest.raises(EventRejected, match="originalTimestamp"):
        record({"type": "page", "userId": "u", "originalTimestamp": "soon"})


def test_numeric_message_ids_are_kept_as_text():
    assert record({"type": "page", "userId": "u", "messageId": 123}).idempotency_key == "123"


def test_oversized_message_raises_message_too_large():
    with pytest.raises(MessageTooLarge, match="32 KB"):
        record({"type": "track", "event": "E", "userId": "u", "properties": {"x": "y" * 33_000}})


def test_empty_ids_do_not_count_as_identity():
    with pytest.raises(EventRejected, match="userId or an anonymousId"):
        record({"type": "identify", "userId": "  ", "anonymousId": None})


def test_batch_level_context_fills_in_but_does_not_override():
    body = {
        "batch": [{"type": "page", "context": {"ip": "1.1.1.1"}}, {"type": "page"}, "junk"],
        "context": {"ip": "2.2.2.2", "locale": "cs-CZ"},
    }

    messages = segment_batch_messages(body)

    assert messages[0]["context"] == {"ip": "1.1.1.1", "locale": "cs-CZ"}
    assert messages[1]["context"] == {"ip": "2.2.2.2", "locale": "cs-CZ"}
    assert messages[2] == "junk"  # rejected later, with its index
    assert body["batch"][1] == {"type": "page"}  # the caller's body is not modified


@pytest.mark.parametrize("body", [{}, {"batch": None}, {"batch": "x"}, {"batch": []}])
def test_unusable_batch_envelopes_are_refused(body):
    with pytest.raises(BatchInvalid):
        segment_batch_messages(body)
