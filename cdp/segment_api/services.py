"""Segment HTTP Tracking API messages → customer events.

Mapping (one Segment message = one row in `customer_events`, through the shared `event_record_build` +
`events_ingest` path, so validation and idempotency are the same as for every other route):

- `source`: the data source whose write key authenticated the request.
- `idempotency_key`: the message's `messageId` (all Segment SDKs send one). A message without it falls back to
  the shared content hash, so an identical re-send is still stored once.
- `event_time`: `timestamp`, else `originalTimestamp`, else the time the server received the request (UTC).
  A present but unparseable or absurd timestamp rejects the message rather than silently using another time.
  A device clock that is off is corrected as Segment does, `receivedAt - (sentAt - timestamp)`, when the
  message's `sentAt` (else the batch's) is more than CLOCK_SKEW_TOLERANCE from the server's clock: a phone set
  two days ahead sends events that happened now, not ones from the future.
- `type`: the `event` name for `track` messages (e.g. "Order Completed"); the message type (`identify`,
  `page`, `screen`, `alias`, `group`) for the others. A track event literally named "identify" is
  therefore stored with type "identify"; `payload.type` still says "track".
- `payload`: the whole message as sent, minus `writeKey` (a secret that must not be stored). `userId`,
  `anonymousId`, `previousId`, `groupId`, `traits`, `context.traits`, `properties`, `context`, `integrations`,
  `sentAt` ... stay at their Segment paths, which stitching rules read. On the single-message endpoints
  `type` is set to the endpoint's type. In a batch, batch-level `context` and `integrations` are merged into
  each message's own (the message's keys win), as Segment does.

Validation per message (Segment's rules): a JSON object of at most 32 KB; `type` one of the six; `userId` or
`anonymousId` (string or number) for all but `alias`, which needs `userId` and `previousId`; `groupId` for
`group`; a non-empty `event` for `track`; `properties`, `traits`, `context`, `integrations` objects when present.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.db import transaction

from cdp.services.events import (
    MAX_MESSAGE_ID_LENGTH,
    EventRecord,
    EventRejected,
    IngestOutcome,
    event_record_build,
    event_time_parse,
    events_ingest,
)

MESSAGE_TYPES = ("track", "identify", "page", "screen", "alias", "group")
MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
# A device whose clock (its sentAt) is further than this from ours gets its times corrected, as Segment does; within
# it, the time sent is kept exactly, so a retried message without a messageId hashes the same and is stored once.
CLOCK_SKEW_TOLERANCE = timedelta(minutes=1)
# events_ingest takes bounded lists; a 500 KB batch of tiny messages can hold more than that.
INGEST_CHUNK = 5000

_OBJECT_FIELDS = ("properties", "traits", "context", "integrations")


class MessageTooLarge(EventRejected):
    """A message over Segment's 32 KB limit (the single-message endpoints answer 413 for it)."""


class BatchInvalid(ValueError):
    """The batch envelope itself is unusable (not the individual messages); the message says why."""


@dataclass(slots=True)
class BatchIngestResult:
    """`accepted`: newly stored; `duplicates`: already stored before (or earlier in the same batch)."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)  # [{"index": i, "reason": "..."}]


def _check_id(message: dict[str, Any], name: str) -> bool:
    """True when `name` holds a usable id; raises when it holds something that cannot be an id."""
    value = message.get(name)
    if value is None:
        return False
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise EventRejected(f"{name} must be a string or a number")
    if isinstance(value, str) and not value.strip():
        return False
    return True


def _sent_at(value: object) -> datetime | None:
    """The client's clock when it sent the request (Segment's `sentAt`, ISO 8601), None when absent or unreadable:
    a transport field, so a bad one is ignored rather than rejecting the message."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return parsed if parsed.year < datetime.max.year else None  # (the calendar's last year is no clock's)


def _event_time(
    message: dict[str, Any], *, received_at: datetime, sent_at: datetime | None
) -> tuple[datetime, datetime]:
    """(the event's time, the time as the device sent it). They differ when the device's clock was corrected: a
    re-send is corrected by a slightly different amount, so the content hash of a message without messageId reads
    the time as sent (else a retry would be stored twice)."""
    skew = received_at - sent_at if sent_at is not None else timedelta(0)
    corrected = abs(skew) > CLOCK_SKEW_TOLERANCE
    for name in ("timestamp", "originalTimestamp"):
        value = message.get(name)
        if value is None or value == "":
            continue
        try:
            if not corrected:
                when = event_time_parse(value, now=received_at)
                return when, when
            # Read by the device's own clock (a day ahead of its own sentAt is still absurd), then moved onto ours.
            device_time = event_time_parse(value, now=sent_at)
            try:
                return event_time_parse(device_time + skew, now=received_at), device_time
            except OverflowError:
                raise EventRejected(f"event_time {str(value)[:60]!r} is out of range given sentAt") from None
        except EventRejected as exc:
            raise EventRejected(str(exc).replace("event_time", name, 1)) from None
    return received_at, received_at


