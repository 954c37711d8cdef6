"""What the customer profile page shows: the main identifiers, attributes grouped the way a marketer thinks of
them, the events timeline, the identity graph (as JSON for the drawing script) and the merge history.
All reads are bounded, so a customer with a million events opens as fast as one with ten."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from cdp.models import Attribute, CustomerEntity, CustomerEvent
from cdp.values import compound_text

if TYPE_CHECKING:
    from stitching.models import EntityChange

TIMELINE_EVENTS = 50
GRAPH_EVENTS = 150
HISTORY_ROWS = 20
IDENTIFIERS_SHOWN = 5  # per category in the header ("+N more" after them)
HEADER_CATEGORIES = (("user_id", "User id"), ("email", "Email"), ("phone", "Phone"))
REVENUE_WORDS = re.compile(r"revenue|order|price|spent|spend|purchase|value", re.IGNORECASE)
CURRENCIES = {"EUR", "USD", "GBP", "CZK", "PLN", "CHF", "SEK", "NOK", "DKK", "HUF", "JPY", "CAD", "AUD"}
ACTIVITY_COMPUTATIONS = {"count", "first_event_time", "last_event_time"}
GROUPS = (("identifiers", "Identifiers"), ("activity", "Activity"), ("revenue", "Revenue"), ("other", "Other"))


@dataclass
class AttributeRow:
    id: str
    name: str
    description: str
    values: list[str]
    unit: str = ""

    @property
    def shown(self) -> list[tuple[str, str]]:
        """Each value with its unit, in the singular after a 1 ("1 order", "2 orders")."""
        return [(value, unit_for(value, self.unit)) for value in self.values]


def unit_for(value: str, unit: str) -> str:
    """A plural unit in English words (orders, views) in the singular after exactly 1; currencies and symbols as
    they are."""
    if value == "1" and unit.islower() and unit.isalpha() and unit.endswith("s") and not unit.endswith("ss"):
        return unit[:-1]
    return unit


@dataclass
class AttributeGroup:
    key: str
    title: str
    rows: list[AttributeRow] = field(default_factory=list)


def attribute_group(attribute: Attribute) -> str:
    if attribute.computation == Attribute.Computation.IDENTIFIER_VALUES:
        return "identifiers"
    if attribute.unit.upper() in CURRENCIES or (
        attribute.data_type in ("int", "float", "datetime") and REVENUE_WORDS.search(f"{attribute.id} {attribute.name}")
    ):
        return "revenue"
    if attribute.computation in ACTIVITY_COMPUTATIONS:
        return "activity"
    return "other"


def value_format(value: Any, data_type: str) -> str:
    try:
        return _value_format(value, data_type)
    except (OverflowError, ValueError):
        # A value at the edge of what events may hold (year 1 or 9999 moved into the display time zone, 1e999
        # stored as a 1000-digit number) is shown as stored.
        return str(value)


def _value_format(value: Any, data_type: str) -> str:
    if value is None:
        return "—"
    if data_type == "datetime" and isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is not None:
            return timezone.localtime(parsed).strftime("%Y-%m-%d %H:%M %Z") if timezone.is_aware(parsed) else value
    if data_type == "bool":
        return "yes" if value else "no"
    if data_type == "float" and isinstance(value, int | float):
        return f"{value:,.2f}"
    if data_type == "int" and isinstance(value, int | float):
        return f"{int(value):,}"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def compound_format(value: Any, fields: list[dict]) -> str:
    """A compound value (an object of its fields) in one line, each field named and formatted by its type."""
    if not isinstance(value, dict):
        return value_format(value, "string")
    types = {f["id"]: f["data_type"] for f in fields}
    return compound_text({k: value_format(v, types.get(k, "string")) for k, v in value.items()}, fields)


def attribute_groups(entity: CustomerEntity) -> list[AttributeGroup]:
    """Attributes with a value, grouped; values of attributes without a definition (yet) go to Other."""
    stored: dict[str, Any] = entity.attributes or {}
    groups = {key: AttributeGroup(key, title) for key, title in GROUPS}
    definitions = {a.id: a for a in Attribute.objects.all()}
    for attribute_id in sorted(stored, key=lambda a: (definitions[a].name if a in definitions else a).lower()):
        values = stored[attribute_id]
        values = values if isinstance(values, list) else [values]
        if not values:
            continue
        definition = definitions.get(attribute_id)
        data_type = definition.data_type if definition else "string"
        rows = groups[attribute_group(definition) if definition else "other"].rows
        rows.append(
            AttributeRow(
                id=attribute_id,
                name=definition.name if definition else attribute_id,
                description=definition.description if definition else "",
                values=[
                    compound_format(v, definition.fields) if data_type == "compound" else value_format(v, data_type)
                    for v in values
                ],
                unit="" if definition is None or definition.unit.upper() in {"EVENTS"} else definition.unit,
            )
        )
    return [group for group in groups.values() if group.rows]


def customer_name(entity: CustomerEntity) -> str:
    """The customer's first and last name from their attributes ("" when unknown)."""
    names = [entity.attributes.get(key, [None])[0] for key in ("first_name", "last_name")]
    return " ".join(str(n) for n in names if n)


