"""Writes of segments, their tags, notes, grants and size snapshots. Views, the admin and tasks call these."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from cdp.models import Role, User
from segments.conditions import ConditionInvalid, tree_validate
from segments.models import Segment, SegmentGrant, SegmentNote, SegmentSizeSnapshot, Tag, empty_tree
from segments.selectors import attribute_types, segment_members_count

MAX_TAGS = 50


def _on_segment_changed(segment_id: int) -> None:
    """The Audience API caches compiled segments per process; drop this process's copy after the commit (other
    processes notice within their short TTL)."""
    from segments.audience import audience_cache_forget

    transaction.on_commit(lambda: audience_cache_forget(segment_id=segment_id))


def conditions_clean(conditions: Any) -> dict[str, Any]:
    """Validate a condition tree against the attribute definitions; ValidationError {"conditions": path: msg}."""
    if conditions is None:
        return empty_tree()
    try:
        return tree_validate(conditions, attributes=attribute_types())
    except ConditionInvalid as exc:
        raise ValidationError({exc.path: exc.message}) from None


def _name_clean(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError({"name": "A segment needs a name."})
    if len(name.strip()) > 200:
        raise ValidationError({"name": "At most 200 characters."})
    return name.strip()


DESCRIPTION_MAX = 5000


def _description_clean(description: Any) -> str:
    if description is None:
        return ""
    if not isinstance(description, str):
        raise ValidationError({"description": "A description is text."})
    if len(description) > DESCRIPTION_MAX:
        raise ValidationError(
            {"description": f"At most {DESCRIPTION_MAX:,} characters (this one has {len(description):,})."}
        )
    return description


def tags_resolve(*, names: Iterable[str]) -> list[Tag]:
    """Tags by name, created when missing (names are trimmed; case is kept, matching ignores it)."""
    tags: list[Tag] = []
    seen: set[str] = set()
    for raw in names:
        if not isinstance(raw, str) or not raw.strip():
            raise ValidationError({"tags": "Tag names are non-empty texts."})
        name = raw.strip()
        if len(name) > 64:
            raise ValidationError({"tags": f"Tag {name[:20]!r}… is longer than 64 characters."})
        if name.lower() in seen:
            continue
        seen.add(name.lower())
        tags.append(_tag_get_or_create(name))
    if len(tags) > MAX_TAGS:
        raise ValidationError({"tags": f"At most {MAX_TAGS} tags per segment."})
    return tags


@transaction.atomic
def segment_create(
    *,
    owner: User | None,
    name: str,
    description: str = "",
    conditions: Any = None,
    tags: Sequence[str] = (),
) -> Segment:
    segment = Segment.objects.create(
        owner=owner,
        name=_name_clean(name),
        description=_description_clean(description),
        conditions=conditions_clean(conditions),
    )
    if tags:
        segment.tags.set(tags_resolve(names=tags))
    return segment


@transaction.atomic
def segment_update(
    *,
    segment: Segment,
    name: str | None = None,
    description: str | None = None,
    conditions: Any = None,
    tags: Sequence[str] | None = None,
    owner: User | None = None,
) -> Segment:
    """Change the given fields (None: keep). The condition tree is validated before anything is saved."""
    if name is not None:
        segment.name = _name_clean(name)
    if description is not None:
        segment.description = _description_clean(description)
    if conditions is not None:
        segment.conditions = conditions_clean(conditions)
    if owner is not None:
        segment.owner = owner
    segment.save()
    if tags is not None:
        segment.tags.set(tags_resolve(names=tags))
    _on_segment_changed(segment.pk)
    return segment


@transaction.atomic
def segment_duplicate(*, segment: Segment, owner: User | None, name: str | None = None) -> Segment:
    """A copy owned by `owner`: same conditions, description and tags; no notes, grants or history."""
    copy = Segment.objects.create(
        owner=owner,
        name=_name_clean(name or f"Copy of {segment.name}"[:200]),
        description=segment.description,
        conditions=segment.conditions,
    )
    copy.tags.set(segment.tags.all())
    return copy


@transaction.atomic
def segment_trash(*, segment: Segment) -> Segment:
    if segment.trashed_at is None:
        segment.trashed_at = timezone.now()
        segment.save(update_fields=["trashed_at", "modified"])
        _on_segment_changed(segment.pk)
    return segment


@transaction.atomic
def segment_restore(*, segment: Segment) -> Segment:
    if segment.trashed_at is not None:
        segment.trashed_at = None
        segment.save(update_fields=["trashed_at", "modified"])
        _on_segment_changed(segment.pk)
    return segment


@transaction.atomic
def segment_delete(*, segment: Segment) -> None:
    """Delete for good; only a trashed segment (restore is the undo of trash, nothing undoes this)."""
    if segment.trashed_at is None:
        raise ValidationError({"id": "Only a segment in the trash can be deleted for good; trash it first."})
    segment_id = segment.pk
    segment.delete()
    _on_segment_changed(segment_id)


# --- grants ------------------------------------------------------------------------------------------------------


@transaction.atomic
def segment_grant_set(
    *, segment: Segment, permission: str, user: User | None = None, role: Role | None = None
) -> SegmentGrant:
    """Give a user or a role view or edit access (replacing their earlier grant on this segment)."""
    if (user is None) == (role is None):
        raise ValidationError({"user": "Grant to exactly one of a user or a role."})
    if permission not in SegmentGrant.Permission.values:
        raise ValidationError({"permission": f"One of: {', '.join(SegmentGrant.Permission.values)}."})
    if user is not None and user.pk == segment.owner_id:
        raise ValidationError({"user": "The owner already has full access."})
    grant, _ = SegmentGrant.objects.update_or_create(
        segment=segment, user=user, role=role, defaults={"permission": permission}
    )
    return grant


@transaction.atomic
def segment_grant_delete(*, grant: SegmentGrant) -> None:
    grant.delete()


# --- notes -------------------------------------------------------------------------------------------------------


def _note_text(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValidationError({"text": "A note needs some text."})
    if len(text) > 10_000:
        raise ValidationError({"text": "At most 10,000 characters."})
    return text.strip()


@transaction.atomic
def segment_note_create(*, segment: Segment, author: User | None, text: str) -> SegmentNote:
    return SegmentNote.objects.create(segment=segment, author=author, text=_note_text(text))


@transaction.atomic
def segment_note_update(*, note: SegmentNote, text: str) -> SegmentNote:
    note.text = _note_text(text)
    note.save(update_fields=["text", "modified"])
    return note


@transaction.atomic
def segment_note_delete(*, note: SegmentNote) -> None:
    note.delete()


# --- tags --------------------------------------------------------------------------------------------------------


def _tag_fields(name: Any, color: Any, *, instance: Tag | None = None) -> tuple[str, str]:
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 64:
        raise ValidationError({"name": "A tag name is 1 to 64 characters."})
    name = name.strip()
    clash = Tag.objects.filter(name__iexact=name)
    if instance is not None:
        clash = clash.exclude(pk=instance.pk)
    if clash.exists():
        raise ValidationError({"name": f"A tag named {name!r} already exists."})
    color = color or ""
    # Six hex digits: int(..., 16) also took "#-12345", "#0x1234" and full-width digits.
    if color and (not isinstance(color, str) or not re.fullmatch(r"#[0-9A-Fa-f]{6}", color)):
        raise ValidationError({"color": "A colour like #1f77b4."})
    return name, color


def _tag_get_or_create(name: str) -> Tag:
    """The tag of this name in any case, made when there is none (another request making it at the same moment
    wins: the unique index ignores case)."""
    tag = Tag.objects.filter(name__iexact=name).first()
    if tag is not None:
        return tag
    try:
        with transaction.atomic():
            return Tag.objects.create(name=name)
    except IntegrityError:
        return Tag.objects.get(name__iexact=name)


def _tag_save(tag: Tag) -> Tag:
    try:
        with transaction.atomic():
            tag.save()
    except IntegrityError:  # made meanwhile by another request, in some case
        raise ValidationError({"name": f"A tag named {tag.name!r} already exists."}) from None
    return tag


@transaction.atomic
def tag_create(*, name: str, color: str = "") -> Tag:
    name, color = _tag_fields(name, color)
    return _tag_save(Tag(name=name, color=color))


@transaction.atomic
def tag_update(*, tag: Tag, name: str | None = None, color: str | None = None) -> Tag:
    tag.name, tag.color = _tag_fields(tag.name if name is None else name, tag.color if color is None else color,
                                      instance=tag)  # fmt: skip
    return _tag_save(tag)


@transaction.atomic
def tag_delete(*, tag: Tag) -> None:
    """Remove the tag (segments keep existing, without it)."""
    tag.delete()


# --- size snapshots ----------------------------------------------------------------------------------------------


def segment_size_record(*, segment: Segment, size: int | None = None) -> SegmentSizeSnapshot:
    """Count the segment (unless `size` is given) and store it as today's snapshot (UTC day; the last one of a
    day wins)."""
    if size is None:
        size = segment_members_count(segment=segment)
    now = datetime.now(UTC)
    snapshot, _ = SegmentSizeSnapshot.objects.update_or_create(
        segment=segment, day=now.date(), defaults={"size": size, "measured": now}
    )
    return snapshot


def segments_size_record_all() -> tuple[int, int]:
    """Snapshot every live segment; returns (recorded, failed). A segment that cannot be evaluated (its attribute
    was deleted) is skipped, not fatal for the others."""
    recorded = failed = 0
    for segment in Segment.objects.filter(trashed_at__isnull=True).order_by("pk").iterator():
        try:
            segment_size_record(segment=segment)
            recorded += 1
        except ConditionInvalid:
            failed += 1
    return recorded, failed
