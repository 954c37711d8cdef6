"""Reads for export destinations and segment exports (the ACL: exports of the segments a user may see)."""

from __future__ import annotations

from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import FileResponse

from segments.exports.models import ExportDestination, ExportSchedule, SegmentExport
from segments.selectors import segments_visible


def destinations_list() -> QuerySet[ExportDestination]:
    return ExportDestination.objects.select_related("created_by").order_by("name")


def destinations_using_attribute(*, attribute_id: str) -> QuerySet[ExportDestination]:
    """Destinations whose every export carries the attribute (their mandatory attributes)."""
    return ExportDestination.objects.filter(mandatory_attributes__contains=[attribute_id]).order_by("name")


def exports_visible(*, user) -> QuerySet[SegmentExport]:
    return (
        SegmentExport.objects.filter(segment__in=segments_visible(user=user, trashed=None))
        .select_related("started_by")
        .order_by("-created", "-id")
    )


def schedules_visible(*, user) -> QuerySet[ExportSchedule]:
    return ExportSchedule.objects.filter(segment__in=segments_visible(user=user, trashed=None)).order_by("-created")


def export_file_response(*, export: SegmentExport) -> FileResponse:
    handle = default_storage.open(export.file_name, "rb")
    filename = f"{export.segment_name}-{export.pk}.csv".replace('"', "").replace("/", "-")
    return FileResponse(handle, as_attachment=True, filename=filename, content_type="text/csv")
