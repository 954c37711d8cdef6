"""Export destinations, segment exports and export schedules."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from loaders.registry import KIND_CHOICES, loader_class


class ExportDestination(models.Model):
    """A configured loader. Non-secret settings in `config`; secret ones (tokens, keys) encrypted."""

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=20, choices=KIND_CHOICES)
    config = models.JSONField(default=dict, blank=True, help_text="The loader's settings, secrets excluded.")
    secrets_encrypted = models.TextField(blank=True, editable=False)
    mandatory_attributes = models.JSONField(
        default=list, blank=True, help_text="Attribute ids every export to this destination carries."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "export destination"

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:  # never the secrets
        return f"<ExportDestination {self.pk} {self.kind} {self.name!r}>"

    @property
    def loader_label(self) -> str:
        return loader_class(self.kind).label

    def secret_names(self) -> list[str]:
        return sorted(loader_class(self.kind).secret_fields())

    def full_config(self) -> dict[str, Any]:
        from segments.exports.crypto import secrets_decrypt

        return {**self.config, **secrets_decrypt(self.secrets_encrypted)}


class ExportSchedule(models.Model):
    class Frequency(models.TextChoices):
        HOURLY = "hourly", "Every hour"
        DAILY = "daily", "Every day"

    segment = models.ForeignKey("segments.Segment", on_delete=models.CASCADE, related_name="export_schedules")
    destination = models.ForeignKey(ExportDestination, on_delete=models.CASCADE, related_name="schedules")
    frequency = models.CharField(max_length=10, choices=Frequency.choices, default=Frequency.DAILY)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_run_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["segment_id", "destination_id"]
        constraints = [
            models.UniqueConstraint(fields=["segment", "destination"], name="export_schedule_segment_destination")
        ]
        verbose_name = "scheduled export"

    def __str__(self) -> str:
        return f"{self.segment} → {self.destination} ({self.get_frequency_display().lower()})"


class SegmentExport(models.Model):
    """One run of a segment to a destination."""

    class Status(models.TextChoices):
        WAITING = "waiting", "Waiting"
        RUNNING = "running", "Running"
        FINISHED = "finished", "Finished"
        ERROR = "error", "Error"

    segment = models.ForeignKey(
        "segments.Segment", null=True, blank=True, on_delete=models.SET_NULL, related_name="exports"
    )
    destination = models.ForeignKey(
        ExportDestination, null=True, blank=True, on_delete=models.SET_NULL, related_name="exports"
    )
    # Kept so the history still says what was exported where after a segment or destination is deleted.
    segment_name = models.CharField(max_length=200)
    destination_name = models.CharField(max_length=200)
    destination_kind = models.CharField(max_length=20, choices=KIND_CHOICES)
    schedule = models.ForeignKey(ExportSchedule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.WAITING, db_index=True)
    progress = models.FloatField(default=0.0, help_text="0 to 1.")
    total = models.IntegerField(null=True, blank=True, help_text="Segment members when the export started.")
    sent = models.IntegerField(default=0)
    skipped = models.IntegerField(default=0)
    failed = models.IntegerField(default=0)
    error_message = models.TextField(blank=True)
    log = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True, help_text="What the loader reported (file, audience id).")
    file_name = models.CharField(max_length=300, blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="segment_exports"
    )
    created = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.IntegerField(default=0)
    # Resume point: the last entity id of the last batch the destination acknowledged, and the loader's state.
    checkpoint_entity_id = models.CharField(max_length=32, blank=True, db_collation="C")
    checkpoint_state = models.JSONField(default=dict, blank=True)
    # Set while a batch is being delivered (cleared by its checkpoint): a worker lost in between may have sent it.
    in_flight_entity_id = models.CharField(max_length=32, blank=True, db_collation="C")

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [
            models.Index(fields=["segment", "-created"], name="segment_exports_segment"),
            models.Index(fields=["status", "heartbeat_at"], name="segment_exports_status"),
        ]
        verbose_name = "segment export"

    def __str__(self) -> str:
        return f"{self.segment_name} → {self.destination_name} #{self.pk}"

    @property
    def is_done(self) -> bool:
        return self.status in {self.Status.FINISHED, self.Status.ERROR}

    @property
    def has_file(self) -> bool:
        return bool(self.file_name) and self.status == self.Status.FINISHED


class ExportedMember(models.Model):
    """A customer an export sent as a member of its segment, for destinations that must hear when a customer
    *leaves* it (Customer.io's `In <segment name>` = false and a shorter SegmentMembership). The next export of the
    same segment to the same destination sends the previous run's members that are no longer in the segment."""

    export = models.ForeignKey(SegmentExport, on_delete=models.CASCADE, related_name="+", db_index=False)
    entity_id = models.CharField(max_length=32, db_collation="C")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["export", "entity_id"], name="exported_member_unique")]

    def __str__(self) -> str:
        return f"{self.export_id}: {self.entity_id}"
