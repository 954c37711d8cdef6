"""The stitching engine: incremental stitching of new events, component re-stitching, full rebuilds.

Determinism. Every write recomputes whole *raw components* (all events reachable through shared non-blocked
identifiers, closed under "currently in the same entity") with the pure `partition_compute`, whose result does
not depend on input order. A component's final state is therefore computed from all of its events by the last
transaction that touched it, whatever the arrival order or batch boundaries were; `restitch` computes the same
function from scratch.

Concurrency. One transaction per batch: (1) claim unstitched events `FOR UPDATE SKIP LOCKED`; (2) take
transaction-level advisory locks on every (category, value) they carry, blocking, in sorted order (so waits
cannot form a cycle); (3) discover the component from committed edges plus our own, then *try* to lock its other
identifiers and its entities; if one is busy, roll back and retry the batch later (a try never waits, so no
deadlock); once everything is locked, discover again and repeat until the component stops growing. Two workers
whose components share an identifier or an entity therefore serialise, and the second sees the first's committed
result. A full rebuild takes the global lock exclusively; batches take it shared.

System events (merges and splits, from the "cdp" system source) carry no identifiers and are attached to the
entity they describe directly, so they never enter the stitching queue or another customer's component.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from django.db import OperationalError, connection, transaction
from django.db.models import F

from cdp.http import ServiceBusy
from cdp.models import CustomerEntity, DataSource
from cdp.services import data_sources
from cdp.services.attributes import MAX_DEADLOCK_RETRIES, entities_queue_sql, is_deadlock
from cdp.services.erasure import LOCK_NOT_AVAILABLE
from stitching.models import EntityChange, EventIdentifier, RestitchCause, RestitchRequest
from stitching.normalizers import MAX_IDENTIFIER_LENGTH
from stitching.services.extraction import Extracted, StitchConfig, config_load, identifiers_extract
from stitching.services.partition import EventNode, Link, Partition, partition_compute

log = logging.getLogger(__name__)

LOCK_NAMESPACE = 0x5717  # advisory lock class id of stitching locks
GLOBAL_LOCK_KEY = 0
MAX_ATTEMPTS = 200
SYSTEM_SOURCE_SLUG = data_sources.SYSTEM_SOURCE_SLUG
MERGED_EVENT_TYPE = "customer_entities_merged"
SPLIT_EVENT_TYPE = "customer_entity_split"
BLOCKED = EventIdentifier.Status.BLOCKED.value
LINKED = EventIdentifier.Status.LINKED.value


class LockBusy(Exception):
    """Another transaction holds part of our component: roll back and retry."""


class StitchingBusy(ServiceBusy):
    """A stitching configuration change waited CONFIG_CHANGE_WAIT_SECONDS for the stitching in flight (a full
    re-stitch, a very large component) and gave up; nothing was changed."""


# How long a configuration change waits for the stitching transactions in flight (a request: a user waits).
CONFIG_CHANGE_WAIT_SECONDS = 20


@dataclass(slots=True)
class StitchReport:
    events: int = 0  # events (re)assigned by this run
    components: int = 0
    entities_created: int = 0
    entities_deleted: int = 0
    merges: int = 0
    splits: int = 0
    refused: int = 0  # links refused by limits or held
    remaining: bool = False  # unstitched events left (stitch_pending: more batches to do)
    entity_ids: set[str] = field(default_factory=set, repr=False)  # entities whose attributes went stale
    timings: dict[str, float] = field(default_factory=dict, repr=False)  # seconds per step (bulk restitch)

    def add(self, other: StitchReport) -> None:
        for name in ("events", "components", "entities_created", "entities_deleted", "merges", "splits", "refused"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.entity_ids |= other.entity_ids


# --- public services ----------------------------------------------------------------------------------------


def stitch_pending(*, limit: int = 5000, deadline: float | None = None) -> StitchReport:
    """Stitch up to `limit` unstitched events (claimed with SKIP LOCKED, so workers share the queue).

    `remaining` tells whether more unstitched events exist (the task re-enqueues itself then). With `deadline`
    (`time.monotonic()`), LockBusy is raised once it has passed rather than retrying on."""
    report = with_retries(lambda: _stitch_pending_once(limit), deadline=deadline)
    report.remaining = _unstitched_exists()
    _attributes_enqueue_on_commit(report)
    return report


def stitch_pending_through(*, event_id: int, deadline: float, limit: int = 1000) -> bool:
    """Stitch every unstitched event up to `event_id` (a GDPR erase must see what was ingested before it started),
    a batch at a time like `stitch_pending`; batches other workers claimed are waited for. False when some are
    left at `deadline` (`time.monotonic()`): a backlog the caller should not wait out."""
    while _unstitched_exists(through=event_id):
        if time.monotonic() >= deadline or _rebuild_running():
            return False
        if not stitch_pending(limit=limit, deadline=deadline).events:
            time.sleep(0.02)  # the rest are being stitched by other workers right now
    return True


def _rebuild_running() -> bool:
    """Whether a full rebuild holds the global lock (stitching would wait for it, past any deadline)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock_shared(%s, %s)", [LOCK_NAMESPACE, GLOBAL_LOCK_KEY])
        return not cursor.fetchone()[0]


def component_restitch(
    *,
    identifier_ids: Iterable[int] = (),
    entity_ids: Iterable[str] = (),
    batch: int = 500,
    cause: str = RestitchCause.RESTITCH,
) -> StitchReport:
    """Re-stitch the components holding these identifiers and entities: after blocking or unblocking a value, a
    rule change or a hub decision. Their events' identifiers are extracted again with the current rules. The
    merges and splits it makes record `cause` (a RestitchCause)."""
    identifier_ids, entity_ids = sorted(set(identifier_ids)), sorted(set(entity_ids))
    causes = dict.fromkeys([*identifier_ids, *entity_ids], cause)
    report = StitchReport()
    for start in range(0, max(len(identifier_ids), len(entity_ids)), batch):
        ids, entities = identifier_ids[start : start + batch], entity_ids[start : start + batch]
        report.add(
            with_retries(lambda ids=ids, entities=entities: _restitch_once(ids, entities, causes=causes, cause=cause))
        )
    _attributes_enqueue_on_commit(report)
    return report


# A queued re-stitch that failed this many times is left for an administrator (logged), not retried.
MAX_RESTITCH_ATTEMPTS = 5


def restitch_request(*, identifier_ids: Iterable[int] = (), entity_ids: Iterable[str] = (), cause: str) -> None:
    """Queue the components holding these identifiers and entities for re-stitching (RestitchRequest rows, in the
    caller's transaction); after commit a worker works the queue off (in process without a broker). `cause` (a
    RestitchCause) is recorded on the merges and splits the re-stitch makes."""
    rows = [RestitchRequest(identifier_id=i, cause=cause) for i in sorted(set(identifier_ids))]
    rows += [RestitchRequest(customer_entity_id=e, cause=cause) for e in sorted(set(entity_ids))]
    if not rows:
        return
    RestitchRequest.objects.bulk_create(rows)

    def enqueue() -> None:
        from stitching.tasks import restitch_requested_enqueue

        restitch_requested_enqueue()

    # robust: the change is committed and its re-stitch queued; a failure to run it now (no broker, an error) is
    # logged, and the queue keeps the work for the next run.
    transaction.on_commit(enqueue, robust=True)


