"""Stitching in the Business Explorer: categories, rules, blocked values, refused links, hub reviews and the
merge / split / erase history. Every write goes through stitching.services.config (which re-stitches what a
change affects); access comes from role features (customers_view to look, stitching_edit to change)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.forms import Form
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from unfold.admin import ModelAdmin
from unfold.decorators import action, display
from unfold.paginator import InfinitePaginator

from cdp.admin.base import (
    FeatureAccessMixin,
    ServiceSaveMixin,
    changed_model_fields,
    delete_each,
    render_confirmation,
)
from cdp.admin.customers import entity_link, precise_time, pretty_json
from cdp.features import Feature
from stitching import selectors
from stitching.models import (
    BlockedValue,
    EntityChange,
    EventIdentifier,
    HubReview,
    RefusedLink,
    RestitchCause,
    StitchingCategory,
    StitchingRule,
)
from stitching.services import config
from stitching.services.partition import days_text

CATEGORY_FIELDS = ("name", "normalizer", "max_per_entity", "limit_window_days", "priority")
RULE_FIELDS = ("source", "event_type", "category", "path", "priority")


class StitchingAdmin(FeatureAccessMixin, ModelAdmin):
    view_feature = Feature.CUSTOMERS_VIEW
    edit_feature = Feature.STITCHING_EDIT


def _form_error(form: Form, exc: ValidationError) -> None:
    """Put a service's ValidationError on the form fields it names."""
    for field, errors in (exc.message_dict if hasattr(exc, "error_dict") else {None: exc.messages}).items():
        form.add_error(field if field in form.fields else None, errors)


class CategoryForm(forms.ModelForm):
    class Meta:
        model = StitchingCategory
        fields = ("id", *CATEGORY_FIELDS)

    def clean(self):
        data = super().clean()
        try:
            if self.instance._state.adding and "id" in data:
                config._category_id_validate(data["id"])
            if "name" in data:
                category_id = data.get("id") if self.instance._state.adding else self.instance.pk
                config._name_validate(data["name"], category_id=category_id)
            if "normalizer" in data:  # (else the field has said what is wrong with it)
                config._normalizer_validate(data["normalizer"])
            limit = config._limit_validate(data.get("max_per_entity"))
            if limit is None and "limit_window_days" not in self.changed_data:
                data["limit_window_days"] = None  # as the service does: a limit removed takes its window with it
            config._window_validate(data.get("limit_window_days"), max_per_entity=limit)
        except ValidationError as exc:
            _form_error(self, exc)
        return data


