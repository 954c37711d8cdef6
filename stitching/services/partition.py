"""The stitching algorithm as a pure function: events with their identifiers in, a partition into groups out.

Determinism: the result depends only on the set of events given (and the limits), never on the order they are
passed in: events are processed in the canonical order (event_time, source_id, idempotency_key), which is total
because (source_id, idempotency_key) is unique. The engine always hands over a whole *raw component* (every event
reachable through shared non-blocked identifiers), so incremental stitching, any batch split and a full rebuild
compute the same function of the same input.

Per event, its linkable identifiers are ordered by trust: category priority desc, category id, rule priority desc,
value. When joining would give a group more values of a category than its `max_per_entity`, the least trusted
identifier of the event is dropped (the link is refused with status `limit`) and the join retried, as Segment
Unify does. A category with a `window` counts only the values the group gained within that time before the
event (each value at the time of the first event that brought it in; one gained exactly a window earlier no longer
counts): Segment's weekly or monthly limits.
An identifier that joined more than `hub_limit` groups (it "would link too many customers") is a hub: its links
are held and the component is computed again without it, until no new hub appears. Hubs an
administrator approved (`hub_exempt`) are never held.

Hard caps per customer, whatever the categories' limits (Segment Unify's): at most `max_identifiers` identifiers
and `max_merges` merges (groups joined into it). A join that would break a cap drops the event's least trusted
identifier and is retried, like a category limit: a customer cannot grow without bound (a chain of cookies each
linking the next), which is what makes components too big to load or recompute.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

LINKED = "linked"
LIMIT = "limit"
HELD = "held"

MAX_IDENTIFIERS = 1000
MAX_MERGES = 100


@dataclass(frozen=True, slots=True)
class Link:
    """One identifier an event carries (already known not to be blocked)."""

    identifier_id: int
    category: str
    value: str
    rule_priority: int = 0


@dataclass(slots=True)
class EventNode:
    event_id: int
    event_time: datetime
    source_id: int
    idempotency_key: str
    links: list[Link]

    @property
    def canonical_key(self) -> tuple:
        return (self.event_time, self.source_id, self.idempotency_key)


@dataclass(frozen=True, slots=True)
class Category:
    priority: int
    max_per_entity: int | None
    window: timedelta | None = None  # the limit counts values gained within it before each event; None: ever


@dataclass(slots=True)
class Partition:
    """groups: lists of event ids, each in canonical order, the list ordered by each group's first event.
    `refused[(event_id, identifier_id)] = (status, reason)` for links not made; `identifier_group` gives the group
    index of every linked identifier; `merges[g]` the (event_id, identifier_id) steps that joined earlier groups."""

    groups: list[list[int]] = field(default_factory=list)
    identifier_group: dict[int, int] = field(default_factory=dict)
    refused: dict[tuple[int, int], tuple[str, str]] = field(default_factory=dict)
    merges: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    hubs: dict[int, int] = field(default_factory=dict)  # identifier id -> how many groups it would have joined


def _link_order(categories: Mapping[str, Category]):
    def key(link: Link) -> tuple:
        category = categories.get(link.category)
        return (-(category.priority if category else 0), link.category, -link.rule_priority, link.value)

    return key


def partition_compute(
    events: Iterable[EventNode],
    *,
    categories: Mapping[str, Category],
    hub_limit: int,
    hub_exempt: frozenset[int] | set[int] = frozenset(),
    max_identifiers: int = MAX_IDENTIFIERS,
    max_merges: int = MAX_MERGES,
) -> Partition:
    """The partition of `events` (see the module docstring). Pure: no database access."""
    ordered = sorted(events, key=lambda e: e.canonical_key)
    order = _link_order(categories)
    for node in ordered:
        # One link per identifier and event (two rules may find the same value): keep the most trusted.
        best: dict[int, Link] = {}
        for link in node.links:
            kept = best.get(link.identifier_id)
            if kept is None or link.rule_priority > kept.rule_priority:
                best[link.identifier_id] = link
        node.links = sorted(best.values(), key=order)
    hubs: dict[int, int] = {}
    while True:
        result, merge_counts = _pass(ordered, categories=categories, hubs=hubs, caps=(max_identifiers, max_merges))
        new_hubs = {
            identifier_id: count + 1
            for identifier_id, count in merge_counts.items()
            if count >= hub_limit and identifier_id not in hub_exempt and identifier_id not in hubs
        }
        if not new_hubs:
            result.hubs = hubs
            return result
        hubs.update(new_hubs)


def _pass(
    ordered: list[EventNode],
    *,
    categories: Mapping[str, Category],
    hubs: Mapping[int, int],
    caps: tuple[int, int],
) -> tuple[Partition, dict[int, int]]:
    limits = {slug: c.max_per_entity for slug, c in categories.items() if c.max_per_entity is not None}
    windows = {slug: categories[slug].window for slug in limits if categories[slug].window is not None}
    max_identifiers, max_merges = caps
    parent: list[int] = []
    members: list[list[int]] = []  # events per root
    values: list[dict[str, int]] = []  # per root: how many identifiers of each limited category without a window
    # per root and windowed category: when each of its identifiers joined (sorted)
    gained: list[dict[str, list[datetime]]] = []
    sizes: list[tuple[int, int]] = []  # per root: (identifiers, merges)
    steps: list[list[tuple[int, int]]] = []
    identifier_root: dict[int, int] = {}
    merge_counts: dict[int, int] = {}
    refused: dict[tuple[int, int], tuple[str, str]] = {}

    def find(g: int) -> int:
        root = g
        while parent[root] != root:
            root = parent[root]
        while parent[g] != root:
            parent[g], g = root, parent[g]
        return root

    for node in ordered:
        links = []
        for link in node.links:
            if link.identifier_id in hubs:
                refused[(node.event_id, link.identifier_id)] = (
                    HELD,
                    f"held for review: would join {hubs[link.identifier_id]} customers",
                )
            else:
                links.append(link)
        while True:
            roots = []
            for link in links:
                g = identifier_root.get(link.identifier_id)
                if g is not None:
                    g = find(g)
                    if g not in roots:
                        roots.append(g)
            over = None
            # Groups are disjoint and an identifier belongs to one group: counts add up.
            new_links = [link for link in links if link.identifier_id not in identifier_root]
            identifiers = sum(sizes[g][0] for g in roots) + len(new_links)
            merges = sum(sizes[g][1] for g in roots) + max(len(roots) - 1, 0)
            if limits:
                counts: dict[str, int] = {}
                for g in roots:
                    for slug, n in values[g].items():
                        counts[slug] = counts.get(slug, 0) + n
                    for slug, times in gained[g].items():
                        # the values gained after (event time - window)
                        counts[slug] = (
                            counts.get(slug, 0) + len(times) - bisect_right(times, node.event_time - windows[slug])
                        )
                for link in new_links:
                    if link.category in limits:
                        counts[link.category] = counts.get(link.category, 0) + 1
                for slug, n in counts.items():
                    if n > limits[slug]:
                        within = f" within {days_text(windows[slug])}" if slug in windows else ""
                        over = f"the customer would have {n} {slug} values{within} (limit {limits[slug]})"
                        break
            if over is None and identifiers > max_identifiers:
                over = f"the customer would have {identifiers} identifiers (cap {max_identifiers})"
            if over is None and merges > max_merges:
                over = f"the customer would be {merges} merges (cap {max_merges})"
            if over is None:
                break
            dropped = links.pop()
            refused[(node.event_id, dropped.identifier_id)] = (
                LIMIT,
                f"{over}; dropped the least trusted identifier ({dropped.category})",
            )
        if not roots:
            target = len(parent)
            parent.append(target)
            members.append([])
            values.append({})
            gained.append({})
            sizes.append((0, 0))
            steps.append([])
        else:
            # Small-to-large: the biggest group absorbs the others.
            target = max(roots, key=lambda g: len(members[g]))
            if len(roots) > 1:
                for link in links:
                    g = identifier_root.get(link.identifier_id)
                    if g is not None:
                        merge_counts[link.identifier_id] = merge_counts.get(link.identifier_id, 0) + len(roots) - 1
                joined_by = next(
                    link.identifier_id
                    for link in links
                    if link.identifier_id in identifier_root and find(identifier_root[link.identifier_id]) != target
                )
                for g in roots:
                    if g == target:
                        continue
                    parent[g] = target
                    members[target].extend(members[g])
                    steps[target].extend(steps[g])
                    for slug, n in values[g].items():
                        values[target][slug] = values[target].get(slug, 0) + n
                    for slug, times in gained[g].items():
                        merged = gained[target].setdefault(slug, [])
                        merged.extend(times)
                        merged.sort()  # two sorted runs: Timsort merges them in linear time
                    members[g], values[g], gained[g], steps[g] = [], {}, {}, []
                steps[target].append((node.event_id, joined_by))
        members[target].append(node.event_id)
        new_count = 0
        for link in links:
            if link.identifier_id not in identifier_root:
                identifier_root[link.identifier_id] = target
                new_count += 1
                if link.category in windows:  # events come in time order: appending keeps the list sorted
                    gained[target].setdefault(link.category, []).append(node.event_time)
                elif link.category in limits:
                    values[target][link.category] = values[target].get(link.category, 0) + 1
        if roots:
            sizes[target] = (
                sum(sizes[g][0] for g in roots) + new_count,
                sum(sizes[g][1] for g in roots) + len(roots) - 1,
            )
            for g in roots:
                if g != target:
                    sizes[g] = (0, 0)
        else:
            sizes[target] = (new_count, 0)

    # Groups in order of their first event; members back into canonical order.
    position = {node.event_id: i for i, node in enumerate(ordered)}
    roots = [g for g in range(len(parent)) if parent[g] == g]
    roots.sort(key=lambda g: min(position[e] for e in members[g]))
    index = {g: i for i, g in enumerate(roots)}
    result = Partition()
    for g in roots:
        result.groups.append(sorted(members[g], key=position.__getitem__))
        if steps[g]:
            result.merges[index[g]] = sorted(steps[g], key=lambda s: position[s[0]])
    result.identifier_group = {i: index[find(g)] for i, g in identifier_root.items()}
    result.refused = refused
    return result, merge_counts


def days_text(window: timedelta) -> str:
    """ "1 day", "30 days"."""
    days = window / timedelta(days=1)
    return f"{days:g} day" if days == 1 else f"{days:g} days"
