"""cdp.segment_api.services: Segment messages mapped to customer event records."""

from datetime import UTC, datetime, timedelta

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


def test_a_device_clock_that_is_off_is_corrected_by_its_sent_at_as_segment_does():
    # A phone set two days ahead: the event happened 5 s before it was sent, which the server received at NOW.
    ahead = {"type": "track", "event": "E", "userId": "u", "timestamp": "2024-06-03T11:59:55Z"}
    assert record({**ahead, "sentAt": "2024-06-03T12:00:00Z"}).event_time == NOW - timedelta(seconds=5)
    # Without sentAt nothing says the clock is off: two days ahead is refused, as before.
    with pytest.raises(EventRejected, match="timestamp .* more than a day in the future"):
        record(ahead)
    # A clock an hour behind, with the batch's sentAt (analytics-python sends it there, not in each message).
    behind = {"type": "page", "userId": "u", "originalTimestamp": "2024-06-01T10:59:00Z"}
    built = segment_message_record(source_id=7, message=behind, received_at=NOW, batch_sent_at="2024-06-01T11:00:00Z")
    assert built.event_time == NOW - timedelta(minutes=1)


def test_a_corrected_message_without_message_id_hashes_the_same_when_sent_again():
    """The correction depends on when the server received the message: a re-send (a few seconds later) moves the
    time by a different amount, so the content hash reads the time as sent; else the retry would be stored twice."""
    message = {"type": "track", "event": "E", "userId": "u", "timestamp": "2024-06-03T11:59:55Z",
               "sentAt": "2024-06-03T12:00:00Z"}  # fmt: skip
    first = segment_message_record(source_id=7, message=message, received_at=NOW)
    retried = segment_message_record(source_id=7, message=message, received_at=NOW + timedelta(seconds=3))
    assert first.event_time != retried.event_time
    assert first.idempotency_key == retried.idempotency_key


def test_a_clock_within_the_tolerance_keeps_the_time_sent_exactly():
    # Network latency is no skew: the time stays the client's to the microsecond (and a retry hashes the same).
    message = {"type": "page", "userId": "u", "timestamp": "2024-05-01T10:00:00.123Z", "sentAt": "2024-06-01T11:59:30Z"}
    assert record(message).event_time == datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)


@pytest.mark.parametrize("sent_at", ["soon", 1717243200, "9999-12-31T00:00:00Z", None])
def test_an_unreadable_sent_at_is_ignored(sent_at):
    message = {"type": "page", "userId": "u", "timestamp": "2024-05-01T10:00:00Z", "sentAt": sent_at}
    assert record(message).event_time == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def test_a_time_absurd_by_the_device_clock_is_still_refused():
    message = {"type": "page", "userId": "u", "timestamp": "2024-06-10T00:00:00Z", "sentAt": "2024-06-03T12:00:00Z"}
    with pytest.raises(EventRejected, match="timestamp"):
        record(message)


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
