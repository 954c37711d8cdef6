"""Stitching configuration: categories, rules, blocked values and hub review decisions.

Every change that alters which events link is followed, after the transaction commits, by a re-stitch of the
components it can affect (`stitching.services.engine`), so that blocking a value or changing a rule splits what
that link had joined and joins what it had kept apart. The engine is imported lazily: it imports our models.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from cdp.models import Attribute, CustomerEvent, DataSource, User
from cdp.services.attributes import jsonpath_problem
from cdp.services.data_sources import data_source_is_system
from stitching.models import (
    BlockedValue,
    EventIdentifier,
    HubReview,
    Identifier,
    RestitchCause,
    StitchingCategory,
    StitchingRule,
)
from stitching.services.extraction import blocked_value_matches

MAX_VALUE_LENGTH = 400
MAX_PATH_LENGTH = 255
MAX_PATH_SEGMENTS = 16
MAX_EVENT_TYPE_LENGTH = 128
# A dotted payload path: segments of letters, digits, `_`, `-`, `$`, `@`, `:` (no spaces, no empty segments).
PATH_RE = re.compile(r"^[A-Za-z0-9_\-$@:]+(\.[A-Za-z0-9_\-$@:]+)*$")
CATEGORY_ID_RE = re.compile(r"^[a-z0-9_\-]+$")
CATEGORY_FIELDS = ("name", "normalizer", "max_per_entity", "limit_window_days", "priority")
MAX_WINDOW_DAYS = 3650
RULE_FIELDS = ("source", "event_type", "category", "path", "priority")


# --- validation -------------------------------------------------------------------------------------------------


def path_validate(path: Any) -> str:
    """A dotted payload path such as `traits.email`; raises ValidationError naming what is wrong."""
    if not isinstance(path, str) or not path.strip():
        raise ValidationError({"path": "A payload path is required, e.g. traits.email."})
    path = path.strip()
    if len(path) > MAX_PATH_LENGTH:
        raise ValidationError({"path": f"The path is longer than {MAX_PATH_LENGTH} characters."})
    if (problem := jsonpath_problem(path)) is not None:
        raise ValidationError({"path": problem})
    if not PATH_RE.match(path):
        raise ValidationError(
            {
                "path": f"{path[:80]!r} is not a dotted payload path: use names separated by dots, e.g. "
                "traits.email or context.traits.email (letters, digits, _ - $ @ :, no spaces or empty parts)."
            }
        )
    if path.count(".") + 1 > MAX_PATH_SEGMENTS:
        raise ValidationError({"path": f"The path has more than {MAX_PATH_SEGMENTS} parts."})
    return path


def event_type_validate(event_type: Any) -> str:
    if event_type is None or event_type == "":
        return StitchingRule.ANY_TYPE
    if not isinstance(event_type, str) or not event_type.strip():
        raise ValidationError({"event_type": "The event type must be a non-empty string, or * for every type."})
    event_type = event_type.strip()
    if len(event_type) > MAX_EVENT_TYPE_LENGTH:
        raise ValidationError({"event_type": f"The event type is longer than {MAX_EVENT_TYPE_LENGTH} characters."})
    if "\x00" in event_type:
        raise ValidationError({"event_type": "The event type contains a NUL character."})
    if any(ord(c) < 32 or ord(c) == 127 for c in event_type):
        raise ValidationError(
            {"event_type": f"The event type {event_type!r} contains a control character (a line break?): no event has "
             "that type."}
        )  # fmt: skip
    return event_type


def _normalizer_validate(normalizer: Any) -> str:
    if normalizer not in StitchingCategory.Normalizer.values:
        known = ", ".join(StitchingCategory.Normalizer.values)
        raise ValidationError({"normalizer": f"Unknown normaliser {str(normalizer)[:40]!r}; use one of: {known}."})
    return normalizer


def _limit_validate(max_per_entity: Any) -> int | None:
    if max_per_entity is None or max_per_entity == "":
        return None
    if isinstance(max_per_entity, bool) or not isinstance(max_per_entity, int) or max_per_entity < 1:
        raise ValidationError({"max_per_entity": "The limit must be a whole number of at least 1, or empty (none)."})
    return max_per_entity


def _window_validate(days: Any, *, max_per_entity: int | None) -> int | None:
    if days is None or days == "":
        return None
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_WINDOW_DAYS:
        raise ValidationError(
            {"limit_window_days": f"The window must be a whole number of days from 1 to {MAX_WINDOW_DAYS}, or empty "
             "(the limit counts every value ever)."}
        )  # fmt: skip
    if max_per_entity is None:
        raise ValidationError({"limit_window_days": "A window needs a limit per customer to apply to."})
    return days


def _priority_validate(priority: Any) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > 1_000_000:
        raise ValidationError({"priority": "The priority must be a whole number between -1000000 and 1000000."})
    return priority


def _name_validate(name: Any, *, category_id: str | None = None) -> str:
    """A category's name: required, and no other category's (the profile, the graph and the merge history name
    identifiers by it: two "Email" categories could not be told apart)."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationError({"name": "A name is required."})
    if len(name.strip()) > 200:
        raise ValidationError({"name": "The name is longer than 200 characters."})
    other = StitchingCategory.objects.filter(name__iexact=name.strip()).exclude(pk=category_id).first()
    if other is not None:
        raise ValidationError({"name": f"The category {other.pk!r} is named {other.name!r} already."})
    return name.strip()


