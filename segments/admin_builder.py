"""The visual segment builder and the insights page of the segment admin.

- `ConditionBuilderWidget` replaces the condition tree's JSON textarea: a hidden field holding the tree, drawn and
  edited by segments/static/segments/builder.js (attributes, operators per data type and labels come from
  segments.builder.builder_config(), rendered into the page as JSON so the builder offers what the validator
  accepts). Validation messages of the saved tree are shown on the node their path points at.
- `SegmentBuilderAdminMixin` adds to the segment ModelAdmin: the widget, two admin JSON endpoints the builder calls
  (`builder/count/`: validate and count an unsaved tree; `builder/values/`: value suggestions from the attribute
  value counts, which also need the customers_view feature, as the attribute value counts API does) and the
  "Insights" page (size over time, top values, email consent share as server-side SVG).
"""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.http import require_GET, require_POST
from unfold.decorators import action

from cdp.admin.base import user_has_feature
from cdp.features import Feature
from cdp.models import Attribute
from cdp.values import compound_text
from segments import builder, charts, selectors, services
from segments.conditions import ConditionInvalid

MAX_TREE_BYTES = 512 * 1024
INSIGHT_ATTRIBUTES_MAX = 6
INSIGHT_TOP_VALUES = 10
HISTORY_DAYS = 90
_PATH_MESSAGE = re.compile(r"^(conditions(?:\.[A-Za-z_]+|\[\d+\])*):\s*(.*)$", re.DOTALL)


