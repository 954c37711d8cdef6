"""Computed attribute definitions: what analysts declare and marketers then see on profiles and in segments."""

from __future__ import annotations

import re

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from unfold.admin import ModelAdmin
from unfold.decorators import action, display
from unfold.widgets import UnfoldAdminSelectWidget, UnfoldAdminTextareaWidget

from cdp.admin.base import (
    FeatureAccessMixin,
    ServiceSaveMixin,
    changed_model_fields,
    delete_each,
    render_confirmation,
)
from cdp.admin.customers import precise_time
from cdp.features import Feature
from cdp.models import Attribute
from cdp.selectors import (
    WAITING_COUNTED,
    attribute_histogram,
    customers_count_estimate,
    customers_waiting_count,
    customers_waiting_since,
)
from cdp.services.attributes import (
    ID_MESSAGE,
    ID_RE,
    PATHLESS,
    attribute_create,
    attribute_data_type_check,
    attribute_delete,
    attribute_update,
    attribute_validate,
    fields_clean,
)
from cdp.values import compound_text

FIELDS = (
    "id", "name", "description", "data_type", "unit", "computation", "category", "sources", "event_types", "path",
    "fields",
)  # fmt: skip
UPDATABLE = tuple(name for name in FIELDS if name != "id")
# The fields the page shows only for some computations and data types (AttributeAdmin.conditional_fields).
CONDITIONAL = ("category", "path", "event_types", "sources", "fields")


class EventTypesField(forms.CharField):
    """Event types one per line, as a person types a list into a text box (a type may hold a comma)."""

    widget = UnfoldAdminTextareaWidget(attrs={"rows": 3})

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list | tuple) else value

    def to_python(self, value) -> list[str]:
        text = super().to_python(value) or ""
        types = [part.strip() for part in re.split(r"[\r\n]+", text)]
        return list(dict.fromkeys(part for part in types if part))


def _category_choices() -> list[tuple[str, str]]:
    from stitching.selectors import categories_list

    return [("", "— none (not identifier values) —")] + [(c.pk, f"{c.name} ({c.pk})") for c in categories_list()]


class AttributeForm(forms.ModelForm):
    event_types = EventTypesField(required=False, help_text="One event type per line. Empty: events of every type.")
    category = forms.TypedChoiceField(
        choices=_category_choices, required=False, empty_value="", widget=UnfoldAdminSelectWidget,
        help_text="The stitching category whose identifiers an identifier-values attribute lists.",
    )  # fmt: skip

    class Meta:
        model = Attribute
        fields = FIELDS
        help_texts = {"sources": "Only events of these sources (none chosen: every source)."}

    def clean(self):
        data = super().clean()
        # What the page hides for this computation and data type (AttributeAdmin.conditional_fields) is not sent
        # on: a category typed before switching away from identifier values would be an error on a hidden field.
        computation, data_type = data.get("computation"), data.get("data_type")
        if computation != Attribute.Computation.IDENTIFIER_VALUES:
            data["category"] = ""
        else:
            data["event_types"], data["sources"] = [], []
        if data_type != Attribute.DataType.COMPOUND:
            data["fields"] = []
        if computation in PATHLESS or data_type == Attribute.DataType.COMPOUND:
            data["path"] = ""
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
                    fields=data.get("fields") or [],
                )
                if not self.instance.pk and "id" in data and not ID_RE.match(data["id"] or ""):
                    raise ValidationError({"id": ID_MESSAGE})
                if self.instance.pk and data.get("data_type") != self.instance.data_type:
                    attribute_data_type_check(attribute=self.instance, data_type=data["data_type"])
                elif self.instance.pk and data.get("data_type") == Attribute.DataType.COMPOUND:
                    fields = fields_clean(data.get("fields") or [])
                    if fields != self.instance.fields:
                        attribute_data_type_check(attribute=self.instance, data_type=data["data_type"], fields=fields)
            except ValidationError as exc:
                raise ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages) from None
        return data


TOP_VALUES_SHOWN = 10


def _waiting_context() -> dict:
    waiting = customers_waiting_count()
    return {
        "attributes_waiting": waiting,
        "attributes_waiting_counted": WAITING_COUNTED,
        "attributes_waiting_since": customers_waiting_since() if waiting else None,
    }


def attribute_values_summary(attribute: Attribute) -> dict:
    """What the attribute's page draws: how many customers have a value, and its values as bars: per month for
    dates and times, in ranges for numbers, else the most frequent ones (counted on a sample of a large customer
    table, as the segment builder's suggestions are)."""
    from segments.builder import value_suggestions

    counts = value_suggestions(attribute=attribute)
    customers = max(customers_count_estimate(), counts["entities_with_value"])  # (a sample's scaled count may pass it)
    T = Attribute.DataType
    if attribute.data_type in (T.DATE, T.DATETIME, T.INT, T.FLOAT):
        histogram = attribute_histogram(attribute=attribute)
        kind, rows, approximate = histogram["kind"], histogram["bars"], histogram["approximate"]
    else:
        kind, approximate = "top", counts["approximate"]
        rows = [
            {"label": _value_label(row["value"], attribute.fields), "count": row["count"]} for row in counts["values"]
        ]
        rows = rows[:TOP_VALUES_SHOWN]
    top = max((row["count"] for row in rows), default=0) or 1
    return {
        "with_value": counts["entities_with_value"],
        "customers": customers,
        "percent": round(100 * counts["entities_with_value"] / customers, 1) if customers else 0,
        "approximate": approximate or counts["approximate"],
        "kind": kind,
        "all_different": kind == "top" and bool(rows) and top == 1,
        "unit": attribute.unit,
        "bars": [{**row, "width": round(100 * row["count"] / top, 1)} for row in rows],
    }