def restitch_requested(*, batch: int = 500) -> StitchReport:
    """Re-stitch the queued components, a batch per transaction, claimed with SKIP LOCKED (workers share the
    queue). When a batch fails, the rest of the run takes one request at a time, so only the failing one has its
    attempt counted (and goes behind the others); after MAX_RESTITCH_ATTEMPTS it is no longer taken (logged with
    its id, left for an administrator). Raises RestitchFailed at the end when any request failed."""
    report = StitchReport()
    failed: list[int] = []
    size = batch
    while True:
        claimed: list[int] = []
        try:
            part = with_retries(
                lambda claimed=claimed, size=size, skip=tuple(failed): _restitch_requested_once(
                    size, claimed, skip=skip
                )
            )
        except Exception:
            if not claimed:  # the claim itself failed (the database): nothing to single out
                raise
            if size > 1:
                size = 1
                continue
            with transaction.atomic():
                RestitchRequest.objects.filter(pk__in=claimed).update(attempts=F("attempts") + 1)
            log.exception("stitching: queued re-stitch request %s failed (attempt counted)", claimed[0])
            failed += claimed
            continue
        if part is None:
            break
        report.add(part)
    _attributes_enqueue_on_commit(report)
    if failed:
        raise RestitchFailed(f"queued re-stitch requests failed: {sorted(set(failed))}")
    return report


class RestitchFailed(Exception):
    """Some queued re-stitch requests failed (the others were done); see the log for each one's error."""


def _restitch_requested_once(batch: int, claimed: list[int], *, skip: tuple[int, ...]) -> StitchReport | None:
    """Claim up to `batch` requests (not those in `skip`: failed in this run), their ids into `claimed`, and
    re-stitch their components."""
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM stitching_restitch_requests WHERE id IN (SELECT id FROM stitching_restitch_requests "
            "WHERE attempts < %s AND NOT id = ANY(%s) ORDER BY attempts, id LIMIT %s FOR UPDATE SKIP LOCKED) "
            "RETURNING id, identifier_id, customer_entity_id, cause",
            [MAX_RESTITCH_ATTEMPTS, list(skip), batch],
        )
        rows = cursor.fetchall()
    claimed[:] = [row[0] for row in rows]
    if not rows:
        return None
    # In queue order (RETURNING does not keep the claim's): when one component was queued for several reasons,
    # the first one queued is recorded.
    rows.sort(key=lambda row: row[0])
    causes: dict[int | str, str] = {}
    for _, identifier_id, _, cause in rows:
        if identifier_id is not None:
            causes.setdefault(identifier_id, cause)
    entities = _entities_now({row[2] for row in rows if row[2] is not None})
    for _, _, entity_id, cause in rows:
        if entity_id is not None and entity_id in entities:
            causes.setdefault(entities[entity_id], cause)
    identifier_ids = sorted({row[1] for row in rows if row[1] is not None})
    # What no seed explains (a merge through another identifier, say) gets the claim's cause when it has one.
    claimed_causes = {row[3] for row in rows}
    common = claimed_causes.pop() if len(claimed_causes) == 1 else ""
    return _restitch_once(identifier_ids, sorted(set(entities.values())), causes=causes, cause=common)


def _entities_now(entity_ids: set[str]) -> dict[str, str]:
    """Each of these ids and the customer it is now: one merged away since it was queued is the customer it was
    merged into (its events are there; without this its re-stitch would find nothing and be lost); one gone
    otherwise (erased) is left out."""
    from stitching.selectors import entity_fate

    now = {pk: pk for pk in CustomerEntity.objects.filter(pk__in=entity_ids).values_list("pk", flat=True)}
    for missing in entity_ids - set(now):
        fate = entity_fate(entity_id=missing)
        if fate is not None and fate.merged_into:
            now[missing] = fate.merged_into
    return now


def restitch(
    *, source: DataSource | None = None, entity_id: str | None = None, progress=None, batch: int = 2000
) -> StitchReport:
    """Rebuild from scratch: everything (the bulk path), the components of one source's events, or one entity's
    component. `progress(n)` is called as events are done. Yields the same partition as incremental stitching."""
    if source is None and entity_id is None:
        from stitching.services.bulk import restitch_all

        return restitch_all(progress=progress)
    if entity_id is not None:
        return component_restitch(entity_ids=[entity_id])
    report = StitchReport()
    last_id = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM customer_events WHERE source_id = %s AND id > %s ORDER BY id LIMIT %s",
                [source.pk, last_id, batch],
            )
            rows = cursor.fetchall()
        if not rows:
            break
        last_id = rows[-1][0]
        event_ids = [r[0] for r in rows]
        part = with_retries(
            lambda event_ids=event_ids: _restitch_once((), (), event_ids=event_ids, cause=RestitchCause.RESTITCH)
        )
        report.add(part)
        if progress:
            progress(len(rows))
    _attributes_enqueue_on_commit(report)
    return report


def config_change_lock() -> None:
    """Called first in a transaction that changes the stitching configuration (rules, categories, blocked values,
    hub decisions), before it reads which identifiers and customers the change affects.

    Stitching transactions load the configuration after taking the global lock shared; this takes it exclusively,
    so it waits for the ones in flight and the next ones wait for its commit. Without it, a batch that had loaded
    the configuration before the change and committed after the change had listed what to re-stitch left its
    events extracted by the old rules, or linked by a value just blocked, for good: in a customer created or split
    by that batch (not listed), or through an identifier it created (not found).

    Waits at most CONFIG_CHANGE_WAIT_SECONDS (a full re-stitch holds the lock for minutes on a large data set), then
    raises StitchingBusy: the change's transaction is rolled back, nothing changed."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)",
            [f"{int(CONFIG_CHANGE_WAIT_SECONDS * 1000)}ms"],
        )
        previous = cursor.fetchone()[0]
        try:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_NAMESPACE, GLOBAL_LOCK_KEY])
        except OperationalError as error:
            if getattr(error.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            raise StitchingBusy(
                f"Stitching is busy: what is being stitched now (a full re-stitch, a very large customer) held the "
                f"configuration for over {CONFIG_CHANGE_WAIT_SECONDS} s. Nothing was changed; try again in a minute."
            ) from None
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous])


def system_source_id() -> int:
    """The system source's id, 0 while it does not exist (no merge or split happened yet)."""
    return DataSource.objects.filter(slug=SYSTEM_SOURCE_SLUG).values_list("pk", flat=True).first() or 0


