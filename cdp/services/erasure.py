"""GDPR erasure of a customer entity: its events, identifiers and attribute values go; a record of the erasure
stays, without personal data (counts and the acting user's id only).

Identifiers are removed when no remaining event carries them, so a value seen again later starts a fresh
customer instead of rejoining anything. Merge history rows of the entity lose their details (which may name
identifiers) but keep when and which entity ids were involved (random ids, not personal data). Apps that keep
data per identifier value delete theirs in the same transaction (cdp.hooks.on_identifiers_erased: the email
channel's address states).

Complete: what was received before the erase started goes with the customer, even if it was still queued. Apps
first apply their queues (cdp.hooks.on_erase_preparing: the email channel's webhook inbox), then the events not
stitched yet are stitched, and only then is the customer erased. A backlog that cannot be worked off within
CATCH_UP_SECONDS refuses the erase (ErasureBacklog, nothing erased). What arrives later is new data: its
identifiers no longer exist, so it starts a fresh customer.

Deterministic: the customers that shared an identifier with the erased one (a link refused by a limit or held for
a hub review because of the erased events, a shared value) end up as a re-stitch without the erased events would
make them: their components are queued for re-stitching in the erase's transaction, like after a configuration
change.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from django.db import OperationalError, connection
from django.db.models import Max

from cdp import hooks
from cdp.models import CustomerEntity, CustomerEvent, User

# How long an erase may spend applying queued data and stitching pending events before it gives up.
CATCH_UP_SECONDS = 15.0


class ErasureBacklog(Exception):
    """Data received before the erase is still waiting to be processed; nothing was erased."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} after {CATCH_UP_SECONDS:g} s; nothing was erased, try again in a minute.")


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
    """Erase one customer with everything received about them until now. Raises CustomerEntity.DoesNotExist when
    it is gone (erased or merged away meanwhile, also by the events received before: see
    stitching.selectors.entity_fate), and ErasureBacklog when the queues could not be worked off within
    CATCH_UP_SECONDS.

    Takes the stitching engine's locks on the customer and its identifiers, so a worker stitching an event that
    carries one of them waits and then sees it gone (and starts a fresh customer)."""
    from stitching.services.engine import LockBusy, stitch_pending_through, with_retries

    if not CustomerEntity.objects.filter(pk=entity.pk).exists():
        raise CustomerEntity.DoesNotExist(f"Customer entity {entity.pk} does not exist.")
    deadline = time.monotonic() + CATCH_UP_SECONDS
    if not hooks.run_erase_preparing(deadline):
        raise ErasureBacklog("Webhook payloads received before the erase are still being applied")
    last_event_id = CustomerEvent.objects.aggregate(last=Max("id"))["last"] or 0
    reports: list[ErasureReport] = []
    # Stitching and the erase wait for the locks of the customer's component at most until the deadline: a
    # worker re-stitching a large component holds them for as long as it takes (the soak's erase waited minutes).
    try:
        with _lock_waits_until(deadline):
            if not stitch_pending_through(event_id=last_event_id, deadline=deadline):
                raise ErasureBacklog("Events received before the erase are still being stitched")
            with_retries(lambda: reports.append(_entity_erase_once(entity_id=entity.pk, user=user)), deadline=deadline)
    except LockBusy:
        raise ErasureBacklog("The customer's identifiers are being stitched") from None
    except OperationalError as error:
        if getattr(error.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        raise ErasureBacklog("The customer's identifiers are being stitched") from None
    return reports[-1]


LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout expired


@contextmanager
def _lock_waits_until(deadline: float) -> Iterator[None]:
    """PostgreSQL's lock_timeout on this connection: what is left until `deadline` (at least a second)."""
    milliseconds = max(1000, int((deadline - time.monotonic()) * 1000))
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', %s, false)", [f"{milliseconds}ms"])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")


def _entity_erase_once(*, entity_id: str, user: User | None) -> ErasureReport:
    from stitching.models import EntityChange, RestitchCause
    from stitching.services.engine import entity_component_lock, restitch_request

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
        cursor.execute(
            "SELECT category_id, value FROM stitching_identifiers WHERE id IN (SELECT id FROM erase_orphans)"
        )
        erased_values: dict[str, list[str]] = {}
        for category, value in cursor.fetchall():
            erased_values.setdefault(category, []).append(value)
        # The others are carried by other customers' events: links refused or held because of the erased events
        # may be made now, and hub counts drop. Only those: a blocked or junk value ("undefined") links nothing,
        # and re-stitching every customer that carries one would recompute them all for no change.
        cursor.execute(
            "SELECT e.id FROM erase_identifiers e WHERE e.id NOT IN (SELECT id FROM erase_orphans) AND EXISTS "
            "(SELECT 1 FROM stitching_event_identifiers ei WHERE ei.identifier_id = e.id "
            "AND ei.status IN ('limit', 'held'))"
        )
        shared_identifier_ids = [row[0] for row in cursor.fetchall()]
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
            # Why and through which kind of identifier a merge or split happened stay (no personal data in either):
            # the history keeps reading "because a value was blocked" instead of passing for an ordinary merge.
            "UPDATE stitching_entitychange SET identifier_id = NULL, detail = jsonb_strip_nulls(jsonb_build_object("
            "'cause', detail -> 'cause', 'identifier_category', detail -> 'identifier_category')) "
            "WHERE customer_entity_id = %s",
            [entity_id],
        )
        scrubbed = cursor.rowcount
        # Attribute values live on the entity row.
        cursor.execute("DELETE FROM customer_entities WHERE id = %s", [entity_id])
        # Dropped now, not only at commit: a caller's outer transaction may erase another customer next.
        cursor.execute("DROP TABLE erase_events, erase_identifiers, erase_orphans")
    hooks.run_identifiers_erased(erased_values)
    restitch_request(identifier_ids=shared_identifier_ids, cause=RestitchCause.ERASURE)

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
