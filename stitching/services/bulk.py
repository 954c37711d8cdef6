"""Full re-stitch of every event: the bulk path behind `manage.py restitch` with no arguments.

Same result as incremental stitching (the partition is the same function of the same events), computed in bulk:
identifiers are extracted in SQL (every rule in one parallel pass, with the SQL twins of the normalisers and the
junk test), a union-find in Python over (event, identifier) pairs finds the raw components, and a component
that cannot trigger a limit or a hub (each limited category within its limit, and at most `hub_limit`
identifiers, which bounds the merges any identifier can make) *is* its partition. The rare others go through
`partition_compute` like incremental stitching does. New entities are created with COPY.

Bulk writes: the event → customer assignments live in the narrow `customer_event_entities` (the wide event rows
are never rewritten). A rebuild that moves at least REWRITE_MIN_EVENTS events replaces that table with COPY; a
smaller one updates the rows that change. A table filled from empty (a first stitch's entities, identifiers and
edges; the replaced assignments) gets its indexes and constraints built after the insert. Ingestion waits for a
rebuild to commit (the assignments table is locked EXCLUSIVE from the start: new events could not get their row);
a replaced or first-filled table stays ACCESS EXCLUSIVE locked until commit. Identity-graph edges are otherwise
written as a difference, so rebuilding unchanged data writes almost nothing.

Entity ids: a group keeps the oldest (created, id) existing entity among its events not taken by a group with a
smaller first event id; otherwise it gets a new id. A rebuild records no merge or split history.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from django.db import connection, transaction
from psycopg import sql

from stitching.normalizers import (
    MAX_IDENTIFIER_LENGTH,
    sql_junk_core,
    sql_junk_reason,
    sql_normalize,
    sql_scalar_text,
)
from stitching.services.extraction import config_load
from stitching.services.partition import EventNode, Link, partition_compute

logger = logging.getLogger(__name__)


def restitch_all(*, progress: Callable[[int], None] | None = None):
    from stitching.services.engine import GLOBAL_LOCK_KEY, LOCK_NAMESPACE, StitchReport, system_source_id

    system = system_source_id()
    config = config_load()
    report = StitchReport()
    clock = [time.perf_counter()]

    def mark(step: str) -> None:
        # Seconds since the previous mark, per step: where a full rebuild spends its time (report.timings).
        now = time.perf_counter()
        report.timings[step] = report.timings.get(step, 0.0) + now - clock[0]
        clock[0] = now

    with transaction.atomic():
        connection.ensure_connection()
        raw = connection.connection
        with raw.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_NAMESPACE, GLOBAL_LOCK_KEY])
            # New events wait until the rebuild commits (their trigger inserts into this table): every event the
            # rebuild reads keeps its row, and none appears unseen (a big rebuild replaces the whole table).
            # Reads go on.
            cur.execute("LOCK TABLE customer_event_entities IN EXCLUSIVE MODE")
            temporary = ("st_pairs", "st_groups", "st_ids", "st_edges", "st_assign", "st_refused", "st_final")
            temporary += ("st_owner", "st_stale")
            for table in temporary:
                cur.execute(f"DROP TABLE IF EXISTS {table}")  # left by an earlier run in the same transaction
            # Deferred foreign-key checks pending in this transaction must run before a table is truncated or altered.
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cur.execute("SET CONSTRAINTS ALL DEFERRED")
            # Sorts and hashes over every event in memory rather than in temporary files.
            cur.execute("SET LOCAL work_mem = '256MB'")
            # JIT compilation took ~0.1 s per statement here and did not pay back at 100k events.
            cur.execute("SET LOCAL jit = off")
            # Parallel plans for the extraction (both cores): their rows cost almost nothing to hand over.
            cur.execute("SET LOCAL parallel_tuple_cost = 0.001")
            mark("truncate")
            _extract(cur, config, mark)
            categories = sorted(config.categories)
            # Binary results (a server-side-binding cursor): int arrays arrive without text parsing.
            binary = psycopg.Cursor(raw)
            binary.execute(
                "SELECT coalesce(array_agg(event_id), '{}'), coalesce(array_agg(identifier_id), '{}'), "
                "coalesce(array_agg(category_code), '{}') FROM st_edges WHERE blocked IS NULL",
                binary=True,
            )
            edge_events, edge_identifiers, edge_codes = binary.fetchone()
            binary.execute(
                "SELECT coalesce(array_agg(event_id ORDER BY event_id), '{}'), "
                "coalesce(array_agg(customer_entity_id ORDER BY event_id), '{}') FROM customer_event_entities",
                binary=True,
            )
            all_ids, all_entities = binary.fetchone()
            binary.close()
            # System events (merges, splits) are few and never stitched: they keep their entity or follow its heir.
            cur.execute("SELECT id FROM customer_events WHERE source_id = %s", [system])
            system_ids = {row[0] for row in cur.fetchall()}
            if system_ids:
                kept = [k for k, e in enumerate(all_ids) if e not in system_ids]
                event_ids, old_entities = [all_ids[k] for k in kept], [all_entities[k] for k in kept]
            else:
                event_ids, old_entities = all_ids, all_entities
            mark("fetch")

            # Union-find over events; an identifier joins the component of the first event that carried it.
            parent: dict[int, int] = {}
            owner: dict[int, int] = {}
            identifier_code: dict[int, int] = {}
            for e, i, c in zip(edge_events, edge_identifiers, edge_codes, strict=True):
                if e not in parent:
                    parent[e] = e
                o = owner.get(i)
                if o is None:
                    owner[i] = e
                    identifier_code[i] = c
                    continue
                a = e
                while parent[a] != a:
                    parent[a] = parent[parent[a]]
                    a = parent[a]
                b = o
                while parent[b] != b:
                    parent[b] = parent[parent[b]]
                    b = parent[b]
                if a != b:
                    if a < b:
                        parent[b] = a
                    else:
                        parent[a] = b

            def find(x: int) -> int:
                root = x
                while parent[root] != root:
                    root = parent[root]
                while parent[x] != root:
                    parent[x], x = root, parent[x]
                return root

            # Components that could hit a limit or a hub go through the exact algorithm.
            limits = [config.categories[c].max_per_entity for c in categories]
            counts: dict[int, list[int]] = {}
            for i, e in owner.items():
                root = find(e)
                row = counts.get(root)
                if row is None:
                    row = counts[root] = [0] * (len(categories) + 1)
                row[identifier_code[i]] += 1
                row[-1] += 1
            exact_roots = {
                root
                for root, row in counts.items()
                if row[-1] > config.hub_limit
                or any(limit is not None and n > limit for n, limit in zip(row, limits, strict=False))
            }
            group_of: dict[int, int] = {}  # event -> group key (root event id, or a partition group key)
            for e in parent:
                group_of[e] = find(e)
            refused: list[tuple[int, int, str, str]] = []
            hubs: dict[int, int] = {}
            identifier_group = {i: e for i, e in owner.items()}  # owner event for now, its group below
            mark("union_find")
            if exact_roots:
                _exact(cur, config, exact_roots, group_of, refused, hubs, identifier_group)
            identifier_group = {i: group_of[e] for i, e in identifier_group.items() if e is not None}
            mark("exact")
            if progress:
                progress(len(event_ids) // 2)

            # Entity ids: groups in order of their smallest event id (event_ids is sorted).
            created = {}
            olds = sorted({x for x in old_entities if x})
            if olds:
                cur.execute("SELECT id, created FROM customer_entities WHERE id = ANY(%s)", [olds])
                created = dict(cur.fetchall())
            group_entity: dict[int, str] = {}
            group_candidates: dict[int, set[str]] = {}
            order: list[int] = []
            for e, old in zip(event_ids, old_entities, strict=True):
                g = group_of.get(e)
                if g is None:
                    g = group_of[e] = -e  # no linkable identifier: a customer of its own
                if g not in group_candidates:
                    group_candidates[g] = set()
                    order.append(g)
                if old:
                    group_candidates[g].add(old)
            taken: set[str] = set()
            new_entities: list[str] = []
            for g in order:
                candidates = group_candidates[g] - taken
                if candidates:
                    entity = min(candidates, key=lambda x: (created.get(x), x))
                else:
                    entity = uuid.uuid4().hex
                    new_entities.append(entity)
                taken.add(entity)
                group_entity[g] = entity
            now = datetime.now(UTC)
            if new_entities:
                rebuilt = _indexes_drop_when_empty(cur, "customer_entities")
                with cur.copy("COPY customer_entities (id, created, modified, attributes) FROM STDIN") as copy:
                    stamp = now.isoformat()
                    # In id order: the primary key grows at its right edge instead of splitting pages all over.
                    copy.write("".join(f"{x}\t{stamp}\t{stamp}\t{{}}\n" for x in sorted(new_entities)))
                _indexes_create(cur, rebuilt)
            report.entities_created = len(new_entities)
            mark("entities")

            moves = []
            heirs: dict[str, str] = {}
            touched: set[str] = set()  # customers that got or lost events: their attributes change
            for e, old in zip(event_ids, old_entities, strict=True):
                entity = group_entity[group_of[e]]
                if old != entity:
                    moves.append((e, entity))
                    touched.add(entity)
                    if old in taken:
                        touched.add(old)
                if old and old not in taken and old not in heirs:
                    heirs[old] = entity
            if len(moves) >= REWRITE_MIN_EVENTS:
                _assignments_replace(cur, all_ids, all_entities, system_ids, group_of, group_entity, heirs)
                mark("events_assign")
            else:
                cur.execute("CREATE TEMP TABLE st_assign (event_id bigint, entity_id text) ON COMMIT DROP")
                with cur.copy("COPY st_assign (event_id, entity_id) FROM STDIN") as copy:
                    copy.write("".join(f"{e}\t{x}\n" for e, x in moves))
                cur.execute("ANALYZE st_assign")  # temporary tables have no statistics: without them, nested loops
                cur.execute(
                    "UPDATE customer_event_entities a SET customer_entity_id = s.entity_id FROM st_assign s "
                    "WHERE a.event_id = s.event_id"
                )
                if heirs:
                    # Entities left without events: their system events follow the heir.
                    gone, heir = zip(*sorted(heirs.items()), strict=True)
                    cur.execute(
                        "UPDATE customer_event_entities a SET customer_entity_id = h.heir "
                        "FROM unnest(%s::text[], %s::text[]) AS h(old, heir) WHERE a.customer_entity_id = h.old",
                        [list(gone), list(heir)],
                    )
                mark("events_assign")
            report.events = len(moves)
            if heirs:
                cur.execute("DELETE FROM customer_entities WHERE id = ANY(%s)", [sorted(heirs)])
                report.entities_deleted = len(heirs)
                mark("heirs")
            # The customers that got events queue for their attributes: in id order, so the queue's index grows
            # at its right edge instead of splitting pages all over (hundreds of thousands of random uuids).
            cur.execute("SELECT EXISTS (SELECT 1 FROM customer_entities_stale)")
            if cur.fetchone()[0]:
                cur.execute("CREATE TEMP TABLE st_stale (entity_id text) ON COMMIT DROP")
                with cur.copy("COPY st_stale (entity_id) FROM STDIN") as copy:
                    copy.write("".join(f"{x}\n" for x in sorted(touched)))
                cur.execute(
                    "INSERT INTO customer_entities_stale (entity_id) SELECT entity_id FROM st_stale "
                    "ORDER BY entity_id ON CONFLICT DO NOTHING"
                )
            else:  # an empty queue (the usual case after a big rebuild): straight in, no conflict possible
                with cur.copy("COPY customer_entities_stale (entity_id) FROM STDIN") as copy:
                    copy.write("".join(f"{x}\n" for x in sorted(touched)))
            mark("stale")

            # The identity graph: every edge with its status; identifiers with their entity.
            if refused:
                cur.execute(
                    "CREATE TEMP TABLE st_refused (event_id bigint, identifier_id bigint, status text, reason text) "
                    "ON COMMIT DROP"
                )
                with cur.copy("COPY st_refused FROM STDIN") as copy:
                    for row in refused:
                        copy.write_row(row)
            status = "CASE WHEN s.blocked IS NOT NULL THEN 'blocked' ELSE 'linked' END"
            reason = "coalesce(s.blocked, '')"
            if refused:
                status, reason = f"coalesce(r.status, {status})", f"coalesce(r.reason, {reason})"
            cur.execute(
                "CREATE TEMP TABLE st_final ON COMMIT DROP AS "
                f"SELECT s.event_id, s.identifier_id, s.rule_id, {status} AS status, {reason} AS reason FROM st_edges s"
                + (
                    " LEFT JOIN st_refused r ON r.event_id = s.event_id AND r.identifier_id = s.identifier_id"
                    if refused
                    else ""
                )
            )
            _edges_write(cur)
            mark("edges_write")
            cur.execute("CREATE TEMP TABLE st_owner (identifier_id bigint, entity_id text) ON COMMIT DROP")
            with cur.copy("COPY st_owner FROM STDIN") as copy:
                copy.write("".join(f"{i}\t{group_entity[g]}\n" for i, g in identifier_group.items()))
            cur.execute("ANALYZE st_owner")
            # New identifiers are inserted complete (their ids were drawn from the sequence at extraction): one
            # insert instead of an insert and a rewrite of every row. Existing ones are updated where they differ.
            rebuilt = _indexes_drop_when_empty(cur, "stitching_identifiers")
            cur.execute(
                "INSERT INTO stitching_identifiers (id, category_id, value, customer_entity_id, first_seen) "
                "SELECT s.identifier_id, s.category, s.value, o.entity_id, "
                "CASE WHEN o.identifier_id IS NOT NULL THEN s.first_seen END "
                "FROM st_ids s LEFT JOIN st_owner o ON o.identifier_id = s.identifier_id WHERE s.new "
                "ORDER BY s.identifier_id"
            )
            _indexes_create(cur, rebuilt)
            if rebuilt is None:  # (else every identifier was just inserted, with its owner)
                cur.execute(
                    "UPDATE stitching_identifiers i SET customer_entity_id = o.entity_id, first_seen = s.first_seen "
                    "FROM st_owner o, st_ids s WHERE i.id = o.identifier_id AND s.identifier_id = o.identifier_id "
                    "AND NOT s.new AND (i.customer_entity_id IS DISTINCT FROM o.entity_id "
                    "OR i.first_seen IS DISTINCT FROM s.first_seen)"
                )
                # NOT EXISTS (an anti-join), not NOT IN: NOT IN re-scans the subquery per row.
                cur.execute(
                    "UPDATE stitching_identifiers i SET customer_entity_id = NULL "
                    "WHERE i.customer_entity_id IS NOT NULL "
                    "AND NOT EXISTS (SELECT 1 FROM st_owner o WHERE o.identifier_id = i.id)"
                )
            mark("owners")
            if hubs:
                cur.execute(
                    "INSERT INTO stitching_hubreview (identifier_id, entity_count, status, created) "
                    "SELECT i, n, 'pending', now() FROM unnest(%s::bigint[], %s::int[]) AS t(i, n) "
                    "ON CONFLICT (identifier_id) DO UPDATE SET entity_count = EXCLUDED.entity_count "
                    "WHERE stitching_hubreview.status = 'pending'",
                    [list(hubs), list(hubs.values())],
                )
            cur.execute(
                "DELETE FROM stitching_hubreview WHERE status = 'pending' AND NOT identifier_id = ANY(%s)", [list(hubs)]
            )
            mark("hubs")
            cur.execute("DROP TABLE st_pairs, st_groups, st_ids, st_edges")  # the unlogged scratch tables
            # Every row changed: fresh statistics, or the planner keeps believing no event is stitched (and picks
            # nested loops over the entity index for incremental stitching's lookups).
            for table in (
                "customer_event_entities",
                "customer_entities",
                "stitching_identifiers",
                "stitching_event_identifiers",
            ):
                cur.execute(f"ANALYZE {table}")
                mark(f"analyze_{table.split()[0]}")
            report.refused = len(refused)
            report.components = len(order)
            if progress:
                progress(len(event_ids) - len(event_ids) // 2)
    mark("commit")  # deferred constraint checks run here
    logger.debug("restitch_all timings: %s", {k: round(v, 3) for k, v in report.timings.items()})
    return report


# A rebuild that moves at least this many events replaces customer_event_entities (_assignments_replace) instead
# of updating the rows that change.
REWRITE_MIN_EVENTS = 50_000
NULL = "\\N"  # COPY's text format


def _assignments_replace(cur, event_ids, old_entities, system_ids, group_of, group_entity, heirs) -> None:
    """Write every event's customer: TRUNCATE customer_event_entities and COPY all rows back, the partial indexes
    dropped around the COPY and built again after it (one sort each). The caller holds the table locked."""
    cur.execute("TRUNCATE customer_event_entities")
    rebuilt = _indexes_drop_when_empty(cur, "customer_event_entities")
    lines = []
    for e, old in zip(event_ids, old_entities, strict=True):
        if e in system_ids:
            entity = heirs.get(old, old) if old else NULL
        else:
            entity = group_entity[group_of[e]]
        lines.append(f"{e}\t{entity}\n")
    with cur.copy("COPY customer_event_entities (event_id, customer_entity_id) FROM STDIN") as copy:
        copy.write("".join(lines))
    _indexes_create(cur, rebuilt)


@dataclass(slots=True)
class Dropped:
    """What _indexes_drop_when_empty dropped, for _indexes_create to build again."""

    table: str
    indexes: list[str]  # CREATE INDEX statements
    keys: list[tuple[str, str]]  # (name, definition) of primary key and unique constraints
    foreign_keys: list[tuple[str, str]]


def _indexes_drop_when_empty(cur, table: str) -> Dropped | None:
    """When `table` is empty (a first stitch, or a table the rebuild just truncated): drop its indexes and
    constraints, to be built by _indexes_create after the bulk insert (one sort each, one validating join per
    foreign key, instead of work per row), and return what was dropped; else None. A primary key that other
    tables' foreign keys reference stays. Locks the table (ACCESS EXCLUSIVE) until commit."""
    cur.execute(f"SELECT EXISTS (SELECT 1 FROM {table})")
    if cur.fetchone()[0]:
        return None
    # Deferred checks pending in this transaction would forbid altering the table.
    cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    cur.execute("SET CONSTRAINTS ALL DEFERRED")
    cur.execute(
        "SELECT k.conname, pg_get_constraintdef(k.oid), k.contype FROM pg_constraint k "
        "WHERE k.conrelid = %s::regclass AND k.contype IN ('p', 'u', 'f') AND NOT (k.contype = 'p' AND EXISTS "
        "(SELECT 1 FROM pg_constraint r WHERE r.confrelid = k.conrelid AND r.contype = 'f'))",
        [table],
    )
    constraints = cur.fetchall()
    for name, _, _ in constraints:
        cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    cur.execute(
        "SELECT c.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid "
        "WHERE x.indrelid = %s::regclass "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid)",
        [table],
    )
    indexes = cur.fetchall()
    for name, _ in indexes:
        cur.execute(f'DROP INDEX "{name}"')
    return Dropped(
        table,
        [definition for _, definition in indexes],
        [(name, definition) for name, definition, kind in constraints if kind != "f"],
        [(name, definition) for name, definition, kind in constraints if kind == "f"],
    )


