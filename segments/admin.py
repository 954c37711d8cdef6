"""Segments in the Business Explorer: a plain list and change form (the visual builder replaces the condition
field's widget), notes and grants inline, trash / restore / duplicate actions. Saved through segments.services;
the ACL applies as in the API (a segment you may not see is not listed and its page is a 404)."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import OuterRef, QuerySet, Subquery
from django.forms import Form
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminCheckboxSelectMultipleWidget, UnfoldAdminTextareaWidget

from cdp.admin.base import FeatureAccessMixin, ServiceSaveMixin, user_has_feature
from cdp.features import Feature
from segments import selectors, services
from segments.admin_builder import SegmentBuilderAdminMixin
from segments.exports.admin import SegmentExportActionMixin
from segments.models import Segment, SegmentGrant, SegmentNote, SegmentSizeSnapshot, Tag

_KEY_ORDER = {key: n for n, key in enumerate(("attribute", "operator", "value", "negate", "children"))}


def _readable(node: Any) -> Any:
    """A tree with its keys in reading order (jsonb stores them sorted by length)."""
    if isinstance(node, dict):
        return {k: _readable(node[k]) for k in sorted(node, key=lambda k: (_KEY_ORDER.get(k, 99), k))}
    if isinstance(node, list):
        return [_readable(item) for item in node]
    return node


class PrettyJSONField(forms.JSONField):
    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(_readable(value), indent=2, ensure_ascii=False)


class SegmentForm(forms.ModelForm):
    conditions = PrettyJSONField(
        widget=forms.Textarea(attrs={"rows": 14, "style": "font-family: monospace"}),
        help_text=(
            'A group {"operator": "and" | "or", "children": [...]} or a condition {"attribute": "age", '
            '"operator": "gte", "value": 18}; "negate": true on any node is NOT. See the README.'
        ),
        initial=dict,
    )
    # Fields declared here get no widget from the admin's theme on their own: Django's bare ones showed the
    # description without a box and the tags as an unstyled multiple-select list (ctrl-click to pick several).
    tags = forms.ModelMultipleChoiceField(
        queryset=Tag.objects.all(), required=False, widget=UnfoldAdminCheckboxSelectMultipleWidget
    )
    description = forms.CharField(
        required=False,
        max_length=services.DESCRIPTION_MAX,
        strip=False,
        widget=UnfoldAdminTextareaWidget(attrs={"rows": 3}),
    )

    class Meta:
        model = Segment
        fields = ("name", "description", "conditions", "tags")

    def clean_conditions(self):
        try:
            return services.conditions_clean(self.cleaned_data.get("conditions") or {"operator": "and", "children": []})
        except ValidationError as exc:
            messages_ = exc.message_dict.items()
            raise ValidationError("; ".join(f"{path}: {', '.join(msgs)}" for path, msgs in messages_)) from None


class TrashFilter(admin.SimpleListFilter):
    title = "trash"
    parameter_name = "trash"

    def lookups(self, request, model_admin):
        return [("live", "Live segments"), ("trashed", "In the trash"), ("all", "All")]

    def choices(self, changelist):
        value = self.value() or "live"
        for lookup, title in self.lookup_choices:
            yield {
                "selected": value == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        value = self.value() or "live"
        if value == "live":
            return queryset.filter(trashed_at__isnull=True)
        if value == "trashed":
            return queryset.filter(trashed_at__isnull=False)
        return queryset


class SegmentNoteInline(TabularInline):
    model = SegmentNote
    fields = ("text", "author", "created")
    readonly_fields = ("author", "created")
    extra = 1
    tab = True

    def has_view_permission(self, request, obj=None):
        return user_has_feature(request, Feature.SEGMENTS_VIEW) or user_has_feature(request, Feature.SEGMENTS_EDIT)

    def has_add_permission(self, request, obj=None):
        return user_has_feature(request, Feature.SEGMENTS_EDIT)

    has_change_permission = has_add_permission

    def has_delete_permission(self, request, obj=None):
        return user_has_feature(request, Feature.SEGMENTS_EDIT)


class SegmentGrantForm(forms.ModelForm):
    class Meta:
        model = SegmentGrant
        fields = ("user", "role", "permission")

    def clean(self):
        data = super().clean()
        if bool(data.get("user")) == bool(data.get("role")):
            raise ValidationError("Grant to exactly one of a user or a role.")
        segment = getattr(self.instance, "segment", None) if self.instance.segment_id else None
        if segment is not None and data.get("user") is not None and data["user"].pk == segment.owner_id:
            raise ValidationError("The owner already has full access.")
        return data


class SegmentGrantInline(TabularInline):
    model = SegmentGrant
    form = SegmentGrantForm
    fields = ("user", "role", "permission", "created")
    readonly_fields = ("created",)
    extra = 0
    tab = True
    verbose_name = "access grant"

    def has_view_permission(self, request, obj=None):
        return user_has_feature(request, Feature.SEGMENTS_VIEW) or user_has_feature(request, Feature.SEGMENTS_EDIT)

    def _may_manage(self, request, obj) -> bool:
        return (
            obj is not None
            and user_has_feature(request, Feature.SEGMENTS_EDIT)
            and selectors.segment_can_manage_acl(user=request.user, segment=obj)
        )

    def has_add_permission(self, request, obj=None):
        return self._may_manage(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._may_manage(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._may_manage(request, obj)


@admin.register(Segment)
class SegmentAdmin(
    SegmentBuilderAdminMixin, SegmentExportActionMixin, FeatureAccessMixin, ServiceSaveMixin, ModelAdmin
):
    view_feature = Feature.SEGMENTS_VIEW
    edit_feature = Feature.SEGMENTS_EDIT

    form = SegmentForm
    inlines = (SegmentNoteInline, SegmentGrantInline)
    list_display = ("name", "owner", "tag_list", "last_size", "modified", "trash_state")
    list_filter = (TrashFilter, "tags")
    search_fields = ("name", "description")
    list_select_related = ("owner",)
    readonly_fields = ("owner", "customers_now", "size_history", "created", "modified", "trashed_at")
    actions = ("trash_segments", "restore_segments", "duplicate_segments")
    actions_detail = ("segment_insights", "export_segment")  # segments/admin_builder.py, segments/exports/admin.py

    def get_fieldsets(self, request, obj=None):
        main = (None, {"fields": ("name", "description", "conditions", "tags")})
        if obj is None:
            return (main,)
        about = ("About", {"fields": ("owner", "customers_now", "size_history", "created", "modified", "trashed_at")})
        return (main, about)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Segment]:
        latest = SegmentSizeSnapshot.objects.filter(segment=OuterRef("pk")).order_by("-day")
        return (
            selectors.segments_visible(user=request.user, trashed=None)
            .annotate(last_size_value=Subquery(latest.values("size")[:1]))
            .prefetch_related("tags")
        )

    def has_change_permission(self, request: HttpRequest, obj: Segment | None = None) -> bool:
        if not super().has_change_permission(request, obj):
            return False
        return obj is None or selectors.segment_can_edit(user=request.user, segment=obj)

    @display(description="Tags")
    def tag_list(self, obj: Segment) -> str:
        return ", ".join(tag.name for tag in obj.tags.all())

    @display(description="Customers (last measured)")
    def last_size(self, obj: Segment) -> str:
        value = getattr(obj, "last_size_value", None)
        return "—" if value is None else f"{value:,}"

    @display(description="In trash", boolean=True)
    def trash_state(self, obj: Segment) -> bool:
        return obj.trashed_at is not None

    @display(description="Customers now")
    def customers_now(self, obj: Segment) -> str:
        try:
            count = selectors.segment_members_count(segment=obj)
        except Exception as exc:  # noqa: BLE001 - an unevaluable tree is shown, not a server error
            return f"cannot be counted: {exc}"
        services.segment_size_record(segment=obj, size=count)
        return f"{count:,}"

    @display(description="Size over time")
    def size_history(self, obj: Segment) -> str:
        rows = selectors.segment_size_history(segment=obj, days=30)
        if not rows:
            return "—"
        return format_html_join(", ", "{}: {}", ((row["day"], f"{row['size']:,}") for row in rows[-10:]))

    def service_create(self, request: HttpRequest, form: Form) -> Segment:
        data = form.cleaned_data
        form.instance = services.segment_create(
            owner=request.user, name=data["name"], description=data.get("description") or "",
            conditions=data["conditions"], tags=[tag.name for tag in data.get("tags") or []],
        )  # fmt: skip
        return form.instance  # save_related (the inlines) reads the saved segment from the form

    def service_update(self, request: HttpRequest, obj: Segment, form: Form) -> None:
        data = form.cleaned_data
        services.segment_update(
            segment=Segment.objects.get(pk=obj.pk), name=data["name"], description=data.get("description") or "",
            conditions=data["conditions"], tags=[tag.name for tag in data.get("tags") or []],
        )  # fmt: skip

    def save_related(self, request: HttpRequest, form: Form, formsets: Any, change: bool) -> None:
        """Inline notes and grants through the services (and the lists the admin's change message reads)."""
        segment = form.instance
        for formset in formsets:
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
            for inline_form in formset.forms:
                item = inline_form.instance
                if formset._should_delete_form(inline_form):
                    if item.pk is not None:
                        formset.deleted_objects.append(item)
                        if isinstance(item, SegmentNote):
                            services.segment_note_delete(note=item)
                        else:
                            services.segment_grant_delete(grant=item)
                    continue
                if not inline_form.has_changed():
                    continue
                data = inline_form.cleaned_data
                if formset.model is SegmentNote:
                    if item.pk is None:
                        note = services.segment_note_create(segment=segment, author=request.user, text=data["text"])
                        formset.new_objects.append(note)
                    else:
                        services.segment_note_update(note=item, text=data["text"])
                        formset.changed_objects.append((item, inline_form.changed_data))
                    continue
                if item.pk is not None:
                    services.segment_grant_delete(grant=SegmentGrant.objects.get(pk=item.pk))
                grant = services.segment_grant_set(
                    segment=segment, user=data.get("user"), role=data.get("role"), permission=data["permission"]
                )
                if item.pk is None:
                    formset.new_objects.append(grant)
                else:
                    formset.changed_objects.append((grant, inline_form.changed_data))

    def _editable(self, request: HttpRequest, queryset: QuerySet[Segment]) -> list[Segment]:
        return list(selectors.segments_editable(user=request.user, trashed=None).filter(pk__in=queryset.values("pk")))

    # The list actions need segments_edit (has_change_permission without a segment), as their API endpoints do: a
    # viewer could duplicate segments and then trash and restore the copies they owned.
    @action(description="Move selected segments to the trash", permissions=["change"])
    def trash_segments(self, request: HttpRequest, queryset: QuerySet[Segment]) -> None:
        segments = [s for s in self._editable(request, queryset) if s.trashed_at is None]
        for segment in segments:
            services.segment_trash(segment=segment)
        self.message_user(request, f"{len(segments)} segment(s) moved to the trash.", messages.SUCCESS)

    @action(description="Restore selected segments from the trash", permissions=["change"])
    def restore_segments(self, request: HttpRequest, queryset: QuerySet[Segment]) -> None:
        segments = [s for s in self._editable(request, queryset) if s.trashed_at is not None]
        for segment in segments:
            services.segment_restore(segment=segment)
        self.message_user(request, f"{len(segments)} segment(s) restored.", messages.SUCCESS)

    @action(description="Duplicate selected segments", permissions=["change"])
    def duplicate_segments(self, request: HttpRequest, queryset: QuerySet[Segment]) -> None:
        copies = [services.segment_duplicate(segment=s, owner=request.user) for s in queryset]
        self.message_user(request, f"{len(copies)} segment(s) duplicated.", messages.SUCCESS)


@admin.register(Tag)
class TagAdmin(FeatureAccessMixin, ServiceSaveMixin, ModelAdmin):
    view_feature = Feature.SEGMENTS_VIEW
    edit_feature = Feature.SEGMENTS_EDIT
    list_display = ("name", "swatch", "segments_count", "created")
    search_fields = ("name",)
    fields = ("name", "color")

    def get_queryset(self, request):
        return selectors.tags_list(user=request.user)

    @display(description="Colour")
    def swatch(self, obj: Tag) -> str:
        if not obj.color:
            return "—"
        return format_html('<span style="display:inline-block;width:1em;height:1em;background:{}"></span>', obj.color)

    @display(description="Live segments")
    def segments_count(self, obj: Tag) -> int:
        return obj.segments_count

    def service_create(self, request: HttpRequest, form: Form) -> Tag:
        return services.tag_create(name=form.cleaned_data["name"], color=form.cleaned_data.get("color") or "")

    def service_update(self, request: HttpRequest, obj: Tag, form: Form) -> None:
        services.tag_update(tag=Tag.objects.get(pk=obj.pk), name=form.cleaned_data["name"],
                            color=form.cleaned_data.get("color") or "")  # fmt: skip
