"""Full re-stitch of every event: the bulk path behind `manage.py restitch` with no arguments.

Same result as incremental stitching (the partition is the same function of the same events), computed in bulk:
identifiers are extracted in SQL (every rule in one parallel pass, with the SQL twins of the normalisers and the
junk test) into an UNLOGGED scratch table; the (event, identifier) pairs are read into numpy arrays with a
SHA-256 key per value, which tells the identifiers apart (_extract); scipy's
`connected_components` finds the raw components, and a component that cannot trigger a limit, a cap or a hub
(each limited category within its limit, counting every value ever: a limit with a window counts fewer; and at
most `config.simple_max` identifiers, which bounds the merges any identifier or customer can make) *is* its
partition. The rare others go through `partition_compute` like
incremental stitching does.
Which customer each group becomes is planned in numpy too; customers, assignments, the attribute queue and the
identifiers' owners go in by binary COPY of those arrays. While the union-find and the plan are computed, the
identity-graph edges are written on the same connection by one thread that runs the connection's statements in
order (the main thread queues its own reads there until the thread is done).

Bulk writes: the event → customer assignments live in the narrow `customer_event_entities` (the wide event rows
are never rewritten). A rebuild that moves at least REWRITE_MIN_EVENTS events replaces that table; a smaller one
updates the rows that change. The tables written whole (the replaced assignments; the customers and the attribute
queue when they are empty; a first stitch's identity-graph edges) are built as new tables on other connections, the
edges from when the pairs are known, the others from when the plan is, while this one writes the identifiers; the
rebuild's transaction swaps them in (replace.py: both cores work instead of one idling). A table filled from empty in
this transaction (a first stitch's identifiers; the tables above where they cannot be swapped) gets its indexes
and constraints built after the insert (with the foreign keys of other, empty tables that reference its primary
key). Ingestion waits for a rebuild to commit (the assignments table is locked EXCLUSIVE from the start: new
events could not get their row); a replaced or first-filled table stays locked until commit. Identity-graph edges
are otherwise written as a difference, so rebuilding unchanged data writes almost nothing.

Entity ids: a group keeps the oldest (created, id) existing entity among its events not taken by a group with a
smaller first event id; otherwise it gets a new id. A rebuild records no merge or split history.
"""

from __future__ import annotations

import binascii
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import psycopg
from django.db import connection, transaction
from psycopg import sql
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from stitching.normalizers import (
    MAX_IDENTIFIER_LENGTH,
    sql_junk_reason,
    sql_normalize,
    sql_scalar_text,
)
from stitching.services import pgcopy
from stitching.services.extraction import config_load
from stitching.services.partition import EventNode, Link, partition_compute
from stitching.services.replace import Replacements, Shape, leftovers_drop

logger = logging.getLogger(__name__)

T = TypeVar("T")


