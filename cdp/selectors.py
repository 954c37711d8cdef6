"""Reads. Return QuerySets; the API, admin and exports share them (and the FilterSets in cdp.filters)."""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Count, Max, Min, Q, QuerySet

from cdp.models import (
    ApiToken,
    Attribute,
    CustomerEntity,
    CustomerEvent,
    DataSource,
    GlobalSettingChange,
    Role,
    StaleEntity,
    User,
)


def events_list() -> QuerySet[CustomerEvent]:
    return CustomerEvent.objects.select_related("source", "entity_link__customer_entity").order_by("-event_time", "-id")


def entities_list() -> QuerySet[CustomerEntity]:
    return CustomerEntity.objects.order_by("-modified", "-id")


def data_sources_list() -> QuerySet[DataSource]:
    return DataSource.objects.order_by("-created", "-id")


def users_list() -> QuerySet[User]:
    return User.objects.select_related("role").order_by("-date_joined", "-id")


def roles_list() -> QuerySet[Role]:
    return Role.objects.order_by("-created", "-id")


def tokens_list(*, user: User) -> QuerySet[ApiToken]:
    """A user's own tokens; a user administrator sees everyone's."""
    qs = ApiToken.objects.select_related("user").order_by("-created", "-id")
    return qs if user.has_feature("users_admin") else qs.filter(user=user)


def global_setting_changes_list() -> QuerySet[GlobalSettingChange]:
    return GlobalSettingChange.objects.select_related("changed_by").order_by("-changed", "-id")


# --- customer profile ------------------------------------------------------------------------------------------


def attributes_list() -> QuerySet[Attribute]:
    return Attribute.objects.prefetch_related("sources").order_by("name", "id")


def entity_events_list(*, entity_id: str) -> QuerySet[CustomerEvent]:
    """One customer's events, newest first (found through the entity index of customer_event_entities)."""
    return events_list().filter(entity_link__customer_entity_id=entity_id)


def entity_event_counts(*, entity_id: str) -> dict[str, Any]:
    """A customer's events counted per source and type (one query), with per-source, per-type and total sums. The
    system events stitching records on the customer (merges, splits) are bookkeeping, not activity: they are
    counted apart (`system_events`), so `total` is what the profile and the events-count attribute say."""
    from stitching.services.engine import SYSTEM_SOURCE_SLUG  # lazy: stitching builds on cdp

    rows = list(
        CustomerEvent.objects.filter(entity_link__customer_entity_id=entity_id)
        .values("source_id", "source__slug", "type")
        .annotate(count=Count("id"), first_event_time=Min("event_time"), last_event_time=Max("event_time"))
        .order_by("source__slug", "type")
    )
    system_events = sum(row["count"] for row in rows if row["source__slug"] == SYSTEM_SOURCE_SLUG)
    rows = [row for row in rows if row["source__slug"] != SYSTEM_SOURCE_SLUG]
    by_source: dict[int, dict[str, Any]] = {}
    by_type: dict[str, int] = {}
    for row in rows:
        source = by_source.setdefault(
            row["source_id"], {"source": row["source_id"], "slug": row["source__slug"], "count": 0}
        )
        source["count"] += row["count"]
        by_type[row["type"]] = by_type.get(row["type"], 0) + row["count"]
    return {
        "total": sum(row["count"] for row in rows),
        "system_events": system_events,
        "by_source": sorted(by_source.values(), key=lambda s: (-s["count"], s["slug"])),
        "by_type": [{"type": t, "count": c} for t, c in sorted(by_type.items(), key=lambda item: (-item[1], item[0]))],
        "by_source_and_type": [
            {
                "source": row["source_id"],
                "slug": row["source__slug"],
                "type": row["type"],
                "count": row["count"],
                "first_event_time": row["first_event_time"],
                "last_event_time": row["last_event_time"],
            }
            for row in rows
        ],
    }


# Identifier matches considered by one search (a junk value could match many customers: enough for a page).
SEARCH_IDENTIFIER_MATCHES = 1000


