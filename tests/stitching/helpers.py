"""Helpers for stitching tests: events in, partitions out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cdp.models import CustomerEvent
from cdp.services.events import event_record_build, events_ingest
from stitching.services.engine import SYSTEM_SOURCE_SLUG

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def ingest(source, rows: list[dict]) -> list[int]:
    """rows: {"id": message id, "t": minutes after T0, "type": ..., **payload}; returns event ids in order."""
    records = [
        event_record_build(
            source_id=source.pk,
            type=row.get("type", "track"),
            event_time=T0 + timedelta(minutes=row.get("t", 0)),
            payload={k: v for k, v in row.items() if k not in ("id", "t", "type")},
            message_id=row["id"],
        )
        for row in rows
    ]
    return [outcome.id for outcome in events_ingest(records)]


def partition(*, by: str = "id") -> set[frozenset]:
    """The partition of non-system events into entities, as a set of frozensets of event ids (or message ids)."""
    groups: dict[str, set] = {}
    events = CustomerEvent.objects.exclude(source__slug=SYSTEM_SOURCE_SLUG)
    for event_id, key, entity in events.values_list("id", "idempotency_key", "entity_link__customer_entity_id"):
        assert entity is not None, "every event must be stitched"
        groups.setdefault(entity, set()).add(event_id if by == "id" else key)
    return {frozenset(g) for g in groups.values()}
