"""Segments: named condition trees over customer attributes, with owner, tags, notes, an ACL and size history.

The condition tree format and its semantics live in segments.conditions; reads go through segments.selectors,
writes through segments.services.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower


def empty_tree() -> dict:
    """An AND group with no conditions: every customer."""
    return {"operator": "and", "children": []}


class Tag(models.Model):
    """A label for segments (and, later, other objects a marketer organises)."""

    name = models.CharField(max_length=64, unique=True)
    color = models.CharField(max_length=7, blank=True, help_text="Optional #rrggbb colour shown in lists.")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # Tags are matched ignoring case ("VIP" is "vip"): two requests creating both at once make one.
            models.UniqueConstraint(
                Lower("name"),
                name="segments_tag_name_ci_unique",
                violation_error_message="A tag with this name (in any case) already exists.",
            )  # fmt: skip
        ]

    def __str__(self) -> str:
        return self.name


class Segment(models.Model):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="segments"
    )
    conditions = models.JSONField(
        default=empty_tree,
        help_text="The condition tree: AND / OR groups, NOT on any node, per-type operators (see the README).",
    )
    tags = models.ManyToManyField(Tag, blank=True, related_name="segments")
    trashed_at = models.DateTimeField(null=True, blank=True, help_text="Set when the segment is in the trash.")
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["owner", "-created"], name="segments_owner_created")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_trashed(self) -> bool:
        return self.trashed_at is not None


class SegmentGrant(models.Model):
    """Access to a segment for one user or for every user of one role."""

    class Permission(models.TextChoices):
        VIEW = "view", "View"
        EDIT = "edit", "Edit"

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="grants")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="segment_grants"
    )
    role = models.ForeignKey("cdp.Role", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    permission = models.CharField(max_length=4, choices=Permission.choices, default=Permission.VIEW)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, role__isnull=True) | Q(user__isnull=True, role__isnull=False),
                name="segment_grant_user_xor_role",
            ),
            models.UniqueConstraint(fields=["segment", "user"], name="segment_grant_user_unique"),
            models.UniqueConstraint(fields=["segment", "role"], name="segment_grant_role_unique"),
        ]
        indexes = [
            models.Index(fields=["user"], name="segment_grant_user", condition=Q(user__isnull=False)),
            models.Index(fields=["role"], name="segment_grant_role", condition=Q(role__isnull=False)),
        ]

    def __str__(self) -> str:
        who = f"user {self.user}" if self.user_id else f"role {self.role}"
        return f"{who}: {self.permission}"


class SegmentNote(models.Model):
    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    text = models.TextField()
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return self.text[:60]


class SegmentSizeSnapshot(models.Model):
    """The segment's customer count on one day (the last measurement of that day wins)."""

    segment = models.ForeignKey(Segment, on_delete=models.CASCADE, related_name="size_snapshots")
    day = models.DateField()
    size = models.BigIntegerField()
    measured = models.DateTimeField()

    class Meta:
        ordering = ["segment", "day"]
        constraints = [models.UniqueConstraint(fields=["segment", "day"], name="segment_size_day_unique")]

    def __str__(self) -> str:
        return f"{self.day}: {self.size}"


from segments.exports.models import (  # noqa: E402, F401  (segment exports)
    ExportDestination,
    ExportedMember,
    ExportSchedule,
    SegmentExport,
)