def value_normalize(*, category: StitchingCategory | None, value: Any) -> str:
    """The value as the engine stores it for `category` (its normaliser); for every category: trimmed only, as
    each category's normaliser makes something else of it (`blocked_value_matches`).

    Raises ValidationError when the value is empty or cannot be normalised (e.g. not a phone number)."""
    from stitching.normalizers import WHITESPACE, normalize

    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValidationError({"value": "The value must be a string."})
    raw = str(value)
    if "\x00" in raw:
        raise ValidationError({"value": "The value contains a NUL character."})
    if category is None:
        # The whitespace every normaliser trims: no category's reading of the value changes.
        normalised = raw.strip(WHITESPACE) or None
    else:
        normalised = normalize(category.normalizer, raw)
    if not normalised:
        kind = f"a valid {category.name} value" if category else "a value"
        raise ValidationError({"value": f"{raw[:80]!r} is not {kind}."})
    if len(normalised) > MAX_VALUE_LENGTH:
        raise ValidationError({"value": f"The value is longer than {MAX_VALUE_LENGTH} characters."})
    return normalised


# --- re-stitching after commit ---------------------------------------------------------------------------------


def _restitch_on_commit(
    *, identifier_ids: Iterable[int] = (), entity_ids: Iterable[str] = (), cause: RestitchCause
) -> None:
    """Queue the affected components in this transaction (durable: a failed request or a killed worker cannot lose
    the split or join the change causes); they are re-stitched after commit (engine.restitch_request)."""
    from stitching.services.engine import restitch_request

    restitch_request(identifier_ids=identifier_ids, entity_ids=entity_ids, cause=cause)


def _config_change_lock() -> None:
    """Wait for the stitching transactions in flight, hold new ones until commit (engine.config_change_lock)."""
    from stitching.services.engine import config_change_lock

    config_change_lock()


def _rule_affected_entity_ids(*, source_id: int, event_type: str) -> list[str]:
    """Entities holding events a rule applies to: their components may split or join when the rule changes."""
    events = CustomerEvent.objects.filter(source_id=source_id, entity_link__customer_entity__isnull=False)
    if event_type != StitchingRule.ANY_TYPE:
        events = events.filter(type=event_type)
    return list(events.values_list("entity_link__customer_entity_id", flat=True).distinct())


def _matching_identifier_ids(*, category: StitchingCategory | None, value: str) -> list[int]:
    """The identifiers a blocked value refuses (see `blocked_value_matches`)."""
    normalizers = dict(StitchingCategory.objects.values_list("id", "normalizer"))
    matches = blocked_value_matches(category=category.pk if category else None, value=value, normalizers=normalizers)
    if not matches:
        return []
    identifiers = Q()
    for slug, normalised in matches:
        identifiers |= Q(category_id=slug, value=normalised)
    return list(Identifier.objects.filter(identifiers).values_list("id", flat=True))


