from django.db.models import QuerySet

from notifications.models import Notification


def notifications_list(*, user) -> QuerySet[Notification]:
    return Notification.objects.filter(user=user).order_by("-created", "-id")


def notifications_unread_count(*, user) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).count()
