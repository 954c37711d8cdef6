"""Customer event validation and idempotent ingestion.

One validation path for every way events arrive: the bulk API, the Segment-compatible endpoints and
`manage.py load_events` all build `EventRecord`s with `event_record_build`, so they accept and reject alike.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import orjson
from django.conf import settings
from django.db import connection, transaction

from cdp.services.data_sources import data_source_client_events_refusal, data_sources_reserved
from cdp.text import storable, utf8

MAX_TYPE_LENGTH = 128
MAX_MESSAGE_ID_LENGTH = 120
MAX_PAYLOAD_BYTES = 64 * 1024
# Events from before the Unix epoch or more than a day ahead are almost always a unit or clock bug.
EARLIEST_EVENT_TIME = datetime(1970, 1, 1, tzinfo=UTC)
FUTURE_TOLERANCE = timedelta(days=1)
HASH_KEY_PREFIX = "h:"
ESCAPED_KEY_PREFIX = "m:"  # before a client's message id that starts like a generated key


class EventRejected(ValueError):
    """An event that cannot be stored; the message says why, in words an API client can act on."""


class EventRecord(NamedTuple):
    """A validated event, ready to store. A named tuple: immutable, and several times cheaper to build than a
    frozen dataclass, which matters at file-load rates (about a million per run)."""

    source_id: int
    type: str
    event_time: datetime
    payload_json: str
    idempotency_key: str


@dataclass(slots=True, frozen=True)
class IngestOutcome:
    id: int
    created: bool  # False: a duplicate of an event stored before


# A type is a name that stitching rules, attributes and segments give; they refuse control characters.
_CONTROL_CHARACTER = re.compile(r"[\x01-\x1f\x7f]")
_UTC_SUFFIX = re.compile(r"(?:(?<=\d)z| ?(?:UTC|GMT))$")


def _utc_suffix_normalise(text: str) -> str:
    """`text` with a UTC marker Python's ISO parser does not read written as "Z": RFC 3339's lower-case "z", and the
    " UTC" of BigQuery's and other databases' CSV exports ("2026-01-01 10:00:00 UTC")."""
    return _UTC_SUFFIX.sub("Z", text)


def event_time_parse(value: object, *, now: datetime | None = None) -> datetime:
    """ISO 8601 string (naive means UTC; a "z" or " UTC" suffix is UTC too) or Unix time in seconds or milliseconds,
    as an aware UTC datetime."""
    # An ISO string is by far the most common input, so it is tested first; the order of the other checks
    # keeps the original meaning (an empty string, None or a bool is "required").
    if isinstance(value, str) and value != "":
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            if text.isascii() and text.lstrip("-").replace(".", "", 1).isdigit():  # ("²" is a digit to isdigit)
                return event_time_parse(float(text), now=now)
            try:
                parsed = datetime.fromisoformat(_utc_suffix_normalise(text))
            except ValueError:
                raise EventRejected(f"event_time {value[:60]!r} is not an ISO 8601 date-time") from None
        tzinfo = parsed.tzinfo
        if tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        elif tzinfo is not UTC:
            try:
                parsed = parsed.astimezone(UTC)
            except OverflowError:
                raise EventRejected(f"event_time {value[:60]!r} is out of range") from None
    elif isinstance(value, bool) or value is None or value == "":
        raise EventRejected("event_time is required")
    elif isinstance(value, int | float):
        try:
            seconds = value / 1000 if abs(value) > 1e11 else value
            parsed = datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise EventRejected(f"event_time {value!r} is not a valid Unix time") from None
    elif isinstance(value, datetime):
        try:
            parsed = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except OverflowError:
            raise EventRejected(f"event_time {value!r} is out of range") from None
    else:
        raise EventRejected("event_time must be an ISO 8601 string or a Unix time number")
    now = now or datetime.now(UTC)
    if parsed < EARLIEST_EVENT_TIME:
        raise EventRejected(f"event_time {parsed.isoformat()} is before 1970")
    if parsed > now + FUTURE_TOLERANCE:
        raise EventRejected(f"event_time {parsed.isoformat()} is more than a day in the future")
    return parsed


def payload_serialize(payload: object) -> str:
    """Canonical JSON text of a payload object (sorted keys, as jsonb stores them)."""
    if not isinstance(payload, dict):
        raise EventRejected("payload must be a JSON object")
    try:
        text = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS).decode()
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise EventRejected(f"payload cannot be stored as JSON: {exc}") from None
    if len(text) > MAX_PAYLOAD_BYTES:
        raise EventRejected(f"payload is larger than {MAX_PAYLOAD_BYTES // 1024} KiB")
    if "\\u0000" in text:
        raise EventRejected("payload contains a NUL character (\\u0000), which cannot be stored")
    return text


def event_record_build(
    *,
    source_id: int,
    type: object,
    event_time: object,
    payload: object,
    message_id: object = None,
    now: datetime | None = None,
    hash_time: datetime | None = None,
) -> EventRecord:
    """Validate one event. Raises EventRejected with the reason. Without a message id the key is a hash of the
    type, the time (`hash_time` when given: the time as a device sent it, before its clock was corrected) and the
    payload."""
    if not isinstance(type, str) or not type.strip():
        raise EventRejected("type is required and must be a non-empty string")
    type = type.strip()
    if len(type) > MAX_TYPE_LENGTH:
        raise EventRejected(f"type is longer than {MAX_TYPE_LENGTH} characters")
    if "\x00" in type:
        raise EventRejected("type contains a NUL character")
    if _CONTROL_CHARACTER.search(type):
        raise EventRejected(f"type {type[:40]!r} contains a control character (a line break, a tab ...)")
    if not utf8(type):
        raise EventRejected("type contains characters that are not valid UTF-8")
    when = event_time_parse(event_time, now=now)
    payload_json = payload_serialize(payload)
    if message_id is None or message_id == "":
        hashed = when if hash_time is None else hash_time
        digest = hashlib.sha256(f"{type}\x1f{hashed.isoformat()}\x1f{payload_json}".encode()).hexdigest()
        key = HASH_KEY_PREFIX + digest[:40]
    else:
        if isinstance(message_id, bool) or not isinstance(message_id, str | int):
            raise EventRejected("message_id must be a string")
        key = str(message_id).strip()
        if not key or len(key) > MAX_MESSAGE_ID_LENGTH:
            raise EventRejected(f"message_id must be 1 to {MAX_MESSAGE_ID_LENGTH} characters")
        if "\x00" in key:  # (PostgreSQL text cannot hold it; "must be 1 to 120 characters" misled the client)
            raise EventRejected("message_id contains a NUL character")
        if not utf8(key):
            raise EventRejected("message_id contains characters that are not valid UTF-8")
        key = idempotency_key_of(key)
    return EventRecord(source_id, type, when, payload_json, key)


# A key that looks generated or escaped: "h:…", "m:h:…", "m:m:h:…" (any number of "m:" before "h:").
_ESCAPABLE = re.compile(f"^(?:{ESCAPED_KEY_PREFIX})*{HASH_KEY_PREFIX}")


def idempotency_key_of(message_id: str) -> str:
    """The stored idempotency key of a client's message id: a message id that starts like a generated content-hash
    key ("h:…") or like an escaped one ("m:h:…", "m:m:h:…") gets one more "m:", so no two message ids and no
    message id and content hash share a key ("h:x" is stored as "m:h:x", "m:h:x" as "m:m:h:x")."""
    return ESCAPED_KEY_PREFIX + message_id if _ESCAPABLE.match(message_id) else message_id


def message_id_of(idempotency_key: str) -> str | None:
    """The message id the client sent, from the stored key; None when it sent none (the key is a content hash)."""
    if idempotency_key.startswith(HASH_KEY_PREFIX):
        return None
    if idempotency_key.startswith(ESCAPED_KEY_PREFIX) and _ESCAPABLE.match(idempotency_key):
        return idempotency_key[len(ESCAPED_KEY_PREFIX) :]
    return idempotency_key


_INSERT_SQL = """
    INSERT INTO customer_events (source_id, type, event_time, payload, idempotency_key)
    SELECT * FROM unnest(%s::integer[], %s::text[], %s::timestamptz[], %s::jsonb[], %s::text[])
    ON CONFLICT (source_id, idempotency_key) DO NOTHING
    RETURNING id, source_id, idempotency_key