# --- categories -------------------------------------------------------------------------------------------------


def _category_id_validate(id: object) -> str:
    if not isinstance(id, str) or not CATEGORY_ID_RE.match(id) or len(id) > 64:
        raise ValidationError({"id": "The id must be 1-64 lower-case letters, digits, _ or -, e.g. email or user_id."})
    return id


@transaction.atomic
def category_create(
    *,
    id: str,
    name: str,
    normalizer: str = "trim",
    max_per_entity: int | None = None,
    limit_window_days: int | None = None,
    priority: int = 0,
) -> StitchingCategory:
    _category_id_validate(id)
    if StitchingCategory.objects.filter(pk=id).exists():
        raise ValidationError({"id": f"A stitching category {id!r} already exists."})
    max_per_entity = _limit_validate(max_per_entity)
    return StitchingCategory.objects.create(
        id=id,
        name=_name_validate(name, category_id=id),
        normalizer=_normalizer_validate(normalizer),
        max_per_entity=max_per_entity,
        limit_window_days=_window_validate(limit_window_days, max_per_entity=max_per_entity),
        priority=_priority_validate(priority),
    )


@transaction.atomic
def category_update(*, category: StitchingCategory, **fields: Any) -> StitchingCategory:
    """Change name, normaliser, limit (and its window) or priority. A new limit, window or priority re-stitches
    the customers it can change: those over the new limit, and those with links refused by a limit (which may now
    be allowed)."""
    unknown = set(fields) - set(CATEGORY_FIELDS)
    if unknown:
        raise ValidationError({sorted(unknown)[0]: "This field cannot be changed."})
    _config_change_lock()
    category = StitchingCategory.objects.select_for_update().get(pk=category.pk)
    if "name" in fields:
        category.name = _name_validate(fields["name"], category_id=category.pk)
    if "normalizer" in fields and fields["normalizer"] != category.normalizer:
        _normalizer_validate(fields["normalizer"])
        # Stored identifiers hold normalised values: another normaliser would need every event re-read.
        if Identifier.objects.filter(category=category).exists():
            raise ValidationError(
                {
                    "normalizer": "The category already has identifiers normalised the current way; create a new "
                    "category (and rules) instead, or delete this one's rules and run `manage.py restitch`."
                }
            )
        category.normalizer = fields["normalizer"]
    old_limit, old_priority = (category.max_per_entity, category.limit_window_days), category.priority
    if "max_per_entity" in fields:
        category.max_per_entity = _limit_validate(fields["max_per_entity"])
    if "limit_window_days" in fields:
        days = fields["limit_window_days"]
    else:  # a limit removed takes its window with it
        days = category.limit_window_days if category.max_per_entity is not None else None
    category.limit_window_days = _window_validate(days, max_per_entity=category.max_per_entity)
    if "priority" in fields:
        category.priority = _priority_validate(fields["priority"])
    category.save()

    identifier_ids: list[int] = []
    entity_ids: list[str] = []
    limit_changed = (category.max_per_entity, category.limit_window_days) != old_limit
    if category.priority != old_priority or limit_changed:
        # Priorities decide which identifier a limit drops, across categories; and a limit drops the event's least
        # trusted identifier, often of another category (a cookie for an email limit): every refusal a limit made
        # may come out otherwise now.
        refused = EventIdentifier.objects.filter(status=EventIdentifier.Status.LIMIT)
        identifier_ids += refused.values_list("identifier_id", flat=True).distinct()
    if limit_changed:
        if category.max_per_entity is not None:
            over = (
                Identifier.objects.filter(category=category, customer_entity__isnull=False)
                .values("customer_entity_id")
                .annotate(n=Count("id"))
                .filter(n__gt=category.max_per_entity)
            )
            entity_ids += [row["customer_entity_id"] for row in over]
    _restitch_on_commit(identifier_ids=identifier_ids, entity_ids=entity_ids, cause=RestitchCause.CATEGORY_CHANGED)
    return category


