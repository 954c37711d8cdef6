"""Customer events (read-only, a heavy table) and customer entities."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html, format_html_join
from unfold.admin import ModelAdmin
from unfold.contrib.filters.admin import RangeDateTimeFilter, RelatedDropdownFilter, TextFilter
from unfold.decorators import action, display
from unfold.paginator import InfinitePaginator
from unfold.utils import parse_datetime_str

from cdp.admin.base import FeatureAccessMixin, render_confirmation, user_has_feature
from cdp.admin.profile import customer_name, customer_title, header_identifiers, profile_context
from cdp.features import Feature
from cdp.models import CustomerEntity, CustomerEvent, CustomerEventEntity, DataSource
from cdp.selectors import customers_search, entities_list, events_list
from cdp.services.erasure import ErasureBacklog, entity_erase
from cdp.services.events import HASH_KEY_PREFIX, idempotency_key_of

LATEST_EVENTS_ON_ENTITY = 50
PG_BIGINT_MAX = 2**63 - 1


class EventTypeFilter(TextFilter):
    """Exact event type: a text box, because listing the distinct types would scan the whole table."""

    title = "event type"
    parameter_name = "type"

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = (self.value() or "").strip()
        return queryset.filter(type=value) if value else queryset


class EventTimeRangeFilter(RangeDateTimeFilter):
    """Unfold's date-time range, but aware of the time zone, and a date alone bounds the whole day."""

    def _bound(self, request: HttpRequest, side: str) -> datetime | None:
        date_text = (self.used_parameters.get(f"{self.parameter_name}_{side}_0") or "").strip()
        time_text = (self.used_parameters.get(f"{self.parameter_name}_{side}_1") or "").strip()
        if not date_text:
            return None
        default_time = "00:00:00" if side == "from" else "23:59:59.999999"
        parsed = parse_datetime_str(f"{date_text} {time_text or default_time}")
        if parsed is None:
            messages.warning(request, f"“{date_text} {time_text}” is not a date and time; that bound was ignored.")
            return None
        if side == "to" and time_text and parsed.second == 0 and parsed.microsecond == 0:
            parsed = parsed.replace(second=59, microsecond=999999)  # "to 11:30" includes 11:30:xx
        return timezone.make_aware(parsed) if timezone.is_naive(parsed) else parsed

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        start, end = self._bound(request, "from"), self._bound(request, "to")
        if start is not None:
            queryset = queryset.filter(**{f"{self.field_path}__gte": start})
        if end is not None:
            queryset = queryset.filter(**{f"{self.field_path}__lte": end})
        return queryset


class StitchedFilter(admin.SimpleListFilter):
    title = "stitched to a customer"
    parameter_name = "stitched"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Stitched"), ("no", "Not stitched yet")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(entity_link__customer_entity__isnull=False)
        if self.value() == "no":
            return queryset.filter(entity_link__customer_entity__isnull=True)
        return queryset


class CustomerFilter(admin.SimpleListFilter):
    """One customer's events (?customer_entity=<id>, the profile's "all events" link); shown only when set."""

    title = "customer"
    parameter_name = "customer_entity"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        value = request.GET.get(self.parameter_name)
        return [(value, value)] if value else []

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(entity_link__customer_entity_id=self.value().strip().lower())
        return queryset


def entity_link(entity_id: str | None, title: str | None = None) -> str:
    """A link to the customer's profile, reading `title` (their name or first identifier) when the caller has it,
    else the id (lists of many rows, which do not load every customer)."""
    if not entity_id:
        return "—"
    url = reverse("admin:cdp_customerentity_change", args=[entity_id])
    return format_html('<a class="text-primary-600" href="{}" title="{}">{}</a>', url, entity_id, title or entity_id)


def entity_titles(entity_ids: set[str]) -> dict[str, str]:
    """The customers' names (or first identifiers) by id, in one query; a customer merged away has none."""
    entities = CustomerEntity.objects.filter(pk__in=[pk for pk in entity_ids if pk]).only("id", "attributes")
    return {entity.pk: customer_title(entity) for entity in entities}


def precise_time(value: datetime | None) -> str:
    """Times to the second with the zone: analysts compare events, "noon" or "2:37 a.m." is not enough."""
    if value is None:
        return "—"
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S %Z")


def pretty_json(value: Any) -> str:
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    # Inline style: unfold's compiled stylesheet has no classes for preformatted blocks.
    return format_html(
        '<pre style="white-space: pre-wrap; word-break: break-word; font-family: ui-monospace, monospace; '
        'font-size: 13px; line-height: 1.5; margin: 0;">{}</pre>',
        text,
    )