def restitch_all(*, progress: Callable[[int], None] | None = None):
    from stitching.services.engine import (
        GLOBAL_LOCK_KEY,
        HUB_REVIEWS_OPEN_SQL,
        LOCK_NAMESPACE,
        StitchReport,
        system_source_id,
    )

    system = system_source_id()
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
            config = config_load()  # under the lock: a configuration change commits before or waits (engine)
            for table in SCRATCH_TABLES:
                cur.execute(f"DROP TABLE IF EXISTS {table}")  # left by an earlier run in the same transaction
            leftovers_drop(cur)
            # Deferred foreign-key checks pending in this transaction must run before a table is truncated or altered.
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cur.execute("SET CONSTRAINTS ALL DEFERRED")
            # Sorts and hashes over every event in memory rather than in temporary files.
            cur.execute("SET LOCAL work_mem = '256MB'")
            # JIT compilation took ~0.1 s per statement here and did not pay back at 100k events.
            cur.execute("SET LOCAL jit = off")
            # Parallel plans for the extraction (both cores): their rows cost almost nothing to hand over.
            cur.execute("SET LOCAL parallel_tuple_cost = 0.001")
            # The tables this rebuild may write whole and can swap (replace.py), decided (and locked) up front:
            # their new twins are built on other connections, the edges' from when the pairs are known, the others'
            # from when the plan is. (A failure cancels their building: Replacements.__exit__.)
            with Replacements() as tables:
                twins = _twins(cur, tables)
                mark("truncate")
                # (Every event's current customer is read while the pairs' keys are sorted.)
                pairs, current = _extract(cur, config, mark, meanwhile=lambda: _assignments_read(cur, system))
                # A new edges table depends on the pairs only: built from now on.
                edges_twin = twins.pop("stitching_event_identifiers", None)
                if edges_twin is not None:  # (its rows laid out on the builder's thread)
                    tables.build(edges_twin, _edges_fill(cur, pairs))
                graph = _graph(pairs, current)
                mark("fetch")
                # The identity graph's edges do not depend on the partition: PostgreSQL writes them, then builds their
                # indexes, while the union-find, the exact partitions and the customer plan are computed here — on
                # another connection when the table is empty (a new table, replace.py), else on this one. This
                # connection runs one statement at a time: its statements go through one thread, in order, and the
                # exact algorithm's reads wait for its edges' insert (refused links are marked after the swap).
                # Timings: "union_find" includes waiting for the insert when the exact algorithm reads,
                # "edges_write" is the wait for the index builds after the plan.
                with ThreadPoolExecutor(max_workers=1, thread_name_prefix="restitch-db") as database:
                    # The identifiers' rows with their values (a parallel join: an INSERT's own SELECT runs in one
                    # process) first: while it runs, the edges' rows of a first stitch are laid out here.
                    materialised = database.submit(_identifiers_materialise, cur, pairs, config)
                    rows = _edges_rows(pairs) if pairs.all_new and edges_twin is None else None

                    def edges() -> Dropped | None:
                        # (Its error first: a statement after a failed one only says the transaction is aborted.)
                        materialised.result()
                        return None if edges_twin is not None else _edges_write(cur, pairs, rows)

                    inserted = database.submit(edges)

                    def read(query: Callable[[], object]) -> object:
                        # After the insert (whose error, if any, is the one raised), in the connection's thread.
                        return database.submit(lambda: (inserted.result(), query())[1]).result()

                    try:
                        groups = _groups(cur, config, graph, pairs, database=read)
                        indexed = database.submit(lambda: _indexes_create(cur, inserted.result()))
                        mark("union_find")
                        if progress:
                            progress(len(graph.events) // 2)
                        plan = _entities_plan(graph, groups)
                        report.entities_created = len(plan.new_entities)
                        report.events = int(plan.moved.sum())
                        report.refused = len(groups.refused)
                        report.components = len(plan.entity_of_group)
                        mark("plan")
                        built = _twins_build(graph, plan, tables, twins)
                        indexed.result()
                    except BaseException:
                        # Do not wait for the edges' statements to finish before rolling back (an error here, Ctrl-C,
                        # a task's time limit): drop what is queued and cancel the running statement.
                        database.shutdown(wait=False, cancel_futures=True)
                        raw.cancel_safe()
                        raise
                    mark("edges_write")

                # The tables being built on other connections are swapped in below; the others are written here.
                if len(plan.new_entities) and "customer_entities" not in built:
                    _entities_write(cur, plan)
                mark("entities")
                if "customer_event_entities" not in built:
                    _assignments_write(cur, graph, plan)
                mark("events_assign")
                if len(plan.heirs_gone):
                    cur.execute("DELETE FROM customer_entities WHERE id = ANY(%s)", [_texts(plan.heirs_gone)])
                    report.entities_deleted = len(plan.heirs_gone)
                    mark("heirs")
                _stale_write(cur, plan.touched, tables)
                mark("stale")
                identifiers_analysed = _identifiers_write(cur, groups, plan)
                mark("owners")
                swapped = tables.swap(cur)
                mark("swap")
                # The links the exact algorithm did not make (written as linked: in place, or in the table swapped in).
                if groups.refused:
                    cur.execute(
                        "CREATE TEMP TABLE st_refused (event_id bigint, identifier_id bigint, status text, "
                        "reason text) ON COMMIT DROP"
                    )
                    with cur.copy("COPY st_refused FROM STDIN") as copy:
                        for row in groups.refused:
                            copy.write_row(row)
                    cur.execute(
                        "UPDATE stitching_event_identifiers ei SET status = r.status, reason = r.reason "
                        "FROM st_refused r WHERE ei.event_id = r.event_id AND ei.identifier_id = r.identifier_id"
                    )
                    mark("refused")
            if groups.hubs:
                cur.execute(HUB_REVIEWS_OPEN_SQL, [list(groups.hubs), list(groups.hubs.values())])
            cur.execute(
                "DELETE FROM stitching_hubreview WHERE status = 'pending' AND NOT identifier_id = ANY(%s)",
                [list(groups.hubs)],
            )
            mark("hubs")
            # The unlogged scratch tables.
            cur.execute("DROP TABLE IF EXISTS st_raw, st_ids, st_idmap, st_old")
            # Every row changed: fresh statistics, or the planner keeps believing no event is stitched (and picks
            # nested loops over the entity index for incremental stitching's lookups).
            # A table swapped in was analysed where it was built. The refused links marked in the edges since
            # change its statistics only when they are more than a hundredth of it (ANALYZE samples 30,000 rows).
            refused_many = len(groups.refused) * 100 > len(graph.edge_events)
            for table in (
                "customer_event_entities",
                "customer_entities",
                "stitching_identifiers",
                "stitching_event_identifiers",
            ):
                if table in swapped and not (table == "stitching_event_identifiers" and refused_many):
                    continue
                if table == "stitching_identifiers" and identifiers_analysed:
                    continue
                cur.execute(f"ANALYZE {table}")
                mark(f"analyze_{table.split()[0]}")
            if progress:
                progress(len(graph.events) - len(graph.events) // 2)
    mark("commit")  # deferred constraint checks run here
    logger.debug("restitch_all timings: %s", {k: round(v, 3) for k, v in report.timings.items()})
    return report


SCRATCH_TABLES = ("st_raw", "st_ids", "st_old", "st_assign", "st_refused", "st_final")
SCRATCH_TABLES += ("st_owner", "st_stale", "st_idmap")
# A rebuild that moves at least this many events replaces customer_event_entities (_assignments_write) instead
# of updating the rows that change.
REWRITE_MIN_EVENTS = 50_000


@dataclass(slots=True)
class Graph:
    """What the union-find works on, as numpy arrays. `events`: the stitchable (non-system) event ids, ascending;
    `old`: each one's current customer as an index into `old_ids` (-1: none); `old_ids`: the existing customers
    in (created, id) order, so a smaller index is an older customer; edges: the linked (event, identifier) pairs
    with the identifier's category code; `system_events` / `system_old`: the system events and their customer."""

    events: np.ndarray
    old: np.ndarray
    old_ids: np.ndarray
    edge_events: np.ndarray
    edge_identifiers: np.ndarray
    edge_codes: np.ndarray
    system_events: np.ndarray
    system_old: np.ndarray


@dataclass(slots=True)
class Assignments:
    """Every event with its current customer, read before the union-find: `events` ascending, `old` each one's
    customer as an index into `old_ids` (-1: none), `old_ids` the existing customers in (created, id) order,
    `system` the system events' ids."""

    events: np.ndarray
    old: np.ndarray
    old_ids: np.ndarray
    system: np.ndarray


def _assignments_read(cur, system: int) -> Assignments:
    """Every event with its current customer, and the existing customers (integer columns as one binary array each,
    read straight into numpy)."""
    raw = cur.connection
    # Arrays without parallel workers (the leader aggregates every row anyway: handing them over cost more than the
    # scan).
    with _local_setting(cur, "max_parallel_workers_per_gather", "0"):
        # The existing customers numbered in (created, id) order, in one snapshot with the assignments read below.
        cur.execute(
            "CREATE UNLOGGED TABLE st_old AS SELECT id, row_number() OVER (ORDER BY created, id) - 1 AS rank "
            "FROM customer_entities"
        )
        cur.execute("SELECT id FROM st_old ORDER BY rank")
        old_ids = _entity_array([row[0] for row in cur.fetchall()])
        if len(old_ids):
            _analyze_rough(cur, "st_old")
            all_events, all_old = pgcopy.fetch_arrays(
                raw,
                "SELECT coalesce(array_agg(a.event_id), '{}'), coalesce(array_agg(coalesce(o.rank, -1)), '{}') "
                "FROM customer_event_entities a LEFT JOIN st_old o ON o.id = a.customer_entity_id",
            )
        else:  # a first stitch: no event has a customer
            (all_events,) = pgcopy.fetch_arrays(
                raw, "SELECT coalesce(array_agg(event_id), '{}') FROM customer_event_entities"
            )
            all_old = np.full(len(all_events), -1, dtype=np.int64)
    order = np.argsort(all_events, kind="stable")
    # System events (merges, splits) are few and never stitched: they keep their entity or follow its heir.
    cur.execute("SELECT id FROM customer_events WHERE source_id = %s", [system])
    system_ids = np.array([row[0] for row in cur.fetchall()], dtype=np.int64)
    return Assignments(all_events[order], all_old[order], old_ids, system_ids)


def _graph(pairs: Pairs, current: Assignments) -> Graph:
    """What the union-find works on: the linkable pairs of the stitchable events, and every event's customer."""
    linked = ~pairs.blocked
    edge_events, edge_identifiers, edge_codes = pairs.events[linked], pairs.identifiers[linked], pairs.codes[linked]
    all_events, all_old = current.events, current.old
    system_mask = np.isin(all_events, current.system)
    if system_mask.any():
        stitchable = np.isin(edge_events, all_events[system_mask], invert=True)
        edge_events, edge_identifiers, edge_codes = (
            edge_events[stitchable], edge_identifiers[stitchable], edge_codes[stitchable]
        )  # fmt: skip
    return Graph(
        events=all_events[~system_mask],
        old=all_old[~system_mask],
        old_ids=current.old_ids,
        edge_events=edge_events,
        edge_identifiers=edge_identifiers,
        edge_codes=edge_codes,
        system_events=all_events[system_mask],
        system_old=all_old[system_mask],
    )


@dataclass(slots=True)
class Groups:
    """The partition: `event_group[k]` the group key of graph.events[k] (the group's smallest event id);
    `identifiers` (the linked identifier ids, ascending) and `identifier_group` (each one's group key, -1 when
    none of its links was made); refused links and held hubs from the exact algorithm."""

    event_group: np.ndarray
    identifiers: np.ndarray
    identifier_group: np.ndarray
    refused: list[tuple[int, int, str, str]]
    hubs: dict[int, int]


def _groups(cur, config, graph: Graph, pairs: Pairs, *, database: Callable[[Callable], object]) -> Groups:
    """Connected components of the event-identifier graph (scipy's union-find, in C); a component that could hit
    a limit or a hub goes through the exact algorithm (partition_compute), like incremental stitching. Its events
    are read by `database(read)`, which runs `read()` where the connection's statements run, and returns its result."""
    n_events = len(graph.events)
    identifiers, identifier_index = _ranked(graph.edge_identifiers)
    n_nodes = n_events + len(identifiers)
    event_index = _positions(graph.events, graph.edge_events)
    matrix = coo_matrix(
        (np.ones(len(event_index), dtype=np.int8), (event_index, n_events + identifier_index)),
        shape=(n_nodes, n_nodes),
    ).tocsr()
    n_components, labels = connected_components(matrix, directed=False)
    event_label, identifier_label = labels[:n_events], labels[n_events:]
    # A component's key: its smallest event id (events are ascending: the first event with its label).
    component_key = np.empty(n_components, dtype=np.int64)
    first = np.full(n_components, n_events, dtype=np.int64)
    np.minimum.at(first, event_label, np.arange(n_events, dtype=np.int64))
    seen = np.flatnonzero(first < n_events)
    component_key[seen] = graph.events[first[seen]]
    event_group = component_key[event_label]
    identifier_group = component_key[identifier_label]

    # Components that could hit a limit or a hub go through the exact algorithm.
    categories = sorted(config.categories)
    codes = np.zeros(len(identifiers), dtype=np.int64)
    codes[identifier_index] = graph.edge_codes
    per_category = np.bincount(
        identifier_label * len(categories) + codes, minlength=n_components * len(categories)
    ).reshape(n_components, len(categories))
    exact = per_category.sum(axis=1) > config.simple_max
    for code, category in enumerate(categories):
        limit = config.categories[category].max_per_entity
        if limit is not None:
            exact |= per_category[:, code] > limit
    refused: list[tuple[int, int, str, str]] = []
    hubs: dict[int, int] = {}
    if exact.any():
        in_exact = exact[event_label]
        component_of = dict(zip(graph.events[in_exact].tolist(), event_label[in_exact].tolist(), strict=True))
        components = database(lambda: _exact_events(cur, config, component_of, pairs))
        group_of, identifier_event, refused, hubs = _exact(config, components)
        event_group[in_exact] = [group_of[e] for e in graph.events[in_exact].tolist()]
        for k in np.flatnonzero(exact[identifier_label]).tolist():
            e = identifier_event.get(int(identifiers[k]))
            identifier_group[k] = -1 if e is None else group_of[e]
    return Groups(event_group, identifiers, identifier_group, refused, hubs)


@dataclass(slots=True)
class Plan:
    """Which customer each group becomes and what that changes. `group_keys` ascending (the group order) with
    `entity_of_group`; per stitchable event `group_index` and `moved`; `new_entities`; `touched` (customers that
    got or lost events); `heirs_gone` / `heirs` (old customers left without events and who inherits from them)."""

    group_keys: np.ndarray
    group_index: np.ndarray
    entity_of_group: np.ndarray
    moved: np.ndarray
    new_entities: np.ndarray
    touched: np.ndarray
    heirs_gone: np.ndarray
    heirs: np.ndarray


def _entities_plan(graph: Graph, groups: Groups) -> Plan:
    """Entity ids: in group order (the smallest event id first), a group keeps the oldest existing customer among
    its events' not taken by an earlier group; otherwise it gets a new id."""
    group_keys, group_index = _ranked(groups.event_group)
    n_groups, n_old = len(group_keys), len(graph.old_ids)
    chosen = np.full(n_groups, -1, dtype=np.int64)  # index into old_ids
    has_old = graph.old >= 0
    if has_old.any():
        pairs = np.unique(group_index[has_old] * n_old + graph.old[has_old])  # by group, then oldest first
        pair_group, pair_old = pairs // n_old, pairs % n_old
        first = np.ones(len(pairs), dtype=bool)
        first[1:] = pair_group[1:] != pair_group[:-1]
        best_group, best_old = pair_group[first], pair_old[first]
        if len(np.unique(best_old)) == len(best_old):
            chosen[best_group] = best_old  # no two groups want the same customer: each takes its oldest
        else:  # taken in group order
            taken: set[int] = set()
            starts = np.flatnonzero(first).tolist() + [len(pairs)]
            groups_list, olds_list = pair_group.tolist(), pair_old.tolist()
            for start, end in itertools.pairwise(starts):
                for old in olds_list[start:end]:
                    if old not in taken:
                        taken.add(old)
                        chosen[groups_list[start]] = old
                        break
    new_mask = chosen < 0
    new_entities = pgcopy.uuid_hex(int(new_mask.sum()))
    if graph.old_ids.dtype == object:  # ids not all 32 characters: text throughout (see _entity_array)
        new_entities = np.array([x.decode() for x in new_entities.tolist()], dtype=object)
    entity_of_group = np.empty(n_groups, dtype=new_entities.dtype)
    entity_of_group[~new_mask] = graph.old_ids[chosen[~new_mask]]
    entity_of_group[new_mask] = new_entities

    # An event moves when its customer changes (no customer yet: -1 never equals a new customer's -2).
    moved = graph.old != np.where(chosen >= 0, chosen, -2)[group_index]
    taken_mask = np.zeros(max(n_old, 1), dtype=bool)  # (indexed by old, which is 0 where it is -1)
    taken_mask[chosen[chosen >= 0]] = True
    lost = graph.old[moved]
    lost = np.unique(lost[lost >= 0])
    lost = lost[taken_mask[lost]]  # customers that kept their id but lost events
    # Deduplicated as group numbers by a mask over the groups (numpy's unique hashes: a second for 350k 32-byte
    # strings, 0.3 s for 1M numbers).
    group_of_old = np.full(max(n_old, 1), -1, dtype=np.int64)
    group_of_old[chosen[chosen >= 0]] = np.flatnonzero(chosen >= 0)
    touched_groups = np.zeros(n_groups, dtype=bool)
    touched_groups[group_index[moved]] = True
    touched_groups[group_of_old[lost]] = True
    touched = entity_of_group[np.flatnonzero(touched_groups)]
    # Customers no group kept: the group of the first event that had one inherits (its system events follow).
    gone_mask = has_old & ~taken_mask[np.maximum(graph.old, 0)]
    gone, first_event = np.unique(graph.old[gone_mask], return_index=True)
    heirs = entity_of_group[group_index[gone_mask][first_event]]
    return Plan(group_keys, group_index, entity_of_group, moved, new_entities, touched, graph.old_ids[gone], heirs)


# Ids spread over at most this many times their count (plus DENSE_SLACK) are ranked and looked up through arrays
# indexed by id (memory: 9 bytes per id in the span), not sorted or binary-searched: ids drawn from a sequence
# (events, identifiers) are that dense.
DENSE_SPAN = 4
DENSE_SLACK = 1 << 16


def _dense_span(values: np.ndarray, count: int) -> tuple[int, int] | None:
    """(smallest value, span) of non-empty integer `values` when the span is dense enough for `count` values."""
    low, high = int(values.min()), int(values.max())
    span = high - low + 1
    return (low, span) if span <= DENSE_SPAN * count + DENSE_SLACK else None


def _ranked(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(values, return_inverse=True) of integer ids: the distinct values ascending and each value's index
    among them. Dense ids are ranked by a mask over their span and its running count (a tenth of the sort)."""
    dense = _dense_span(values, len(values)) if len(values) else None
    if dense is None:
        return np.unique(values, return_inverse=True)
    low, span = dense
    offsets = values - low
    present = np.zeros(span, dtype=bool)
    present[offsets] = True
    rank = np.cumsum(present, dtype=np.int64) - 1
    return np.flatnonzero(present) + low, rank[offsets]


def _positions(ascending: np.ndarray, values: np.ndarray) -> np.ndarray:
    """np.searchsorted(ascending, values) where every value is in `ascending` (distinct integer ids): through an
    array of positions over their span when it is dense (a quarter of the binary searches' time)."""
    dense = _dense_span(ascending, len(ascending)) if len(ascending) and len(values) else None
    if dense is None:
        return np.searchsorted(ascending, values)
    low, span = dense
    offsets = values - low
    if int(offsets.min()) < 0 or int(offsets.max()) >= span:
        raise ValueError("a value to look up is not among the ids")
    position = np.full(span, -1, dtype=np.int64)
    position[ascending - low] = np.arange(len(ascending), dtype=np.int64)
    found = position[offsets]
    if int(found.min()) < 0:
        raise ValueError("a value to look up is not among the ids")
    return found


def _entity_array(ids: list[str]) -> np.ndarray:
    """Customer ids as a numpy array: 32-byte strings (uuid4 hex, what the ids are) for binary COPY, or, should
    any id have another length, Python strings (written by text COPY)."""
    if all(len(x) == 32 and x.isascii() for x in ids):
        return np.array([x.encode() for x in ids], dtype="S32")
    return np.array(ids, dtype=object)


def _texts(values: np.ndarray) -> list[str]:
    return [x.decode() if isinstance(x, bytes) else x for x in values.tolist()]


def _copy(cur, statement: str, columns: list[tuple[str, np.ndarray]]) -> None:
    """Binary COPY of the columns (pgcopy.copy_in), or text COPY when a column holds Python strings."""
    if not any(values.dtype == object for _, values in columns):
        pgcopy.copy_in(cur, statement, columns)
        return
    with cur.copy(f"{statement} FROM STDIN") as copy:
        for row in zip(*(values.tolist() for _, values in columns), strict=True):
            copy.write_row([x.decode() if isinstance(x, bytes) else x for x in row])


# The tables a rebuild may build anew on another connection: (table, only when it is empty). The edges start as soon
# as the pairs are known, the others when the plan is. (The attribute queue is decided at its turn: _stale_write.)
TWINNED = (("customer_entities", True), ("customer_event_entities", False), ("stitching_event_identifiers", True))


def _twins(cur, tables: Replacements) -> dict[str, Shape]:
    """The tables of TWINNED this rebuild can build anew (replace.shape); one that must be empty is locked
    (_empty_locked). The assignments table is locked already. None at all for fewer than REWRITE_MIN_EVENTS
    events: there the other connections and the swaps would cost more than they save."""
    cur.execute("SELECT count(*) FROM (SELECT 1 FROM customer_event_entities LIMIT %s) x", [REWRITE_MIN_EVENTS])
    if cur.fetchone()[0] < REWRITE_MIN_EVENTS:
        return {}
    twins = {}
    for table, only_empty in TWINNED:
        if only_empty and not _empty_locked(cur, table):
            continue
        twin = tables.shape(cur, table)
        if twin is not None:
            twins[table] = twin
    return twins


def _empty_locked(cur, table: str, *, mode: str = "EXCLUSIVE") -> bool:
    """Whether `table` is empty, locked (EXCLUSIVE by default, until commit: reads go on) when it is: nobody adds a
    row before the rebuild replaces it."""
    cur.execute(f"SELECT EXISTS (SELECT 1 FROM {table})")
    if cur.fetchone()[0]:
        return False
    cur.execute(f"LOCK TABLE {table} IN {mode} MODE")
    cur.execute(f"SELECT EXISTS (SELECT 1 FROM {table})")
    return not cur.fetchone()[0]


def _twins_build(graph: Graph, plan: Plan, tables: Replacements, twins: dict[str, Shape]) -> set[str]:
    """Start building, on other connections, the tables of `twins` this rebuild writes whole: the assignments (a
    rewrite) and the customers (all new); returns the tables started. The assignments first: the longest to build,
    they would otherwise start last on the connection the customers free and finish after everything else."""
    wanted = [
        ("customer_event_entities", _rewrite(plan), lambda: _assignments_fill(graph, plan)),
        ("customer_entities", len(plan.new_entities) > 0, lambda: _entities_fill(plan)),
    ]
    built = set()
    for table, whole, fill in wanted:
        if whole and table in twins:
            tables.build(twins[table], fill())
            built.add(table)
    return built


def _rewrite(plan: Plan) -> bool:
    """Whether the rebuild replaces the assignments table rather than updating the rows that change."""
    return int(plan.moved.sum()) >= REWRITE_MIN_EVENTS


def _entities_fill(plan: Plan) -> Callable[[object, str], None]:
    """What writes the new customers (attributes empty) into a table (its work done where it runs: on another
    connection's thread, the rebuild's own goes on meanwhile)."""

    def fill(target, table: str) -> None:
        # In id order: the primary key grows at its right edge instead of splitting pages all over.
        # (New ids are uuid hex, 32 bytes, also when existing ids of another length made them texts.)
        new_ids = plan.new_entities
        if new_ids.dtype == object:
            new_ids = np.array([x.encode() for x in new_ids], dtype="S32")
        # The ids alone: created and modified (the statement's time) and the empty attributes are the columns'
        # database defaults (the COPY twice as fast as with them).
        pgcopy.copy_in(target, f"COPY {table} (id)", [("S32", np.sort(new_ids))])

    return fill


def _entities_write(cur, plan: Plan) -> None:
    """The new customers, into customer_entities: when it is empty, with its indexes built after."""
    rebuilt = _indexes_drop_when_empty(cur, "customer_entities")
    _entities_fill(plan)(cur, "customer_entities")
    _indexes_create(cur, rebuilt)


def _assignments_fill(graph: Graph, plan: Plan) -> Callable[[object, str], None]:
    """What writes every event's customer into a table (system events keep theirs or follow its heir; the work done
    where it runs)."""

    def fill(target, table: str) -> None:
        entity_of_event = plan.entity_of_group[plan.group_index]
        _copy(target, f"COPY {table} (event_id, customer_entity_id)",
              [(">i8", graph.events), ("S32", entity_of_event)])  # fmt: skip
        if not len(graph.system_events):
            return
        heir_of = dict(zip(_texts(plan.heirs_gone), _texts(plan.heirs), strict=True))
        old_ids = _texts(graph.old_ids)
        with target.copy(f"COPY {table} (event_id, customer_entity_id) FROM STDIN") as copy:
            for event, old in zip(graph.system_events.tolist(), graph.system_old.tolist(), strict=True):
                old_id = old_ids[old] if old >= 0 else None
                copy.write_row((event, heir_of.get(old_id, old_id)))

    return fill


def _assignments_write(cur, graph: Graph, plan: Plan) -> None:
    """Every event's customer, in place (where the table is not built anew on another connection). A rebuild
    that moves at least REWRITE_MIN_EVENTS events rewrites the table (TRUNCATE, then COPY with the indexes built
    after it: one sort each; the caller holds the table locked); a smaller one updates the rows that change."""
    if _rewrite(plan):
        cur.execute("TRUNCATE customer_event_entities")
        rebuilt = _indexes_drop_when_empty(cur, "customer_event_entities")
        _assignments_fill(graph, plan)(cur, "customer_event_entities")
        _indexes_create(cur, rebuilt)
        return
    entity_of_event = plan.entity_of_group[plan.group_index]
    cur.execute("CREATE TEMP TABLE st_assign (event_id bigint, entity_id varchar(32)) ON COMMIT DROP")
    _copy(cur, "COPY st_assign (event_id, entity_id)",
          [(">i8", graph.events[plan.moved]), ("S32", entity_of_event[plan.moved])])  # fmt: skip
    _analyze_rough(cur, "st_assign")  # temporary tables have no statistics: without them, nested loops
    cur.execute(
        "UPDATE customer_event_entities a SET customer_entity_id = s.entity_id FROM st_assign s "
        "WHERE a.event_id = s.event_id"
    )
    if len(plan.heirs_gone) and len(graph.system_events):
        # Entities left without events: their system events follow the heir.
        cur.execute(
            "UPDATE customer_event_entities a SET customer_entity_id = h.heir "
            "FROM unnest(%s::text[], %s::text[]) AS h(old, heir) WHERE a.customer_entity_id = h.old",
            [_texts(plan.heirs_gone), _texts(plan.heirs)],
        )


def _stale_fill(touched: np.ndarray) -> Callable[[object, str], None]:
    """What writes the customers to queue into a table, in id order (the queue's index grows at its right edge
    instead of splitting pages all over: hundreds of thousands of random uuids; sorted where it runs)."""
    return lambda target, table: _copy(target, f"COPY {table} (entity_id)", [("S32", np.sort(touched))])


def _stale_write(cur, touched: np.ndarray, tables: Replacements) -> None:
    """Queue the customers that got or lost events for their attributes."""
    if len(touched) >= REWRITE_MIN_EVENTS and _empty_locked(cur, "customer_entities_stale"):
        # An empty queue (the usual case after a big rebuild): a new one built on another connection (after the
        # tables started before it), or straight in, no conflict, its primary key built after (attribute workers
        # wait for the rebuild's commit to claim).
        # (Customers queued later in this transaction, e.g. for an identifier they gained or lost, are carried over.)
        twin = tables.shape(cur, "customer_entities_stale", carry_over=True)
        if twin is not None:
            tables.build(twin, _stale_fill(touched))
            return
        rebuilt = _indexes_drop_when_empty(cur, "customer_entities_stale")
        if rebuilt is not None:
            _stale_fill(touched)(cur, "customer_entities_stale")
            _indexes_create(cur, rebuilt)
            return
    touched = np.sort(touched)
    cur.execute("CREATE TEMP TABLE st_stale (entity_id varchar(32)) ON COMMIT DROP")
    _copy(cur, "COPY st_stale (entity_id)", [("S32", touched)])
    cur.execute(
        "INSERT INTO customer_entities_stale (entity_id) SELECT entity_id FROM st_stale "
        "ORDER BY entity_id ON CONFLICT DO NOTHING"
    )


def _identifiers_write(cur, groups: Groups, plan: Plan) -> bool:
    """Identifiers with their customer, from st_ids (_identifiers_materialise). New ones are inserted complete
    (their ids were drawn from the sequence at extraction): one insert instead of an insert and a rewrite of every
    row. Existing ones are updated where they differ. Returns whether the table was analysed (filled from empty:
    analysed once complete, while the other connections still build, not at the end)."""
    owned = groups.identifier_group >= 0
    owner = plan.entity_of_group[_positions(plan.group_keys, groups.identifier_group[owned])]
    rebuilt = _indexes_drop_when_empty(cur, "stitching_identifiers")
    if rebuilt is not None and _new_identifiers_insert(cur, groups.identifiers[owned], owner):
        _indexes_create(cur, rebuilt, analyze=True)
        return True
    cur.execute("CREATE TEMP TABLE st_owner (identifier_id bigint, entity_id varchar(32)) ON COMMIT DROP")
    _copy(cur, "COPY st_owner (identifier_id, entity_id)", [(">i8", groups.identifiers[owned]), ("S32", owner)])
    _analyze_rough(cur, "st_owner")
    cur.execute(
        "INSERT INTO stitching_identifiers (id, category_id, value, customer_entity_id, first_seen) "
        "SELECT s.identifier_id, s.category, s.value, o.entity_id, "
        "CASE WHEN o.identifier_id IS NOT NULL THEN s.first_seen END "
        "FROM st_ids s LEFT JOIN st_owner o ON o.identifier_id = s.identifier_id WHERE s.new"
    )
    _indexes_create(cur, rebuilt, analyze=True)
    if rebuilt is None:  # (else every identifier was just inserted, with its owner)
        # Customers that gained or lost an identifier are queued for their attributes even when none of their
        # events moved (a blocked value or a deleted rule takes an identifier away). `prev` is the row before the
        # update; a customer the rebuild deleted is not queued.
        queue = (
            "INSERT INTO customer_entities_stale (entity_id) SELECT DISTINCT x.id FROM changed, "
            "LATERAL (VALUES (changed.old), (changed.new)) AS x(id) WHERE changed.old IS DISTINCT FROM changed.new "
            "AND x.id IS NOT NULL AND EXISTS (SELECT 1 FROM customer_entities c WHERE c.id = x.id) "
            "ON CONFLICT DO NOTHING"
        )
        cur.execute(
            "WITH changed AS (UPDATE stitching_identifiers i SET customer_entity_id = o.entity_id, "
            "first_seen = s.first_seen FROM st_owner o, st_ids s, stitching_identifiers prev "
            "WHERE i.id = o.identifier_id AND s.identifier_id = o.identifier_id AND prev.id = i.id "
            "AND NOT s.new AND (i.customer_entity_id IS DISTINCT FROM o.entity_id "
            "OR i.first_seen IS DISTINCT FROM s.first_seen) "
            f"RETURNING prev.customer_entity_id AS old, i.customer_entity_id AS new) {queue}"
        )
        # NOT EXISTS (an anti-join), not NOT IN: NOT IN re-scans the subquery per row.
        cur.execute(
            "WITH changed AS (UPDATE stitching_identifiers i SET customer_entity_id = NULL "
            "FROM stitching_identifiers prev WHERE prev.id = i.id AND i.customer_entity_id IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM st_owner o WHERE o.identifier_id = i.id) "
            f"RETURNING prev.customer_entity_id AS old, NULL::varchar AS new) {queue}"
        )
    return rebuilt is not None


# The packed owners are 16 bytes per identifier id in the range: up to 64 MB as one parameter (the server holds a
# few copies while the statement runs). Larger first stitches take the join.
MAX_PACKED_OWNERS = 4_000_000


def _new_identifiers_insert(cur, identifiers: np.ndarray, owners: np.ndarray) -> bool:
    """Insert every identifier of st_ids (all new: the table was empty) with its owner, when the owners are uuid
    hex (as this project makes them); returns False, having done nothing, otherwise.

    The owners go as one bytea parameter, 16 bytes per identifier id from the smallest new id on (the new ids are
    that range, with gaps), and a byte per id saying whether it has one: each row takes its slice, where a join with
    a table of owners cost as much as the insert itself (a hash probe per row)."""
    if owners.dtype != np.dtype("S32"):
        return False
    hexes = owners.tobytes()
    try:
        raw = binascii.unhexlify(hexes)
    except binascii.Error:
        return False
    if binascii.hexlify(raw) != hexes:  # upper-case hex would come back lower-case
        return False
    cur.execute("SELECT min(identifier_id), max(identifier_id) FROM st_ids")
    low, high = cur.fetchone()
    if low is None:
        return True
    size = int(high) - int(low) + 1
    if size > MAX_PACKED_OWNERS:
        return False
    offsets = identifiers - low
    packed = np.zeros((size, 16), dtype=np.uint8)
    packed[offsets] = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 16)
    has_owner = np.zeros(size, dtype=np.uint8)
    has_owner[offsets] = 1
    # Server-side binding (the bytes go as they are, not quoted), the parameters kept out of the server log (a
    # statement logged for its duration would carry the megabytes of packed owners, twice their size as hex).
    with psycopg.Cursor(cur.connection) as bound, _local_setting(bound, "log_parameter_max_length", "0", optional=True):
        bound.execute(
            "INSERT INTO stitching_identifiers (id, category_id, value, customer_entity_id, first_seen) "
            "SELECT s.identifier_id, s.category, s.value, CASE WHEN o.owned THEN "
            "encode(substring(%(owners)s::bytea FROM o.k * 16 + 1 FOR 16), 'hex') END, "
            "CASE WHEN o.owned THEN s.first_seen END "
            "FROM st_ids s, LATERAL (SELECT (s.identifier_id - %(low)s)::int AS k) k, "
            "LATERAL (SELECT k.k, get_byte(%(has_owner)s::bytea, k.k::int) = 1 AS owned) o",
            {"owners": packed.tobytes(), "has_owner": has_owner.tobytes(), "low": int(low)},
        )
    return True


@contextmanager
def _local_setting(cur, name: str, value: str, *, optional: bool = False) -> Iterator[None]:
    """`name` set to `value` for the statements inside, for this transaction only, then back to what it was (a
    caller's own SET LOCAL included). `optional`: a setting the role may not change (log_parameter_max_length
    needs a superuser or GRANT SET) is left as it is instead of failing the rebuild."""
    cur.execute("SELECT current_setting(%s)", [name])
    previous = cur.fetchone()[0]
    cur.execute("SAVEPOINT st_setting")
    try:
        cur.execute("SELECT set_config(%s, %s, true)", [name, value])
    except psycopg.errors.InsufficientPrivilege:
        if not optional:
            raise
        cur.execute("ROLLBACK TO SAVEPOINT st_setting")
        yield
        return
    cur.execute("RELEASE SAVEPOINT st_setting")
    yield
    cur.execute("SELECT set_config(%s, %s, true)", [name, previous])


@dataclass(slots=True)
class Dropped:
    """What _indexes_drop_when_empty dropped, for _indexes_create to build again."""

    table: str
    indexes: list[str]  # CREATE INDEX statements
    keys: list[tuple[str, str]]  # (name, definition) of primary key and unique constraints
    foreign_keys: list[tuple[str, str]]
    # (table, name, definition) of other tables' foreign keys to the primary key
    referencing: list[tuple[str, str, str]] = field(default_factory=list)


def _indexes_drop_when_empty(cur, table: str) -> Dropped | None:
    """When `table` is empty (a first stitch, or a table the rebuild just truncated): drop its indexes and
    constraints, to be built by _indexes_create after the bulk insert (one sort each, one validating join per
    foreign key, instead of work per row), and return what was dropped; else None. A primary key that other
    tables' foreign keys reference is dropped with those foreign keys when their tables are empty too (they are
    checked again when added back), and stays otherwise. Locks the tables (ACCESS EXCLUSIVE) until commit."""
    # Locked before the indexes go (rows committed by others in between would skip the checks).
    if not _empty_locked(cur, table, mode="ACCESS EXCLUSIVE"):
        return None
    # Deferred checks pending in this transaction would forbid altering the table.
    cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    cur.execute("SET CONSTRAINTS ALL DEFERRED")
    cur.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE confrelid = %s::regclass AND contype = 'f' ORDER BY 1, 2",
        [table],
    )
    referencing = cur.fetchall()
    others = sorted({other for other, _, _ in referencing})
    # Their rows would be checked one by one against the new key: only when they are all empty (then locked and
    # checked again) does the primary key go with their foreign keys.
    if not _all_empty(cur, others) or not _all_empty(cur, others, lock=True):
        referencing = []
    for other, name, _ in referencing:
        cur.execute(f'ALTER TABLE {other} DROP CONSTRAINT "{name}"')
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
        referencing,
    )


def _all_empty(cur, tables: list[str], *, lock: bool = False) -> bool:
    for table in tables:
        if lock:
            cur.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        cur.execute(f"SELECT EXISTS (SELECT 1 FROM {table})")
        if cur.fetchone()[0]:
            return False
    return True


def _analyze_rough(cur, table: str) -> None:
    """ANALYZE from a tenth of the usual sample (3,000 rows): the row counts and rough distributions the rebuild's
    own statements are planned with, at a sixth of the cost (~0.1 s per million rows). The tables others query are
    analysed in full at the end."""
    with _local_setting(cur, "default_statistics_target", "10"):
        cur.execute(f"ANALYZE {table}")


def _indexes_create(cur, dropped: Dropped | None, *, analyze: bool = False) -> None:
    """Build again what _indexes_drop_when_empty dropped. `analyze`: the table is complete: analysed in full (once
    its indexes are built), else only roughly, for the foreign keys' validating joins."""
    if dropped is None:
        return
    cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    cur.execute("SET CONSTRAINTS ALL DEFERRED")
    cur.execute("SET LOCAL maintenance_work_mem = '512MB'")
    for name, definition in dropped.keys:
        cur.execute(f'ALTER TABLE {dropped.table} ADD CONSTRAINT "{name}" {definition}')
    for definition in dropped.indexes:
        cur.execute(definition)
    if analyze:
        cur.execute(f"ANALYZE {dropped.table}")
    elif dropped.foreign_keys:
        _analyze_rough(cur, dropped.table)  # the validating join is planned with real row counts
    for name, definition in dropped.foreign_keys:
        cur.execute(f'ALTER TABLE {dropped.table} ADD CONSTRAINT "{name}" {definition}')
    for other, name, definition in dropped.referencing:
        cur.execute(f'ALTER TABLE {other} ADD CONSTRAINT "{name}" {definition}')


EDGE_COLUMNS = "event_id, identifier_id, rule_id, status, reason"
# A linked pair's columns: status and reason take their database defaults ('linked', ''), not sent per row (the
# COPY of a first stitch's 1.2M edges 0.1 s faster).
LINKED_COLUMNS = "event_id, identifier_id, rule_id"


def _edges_rows(pairs: Pairs) -> np.ndarray:
    """The linkable pairs as binary COPY rows of stitching_event_identifiers (id, LINKED_COLUMNS), ids left to fill
    (field v0). In (event, identifier) order, the unique key's: its index is built from presorted rows (a third
    faster), and the ids, in the same order, give the primary key presorted rows too."""
    linked = ~pairs.blocked
    events, identifiers, rules = pairs.events[linked], pairs.identifiers[linked], pairs.rules[linked]
    order = _pair_order(events, identifiers)
    return pgcopy.rows_build([
        (">i8", 0), (">i8", events[order]), (">i8", identifiers[order]), (">i8", rules[order]),
    ])  # fmt: skip


def _blocked_edges(pairs: Pairs) -> Iterator[tuple[int, int, int, str, str]]:
    """The pairs that may not link, as edge rows (EDGE_COLUMNS)."""
    for p in np.flatnonzero(pairs.blocked).tolist():
        identifier = int(pairs.identifiers[p])
        yield (int(pairs.events[p]), identifier, int(pairs.rules[p]), "blocked", pairs.reasons[identifier])


def _ids_take(cur, table: str, count: int) -> int:
    """The first of `count` ids drawn from `table`'s id sequence in one setval (nothing else draws from it while a
    rebuild runs: stitching holds the global lock shared, a rebuild exclusively)."""
    cur.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
    sequence = cur.fetchone()[0]
    cur.execute(f"SELECT nextval('{sequence}')")
    first = int(cur.fetchone()[0])
    cur.execute("SELECT setval(%s, %s)", [sequence, first + count - 1])
    return first


def _edges_fill(cur, pairs: Pairs, rows: np.ndarray | None = None) -> Callable[[object, str], None]:
    """What writes every pair, linked or blocked, into an empty edges table (a first stitch): the linkable ones by
    binary COPY of `rows` (_edges_rows, laid out where it runs when not given), every id drawn here."""
    linked = int((~pairs.blocked).sum())
    blocked = int(pairs.blocked.sum())
    first = _ids_take(cur, "stitching_event_identifiers", linked + blocked) if linked + blocked else 0

    def fill(target, table: str) -> None:
        laid = _edges_rows(pairs) if rows is None else rows
        if len(laid):
            laid["v0"] = np.arange(first, first + len(laid), dtype=np.int64)
            pgcopy.copy_rows(target, f"COPY {table} (id, {LINKED_COLUMNS})", laid)
        if blocked:
            with target.copy(f"COPY {table} (id, {EDGE_COLUMNS}) FROM STDIN") as copy:
                for k, row in enumerate(_blocked_edges(pairs)):
                    copy.write_row((first + linked + k, *row))

    return fill


def _edges_write(cur, pairs: Pairs, rows: np.ndarray | None = None) -> Dropped | None:
    """Make stitching_event_identifiers hold every pair, linked or blocked: all inserted into an empty table (a
    first stitch; returns what its indexes and constraints are, for _indexes_create), else only the difference
    written (a rebuild of unchanged data writes nothing).

    Into an empty table the linkable pairs go by binary COPY of the arrays (_edges_fill), with ids drawn from the
    table's sequence in one setval: COPY writes many rows per WAL record where INSERT ... SELECT writes one each
    (1.2M edges: 0.7 s instead of 1.8 s), and nothing draws a sequence value per row. No edge is inserted
    concurrently (stitching holds the global lock shared, a rebuild exclusively)."""
    columns = EDGE_COLUMNS
    linked = ~pairs.blocked
    blocked = pairs.blocked.any()
    rebuilt = _indexes_drop_when_empty(cur, "stitching_event_identifiers")
    if rebuilt is not None:
        _edges_fill(cur, pairs, rows)(cur, "stitching_event_identifiers")
        return rebuilt
    cur.execute(
        "CREATE TEMP TABLE st_final (event_id bigint, identifier_id bigint, rule_id bigint, status varchar(16), "
        "reason text) ON COMMIT DROP"
    )
    count = int(linked.sum())
    if count:
        pgcopy.copy_in(cur, f"COPY st_final ({columns})", [
            (">i8", pairs.events[linked]), (">i8", pairs.identifiers[linked]), (">i8", pairs.rules[linked]),
            ("S6", np.full(count, b"linked", dtype="S6")), ("S0", None),
        ])  # fmt: skip
    if blocked:
        with cur.copy(f"COPY st_final ({columns}) FROM STDIN") as copy:
            for row in _blocked_edges(pairs):
                copy.write_row(row)
    _analyze_rough(cur, "st_final")
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
    return None


def _identifiers_materialise(cur, pairs: Pairs, config) -> None:
    """st_ids (identifier_id, new, category, value, first_seen): every identifier the events carry, each value read
    from st_raw where its first pair is (st_idmap, written first from Pairs.where: on the connection's thread, while
    the union-find runs)."""
    cur.execute(
        "CREATE UNLOGGED TABLE st_idmap (identifier_id bigint, new smallint, code integer, event_id bigint, "
        "slot integer, first_seen timestamptz)"
    )
    if pairs.where and len(pairs.where[0][1]):
        pgcopy.copy_in(cur, "COPY st_idmap (identifier_id, new, code, event_id, slot, first_seen)", pairs.where)
    _analyze_rough(cur, "st_idmap")  # (the insert joins it with st_raw: a hash of the smaller side)
    if not pairs.columns:
        cur.execute(
            "CREATE UNLOGGED TABLE st_ids (identifier_id bigint, new boolean, category text, value text, "
            "first_seen timestamptz)"
        )
        return
    # The value in the pair's column by a CASE, not by building an array of every column per row (a sixth faster).
    value = "CASE m.slot " + " ".join(f"WHEN {k} THEN r.v{k}" for k in range(pairs.columns)) + " END"
    cur.execute(
        "CREATE UNLOGGED TABLE st_ids AS SELECT m.identifier_id, m.new = 1 AS new, "
        f"({_literal(sorted(config.categories))}::text[])[m.code + 1] AS category, "
        f"{value} AS value, m.first_seen FROM st_idmap m JOIN st_raw r ON r.event_id = m.event_id"
    )
    _analyze_rough(cur, "st_ids")


@dataclass(slots=True)
class Pairs:
    """Every (event, identifier) pair the rules find, once per event and identifier, as arrays: the event, the
    identifier's id, the rule that found it, that rule's column in st_raw (`slots`: v0, v1, ...), the identifier's
    category code (its index in the sorted category ids) and whether it may not link (`blocked`); `reasons`: why,
    per identifier id that may not link; `columns`: how many value columns st_raw has (one per rule)."""

    events: np.ndarray
    identifiers: np.ndarray
    rules: np.ndarray
    slots: np.ndarray
    codes: np.ndarray
    blocked: np.ndarray
    reasons: dict[int, str]
    columns: int
    all_new: bool  # no identifier was stored before: a first stitch
    # st_idmap's columns (identifier_id, new, code, event_id, slot, first_seen): where each identifier's value is.
    where: list[tuple[str, np.ndarray]] = field(default_factory=list)


# An identifier's key: its value's SHA-256, the first 16 bytes (two 64-bit numbers), within its category. No
# collision is known or can be made on purpose (2^64 work for even a birthday collision): two values with one key
# would be one identifier, and identifier values come from the public.
# Hashed as UTF-8 whatever the database's encoding: textsend() would give the client's encoding in the leader and
# the database's in a parallel worker, so one value could get two keys outside UTF-8 databases.
_KEY = "substr(sha256(convert_to({}, 'UTF8')), 1, 16)"


def _extract(cur, config, mark: Callable[[str], None], *, meanwhile: Callable[[], T]) -> tuple[Pairs, T]:
    """Every identifier the events carry, numbered, and its pairs with the events (returned, with where each
    identifier's value is: Pairs.where); st_raw (event_id, event_time, v0, v1, ...: each rule's normalised value)
    stays for _identifiers_materialise.

    Scratch tables are UNLOGGED (dropped before the rebuild commits; never visible to others): unlike temporary
    tables they can be filled by parallel plans, so both cores extract. Every rule is applied in one pass over the
    events (st_raw: a column per rule, NULL where the rule does not apply), the payload value extracted once and
    normalised by its category's SQL normaliser; the pairs are then read with each value's key (_KEY) and junk test,
    computed by parallel workers too.

    The identifiers are told apart by their keys in numpy (one sort of 1.2M numbers), not by grouping their texts in
    SQL (a hash aggregate of every pair, then a hash join of every pair back to its identifier: 3 s); only the new
    identifiers' texts are read again (st_ids, _identifiers_materialise), by a join with where their first pair is.

    `meanwhile()` runs on another thread, its statements on this connection, while the pairs are numbered here; its
    result is returned with the pairs."""
    categories = sorted(config.categories)
    code_of = {category: code for code, category in enumerate(categories)}
    # An event yields each identifier once (as identifiers_extract does): a rule's value is left out where a rule
    # of the same category before it (higher priority, then smaller id) gave the same value.
    sourced = [(source_id, rule) for source_id, source_rules in config.rules.items() for rule in source_rules]
    rules = [rule for _, rule in sourced]
    column = {rule.id: f"v{k}" for k, rule in enumerate(rules)}
    extracts, values, branches = [], [], []
    for k, (source_id, rule) in enumerate(sourced):
        applies = f"e.source_id = {int(source_id)}"
        if rule.event_type != "*":
            applies += f" AND e.type = {_literal(rule.event_type)}"
        extracts.append(f"CASE WHEN {applies} THEN e.payload #> {_literal(list(rule.path))}::text[] END AS j{k}")
        normalised = sql_normalize(config.normalizers[rule.category], sql_scalar_text(f"x.j{k}"))
        # (Most rules find nothing in most events: a NULL is not taken through the normaliser's expression.)
        values.append(f"CASE WHEN x.j{k} IS NOT NULL THEN left({normalised}, {MAX_IDENTIFIER_LENGTH}) END AS v{k}")
        earlier = [
            column[other.id]
            for other in rules
            if other.category == rule.category and (-other.priority, other.id) < (-rule.priority, rule.id)
        ]
        branches.append(
            f"SELECT event_id, {k} AS slot, int8send(event_id) || int4send({k}) || timestamptz_send(event_time) || "
            f"{_KEY.format(f'v{k}')} AS record, {sql_junk_reason(f'v{k}')} AS junk "
            f"FROM st_raw WHERE v{k} IS NOT NULL{{range}}" + "".join(f" AND v{k} IS DISTINCT FROM {o}" for o in earlier)
        )
    if extracts:
        sources = sorted(int(x) for x in config.rules)
        # OFFSET 0 keeps the extracted jsonb values columns (each normaliser reads its value several times) and, as a
        # constant, no Limit node: the plan stays parallel. (No parameters: psycopg sends the text as it is, a % in
        # a rule's event type included.)
        cur.execute(
            f"CREATE UNLOGGED TABLE st_raw AS SELECT x.id AS event_id, x.event_time, {', '.join(values)} "
            f"FROM (SELECT e.id, e.event_time, {', '.join(extracts)} FROM customer_events e "
            f"WHERE e.source_id = ANY('{{{','.join(map(str, sources))}}}'::bigint[]) OFFSET 0) x"
        )
        events_extracted = cur.rowcount
    else:
        cur.execute("CREATE UNLOGGED TABLE st_raw (event_id bigint, event_time timestamptz)")
    mark("extract_pairs")

    # The pairs with their events' times, keys and junk reasons: one binary value per column, read straight into
    # numpy. The pairs as a UNION ALL of one branch per rule: the workers of its parallel plan compute the keys and
    # the junk test (a projection over st_raw's values in one statement runs above the Gather, in one process).
    # Each pair as one 36-byte record (its event, its rule's column, the event's time as binary COPY carries it, the
    # value's key): one aggregate appending bytes per row. A bytea value holds at most 1 GB: a large data set is
    # read in event id ranges of at most MAX_FETCH_RECORDS pairs each (if its events are spread evenly).
    parts, junk_events, junk_slots, junk_reasons = [], [], [], []
    ranges = _id_ranges(cur, "customer_events", events_extracted * len(rules)) if branches else []
    for low, high in ranges:
        bounded = f" AND event_id BETWEEN {low} AND {high}" if len(ranges) > 1 else ""
        records, bad_events, bad_slots, bad_reasons = pgcopy.fetch_arrays(
            cur.connection,
            "SELECT string_agg(record, ''::bytea), coalesce(array_agg(event_id) FILTER (WHERE junk IS NOT NULL), '{}'),"
            " coalesce(array_agg(slot) FILTER (WHERE junk IS NOT NULL), '{}'), array_agg(junk) FILTER (WHERE junk IS "
            f"NOT NULL) FROM ({' UNION ALL '.join(branch.replace('{range}', bounded) for branch in branches)}) p",
        )
        parts.append(np.frombuffer(records or b"", dtype=PAIR_RECORD))
        junk_events += bad_events.tolist()
        junk_slots += bad_slots.tolist()
        junk_reasons += bad_reasons or []
    # The connection is free until the ids are drawn: `meanwhile` runs its statements on a thread of its own while the
    # pairs are sorted here (numpy's sorts release the GIL); leaving the block waits for it, an error here included.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="restitch-read") as reader:
        beside = reader.submit(meanwhile)
        numbered = _pairs_number(parts, rules, code_of)
    read = beside.result()
    pair_events, pair_slots, pair_identifier = numbered.events, numbered.slots, numbered.identifier
    identifier_codes, identifier_keys = numbered.identifier_codes, numbered.identifier_keys

    # Why an identifier may not link: junk (tested per pair in SQL: a function of the value) before a blocked value.
    reasons_at: dict[int, str] = {}  # identifier index -> reason
    if junk_events:
        at = {(e, k): reason for e, k, reason in zip(junk_events, junk_slots, junk_reasons, strict=True)}
        for p in np.flatnonzero(np.isin(pair_events, np.array(junk_events, dtype=np.int64))).tolist():
            reason = at.get((int(pair_events[p]), int(pair_slots[p])))
            if reason is not None:
                reasons_at.setdefault(int(pair_identifier[p]), f"junk value: {reason}")
    if config.blocked:
        blocked_keys = [(category, value) for category, value in config.blocked if category in code_of]
        cur.execute(
            f"SELECT {_KEY.format('v')} FROM unnest(%s::text[]) WITH ORDINALITY AS b(v, n) ORDER BY n",
            [[value for _, value in blocked_keys]],
        )
        wanted = {
            (code_of[category], bytes(digest)): config.blocked[(category, value)]
            for (category, value), (digest,) in zip(blocked_keys, cur.fetchall(), strict=True)
        }
        candidates = np.flatnonzero(
            np.isin(identifier_keys[:, 0], np.array([np.frombuffer(d, "<u8")[0] for _, d in wanted], dtype=np.uint64))
        )
        for j in candidates.tolist():
            reason = wanted.get((int(identifier_codes[j]), identifier_keys[j].tobytes()))
            if reason is not None:
                reasons_at.setdefault(j, reason)

    # Ids: an existing identifier keeps its id; new ones get ids after the table's sequence, in key order, and are
    # inserted with their owner once it is known (no identifier is created concurrently: stitching holds the global
    # lock shared, this rebuild exclusively).
    count = len(identifier_codes)
    ids = np.full(count, -1, dtype=np.int64)
    cur.execute("SELECT EXISTS (SELECT 1 FROM stitching_identifiers)")
    stored = cur.fetchone()[0]
    if stored and count:
        existing_ids, existing_codes, existing_keys = _existing_identifiers(cur, categories)
        both_codes = np.concatenate([identifier_codes, existing_codes])
        both_keys = np.concatenate([identifier_keys, existing_keys])
        both = _key_order(both_codes, both_keys)
        same = _same_as_previous(both_codes[both], both_keys[both])
        a, b = both[:-1][same], both[1:][same]  # one of each matched pair is ours, the other existing
        ours, theirs = np.where(a < count, a, b), np.where(a < count, b, a) - count
        ids[ours] = existing_ids[theirs]
    new = ids < 0
    cur.execute("SELECT pg_get_serial_sequence('stitching_identifiers', 'id')")
    sequence = cur.fetchone()[0]
    if new.any():
        cur.execute(f"SELECT nextval('{sequence}')")
        low = int(cur.fetchone()[0])
        ids[new] = np.arange(low, low + int(new.sum()), dtype=np.int64)
        cur.execute("SELECT setval(%s, %s)", [sequence, int(ids[new][-1])])
    # Where each identifier's value is, for the insert of the new ones (and the owners' update of the others):
    # st_idmap, written by _identifiers_materialise.
    where = [
        (">i8", ids), (">i2", new.astype(np.int16)), (">i4", identifier_codes.astype(np.int32)),
        (">i8", pair_events[numbered.representative]), (">i4", pair_slots[numbered.representative].astype(np.int32)),
        (">i8", numbered.first_seen),
    ]  # fmt: skip
    blocked_identifiers = np.zeros(count, dtype=bool)
    blocked_identifiers[list(reasons_at)] = True
    mark("extract_identifiers")
    pairs = Pairs(
        events=pair_events,
        identifiers=ids[pair_identifier],
        rules=numbered.rules,
        slots=pair_slots,
        codes=numbered.codes,
        blocked=blocked_identifiers[pair_identifier],
        reasons={int(ids[j]): reason for j, reason in reasons_at.items()},
        columns=len(rules),
        all_new=not stored,
        where=where,
    )
    return pairs, read


@dataclass(slots=True)
class _Numbered:
    """The pairs as columns (`events`, `slots`, `rules`, `codes`, and `identifier`: each one's identifier as an
    index) and the identifiers told apart, in key order: each one's category code, key, the pair where its value is
    (`representative`) and when it was first seen."""

    events: np.ndarray
    slots: np.ndarray
    rules: np.ndarray
    codes: np.ndarray
    identifier: np.ndarray
    identifier_codes: np.ndarray
    identifier_keys: np.ndarray
    representative: np.ndarray
    first_seen: np.ndarray


def _pairs_number(parts: list[np.ndarray], rules: list, code_of: dict[str, int]) -> _Numbered:
    """The pairs' records (PAIR_RECORD) as columns, and the identifiers their keys tell apart."""
    records = np.concatenate(parts) if parts else np.empty(0, dtype=PAIR_RECORD)
    pair_events, pair_slots = records["event"].astype(np.int64), records["slot"].astype(np.int64)
    times, keys = records["time"].astype(np.int64), records["key"]
    pair_rules = np.array([rule.id for rule in rules] or [0], dtype=np.int64)[pair_slots]
    pair_codes = np.array([code_of[rule.category] for rule in rules] or [0], dtype=np.int64)[pair_slots]
    # Identifiers: the distinct (category, key), in key order; `first` the sorted position of each one's first pair.
    n = len(pair_events)
    order = _key_order(pair_codes, keys)
    sorted_keys, sorted_codes = keys[order], pair_codes[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = ~_same_as_previous(sorted_codes, sorted_keys)
    first = np.flatnonzero(starts)
    pair_identifier = np.empty(n, dtype=np.int64)  # the pair's identifier as an index into the identifiers
    pair_identifier[order] = np.cumsum(starts) - 1
    representative = order[first]  # a pair of each identifier: where its value is (event, slot)
    first_seen = np.minimum.reduceat(times[order], first) if n else np.empty(0, dtype=np.int64)
    return _Numbered(
        pair_events, pair_slots, pair_rules, pair_codes, pair_identifier, sorted_codes[first], sorted_keys[first],
        representative, first_seen,
    )  # fmt: skip


def _pair_order(events: np.ndarray, identifiers: np.ndarray) -> np.ndarray:
    """The order of (event, identifier) pairs by event, then identifier (non-negative ids): one sort of the pair as
    one number where it fits in 63 bits, else a lexsort."""
    if not len(events):
        return np.empty(0, dtype=np.int64)
    span = int(identifiers.max()) + 1
    if int(events.max()) < (2**63 - 1) // span:
        return np.argsort(events * span + identifiers, kind="stable")
    return np.lexsort((identifiers, events))


def _same_as_previous(codes: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For rows 1.. of (code, key) rows: whether each equals the row before it."""
    return (codes[1:] == codes[:-1]) & (keys[1:, 0] == keys[:-1, 0]) & (keys[1:, 1] == keys[:-1, 1])


def _key_order(codes: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """An order of the (code, key) rows in which equal rows are adjacent: by the key's first half mixed with the
    code (one sort of 64-bit numbers, a tenth of a lexsort of the three columns), or, when rows that differ share
    that number and end up interleaved (only values made to collide on 64 bits would), by all three columns."""
    mixed = keys[:, 0] ^ (codes.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    order = np.argsort(mixed)
    first, second, code = mixed[order], keys[order, 1], codes[order]
    if np.any((first[1:] == first[:-1]) & ((second[1:] != second[:-1]) | (code[1:] != code[:-1]))):
        return np.lexsort((keys[:, 1], keys[:, 0], codes))
    return order


def _existing_identifiers(cur, categories: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stored identifiers of these categories: ids, category codes and keys (_KEY of the value); read in id
    ranges of at most MAX_FETCH_RECORDS (the keys of one range are one bytea value)."""
    cur.execute("SELECT count(*) FROM stitching_identifiers")
    parts = []
    for low, high in _id_ranges(cur, "stitching_identifiers", cur.fetchone()[0]):
        parts.append(
            pgcopy.fetch_arrays(
                cur.connection,
                "SELECT coalesce(array_agg(id), '{}'), "
                "coalesce(array_agg(array_position(%s::text[], category_id::text) - 1), '{}'), "
                f"string_agg({_KEY.format('value')}, ''::bytea) FROM stitching_identifiers "
                "WHERE category_id = ANY(%s::text[]) AND id BETWEEN %s AND %s",
                [categories, categories, low, high],
            )
        )
    if not parts:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty((0, 2), dtype=np.uint64)
    keys = b"".join(part[2] or b"" for part in parts)
    return (
        np.concatenate([part[0] for part in parts]),
        np.concatenate([part[1] for part in parts]),
        np.frombuffer(keys, dtype="<u8").reshape(-1, 2).astype(np.uint64),
    )


# A pair as _extract reads it: event id, the rule's column in st_raw, the event's time, the value's key.
PAIR_RECORD = np.dtype([("event", ">i8"), ("slot", ">i4"), ("time", ">i8"), ("key", "<u8", 2)])
# Records per read: a bytea value holds at most 1 GB (36-byte pair records: 288 MB; 16-byte keys: 128 MB).
MAX_FETCH_RECORDS = 8_000_000


def _id_ranges(cur, table: str, rows: int) -> list[tuple[int, int]]:
    """Ranges of `table`'s id (its primary key: min and max from the index) splitting `rows` rows (or pairs) into
    parts of at most MAX_FETCH_RECORDS, if the ids are spread evenly; none for an empty table."""
    cur.execute(f"SELECT min(id), max(id) FROM {table}")
    low, high = cur.fetchone()
    if low is None:
        return []
    parts = max(1, -(-rows // MAX_FETCH_RECORDS))
    step = (high - low) // parts + 1
    return [(low + k * step, min(high, low + (k + 1) * step - 1)) for k in range(parts)]


def _literal(value) -> str:
    """An SQL literal (psycopg's quoting: safe for any text an administrator typed)."""
    return sql.Literal(value).as_string(None)


def _exact_events(cur, config, component_of: dict[int, int], pairs: Pairs) -> list[list[EventNode]]:
    """The events of these components (event -> component label) with their linked identifiers, per component."""
    events = list(component_of)
    cur.execute("SELECT id, event_time, source_id, idempotency_key FROM customer_events WHERE id = ANY(%s)", [events])
    nodes = {e: EventNode(e, t, s, k, []) for e, t, s, k in cur.fetchall()}
    columns = ", ".join(f"v{k}" for k in range(pairs.columns)) or "NULL"
    cur.execute(
        f"SELECT event_id, {columns} FROM st_raw WHERE event_id = ANY(%s)",
        [events],
    )
    values = {row[0]: row[1:] for row in cur.fetchall()}
    priority = {rule.id: rule.priority for source_rules in config.rules.values() for rule in source_rules}
    categories = sorted(config.categories)
    chosen = np.flatnonzero(np.isin(pairs.events, np.array(events, dtype=np.int64)) & ~pairs.blocked)
    for p in chosen.tolist():
        e, slot = int(pairs.events[p]), int(pairs.slots[p])
        link = Link(
            int(pairs.identifiers[p]), categories[pairs.codes[p]], values[e][slot], priority.get(int(pairs.rules[p]), 0)
        )
        nodes[e].links.append(link)
    by_component: dict[int, list[EventNode]] = {}
    for e, node in nodes.items():
        by_component.setdefault(component_of[e], []).append(node)
    return list(by_component.values())


def _exact(config, components: list[list[EventNode]]) -> tuple[dict, dict, list, dict]:
    """partition_compute of each component. Returns each event's group key (the smallest event id of its group),
    each of their identifiers' owner event (an event of its group; None when none of its links was made), the
    refused links and the held hubs."""
    group_of: dict[int, int] = {}
    identifier_event: dict[int, int | None] = {}
    refused: list[tuple[int, int, str, str]] = []
    hubs: dict[int, int] = {}
    for component in components:
        partition = partition_compute(component, categories=config.categories, **config.partition_options())
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
    return group_of, identifier_event, refused, hubs