def system_source_get() -> DataSource:
    """The "cdp" data source of system events (merges, splits); created on first use, never stitched."""
    source = DataSource.objects.filter(slug=SYSTEM_SOURCE_SLUG).first()
    if source is None:
        with transaction.atomic():
            source = DataSource.objects.select_for_update().filter(slug=SYSTEM_SOURCE_SLUG).first()
            if source is None:
                source, _ = data_sources.data_source_create(
                    slug=SYSTEM_SOURCE_SLUG,
                    name="CDP system events",
                    type=DataSource.Type.OTHER,
                    description="Merges and splits of customer entities, emitted by identity stitching.",
                    with_write_key=False,
                    system=True,
                )
    return source


# --- transactions -------------------------------------------------------------------------------------------


def with_retries(work, *, deadline: float | None = None) -> StitchReport:
    """Run `work` in a transaction, retrying while another worker holds part of its component (LockBusy), and
    after PostgreSQL broke a deadlock by aborting it (two transactions queueing and claiming the same customers
    for their attributes in different orders: the other one went through). With `deadline` (`time.monotonic()`),
    LockBusy is raised once it has passed."""
    deadlocks = 0
    for attempt in range(MAX_ATTEMPTS):
        try:
            with transaction.atomic():
                return work()
        except LockBusy:
            # Another worker is changing an overlapping component; it will be done in milliseconds.
            if deadline is not None and time.monotonic() >= deadline:
                raise
        except OperationalError as error:
            if not is_deadlock(error) or deadlocks >= MAX_DEADLOCK_RETRIES:
                raise
            deadlocks += 1
            log.info("stitching: deadlock broken by PostgreSQL, retrying (%d)", deadlocks)
        time.sleep(min(0.5, 0.01 * (attempt + 1)) * (0.5 + random.random()))
    raise RuntimeError("stitching: could not lock a component after many attempts")


def _stitch_pending_once(limit: int) -> StitchReport:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", [LOCK_NAMESPACE, GLOBAL_LOCK_KEY])
        config = config_load()  # under the lock: see config_change_lock
        # The queue: events whose row in customer_event_entities has no customer yet (a partial index).
        cursor.execute(
            "SELECT e.id, e.source_id, e.type, e.payload::text, e.event_time FROM customer_events e JOIN "
            "(SELECT event_id FROM customer_event_entities WHERE customer_entity_id IS NULL ORDER BY event_id "
            "LIMIT %s FOR UPDATE SKIP LOCKED) q ON q.event_id = e.id ORDER BY e.id",
            [limit],
        )
        claimed = cursor.fetchall()
        if not claimed:
            return StitchReport()
        times = {row[0]: row[4] for row in claimed}
        return _stitch(
            cursor, config, [row[:4] for row in claimed], seed_identifier_ids=(), seed_entity_ids=(), times=times
        )


def _restitch_once(
    identifier_ids, entity_ids, *, event_ids: Iterable[int] = (), causes: dict | None = None, cause: str = ""
) -> StitchReport:
    """Re-stitch the components of these identifiers, entities and events. `causes` maps a seed (identifier id or
    entity id) to why it is re-stitched; `cause` is for the rest (the events')."""
    system = system_source_id()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", [LOCK_NAMESPACE, GLOBAL_LOCK_KEY])
        config = config_load()  # under the lock: see config_change_lock
        # The seeds: events carrying these identifiers (whatever their status), events of these entities.
        cursor.execute(
            "SELECT e.id, e.source_id, e.type, e.payload::text FROM customer_events e WHERE e.source_id <> %s AND "
            "(e.id = ANY(%s) OR e.id IN "
            "(SELECT event_id FROM customer_event_entities WHERE customer_entity_id = ANY(%s)) OR e.id IN "
            "(SELECT event_id FROM stitching_event_identifiers WHERE identifier_id = ANY(%s))) ORDER BY e.id",
            [system, list(event_ids), list(entity_ids), list(identifier_ids)],
        )
        seeds = cursor.fetchall()
        # Every event carrying these identifiers is a seed, extracted again under the identifiers' locks: that
        # re-evaluates whether they are blocked (a value was blocked or unblocked). (Updating their links' status
        # here, before those locks, deadlocked with a transaction holding them and writing the same links.)
        return _stitch(
            cursor,
            config,
            seeds,
            seed_identifier_ids=identifier_ids,
            seed_entity_ids=entity_ids,
            reextract=True,
            causes=causes or {},
            cause=cause,
        )


# --- the core -----------------------------------------------------------------------------------------------


def _lock_key(text: str) -> int:
    """A signed 32-bit advisory lock key; collisions only serialise more than needed."""
    key = zlib.crc32(text.encode())
    return key - (1 << 32) if key >= 1 << 31 else key


def _identifier_key(category: str, value: str) -> int:
    return _lock_key(f"i\x1f{category}\x1f{value}")


def _entity_key(entity_id: str) -> int:
    return _lock_key(f"e\x1f{entity_id}")


def _stitch(
    cursor,
    config: StitchConfig,
    events: list[tuple],
    *,
    seed_identifier_ids: Iterable[int],
    seed_entity_ids: Iterable[str],
    reextract: bool = False,
    times: dict[int, datetime] | None = None,
    causes: dict[int | str, str] | None = None,
    cause: str = "",
) -> StitchReport:
    """Extract the identifiers of `events` (id, source_id, type, payload text), lock and recompute their
    components, write the result. Runs inside the caller's transaction. With `times` (new events' event_time:
    incremental stitching), events that provably cannot change any existing partition are attached directly
    (`_attach_simple`); only the others go through component discovery."""
    extracted: dict[int, list[Extracted]] = {}
    for event_id, source_id, event_type, payload in events:
        extracted[event_id] = identifiers_extract(
            config, source_id=source_id, event_type=event_type, payload=orjson.loads(payload)
        )
    # (2) Our own identifiers, blocking and in sorted order.
    values = sorted({(x.category, x.value[:MAX_IDENTIFIER_LENGTH]) for xs in extracted.values() for x in xs})
    held: set[int] = set()
    _locks_take(cursor, sorted({_identifier_key(c, v) for c, v in values}), held, wait=True)
    owners: dict[int, str | None] = {}
    identifier_ids = _identifiers_upsert(cursor, values, owners=owners)
    unlinked: set[int] = set()
    if reextract:
        cursor.execute(
            "DELETE FROM stitching_event_identifiers WHERE event_id = ANY(%s) RETURNING identifier_id",
            [[e[0] for e in events]],
        )
        # Identifiers these events no longer carry (a rule deleted or changed): seeds too, so the other events
        # that carry them (a link refused because of these events, say) are recomputed and their owner follows.
        unlinked = {row[0] for row in cursor.fetchall()} - set(identifier_ids.values())
    _edges_insert(cursor, extracted, identifier_ids)

    fast = StitchReport()
    seed_events = set(extracted)
    if times is not None:
        fast, seed_events = _attach_simple(cursor, config, extracted, identifier_ids, owners, times, held)
        if not seed_events:
            return _stale_queue(cursor, fast)

    # (3) Discover, lock, discover again until stable.
    seed_identifiers = set(seed_identifier_ids) | unlinked
    seed_entities = set(seed_entity_ids)
    system = system_source_id()
    while True:
        component_events, component_identifiers, entities = _component_discover(
            cursor, seed_events, seed_identifiers, seed_entities, system
        )
        cursor.execute(
            "SELECT category_id, value FROM stitching_identifiers WHERE id = ANY(%s)", [list(component_identifiers)]
        )
        keys = {_identifier_key(c, v) for c, v in cursor.fetchall()} | {_entity_key(e) for e in entities}
        missing = sorted(keys - held)
        if missing:
            _locks_take(cursor, missing, held, wait=False)
        elif reextract and (others := component_events - set(extracted)):
            # A re-stitch extracts its whole component again, not only the seeds it read before it held the locks:
            # events another transaction moved into it meanwhile, or that a change before split off the customer
            # it was asked for, were extracted by the configuration of their time.
            component_identifiers |= _reextract(cursor, config, others, extracted, held)
        else:
            break
        seed_events, seed_identifiers, seed_entities = component_events, component_identifiers, entities

    report = _component_write(
        cursor,
        config,
        component_events,
        system,
        seed_identifier_ids=seed_identifier_ids,
        causes=causes or {},
        cause=cause,
    )
    report.add(fast)
    return _stale_queue(cursor, report)


