"""Default stitching categories and the rules Segment-shaped sources get out of the box.

Categories (created by migration 0002; priorities decide what a limit drops first):

    user_id  trim   at most 1 per customer   priority 100   (a login id: two of them are two people)
    email    email  at most 5                priority 80
    phone    phone  at most 5                priority 60
    cookie   trim   no limit                 priority 40    (browsers are cleared often; hubs are held instead)

Junk values (`null`, `undefined`, ...) are refused by `stitching.normalizers.is_junk` for every category,
built in rather than stored as BlockedValue rows so that no one can delete them by mistake and new categories
are protected too.
"""

from __future__ import annotations

from django.db import transaction

from cdp.models import DataSource
from stitching.models import StitchingCategory, StitchingRule

DEFAULT_CATEGORIES: list[dict] = [
    {"id": "user_id", "name": "User ID", "normalizer": "trim", "max_per_entity": 1, "priority": 100},
    {"id": "email", "name": "Email", "normalizer": "email", "max_per_entity": 5, "priority": 80},
    {"id": "phone", "name": "Phone", "normalizer": "phone", "max_per_entity": 5, "priority": 60},
    {"id": "cookie", "name": "Cookie / anonymous ID", "normalizer": "trim", "max_per_entity": None, "priority": 40},
]

# (payload path, category, rule priority): what Segment's analytics libraries send.
SEGMENT_RULES: list[tuple[str, str, int]] = [
    ("userId", "user_id", 10),
    ("anonymousId", "cookie", 10),
    ("traits.email", "email", 10),
    ("context.traits.email", "email", 5),
    ("traits.phone", "phone", 10),
    ("context.traits.phone", "phone", 5),
    # An alias message joins its previousId to its userId (Segment's "merge two identities"). The previous id is
    # most often the visitor's anonymousId (analytics.js's default), so it is read as a cookie: it then matches
    # the events that anonymous visitor sent. Only alias messages carry it.
    ("previousId", "cookie", 5),
]


def default_categories_ensure() -> list[StitchingCategory]:
    """The default categories (existing ones are left as an administrator configured them)."""
    result = []
    for spec in DEFAULT_CATEGORIES:
        fields = {k: v for k, v in spec.items() if k != "id"}
        category, _ = StitchingCategory.objects.get_or_create(id=spec["id"], defaults=fields)
        result.append(category)
    return result


@transaction.atomic
def rules_ensure(*, source: DataSource, rules: list[tuple[str, str, int]], event_type: str = "*") -> int:
    """Create the missing rules among `rules` (path, category, priority) for a source; returns how many."""
    default_categories_ensure()
    created = 0
    for path, category, priority in rules:
        _, new = StitchingRule.objects.get_or_create(
            source=source,
            event_type=event_type,
            category_id=category,
            path=path,
            defaults={"priority": priority},
        )
        created += new
    return created


def segment_default_rules_ensure(*, source: DataSource) -> int:
    """Segment's identifiers for a source, unless it already has stitching rules (an administrator's choice
    wins): userId → user_id, anonymousId and an alias's previousId → cookie, (context.)traits.email → email,
    (context.)traits.phone → phone. Called when a source first receives Segment (/v1) traffic; returns how many
    rules were created."""
    if StitchingRule.objects.filter(source=source).exists():
        return 0
    return rules_ensure(source=source, rules=SEGMENT_RULES)


def demo_rules_ensure(*, sources: dict[str, DataSource]) -> int:
    """Stitching rules for the demo sources: Segment's for web and mobile, top-level fields for CRM and email."""
    created = 0
    for slug in ("web", "mobile"):
        if slug in sources:
            created += segment_default_rules_ensure(source=sources[slug])
    if "crm" in sources:
        created += rules_ensure(source=sources["crm"], rules=[("email", "email", 10), ("phone", "phone", 10)])
    if "emails" in sources:
        created += rules_ensure(source=sources["emails"], rules=[("email", "email", 10)])
    return created
