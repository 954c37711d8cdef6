"""Notifications API: every user reads and marks their own notifications (no feature needed)."""

from django_filters import rest_framework as django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from notifications import selectors, services
from notifications.api.serializers import MarkReadResponseSerializer, MarkReadSerializer, NotificationSerializer
from notifications.models import Notification


class NotificationFilter(django_filters.FilterSet):
    unread = django_filters.BooleanFilter(field_name="read_at", lookup_expr="isnull", label="Only unread")

    class Meta:
        model = Notification
        fields = ["level", "object_type", "unread"]


@extend_schema(tags=["Notifications"])
class NotificationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [IsAuthenticated]
    serializer_class = NotificationSerializer
    filterset_class = NotificationFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Notification.objects.none()
        return selectors.notifications_list(user=self.request.user)

    @extend_schema(request=MarkReadSerializer, responses={200: MarkReadResponseSerializer})
    @action(detail=False, methods=["post"], url_path="mark_read")
    def mark_read(self, request):
        """Mark notifications read: the given `ids`, or all unread ones."""
        data = MarkReadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        marked = services.notifications_mark_read(user=request.user, ids=data.validated_data.get("ids"))
        return Response({"marked": marked, "unread": selectors.notifications_unread_count(user=request.user)})
