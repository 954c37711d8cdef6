"""Global settings: every definition with its value, an edit form validated by the service, the audit log."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from unfold.admin import ModelAdmin
from unfold.decorators import display
from unfold.widgets import UnfoldAdminIntegerFieldWidget, UnfoldAdminTextareaWidget, UnfoldAdminTextInputWidget

from cdp.admin.base import FeatureAccessMixin
from cdp.features import Feature
from cdp.global_settings import DEFINITIONS, SettingDefinition, SettingInvalid
from cdp.models import GlobalSetting, GlobalSettingChange
from cdp.selectors import global_setting_changes_list
from cdp.services.global_settings import global_setting_set


def value_display(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) if value else "— (empty list)"
    if isinstance(value, str):
        return value
    return json.dumps(value)


class GlobalSettingForm(forms.Form):
    """One setting's value. The form only parses the text; the rules live in the definition's check."""

    value = forms.CharField(required=False)

    def __init__(self, *args: Any, definition: SettingDefinition, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.definition = definition
        help_text = definition.description
        if definition.type == "integer":
            self.fields["value"] = forms.IntegerField(widget=UnfoldAdminIntegerFieldWidget, help_text=help_text)
        elif definition.type == "array[string]":
            self.fields["value"] = forms.CharField(
                required=False,
                widget=UnfoldAdminTextareaWidget(attrs={"rows": 6}),
                help_text=f"{help_text} One per line.",
            )
        elif definition.type == "string":
            self.fields["value"] = forms.CharField(widget=UnfoldAdminTextInputWidget, help_text=help_text)
        else:
            self.fields["value"] = forms.JSONField(widget=UnfoldAdminTextareaWidget, help_text=f"{help_text} JSON.")

    @staticmethod
    def initial_for(definition: SettingDefinition, value: Any) -> Any:
        if definition.type == "array[string]":
            return "\n".join(str(item) for item in value or [])
        return value

    def clean_value(self) -> Any:
        value = self.cleaned_data.get("value")
        if self.definition.type == "array[string]":
            return [line.strip() for line in (value or "").splitlines() if line.strip()]
        return value


@admin.register(GlobalSetting)
class GlobalSettingAdmin(FeatureAccessMixin, ModelAdmin):
    """The changelist is replaced by a page of every defined setting (stored or at its default)."""

    view_feature = edit_feature = Feature.SETTINGS_EDIT

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<str:key>/edit/",
                self.admin_site.admin_view(self.edit_view),
                name="{}_{}_edit".format(*info),
            ),
        ] + super().get_urls()

    def _context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "opts": self.opts, **extra}

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        stored = {s.key: s for s in GlobalSetting.objects.select_related("modified_by")}
        rows = []
        for key, definition in sorted(DEFINITIONS.items()):
            setting = stored.get(key)
            value = definition.default if setting is None else setting.value
            rows.append(
                [
                    format_html(
                        '<a href="{}" class="font-semibold text-primary-600">{}</a>',
                        reverse("admin:cdp_globalsetting_edit", args=[key]),
                        key,
                    ),
                    value_display(value) + ("" if setting else " (default)"),
                    definition.type,
                    definition.description,
                    (f"{setting.modified:%Y-%m-%d %H:%M} by {setting.modified_by or 'system'}" if setting else "never"),
                ]
            )
        context = self._context(
            request,
            title="Global settings",
            table={"headers": ["Setting", "Value", "Type", "Description", "Last changed"], "rows": rows},
            audit_log_url=reverse("admin:cdp_globalsettingchange_changelist"),
            **(extra_context or {}),
        )
        return TemplateResponse(request, "cdp/admin/global_settings.html", context)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        return HttpResponseRedirect(reverse("admin:cdp_globalsetting_edit", args=[object_id]))

    def edit_view(self, request: HttpRequest, key: str) -> HttpResponse:
        if not self.has_change_permission(request):
            raise PermissionDenied
        definition = DEFINITIONS.get(key)
        if definition is None:
            raise Http404(f"There is no global setting {key!r}.")
        current = GlobalSetting.objects.filter(key=key).values_list("value", flat=True).first()
        current = definition.default if current is None else current
        if request.method == "POST":
            form = GlobalSettingForm(request.POST, definition=definition)
            if form.is_valid():
                try:
                    stored = global_setting_set(key=key, value=form.cleaned_data["value"], user=request.user)
                except SettingInvalid as exc:
                    form.add_error("value", f"{key} {exc}.")
                else:
                    self.message_user(request, f"“{key}” is now {value_display(stored)}.", messages.SUCCESS)
                    return HttpResponseRedirect(reverse("admin:cdp_globalsetting_changelist"))
        else:
            form = GlobalSettingForm(
                initial={"value": GlobalSettingForm.initial_for(definition, current)}, definition=definition
            )
        context = self._context(
            request,
            title=f"Edit “{key}”",
            definition=definition,
            form=form,
            default_display=value_display(definition.default),
            cancel_url=reverse("admin:cdp_globalsetting_changelist"),
            history_url=reverse("admin:cdp_globalsettingchange_changelist") + f"?key={key}",
        )
        return TemplateResponse(request, "cdp/admin/global_setting_edit.html", context)


@admin.register(GlobalSettingChange)
class GlobalSettingChangeAdmin(FeatureAccessMixin, ModelAdmin):
    """Read-only audit log of global setting changes."""

    view_feature = Feature.SETTINGS_EDIT

    list_display = ("changed", "key", "old_value_display", "new_value_display", "changed_by")
    list_filter = ("key",)
    list_select_related = ("changed_by",)
    fields = ("key", "old_value_display", "new_value_display", "changed_by", "changed")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[GlobalSettingChange]:
        return global_setting_changes_list()

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: GlobalSettingChange | None = None) -> bool:
        return False

    @display(description="Old value")
    def old_value_display(self, obj: GlobalSettingChange) -> str:
        return value_display(obj.old_value)

    @display(description="New value")
    def new_value_display(self, obj: GlobalSettingChange) -> str:
        return value_display(obj.new_value)