def _indexes_create(cur, dropped: Dropped | None) -> None:
    if dropped is None:
        return
    cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    cur.execute("SET CONSTRAINTS ALL DEFERRED")
    cur.execute("SET LOCAL maintenance_work_mem = '512MB'")
    for name, definition in dropped.keys:
        cur.execute(f'ALTER TABLE {dropped.table} ADD CONSTRAINT "{name}" {definition}')
    for definition in dropped.indexes:
        cur.execute(definition)
    if dropped.foreign_keys:
        cur.execute(f"ANALYZE {dropped.table}")  # the validating join is planned with real row counts
    for name, definition in dropped.foreign_keys:
        cur.execute(f'ALTER TABLE {dropped.table} ADD CONSTRAINT "{name}" {definition}')


def _edges_write(cur) -> None:
    """Make stitching_event_identifiers equal to st_final: all inserted into an empty table (a first stitch), else
    only the difference written (a rebuild of unchanged data writes nothing)."""
    columns = "event_id, identifier_id, rule_id, status, reason"
    rebuilt = _indexes_drop_when_empty(cur, "stitching_event_identifiers")
    if rebuilt is not None:
        cur.execute(f"INSERT INTO stitching_event_identifiers ({columns}) SELECT {columns} FROM st_final")
        _indexes_create(cur, rebuilt)
        return
    cur.execute("ANALYZE st_final")
    cur.execute(
        "DELETE FROM stitching_event_identifiers ei WHERE NOT EXISTS (SELECT 1 FROM st_final f "
        "WHERE f.event_id = ei.event_id AND f.identifier_id = ei.identifier_id)"
    )
    cur.execute(
        "UPDATE stitching_event_identifiers ei SET rule_id = f.rule_id, status = f.status, reason = f.reason "
        "FROM st_final f WHERE f.event_id = ei.event_id AND f.identifier_id = ei.identifier_id "
        "AND (ei.rule_id, ei.status, ei.reason) IS DISTINCT FROM (f.rule_id, f.status, f.reason)"
    )
    cur.execute(
        f"INSERT INTO stitching_event_identifiers ({columns}) SELECT {columns} FROM st_final f WHERE NOT EXISTS "
        "(SELECT 1 FROM stitching_event_identifiers ei WHERE ei.event_id = f.event_id "
        "AND ei.identifier_id = f.identifier_id)"
    )