def _stale_queue(cursor, report: StitchReport) -> StitchReport:
    """Queue the customers whose attributes went stale, once per transaction and in id order, as
    `entities_mark_stale` does: inserts of the same ids in different orders (two statements, each sorted) made a
    deadlock with a transaction queueing every customer. Customers merged away since the fast path are left out."""
    if report.entity_ids:
        cursor.execute(entities_queue_sql(), [sorted(report.entity_ids)])
    return report


def _reextract(cursor, config: StitchConfig, event_ids: set[int], extracted: dict, held: set[int]) -> set[int]:
    """Extract these events' identifiers again (into `extracted`) and replace the links of those whose identifiers
    changed (usually none: a component can be large, its links are rewritten only where they differ); locks the
    identifiers those now carry without waiting (LockBusy). Returns the identifiers they carried or carry now."""
    cursor.execute(
        "SELECT id, source_id, type, payload::text FROM customer_events WHERE id = ANY(%s)", [sorted(event_ids)]
    )
    found = {
        event_id: identifiers_extract(config, source_id=source_id, event_type=event_type, payload=orjson.loads(payload))
        for event_id, source_id, event_type, payload in cursor.fetchall()
    }
    extracted.update(found)
    cursor.execute(
        "SELECT ei.event_id, i.category_id, i.value, ei.rule_id, ei.status, ei.reason FROM stitching_event_identifiers "
        "ei JOIN stitching_identifiers i ON i.id = ei.identifier_id WHERE ei.event_id = ANY(%s)",
        [sorted(found)],
    )
    stored: dict[int, set] = {}
    for event_id, category, value, rule_id, status, reason in cursor.fetchall():
        stored.setdefault(event_id, set()).add((category, value, rule_id, reason if status == BLOCKED else None))
    changed = {
        event_id: xs
        for event_id, xs in found.items()
        if {(x.category, x.value[:MAX_IDENTIFIER_LENGTH], x.rule_id, x.blocked) for x in xs}
        != stored.get(event_id, set())
    }
    if not changed:
        return set()
    values = sorted({(x.category, x.value[:MAX_IDENTIFIER_LENGTH]) for xs in changed.values() for x in xs})
    _locks_take(cursor, sorted({_identifier_key(c, v) for c, v in values} - held), held, wait=False)
    identifier_ids = _identifiers_upsert(cursor, values)
    cursor.execute(
        "DELETE FROM stitching_event_identifiers WHERE event_id = ANY(%s) RETURNING identifier_id", [sorted(changed)]
    )
    carried = {row[0] for row in cursor.fetchall()}
    _edges_insert(cursor, changed, identifier_ids)
    return carried | set(identifier_ids.values())