def customer_title(entity: CustomerEntity) -> str:
    """The customer's name, else their first email, phone or user id (from the attributes), else the entity id."""
    if name := customer_name(entity):
        return name
    for key in ("ps_email_address", "ps_phone", "ps_user_id"):
        if entity.attributes.get(key):
            return str(entity.attributes[key][0])
    return entity.pk


def header_identifiers(entity: CustomerEntity) -> list[dict[str, Any]]:
    """The customer's identifiers of the main categories (user id, email, phone), first seen first."""
    from stitching.models import Identifier

    identifiers = (
        Identifier.objects.filter(customer_entity=entity)
        .select_related("category")
        .order_by("-category__priority", "category_id", "first_seen", "id")[:200]
    )
    by_category: dict[str, dict[str, Any]] = {}
    for identifier in identifiers:
        row = by_category.setdefault(
            identifier.category_id,
            {"category": identifier.category_id, "name": identifier.category.name, "values": [], "more": 0},
        )
        if len(row["values"]) < IDENTIFIERS_SHOWN:
            row["values"].append(identifier.value)
        else:
            row["more"] += 1  # (of the first 200 identifiers: the chip says "+N more", the Identifiers card has all)
    main = [by_category.pop(cid) for cid, _ in HEADER_CATEGORIES if cid in by_category]
    return main + list(by_category.values())


def timeline(entity: CustomerEntity) -> list[CustomerEvent]:
    """The newest events, each with `payload_text` (pretty JSON for the expandable payload) and `label` (what a
    system event records, in words; empty for the customer's own events)."""
    from emails.services.setup import SOURCE_SLUG as EMAILS_SOURCE_SLUG  # lazy: emails builds on cdp
    from emails.services.state import EVENT_NAMES as EMAIL_EVENT_NAMES
    from stitching.services.engine import MERGED_EVENT_TYPE, SPLIT_EVENT_TYPE, SYSTEM_SOURCE_SLUG

    events = list(
        CustomerEvent.objects.filter(entity_link__customer_entity_id=entity.pk)
        .select_related("source")
        .order_by("-event_time", "-id")[:TIMELINE_EVENTS]
    )
    system_labels = {MERGED_EVENT_TYPE: "Customers merged", SPLIT_EVENT_TYPE: "Customer split"}
    for event in events:
        event.payload_text = json.dumps(event.payload, indent=2, sort_keys=True, ensure_ascii=False)
        # The platform's own records of merges and splits read as what happened, not as an event type; so do the
        # Segment spec's calls (page, screen, identify, ...), next to the named track events ("Order Completed").
        if event.source.slug == SYSTEM_SOURCE_SLUG:
            event.label = system_labels.get(event.type, event.type)
        elif event.source.slug == EMAILS_SOURCE_SLUG:
            # The email channel's records by the names its documentation gives them ("Email Subscription
            # Confirmed"), not as their stored types ("subscription_confirmed").
            event.label = EMAIL_EVENT_NAMES.get(event.type, "")
        else:
            event.label = segment_call_label(event.type, event.payload)
    return events