def customers_search(*, q: str | None = None, attribute: Attribute | None = None, value: Any = None) -> QuerySet:
    """Customers with an identifier or a text attribute value equal to `q` (each category's normaliser applied
    to `q` first) and, given both, with `value` among the values of `attribute` (a typed JSON value): a filter
    added narrows the result, as a client expects. Neither given: none.

    Text values match as typed or as a name is written ("sofia" finds Sofia, "SOFIA" too), and several words
    (at most SEARCH_WORDS_MAX) find the customers with each of them as a value ("sofia pokorny": a first and a
    last name). Exact values only: every match is answered by the identifier unique index or the GIN index on
    attributes, never by a scan; at most SEARCH_IDENTIFIER_MATCHES + SEARCH_TEXT_MATCHES customers."""
    if not q and attribute is None:
        return entities_list().none()
    qs = entities_list()
    if attribute is not None:
        qs = qs.filter(attributes__contains={attribute.pk: [value]})
    if q:
        text = " ".join(q.split())
        text_ids = list(Attribute.objects.filter(data_type=Attribute.DataType.STRING).values_list("pk", flat=True))
        condition = _text_values(text, text_ids)
        words = text.split(" ")
        if 1 < len(words) <= SEARCH_WORDS_MAX and text_ids:
            every_word = Q()
            for word in words:
                every_word &= _text_values(word, text_ids)
            condition |= every_word
        qs = qs.filter(pk__in=identifier_entity_ids(q) + (_text_matches(condition) if text_ids else []))
    return qs


SEARCH_WORDS_MAX = 4
SEARCH_TEXT_MATCHES = 1000


def _text_matches(condition: Q) -> list[str]:
    """The ids of (at most SEARCH_TEXT_MATCHES) customers matching the text values, found on their own: in a
    MATERIALIZED CTE the OR of containments is planned as a BitmapOr over the GIN index. Left in the listing's
    query, its estimate made PostgreSQL walk the `modified` index and test every customer (seconds on 600k)."""
    inner = CustomerEntity.objects.filter(condition).order_by().values("pk")
    sql, params = inner.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"WITH m AS MATERIALIZED ({sql}) SELECT * FROM m LIMIT %s", [*params, SEARCH_TEXT_MATCHES])
        return [row[0] for row in cursor.fetchall()]


def _text_values(text: str, attribute_ids: list[str]) -> Q:
    """Customers with `text` as a value of one of these text attributes, as typed or in a name's usual cases."""
    condition = Q(pk__in=[])
    for variant in dict.fromkeys([text, text.lower(), text.capitalize(), text.title(), text.upper()]):
        for attribute_id in attribute_ids:
            condition |= Q(attributes__contains={attribute_id: [variant]})
    return condition


def identifier_entity_ids(q: str) -> list[str]:
    """Entities holding an identifier equal to `q` as normalised by its category (any category)."""
    from stitching.models import Identifier
    from stitching.selectors import identifier_keys

    condition = Q(pk__in=[])
    for category_id, normalised in identifier_keys(q):
        condition |= Q(category_id=category_id, value=normalised)
    ids = Identifier.objects.filter(condition, customer_entity__isnull=False).values_list(
        "customer_entity_id", flat=True
    )
    return list(ids.distinct()[:SEARCH_IDENTIFIER_MATCHES])


def attribute_value_counts(*, attribute: Attribute, limit: int) -> dict[str, Any]:
    """The most frequent values of an attribute across all customers (ties by value), and how many customers
    have a value at all."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT v, count(*) AS n FROM customer_entities CROSS JOIN LATERAL jsonb_array_elements("
            "CASE jsonb_typeof(attributes -> %(id)s) WHEN 'array' THEN attributes -> %(id)s END) v "
            "GROUP BY v ORDER BY n DESC, v LIMIT %(limit)s",
            {"id": attribute.pk, "limit": limit},
        )
        values = [{"value": json.loads(v) if isinstance(v, str) else v, "count": n} for v, n in cursor.fetchall()]
        cursor.execute("SELECT count(*) FROM customer_entities WHERE attributes ? %s", [attribute.pk])
        total = cursor.fetchone()[0]
    return {"attribute": attribute.pk, "entities_with_value": total, "values": values}


def entity_attributes_stale(*, entity_id: str) -> bool:
    """Whether the customer waits in the attribute recomputation queue."""
    return StaleEntity.objects.filter(pk=entity_id).exists()


def customers_count_estimate(exact_below: int = 200_000) -> int:
    """How many customers there are: exact on a small table, else the planner's estimate (counting millions of rows
    takes seconds; a page that shows a share of them needs no more than the estimate)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'customer_entities'::regclass")
        estimate = int(cursor.fetchone()[0] or 0)
        if estimate <= exact_below:  # (-1 or 0: never analysed)
            cursor.execute("SELECT count(*) FROM customer_entities")
            return cursor.fetchone()[0]
    return estimate


SAMPLE_ROWS = 100_000


@dataclass(frozen=True)
class CustomersSample:
    source: str  # the FROM item: the customer table, or a repeatable block sample of it
    scale: float  # a count over `source` times this estimates the count over every customer
    sampled: bool