def segment_message_record(
    *,
    source_id: int,
    message: object,
    message_type: str | None = None,
    received_at: datetime,
    batch_sent_at: object = None,
) -> EventRecord:
    """Validate one Segment message and build its event record (see the module docstring for the mapping).

    `message_type` is the endpoint's type for /v1/track etc. (it overrides the message's own); None in a batch,
    where each message says its type. `batch_sent_at`: the batch's `sentAt`, for messages without their own.
    Raises EventRejected (MessageTooLarge for size) with the reason.
    """
    if not isinstance(message, dict):
        raise EventRejected("message must be a JSON object")
    payload = {key: value for key, value in message.items() if key != "writeKey"}
    if message_type is not None:
        payload["type"] = message_type
    kind = payload.get("type")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        shown = repr(kind)[:40] if kind is not None else "missing"
        raise EventRejected(f"type must be one of {', '.join(MESSAGE_TYPES)} (got {shown})")
    try:
        size = len(orjson.dumps(payload))
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise EventRejected(f"message cannot be stored as JSON: {exc}") from None
    if size > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(f"message is {size} bytes, over Segment's limit of {MAX_MESSAGE_BYTES // 1024} KB")
    for name in _OBJECT_FIELDS:
        if payload.get(name) is not None and not isinstance(payload[name], dict):
            raise EventRejected(f"{name} must be a JSON object")

    has_user = _check_id(payload, "userId")
    has_anonymous = _check_id(payload, "anonymousId")
    if kind == "alias":
        if not has_user or not _check_id(payload, "previousId"):
            raise EventRejected("alias messages need both userId and previousId")
    elif not has_user and not has_anonymous:
        raise EventRejected(f"{kind} messages need a userId or an anonymousId")
    if kind == "group" and not _check_id(payload, "groupId"):
        raise EventRejected("group messages need a groupId")

    if kind == "track":
        event_type = payload.get("event")
        if not isinstance(event_type, str) or not event_type.strip():
            raise EventRejected("track messages need an event name (a non-empty string in 'event')")
    else:
        event_type = kind

    message_id = payload.get("messageId")
    if message_id is not None:
        if isinstance(message_id, bool) or not isinstance(message_id, str | int):
            raise EventRejected("messageId must be a string")
        if not str(message_id).strip() or len(str(message_id)) > MAX_MESSAGE_ID_LENGTH:
            raise EventRejected(f"messageId must be 1 to {MAX_MESSAGE_ID_LENGTH} characters")

    try:
        when, as_sent = _event_time(
            payload, received_at=received_at, sent_at=_sent_at(payload.get("sentAt", batch_sent_at))
        )
        return event_record_build(
            source_id=source_id,
            type=event_type,
            event_time=when,
            payload=payload,
            message_id=message_id,
            now=received_at,
            hash_time=as_sent,
        )
    except EventRejected as exc:
        # The shared validator speaks our API's field names; say them in Segment's words.
        reason = str(exc).replace("message_id", "messageId")
        if kind == "track" and reason.startswith("type "):
            reason = "event" + reason[len("type") :]
        raise EventRejected(reason) from None


def segment_batch_messages(body: dict[str, Any]) -> list[object]:
    """The messages of a /v1/batch body, with batch-level `context` and `integrations` merged into each.

    Raises BatchInvalid when `batch` is missing, not a list, or empty.
    """
    batch = body.get("batch")
    if not isinstance(batch, list):
        raise BatchInvalid("batch is required and must be a list of messages")
    if not batch:
        raise BatchInvalid("batch is empty: send at least one message")
    shared = {name: body[name] for name in ("context", "integrations") if isinstance(body.get(name), dict)}
    if not shared:
        return batch
    messages: list[object] = []
    for message in batch:
        if isinstance(message, dict):
            message = dict(message)
            for name, value in shared.items():
                own = message.get(name)
                if own is None:
                    message[name] = dict(value)
                elif isinstance(own, dict):
                    message[name] = {**value, **own}
        messages.append(message)
    return messages


_SOURCES_WITH_RULES: set[int] = set()


def segment_stitching_rules_ensure(*, source_id: int) -> None:
    """A source that receives Segment traffic gets Segment's stitching rules (userId, anonymousId, traits.email,
    traits.phone) unless it already has rules; checked once per source and process."""
    if source_id in _SOURCES_WITH_RULES:
        return
    from cdp.models import DataSource
    from stitching.services.defaults import segment_default_rules_ensure

    segment_default_rules_ensure(source=DataSource.objects.get(pk=source_id))
    _SOURCES_WITH_RULES.add(source_id)


@transaction.atomic
def segment_batch_ingest(
    *,
    source_id: int,
    messages: Sequence[object],
    received_at: datetime | None = None,
    batch_sent_at: object = None,
) -> BatchIngestResult:
    """Validate and store a batch: good messages are stored (once), bad ones listed with index and reason."""
    segment_stitching_rules_ensure(source_id=source_id)
    received_at = received_at or datetime.now(UTC)
    result = BatchIngestResult()
    records: list[EventRecord] = []
    for index, message in enumerate(messages):
        try:
            records.append(
                segment_message_record(
                    source_id=source_id, message=message, received_at=received_at, batch_sent_at=batch_sent_at
                )
            )
        except EventRejected as exc:
            result.rejected.append({"index": index, "reason": str(exc)})
    for start in range(0, len(records), INGEST_CHUNK):
        for outcome in events_ingest(records[start : start + INGEST_CHUNK]):
            if outcome.created:
                result.accepted += 1
            else:
                result.duplicates += 1
    return result


def segment_message_ingest(
    *, source_id: int, message: object, message_type: str, received_at: datetime | None = None
) -> IngestOutcome:
    """Validate and store one message from /v1/<type>. Raises EventRejected (or MessageTooLarge)."""
    segment_stitching_rules_ensure(source_id=source_id)
    record = segment_message_record(
        source_id=source_id,
        message=message,
        message_type=message_type,
        received_at=received_at or datetime.now(UTC),
    )
    return events_ingest([record])[0]
