"""Stitching reads: configuration lists, refused links, and the identity graph of a customer ("which events
brought which identifiers, and when") with the shortest chain that explains why two identifiers are one customer.

Both graph reads are bounded: a customer with a hundred thousand events gets a truncated picture, and the path
search stops after a fixed number of nodes instead of walking a whole component.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Case, Q, QuerySet, When

from cdp.models import CustomerEntity
from stitching.models import (
    BlockedValue,
    EntityChange,
    EventIdentifier,
    HubReview,
    Identifier,
    RefusedLink,
    StitchingCategory,
    StitchingRule,
)

GRAPH_DEFAULT_EVENTS = 200
GRAPH_MAX_EVENTS = 1000
GRAPH_MAX_IDENTIFIERS = 500
PATH_MAX_NODES = 100_000
PATH_MAX_DEPTH = 64  # edges (identifier → event → identifier is two)


def categories_list() -> QuerySet[StitchingCategory]:
    return StitchingCategory.objects.order_by("-priority", "id")


def category_normalizers() -> dict[str, str]:
    """Each stitching category's normaliser (category id -> normaliser name)."""
    return dict(StitchingCategory.objects.values_list("id", "normalizer"))


def identifier_keys(q: str) -> list[tuple[str, str]]:
    """(category id, value) of what `q` is in each category that can read it, as the category stores its values
    (normalised: "Ann@Example.com " is the email ann@example.com)."""
    from stitching.normalizers import normalize

    keys = []
    for category_id, normalizer in category_normalizers().items():
        try:
            normalised = normalize(normalizer, q)
        except ValueError:
            continue
        if normalised:
            keys.append((category_id, normalised))
    return keys


def entity_identifier_values(*, entity_id: str, category_id: str) -> list[str]:
    """The normalised values of one category stitched to the customer (its linked identifiers), sorted."""
    return sorted(
        Identifier.objects.filter(customer_entity_id=entity_id, category_id=category_id).values_list("value", flat=True)
    )


def rules_list() -> QuerySet[StitchingRule]:
    return StitchingRule.objects.select_related("source", "category").order_by(
        "source__slug", "event_type", "-priority", "id"
    )


def blocked_values_list() -> QuerySet[BlockedValue]:
    return BlockedValue.objects.select_related("category", "created_by").order_by("-created", "-id")


def refused_links_list() -> QuerySet[RefusedLink]:
    """Links the engine refused or held (blocked value, per-customer limit, hub review), newest first (as the
    admin's RefusedLink proxy). Served by the partial index on status != linked."""
    return (
        RefusedLink.objects.exclude(status=EventIdentifier.Status.LINKED)
        .select_related("identifier", "identifier__category", "event", "event__source", "event__entity_link", "rule")
        .order_by("-id")
    )


def event_identifiers(*, event_id: int) -> QuerySet[EventIdentifier]:
    """The identifiers one event carried, with whether each was allowed to link and why not (the event's page: what
    a refused link or a held hub review leads to). Most trusted category first."""
    return (
        EventIdentifier.objects.filter(event_id=event_id)
        .select_related("identifier", "identifier__category", "rule")
        .order_by("-identifier__category__priority", "identifier__category_id", "identifier__value")
    )


def identifier_value_condition(term: str, *, prefix: str = "identifier__") -> Q:
    """Rows whose identifier is `term` as stored or as any category normalises it ("Ann@Example.com " finds the
    email ann@example.com, "777 123 456" the phone +420777123456): the refused links' search in the admin and their
    `value` filter in the API."""
    condition = Q(**{f"{prefix}value": term})
    for category_id, normalised in identifier_keys(term):
        condition |= Q(**{f"{prefix}category_id": category_id, f"{prefix}value": normalised})
    return condition


# Pending reviews first (what waits for a decision), then newest first.
HUB_REVIEWS_ORDER = (Case(When(status=HubReview.Status.PENDING, then=0), default=1).asc(), "-created", "-id")