@transaction.atomic
def category_delete(*, category: StitchingCategory) -> None:
    """Delete a category no rule and no attribute uses; its identifiers go, and the customers they joined are
    re-stitched."""
    rules = [str(rule) for rule in StitchingRule.objects.filter(category=category).select_related("source")[:6]]
    if rules:
        named = "; ".join(rules[:5]) + ("; …" if len(rules) > 5 else "")
        raise ValidationError(
            {"id": f"The category is used by the stitching rules {named}; delete or change them first."}
        )
    # An identifier-values attribute of a deleted category could no longer be saved (its category is unknown).
    attributes = list(Attribute.objects.filter(category=category.pk).order_by("id").values_list("id", flat=True))
    if attributes:
        raise ValidationError(
            {"id": f"The category is used by the attributes {', '.join(attributes)}; delete or change them first."}
        )
    entity_ids = list(
        Identifier.objects.filter(category=category, customer_entity__isnull=False)
        .values_list("customer_entity_id", flat=True)
        .distinct()
    )
    category.delete()
    _restitch_on_commit(entity_ids=entity_ids, cause=RestitchCause.CATEGORY_CHANGED)


# --- rules ------------------------------------------------------------------------------------------------------


def rule_source_validate(source: object) -> DataSource:
    """A data source whose events stitching reads: not the system source, whose merges and splits are never
    stitched (a rule on it would read nothing, and look as if it did)."""
    if not isinstance(source, DataSource):
        raise ValidationError({"source": "A data source is required."})
    if data_source_is_system(source):
        raise ValidationError(
            {"source": f"The system source {source.slug!r} holds merges and splits, which are never stitched: a "
             "rule on it would read nothing. Choose the source the events come from."}
        )  # fmt: skip
    return source