def customers_sample(rows: int = SAMPLE_ROWS) -> CustomersSample:
    """What to count attribute values over: every customer on a table of at most 2 × `rows` (the planner's
    estimate), else a repeatable block sample of about `rows` customers (a chart or a suggestion needs the common
    values, not millions of rows scanned)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = 'customer_entities'::regclass")
        estimate = float(cursor.fetchone()[0] or 0)
    if estimate <= 2 * rows:
        return CustomersSample("customer_entities", 1.0, False)
    percent = 100.0 * rows / estimate
    return CustomersSample(
        f"customer_entities TABLESAMPLE SYSTEM ({percent:.6f}) REPEATABLE (7)", 100.0 / percent, True
    )


HISTOGRAM_MONTHS = 24
HISTOGRAM_BUCKETS = 10


def attribute_histogram(*, attribute: Attribute) -> dict[str, Any]:
    """The values of a date, date-time or number attribute as bars: customers' values per month (UTC; the latest
    HISTOGRAM_MONTHS months that have any) or in HISTOGRAM_BUCKETS equal ranges from the smallest to the largest.
    On a large table, from a sample (customers_sample), scaled up."""
    sample = customers_sample()
    source, scale = sample.source, sample.scale
    # Values of another shape (stored before a data type change, until the customer is recomputed) are skipped,
    # never cast: a month is read off the text, a number only from a JSON number.
    values = (
        f"SELECT v FROM {source} CROSS JOIN LATERAL jsonb_array_elements(CASE "
        "jsonb_typeof(attributes -> %(id)s) WHEN 'array' THEN attributes -> %(id)s END) v"
    )
    with connection.cursor() as cursor:
        if attribute.data_type in (Attribute.DataType.DATE, Attribute.DataType.DATETIME):
            cursor.execute(
                f"SELECT m, count(*) FROM (SELECT substring(v #>> '{{}}' FROM '^(\\d{{4}}-\\d{{2}})-\\d{{2}}') AS m "
                f"FROM ({values}) z WHERE jsonb_typeof(v) = 'string') y WHERE m IS NOT NULL "
                "GROUP BY 1 ORDER BY 1 DESC LIMIT %(limit)s",
                {"id": attribute.pk, "limit": HISTOGRAM_MONTHS},
            )
            bars = [{"label": month, "count": round(n * scale)} for month, n in reversed(cursor.fetchall())]
            kind = "month"
        else:
            # Equal ranges from the smallest value to the largest, each labelled by its bounds, the empty ones too
            # (the shape of the distribution); whole numbers in ranges of whole numbers ("0 – 9", "10 – 19").
            whole = attribute.data_type == Attribute.DataType.INT
            cursor.execute(
                f"WITH x AS (SELECT v::numeric AS x FROM ({values}) z WHERE jsonb_typeof(v) = 'number'), "
                "b AS (SELECT min(x) lo, max(x) hi FROM x), "
                "w AS (SELECT lo, hi, CASE WHEN %(whole)s THEN ceil((hi - lo + 1) / %(buckets)s) "
                "ELSE (hi - lo) / %(buckets)s END AS w FROM b) "
                "SELECT CASE WHEN w.w = 0 THEN 0 ELSE least(floor((x.x - w.lo) / w.w), %(buckets)s - 1) END AS k, "
                "count(*), w.lo, w.w, w.hi FROM x, w GROUP BY 1, 3, 4, 5 ORDER BY 1",
                {"id": attribute.pk, "buckets": HISTOGRAM_BUCKETS, "whole": whole},
            )
            rows = cursor.fetchall()
            bars = []
            if rows:
                lo, width, hi = rows[0][2], rows[0][3], rows[0][4]
                counts = {int(k): n for k, n, _, _, _ in rows}
                last = int(rows[-1][0])
                for k in range(last + 1):
                    start = lo + k * width
                    if width == 0:
                        label = _number(lo)
                    elif whole:
                        end = min(start + width - 1, hi)  # (the last range ends at the largest value)
                        label = _number(start) if end == start else f"{_number(start)} – {_number(end)}"
                    else:
                        label = f"{_number(start)} – {_number(start + width)}"
                    bars.append({"label": label, "count": round(counts.get(k, 0) * scale)})
            kind = "range"
    return {"kind": kind, "bars": bars, "approximate": sample.sampled}


def _number(value) -> str:
    text = f"{value:,.2f}" if value != value.to_integral_value() else f"{value:,.0f}"
    return text


WAITING_COUNTED = 100_000


def customers_waiting_since() -> datetime | None:
    """When the customer waiting longest for new attribute values was queued (None: nobody waits)."""
    return StaleEntity.objects.aggregate(oldest=Min("queued"))["oldest"]


def customers_waiting_count() -> int:
    """How many customers wait for new attribute values, counted up to WAITING_COUNTED + 1 (after a definition
    change every customer waits: counting millions on each page view would cost seconds)."""
    return StaleEntity.objects.all()[: WAITING_COUNTED + 1].count()