SEGMENT_CALLS = {"page": "Page viewed", "screen": "Screen viewed", "identify": "Identified", "group": "Joined a group",
                 "alias": "Alias added"}  # fmt: skip


def segment_call_label(type_: str, payload: Any) -> str:
    """A Segment spec call in words, with the page's path or the screen's name when the payload has it ("Page
    viewed · /sale"); "" for any other event type (shown as it is)."""
    label = SEGMENT_CALLS.get(type_, "")
    if not label or not isinstance(payload, dict):
        return label
    properties = payload.get("properties") if isinstance(payload.get("properties"), dict) else {}
    context = payload.get("context") if isinstance(payload.get("context"), dict) else {}
    page = context.get("page") if isinstance(context.get("page"), dict) else {}
    if type_ == "page":
        detail = properties.get("path") or page.get("path")
    elif type_ == "screen":
        detail = payload.get("name") or properties.get("name")
    else:
        detail = None
    return f"{label} · {str(detail)[:80]}" if isinstance(detail, str | int) and detail != "" else label


def history(entity: CustomerEntity, category_names: dict[str, str]) -> list[EntityChange]:
    """The latest merges and splits the customer took part in, each with `others` (the other customers involved,
    seen from this one: a customer it was split off from is the row's own entity) and `category_name` (the
    stitching category of the identifier that merged or split them)."""
    from stitching.selectors import entity_changes_list

    changes = list(entity_changes_list(entity_id=entity.pk)[:HISTORY_ROWS])
    for change in changes:
        involved = [change.customer_entity_id, *(change.other_entity_ids or [])]
        change.others = [pk for pk in dict.fromkeys(involved) if pk != entity.pk]
        category = (change.detail or {}).get("identifier_category")
        change.category_name = category_names.get(category, category) if category else ""
    # The other customers that still exist by their names (a split-off customer, say), linked; the ones merged
    # away by their ids. One query for the whole history.
    others = {pk for change in changes for pk in change.others}
    titles = {e.pk: customer_title(e) for e in CustomerEntity.objects.filter(pk__in=others).only("id", "attributes")}
    for change in changes:
        change.others_shown = [{"id": pk, "title": titles.get(pk), "exists": pk in titles} for pk in change.others]
    return changes


def profile_context(entity: CustomerEntity) -> dict[str, Any]:
    from stitching.models import StitchingCategory
    from stitching.selectors import identity_graph

    graph = identity_graph(entity.pk, limit=GRAPH_EVENTS)
    categories = StitchingCategory.objects.order_by("-priority", "id").values_list("id", "name")
    graph["categories"] = [{"id": cid, "name": name} for cid, name in categories]
    # The drawing script shows times in the admin's display time zone, as the rest of the page does.
    graph["timezone"] = timezone.get_current_timezone_name()
    counts = graph["counts"]
    events = timeline(entity)
    return {
        "profile_identifiers": header_identifiers(entity),
        "profile_groups": attribute_groups(entity),
        "profile_timeline": events,
        "latest_events": events,
        "profile_timeline_limit": TIMELINE_EVENTS,
        "profile_graph": graph,
        "profile_refused_only": any(edge["status"] != "linked" for edge in graph["edges"]),
        "profile_changes": history(entity, {c["id"]: c["name"] for c in graph["categories"]}),
        "profile_event_count": counts["events"],  # (the graph's count leaves the system events out)
        "profile_last_event": _event_time(entity, "-event_time"),
        "profile_first_seen": _event_time(entity, "event_time"),
    }


def _event_time(entity: CustomerEntity, order: str) -> datetime | None:
    """The customer's first or last event time; merges and splits (system events) are not the customer's activity."""
    from stitching.services.engine import SYSTEM_SOURCE_SLUG

    events = CustomerEvent.objects.filter(entity_link__customer_entity_id=entity.pk).exclude(
        source__slug=SYSTEM_SOURCE_SLUG
    )
    return events.order_by(order).values_list("event_time", flat=True).first()