@admin.register(CustomerEvent)
class CustomerEventAdmin(FeatureAccessMixin, ModelAdmin):
    """Read-only. Built for a table of hundreds of millions of rows: no COUNT(*), no facets, no N+1."""

    view_feature = Feature.CUSTOMERS_VIEW

    list_display = ("event_time_display", "type", "source", "customer_entity_display", "received_display")
    list_select_related = ("source", "entity_link")
    list_filter = (
        ("source", RelatedDropdownFilter),
        EventTypeFilter,
        ("event_time", EventTimeRangeFilter),
        StitchedFilter,
        CustomerFilter,
    )
    list_filter_submit = True
    search_fields = ("idempotency_key",)  # searched by get_search_results, exactly and through indexes
    search_help_text = "An exact event id, or an exact message id / idempotency key."
    # Never count the table: "has a next page" paging, and no "N total" next to filtered results.
    paginator = InfinitePaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    # Only orderings an index serves (event_time); sorting by type or source would sort the whole table.
    sortable_by = ("event_time_display",)
    fields = (
        "event_id",
        "type",
        "event_time_display",
        "source",
        "customer_entity_named",
        "received_display",
        "idempotency_key",
        "identifiers_display",
        "payload_display",
    )
    readonly_fields = fields

    def has_change_permission(self, request: HttpRequest, obj: CustomerEvent | None = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[CustomerEvent]:
        return events_list()

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        # The key of a message id (escaped when it looks generated), or a content-hash key itself ("h:…").
        keys = [idempotency_key_of(term)] + ([term] if term.startswith(HASH_KEY_PREFIX) else [])
        # The idempotency index is (source_id, idempotency_key); naming every source lets PostgreSQL use it
        # instead of scanning, and there are only a handful of sources.
        source_ids = list(DataSource.objects.values_list("id", flat=True))
        condition = Q(source_id__in=source_ids, idempotency_key__in=keys)
        if term.isdigit() and int(term) <= PG_BIGINT_MAX:
            condition |= Q(pk=int(term))
        return queryset.filter(condition), False

    @display(description="Event id")
    def event_id(self, obj: CustomerEvent) -> int:
        return obj.pk

    @display(description="Event time", ordering="event_time")
    def event_time_display(self, obj: CustomerEvent) -> str:
        return precise_time(obj.event_time)

    @display(description="Received")
    def received_display(self, obj: CustomerEvent) -> str:
        return precise_time(obj.created)

    @display(description="Customer")
    def customer_entity_display(self, obj: CustomerEvent) -> str:
        return entity_link(obj.customer_entity_id)

    @display(description="Customer")
    def customer_entity_named(self, obj: CustomerEvent) -> str:
        # One event's page: the customer by name, as the profiles list shows them (the list keeps the id: it does
        # not load fifty customers).
        return entity_link(obj.customer_entity_id, entity_titles({obj.customer_entity_id}).get(obj.customer_entity_id))

    @display(description="Identifiers")
    def identifiers_display(self, obj: CustomerEvent) -> str:
        """What stitching read from the event and what became of each identifier: where a refused link or a held
        hub review's "events it holds" lead, the marketer sees which value was refused, why, and who holds it."""
        from stitching.selectors import event_identifiers

        cell = "padding: 6px 16px 6px 0; vertical-align: top; border-top: 1px solid rgba(127, 127, 127, 0.2);"
        links = list(event_identifiers(event_id=obj.pk)[:200])
        titles = entity_titles({link.identifier.customer_entity_id for link in links})
        rows = format_html_join(
            "",
            '<tr><td style="{0}">{1}</td><td style="{0}; overflow-wrap: anywhere">{2}</td><td style="{0}">{3}{4}</td>'
            '<td style="{0}">{5}</td><td style="{0}">{6}</td></tr>',
            (
                (
                    cell,
                    link.identifier.category.name,
                    link.identifier.value,
                    link.get_status_display(),
                    format_html('<br><small style="opacity: 0.7">{}</small>', link.reason) if link.reason else "",
                    link.rule.path if link.rule else "—",
                    entity_link(link.identifier.customer_entity_id, titles.get(link.identifier.customer_entity_id)),
                )
                for link in links
            ),
        )
        if not rows:
            return "None: no stitching rule read an identifier from this event."
        head = format_html_join(
            "",
            '<th style="text-align: left; padding: 0 16px 6px 0">{}</th>',
            ((name,) for name in ("Category", "Value", "Status", "Read from", "Customer holding it")),
        )
        return format_html(
            '<table style="border-collapse: collapse; width: 100%"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
            head,
            rows,
        )

    @display(description="Payload")
    def payload_display(self, obj: CustomerEvent) -> str:
        return pretty_json(obj.payload)


@admin.register(CustomerEntity)
class CustomerEntityAdmin(FeatureAccessMixin, ModelAdmin):
    """Customer profiles. Read-only here: entities are made and changed by stitching."""

    view_feature = Feature.CUSTOMERS_VIEW

    list_display = ("customer_display", "email_display", "events_display", "last_seen_display", "modified_display")
    list_display_links = ("customer_display",)
    search_fields = ("id",)
    search_help_text = (
        "An email address, phone number, user id or cookie (as stitching normalises them), an exact text value "
        "(a first name, a lifecycle stage), or a customer entity id."
    )
    paginator = InfinitePaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    sortable_by = ("modified_display",)
    fields = ("customer_id", "created_display", "modified_display", "events_count")
    readonly_fields = fields
    # The profile page: header, grouped attributes, identity graph, timeline, merge history (cdp/admin/profile.py).
    change_form_template = "cdp/admin/customer_profile.html"
    actions_detail = ("erase_customer",)

    def has_change_permission(self, request: HttpRequest, obj: CustomerEntity | None = None) -> bool:
        return False

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[CustomerEntity]:
        return entities_list()

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        # The API's customers search: identifiers (normalised per category) and text attribute values, exact. The
        # ids are fetched first: `id IN (subquery) OR id = …` would be planned as a walk of the whole table.
        term = term[:SEARCH_TERM_MAX]
        ids = list(customers_search(q=term).order_by().values_list("pk", flat=True)[:SEARCH_MATCHES_MAX])
        if ENTITY_ID_RE.fullmatch(term):
            ids.append(term.lower())
        return queryset.filter(pk__in=ids), False

    @display(description="Customer")
    def customer_display(self, obj: CustomerEntity) -> str:
        return customer_title(obj)

    @display(description="Email")
    def email_display(self, obj: CustomerEntity) -> str:
        emails = obj.attributes.get("ps_email_address") or []
        return str(emails[0]) + (f" (+{len(emails) - 1})" if len(emails) > 1 else "") if emails else "—"

    @display(description="Events")
    def events_display(self, obj: CustomerEntity) -> str:
        return str((obj.attributes.get("events_count") or ["—"])[0])

    @display(description="Last seen")
    def last_seen_display(self, obj: CustomerEntity) -> str:
        seen = (obj.attributes.get("last_event_time") or [None])[0]
        try:
            parsed = parse_datetime(seen) if isinstance(seen, str) else None
        except ValueError:  # (a value of another shape, e.g. after a definition change)
            parsed = None
        if parsed is None or timezone.is_naive(parsed):
            return str(seen) if seen is not None else "—"
        return precise_time(parsed)

    @display(description="Customer entity id")
    def customer_id(self, obj: CustomerEntity) -> str:
        return obj.pk

    @display(description="First seen")
    def created_display(self, obj: CustomerEntity) -> str:
        return precise_time(obj.created)

    @display(description="Last changed", ordering="modified")
    def modified_display(self, obj: CustomerEntity) -> str:
        return precise_time(obj.modified)

    @display(description="Number of events")
    def events_count(self, obj: CustomerEntity) -> int:
        # One entity's events, counted through the entity index of customer_event_entities: fine on a detail page.
        return CustomerEventEntity.objects.filter(customer_entity_id=obj.pk).count()

    def has_erase_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return user_has_feature(request, Feature.CUSTOMERS_ERASE)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):  # before the merge history below says where an id went
            raise PermissionDenied
        entity = CustomerEntity.objects.filter(pk=str(object_id).lower()).first()
        if entity is None and (gone := _entity_gone(request, str(object_id).lower())) is not None:
            return gone
        extra_context = {**(extra_context or {})}
        if entity is not None:
            extra_context.update(profile_context(entity))
            title = _profile_title(extra_context["profile_identifiers"], entity)
            extra_context.update(
                title=title,
                # The avatar's letter: the first letter or digit of the title (a phone number's, not its "+").
                profile_initial=next((c for c in title if c.isalnum()), "?").upper(),
                # The header's path and the window title name the customer, not its id (which the header's
                # capitalisation made "4B0c…").
                original=_Shown(entity, title),
                subtitle=None,
                all_events_url=reverse("admin:cdp_customerevent_changelist") + f"?customer_entity={entity.pk}",
                changes_url=reverse("admin:stitching_entitychange_changelist") + f"?q={entity.pk}",
                can_erase=self.has_erase_permission(request),
                erase_url=reverse("admin:cdp_customerentity_erase_customer", args=[entity.pk]),
            )
        return super().change_view(request, object_id, form_url, extra_context)

    @action(description="Erase (GDPR)", url_path="erase", permissions=["erase"], icon="delete_forever")
    def erase_customer(self, request: HttpRequest, object_id: str) -> HttpResponse:
        entity = CustomerEntity(pk=str(object_id).lower())
        change_url = reverse("admin:cdp_customerentity_change", args=[entity.pk])
        if request.method != "POST" or request.POST.get("confirm") != "yes":
            entity = get_object_or_404(CustomerEntity, pk=entity.pk)
            events = CustomerEventEntity.objects.filter(customer_entity_id=entity.pk).count()
            # The name the profile shows, so the customer is recognised before the irreversible step.
            name = _profile_title(header_identifiers(entity), entity)
            who = entity.pk if name == f"Customer {entity.pk}" else f"{name} ({entity.pk})"
            return render_confirmation(
                request,
                self,
                title=f"Erase customer {who}?",
                question="Everything this platform holds about the customer is deleted for good (GDPR erasure); "
                "only a record that an erasure happened (when, by whom, how many rows) is kept, without personal "
                "data. This cannot be undone. Deleted:",
                details=[
                    f"{events} event(s) and the identity graph they form, with events received for them that "
                    "are still being processed",
                    "identifiers (emails, phones, ids) no other customer's event carries",
                    "all attribute values",
                    "the email channel's state of their addresses (consent, block reason); a block is kept as a "
                    "digest of the address only",
                ],
                confirm_label="Erase customer",
                cancel_url=change_url,
            )
        try:
            report = entity_erase(entity=entity, user=request.user)
        except CustomerEntity.DoesNotExist:  # erased or merged away since the confirmation
            from stitching.selectors import entity_fate  # lazy: stitching builds on cdp

            fate = entity_fate(entity_id=entity.pk)
            if fate is not None and fate.merged_into:
                messages.error(
                    request,
                    f"Customer {entity.pk} was merged into this customer meanwhile, so nothing was erased: erase "
                    "this one if it is the same person.",
                )
                return HttpResponseRedirect(reverse("admin:cdp_customerentity_change", args=[fate.merged_into]))
            messages.error(request, f"Customer {entity.pk} no longer exists.")
            return HttpResponseRedirect(reverse("admin:cdp_customerentity_changelist"))
        except ErasureBacklog as backlog:
            messages.error(request, str(backlog))
            return HttpResponseRedirect(change_url)
        messages.success(
            request,
            f"Customer {report.customer_entity_id} erased: {report.events} event(s), {report.identifiers} "
            "identifier(s) and the attribute values were deleted.",
        )
        return HttpResponseRedirect(reverse("admin:cdp_customerentity_changelist"))


