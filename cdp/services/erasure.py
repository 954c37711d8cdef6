"""GDPR erasure of a customer entity: its events, identifiers and attribute values go; a record of the erasure
stays, without personal data (counts and the acting user's id only).

Identifiers are removed when no remaining event carries them, so a value seen again later starts a fresh
customer instead of rejoining anything. Merge history rows of the entity lose their details (which may name
identifiers) but keep when and which entity ids were involved (random ids, not personal data).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.db import connection

from cdp.models import CustomerEntity, User


@dataclass(frozen=True)
class ErasureReport:
    customer_entity_id: str
    events: int
    identifiers: int
    event_links: int
    history_rows_scrubbed: int

    def as_dict(self) -> dict:
        return asdict(self)


def entity_erase(*, entity: CustomerEntity, user: User | None = None) -> ErasureReport:
    """Erase one customer. Raises CustomerEntity.DoesNotExist when it is already gone.

    Takes the stitching engine's locks on the customer and its identifiers, so a worker stitching an event that
    carries one of them waits and then sees it gone (and starts a fresh customer)."""
    from stitching.services.engine import with_retries

    reports: list[ErasureReport] = []
    with_retries(lambda: reports.append(_entity_erase_once(entity_id=entity.pk, user=user)))
    return reports[-1]


def _entity_erase_once(*, entity_id: str, user: User | None) -> ErasureReport:
    from stitching.models import EntityChange
    from stitching.services.engine import entity_component_lock

    CustomerEntity.objects.select_for_update().get(pk=entity_id)
    entity_component_lock(entity_id)

    with connection.cursor() as cursor:
        # The events, and the identifiers they carried (the candidates for removal).
        cursor.execute(
            """
            CREATE TEMP TABLE erase_events ON COMMIT DROP AS
            SELECT event_id AS id FROM customer_event_entities WHERE customer_entity_id = %s
            """,
            [entity_id],
        )
        cursor.execute(
            """
            CREATE TEMP TABLE erase_identifiers ON COMMIT DROP AS
            SELECT DISTINCT identifier_id AS id FROM stitching_event_identifiers
            WHERE event_id IN (SELECT id FROM erase_events)
            UNION SELECT id FROM stitching_identifiers WHERE customer_entity_id = %s
            """,
            [entity_id],
        )
        cursor.execute("DELETE FROM stitching_event_identifiers WHERE event_id IN (SELECT id FROM erase_events)")
        event_links = cursor.rowcount
        cursor.execute(
            "UPDATE stitching_entitychange SET event_id = NULL WHERE event_id IN (SELECT id FROM erase_events)"
        )
        cursor.execute("DELETE FROM customer_event_entities WHERE event_id IN (SELECT id FROM erase_events)")
        cursor.execute("DELETE FROM customer_events WHERE id IN (SELECT id FROM erase_events)")
        events = cursor.rowcount
        # Identifiers no other event carries. One still carried by another customer's event (a refused or shared
        # link) stays: it is that customer's data too.
        cursor.execute(
            """
            CREATE TEMP TABLE erase_orphans ON COMMIT DROP AS
            SELECT i.id FROM stitching_identifiers i
            WHERE i.id IN (SELECT id FROM erase_identifiers)
              AND NOT EXISTS (SELECT 1 FROM stitching_event_identifiers ei WHERE ei.identifier_id = i.id)
            """
        )
        cursor.execute("DELETE FROM stitching_hubreview WHERE identifier_id IN (SELECT id FROM erase_orphans)")
        cursor.execute(
            "UPDATE stitching_entitychange SET identifier_id = NULL "
            "WHERE identifier_id IN (SELECT id FROM erase_orphans)"
        )
        cursor.execute("DELETE FROM stitching_identifiers WHERE id IN (SELECT id FROM erase_orphans)")
        identifiers = cursor.rowcount
        cursor.execute(
            "UPDATE stitching_identifiers SET customer_entity_id = NULL WHERE customer_entity_id = %s", [entity_id]
        )
        cursor.execute(
            "UPDATE stitching_entitychange SET detail = '{}'::jsonb, identifier_id = NULL "
            "WHERE customer_entity_id = %s",
            [entity_id],
        )
        scrubbed = cursor.rowcount
        # Attribute values live on the entity row.
        cursor.execute("DELETE FROM customer_entities WHERE id = %s", [entity_id])
        # Dropped now, not only at commit: a caller's outer transaction may erase another customer next.
        cursor.execute("DROP TABLE erase_events, erase_identifiers, erase_orphans")

    report = ErasureReport(
        customer_entity_id=entity_id,
        events=events,
        identifiers=identifiers,
        event_links=event_links,
        history_rows_scrubbed=scrubbed,
    )
    EntityChange.objects.create(
        kind=EntityChange.Kind.ERASE,
        customer_entity_id=entity_id,
        other_entity_ids=[],
        detail={
            "events": events,
            "identifiers": identifiers,
            "event_links": event_links,
            "user_id": user.pk if user is not None and user.pk else None,
        },
    )
    return report