def _attach_simple(
    cursor,
    config: StitchConfig,
    extracted: dict[int, list[Extracted]],
    identifier_ids: dict[tuple[str, str], int],
    owners: dict[int, str | None],
    times: dict[int, datetime],
    held: set[int],
) -> tuple[StitchReport, set[int]]:
    """The incremental fast path: attach new events whose outcome is known without recomputing a component.

    The batch's events are grouped by shared linkable identifiers. A group is *simple* when its identifiers that
    existed before are all owned by one entity E (or there are none), and when adding it provably changes no
    decision of `partition_compute` on E's raw component: E has no refused (limit / held) link on its events or
    identifiers (so its raw component is exactly its events), and with the group's new identifiers E stays within
    every category limit and at `config.simple_max` identifiers at most (so no count can exceed a limit or a cap at
    any point of the canonical-order pass, a limit with a window counting fewer values, never more; and no
    identifier can make `hub_limit` merges: each merge needs a group started by an identifier of its own). Then the
    partition of E's component plus the group is one group, every link linked, and E keeps its id: exactly what the
    full computation gives. A group with no earlier identifier is a new customer under the same limit and hub test.
    Everything else (merges, refused links, held or limited identifiers) is returned for the exact path. Holds the
    identifiers' locks; takes E's lock without waiting."""
    linkable: dict[int, list[tuple[int, str]]] = {}
    for event_id, xs in extracted.items():
        seen: dict[int, str] = {}
        for x in xs:
            if x.blocked is None:
                seen[identifier_ids[(x.category, x.value[:MAX_IDENTIFIER_LENGTH])]] = x.category
        linkable[event_id] = list(seen.items())
    new_ids = {i for i, owner in owners.items() if owner is _NEW}
    # Union-find over the batch: events joined by shared identifiers.
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    first_event: dict[int, int] = {}
    for event_id, links in linkable.items():
        parent.setdefault(event_id, event_id)
        for identifier_id, _ in links:
            other = first_event.setdefault(identifier_id, event_id)
            a, b = find(event_id), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for event_id in linkable:
        groups.setdefault(find(event_id), []).append(event_id)

    slow: set[int] = set()
    by_entity: dict[str | None, list[list[int]]] = {}
    for members in groups.values():
        identifiers = {i for e in members for i, _ in linkable[e]}
        olds = {owners[i] for i in identifiers if i not in new_ids}
        if None in olds or len(olds) > 1:
            slow.update(members)  # a merge, or an identifier whose links were refused or held
        else:
            by_entity.setdefault(next(iter(olds)) if olds else None, []).append(members)
    entities = sorted(e for e in by_entity if e is not None)
    counts: dict[str, dict[str, int]] = {e: {} for e in entities}
    refused: set[str] = set()
    if entities:
        _locks_take(cursor, sorted({_entity_key(e) for e in entities} - held), held, wait=False)
        cursor.execute(
            "SELECT customer_entity_id, category_id, count(*) FROM stitching_identifiers "
            "WHERE customer_entity_id = ANY(%s) GROUP BY 1, 2",
            [entities],
        )
        for entity, category, n in cursor.fetchall():
            counts[entity][category] = n
        cursor.execute(
            "SELECT a.customer_entity_id FROM stitching_event_identifiers ei JOIN customer_event_entities a "
            "ON a.event_id = ei.event_id WHERE ei.status IN ('limit', 'held') AND a.customer_entity_id = ANY(%(e)s) "
            "UNION SELECT i.customer_entity_id FROM stitching_event_identifiers ei JOIN stitching_identifiers i "
            "ON i.id = ei.identifier_id WHERE ei.status IN ('limit', 'held') AND i.customer_entity_id = ANY(%(e)s)",
            {"e": entities},
        )
        refused = {row[0] for row in cursor.fetchall()}
    limits = {slug: c.max_per_entity for slug, c in config.categories.items() if c.max_per_entity is not None}

    def fits(base: dict[str, int], members_list: list[list[int]]) -> bool:
        total = dict(base)
        for members in members_list:
            for identifier_id, category in {link for e in members for link in linkable[e]}:
                if identifier_id in new_ids:
                    total[category] = total.get(category, 0) + 1
        if sum(total.values()) > config.simple_max:
            return False
        return all(n <= limits[slug] for slug, n in total.items() if slug in limits)

    assign: dict[int, str] = {}
    created: list[str] = []
    for entity, members_list in by_entity.items():
        if entity is None:
            for members in members_list:
                if fits({}, [members]):
                    new = uuid.uuid4().hex
                    created.append(new)
                    assign.update((e, new) for e in members)
                else:
                    slow.update(members)
        elif entity not in refused and fits(counts[entity], members_list):
            assign.update((e, entity) for members in members_list for e in members)
        else:
            slow.update(e for members in members_list for e in members)
    report = StitchReport()
    if not assign:
        return report, slow
    now = datetime.now(UTC)
    if created:
        cursor.execute(
            "INSERT INTO customer_entities (id, created, modified, attributes) "
            "SELECT unnest(%s::text[]), %s, %s, '{}'::jsonb",
            [created, now, now],
        )
    event_ids = sorted(assign)
    cursor.execute(
        "UPDATE customer_event_entities a SET customer_entity_id = m.entity FROM unnest(%s::bigint[], %s::text[]) "
        "AS m(id, entity) WHERE a.event_id = m.id",
        [event_ids, [assign[e] for e in event_ids]],
    )
    first_seen: dict[int, datetime] = {}
    identifier_entity: dict[int, str] = {}
    for event_id in event_ids:
        for identifier_id, _ in linkable[event_id]:
            identifier_entity[identifier_id] = assign[event_id]
            seen = first_seen.get(identifier_id)
            if seen is None or times[event_id] < seen:
                first_seen[identifier_id] = times[event_id]
    if identifier_entity:
        ids = sorted(identifier_entity)
        cursor.execute(
            "UPDATE stitching_identifiers i SET customer_entity_id = u.entity, "
            "first_seen = coalesce(least(i.first_seen, u.first_seen), u.first_seen) "
            "FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[]) AS u(id, entity, first_seen) WHERE i.id = u.id",
            [ids, [identifier_entity[i] for i in ids], [first_seen[i] for i in ids]],
        )
    touched = sorted(set(assign.values()))
    report.events = len(event_ids)
    report.entities_created = len(created)
    report.components = len(touched)
    report.entity_ids = set(touched)
    return report, slow


def entity_component_lock(entity_id: str) -> None:
    """Lock one entity's component for a change made outside the engine (e.g. GDPR erase), inside `with_retries`.

    The shared global lock, then advisory locks on the entity and on every identifier its events carry or it
    owns: first waiting in sorted order (like the engine's own identifiers, so no cycle), then, for any that
    appeared meanwhile, without waiting (LockBusy: `with_retries` retries the transaction)."""
    held: set[int] = set()
    first = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", [LOCK_NAMESPACE, GLOBAL_LOCK_KEY])
        while True:
            cursor.execute(
                """
                SELECT i.category_id, i.value FROM stitching_identifiers i
                WHERE i.customer_entity_id = %s OR i.id IN (
                    SELECT ei.identifier_id FROM stitching_event_identifiers ei
                    JOIN customer_event_entities a ON a.event_id = ei.event_id WHERE a.customer_entity_id = %s)
                """,
                [entity_id, entity_id],
            )
            keys = {_identifier_key(c, v) for c, v in cursor.fetchall()} | {_entity_key(entity_id)}
            missing = sorted(keys - held)
            if not missing:
                return
            _locks_take(cursor, missing, held, wait=first)
            first = False


def _locks_take(cursor, keys: list[int], held: set[int], *, wait: bool) -> None:
    if not keys:
        return
    if wait:
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(%s, k)) FROM unnest(%s::int[]) WITH ORDINALITY AS t(k, n)",
            [LOCK_NAMESPACE, keys],
        )
    else:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE NOT pg_try_advisory_xact_lock(%s, k)) "
            "FROM unnest(%s::int[]) WITH ORDINALITY AS t(k, n)",
            [LOCK_NAMESPACE, keys],
        )
        if cursor.fetchone()[0]:
            raise LockBusy()
    held.update(keys)


# In `_identifiers_upsert`'s owners: the identifier did not exist before this transaction.
_NEW = "\x00new"


def _identifiers_upsert(
    cursor, values: list[tuple[str, str]], *, owners: dict[int, str | None] | None = None
) -> dict[tuple[str, str], int]:
    """Ids of these (category, value) identifiers, created when missing. `owners` receives each one's current
    entity (None: none of its links is made), or _NEW for those this call created."""
    if not values:
        return {}
    categories = [c for c, _ in values]
    texts = [v for _, v in values]
    cursor.execute(
        "INSERT INTO stitching_identifiers (category_id, value) SELECT * FROM unnest(%s::text[], %s::text[]) "
        "ON CONFLICT (category_id, value) DO NOTHING RETURNING id",
        [categories, texts],
    )
    created = {row[0] for row in cursor.fetchall()}
    cursor.execute(
        "SELECT i.id, i.category_id, i.value, i.customer_entity_id FROM stitching_identifiers i "
        "JOIN unnest(%s::text[], %s::text[]) AS t(c, v) ON i.category_id = t.c AND i.value = t.v",
        [categories, texts],
    )
    result = {}
    for i, c, v, entity in cursor.fetchall():
        result[(c, v)] = i
        if owners is not None:
            owners[i] = _NEW if i in created else entity
    return result


