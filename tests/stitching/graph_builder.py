"""Builds stitched data directly (entities, events, identifiers and their links) for tests of reads over the
identity graph, the profile page and erasure: those must not depend on the engine's choices."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from cdp.models import CustomerEntity, CustomerEvent, DataSource
from stitching.models import EventIdentifier, Identifier, StitchingCategory
from tests.entities import events_attach

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
_keys = itertools.count(1)


def categories() -> dict[str, StitchingCategory]:
    specs = [
        ("user_id", "User id", "trim", 1, 30),
        ("email", "Email", "email", 5, 20),
        ("phone", "Phone", "phone", 5, 10),
        ("cookie", "Cookie", "trim", None, 0),
    ]
    return {
        cid: StitchingCategory.objects.get_or_create(
            id=cid, defaults={"name": name, "normalizer": norm, "max_per_entity": limit, "priority": prio}
        )[0]
        for cid, name, norm, limit, prio in specs
    }


class GraphBuilder:
    """`entity()` then `event(entity, identifiers=[("email", "a@x.com"), ...])`; time advances an hour per event."""

    def __init__(self, source: DataSource):
        self.source = source
        self.categories = categories()
        self.clock = T0

    def entity(self, **attributes) -> CustomerEntity:
        return CustomerEntity.objects.create(attributes=attributes)

    def identifier(self, category: str, value: str, entity: CustomerEntity | None) -> Identifier:
        identifier, created = Identifier.objects.get_or_create(
            category_id=category, value=value, defaults={"customer_entity": entity, "first_seen": self.clock}
        )
        return identifier

    def event(
        self,
        entity: CustomerEntity | None,
        *,
        identifiers: list[tuple[str, str]] = (),
        refused: list[tuple[str, str, str, str, CustomerEntity | None]] = (),
        type: str = "page_view",
        payload: dict | None = None,
        when: datetime | None = None,
    ) -> CustomerEvent:
        """`refused`: (category, value, status, reason, entity the identifier belongs to)."""
        self.clock = when or self.clock + timedelta(hours=1)
        event = CustomerEvent.objects.create(
            source=self.source,
            type=type,
            event_time=self.clock,
            payload=payload or {},
            idempotency_key=f"test-{next(_keys)}",
        )
        events_attach([event], entity)
        for category, value in identifiers:
            EventIdentifier.objects.create(event=event, identifier=self.identifier(category, value, entity))
        for category, value, status, reason, owner in refused:
            EventIdentifier.objects.create(
                event=event, identifier=self.identifier(category, value, owner), status=status, reason=reason
            )
        return event