def _extract(cur, config, mark: Callable[[str], None]) -> None:
    """By SQL: st_ids (identifier_id, new, category, value, first_seen, blocked), every identifier the events
    carry, and st_edges (event_id, identifier_id, category_code, rule_id, blocked).

    Scratch tables are UNLOGGED (dropped before the rebuild commits; never visible to others): unlike temporary
    tables they can be filled by parallel plans, so both cores extract. Every rule is applied in one pass over the
    events: one row per (event, rule) from a LATERAL VALUES list (NULL where the rule does not apply), the payload
    value extracted once and normalised by its category's SQL normaliser."""
    categories = sorted(config.categories)
    rules = []
    for source_id, source_rules in config.rules.items():
        for rule in source_rules:
            applies = f"e.source_id = {int(source_id)}"
            if rule.event_type != "*":
                applies += f" AND e.type = {_literal(rule.event_type)}"
            rules.append(
                f"({_literal(rule.category)}, CASE WHEN {applies} THEN "
                f"e.payload #> {_literal(list(rule.path))}::text[] END, {int(rule.id)}::bigint, {int(rule.priority)})"
            )
    columns = "event_id bigint, event_time timestamptz, category text, value text, rule_id bigint, rule_priority int"
    if not rules:
        cur.execute(f"CREATE UNLOGGED TABLE st_pairs ({columns})")
    else:
        normalise = " ".join(
            f"WHEN {_literal(c)} THEN {sql_normalize(config.normalizers[c], sql_scalar_text('r.j'))}"
            for c in categories
        )
        sources = sorted(int(x) for x in config.rules)
        # One flat statement (parallel-safe throughout): a value that normalises to nothing is kept as NULL and
        # skipped by the next steps, rather than normalised a second time for a filter.
        cur.execute(
            (
                "CREATE UNLOGGED TABLE st_pairs AS SELECT e.id AS event_id, e.event_time, r.category, "
                f"left(CASE r.category {normalise} END, {MAX_IDENTIFIER_LENGTH}) AS value, r.rule_id, "
                f"r.rule_priority FROM customer_events e "
                f"CROSS JOIN LATERAL (VALUES {', '.join(rules)}) AS r(category, j, rule_id, rule_priority) "
                f"WHERE e.source_id = ANY('{{{','.join(map(str, sources))}}}'::bigint[]) AND r.j IS NOT NULL"
            ).replace("%", "%%")
        )
    mark("extract_pairs")
    # Every distinct identifier with its first time and why it may not link (junk or blocked: a function of the
    # value, computed once per identifier).
    cur.execute(
        "CREATE UNLOGGED TABLE st_groups AS SELECT i.id AS existing, p.category, p.value, p.first_seen "
        "FROM (SELECT category, value, min(event_time) AS first_seen FROM st_pairs WHERE value IS NOT NULL "
        "GROUP BY category, value) p "
        "LEFT JOIN stitching_identifiers i ON i.category_id = p.category AND i.value = p.value"
    )
    # Why an identifier may not link (junk or blocked): a function of the value, computed once per identifier, its
    # trimmed core once per value (OFFSET 0 keeps it a column). New identifiers get their id from the table's
    # sequence now (nextval is why this step is serial) and are inserted with their owner once it is known (no
    # identifier is created concurrently: stitching holds the global lock shared, this rebuild exclusively).
    junk = sql_junk_reason("p.value", core="p.core").replace("%", "%%")
    blocked = "NULL"
    if config.blocked:
        blocked = (
            "(SELECT CASE WHEN b.reason <> '' THEN 'blocked value: ' || b.reason ELSE 'blocked value' END "
            "FROM stitching_blockedvalue b WHERE b.value = p.value AND (b.category_id = p.category OR "
            "b.category_id IS NULL) ORDER BY b.category_id NULLS LAST LIMIT 1)"
        )
    # New ids follow the sequence's last value, numbered in one pass; the sequence then moves past them (one
    # setval instead of a nextval per identifier).
    cur.execute("SELECT pg_get_serial_sequence('stitching_identifiers', 'id')")
    sequence = cur.fetchone()[0]
    cur.execute(f"SELECT last_value + CASE WHEN is_called THEN 1 ELSE 0 END FROM {sequence}")
    first = int(cur.fetchone()[0])
    cur.execute(
        "CREATE UNLOGGED TABLE st_ids AS SELECT coalesce(existing, "
        f"{first} - 1 + row_number() OVER (PARTITION BY existing IS NULL)) AS identifier_id, "
        "existing IS NULL AS new, category, value, first_seen, blocked FROM ("
        f"SELECT p.*, coalesce('junk value: ' || {junk}, {blocked}) AS blocked FROM "
        f"(SELECT g.*, {sql_junk_core('g.value')} AS core FROM st_groups g OFFSET 0) p OFFSET 0) q"
    )
    cur.execute("SELECT max(identifier_id) FROM st_ids WHERE new")
    last = cur.fetchone()[0]
    if last is not None:
        cur.execute("SELECT setval(%s, %s)", [sequence, last])
    cur.execute("ANALYZE st_ids")
    mark("extract_identifiers")
    cur.execute(
        "CREATE UNLOGGED TABLE st_edges AS SELECT DISTINCT ON (p.event_id, i.identifier_id) p.event_id, "
        "i.identifier_id, array_position(%s::text[], p.category) - 1 AS category_code, p.rule_id, i.blocked "
        "FROM st_pairs p JOIN st_ids i ON i.category = p.category AND i.value = p.value "
        "ORDER BY p.event_id, i.identifier_id, p.rule_priority DESC, p.rule_id",
        [categories],
    )
    cur.execute("ANALYZE st_edges")
    mark("extract_edges")


