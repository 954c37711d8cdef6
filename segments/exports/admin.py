"""Business Explorer pages for export destinations, segment exports (history with live progress, CSV download,
"New export": pick a segment and a destination, confirm) and scheduled exports. Writes go through services.

Imported (so registered) by segments/admin.py, which mixes the segment page's "Export" button in, and by
loaders/admin.py."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from unfold.admin import ModelAdmin
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminSelectWidget, UnfoldAdminTextareaWidget, UnfoldAdminTextInputWidget

from cdp.admin.base import FeatureAccessMixin, render_confirmation, user_has_feature
from cdp.features import Feature
from loaders.registry import KIND_CHOICES, LOADERS
from segments.exports import selectors, services
from segments.exports.models import ExportDestination, ExportSchedule, SegmentExport
from segments.selectors import segment_get_visible, segments_visible

STATUS_COLOURS = {
    SegmentExport.Status.WAITING: "#6b7280",
    SegmentExport.Status.RUNNING: "#2563eb",
    SegmentExport.Status.FINISHED: "#16a34a",
    SegmentExport.Status.ERROR: "#dc2626",
}


def export_status_payload(export: SegmentExport) -> dict[str, Any]:
    return {
        "id": export.pk,
        "status": export.status,
        "status_label": export.get_status_display(),
        "progress": round(export.progress * 100, 1),
        "total": export.total,
        "sent": export.sent,
        "skipped": export.skipped,
        "failed": export.failed,
        "error_message": export.error_message,
        "done": export.is_done,
        "download_url": reverse("admin:segments_segmentexport_download", args=[export.pk]) if export.has_file else None,
    }


class SegmentExportActionMixin:
    """The "Export" button on a segment's page (mixed into segments.admin.SegmentAdmin): pick a destination,
    confirm, and the export starts."""

    def has_export_segment_permission(self, request: HttpRequest, object_id: Any = None) -> bool:
        return user_has_feature(request, Feature.EXPORTS_RUN)

    @action(description="Export", url_path="export", permissions=["export_segment"], icon="upload")
    def export_segment(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return redirect(f"{reverse('admin:segments_segmentexport_new')}?segment={object_id}")


# --- destinations ------------------------------------------------------------------------------------------


class DestinationForm(forms.ModelForm):
    # The admin theme's widgets, as the model's own fields get them (Django's bare ones render without a border).
    kind = forms.ChoiceField(
        choices=KIND_CHOICES, widget=UnfoldAdminSelectWidget, help_text="Which loader delivers the exports."
    )
    config_json = forms.CharField(
        label="Configuration",
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 10, "style": "font-family: monospace"}),
        initial="{}",
        help_text="JSON object of the loader's settings. Secrets show masked: leave them masked to keep them.",
    )
    attributes_text = forms.CharField(
        label="Mandatory attributes",
        required=False,
        widget=UnfoldAdminTextInputWidget,
        help_text="Attribute ids every export to this destination carries, comma-separated.",
    )

    class Meta:
        model = ExportDestination
        fields = ("name",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        kinds = "; ".join(
            f"{kind}: " + ", ".join(f.name + ("*" if f.required else "") for f in loader.fields)
            for kind, loader in LOADERS.items()
        )
        self.fields["config_json"].help_text += f" Settings (* required) — {kinds}."
        if self.instance.pk:
            self.fields["kind"].initial = self.instance.kind
            self.fields["kind"].disabled = True
            self.fields["config_json"].initial = json.dumps(
                services.destination_config_display(self.instance), indent=2, ensure_ascii=False
            )
            self.fields["attributes_text"].initial = ", ".join(self.instance.mandatory_attributes)

    def clean_config_json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.cleaned_data["config_json"] or "{}")
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError("Must be a JSON object.")
        return value

    def clean_attributes_text(self) -> list[str]:
        return [a.strip() for a in (self.cleaned_data["attributes_text"] or "").split(",") if a.strip()]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if "config_json" in data and "kind" in data:
            # The service's own checks, so the form shows them next to the fields and save cannot fail.
            try:
                services.destination_validate(
                    kind=data["kind"],
                    config=data["config_json"],
                    mandatory_attributes=data.get("attributes_text") or [],
                    current=self.instance if self.instance.pk else None,
                )
            except ValidationError as exc:
                fields = {"config": "config_json", "mandatory_attributes": "attributes_text", "kind": "kind"}
                for field, problems in exc.message_dict.items():
                    for problem in problems:
                        self.add_error(fields.get(field), problem)
        return data


@admin.register(ExportDestination)
class ExportDestinationAdmin(FeatureAccessMixin, ModelAdmin):
    view_feature = Feature.EXPORTS_RUN
    edit_feature = Feature.DESTINATIONS_EDIT
    form = DestinationForm
    list_display = ("name", "kind", "mandatory_attributes_display", "created_by", "created")
    list_filter = ("kind",)
    search_fields = ("name",)
    fields = ("name", "kind", "config_json", "attributes_text")

    def get_queryset(self, request: HttpRequest):
        return selectors.destinations_list()

    @display(description="Mandatory attributes")
    def mandatory_attributes_display(self, obj: ExportDestination) -> str:
        return ", ".join(obj.mandatory_attributes) or "—"

    def save_form(self, request: HttpRequest, form: forms.ModelForm, change: bool):
        data = form.cleaned_data
        if change:
            return services.destination_update(
                destination=form.instance,
                name=data["name"],
                config=data["config_json"],
                mandatory_attributes=data["attributes_text"],
            )
        return services.destination_create(
            name=data["name"],
            kind=data["kind"],
            config=data["config_json"],
            mandatory_attributes=data["attributes_text"],
            user=request.user,
        )

    def save_model(self, request, obj, form, change) -> None:
        return None

    def save_related(self, request, form, formsets, change) -> None:
        return None

    # A destination could not be deleted in the admin at all (only with the API): one with a leaked or revoked token
    # stayed in every "New export" list. Deleting goes through the service, which refuses while an export to it
    # waits or runs; its schedules go with it, its export history stays.
    def has_delete_permission(self, request: HttpRequest, obj: ExportDestination | None = None) -> bool:
        return user_has_feature(request, Feature.DESTINATIONS_EDIT)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context=None) -> HttpResponse:
        destination = self.get_object(request, object_id)
        if request.method == "POST" and destination is not None:
            if not self.has_delete_permission(request, destination):
                raise PermissionDenied
            try:
                services.destination_delete(destination=destination)
            except ValidationError as exc:
                for problems in exc.message_dict.values():
                    self.message_user(request, " ".join(problems), level=messages.ERROR)
                return redirect(reverse("admin:segments_exportdestination_change", args=[destination.pk]))
            self.message_user(request, f"The export destination “{destination}” was deleted.")
            return redirect(reverse("admin:segments_exportdestination_changelist"))
        return super().delete_view(request, object_id, extra_context)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for destination in queryset:
            try:
                services.destination_delete(destination=destination)
            except ValidationError as exc:
                problems = " ".join(" ".join(p) for p in exc.message_dict.values())
                self.message_user(request, f"“{destination}” was kept: {problems}", level=messages.ERROR)


# --- exports -----------------------------------------------------------------------------------------------


class NewExportForm(forms.Form):
    segment = forms.ModelChoiceField(
        queryset=None, widget=UnfoldAdminSelectWidget, help_text="Only segments you may see."
    )
    destination = forms.ModelChoiceField(
        queryset=ExportDestination.objects.order_by("name"), widget=UnfoldAdminSelectWidget
    )

    def __init__(self, *args: Any, user=None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["segment"].queryset = segments_visible(user=user).order_by("name")


@admin.register(SegmentExport)
class SegmentExportAdmin(FeatureAccessMixin, ModelAdmin):
    view_feature = Feature.EXPORTS_RUN
    edit_feature = None
    # The file's link next to the progress it waits for: as the last column it was scrolled out of sight on a
    # laptop's screen.
    list_display = (
        "id", "segment_name", "destination_name", "status_badge", "progress_bar", "download_link", "sent_count",
        "skipped_count", "failed_count", "started_by", "created",
    )  # fmt: skip
    list_display_links = ("id", "segment_name")
    list_filter = ("status", "destination_kind")
    search_fields = ("segment_name", "destination_name")
    list_select_related = ("started_by",)
    readonly_fields = (
        "segment_name", "destination_name", "destination_kind", "status_badge", "progress_bar", "total", "sent_count",
        "skipped_count", "failed_count", "error_message", "details", "started_by", "created", "started_at",
        "finished_at", "attempts", "download_link", "log_display",
    )  # fmt: skip
    fieldsets = (
        (None, {"fields": ("segment_name", "destination_name", "destination_kind", "status_badge", "progress_bar")}),
        (
            "Counts",
            {
                "fields": (
                    "total",
                    "sent_count",
                    "skipped_count",
                    "failed_count",
                    "error_message",
                    "details",
                    "download_link",
                )  # fmt: skip
            },
        ),
        ("Run", {"fields": ("started_by", "created", "started_at", "finished_at", "attempts")}),
        ("Log", {"fields": ("log_display",)}),
    )
    change_list_template = "segments/exports/admin/change_list.html"
    change_form_template = "segments/exports/admin/change_form.html"

    def get_queryset(self, request: HttpRequest):
        return selectors.exports_visible(user=request.user)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False  # exports start from "New export" (pick a segment and a destination, confirm)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("new/", wrap(self.new_export_view), name="segments_segmentexport_new"),
            path("<int:pk>/status/", wrap(self.status_view), name="segments_segmentexport_status"),
            path("<int:pk>/download/", wrap(self.download_view), name="segments_segmentexport_download"),
            *super().get_urls(),
        ]

    # --- columns ---
    @display(description="Status")
    def status_badge(self, obj: SegmentExport):
        return format_html(
            '<span data-export-status="{}" style="color: {}; font-weight: 600">{}</span>',
            obj.pk,
            STATUS_COLOURS.get(obj.status, "#6b7280"),
            obj.get_status_display(),
        )

    @display(description="Progress")
    def progress_bar(self, obj: SegmentExport):
        percent = round(obj.progress * 100, 1)
        live = "" if obj.is_done else reverse("admin:segments_segmentexport_status", args=[obj.pk])
        return format_html(
            '<div class="export-progress" data-export-id="{}" data-status-url="{}" title="{}%" '
            'style="width: 100px; height: 10px; background: #e5e7eb; border-radius: 5px; overflow: hidden">'
            '<div class="export-progress-fill" style="width: {}%; height: 100%; background: {}"></div></div>'
            '<span class="export-progress-text" style="font-size: 12px">{}%</span>',
            obj.pk,
            live,
            percent,
            percent,
            STATUS_COLOURS.get(obj.status, "#2563eb"),
            percent,
        )

    def _count(self, obj: SegmentExport, key: str):
        return format_html('<span data-export-count="{}-{}">{}</span>', obj.pk, key, getattr(obj, key))

    @display(description="Sent", ordering="sent")
    def sent_count(self, obj: SegmentExport):
        return self._count(obj, "sent")

    @display(description="Skipped", ordering="skipped")
    def skipped_count(self, obj: SegmentExport):
        return self._count(obj, "skipped")

    @display(description="Failed", ordering="failed")
    def failed_count(self, obj: SegmentExport):
        return self._count(obj, "failed")

    @display(description="File")
    def download_link(self, obj: SegmentExport):
        url = reverse("admin:segments_segmentexport_download", args=[obj.pk])
        return format_html(
            '<a class="export-download" data-export-id="{}" href="{}" style="white-space: nowrap; {}">Download CSV</a>',
            obj.pk,
            url,
            "" if obj.has_file else "display: none",
        )

    @display(description="Log")
    def log_display(self, obj: SegmentExport):
        return format_html('<pre style="white-space: pre-wrap; max-height: 400px; overflow: auto">{}</pre>', obj.log)

    # --- views ---
    def _visible(self, request: HttpRequest, pk: int) -> SegmentExport:
        return get_object_or_404(selectors.exports_visible(user=request.user), pk=pk)

    def status_view(self, request: HttpRequest, pk: int) -> JsonResponse:
        if not self.has_view_permission(request):
            raise Http404
        return JsonResponse(export_status_payload(self._visible(request, pk)))

    def download_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise Http404
        export = self._visible(request, pk)
        if not export.has_file:
            raise Http404("This export has no file.")
        return selectors.export_file_response(export=export)

    def new_export_view(self, request: HttpRequest) -> HttpResponse:
        if not user_has_feature(request, Feature.EXPORTS_RUN):
            raise Http404
        changelist = reverse("admin:segments_segmentexport_changelist")
        data = request.POST if request.method == "POST" else None
        initial = {"segment": request.GET.get("segment"), "destination": request.GET.get("destination")}
        form = NewExportForm(data, user=request.user, initial=initial)
        if request.method == "POST" and form.is_valid():
            segment = segment_get_visible(user=request.user, segment_id=form.cleaned_data["segment"].pk)
            destination = form.cleaned_data["destination"]
            if request.POST.get("confirm") != "yes":
                return render_confirmation(
                    request,
                    self,
                    title="Export segment",
                    question=f"Export “{segment.name}” to {destination.name}?",
                    details=[
                        f"Destination: {destination.name} ({destination.loader_label}).",
                        "Attributes: " + (", ".join(destination.mandatory_attributes) or "the loader's own"),
                        "The export runs in the background; you get a notification when it ends.",
                    ],
                    confirm_label="Start export",
                    cancel_url=changelist,
                    hidden={"segment": segment.pk, "destination": destination.pk},
                    danger=False,
                )
            try:
                export = services.export_create(segment=segment, destination=destination, user=request.user)
            except ValidationError as exc:
                for field, problems in exc.message_dict.items():
                    self.message_user(request, f"{field}: {' '.join(problems)}", level=messages.ERROR)
            else:
                self.message_user(request, f"Export #{export.pk} of “{segment.name}” to {destination.name} started.")
                return redirect(reverse("admin:segments_segmentexport_change", args=[export.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "New segment export",
            "opts": self.model._meta,
            "form": form,
            "cancel_url": changelist,
        }
        return TemplateResponse(request, "segments/exports/admin/new_export.html", context)


# --- schedules ---------------------------------------------------------------------------------------------


class ScheduleForm(forms.ModelForm):
    class Meta:
        model = ExportSchedule
        fields = ("segment", "destination", "frequency", "enabled")


@admin.register(ExportSchedule)
class ExportScheduleAdmin(FeatureAccessMixin, ModelAdmin):
    view_feature = Feature.EXPORTS_RUN
    edit_feature = Feature.EXPORTS_RUN
    form = ScheduleForm
    list_display = ("segment", "destination", "frequency", "enabled", "last_run_at")
    list_filter = ("frequency", "enabled")
    list_select_related = ("segment", "destination")

    def get_queryset(self, request: HttpRequest):
        return selectors.schedules_visible(user=request.user).select_related("segment", "destination")

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.base_fields["segment"].queryset = segments_visible(user=request.user)
        return form

    def save_model(self, request, obj: ExportSchedule, form, change) -> None:
        data = form.cleaned_data
        if change:
            # Was schedule_set for the new pair too: changing the segment or destination added a second schedule
            # and left the old one running.
            services.schedule_update(
                schedule=obj,
                segment=data["segment"],
                destination=data["destination"],
                frequency=data["frequency"],
                enabled=data["enabled"],
            )
            return
        saved = services.schedule_set(
            segment=data["segment"],
            destination=data["destination"],
            frequency=data["frequency"],
            enabled=data["enabled"],
            user=request.user,
        )
        obj.pk = saved.pk

    def has_delete_permission(self, request, obj=None) -> bool:
        return user_has_feature(request, Feature.EXPORTS_RUN)