"""


@transaction.atomic
def events_ingest(records: Sequence[EventRecord]) -> list[IngestOutcome]:
    """Store events idempotently; one outcome per record, in order. Duplicates point at the stored event."""
    if not records:
        return []
    if len(records) > max(settings.CDP_MAX_EVENTS_PER_REQUEST, 10_000):
        raise ValueError("too many events for one call")
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT_SQL,
            [
                [r.source_id for r in records],
                [r.type for r in records],
                [r.event_time for r in records],
                [r.payload_json for r in records],
                [r.idempotency_key for r in records],
            ],
        )
        created = {(source_id, key): event_id for event_id, source_id, key in cursor.fetchall()}
        missing = {(r.source_id, r.idempotency_key) for r in records} - created.keys()
        existing: dict[tuple[int, str], int] = {}
        if missing:
            sources, keys = zip(*missing, strict=True)
            cursor.execute(
                """SELECT e.id, e.source_id, e.idempotency_key FROM customer_events e
                   JOIN unnest(%s::integer[], %s::text[]) AS m(source_id, key)
                     ON e.source_id = m.source_id AND e.idempotency_key = m.key""",
                [list(sources), list(keys)],
            )
            existing = {(source_id, key): event_id for event_id, source_id, key in cursor.fetchall()}
    outcomes = []
    seen: set[tuple[int, str]] = set()
    for record in records:
        ident = (record.source_id, record.idempotency_key)
        if ident in created and ident not in seen:
            outcomes.append(IngestOutcome(created[ident], True))
        else:
            outcomes.append(IngestOutcome(created.get(ident) or existing[ident], False))
        seen.add(ident)
    if created:
        transaction.on_commit(lambda: events_ingested_notify(len(created)))
    return outcomes


def events_ingested_notify(count: int) -> None:
    """Hook run after new events commit; stitching subscribes here (see the stitching app)."""
    from cdp import hooks

    hooks.run_events_ingested(count)


@dataclass(slots=True)
class BulkResult:
    """Per request index: newly stored, already stored (duplicates), or rejected with the reason."""

    accepted: list[dict]
    duplicates: list[dict]
    rejected: list[dict]


def _source_ids(events: Sequence[object]) -> dict[str, int]:
    """Map every source reference in the batch (id or slug) to its id with two indexed queries."""
    from cdp.models import DataSource

    refs = {str(e.get("source_id", e.get("source"))) for e in events if isinstance(e, dict)}
    # A reference PostgreSQL text cannot hold (a NUL, a lone surrogate) is no slug: it failed the whole query, and
    # with it the batch's good events; such an event is rejected alone as an unknown source.
    longest = DataSource._meta.get_field("slug").max_length
    slugs = [ref for ref in refs if len(ref) <= longest and storable(ref)]
    known = dict(DataSource.objects.filter(slug__in=[*slugs, *data_sources_reserved()]).values_list("slug", "id"))
    ids = {int(ref) for ref in refs if ref.isascii() and ref.isdigit() and len(ref) <= 18}
    for pk in DataSource.objects.filter(pk__in=ids).values_list("id", flat=True):
        known.setdefault(str(pk), pk)
    return known


def events_create_bulk(*, events: Sequence[object]) -> BulkResult:
    """The REST bulk create: each raw event (`source_id` id or slug, `type`, `event_time`, `payload`,
    `message_id`) validated on its own; the good ones stored idempotently, the bad ones reported."""
    sources = _source_ids(events)
    # Sources only the CDP writes to (the system's, the email channel's): id -> why an event is refused.
    refused = {
        sources[slug]: data_source_client_events_refusal(slug) for slug in data_sources_reserved() if slug in sources
    }
    records: list[EventRecord] = []
    indexes: list[int] = []
    rejected: list[dict] = []
    for index, raw in enumerate(events):
        try:
            if not isinstance(raw, dict):
                raise EventRejected("an event must be a JSON object")
            ref = raw.get("source_id", raw.get("source"))
            if ref in (None, ""):
                raise EventRejected("source_id is required")
            source_id = sources.get(str(ref))
            if source_id is None:
                raise EventRejected(f"unknown data source {str(ref)[:64]!r}")
            if source_id in refused:
                raise EventRejected(refused[source_id])
            records.append(
                event_record_build(
                    source_id=source_id,
                    type=raw.get("type"),
                    event_time=raw.get("event_time"),
                    payload=raw.get("payload", {}),
                    message_id=raw.get("message_id", raw.get("messageId")),
                )
            )
            indexes.append(index)
        except EventRejected as exc:
            rejected.append({"index": index, "reason": str(exc)})
    result = BulkResult(accepted=[], duplicates=[], rejected=rejected)
    for index, outcome in zip(indexes, events_ingest(records), strict=True):
        (result.accepted if outcome.created else result.duplicates).append({"index": index, "id": outcome.id})
    return result