def _rule_fields_validate(fields: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    if "source" in fields:
        clean["source"] = rule_source_validate(fields["source"])
    if "category" in fields:
        if not isinstance(fields["category"], StitchingCategory):
            raise ValidationError({"category": "A stitching category is required."})
        clean["category"] = fields["category"]
    if "event_type" in fields:
        clean["event_type"] = event_type_validate(fields["event_type"])
    if "path" in fields:
        clean["path"] = path_validate(fields["path"])
    if "priority" in fields:
        clean["priority"] = _priority_validate(fields["priority"])
    return clean


def _rule_unique_check(rule: StitchingRule) -> None:
    duplicate = StitchingRule.objects.filter(
        source=rule.source, event_type=rule.event_type, category=rule.category, path=rule.path
    )
    if rule.pk:
        duplicate = duplicate.exclude(pk=rule.pk)
    if duplicate.exists():
        where = f"{rule.source.slug}/{rule.event_type}"
        raise ValidationError({"path": f"A rule for {where} already reads {rule.path} into {rule.category_id}."})


@transaction.atomic
def rule_create(
    *,
    source: DataSource,
    category: StitchingCategory,
    path: str,
    event_type: str = StitchingRule.ANY_TYPE,
    priority: int = 0,
) -> StitchingRule:
    """A new rule; the customers holding events it applies to are re-stitched after commit."""
    clean = _rule_fields_validate(
        {"source": source, "category": category, "path": path, "event_type": event_type, "priority": priority}
    )
    _config_change_lock()
    rule = StitchingRule(**clean)
    _rule_unique_check(rule)
    rule.save()
    affected = _rule_affected_entity_ids(source_id=rule.source_id, event_type=rule.event_type)
    _restitch_on_commit(entity_ids=affected, cause=RestitchCause.RULE_CHANGED)
    return rule


@transaction.atomic
def rule_update(*, rule: StitchingRule, **fields: Any) -> StitchingRule:
    unknown = set(fields) - set(RULE_FIELDS)
    if unknown:
        raise ValidationError({sorted(unknown)[0]: "This field cannot be changed."})
    clean = _rule_fields_validate(fields)
    _config_change_lock()
    rule = StitchingRule.objects.select_for_update().select_related("source").get(pk=rule.pk)
    before = (rule.source_id, rule.event_type)
    for name, value in clean.items():
        setattr(rule, name, value)
    _rule_unique_check(rule)
    rule.save()
    entity_ids = _rule_affected_entity_ids(source_id=before[0], event_type=before[1])
    if (rule.source_id, rule.event_type) != before:
        entity_ids += _rule_affected_entity_ids(source_id=rule.source_id, event_type=rule.event_type)
    _restitch_on_commit(entity_ids=entity_ids, cause=RestitchCause.RULE_CHANGED)
    return rule


@transaction.atomic
def rule_delete(*, rule: StitchingRule) -> None:
    _config_change_lock()
    entity_ids = _rule_affected_entity_ids(source_id=rule.source_id, event_type=rule.event_type)
    rule.delete()
    _restitch_on_commit(entity_ids=entity_ids, cause=RestitchCause.RULE_CHANGED)


# --- blocked values ---------------------------------------------------------------------------------------------


@transaction.atomic
def blocked_value_add(
    *, category: StitchingCategory | None, value: str, reason: str = "", user: User | None = None
) -> BlockedValue:
    """Block a value (normalised like the category's identifiers; for every category, as each category
    normalises it) from linking events. Customers it had joined are re-stitched after commit, which splits them
    where it was the only link."""
    normalised = value_normalize(category=category, value=value)
    reason = (reason or "").strip()
    if len(reason) > 300:
        raise ValidationError({"reason": "The reason is longer than 300 characters."})
    _config_change_lock()
    if BlockedValue.objects.filter(category=category, value=normalised).exists():
        scope = category.pk if category else "every category"
        raise ValidationError({"value": f"{normalised!r} is already blocked for {scope}."})
    blocked = BlockedValue.objects.create(
        category=category, value=normalised, reason=reason, created_by=user if user and user.pk else None
    )
    matching = _matching_identifier_ids(category=category, value=normalised)
    _restitch_on_commit(identifier_ids=matching, cause=RestitchCause.VALUE_BLOCKED)
    return blocked


@transaction.atomic
def blocked_value_remove(*, blocked_value: BlockedValue, user: User | None = None) -> None:
    """Unblock: events carrying the value may link again (re-stitched after commit)."""
    _config_change_lock()
    identifier_ids = _matching_identifier_ids(category=blocked_value.category, value=blocked_value.value)
    blocked_value.delete()
    _restitch_on_commit(identifier_ids=identifier_ids, cause=RestitchCause.VALUE_UNBLOCKED)


# --- hub reviews ------------------------------------------------------------------------------------------------


@transaction.atomic
def hub_review_decide(*, review: HubReview, approve: bool, user: User | None = None) -> HubReview:
    """Approve (the held identifier may link the customers it joins) or block its value. Either way the
    component is re-stitched after commit."""
    _config_change_lock()
    review = HubReview.objects.select_for_update().select_related("identifier").get(pk=review.pk)
    if review.status != HubReview.Status.PENDING:
        raise ValidationError({"status": f"The review was already decided ({review.get_status_display()})."})
    identifier = review.identifier
    review.status = HubReview.Status.APPROVED if approve else HubReview.Status.BLOCKED
    review.decided_by = user if user and user.pk else None
    review.decided = timezone.now()
    review.save(update_fields=["status", "decided_by", "decided"])
    if not approve:
        BlockedValue.objects.get_or_create(
            category_id=identifier.category_id,
            value=identifier.value,
            defaults={
                "reason": f"Hub review: would have joined {review.entity_count} customers",
                "created_by": review.decided_by,
            },
        )
    entity_ids = (
        CustomerEvent.objects.filter(
            Q(pk__in=EventIdentifier.objects.filter(identifier=identifier).values("event_id")),
            entity_link__customer_entity__isnull=False,
        )
        .values_list("entity_link__customer_entity_id", flat=True)
        .distinct()
    )
    cause = RestitchCause.HUB_APPROVED if approve else RestitchCause.HUB_BLOCKED
    _restitch_on_commit(identifier_ids=[identifier.pk], entity_ids=list(entity_ids), cause=cause)
    return review
