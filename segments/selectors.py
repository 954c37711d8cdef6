"""Reads of segments: visibility (the ACL), members, counts and insights.

Stable contract used by other apps (exports, emails, the admin builder): `segments_visible`,
`segment_get_visible`, `segment_members_sql`, `segment_members_count`, `segment_member_ids_iter`.

ACL: a user sees a segment they own, one granted to them or to their role (view or edit), and every segment when
they are a segments administrator (superuser, or a role with the users_admin feature). They edit what they own,
what an edit grant gives them, and everything as administrators. A segment they may not see does not exist for
them (404), so ids cannot be probed; one they see but may not edit is a 403 on writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import BooleanField, Exists, ExpressionWrapper, IntegerField, OuterRef, Q, QuerySet, Value
from django.db.models.expressions import RawSQL
from django.http import Http404

from cdp.features import Feature
from cdp.models import Attribute, CustomerEntity
from segments.conditions import ConditionInvalid, tree_attributes, tree_compile, tree_validate
from segments.models import Segment, SegmentGrant, SegmentSizeSnapshot, Tag

# The attribute holding email consent (a bool), used by the insights when it exists; a deployment whose email
# channel names it differently sets SEGMENTS_EMAIL_CONSENT_ATTRIBUTE.
EMAIL_CONSENT_ATTRIBUTE = "email_consent"


def email_consent_attribute() -> str:
    from django.conf import settings

    return getattr(settings, "SEGMENTS_EMAIL_CONSENT_ATTRIBUTE", EMAIL_CONSENT_ATTRIBUTE)


def user_is_segments_admin(user) -> bool:
    """Superusers and user administrators see and edit every segment."""
    return bool(user and user.is_active and (user.is_superuser or user.has_feature(Feature.USERS_ADMIN)))


def _grants(user, *, edit: bool) -> Exists:
    who = Q(user_id=user.pk)
    if user.role_id is not None:
        who |= Q(role_id=user.role_id)
    grants = SegmentGrant.objects.filter(who, segment_id=OuterRef("pk"))
    if edit:
        grants = grants.filter(permission=SegmentGrant.Permission.EDIT)
    return Exists(grants)


def _acl(queryset: QuerySet, user, *, edit: bool) -> QuerySet:
    if user_is_segments_admin(user):
        return queryset
    if user is None or not user.is_authenticated or not user.is_active:
        return queryset.none()
    return queryset.filter(Q(owner_id=user.pk) | _grants(user, edit=edit))


def _trash_filter(queryset: QuerySet, trashed: bool | None) -> QuerySet:
    if trashed is None:
        return queryset
    return queryset.filter(trashed_at__isnull=not trashed)


def segments_visible(*, user, trashed: bool | None = False) -> QuerySet[Segment]:
    """Segments the user may see (newest first). `trashed`: False (default) the live ones, True the trash,
    None both. Each carries `user_can_edit` (whether this user may edit it), computed in the same query."""
    queryset = Segment.objects.select_related("owner").prefetch_related("tags")
    return _with_can_edit(_acl(_trash_filter(queryset, trashed), user, edit=False), user)


def _with_can_edit(queryset: QuerySet, user) -> QuerySet:
    if user is None or not user.is_authenticated or not user.is_active:
        return queryset
    for_user = Value(user.pk, output_field=IntegerField())
    if user_is_segments_admin(user):
        editable = Value(True, output_field=BooleanField())
    else:
        editable = ExpressionWrapper(Q(owner_id=user.pk) | _grants(user, edit=True), output_field=BooleanField())
    return queryset.annotate(user_can_edit=editable, user_can_edit_for=for_user)


def segments_editable(*, user, trashed: bool | None = False) -> QuerySet[Segment]:
    return _acl(_trash_filter(Segment.objects.all(), trashed), user, edit=True)


def segment_can_edit(*, user, segment: Segment) -> bool:
    annotated = getattr(segment, "user_can_edit", None)  # segments_visible computed it for its user
    if annotated is not None and getattr(segment, "user_can_edit_for", None) == getattr(user, "pk", None):
        return bool(annotated)
    if user_is_segments_admin(user) or (segment.owner_id is not None and segment.owner_id == user.pk):
        return True
    return segments_editable(user=user, trashed=None).filter(pk=segment.pk).exists()


def segment_can_manage_acl(*, user, segment: Segment) -> bool:
    """Grants are changed by the owner and administrators (an editor cannot hand the segment to others)."""
    return user_is_segments_admin(user) or (segment.owner_id is not None and segment.owner_id == user.pk)


def segment_get_visible(*, user, segment_id: Any, edit: bool = False, trashed: bool | None = False) -> Segment:
    """The segment when the user may see it, else Http404 (also for ids that are not numbers). With edit=True,
    PermissionDenied when they see it but may not edit it."""
    try:
        pk = int(segment_id)
    except (TypeError, ValueError):
        raise Http404("Segment not found.") from None
    segment = segments_visible(user=user, trashed=trashed).filter(pk=pk).first()
    if segment is None:
        if trashed is False and segments_visible(user=user, trashed=True).filter(pk=pk).exists():
            raise Http404("The segment is in the trash: restore it first.")  # (only to those who may see it)
        raise Http404("Segment not found.")
    if edit and not segment_can_edit(user=user, segment=segment):
        raise PermissionDenied("You may view this segment but not edit it.")
    return segment


# --- members ---------------------------------------------------------------------------------------------------


def attribute_keys() -> list[tuple[str, str, str]]:
    """(key, name, data type) of every attribute definition, and of each compound attribute's fields keyed
    "<id>.<field>", as conditions name them."""
    rows = []
    for attribute_id, name, data_type, fields in Attribute.objects.values_list("id", "name", "data_type", "fields"):
        rows.append((attribute_id, name, data_type))
        rows += [(f"{attribute_id}.{f['id']}", f.get("name") or f["id"], f["data_type"]) for f in fields or []]
    return rows


def attribute_types() -> dict[str, str]:
    """{key: data type} of attribute_keys(): what conditions are validated and compiled against."""
    return {key: data_type for key, _, data_type in attribute_keys()}


def segment_condition_sql(
    *,
    segment: Segment,
    attributes: dict[str, str] | None = None,
    now: datetime | None = None,
    column: str = "e.attributes",
) -> tuple[str, list]:
    """The segment's condition as one SQL boolean expression over `customer_entities e`.

    The stored tree is validated against the current attribute definitions first: a segment whose attribute was
    deleted (or changed type) raises ConditionInvalid naming the node."""
    if attributes is None:
        attributes = attribute_types()
    tree = tree_validate(segment.conditions, attributes=attributes)
    return tree_compile(tree, attributes=attributes, now=now, column=column)


def segment_members_sql(*, segment: Segment, now: datetime | None = None) -> tuple[str, list]:
    """SQL (and its parameters) selecting `customer_entities.id` (column `id`) of the segment's members."""
    where, params = segment_condition_sql(segment=segment, now=now)
    return f"SELECT e.id FROM customer_entities e WHERE {where}", params