def _entity_gone(request: HttpRequest, entity_id: str) -> HttpResponse | None:
    """A customer id that no longer exists (a link from the merge history, an old bookmark): to the customer it was
    merged into, or to the list when it was erased, saying so; None when the history does not know the id."""
    from stitching.selectors import entity_fate  # lazy: stitching builds on cdp

    fate = entity_fate(entity_id=entity_id)
    if fate is None:
        return None
    if fate.merged_into is not None and fate.split_into:
        messages.info(
            request,
            f"Customer {entity_id} was merged into this customer, which was split later: its events may be here or "
            f"in customer {', '.join(fate.split_into)}.",
        )
        return HttpResponseRedirect(reverse("admin:cdp_customerentity_change", args=[fate.merged_into]))
    if fate.merged_into is not None:
        messages.info(request, f"Customer {entity_id} was merged into this customer.")
        return HttpResponseRedirect(reverse("admin:cdp_customerentity_change", args=[fate.merged_into]))
    if fate.erased == entity_id:
        messages.warning(request, f"Customer {entity_id} was erased (GDPR).")
    else:
        messages.warning(request, f"Customer {entity_id} was merged into customer {fate.erased}, which was erased.")
    return HttpResponseRedirect(reverse("admin:cdp_customerentity_changelist"))


class _Shown:
    """The customer for the admin's templates, shown by its profile title."""

    def __init__(self, entity: CustomerEntity, title: str) -> None:
        self._entity, self._title = entity, title

    def __getattr__(self, name: str) -> Any:
        return getattr(self._entity, name)

    def __str__(self) -> str:
        return self._title


ENTITY_ID_RE = re.compile(r"[0-9a-fA-F]{32}")
SEARCH_TERM_MAX = 400  # as the API's customers search
SEARCH_MATCHES_MAX = 1000


def _profile_title(identifiers: list[dict[str, Any]], entity: CustomerEntity) -> str:
    """The customer's name if known, else their first main identifier, else the entity id."""
    if name := customer_name(entity):
        return name
    for row in identifiers:
        if row["values"]:
            return row["values"][0]
    return f"Customer {entity.pk}"