def _edges_insert(cursor, extracted: dict[int, list[Extracted]], identifier_ids: dict) -> None:
    rows = [
        (event_id, identifier_ids[(x.category, x.value[:MAX_IDENTIFIER_LENGTH])], x.rule_id, x.blocked)
        for event_id, xs in extracted.items()
        for x in xs
    ]
    if not rows:
        return
    event_ids, ids, rule_ids, blocked = zip(*rows, strict=True)
    cursor.execute(
        "INSERT INTO stitching_event_identifiers (event_id, identifier_id, rule_id, status, reason) "
        "SELECT e, i, r, CASE WHEN b IS NULL THEN 'linked' ELSE 'blocked' END, coalesce(b, '') "
        "FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::text[]) AS t(e, i, r, b) "
        "ON CONFLICT (event_id, identifier_id) DO UPDATE SET rule_id = EXCLUDED.rule_id, status = EXCLUDED.status, "
        "reason = EXCLUDED.reason",
        [list(event_ids), list(ids), list(rule_ids), list(blocked)],
    )


def _component_discover(cursor, events: set[int], identifiers: set[int], entities: set[str], system: int):
    """Events and identifiers reachable from the seeds over non-blocked links, closed under "same entity";
    and the entities those events belong to now."""
    events, identifiers, entities = set(events), set(identifiers), set(entities)
    new_events, new_identifiers, new_entities = set(events), set(identifiers), set(entities)
    while new_events or new_identifiers or new_entities:
        found_events: set[int] = set()
        found_identifiers: set[int] = set()
        if new_identifiers:
            cursor.execute(
                "SELECT DISTINCT event_id FROM stitching_event_identifiers WHERE identifier_id = ANY(%s) "
                "AND status <> 'blocked'",
                [list(new_identifiers)],
            )
            found_events |= {r[0] for r in cursor.fetchall()}
        if new_entities:
            cursor.execute(
                "SELECT e.id FROM customer_event_entities a JOIN customer_events e ON e.id = a.event_id "
                "WHERE a.customer_entity_id = ANY(%s) AND e.source_id <> %s",
                [list(new_entities), system],
            )
            found_events |= {r[0] for r in cursor.fetchall()}
        if new_events:
            cursor.execute(
                "SELECT DISTINCT identifier_id FROM stitching_event_identifiers WHERE event_id = ANY(%s) "
                "AND status <> 'blocked'",
                [list(new_events)],
            )
            found_identifiers = {r[0] for r in cursor.fetchall()}
            # A join on unnest, not `event_id = ANY(...)`: with a long list the planner would rather scan the
            # partial entity index than probe the primary key.
            cursor.execute(
                "SELECT DISTINCT a.customer_entity_id FROM unnest(%s::bigint[]) AS t(id) "
                "JOIN customer_event_entities a ON a.event_id = t.id WHERE a.customer_entity_id IS NOT NULL",
                [list(new_events)],
            )
            found_entities = {r[0] for r in cursor.fetchall()}
        else:
            found_entities = set()
        new_events = found_events - events
        new_identifiers = found_identifiers - identifiers
        new_entities = found_entities - entities
        events |= new_events
        identifiers |= new_identifiers
        entities |= new_entities
    return events, identifiers, entities