def segment_members_count(*, segment: Segment) -> int:
    return conditions_members_count(conditions=segment.conditions)


def conditions_members_count(*, conditions: dict) -> int:
    """How many customers a condition tree selects (saved or not: the builder's live count)."""
    attributes = attribute_types()
    where, params = tree_compile(tree_validate(conditions, attributes=attributes), attributes=attributes)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM customer_entities e WHERE {where}", params)
        return cursor.fetchone()[0]


def segment_member_ids_iter(*, segment: Segment, batch_size: int = 10_000) -> Iterator[list[str]]:
    """The members' entity ids in batches of at most `batch_size`, in id order (keyset pagination: each batch is
    one short query, so no transaction or cursor is held open between batches and memory stays flat). The
    condition is compiled once, so a `within_last_days` window does not move during the iteration."""
    where, params = segment_condition_sql(segment=segment)
    sql = f"SELECT e.id FROM customer_entities e WHERE {where} AND e.id > %s ORDER BY e.id LIMIT %s"
    last = ""
    while True:
        with connection.cursor() as cursor:
            cursor.execute(sql, [*params, last, batch_size])
            ids = [row[0] for row in cursor.fetchall()]
        if not ids:
            return
        yield ids
        if len(ids) < batch_size:
            return
        last = ids[-1]


def segment_members(*, segment: Segment) -> QuerySet[CustomerEntity]:
    """The members as a CustomerEntity queryset (newest change first), for paginated lists."""
    where, params = segment_condition_sql(segment=segment, column='"customer_entities"."attributes"')
    # The expression is compiled by us: identifiers are fixed, every value is a bound parameter.
    condition = RawSQL(where, params, output_field=BooleanField())  # noqa: S611
    return CustomerEntity.objects.filter(condition).order_by("-modified", "id")


# --- insights --------------------------------------------------------------------------------------------------


def segment_attribute_value_counts(*, segment: Segment, attribute: Attribute, limit: int) -> dict[str, Any]:
    """The most frequent values of an attribute among the segment's members, and how many members have a
    value at all (the shape of the attribute value counts API, plus the segment and its size)."""
    where, params = segment_condition_sql(segment=segment)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT v, count(*) AS n FROM customer_entities e CROSS JOIN LATERAL jsonb_array_elements("
            "CASE jsonb_typeof(e.attributes -> %s) WHEN 'array' THEN e.attributes -> %s END) v "
            f"WHERE {where} GROUP BY v ORDER BY n DESC, v LIMIT %s",
            [attribute.pk, attribute.pk, *params, limit],
        )
        values = [{"value": json.loads(v) if isinstance(v, str) else v, "count": n} for v, n in cursor.fetchall()]
        cursor.execute(
            f"SELECT count(*), count(*) FILTER (WHERE e.attributes ? %s) FROM customer_entities e WHERE {where}",
            [attribute.pk, *params],
        )
        members, with_value = cursor.fetchone()
    return {
        "segment": segment.pk,
        "attribute": attribute.pk,
        "customers": members,
        "entities_with_value": with_value,
        "values": values,
    }