def hub_reviews_list() -> QuerySet[HubReview]:
    return HubReview.objects.select_related("identifier", "identifier__category", "decided_by").order_by(
        *HUB_REVIEWS_ORDER
    )


def entity_changes_list(*, entity_id: str | None = None) -> QuerySet[EntityChange]:
    """Merge / split / erase history, newest first. One entity's rows: see entity_changes_of."""
    changes = EntityChange.objects.order_by("-created", "-id")
    return changes if entity_id is None else changes.filter(entity_changes_of(entity_id))


def entity_changes_of(entity_id: str) -> Q:
    """The changes an entity took part in: those about it, and those where it was merged into another or split
    off (both through indexes)."""
    return Q(customer_entity_id=entity_id) | Q(other_entity_ids__contains=[entity_id])


# Merges a lookup of a merged-away id follows at most (each step is two index lookups).
MERGE_CHAIN_MAX = 20


@dataclass(frozen=True)
class EntityFate:
    """What became of a customer entity id that no longer exists: merged into `merged_into` (which exists), or
    erased (`erased` is the erased id: the entity itself, or the customer it was merged into)."""

    merged_into: str | None = None
    erased: str | None = None
    # Customers split off `merged_into` (or a customer on the way) after the merge, that exist now: the merged id's
    # events may be in any of them too.
    split_into: tuple[str, ...] = ()


def entity_fate(*, entity_id: str) -> EntityFate | None:
    """Where a customer entity id that does not exist went, from the merge and erasure history: through a chain of
    merges (at most MERGE_CHAIN_MAX) to the customer that exists now, or to an erasure. None when the history does
    not say (an id that never existed, or one a full rebuild replaced: a rebuild records no history)."""
    current, seen = entity_id, {entity_id}
    merged_at = None
    for _ in range(MERGE_CHAIN_MAX):
        # The GIN index on other_entity_ids answers the containment. The newest record decides: an id merged away,
        # split off again later and then erased was erased.
        merge = (
            EntityChange.objects.filter(kind=EntityChange.Kind.MERGE, other_entity_ids__contains=[current])
            .order_by("-created", "-id")
            .values_list("customer_entity_id", "created")
            .first()
        )
        erase = (
            EntityChange.objects.filter(kind=EntityChange.Kind.ERASE, customer_entity_id=current)
            .order_by("-created", "-id")
            .values_list("created", flat=True)
            .first()
        )
        if erase is not None and (merge is None or erase >= merge[1]):
            return EntityFate(erased=current)
        if merge is None:
            return None
        survivor = merge[0]
        if survivor in seen:
            return None
        merged_at = merged_at or merge[1]
        if CustomerEntity.objects.filter(pk=survivor).exists():
            return EntityFate(merged_into=survivor, split_into=_split_off(seen | {survivor}, since=merged_at))
        seen.add(survivor)
        current = survivor
    return None


def _split_off(entity_ids: set[str], *, since: datetime) -> tuple[str, ...]:
    """The customers that exist now and were split off these ones from `since` on, sorted."""
    others: set[str] = set()
    splits = EntityChange.objects.filter(
        kind=EntityChange.Kind.SPLIT, customer_entity_id__in=entity_ids, created__gte=since
    ).values_list("other_entity_ids", flat=True)
    for ids in splits:
        others.update(ids)
    others -= entity_ids
    return tuple(sorted(CustomerEntity.objects.filter(pk__in=others).values_list("pk", flat=True)))


# --- identity graph ---------------------------------------------------------------------------------------------


def _rows(sql: str, params: Iterable[Any]) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return cursor.fetchall()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def event_node(event_id: int, type_: str, source_slug: str, source_name: str, event_time: datetime) -> dict:
    return {
        "id": f"event:{event_id}",
        "kind": "event",
        "event_id": event_id,
        "type": type_,
        "source": source_slug,
        "source_name": source_name,
        "event_time": _iso(event_time),
    }