def _component_write(
    cursor,
    config: StitchConfig,
    event_ids: set[int],
    system: int,
    *,
    seed_identifier_ids: Iterable[int],
    causes: dict[int | str, str],
    cause: str,
) -> StitchReport:
    report = StitchReport(components=1)
    ids = list(event_ids)
    cursor.execute(
        "SELECT e.id, e.event_time, e.source_id, e.idempotency_key, a.customer_entity_id FROM customer_events e "
        "LEFT JOIN customer_event_entities a ON a.event_id = e.id WHERE e.id = ANY(%s)",
        [ids],
    )
    nodes: dict[int, EventNode] = {}
    old_entity: dict[int, str | None] = {}
    for event_id, event_time, source_id, key, entity_id in cursor.fetchall():
        nodes[event_id] = EventNode(event_id, event_time, source_id, key, [])
        old_entity[event_id] = entity_id
    cursor.execute(
        "SELECT ei.event_id, ei.identifier_id, i.category_id, i.value, coalesce(r.priority, 0), ei.status, ei.reason "
        "FROM stitching_event_identifiers ei JOIN stitching_identifiers i ON i.id = ei.identifier_id "
        "LEFT JOIN stitching_stitchingrule r ON r.id = ei.rule_id "
        "WHERE ei.event_id = ANY(%s) AND ei.status <> 'blocked'",
        [ids],
    )
    stored_status: dict[tuple[int, int], tuple[str, str]] = {}
    identifier_category: dict[int, str] = {}
    for event_id, identifier_id, category, value, priority, status, reason in cursor.fetchall():
        nodes[event_id].links.append(Link(identifier_id, category, value, priority))
        stored_status[(event_id, identifier_id)] = (status, reason)
        identifier_category[identifier_id] = category
    partition = partition_compute(nodes.values(), categories=config.categories, **config.partition_options())
    group_entity = _entities_assign(cursor, partition, old_entity)
    now = datetime.now(UTC)

    # New entities, then events (only those whose entity changes).
    existing = set(filter(None, old_entity.values()))
    created = [e for e in group_entity if e not in existing]
    if created:
        cursor.execute(
            "INSERT INTO customer_entities (id, created, modified, attributes) "
            "SELECT unnest(%s::text[]), %s, %s, '{}'::jsonb",
            [created, now, now],
        )
    report.entities_created = len(created)
    moves = [
        (event_id, group_entity[g])
        for g, members in enumerate(partition.groups)
        for event_id in members
        if old_entity[event_id] != group_entity[g]
    ]
    if moves:
        cursor.execute(
            "UPDATE customer_event_entities a SET customer_entity_id = m.entity "
            "FROM unnest(%s::bigint[], %s::text[]) AS m(id, entity) WHERE a.event_id = m.id",
            [[m[0] for m in moves], [m[1] for m in moves]],
        )
    report.events = len(moves)

    # Link statuses.
    changed = []
    for key, (status, reason) in stored_status.items():
        new = partition.refused.get(key, (LINKED, ""))
        if new != (status, reason):
            changed.append((*key, *new))
    report.refused = len(partition.refused)
    if changed:
        cursor.execute(
            "UPDATE stitching_event_identifiers ei SET status = c.s, reason = c.r "
            "FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[]) AS c(e, i, s, r) "
            "WHERE ei.event_id = c.e AND ei.identifier_id = c.i",
            [[c[0] for c in changed], [c[1] for c in changed], [c[2] for c in changed], [c[3] for c in changed]],
        )
    # Identifiers: their current entity (NULL when no link of theirs was made).
    identifiers = sorted(identifier_category)
    groups = partition.identifier_group
    first_seen: dict[int, datetime] = {}
    for node in nodes.values():
        for link in node.links:
            seen = first_seen.get(link.identifier_id)
            if seen is None or node.event_time < seen:
                first_seen[link.identifier_id] = node.event_time
    # (`prev` is the row before the update: customers that gained or lost an identifier get their attributes
    # recomputed even when none of their events moved.)
    cursor.execute(
        "UPDATE stitching_identifiers i SET customer_entity_id = u.entity, "
        "first_seen = coalesce(least(i.first_seen, u.first_seen), u.first_seen) "
        "FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[]) AS u(id, entity, first_seen), "
        "stitching_identifiers prev WHERE i.id = u.id AND prev.id = i.id "
        "RETURNING prev.customer_entity_id, i.customer_entity_id",
        [
            identifiers,
            [group_entity[groups[i]] if i in groups else None for i in identifiers],
            [first_seen.get(i) for i in identifiers],
        ],
    )
    owners_changed = {entity for old, new in cursor.fetchall() if old != new for entity in (old, new) if entity}
    # Identifiers of these customers that no event links any more (their value was blocked, or the rule that
    # extracted them was deleted or changed): no longer theirs, so attributes and search stop showing them.
    cursor.execute(
        "UPDATE stitching_identifiers i SET customer_entity_id = NULL FROM stitching_identifiers prev "
        "WHERE prev.id = i.id AND i.customer_entity_id = ANY(%s) AND NOT i.id = ANY(%s) AND NOT EXISTS "
        "(SELECT 1 FROM stitching_event_identifiers ei WHERE ei.identifier_id = i.id AND ei.status <> 'blocked') "
        "RETURNING prev.customer_entity_id",
        [sorted(existing | set(group_entity)), identifiers],
    )
    owners_changed |= {row[0] for row in cursor.fetchall()}
    # The seeds too: a value just blocked has no link left here, and its pending review nothing to decide.
    _hub_reviews_write(cursor, partition, sorted({*identifiers, *seed_identifier_ids}))

    # History, system events, stale marks, entities left empty.
    stale: set[str] = set(owners_changed)
    for event_id, entity in moves:
        stale.add(entity)
        if old_entity[event_id]:
            stale.add(old_entity[event_id])
    changes = _changes_record(
        cursor,
        partition,
        nodes,
        group_entity,
        old_entity,
        identifier_category,
        seed_identifier_ids,
        now,
        system,
        causes=causes,
        cause=cause,
    )
    report.merges = sum(1 for c in changes if c == EntityChange.Kind.MERGE)
    report.splits = sum(1 for c in changes if c == EntityChange.Kind.SPLIT)
    gone = sorted(set(filter(None, old_entity.values())) - set(group_entity))
    if gone:
        # Their remaining events are system events: they follow the entity that got the earliest event.
        heirs = {}
        for g, members in enumerate(partition.groups):
            for event_id in members:
                old = old_entity[event_id]
                if old in gone and old not in heirs:
                    heirs[old] = group_entity[g]
        cursor.execute(
            "UPDATE customer_event_entities a SET customer_entity_id = h.heir FROM unnest(%s::text[], %s::text[]) "
            "AS h(old, heir) WHERE a.customer_entity_id = h.old",
            [gone, [heirs[o] for o in gone]],
        )
        cursor.execute("DELETE FROM customer_entities WHERE id = ANY(%s)", [gone])
        report.entities_deleted = len(gone)
    stale -= set(gone)
    report.entity_ids = stale
    return report


def _entities_assign(cursor, partition: Partition, old_entity: dict[int, str | None]) -> list[str]:
    """An entity id per group: the oldest (created, id) existing entity among its events not taken by an earlier
    group (groups in canonical order of their first event), else a new one. A stable rule, never arbitrary."""
    olds = sorted(set(filter(None, old_entity.values())))
    created: dict[str, datetime] = {}
    if olds:
        cursor.execute("SELECT id, created FROM customer_entities WHERE id = ANY(%s)", [olds])
        created = dict(cursor.fetchall())
    taken: set[str] = set()
    result = []
    for members in partition.groups:
        candidates = sorted(
            {old_entity[e] for e in members if old_entity[e] and old_entity[e] not in taken},
            key=lambda x: (created.get(x), x),
        )
        entity = candidates[0] if candidates else uuid.uuid4().hex
        taken.add(entity)
        result.append(entity)
    return result


# Held hubs (identifier ids, counts) get a pending review. One whose value was blocked in review is held again
# only once the block is lifted: the review is reopened with the new count, to be decided again. An approval
# stays (approved identifiers are held only by a transaction that loaded the configuration before the approval).
HUB_REVIEWS_OPEN_SQL = (
    "INSERT INTO stitching_hubreview (identifier_id, entity_count, status, created) "
    "SELECT i, n, 'pending', now() FROM unnest(%s::bigint[], %s::int[]) AS t(i, n) "
    "ON CONFLICT (identifier_id) DO UPDATE SET entity_count = EXCLUDED.entity_count, status = 'pending', "
    "decided_by_id = NULL, decided = NULL, created = CASE WHEN stitching_hubreview.status = 'pending' "
    "THEN stitching_hubreview.created ELSE EXCLUDED.created END "
    "WHERE stitching_hubreview.status <> 'approved' "
    # A run that loaded its configuration just before an administrator blocked the value in review must not undo
    # the decision: a blocked review reopens only once its value is no longer blocked.
    "AND NOT (stitching_hubreview.status = 'blocked' AND EXISTS (SELECT 1 FROM stitching_blockedvalue b "
    "JOIN stitching_identifiers i ON i.id = stitching_hubreview.identifier_id "
    "WHERE b.category_id = i.category_id AND b.value = i.value))"
)


def _hub_reviews_write(cursor, partition: Partition, identifiers: list[int]) -> None:
    if partition.hubs:
        cursor.execute(HUB_REVIEWS_OPEN_SQL, [list(partition.hubs), list(partition.hubs.values())])
    # A pending review of an identifier that is no longer a hub has nothing left to decide.
    cursor.execute(
        "DELETE FROM stitching_hubreview WHERE status = 'pending' AND identifier_id = ANY(%s) "
        "AND NOT identifier_id = ANY(%s)",
        [identifiers, list(partition.hubs)],
    )