def segments_overlap(*, segment: Segment, other: Segment) -> dict[str, Any]:
    """How many customers are in each of two segments and in both (an analyst comparing audiences): one scan,
    both conditions compiled with the same `now`."""
    attributes = attribute_types()
    now = datetime.now().astimezone()
    a_sql, a_params = segment_condition_sql(segment=segment, attributes=attributes, now=now)
    b_sql, b_params = segment_condition_sql(segment=other, attributes=attributes, now=now)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FILTER (WHERE {a_sql}), count(*) FILTER (WHERE {b_sql}), "
            f"count(*) FILTER (WHERE ({a_sql}) AND ({b_sql})) FROM customer_entities e WHERE ({a_sql}) OR ({b_sql})",
            [*a_params, *b_params, *a_params, *b_params, *a_params, *b_params],
        )
        in_segment, in_other, both = cursor.fetchone()
    return {
        "segment": segment.pk,
        "other": other.pk,
        "segment_count": in_segment,
        "other_count": in_other,
        "both": both,
        "only_segment": in_segment - both,
        "only_other": in_other - both,
    }


def segment_email_consent_share(*, segment: Segment) -> dict[str, Any] | None:
    """How many members have email consent (the bool attribute email_consent_attribute() is true); None when that
    attribute does not exist (no email channel yet)."""
    consent = email_consent_attribute()
    if not Attribute.objects.filter(pk=consent, data_type=Attribute.DataType.BOOL).exists():
        return None
    where, params = segment_condition_sql(segment=segment)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(*) FILTER (WHERE e.attributes @> %s::jsonb) FROM customer_entities e "
            f"WHERE {where}",
            [json.dumps({consent: [True]}), *params],
        )
        members, consenting = cursor.fetchone()
    return {
        "attribute": consent,
        "customers": members,
        "with_consent": consenting,
        "share": round(consenting / members, 4) if members else None,
    }


def segment_size_history(*, segment: Segment, days: int = 90, today: date | None = None) -> list[dict[str, Any]]:
    """Daily size snapshots of the last `days` days, oldest first."""
    since = (today or date.today()) - timedelta(days=days)
    return [
        {"day": day.isoformat(), "size": size, "measured": measured}
        for day, size, measured in SegmentSizeSnapshot.objects.filter(segment=segment, day__gt=since)
        .order_by("day")
        .values_list("day", "size", "measured")
    ]


def segments_using_attribute(
    *, attribute_id: str, data_type: str | None = None, fields: list[dict] | None = None
) -> list[Segment]:
    """The segments whose conditions refer to the attribute, by name, trashed ones too (a restored segment must
    still work). With `data_type` (and a compound attribute's new `fields`): only those that it would break (their
    conditions no longer validate; int to float keeps `gte 18` valid, string to int does not, nor a field removed)."""
    # Any node at any depth naming the attribute; segments are few, and a definition changes rarely.
    refers = RawSQL(  # noqa: S611 (the id is a bound parameter)
        "jsonb_path_exists(segments_segment.conditions, '$.**.attribute ? (@ == $id)', "
        "jsonb_build_object('id', %s::text))",
        [attribute_id],
        output_field=BooleanField(),
    )
    segments = list(Segment.objects.filter(refers).order_by("name", "id"))
    if data_type is None:
        return segments
    types = {key: value for key, value in attribute_types().items() if not key.startswith(f"{attribute_id}.")}
    types[attribute_id] = data_type
    if fields is not None:
        types.update({f"{attribute_id}.{field['id']}": field["data_type"] for field in fields})
    broken = []
    for segment in segments:
        try:
            tree_validate(segment.conditions, attributes=types)
        except ConditionInvalid:
            broken.append(segment)
    return broken


def tags_list(*, user=None) -> QuerySet[Tag]:
    """Every tag, with `segments_count`: its live segments, those `user` may see when given (a count of segments
    they may not see would tell them those exist)."""
    from django.db.models import Count

    live = Q(segments__trashed_at__isnull=True)
    if user is not None and not user_is_segments_admin(user):
        live &= Q(segments__in=_acl(Segment.objects.all(), user, edit=False).values("pk"))
    return Tag.objects.annotate(segments_count=Count("segments", filter=live))


__all__ = [
    "EMAIL_CONSENT_ATTRIBUTE",
    "email_consent_attribute",
    "attribute_types",
    "conditions_members_count",
    "segment_attribute_value_counts",
    "segment_can_edit",
    "segment_can_manage_acl",
    "segment_condition_sql",
    "segment_email_consent_share",
    "segment_get_visible",
    "segment_member_ids_iter",
    "segment_members",
    "segment_members_count",
    "segment_members_sql",
    "segment_size_history",
    "segments_editable",
    "segments_overlap",
    "segments_using_attribute",
    "segments_visible",
    "tags_list",
    "tree_attributes",
    "user_is_segments_admin",
]
