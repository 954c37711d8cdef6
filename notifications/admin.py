"""Notifications in the Business Explorer: each user sees their own."""

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html
from unfold.admin import ModelAdmin

from notifications.models import Notification
from notifications.services import notifications_mark_read


@admin.register(Notification)
class NotificationAdmin(ModelAdmin):
    list_display = ("title_link", "level", "created", "read_at")
    list_filter = ("level", ("read_at", admin.EmptyFieldListFilter))
    readonly_fields = ("level", "title", "message", "link", "created", "read_at")
    fields = readonly_fields
    actions = ["mark_read"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(user=request.user)

    def has_module_permission(self, request) -> bool:
        # Shown to staff who have notifications (a user without a role sees an empty admin).
        user = request.user
        return bool(user.is_active and user.is_staff and Notification.objects.filter(user=user).exists())

    def has_view_permission(self, request, obj=None) -> bool:
        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        return obj is None or obj.user_id == user.id

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Notification", ordering="title")
    def title_link(self, obj: Notification):
        if obj.link:
            return format_html('<a href="{}">{}</a>', obj.link, obj.title)
        return obj.title

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        # Seeing the list counts as reading it.
        notifications_mark_read(user=request.user)
        return response

    @admin.action(description="Mark as read")
    def mark_read(self, request, queryset):
        count = notifications_mark_read(user=request.user, ids=list(queryset.values_list("id", flat=True)))
        self.message_user(request, f"{count} notification(s) marked read at {timezone.localtime():%H:%M}.")