def _changes_record(
    cursor,
    partition,
    nodes,
    group_entity,
    old_entity,
    identifier_category,
    seed_identifier_ids,
    now,
    system,
    *,
    causes: dict[int | str, str],
    cause: str,
) -> list[str]:
    """Record the merges and splits of a component, each with the identifier that made it and why the component
    was stitched (`causes` of its seeds, else `cause`)."""
    loaded: dict[int, set[int]] = {}

    def seed_events() -> dict[int, set[int]]:
        """The component's events carrying each seed identifier (a value just blocked or unblocked, say), read once
        when first needed."""
        if seed_identifier_ids and not loaded:
            cursor.execute(
                "SELECT identifier_id, event_id FROM stitching_event_identifiers "
                "WHERE identifier_id = ANY(%s) AND event_id = ANY(%s)",
                [sorted(seed_identifier_ids), list(old_entity)],
            )
            for identifier_id, event_id in cursor.fetchall():
                loaded.setdefault(identifier_id, set()).add(event_id)
        return loaded

    def seed_identifier(events: set[int]) -> int | None:
        """The first seed identifier carried by one of these events."""
        carried = seed_events()
        return next((i for i in sorted(carried) if carried[i] & events), None)

    def joining_identifier(event_id: int, joined_by: int) -> int:
        """The identifier to name for a merge made by `event_id`: a seed it carries (the hub just approved, the
        value just unblocked, the link a looser limit lets through) explains the merge better than the identifier of
        the group it happened to absorb."""
        return seed_identifier({event_id}) or joined_by

    def rejoining_step(members: list[int]) -> tuple[int, int | None]:
        """The (event, identifier) that makes customers one again when no event joined two groups of the new
        partition (a link the re-stitch restored: a value unblocked, a looser limit): in canonical
        order, the first event linking an identifier that an event of another of those customers brought (one
        carrying a seed, the value just unblocked, if any does). The merge history links that event, so it must
        be one that carries the identifier, not just the customer's latest."""
        seeds = seed_events()
        owner: dict[int, str] = {}
        found = None
        for event_id in members:
            old = old_entity[event_id]
            for link in nodes[event_id].links if old else ():
                if (event_id, link.identifier_id) in partition.refused:
                    continue
                first = owner.setdefault(link.identifier_id, old)
                if first != old:
                    if link.identifier_id in seeds:
                        return event_id, link.identifier_id
                    found = found or (event_id, link.identifier_id)
        return found or (members[-1], seed_identifier(set(members)))

    def refused_identifier(events: set[int]) -> int | None:
        """An identifier the new partition refuses on one of these events (a limit tightened, say): what a split
        without a seed happened at."""
        return min((i for e, i in partition.refused if e in events), default=None)

    def category_of(identifier_id: int | None) -> str | None:
        if identifier_id is None:
            return None
        if identifier_id not in identifier_category:  # a blocked value has no link left in the component
            cursor.execute("SELECT category_id FROM stitching_identifiers WHERE id = %s", [identifier_id])
            identifier_category[identifier_id] = cursor.fetchone()[0]
        return identifier_category[identifier_id]

    kinds = []
    for g, members in enumerate(partition.groups):
        olds = {old_entity[e] for e in members if old_entity[e]}
        if len(olds) > 1:
            if partition.merges.get(g):
                event_id, joined_by = partition.merges[g][-1]
                identifier_id = joining_identifier(event_id, joined_by)
            else:  # no event joined two groups: a link the re-stitch restored (a value unblocked, say)
                event_id, identifier_id = rejoining_step(members)
            others = sorted(olds - {group_entity[g]})
            why = (
                causes.get(identifier_id)
                or causes.get(seed_identifier(set(members)))
                or next((causes[o] for o in sorted(olds) if o in causes), cause)
            )
            _change_emit(
                cursor,
                kind=EntityChange.Kind.MERGE,
                entity_id=group_entity[g],
                others=others,
                event_id=event_id,
                identifier_id=identifier_id,
                category=category_of(identifier_id),
                cause=why,
                now=now,
                system=system,
            )
            kinds.append(EntityChange.Kind.MERGE)
    groups_of: dict[str, list[int]] = {}
    for g, members in enumerate(partition.groups):
        for e in members:
            if old_entity[e] and g not in groups_of.setdefault(old_entity[e], []):
                groups_of[old_entity[e]].append(g)
    for old, groups in sorted(groups_of.items()):
        if len(groups) < 2:
            continue
        main = old if old in group_entity else group_entity[groups[0]]
        others = sorted({group_entity[g] for g in groups} - {main})
        events = {e for e, entity in old_entity.items() if entity == old}
        identifier_id = seed_identifier(events) or refused_identifier(events)
        _change_emit(
            cursor,
            kind=EntityChange.Kind.SPLIT,
            entity_id=main,
            others=others,
            event_id=None,
            identifier_id=identifier_id,
            category=category_of(identifier_id),
            cause=causes.get(identifier_id) or causes.get(old) or cause,
            now=now,
            system=system,
        )
        kinds.append(EntityChange.Kind.SPLIT)
    return kinds


def _change_emit(cursor, *, kind, entity_id, others, event_id, identifier_id, category, cause, now, system) -> None:
    """Record an EntityChange and emit it as a system event attached to the entity (no identifier value: no PII)."""
    detail = {"identifier_category": category} if category else {}
    if cause:
        detail["cause"] = cause
    change = EntityChange.objects.create(
        kind=kind,
        customer_entity_id=entity_id,
        other_entity_ids=others,
        event_id=event_id,
        identifier_id=identifier_id,
        detail=detail,
    )
    if kind == EntityChange.Kind.MERGE:
        event_type = MERGED_EVENT_TYPE
        payload = {"entity_id": entity_id, "merged_entity_ids": others}
    else:
        event_type = SPLIT_EVENT_TYPE
        payload = {"entity_id": entity_id, "split_entity_ids": others}
    payload.update(event_id=event_id, identifier_category=category, change_id=change.pk)
    if cause:
        payload["cause"] = cause
    system = system or system_source_get().pk
    # The insert trigger gives the event its row in customer_event_entities; it is attached to the entity at once
    # (system events never enter the stitching queue).
    cursor.execute(
        "WITH e AS (INSERT INTO customer_events (source_id, type, event_time, payload, idempotency_key) "
        "VALUES (%s, %s, %s, %s::jsonb, %s) ON CONFLICT (source_id, idempotency_key) DO NOTHING RETURNING id) "
        "SELECT id FROM e",
        [system, event_type, now, orjson.dumps(payload).decode(), f"change:{change.pk}"],
    )
    row = cursor.fetchone()
    if row:
        cursor.execute(
            "UPDATE customer_event_entities SET customer_entity_id = %s WHERE event_id = %s", [entity_id, row[0]]
        )


def _unstitched_exists(*, through: int | None = None) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM customer_event_entities WHERE customer_entity_id IS NULL "
            "AND (%s::bigint IS NULL OR event_id <= %s))",
            [through, through],
        )
        return cursor.fetchone()[0]


def _attributes_enqueue_on_commit(report: StitchReport) -> None:
    """Stale entities get their attributes recomputed by the attributes task (when that app provides it)."""
    if not report.entity_ids:
        return
    from cdp.tasks import attributes_recompute_enqueue

    transaction.on_commit(attributes_recompute_enqueue)