def _literal(value) -> str:
    """An SQL literal (psycopg's quoting: safe for any text an administrator typed)."""
    return sql.Literal(value).as_string(None)


def _exact(
    cur, config, roots: set[int], group_of: dict[int, int], refused: list, hubs: dict[int, int], identifier_event: dict
) -> None:
    """Run partition_compute on the components with these roots; rewrite group_of for their events and
    identifier_event (an event of the identifier's group, None when none of its links was made)."""
    events = [e for e, g in group_of.items() if g in roots]
    cur.execute("SELECT id, event_time, source_id, idempotency_key FROM customer_events WHERE id = ANY(%s)", [events])
    nodes = {e: EventNode(e, t, s, k, []) for e, t, s, k in cur.fetchall()}
    cur.execute(
        "SELECT s.event_id, s.identifier_id, i.category, i.value, coalesce(r.priority, 0) FROM st_edges s "
        "JOIN st_ids i ON i.identifier_id = s.identifier_id "
        "LEFT JOIN stitching_stitchingrule r ON r.id = s.rule_id "
        "WHERE s.blocked IS NULL AND s.event_id = ANY(%s)",
        [events],
    )
    for e, i, category, value, priority in cur.fetchall():
        nodes[e].links.append(Link(i, category, value, priority))
    by_root: dict[int, list[EventNode]] = {}
    for e, node in nodes.items():
        by_root.setdefault(group_of[e], []).append(node)
    for component in by_root.values():
        partition = partition_compute(
            component, categories=config.categories, hub_limit=config.hub_limit, hub_exempt=config.hub_exempt
        )
        for members in partition.groups:
            key = min(members)
            for e in members:
                group_of[e] = key
        for node in component:
            for link in node.links:
                identifier_event[link.identifier_id] = None
        for i, g in partition.identifier_group.items():
            identifier_event[i] = partition.groups[g][0]
        for (e, i), (status, reason) in partition.refused.items():
            refused.append((e, i, status, reason))
        hubs.update(partition.hubs)