def identifier_node(identifier_id: int, category: str, value: str, first_seen, entity_id: str | None) -> dict:
    return {
        "id": f"identifier:{identifier_id}",
        "kind": "identifier",
        "identifier_id": identifier_id,
        "category": category,
        "value": value,
        "first_seen": _iso(first_seen),
        "customer_entity_id": entity_id,
    }


def identity_graph(entity_id: str, *, limit: int = GRAPH_DEFAULT_EVENTS) -> dict[str, Any]:
    """The identity graph of one customer: event and identifier nodes, and an edge for every identifier an event
    carried (status linked, or refused with the reason).

    At most `limit` events: first the event that first brought each identifier (so every identifier shows how it
    arrived), then the newest events. `truncated` is true when events or identifiers were left out."""
    from stitching.services.engine import system_source_id

    limit = max(1, min(limit, GRAPH_MAX_EVENTS))
    # The system events (merges, splits) carry no identifier and are not the customer's activity: left out.
    system = system_source_id()
    event_count = _rows(
        "SELECT count(*) FROM customer_event_entities a JOIN customer_events e ON e.id = a.event_id "
        "WHERE a.customer_entity_id = %s AND e.source_id <> %s",
        [entity_id, system],
    )[0][0]
    # The first event that brought each identifier (earliest event time, then lowest id: deterministic).
    firsts = _rows(
        """
        SELECT DISTINCT ON (ei.identifier_id) ei.identifier_id, e.id, e.event_time
        FROM customer_event_entities a JOIN customer_events e ON e.id = a.event_id
        JOIN stitching_event_identifiers ei ON ei.event_id = e.id
        WHERE a.customer_entity_id = %s
        ORDER BY ei.identifier_id, e.event_time, e.id
        """,
        [entity_id],
    )
    identifier_total = len(firsts)
    firsts.sort(key=lambda row: (row[2], row[1]))
    chosen: list[int] = []
    seen: set[int] = set()
    for _, event_id, _ in firsts[:GRAPH_MAX_IDENTIFIERS]:
        if event_id not in seen and len(chosen) < limit:
            seen.add(event_id)
            chosen.append(event_id)
    if len(chosen) < limit:
        newest = _rows(
            "SELECT e.id FROM customer_event_entities a JOIN customer_events e ON e.id = a.event_id "
            "WHERE a.customer_entity_id = %s AND e.source_id <> %s ORDER BY e.event_time DESC, e.id DESC LIMIT %s",
            [entity_id, system, limit],
        )
        for (event_id,) in newest:
            if len(chosen) >= limit:
                break
            if event_id not in seen:
                seen.add(event_id)
                chosen.append(event_id)

    events = _rows(
        """
        SELECT e.id, e.type, s.slug, s.name, e.event_time
        FROM customer_events e JOIN cdp_datasource s ON s.id = e.source_id
        WHERE e.id = ANY(%s) ORDER BY e.event_time, e.id
        """,
        [chosen],
    )
    edges_rows = _rows(
        """
        SELECT ei.event_id, ei.identifier_id, ei.status, ei.reason, ei.rule_id, r.path
        FROM stitching_event_identifiers ei LEFT JOIN stitching_stitchingrule r ON r.id = ei.rule_id
        WHERE ei.event_id = ANY(%s) ORDER BY ei.event_id, ei.identifier_id
        """,
        [chosen],
    )
    identifier_ids = sorted({row[1] for row in edges_rows})
    identifiers = _rows(
        """
        SELECT id, category_id, value, first_seen, customer_entity_id FROM stitching_identifiers
        WHERE id = ANY(%s) ORDER BY category_id, first_seen NULLS LAST, id
        """,
        [identifier_ids],
    )
    event_times = {row[0]: row[4] for row in events}
    nodes = [identifier_node(*row) for row in identifiers] + [event_node(*row) for row in events]
    edges = [
        {
            "source": f"event:{event_id}",
            "target": f"identifier:{identifier_id}",
            "status": status,
            "reason": reason,
            "rule_id": rule_id,
            "path": path,
            "event_time": _iso(event_times.get(event_id)),
        }
        for event_id, identifier_id, status, reason, rule_id, path in edges_rows
    ]
    return {
        "customer_entity_id": entity_id,
        "nodes": nodes,
        "edges": edges,
        "counts": {
            "events": event_count,
            "identifiers": identifier_total,
            "events_shown": len(events),
            "identifiers_shown": len(identifiers),
        },
        "truncated": len(events) < event_count or len(identifiers) < identifier_total,
    }