def _value_label(value, fields: list[dict]) -> str:
    if isinstance(value, dict):  # a compound attribute's object
        text = compound_text(value, fields)
    else:
        text = "true" if value is True else "false" if value is False else str(value)
    return text if len(text) <= 80 else text[:79] + "…"


@admin.register(Attribute)
class AttributeAdmin(FeatureAccessMixin, ServiceSaveMixin, ModelAdmin):
    view_feature = Feature.CUSTOMERS_VIEW
    edit_feature = Feature.ATTRIBUTES_EDIT

    form = AttributeForm
    fields = FIELDS  # (the id first on the change page too, where it is read-only)
    # Only the fields that apply to the chosen computation and data type (Unfold's Alpine.js conditions).
    conditional_fields = {
        "category": f"computation == '{Attribute.Computation.IDENTIFIER_VALUES}'",
        "fields": f"data_type == '{Attribute.DataType.COMPOUND}'",
        "path": f"!{sorted(str(c) for c in PATHLESS)}.includes(computation) && data_type != "
        f"'{Attribute.DataType.COMPOUND}'",
        "event_types": f"computation != '{Attribute.Computation.IDENTIFIER_VALUES}'",
        "sources": f"computation != '{Attribute.Computation.IDENTIFIER_VALUES}'",
    }
    list_display = ("name", "id", "data_type", "computation", "path", "unit", "modified_display")
    list_filter = ("data_type", "computation")
    search_fields = ("id", "name", "path")
    filter_horizontal = ("sources",)
    actions = ("attributes_delete",)
    list_before_template = "cdp/admin/attributes_status.html"
    change_form_outer_after_template = "cdp/admin/attribute_values.html"

    class Media:
        css = {"all": ("cdp/attribute_form.css",)}  # the Sources chooser fits the column (see the file)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # Drawn when the page is shown (after the permission checks), not for a POST that saves and redirects.
        if obj is not None and not add and request.method == "GET":
            context["attribute_values"] = attribute_values_summary(obj)
            context.update(_waiting_context())
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        return super().changelist_view(request, {**(extra_context or {}), **_waiting_context()})

    @display(description="Modified", ordering="modified")
    def modified_display(self, obj: Attribute) -> str:
        return precise_time(obj.modified)

    def get_readonly_fields(self, request: HttpRequest, obj: Attribute | None = None):
        return ("id",) if obj is not None else ()

    def service_create(self, request: HttpRequest, form: Form) -> Attribute:
        data = {name: form.cleaned_data[name] for name in FIELDS if name in form.cleaned_data}
        data["event_types"] = data.get("event_types") or []
        data["sources"] = list(data.get("sources") or [])
        data["fields"] = data.get("fields") or []
        return attribute_create(**data)

    def service_update(self, request: HttpRequest, obj: Attribute, form: Form) -> None:
        fields = changed_model_fields(form, UPDATABLE)
        # What the form cleared because the page hides it for the new computation or data type (AttributeForm.clean)
        # was posted unchanged, so it is not among the changed data: the conditional fields go as the form cleaned
        # them (the service changes nothing, and recomputes nobody, for values as stored).
        fields.update({name: form.cleaned_data[name] for name in CONDITIONAL if name in form.cleaned_data})
        if "sources" in fields:
            fields["sources"] = list(fields["sources"])
        if "fields" in fields:
            fields["fields"] = fields["fields"] or []
        attribute_update(attribute=Attribute.objects.get(pk=obj.pk), **fields)
        from segments.builder import value_suggestions_forget

        value_suggestions_forget()  # (this process's cached counts are of the old definition)

    @action(description="Delete selected attributes (and their values)", permissions=["change"], icon="delete")
    def attributes_delete(self, request: HttpRequest, queryset: QuerySet[Attribute]) -> HttpResponse | None:
        attributes = list(queryset)
        if request.POST.get("confirm") != "yes":
            return render_confirmation(
                request,
                self,
                title="Delete attributes?",
                question=f"{len(attributes)} attribute(s) and every customer's values of them will be deleted. "
                "An attribute that segments, export destinations or the Audience API use is kept.",
                details=[f"“{attribute.name}” ({attribute.pk})" for attribute in attributes],
                confirm_label="Delete attributes",
                cancel_url=reverse("admin:cdp_attribute_changelist"),
                hidden=[("action", "attributes_delete")] + [(ACTION_CHECKBOX_NAME, a.pk) for a in attributes],
            )
        # (One still in use stays: the message names what uses it.)
        deleted = delete_each(
            self, request, attributes, lambda a: attribute_delete(attribute=a), name=lambda a: f"“{a.name}”"
        )
        if deleted:
            self.message_user(request, f"{deleted} attribute(s) deleted.", messages.SUCCESS)
        return None
