"""The stitching algorithm as the pure function it is (stitching.services.partition): limits with a window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stitching.services.partition import Category, EventNode, Link, partition_compute

T0 = datetime(2025, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
CATEGORIES = {
    "email": Category(priority=80, max_per_entity=2, window=2 * DAY),
    "cookie": Category(priority=40, max_per_entity=None),
}


IDS: dict[tuple[str, str], int] = {}


def event(n: int, at: timedelta, *links: tuple[str, str]) -> EventNode:
    """Event n, `at` after T0, carrying (category, value) identifiers (one id per identifier)."""
    return EventNode(n, T0 + at, 1, f"m{n}", [Link(IDS.setdefault(link, len(IDS) + 1), *link) for link in links])


def refused(events: list[EventNode]) -> set[tuple[int, str]]:
    result = partition_compute(events, categories=CATEGORIES, hub_limit=100)
    names = {link.identifier_id: link.value for e in events for link in e.links}
    return {(event_id, names[identifier_id]) for event_id, identifier_id in result.refused}


def test_a_value_gained_exactly_a_window_earlier_no_longer_counts():
    events = [
        event(1, timedelta(0), ("cookie", "c1"), ("email", "a@x.cz")),
        event(2, timedelta(hours=1), ("cookie", "c1"), ("email", "b@x.cz")),
        # 2 days after a@ (a@ no longer counts), 1 day 23 hours after b@ (b@ does): b@ and c@, within the limit.
        event(3, 2 * DAY, ("cookie", "c1"), ("email", "c@x.cz")),
        # 2 days after b@: c@ and d@ are the only ones in the window.
        event(4, 2 * DAY + timedelta(hours=1), ("cookie", "c1"), ("email", "d@x.cz")),
        # c@ and d@ still count: a fifth address is refused, the cookie (less trusted) dropped.
        event(5, 2 * DAY + timedelta(hours=2), ("cookie", "c1"), ("email", "e@x.cz")),
    ]
    assert refused(events) == {(5, "c1")}


def test_groups_joined_count_the_values_each_gained_within_the_window():
    # Two customers, each gaining its addresses at its own times, interleaved; a later event joins them.
    events = [
        event(1, timedelta(0), ("cookie", "c1"), ("email", "a@x.cz")),
        event(2, timedelta(hours=1), ("cookie", "c2"), ("email", "b@x.cz")),
        event(3, 3 * DAY, ("cookie", "c1"), ("email", "c@x.cz")),
        event(4, 3 * DAY + timedelta(hours=1), ("cookie", "c2"), ("email", "d@x.cz")),
    ]
    # Within 2 days of the join, c@ and d@ were gained (a@ and b@ are older): 2, within the limit.
    join_late = [*events, event(5, 4 * DAY, ("cookie", "c1"), ("cookie", "c2"))]
    assert refused(join_late) == set()
    assert len(partition_compute(join_late, categories=CATEGORIES, hub_limit=100).groups) == 1
    # Joined the day after a@ and b@ with a third address of its own: 3 within the window, the join refused.
    join_early = [*events[:2], event(5, DAY, ("cookie", "c1"), ("cookie", "c2"), ("email", "e@x.cz"))]
    assert (5, "c2") in refused(join_early)
