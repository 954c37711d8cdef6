"""Computed attribute definitions: what analysts declare and marketers then see on profiles and in segments."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.forms import Form
from django.http import HttpRequest
from unfold.admin import ModelAdmin

from cdp.admin.base import FeatureAccessMixin, ServiceSaveMixin, changed_model_fields
from cdp.features import Feature
from cdp.models import Attribute
from cdp.services.attributes import attribute_create, attribute_update, attribute_validate

FIELDS = ("id", "name", "description", "data_type", "unit", "computation", "category", "sources", "event_types", "path")
UPDATABLE = tuple(name for name in FIELDS if name != "id")


class AttributeForm(forms.ModelForm):
    class Meta:
        model = Attribute
        fields = FIELDS

    def clean(self):
        data = super().clean()
        # The service's own checks, so its errors appear under the fields instead of after the form validated.
        if not self.errors:
            try:
                attribute_validate(
                    computation=data.get("computation", ""),
                    data_type=data.get("data_type", ""),
                    category=data.get("category", ""),
                    path=(data.get("path") or "").strip(),
                    event_types=data.get("event_types") or [],
                    sources=list(data.get("sources") or []),
                )
            except ValidationError as exc:
                raise ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages) from None
        return data


@admin.register(Attribute)
class AttributeAdmin(FeatureAccessMixin, ServiceSaveMixin, ModelAdmin):
    view_feature = Feature.CUSTOMERS_VIEW
    edit_feature = Feature.ATTRIBUTES_EDIT

    form = AttributeForm
    list_display = ("name", "id", "data_type", "computation", "path", "unit", "modified")
    list_filter = ("data_type", "computation")
    search_fields = ("id", "name", "path")
    filter_horizontal = ("sources",)

    def get_readonly_fields(self, request: HttpRequest, obj: Attribute | None = None):
        return ("id",) if obj is not None else ()

    def service_create(self, request: HttpRequest, form: Form) -> Attribute:
        data = {name: form.cleaned_data[name] for name in FIELDS if name in form.cleaned_data}
        data["event_types"] = data.get("event_types") or []
        data["sources"] = list(data.get("sources") or [])
        return attribute_create(**data)

    def service_update(self, request: HttpRequest, obj: Attribute, form: Form) -> None:
        fields = changed_model_fields(form, UPDATABLE)
        if "sources" in fields:
            fields["sources"] = list(fields["sources"])
        attribute_update(attribute=Attribute.objects.get(pk=obj.pk), **fields)
