"""Stitching configuration as the engine sees it, and identifier extraction from one event's payload."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import F

from stitching.models import BlockedValue, EventIdentifier, HubReview, StitchingCategory, StitchingRule
from stitching.normalizers import is_junk, normalize
from stitching.services.partition import MAX_IDENTIFIERS, MAX_MERGES, Category

# An identifier that would join more than this many customers at once is held for review instead.
DEFAULT_HUB_LIMIT = 20
REASON_MAX = EventIdentifier._meta.get_field("reason").max_length


def hub_limit() -> int:
    return int(getattr(settings, "STITCHING_HUB_LIMIT", DEFAULT_HUB_LIMIT))


def max_identifiers() -> int:
    return int(getattr(settings, "STITCHING_MAX_IDENTIFIERS", MAX_IDENTIFIERS))


def max_merges() -> int:
    return int(getattr(settings, "STITCHING_MAX_MERGES", MAX_MERGES))


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    event_type: str
    category: str
    path: tuple[str, ...]
    priority: int


@dataclass(frozen=True, slots=True)
class Extracted:
    """One identifier found in an event. `blocked` is the reason it may not link (None: it may)."""

    category: str
    value: str
    rule_id: int
    rule_priority: int
    blocked: str | None


@dataclass(slots=True)
class StitchConfig:
    categories: dict[str, Category]
    normalizers: dict[str, str]
    rules: dict[int, list[Rule]]  # by source id
    blocked: dict[tuple[str, str], str]  # (category, identifier value) -> why it may not link
    hub_exempt: frozenset[int]
    hub_limit: int = field(default_factory=hub_limit)
    max_identifiers: int = field(default_factory=max_identifiers)
    max_merges: int = field(default_factory=max_merges)

    @property
    def simple_max(self) -> int:
        """A component with at most this many identifiers can make no hub and break no cap: an identifier joins at
        most (identifiers - 1) groups, and a customer is at most (identifiers - 1) merges. Bulk and incremental
        stitching take their fast paths only below it."""
        return min(self.hub_limit, self.max_identifiers, self.max_merges)

    def partition_options(self) -> dict:
        """The limits partition_compute takes besides the categories."""
        return {
            "hub_limit": self.hub_limit,
            "hub_exempt": self.hub_exempt,
            "max_identifiers": self.max_identifiers,
            "max_merges": self.max_merges,
        }

    def blocked_reason(self, category: str, value: str) -> str | None:
        reason = is_junk(value)
        if reason is not None:
            return f"junk value: {reason}"
        return self.blocked.get((category, value))


def blocked_value_matches(*, category: str | None, value: str, normalizers: Mapping[str, str]) -> list[tuple[str, str]]:
    """The (category, identifier value) pairs a blocked value refuses: its category's (stored normalised), or,
    blocked for every category, the value as each category's normaliser makes it (`normalizers`: by category)."""
    if category is not None:
        return [(category, value)]
    matches = []
    for slug, normalizer in normalizers.items():
        normalised = normalize(normalizer, value)
        if normalised is not None:
            matches.append((slug, normalised))
    return matches


def config_load() -> StitchConfig:
    """The current categories, rules, blocked values (as the identifiers they refuse) and approved hubs."""
    categories, normalizers = {}, {}
    for c in StitchingCategory.objects.all():
        window = timedelta(days=c.limit_window_days) if c.limit_window_days else None
        categories[c.id] = Category(priority=c.priority, max_per_entity=c.max_per_entity, window=window)
        normalizers[c.id] = c.normalizer
    rules: dict[int, list[Rule]] = {}
    for r in StitchingRule.objects.order_by("id"):
        rules.setdefault(r.source_id, []).append(
            Rule(r.id, r.event_type, r.category_id, tuple(r.path.split(".")), r.priority)
        )
    blocked: dict[tuple[str, str], str] = {}
    # A category's own block first: its reason is the one recorded where a block for every category matches too.
    for b in BlockedValue.objects.order_by(F("category_id").asc(nulls_last=True), "id"):
        # (A refusal's reason holds 300 characters, as a block's reason does: cut after the prefix.)
        why = f"blocked value: {b.reason}"[:REASON_MAX] if b.reason else "blocked value"
        for key in blocked_value_matches(category=b.category_id, value=b.value, normalizers=normalizers):
            blocked.setdefault(key, why)
    approved = HubReview.objects.filter(status=HubReview.Status.APPROVED)
    exempt = frozenset(approved.values_list("identifier_id", flat=True))
    return StitchConfig(categories, normalizers, rules, blocked, exempt)


def path_get(payload: object, path: tuple[str, ...]) -> object:
    """The value at a dotted path, with PostgreSQL `#>` semantics (integer keys index arrays, negative from the end)."""
    node = payload
    for key in path:
        if isinstance(node, dict):
            if key not in node:
                return None
            node = node[key]
        elif isinstance(node, list):
            try:
                index = int(key)
            except ValueError:
                return None
            if not -len(node) <= index < len(node):
                return None
            node = node[index]
        else:
            return None
    return node


def identifiers_extract(config: StitchConfig, *, source_id: int, event_type: str, payload: object) -> list[Extracted]:
    """Every identifier the rules find in one event (deduplicated by category and value; most trusted rule kept)."""
    found: dict[tuple[str, str], Extracted] = {}
    for rule in config.rules.get(source_id, ()):
        if rule.event_type != StitchingRule.ANY_TYPE and rule.event_type != event_type:
            continue
        value = normalize(config.normalizers[rule.category], path_get(payload, rule.path))
        if value is None:
            continue
        key = (rule.category, value)
        kept = found.get(key)
        if kept is None or rule.priority > kept.rule_priority:
            found[key] = Extracted(rule.category, value, rule.id, rule.priority, config.blocked_reason(*key))
    return list(found.values())