# --- "why are these one customer?" ------------------------------------------------------------------------------


class PathNotFound(Exception):
    """No event carried an identifier, or no chain of linked events joins the two (the message says why, without
    guessing)."""


class PathSearchTooLarge(Exception):
    """The search stopped at its bound before finding a chain."""


Node = tuple[str, int]  # ("identifier", id) or ("event", id)


def identifier_find(*, category_id: str, value: Any, end: str) -> Identifier:
    """The identifier for a raw value, normalised by the category's normaliser. An unknown category or a value
    that cannot be an identifier is a bad question: ValidationError naming `<end>_category` / `<end>_value` (end:
    "from" or "to"). A valid value no event carried raises PathNotFound."""
    from stitching.normalizers import normalize

    category = StitchingCategory.objects.filter(pk=category_id).first()
    if category is None:
        raise ValidationError({f"{end}_category": f"Unknown stitching category {str(category_id)[:64]!r}."})
    normalised = normalize(category.normalizer, value)
    if not normalised:
        raise ValidationError({f"{end}_value": f"{str(value)[:80]!r} is not a valid {category.name} value."})
    identifier = Identifier.objects.filter(category=category, value=normalised).first()
    if identifier is None:
        raise PathNotFound(f"No event carried the {category.name} {normalised!r}.")
    return identifier


def _unlinked_reason(identifier: Identifier) -> str:
    """Why an identifier belongs to no customer, from the statuses of its links ("the Cookie 'x' is blocked")."""
    S = EventIdentifier.Status
    # (A hub's links can be millions, every one refused: a thousand of them tell why.)
    links = EventIdentifier.objects.filter(identifier=identifier).order_by()
    statuses = set(links.values_list("status", flat=True)[:1000])
    why = (
        "is blocked" if S.BLOCKED in statuses
        else "is held for review (it would join many customers)" if S.HELD in statuses
        else "was refused by a limit on every event that carried it" if S.LIMIT in statuses
        else "is linked to no customer"
    )  # fmt: skip
    return f"the {identifier.category.name} {identifier.value!r} {why}, so it belongs to no customer."


def _neighbours(kind: str, ids: list[int]) -> list[tuple[int, int]]:
    """(from id, to id) pairs over linked edges, in a stable order."""
    if kind == "identifier":
        sql = (
            "SELECT identifier_id, event_id FROM stitching_event_identifiers "
            "WHERE identifier_id = ANY(%s) AND status = 'linked' ORDER BY identifier_id, event_id"
        )
    else:
        sql = (
            "SELECT event_id, identifier_id FROM stitching_event_identifiers "
            "WHERE event_id = ANY(%s) AND status = 'linked' ORDER BY event_id, identifier_id"
        )
    return _rows(sql, [ids])


