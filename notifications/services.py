"""Writes for notifications."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from notifications.models import Notification


@transaction.atomic
def notification_create(
    *, user, title: str, message: str = "", level: str = Notification.Level.INFO, link: str = "",
    object_type: str = "", object_id: str = "",
) -> Notification:  # fmt: skip
    return Notification.objects.create(
        user=user, title=title[:200], message=message, level=level, link=link[:500],
        object_type=object_type, object_id=str(object_id),
    )  # fmt: skip


@transaction.atomic
def notifications_mark_read(*, user, ids: list[int] | None = None) -> int:
    """Mark the user's notifications (all unread, or those `ids`) read; returns how many changed."""
    queryset = Notification.objects.filter(user=user, read_at__isnull=True)
    if ids is not None:
        queryset = queryset.filter(id__in=ids)
    return queryset.update(read_at=timezone.now())