class ConditionBuilderWidget(forms.Widget):
    """The condition tree as a hidden textarea (its JSON) plus the builder drawn around it by builder.js."""

    template_name = "segments/admin/condition_builder_widget.html"

    class Media:
        css = {"all": ("segments/builder.css",)}
        js = ("segments/builder.js",)

    def __init__(self, attrs=None) -> None:
        super().__init__(attrs)
        self.count_url = ""
        self.values_url = ""
        self.node_errors: list[dict[str, str]] = []

    def format_value(self, value: Any) -> str:
        if value is None or value == "":
            return json.dumps({"operator": "and", "children": []})
        if isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False)

    def get_context(self, name: str, value: Any, attrs: dict | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        context["builder"] = {
            "config": builder.builder_config(),
            "count_url": self.count_url,
            "values_url": self.values_url,
            "errors": self.node_errors,
        }
        return context

    def value_from_datadict(self, data, files, name):
        return data.get(name)


def node_errors(messages: list[str]) -> list[dict[str, str]]:
    """Validation messages "conditions.children[2].value: ..." as [{"path", "message"}] for the builder."""
    found = []
    for text in messages:
        match = _PATH_MESSAGE.match(text)
        if match:
            found.append({"path": match.group(1), "message": match.group(2)})
        else:
            found.append({"path": "conditions", "message": text})
    return found


def _split_messages(messages: list[str]) -> list[str]:
    # The form may join several "path: message" parts with "; ".
    return [part for text in messages for part in re.split(r";\s+(?=conditions[.\[:])", text)]


def builder_form(form_class: type[forms.ModelForm], *, count_url: str, values_url: str) -> type[forms.ModelForm]:
    """The segment form with the builder widget on `conditions` (and the validation paths handed to it)."""

    class BuilderForm(form_class):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            field = self.fields.get("conditions")
            if field is not None:
                field.widget = ConditionBuilderWidget()
                field.widget.count_url, field.widget.values_url = count_url, values_url
                field.help_text = (
                    "Add conditions on customer attributes, group them with AND / OR and negate any of them with NOT. "
                    "The count updates as you edit."
                )

        def clean_conditions(self):
            try:
                return super().clean_conditions()
            except ValidationError as exc:
                errors = node_errors(_split_messages(exc.messages))
                self.fields["conditions"].widget.node_errors = errors
                # The builder outlines each bad node with its message; under the field the marketer reads what to
                # do, not the validator's path ("conditions.children[0].value: ...", which the API's clients get).
                raise ValidationError(
                    [
                        error["message"]
                        if error["path"] == "conditions"
                        else f"Fix the condition outlined in red: {error['message']}"
                        for error in errors
                    ]
                ) from None

    BuilderForm.__name__ = f"Builder{form_class.__name__}"
    return BuilderForm


class SegmentBuilderAdminMixin:
    """Mix into the segment ModelAdmin (before unfold's ModelAdmin): builder widget, its endpoints, insights."""

    actions_detail = ("segment_insights",)
    change_form_template = "segments/admin/segment_change_form.html"

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        extra_context = dict(extra_context or {})
        segment = selectors.segments_visible(user=request.user, trashed=None).filter(pk=_int(object_id)).first()
        if segment is not None:
            extra_context["conditions_summary"] = builder.tree_describe(segment.conditions)
            extra_context["insights_url"] = reverse(
                f"admin:{self.opts.app_label}_{self.opts.model_name}_segment_insights", args=[segment.pk]
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        form = super().get_form(request, obj, change=change, **kwargs)
        if "conditions" not in form.base_fields:
            return form
        info = self.opts.app_label, self.opts.model_name
        return builder_form(
            form,
            count_url=reverse("admin:{}_{}_builder_count".format(*info)),
            values_url=reverse("admin:{}_{}_builder_values".format(*info)),
        )

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view
        return [
            path("builder/count/", wrap(self.builder_count_view), name="{}_{}_builder_count".format(*info)),
            path("builder/values/", wrap(self.builder_values_view), name="{}_{}_builder_values".format(*info)),
        ] + super().get_urls()

    def _builder_allowed(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request) and (
            self.has_add_permission(request) or self.has_change_permission(request)
        )

    def builder_count_view(self, request: HttpRequest) -> HttpResponse:
        """POST {"conditions": tree}: 200 {"status": "ok", "customers_count": n} or 400 with the bad node's path."""
        return require_POST(self._builder_count)(request)

    def _builder_count(self, request: HttpRequest) -> HttpResponse:
        if not self._builder_allowed(request):
            raise PermissionDenied
        if len(request.body) > MAX_TREE_BYTES:
            return _error(f"The conditions are too large (at most {MAX_TREE_BYTES // 1024} KiB).", status=413)
        try:
            body = json.loads(request.body or b"null")
        except (ValueError, UnicodeDecodeError):
            return _error('The body must be JSON: {"conditions": {...}}.')
        if not isinstance(body, dict) or "conditions" not in body:
            return _error('The body must be JSON: {"conditions": {...}}.')
        result = builder.tree_count(body["conditions"])
        return JsonResponse(result, status=200 if result["status"] == "ok" else 400)

    def builder_values_view(self, request: HttpRequest) -> HttpResponse:
        """GET ?attribute=<id>&q=<text>: the attribute's most frequent values (containing q) with their counts."""
        return require_GET(self._builder_values)(request)

    def _builder_values(self, request: HttpRequest) -> HttpResponse:
        # value counts are customer data: the attribute value counts API needs customers_view as well
        if not self._builder_allowed(request) or not user_has_feature(request, Feature.CUSTOMERS_VIEW):
            raise PermissionDenied
        attribute_id = request.GET.get("attribute") or ""
        if not attribute_id:
            return _error("Give the attribute id (?attribute=...).")
        attribute = Attribute.objects.filter(pk=attribute_id).first()
        if attribute is None:
            return _error(f"Unknown attribute {attribute_id[:64]!r}.")
        return JsonResponse(builder.value_suggestions(attribute=attribute, q=request.GET.get("q") or ""))

    @action(description="Insights", url_path="insights", permissions=["view"], icon="monitoring")
    def segment_insights(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Size over time, top values of chosen attributes among the members, share with email consent."""
        segment = selectors.segment_get_visible(user=request.user, segment_id=object_id, trashed=None)
        definitions = {a.pk: a for a in Attribute.objects.order_by("name", "id")}
        # The members' values (emails, names ...) are customer data: shown with customers_view only, as in the API.
        values_allowed = user_has_feature(request, Feature.CUSTOMERS_VIEW)
        chosen = [a for a in request.GET.getlist("attributes") if a in definitions][:INSIGHT_ATTRIBUTES_MAX]
        if not chosen:
            chosen = default_insight_attributes(segment.conditions, definitions)
        if not values_allowed:
            chosen = []
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": segment,
            "title": f"Insights: {segment.name}",
            "segment": segment,
            "change_url": reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[segment.pk]),
            "attribute_choices": [(a.pk, a.name, a.pk in chosen) for a in definitions.values()],
            "values_allowed": values_allowed,
        }
        try:
            count = selectors.segment_members_count(segment=segment)
        except ConditionInvalid as exc:
            context["condition_error"] = f"{exc.path}: {exc.message}"
            return TemplateResponse(request, "segments/admin/insights.html", context)
        services.segment_size_record(segment=segment, size=count)
        history = selectors.segment_size_history(segment=segment, days=HISTORY_DAYS)
        context["customers_count"] = count
        context["customers_count_display"] = f"{count:,}"
        context["size_chart"] = charts.line_chart(
            [(row["day"], row["size"]) for row in history], title=f"Customers in {segment.name} per day"
        )
        context["size_points"] = len(history)
        context["top_values"] = [
            _top_values_chart(segment, definitions[attribute_id], count) for attribute_id in chosen
        ]
        consent = selectors.segment_email_consent_share(segment=segment)
        if consent is not None:
            context["consent"] = consent
            context["consent_chart"] = charts.share_bar(
                consent["with_consent"], consent["customers"], title="Members with email consent"
            )
        return TemplateResponse(request, "segments/admin/insights.html", context)


def _top_values_chart(segment, attribute: Attribute, total: int) -> dict[str, Any]:
    counts = selectors.segment_attribute_value_counts(segment=segment, attribute=attribute, limit=INSIGHT_TOP_VALUES)
    rows = [{"label": _label(row["value"], attribute), "count": row["count"]} for row in counts["values"]]
    return {
        "attribute": attribute,
        "with_value": counts["entities_with_value"],
        "with_value_display": f"{counts['entities_with_value']:,}",
        "chart": charts.bar_chart(rows, total=total, title=f"Top values of {attribute.name}"),
    }


def _label(value: Any, attribute: Attribute) -> str:
    if attribute.data_type == "bool" and isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):  # a compound attribute's object
        return compound_text(value, attribute.fields)
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def default_insight_attributes(tree: Any, definitions: dict[str, Attribute]) -> list[str]:
    """The attributes the segment's conditions use (those with few distinct values first), else the first few
    text and yes / no attributes."""
    used = [a for a in selectors.tree_attributes(tree) if a in definitions]
    order = {"string": 0, "bool": 1, "int": 2, "date": 3, "float": 4, "datetime": 5}
    used.sort(key=lambda a: (order.get(definitions[a].data_type, 9), a))
    if used:
        return used[:4]
    fallback = [a.pk for a in definitions.values() if a.data_type in ("string", "bool")]
    return fallback[:3]


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _error(message: str, *, status: int = 400) -> JsonResponse:
    return JsonResponse({"status": "error", "message": message}, status=status)
