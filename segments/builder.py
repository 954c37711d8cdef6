"""What the admin segment builder needs from the backend: the attribute list and the operators per data type (taken
from segments.conditions, so the builder offers exactly what the validator accepts), a live count of an unsaved
tree, and value suggestions from the attribute value counts.

The builder page renders `builder_config()` into the page as JSON; its two JSON endpoints (admin views in
segments/admin_builder.py) call `tree_count` and `value_suggestions`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from django.db import connection

from cdp.models import Attribute
from cdp.selectors import attribute_value_counts, customers_sample
from segments import selectors
from segments.conditions import (
    GROUP_OPERATORS,
    NO_VALUE,
    OPERATOR_LABELS,
    OPERATOR_VALUES,
    OPERATORS,
    ConditionInvalid,
)

# How operators read in the builder: the backend's labels (segments.conditions.OPERATOR_LABELS), with a few
# that read better next to the builder's inputs and NOT button.
BUILDER_LABELS = {
    "not_equals": "has a value other than",  # "any value matches": not the same as NOT equals
    "within_last_days": "is within the last",  # followed by the days input and "days"
}
# Dates read better as "on / earlier / later" than "equals / less / greater".
DATE_LABELS = {
    "equals": "is on",
    "not_equals": "has a date other than",
    "lt": "is earlier than",
    "lte": "is on or before",
    "gt": "is later than",
    "gte": "is on or after",
}

SUGGESTIONS_SCANNED = 200
SUGGESTIONS_SHOWN = 20
SAMPLE_ROWS = 100_000


def operator_labels(data_type: str) -> dict[str, str]:
    labels = {
        op: BUILDER_LABELS.get(op) or OPERATOR_LABELS.get(op, op.replace("_", " "))
        for op in OPERATORS.get(data_type, ())
    }
    if data_type in ("date", "datetime"):
        labels.update({op: text for op, text in DATE_LABELS.items() if op in labels})
    return labels


def builder_config() -> dict[str, Any]:
    """The attribute definitions and the operators of every data type, as the builder script reads them."""
    attributes = [
        {"id": pk, "name": name, "type": data_type, "unit": unit, "description": description}
        | ({"fields": [{"id": f["id"], "name": f.get("name") or f["id"], "type": f["data_type"]} for f in fields]}
           if data_type == "compound" else {})
        for pk, name, data_type, unit, description, fields in Attribute.objects.order_by("name", "id").values_list(
            "id", "name", "data_type", "unit", "description", "fields"
        )
        if data_type in OPERATORS
    ]  # fmt: skip
    return {
        "attributes": attributes,
        "operators": {data_type: list(ops) for data_type, ops in OPERATORS.items()},
        "operator_labels": {data_type: operator_labels(data_type) for data_type in OPERATORS},
        "no_value": sorted(NO_VALUE),
        # what each operator's value is: single (default), list, range, days or none
        "operator_values": OPERATOR_VALUES,
        "group_operators": list(GROUP_OPERATORS),
        "type_labels": dict(Attribute.DataType.choices),
    }


def tree_count(tree: Any) -> dict[str, Any]:
    """Validate an unsaved tree and count its customers with the same compiled SQL a saved segment uses.
    {"status": "ok", "customers_count": n} or {"status": "error", "path": ..., "message": ...}."""
    try:
        count = selectors.conditions_members_count(conditions=tree)
    except ConditionInvalid as exc:
        return {"status": "error", "path": exc.path, "message": exc.message}
    return {"status": "ok", "customers_count": count}


_SUGGESTIONS_CACHE: dict[str, tuple[float, dict[str, Any]]] = {}
SUGGESTIONS_TTL_S = 60.0


def _value_counts_cached(attribute: Attribute) -> dict[str, Any]:
    """The attribute value counts scan every customer: kept per process for a minute (suggestions may be that
    stale), so a marketer adding conditions on the same attribute does not wait for the scan again."""
    now = time.monotonic()
    hit = _SUGGESTIONS_CACHE.get(attribute.pk)
    if hit is not None and now - hit[0] < SUGGESTIONS_TTL_S:
        return hit[1]
    counts = _value_counts(attribute)
    if len(_SUGGESTIONS_CACHE) > 1000:
        _SUGGESTIONS_CACHE.clear()
    _SUGGESTIONS_CACHE[attribute.pk] = (now, counts)
    return counts


def _value_counts(attribute: Attribute) -> dict[str, Any]:
    """Exact attribute value counts on a small customer table; on a large one (more than 2 × SAMPLE_ROWS rows by
    the planner's estimate) counts from a repeatable block sample of about SAMPLE_ROWS customers, scaled up and
    marked approximate: a suggestion needs the common values, not every customer scanned (seconds on millions)."""
    sample = customers_sample(SAMPLE_ROWS)
    if not sample.sampled:
        return {**attribute_value_counts(attribute=attribute, limit=SUGGESTIONS_SCANNED), "approximate": False}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT v, count(*) AS n FROM {sample.source} "
            "CROSS JOIN LATERAL jsonb_array_elements(CASE jsonb_typeof(attributes -> %(id)s) WHEN 'array' "
            "THEN attributes -> %(id)s END) v GROUP BY v ORDER BY n DESC, v LIMIT %(limit)s",
            {"id": attribute.pk, "limit": SUGGESTIONS_SCANNED},
        )
        values = [
            {"value": json.loads(v) if isinstance(v, str) else v, "count": round(n * sample.scale)}
            for v, n in cursor.fetchall()
        ]
        cursor.execute(f"SELECT count(*) FROM {sample.source} WHERE attributes ? %s", [attribute.pk])
        with_value = round(cursor.fetchone()[0] * sample.scale)
    return {"attribute": attribute.pk, "entities_with_value": with_value, "values": values, "approximate": True}


def value_suggestions_forget() -> None:
    _SUGGESTIONS_CACHE.clear()


def value_suggestions(*, attribute: Attribute, q: str = "") -> dict[str, Any]:
    """The most frequent values of an attribute (all customers), those containing `q` (any case) when given."""
    counts = _value_counts_cached(attribute)
    needle = q.strip().lower()
    values = [row for row in counts["values"] if not needle or needle in str(row["value"]).lower()]
    return {
        "attribute": attribute.pk,
        "entities_with_value": counts["entities_with_value"],
        "values": values[:SUGGESTIONS_SHOWN],
        "approximate": counts["approximate"],
    }


def _describe_value(operator: str, value: Any, data_type: str) -> str:
    def one(v: Any) -> str:
        return f'"{v}"' if data_type == "string" else str(v)

    if operator == "in" and isinstance(value, list):
        return "[" + ", ".join(one(v) for v in value) + "]"
    if operator == "between" and isinstance(value, list) and len(value) == 2:
        return f"{one(value[0])} and {one(value[1])}"
    if operator == "within_last_days":
        return f"{value} days"
    return one(value)


def tree_describe(tree: Any, *, names: dict[str, str] | None = None, types: dict[str, str] | None = None) -> str:
    """The tree in words, e.g. 'Consent is true AND Age is at least 18 AND NOT (Gender equals "male")' — what a
    marketer reads instead of the JSON (names / types default to the attribute definitions)."""
    if names is None or types is None:
        keys = selectors.attribute_keys()  # (with compound attributes' fields, as conditions name them)
        names = {key: name for key, name, _ in keys}
        types = {key: data_type for key, _, data_type in keys}
    return _describe(tree, names, types, top=True)


def _describe(node: Any, names: dict[str, str], types: dict[str, str], *, top: bool = False) -> str:
    if not isinstance(node, dict):
        return "?"
    if isinstance(node.get("children"), list):
        parts = [_describe(child, names, types) for child in node["children"]]
        if not parts:
            text = "every customer" if node.get("operator") != "or" else "nobody"
        else:
            joiner = " OR " if node.get("operator") == "or" else " AND "
            text = joiner.join(parts)
            if len(parts) > 1 and (not top or node.get("negate")):
                text = f"({text})"
    else:
        attribute = node.get("attribute")
        field = node.get("field")
        key = attribute if field is None else f"{attribute}.{field}"
        data_type = types.get(key, "string")
        operator = node.get("operator")
        label = operator_labels(data_type).get(operator, str(operator).replace("_", " "))
        name = names.get(attribute, attribute)
        text = f"{name} {label}" if field is None else f"{name}'s {names.get(key, field)} {label}"
        if operator not in NO_VALUE and "value" in node:
            text += f" {_describe_value(operator, node['value'], data_type)}"
    if node.get("negate"):
        text = f"NOT {text}" if text.startswith("(") else f"NOT ({text})"
    return text