@admin.register(StitchingCategory)
class StitchingCategoryAdmin(ServiceSaveMixin, StitchingAdmin):
    form = CategoryForm
    list_display = ("id", "name", "normalizer", "limit_display", "priority")
    search_fields = ("id", "name")
    actions = ("categories_delete",)

    @action(
        description="Delete selected categories (their identifiers go; re-stitches their customers)",
        permissions=["change"],
        icon="delete",
    )
    def categories_delete(self, request: HttpRequest, queryset: QuerySet[StitchingCategory]) -> HttpResponse | None:
        categories = list(queryset)
        if request.POST.get("confirm") != "yes":
            return render_confirmation(
                request,
                self,
                title="Delete stitching categories?",
                question=f"{len(categories)} categor{'y' if len(categories) == 1 else 'ies'} and their identifiers "
                "will be deleted; the customers they joined are re-stitched, which can split them. A category that "
                "rules or attributes use is kept, saying which.",
                details=[f"{c.name} ({c.pk})" for c in categories],
                confirm_label="Delete categories",
                cancel_url=reverse("admin:stitching_stitchingcategory_changelist"),
                hidden=[("action", "categories_delete")] + [(ACTION_CHECKBOX_NAME, c.pk) for c in categories],
            )
        deleted = delete_each(
            self, request, categories, lambda c: config.category_delete(category=c), name=lambda c: c.name
        )
        if deleted:
            self.message_user(
                request, f"{deleted} categor{'y' if deleted == 1 else 'ies'} deleted; their customers are re-stitched.",
                messages.SUCCESS,
            )  # fmt: skip
        return None

    def get_fields(self, request: HttpRequest, obj: StitchingCategory | None = None):
        return ("id", *CATEGORY_FIELDS) if obj is None else CATEGORY_FIELDS

    def get_readonly_fields(self, request: HttpRequest, obj: StitchingCategory | None = None):
        return () if obj is None else ("id",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[StitchingCategory]:
        return selectors.categories_list()

    @display(description="Limit per customer")
    def limit_display(self, obj: StitchingCategory) -> str:
        if not obj.max_per_entity:
            return "no limit"
        if obj.limit_window_days:
            return f"{obj.max_per_entity} per {days_text(timedelta(days=obj.limit_window_days))}"
        return str(obj.max_per_entity)

    def service_create(self, request: HttpRequest, form: Form) -> StitchingCategory:
        return config.category_create(id=form.cleaned_data["id"], **{f: form.cleaned_data[f] for f in CATEGORY_FIELDS})

    def service_update(self, request: HttpRequest, obj: StitchingCategory, form: Form) -> None:
        config.category_update(category=obj, **changed_model_fields(form, CATEGORY_FIELDS))
        self.message_user(request, "Customers the change can affect are being re-stitched.", messages.INFO)


class RuleForm(forms.ModelForm):
    class Meta:
        model = StitchingRule
        fields = RULE_FIELDS

    def clean(self):
        data = super().clean()
        try:
            if data.get("source") is not None:
                config.rule_source_validate(data["source"])
            if "path" in data:
                data["path"] = config.path_validate(data["path"])
            if "event_type" in data:
                data["event_type"] = config.event_type_validate(data["event_type"])
        except ValidationError as exc:
            _form_error(self, exc)
            return data
        if all(data.get(name) for name in ("source", "category", "path", "event_type")):
            duplicate = StitchingRule.objects.filter(
                source=data["source"], event_type=data["event_type"], category=data["category"], path=data["path"]
            ).exclude(pk=self.instance.pk)
            if duplicate.exists():
                self.add_error("path", "A rule for this source and event type already reads this path.")
        return data


@admin.register(StitchingRule)
class StitchingRuleAdmin(ServiceSaveMixin, StitchingAdmin):
    form = RuleForm
    list_display = ("source", "event_type", "path", "category", "priority")
    list_filter = ("source", "category")
    list_select_related = ("source", "category")
    search_fields = ("path", "event_type")
    fields = RULE_FIELDS
    actions = ("rules_delete",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[StitchingRule]:
        return selectors.rules_list()

    def service_create(self, request: HttpRequest, form: Form) -> StitchingRule:
        return config.rule_create(**{name: form.cleaned_data[name] for name in RULE_FIELDS})

    def service_update(self, request: HttpRequest, obj: StitchingRule, form: Form) -> None:
        original = StitchingRule.objects.get(pk=obj.pk)
        config.rule_update(rule=original, **{name: form.cleaned_data[name] for name in RULE_FIELDS})

    @action(description="Delete selected rules (re-stitches their customers)", permissions=["change"], icon="delete")
    def rules_delete(self, request: HttpRequest, queryset: QuerySet[StitchingRule]) -> HttpResponse | None:
        rules = list(queryset.select_related("source", "category"))
        if request.POST.get("confirm") != "yes":
            return render_confirmation(
                request,
                self,
                title="Delete stitching rules?",
                question=f"{len(rules)} rule(s) will stop reading identifiers; the customers holding the events "
                "they applied to are re-stitched, which can split customers these rules joined.",
                details=[str(rule) for rule in rules],
                confirm_label="Delete rules",
                cancel_url=reverse("admin:stitching_stitchingrule_changelist"),
                hidden=[("action", "rules_delete")] + [(ACTION_CHECKBOX_NAME, r.pk) for r in rules],
            )
        for rule in rules:
            config.rule_delete(rule=rule)
        self.message_user(request, f"{len(rules)} rule(s) deleted; their customers are re-stitched.", messages.SUCCESS)
        return None


class BlockedValueForm(forms.ModelForm):
    class Meta:
        model = BlockedValue
        fields = ("category", "value", "reason")
        help_texts = {
            "value": "Normalised like the category's identifiers (e-mail addresses lower-cased, phones to E.164); "
            "with no category, matched as each category normalises it.",
            "reason": "Why: shown to colleagues and kept with the block, e.g. 'shared team inbox'.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "category" in self.fields:
            self.fields["category"].empty_label = "Every category"
            self.fields["category"].help_text = "Empty: the value is blocked for every category."

    def clean(self):
        data = super().clean()
        if "value" in data:
            try:
                normalised = config.value_normalize(category=data.get("category"), value=data["value"])
            except ValidationError as exc:
                _form_error(self, exc)
                return data
            if BlockedValue.objects.filter(category=data.get("category"), value=normalised).exists():
                self.add_error("value", f"{normalised!r} is already blocked.")
        return data


@admin.register(BlockedValue)
class BlockedValueAdmin(ServiceSaveMixin, StitchingAdmin):
    form = BlockedValueForm
    list_display = ("value_display", "category_display", "reason", "created_by", "created_display")
    list_filter = ("category",)
    list_select_related = ("category", "created_by")
    search_fields = ("value", "reason")
    search_help_text = "A blocked value (normalised) or words of the reason."
    actions = ("values_unblock",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[BlockedValue]:
        return selectors.blocked_values_list()

    def get_fields(self, request: HttpRequest, obj: BlockedValue | None = None):
        return ("category", "value", "reason") if obj is None else ("category", "value", "reason", "created_by")

    def has_change_permission(self, request: HttpRequest, obj: BlockedValue | None = None) -> bool:
        # Blocks are added and removed, not edited: the value decided what was split.
        return obj is None and super().has_change_permission(request, obj)

    @display(description="Value", ordering="value")
    def value_display(self, obj: BlockedValue) -> str:
        if len(obj.value) <= 60:
            return obj.value
        return format_html('<span title="{}">{}…</span>', obj.value, obj.value[:59])

    @display(description="Category")
    def category_display(self, obj: BlockedValue) -> str:
        return obj.category.name if obj.category else "every category"

    @display(description="Blocked", ordering="created")
    def created_display(self, obj: BlockedValue) -> str:
        return precise_time(obj.created)

    def service_create(self, request: HttpRequest, form: Form) -> BlockedValue:
        data = form.cleaned_data
        return config.blocked_value_add(
            category=data.get("category"), value=data["value"], reason=data.get("reason", ""), user=request.user
        )

    def response_add(self, request, obj, post_url_continue=None):
        # One message (not Django's "was added successfully" too), and back to the list: a block is not edited.
        self.message_user(request, f"“{obj.value}” is blocked; customers it joined are re-stitched.", messages.SUCCESS)
        if "_addanother" in request.POST:
            return HttpResponseRedirect(request.path)
        return HttpResponseRedirect(reverse("admin:stitching_blockedvalue_changelist"))

    @action(description="Unblock selected values", permissions=["change"], icon="lock_open")
    def values_unblock(self, request: HttpRequest, queryset: QuerySet[BlockedValue]) -> HttpResponse | None:
        values = list(queryset.select_related("category"))
        if request.POST.get("confirm") != "yes":
            return render_confirmation(
                request,
                self,
                title="Unblock values?",
                question=f"Events carrying these {len(values)} value(s) may link customers again; they are "
                "re-stitched now.",
                details=[f"{v.value} ({v.category.name if v.category else 'every category'})" for v in values],
                confirm_label="Unblock",
                cancel_url=reverse("admin:stitching_blockedvalue_changelist"),
                hidden=[("action", "values_unblock")] + [(ACTION_CHECKBOX_NAME, v.pk) for v in values],
            )
        # Who unblocked what, in the admin's history (a block's own row records who added it).
        self.log_deletions(request, queryset.filter(pk__in=[v.pk for v in values]))
        for value in values:
            config.blocked_value_remove(blocked_value=value, user=request.user)
        self.message_user(request, f"{len(values)} value(s) unblocked.", messages.SUCCESS)
        return None


class RefusedStatusFilter(admin.SimpleListFilter):
    title = "reason"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [c for c in EventIdentifier.Status.choices if c[0] != EventIdentifier.Status.LINKED]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(status=self.value()) if self.value() else queryset


class IdentifierCategoryFilter(admin.SimpleListFilter):
    title = "identifier category"
    parameter_name = "category"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(c.pk, c.name) for c in selectors.categories_list()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(identifier__category_id=self.value()) if self.value() else queryset


@admin.register(RefusedLink)
class RefusedLinkAdmin(StitchingAdmin):
    """Identifiers events carried that were not allowed to link, with the reason. Read-only."""

    # Newest refusals first (a re-stitch refuses links of old events: the event's time is a column, not the order).
    list_display = ("identifier_display", "status", "reason", "event_time_display", "customer_display", "event_link")
    list_filter = (RefusedStatusFilter, IdentifierCategoryFilter)
    paginator = InfinitePaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    sortable_by = ()
    search_fields = ("identifier__value",)
    search_help_text = "An identifier value, as any category normalises it (an email in any case, a phone number)."

    def get_queryset(self, request: HttpRequest) -> QuerySet[EventIdentifier]:
        return selectors.refused_links_list()

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        term = search_term.strip()
        if not term:
            return queryset, False
        # As each category stores its values: "Ann@Example.com" finds the email ann@example.com.
        return queryset.filter(selectors.identifier_value_condition(term)), False

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        return super().changelist_view(request, {**(extra_context or {}), "title": "Refused links, newest first"})

    @display(description="Event time")
    def event_time_display(self, obj: EventIdentifier) -> str:
        return precise_time(obj.event.event_time)

    @display(description="Identifier")
    def identifier_display(self, obj: EventIdentifier) -> str:
        return f"{obj.identifier.category.name}: {obj.identifier.value}"

    @display(description="Customer of the event")
    def customer_display(self, obj: EventIdentifier) -> str:
        return entity_link(obj.event.customer_entity_id)

    @display(description="Event")
    def event_link(self, obj: EventIdentifier) -> str:
        url = reverse("admin:cdp_customerevent_change", args=[obj.event_id])
        return format_html('<a class="text-primary-600" href="{}">{} #{}</a>', url, obj.event.type, obj.event_id)


@admin.register(HubReview)
class HubReviewAdmin(StitchingAdmin):
    """Identifiers that would suddenly join many customers, held until someone decides."""

    list_display = ("identifier_display", "customers_display", "status", "decided_by", "created_display")
    list_filter = ("status",)
    list_select_related = ("identifier", "identifier__category", "decided_by")
    fields = (
        "identifier_display", "customers_display", "held_links", "status", "decided_by", "decided_display",
        "created_display",
    )  # fmt: skip
    readonly_fields = fields
    actions = ("reviews_approve", "reviews_block")
    actions_detail = ("review_approve", "review_block")

    def get_queryset(self, request: HttpRequest) -> QuerySet[HubReview]:
        return selectors.hub_reviews_list()

    def get_ordering(self, request: HttpRequest):
        # (The change list orders by this and the model's ordering, not by the queryset's order.)
        return selectors.HUB_REVIEWS_ORDER

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        # Nothing on the page is edited: the decision is the Approve / Block actions.
        extra = {"show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False}
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    @display(description="Customers it would join", ordering="entity_count")
    def customers_display(self, obj: HubReview) -> int:
        return obj.entity_count

    @display(description="Held events")
    def held_links(self, obj: HubReview) -> str:
        query = {"q": obj.identifier.value, "category": obj.identifier.category_id, "status": "held"}
        url = reverse("admin:stitching_refusedlink_changelist") + "?" + urlencode(query)
        return format_html('<a class="text-primary-600" href="{}">The events whose links it holds →</a>', url)

    @display(description="Decided")
    def decided_display(self, obj: HubReview) -> str:
        return precise_time(obj.decided)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_decide_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj)

    def get_actions_detail(self, request: HttpRequest, object_id: Any) -> list:
        """The Approve / Block buttons of one review only while it is pending (a decided one says how it was
        decided). Their URLs stay: a page left open meanwhile gets "already decided", not a 403."""
        actions = super().get_actions_detail(request, object_id)
        if (
            str(object_id).isdigit()
            and not HubReview.objects.filter(pk=object_id, status=HubReview.Status.PENDING).exists()
        ):
            return []
        return actions

    @display(description="Identifier")
    def identifier_display(self, obj: HubReview) -> str:
        return f"{obj.identifier.category.name}: {obj.identifier.value}"

    @display(description="Held", ordering="created")
    def created_display(self, obj: HubReview) -> str:
        return precise_time(obj.created)

    def _decide(self, request: HttpRequest, reviews: list[HubReview], approve: bool) -> int:
        done = 0
        for review in reviews:
            try:
                config.hub_review_decide(review=review, approve=approve, user=request.user)
                done += 1
            except ValidationError as exc:
                self.message_user(request, f"{review.identifier.value}: {' '.join(exc.messages)}", messages.WARNING)
        return done

    def _confirm_many(self, request, queryset, approve: bool, name: str) -> HttpResponse | None:
        reviews = list(queryset.filter(status=HubReview.Status.PENDING).select_related("identifier__category"))
        verb = "Approve" if approve else "Block"
        if request.POST.get("confirm") != "yes":
            return render_confirmation(
                request,
                self,
                title=f"{verb} held identifiers?",
                question=_decision_question(approve, len(reviews)),
                details=[
                    f"{r.identifier.category.name}: {r.identifier.value} ({r.entity_count} customers)" for r in reviews
                ],  # fmt: skip
                confirm_label=verb,
                cancel_url=reverse("admin:stitching_hubreview_changelist"),
                hidden=[("action", name)] + [(ACTION_CHECKBOX_NAME, r.pk) for r in reviews],
                danger=approve,
            )
        done = self._decide(request, reviews, approve)
        self.message_user(
            request, f"{done} review(s) decided: {'approved' if approve else 'blocked'}.", messages.SUCCESS
        )
        return None

    @action(description="Approve: let them link", permissions=["decide"], icon="link")
    def reviews_approve(self, request: HttpRequest, queryset: QuerySet[HubReview]) -> HttpResponse | None:
        return self._confirm_many(request, queryset, True, "reviews_approve")

    @action(description="Block their values", permissions=["decide"], icon="block")
    def reviews_block(self, request: HttpRequest, queryset: QuerySet[HubReview]) -> HttpResponse | None:
        return self._confirm_many(request, queryset, False, "reviews_block")

    def _confirm_one(self, request: HttpRequest, object_id: str, approve: bool) -> HttpResponse:
        if not str(object_id).isdigit():  # (a review's id is a number: anything else names none)
            raise Http404("No such hub review.")
        review = get_object_or_404(selectors.hub_reviews_list(), pk=object_id)
        change_url = reverse("admin:stitching_hubreview_change", args=[review.pk])
        verb = "Approve" if approve else "Block"
        if request.method != "POST" or request.POST.get("confirm") != "yes":
            return render_confirmation(
                request,
                self,
                title=f"{verb} {review.identifier.category.name} “{review.identifier.value}”?",
                question=_decision_question(approve, 1),
                details=[f"It would join {review.entity_count} customers."],
                confirm_label=verb,
                cancel_url=change_url,
                danger=approve,
            )
        if self._decide(request, [review], approve):
            done = "approved" if approve else "blocked"
            self.message_user(request, f"Decided: {done}. The customers are re-stitched.", messages.SUCCESS)
        return HttpResponseRedirect(change_url)

    @action(description="Approve: let it link", url_path="approve", permissions=["decide"], icon="link")
    def review_approve(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._confirm_one(request, object_id, True)

    @action(description="Block the value", url_path="block", permissions=["decide"], icon="block")
    def review_block(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._confirm_one(request, object_id, False)


def _decision_question(approve: bool, count: int) -> str:
    if approve:
        return (
            f"{count} identifier(s) will be allowed to link every customer they appear on: those customers merge "
            "into one. Do this only for a genuinely shared identity, never for a shared device or test value."
        )
    return f"{count} value(s) will be blocked: they never link customers again (you can unblock them later)."


OTHERS_SHOWN = 3  # other customers listed on a merge or split; the rest counted
NEW_EVENT = "event"  # the "why" of a merge an incoming event made (no recorded cause)


class ChangeCauseFilter(admin.SimpleListFilter):
    title = "why"
    parameter_name = "cause"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(NEW_EVENT, "a new event linked them"), *RestitchCause.choices]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == NEW_EVENT:
            return queryset.filter(kind=EntityChange.Kind.MERGE).exclude(detail__has_key="cause")
        return queryset.filter(detail__cause=self.value()) if self.value() else queryset


@admin.register(EntityChange)
class EntityChangeAdmin(FeatureAccessMixin, ModelAdmin):
    """Merge, split and erasure history. Read-only."""

    view_feature = Feature.CUSTOMERS_VIEW
    list_display = ("created_display", "kind", "customer_display", "others_display", "event_display", "cause_display")
    list_select_related = ("event", "identifier", "identifier__category")
    list_filter = ("kind", ChangeCauseFilter)
    search_fields = ("customer_entity_id",)
    search_help_text = "An exact customer entity id: the changes it took part in (merged into, split off, erased)."
    paginator = InfinitePaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    fields = (
        "created_display", "kind", "customer_display", "others_all_display", "event_display", "identifier_display",
        "cause_display", "detail_display",
    )  # fmt: skip
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[EntityChange]:
        return selectors.entity_changes_list()

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        term = search_term.strip().lower()
        if not term:
            return queryset, False
        return queryset.filter(selectors.entity_changes_of(term)), False

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @display(description="When", ordering="created")
    def created_display(self, obj: EntityChange) -> str:
        return precise_time(obj.created)

    @display(description="Customer")
    def customer_display(self, obj: EntityChange) -> str:
        return entity_link(obj.customer_entity_id) if obj.kind != EntityChange.Kind.ERASE else obj.customer_entity_id

    @display(description="Other customers")
    def others_display(self, obj: EntityChange) -> str:
        """Every one on the detail page; the first OTHERS_SHOWN and how many more in the list."""
        return self._others(obj, limit=OTHERS_SHOWN)

    @display(description="Other customers")
    def others_all_display(self, obj: EntityChange) -> str:
        return self._others(obj, limit=None)

    def _others(self, obj: EntityChange, *, limit: int | None) -> str:
        others = obj.other_entity_ids or []
        if not others:
            return "—"
        shown = format_html_join(", ", "{}", ((entity_link(pk),) for pk in others[:limit]))
        if limit is None or len(others) <= limit:
            return shown
        return format_html("{} and {} more", shown, len(others) - limit)

    @display(description="Event")
    def event_display(self, obj: EntityChange) -> str:
        if obj.event_id is None:
            return "—"
        url = reverse("admin:cdp_customerevent_change", args=[obj.event_id])
        label = f"{obj.event.type} #{obj.event_id}" if obj.event else f"#{obj.event_id}"
        return format_html('<a class="text-primary-600" href="{}">{}</a>', url, label)

    @display(description="Identifier")
    def identifier_display(self, obj: EntityChange) -> str:
        if obj.identifier is None:
            return "—"
        return f"{obj.identifier.category.name}: {obj.identifier.value}"

    @display(description="Why")
    def cause_display(self, obj: EntityChange) -> str:
        return obj.cause_label or ("a new event linked them" if obj.kind == EntityChange.Kind.MERGE else "—")

    @display(description="Details")
    def detail_display(self, obj: EntityChange) -> str:
        return pretty_json(obj.detail)
