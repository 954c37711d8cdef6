"""Data sources: where events come from, and their write keys (shown once, rotated with confirmation)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.forms import Form
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from unfold.admin import ModelAdmin
from unfold.decorators import action, display

from cdp.admin.base import (
    FeatureAccessMixin,
    ServiceSaveMixin,
    changed_model_fields,
    render_confirmation,
    render_secret_once,
)
from cdp.features import Feature
from cdp.models import DataSource
from cdp.selectors import data_sources_list
from cdp.services.data_sources import (
    SYSTEM_SOURCE_SLUG,
    data_source_create,
    data_source_rotate_write_key,
    data_source_slug_problem,
    data_source_update,
)

EDITABLE_FIELDS = ("name", "slug", "type", "description")


class DataSourceForm(forms.ModelForm):
    class Meta:
        model = DataSource
        fields = EDITABLE_FIELDS
        labels = {"slug": "Identifier"}
        help_texts = {
            "name": "Shown in the Business Explorer, e.g. 'Website' or 'Mobile app (iOS)'.",
            "slug": "Stable identifier used by the API and by `manage.py load_events --source`.",
            "type": "What kind of system sends these events.",
        }

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"]
        problem = data_source_slug_problem(source=self.instance if self.instance.pk else None, slug=slug)
        if problem:
            raise forms.ValidationError(problem)
        return slug


@admin.register(DataSource)
class DataSourceAdmin(FeatureAccessMixin, ServiceSaveMixin, ModelAdmin):
    view_feature = Feature.DATA_SOURCES_VIEW
    edit_feature = Feature.DATA_SOURCES_EDIT

    form = DataSourceForm
    list_display = ("name", "slug", "type", "write_key_display", "created")
    list_filter = ("type",)
    search_fields = ("name", "slug")
    readonly_fields = ("write_key_display", "created", "modified")
    fieldsets = (
        (None, {"fields": EDITABLE_FIELDS}),
        (
            "Write key",
            {
                "fields": ("write_key_display",),
                "description": "Clients send events with the write key (HTTP basic auth user name). "
                "Only its first characters are kept in readable form; rotate it to get a new one.",
            },
        ),
        ("History", {"fields": ("created", "modified")}),
    )
    add_fieldsets = ((None, {"fields": EDITABLE_FIELDS}),)
    actions_detail = ("rotate_write_key",)

    def get_queryset(self, request: HttpRequest):
        return data_sources_list()

    def get_actions_detail(self, request: HttpRequest, object_id) -> list:
        """No "Rotate write key" on the system source: it takes no events, so it has no key."""
        actions = super().get_actions_detail(request, object_id)
        if str(object_id).isdigit() and DataSource.objects.filter(pk=object_id, slug=SYSTEM_SOURCE_SLUG).exists():
            return []
        return actions

    def get_fieldsets(self, request: HttpRequest, obj: DataSource | None = None):
        return self.add_fieldsets if obj is None else self.fieldsets

    @display(description="Write key")
    def write_key_display(self, obj: DataSource) -> str:
        # Only the prefix is readable; the hash is never shown.
        return f"{obj.write_key_prefix}…" if obj.write_key_prefix else "— (none)"

    def service_create(self, request: HttpRequest, form: Form) -> DataSource:
        source, key = data_source_create(**{name: form.cleaned_data[name] for name in EDITABLE_FIELDS})
        source.plain_write_key = key
        return source

    def service_update(self, request: HttpRequest, obj: DataSource, form: Form) -> None:
        data_source_update(source=obj, **changed_model_fields(form, EDITABLE_FIELDS))

    def response_add(self, request: HttpRequest, obj: DataSource, post_url_continue: str | None = None) -> HttpResponse:
        key = getattr(obj, "plain_write_key", None)
        if not key:
            return super().response_add(request, obj, post_url_continue)
        return render_secret_once(
            request,
            self,
            title=f"Data source “{obj.name}” created",
            secret=key,
            label="Write key",
            explanation="Send events with this write key. Copy it now: it is stored only as a hash and "
            "will not be shown again. If it is lost, rotate the key to get a new one.",
            continue_url=reverse("admin:cdp_datasource_change", args=[obj.pk]),
            obj=obj,
        )

    @action(description="Rotate write key", url_path="rotate-write-key", permissions=["change"], icon="key")
    def rotate_write_key(self, request: HttpRequest, object_id: str) -> HttpResponse:
        source = get_object_or_404(DataSource, pk=object_id)
        change_url = reverse("admin:cdp_datasource_change", args=[source.pk])
        if request.method != "POST" or request.POST.get("confirm") != "yes":
            return render_confirmation(
                request,
                self,
                title=f"Rotate the write key of “{source.name}”?",
                question="A new write key will be made and the current one stops working at once.",
                details=[
                    f"Current key: {source.write_key_prefix}…" if source.write_key_prefix else "It has no key now.",
                    "Every website, app or server that sends events with the current key must be given the new one.",
                ],
                confirm_label="Rotate write key",
                cancel_url=change_url,
            )
        try:
            key = data_source_rotate_write_key(source=source)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return HttpResponseRedirect(change_url)
        self.log_change(request, source, [{"changed": {"fields": ["write key"]}}])
        messages.success(request, f"The write key of “{source.name}” was rotated.")
        return render_secret_once(
            request,
            self,
            title=f"New write key for “{source.name}”",
            secret=key,
            label="Write key",
            explanation="The old key no longer works. Copy this one now: it will not be shown again.",
            continue_url=change_url,
            obj=source,
        )