def _shortest_chain(start: Node, goal: Node, *, max_nodes: int, max_depth: int) -> list[Node]:
    """Bidirectional breadth-first search over the bipartite identifier ↔ event graph of linked edges."""
    if start == goal:
        return [start]
    parents: list[dict[Node, Node | None]] = [{start: None}, {goal: None}]
    depth: list[dict[Node, int]] = [{start: 0}, {goal: 0}]
    frontiers: list[list[Node]] = [[start], [goal]]
    while frontiers[0] and frontiers[1]:
        side = 0 if len(frontiers[0]) <= len(frontiers[1]) else 1
        other = 1 - side
        kind = frontiers[side][0][0]  # a frontier is one kind: the graph is bipartite
        next_kind = "event" if kind == "identifier" else "identifier"
        best: tuple[int, Node] | None = None
        next_frontier: list[Node] = []
        for from_id, to_id in _neighbours(kind, [node[1] for node in frontiers[side]]):
            node, parent = (next_kind, to_id), (kind, from_id)
            if node in parents[side]:
                continue
            parents[side][node] = parent
            depth[side][node] = depth[side][parent] + 1
            next_frontier.append(node)
            if node in depth[other]:
                total = depth[side][node] + depth[other][node]
                if best is None or total < best[0]:
                    best = (total, node)
        if best is not None:
            meeting = best[1]
            head: list[Node] = []
            cursor: Node | None = meeting
            while cursor is not None:
                head.append(cursor)
                cursor = parents[0][cursor]
            head.reverse()
            cursor = parents[1][meeting]
            while cursor is not None:
                head.append(cursor)
                cursor = parents[1][cursor]
            return head
        frontiers[side] = next_frontier
        if len(parents[0]) + len(parents[1]) > max_nodes:
            raise PathSearchTooLarge(
                f"The search stopped after {max_nodes} events and identifiers without finding a chain."
            )
        reached = max(depth[0].values(), default=0) + max(depth[1].values(), default=0)
        if reached > max_depth:
            raise PathSearchTooLarge(f"No chain of at most {max_depth // 2} events links them.")
    raise PathNotFound("They are not one customer: no chain of linked events joins them.")


def identity_path(
    category_a: str,
    value_a: Any,
    category_b: str,
    value_b: Any,
    *,
    max_nodes: int = PATH_MAX_NODES,
    max_depth: int = PATH_MAX_DEPTH,
) -> dict[str, Any]:
    """The shortest chain identifier → event → identifier → ... that joins two identifiers (values are
    normalised first). Raises ValidationError (an unknown category or invalid value, see identifier_find),
    PathNotFound (a value no event carried, or not linked) or PathSearchTooLarge."""
    start = identifier_find(category_id=category_a, value=value_a, end="from")
    goal = identifier_find(category_id=category_b, value=value_b, end="to")
    same_entity = start.customer_entity_id is not None and start.customer_entity_id == goal.customer_entity_id
    if start.pk != goal.pk and not same_entity:
        # Linked identifiers always share the entity: the cheap check answers most "no" questions at once.
        for identifier in (start, goal):
            if identifier.customer_entity_id is None:
                raise PathNotFound(f"They are not one customer: {_unlinked_reason(identifier)}")
        raise PathNotFound("They are not one customer: the two identifiers belong to different customers.")
    chain = _shortest_chain(("identifier", start.pk), ("identifier", goal.pk), max_nodes=max_nodes, max_depth=max_depth)

    identifier_ids = [node_id for kind, node_id in chain if kind == "identifier"]
    event_ids = [node_id for kind, node_id in chain if kind == "event"]
    identifiers = {row[0]: identifier_node(*row) for row in _rows(
        "SELECT id, category_id, value, first_seen, customer_entity_id FROM stitching_identifiers WHERE id = ANY(%s)",
        [identifier_ids],
    )}  # fmt: skip
    events = {row[0]: event_node(*row) for row in _rows(
        "SELECT e.id, e.type, s.slug, s.name, e.event_time FROM customer_events e "
        "JOIN cdp_datasource s ON s.id = e.source_id WHERE e.id = ANY(%s)",
        [event_ids],
    )}  # fmt: skip
    steps = [identifiers[node_id] if kind == "identifier" else events[node_id] for kind, node_id in chain]
    return {
        "linked": True,
        "customer_entity_id": start.customer_entity_id,
        "from": identifiers[start.pk],
        "to": identifiers[goal.pk],
        "events": len(event_ids),
        "path": steps,
    }
