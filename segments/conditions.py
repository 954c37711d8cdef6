"""Segment condition trees: the format, the validator, the SQL compiler and a plain-Python reference evaluator.

Format (JSON)::

    {"operator": "and", "negate": false, "children": [                      # a group: "and" / "or"
        {"attribute": "consent", "operator": "is_true"},                     # a condition
        {"attribute": "age", "operator": "gte", "value": 18},
        {"attribute": "gender", "operator": "equals", "value": "male", "negate": true},
        {"operator": "or", "children": [...]}                               # groups nest to any depth
    ]}

A node with `children` is a group, a node with `attribute` a condition; `negate: true` on any node is NOT.
An empty AND group matches every customer, an empty OR group none.

Operators by the attribute's data type (`value` is what the operator needs):

- string: equals, not_equals (a text), in (a non-empty list of texts), contains, starts_with, ends_with (a
  non-empty text; case-sensitive), is_set, is_not_set (no value)
- int / float: equals, not_equals, lt, lte, gt, gte (a number), between ([low, high], inclusive), is_set,
  is_not_set
- date / datetime: the number operators with "YYYY-MM-DD" (date) or ISO 8601 (datetime; a bare date means its
  midnight UTC) values, plus before / after (strictly), within_last_days (a whole number N: from N days ago to
  now, inclusive)
- bool: is_true, is_false, is_set, is_not_set

Semantics on multi-valued attributes (values are lists, absent = not set):

- A condition matches when ANY of the customer's values matches it. `not_equals X` therefore means "has some
  value other than X": ["a", "b"] matches `not_equals "a"`, and a customer without the attribute does not match
  (no value at all, so no value other than X).
- NOT (`negate: true`) is plain logical negation of the node: NOT `equals X` means "no value is X", which holds
  for ["b"], for [] and for a customer without the attribute, and fails for ["a", "b"] when X = "a".
  Use NOT `equals` to exclude customers (exclusion marketing); use `not_equals` to require some other value.
- is_set: at least one value; is_not_set: none (absent or empty).
- Values of the wrong JSON type for the attribute (a text in a number attribute) never match an operator.

The compiler produces one SQL boolean expression over `customer_entities` aliased `e`: equality and `in` are
jsonb containment (`e.attributes @> '{"id": [v]}'`, answered by the GIN jsonb_path_ops index), the others
jsonpath predicates (`e.attributes @? '$."id"[*] ? (@ >= 18)'`), so each condition is evaluated in C on the row
without unnesting. `tree_evaluate` is the same semantics in plain Python (the property tests hold the two equal).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cdp.text import storable
from cdp.values import datetime_stored

GROUP_OPERATORS = ("and", "or")
STRING, INT, FLOAT, BOOL, DATE, DATETIME = "string", "int", "float", "bool", "date", "datetime"
COMPOUND = "compound"  # values are objects of fields: a condition tests whether there is one

_SET = ("is_set", "is_not_set")
_COMPARE = ("equals", "not_equals", "lt", "lte", "gt", "gte", "between")
OPERATORS: dict[str, tuple[str, ...]] = {
    STRING: ("equals", "not_equals", "in", "contains", "starts_with", "ends_with", *_SET),
    INT: (*_COMPARE, *_SET),
    FLOAT: (*_COMPARE, *_SET),
    DATE: (*_COMPARE, "before", "after", "within_last_days", *_SET),
    DATETIME: (*_COMPARE, "before", "after", "within_last_days", *_SET),
    BOOL: ("is_true", "is_false", *_SET),
    COMPOUND: _SET,
}
NO_VALUE = {"is_set", "is_not_set", "is_true", "is_false"}
# What each operator's `value` is (for builders: which input to show) and how a marketer reads it.
OPERATOR_VALUES = {"in": "list", "between": "range", "within_last_days": "days", **dict.fromkeys(NO_VALUE, "none")}
OPERATOR_LABELS = {
    "equals": "equals", "not_equals": "does not equal", "in": "is one of", "contains": "contains",
    "starts_with": "starts with", "ends_with": "ends with", "is_set": "is set", "is_not_set": "is not set",
    "lt": "is less than", "lte": "is at most", "gt": "is greater than", "gte": "is at least",
    "between": "is between", "before": "is before", "after": "is after",
    "within_last_days": "is within the last N days", "is_true": "is true", "is_false": "is false",
}  # fmt: skip


def operators_by_type() -> dict[str, list[dict[str, str]]]:
    """{data type: [{operator, label, value}]}: value is single, list, range, days or none."""
    return {
        data_type: [
            {"operator": op, "label": OPERATOR_LABELS[op], "value": OPERATOR_VALUES.get(op, "single")} for op in ops
        ]
        for data_type, ops in OPERATORS.items()
    }


MAX_DEPTH = 20
MAX_NODES = 500
MAX_IN_VALUES = 1000
MAX_TEXT = 1000
MAX_DAYS = 36600
_NODE_KEYS = {"operator", "children", "negate", "attribute", "field", "value", "type", "id"}

# The seed's exclusion-marketing case (consenting adults, not male, who have not bought yet): the example in the
# API schema, the tests' and the benchmark's segment.
EXCLUSION_EXAMPLE: dict[str, Any] = {
    "operator": "and",
    "children": [
        {"attribute": "consent", "operator": "is_true"},
        {"attribute": "age", "operator": "gte", "value": 18},
        {"attribute": "gender", "operator": "equals", "value": "male", "negate": True},
        {"attribute": "total_revenue", "operator": "equals", "value": 0},
    ],
}


class ConditionInvalid(ValueError):
    """A condition tree that cannot be used; `path` points at the bad node (e.g. conditions.children[2].value)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


# --- validation ------------------------------------------------------------------------------------------------


def tree_validate(tree: Any, *, attributes: Mapping[str, str], path: str = "conditions") -> dict[str, Any]:
    """Check a condition tree against the attribute definitions ({attribute id: data type}) and return it
    normalised (typed values, datetimes in storage format, `negate` always present). Raises ConditionInvalid."""
    counter = [0]
    return _node(tree, attributes=attributes, path=path, depth=0, counter=counter)


def _node(node: Any, *, attributes: Mapping[str, str], path: str, depth: int, counter: list[int]) -> dict:
    if not isinstance(node, dict):
        raise ConditionInvalid(
            path, "must be an object: a group {operator, children} or a condition {attribute, operator}"
        )
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise ConditionInvalid(path, f"a segment has at most {MAX_NODES} conditions and groups")
    unknown = sorted(set(node) - _NODE_KEYS)
    if unknown:
        raise ConditionInvalid(f"{path}.{unknown[0]}", "unknown key")
    negate = node.get("negate", False)
    if not isinstance(negate, bool):
        raise ConditionInvalid(f"{path}.negate", "must be true or false")
    if "children" in node:
        if "attribute" in node or "field" in node:
            raise ConditionInvalid(path, "a node is either a group (children) or a condition (attribute), not both")
        if depth >= MAX_DEPTH:
            raise ConditionInvalid(path, f"groups nest at most {MAX_DEPTH} levels deep")
        operator = node.get("operator")
        if operator not in GROUP_OPERATORS:
            raise ConditionInvalid(f"{path}.operator", f"a group's operator is 'and' or 'or', not {_show(operator)}")
        children = node["children"]
        if not isinstance(children, list):
            raise ConditionInvalid(f"{path}.children", "must be a list of conditions and groups")
        return {
            "operator": operator,
            "negate": negate,
            "children": [
                _node(child, attributes=attributes, path=f"{path}.children[{i}]", depth=depth + 1, counter=counter)
                for i, child in enumerate(children)
            ],
        }
    if "attribute" not in node:
        raise ConditionInvalid(path, "needs 'attribute' (a condition) or 'children' (a group)")
    attribute = node["attribute"]
    if not isinstance(attribute, str) or attribute not in attributes:
        raise ConditionInvalid(f"{path}.attribute", f"unknown attribute {_show(attribute)}")
    data_type = attributes[attribute]
    field = node.get("field")
    subject = f"{data_type} attribute {attribute!r}"
    if field is not None:
        # A compound attribute's field: its type is in `attributes` as "<attribute>.<field>".
        if data_type != COMPOUND:
            raise ConditionInvalid(
                f"{path}.field", f"only a compound attribute has fields; {attribute!r} is {data_type}"
            )
        if not isinstance(field, str) or f"{attribute}.{field}" not in attributes:
            fields = [key.split(".", 1)[1] for key in attributes if key.startswith(f"{attribute}.")]
            raise ConditionInvalid(
                f"{path}.field", f"{attribute!r} has no field {_show(field)}; one of: {', '.join(fields)}"
            )
        data_type = attributes[f"{attribute}.{field}"]
        subject = f"{data_type} field {field!r} of {attribute!r}"
    allowed = OPERATORS.get(data_type)
    if allowed is None:
        raise ConditionInvalid(f"{path}.attribute", f"attribute {attribute!r} has an unsupported type {data_type!r}")
    operator = node.get("operator")
    if operator not in allowed:
        hint = "; or name one of its fields (field)" if data_type == COMPOUND else ""
        raise ConditionInvalid(
            f"{path}.operator",
            f"{_show(operator)} is not an operator for {subject}; one of: {', '.join(allowed)}{hint}",
        )
    result: dict[str, Any] = {"attribute": attribute, "operator": operator, "negate": negate}
    if field is not None:
        result["field"] = field
    value_path = f"{path}.value"
    raw = node.get("value")
    if operator in NO_VALUE:
        if raw is not None:
            raise ConditionInvalid(value_path, f"'{operator}' takes no value")
        return result
    if raw is None:
        raise ConditionInvalid(value_path, f"'{operator}' needs a value")
    if operator == "in":
        if not isinstance(raw, list) or not raw:
            raise ConditionInvalid(value_path, "'in' needs a non-empty list of values")
        if len(raw) > MAX_IN_VALUES:
            raise ConditionInvalid(value_path, f"'in' takes at most {MAX_IN_VALUES} values")
        result["value"] = [_scalar(v, data_type, f"{value_path}[{i}]") for i, v in enumerate(raw)]
    elif operator == "between":
        if not isinstance(raw, list) or len(raw) != 2:
            raise ConditionInvalid(value_path, "'between' needs two values [low, high]")
        low, high = (_scalar(v, data_type, f"{value_path}[{i}]") for i, v in enumerate(raw))
        if low > high:
            raise ConditionInvalid(value_path, f"'between' needs low <= high, got [{raw[0]!r}, {raw[1]!r}]")
        result["value"] = [low, high]
    elif operator == "within_last_days":
        if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= MAX_DAYS:
            raise ConditionInvalid(value_path, f"'within_last_days' needs a whole number of days (0 to {MAX_DAYS})")
        result["value"] = raw
    else:
        value = _scalar(raw, data_type, value_path)
        if operator in {"contains", "starts_with", "ends_with"} and value == "":
            raise ConditionInvalid(value_path, f"'{operator}' needs a non-empty text")
        result["value"] = value
    return result


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    return repr(value)[:60]


def _scalar(value: Any, data_type: str, path: str) -> Any:
    """One comparison value, as stored for the data type."""
    if isinstance(value, list | dict):
        raise ConditionInvalid(path, "must be a single value, not a list or object")
    if isinstance(value, str) and "\x00" in value:
        # Also for dates: Python's fromisoformat reads "2025-01-01T00:00:00\x00" as that time.
        raise ConditionInvalid(path, "must not contain NUL characters")
    if data_type == STRING:
        if not isinstance(value, str):
            raise ConditionInvalid(path, f"must be a text, got {_show(value)}")
        if len(value) > MAX_TEXT:
            raise ConditionInvalid(path, f"must be at most {MAX_TEXT} characters")
        if not storable(value):
            raise ConditionInvalid(path, "must be valid text (it holds a lone surrogate)")
        return value
    if data_type in (INT, FLOAT):
        number = value
        if isinstance(value, str):
            try:
                number = float(value.strip()) if re.search(r"[.eE]", value) else int(value.strip())
            except ValueError:
                raise ConditionInvalid(path, f"must be a number, got {_show(value)}") from None
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise ConditionInvalid(path, f"must be a number, got {_show(value)}")
        if isinstance(number, float):
            if not math.isfinite(number):
                raise ConditionInvalid(path, "must be a finite number")
            if number.is_integer() and abs(number) < 2**53:
                number = int(number)
        if isinstance(number, int) and abs(number) > 10**30:
            raise ConditionInvalid(path, "is too large")
        return number
    if data_type == DATE:
        if not isinstance(value, str):
            raise ConditionInvalid(path, f"must be a date YYYY-MM-DD, got {_show(value)}")
        text = value.strip()
        try:
            if len(text) != 10:
                raise ValueError(text)
            return date.fromisoformat(text).isoformat()
        except ValueError:
            raise ConditionInvalid(path, f"must be a date YYYY-MM-DD, got {_show(value)}") from None
    if data_type == DATETIME:
        if not isinstance(value, str):
            raise ConditionInvalid(path, f"must be a date and time (ISO 8601), got {_show(value)}")
        return datetime_storage(value, path=path)
    raise ConditionInvalid(path, f"{data_type} attributes take no value")


def datetime_storage(value: str | datetime, *, path: str = "value") -> str:
    """A date-time (or a date: its midnight) as stored: UTC "YYYY-MM-DDTHH:MM:SS.ffffffZ"."""
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
            else:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ConditionInvalid(path, f"must be a date and time (ISO 8601), got {_show(value)}") from None
    else:
        moment = value
    try:
        return datetime_stored(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00: before year 1 in UTC
        raise ConditionInvalid(path, f"is out of range: {_show(value)}") from None


def tree_attributes(tree: Any) -> set[str]:
    """The attribute ids a (validated or raw) tree refers to."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("attribute"), str):
                found.add(node["attribute"])
            if isinstance(node.get("children"), list):
                stack.extend(node["children"])
    return found


# --- compiler --------------------------------------------------------------------------------------------------


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).astimezone(UTC)


def _bounds_within(data_type: str, days: int, now: datetime) -> tuple[str, str]:
    if data_type == DATE:
        today = now.date()
        return (today - timedelta(days=days)).isoformat(), today.isoformat()
    return datetime_storage(now - timedelta(days=days)), datetime_storage(now)


def _jp(value: Any) -> str:
    """A jsonpath literal: JSON strings and numbers are valid jsonpath literals."""
    if isinstance(value, float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


_REGEX_SPECIAL = re.compile(r"([\\^$.|?*+()\[\]{}])")


def _regex_literal(text: str) -> str:
    return _REGEX_SPECIAL.sub(r"\\\1", text)


_JSONPATH_OPS = {"not_equals": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">=", "before": "<", "after": ">"}


def _filter(operator: str, value: Any, data_type: str, now: datetime, at: str = "@") -> str:
    """The jsonpath filter one value (`at`: `@`, or a compound value's field `@."total"`) must pass."""
    if operator == "not_equals":
        # jsonpath compares null with anything (null != "x" is true); a null is no value of the attribute's type.
        return f"{at} != null && {at} != {_jp(value)}"
    if operator in _JSONPATH_OPS:
        return f"{at} {_JSONPATH_OPS[operator]} {_jp(value)}"
    if operator == "between":
        return f"{at} >= {_jp(value[0])} && {at} <= {_jp(value[1])}"
    if operator == "within_last_days":
        low, high = _bounds_within(data_type, value, now)
        return f"{at} >= {_jp(low)} && {at} <= {_jp(high)}"
    if operator == "starts_with":
        return f"{at} starts with {_jp(value)}"
    if operator == "contains":
        return f"{at} like_regex {_jp(_regex_literal(value))}"
    if operator == "ends_with":
        return f"{at} like_regex {_jp(_regex_literal(value) + '$')}"
    raise AssertionError(operator)


def _condition_sql(node: dict, data_type: str, now: datetime, params: list, column: str) -> str:
    attribute, operator, value = node["attribute"], node["operator"], node.get("value")
    key = json.dumps(attribute)
    field = node.get("field")
    if operator in ("equals", "is_true", "is_false") or operator == "in":
        if operator == "is_true":
            values = [True]
        elif operator == "is_false":
            values = [False]
        elif operator == "in":
            values = list(dict.fromkeys(value))
        else:
            values = [value]
        parts = []
        for v in values:
            # (A compound value's field: the object containing it, which the GIN index answers too.)
            params.append(json.dumps({attribute: [v if field is None else {field: v}]}))
            parts.append(f"{column} @> %s::jsonb")
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"
    accessor = "" if field is None else f".{json.dumps(field)}"
    if operator in ("is_set", "is_not_set"):
        # (A field holding null is no value, as the reference evaluator reads it.)
        params.append(f"$.{key}[*]{accessor}" + (" ? (@ != null)" if field is not None else ""))
        sql = f"{column} @? %s::jsonpath"
        return sql if operator == "is_set" else f"NOT {sql}"
    params.append(f"$.{key}[*] ? ({_filter(operator, value, data_type, now, at='@' + accessor)})")
    return f"{column} @? %s::jsonpath"


def tree_compile(
    tree: dict, *, attributes: Mapping[str, str], now: datetime | None = None, column: str = "e.attributes"
) -> tuple[str, list]:
    """A validated tree as one SQL boolean expression over `customer_entities e` (or the jsonb `column`), and its
    parameters (`%s` placeholders). `now` fixes the window of within_last_days (default: the current time)."""
    params: list = []
    sql = _compile(tree, attributes, _now(now), params, column)
    return sql, params


def _data_type(node: dict, attributes: Mapping[str, str]) -> str:
    """A condition's data type: its attribute's, or its compound attribute's field's."""
    field = node.get("field")
    return attributes[node["attribute"] if field is None else f"{node['attribute']}.{field}"]


def _compile(node: dict, attributes: Mapping[str, str], now: datetime, params: list, column: str) -> str:
    if "children" in node:
        parts = [_compile(child, attributes, now, params, column) for child in node["children"]]
        if not parts:
            sql = "TRUE" if node["operator"] == "and" else "FALSE"
        elif len(parts) == 1:
            sql = parts[0]
        else:
            sql = "(" + f" {node['operator'].upper()} ".join(parts) + ")"
    else:
        sql = _condition_sql(node, _data_type(node, attributes), now, params, column)
    return f"NOT ({sql})" if node.get("negate") else sql


# --- reference evaluator ---------------------------------------------------------------------------------------


def _typed(values: Any, data_type: str) -> list:
    """The customer's values an operator of this data type can compare (wrong JSON types never match)."""
    if not isinstance(values, list):
        return []
    if data_type in (INT, FLOAT):
        return [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if data_type == BOOL:
        return [v for v in values if isinstance(v, bool)]
    return [v for v in values if isinstance(v, str)]


def _matches(operator: str, v: Any, value: Any, data_type: str, now: datetime) -> bool:
    if operator == "equals":
        return v == value
    if operator == "not_equals":
        return v != value
    if operator == "in":
        return v in value
    if operator in ("lt", "before"):
        return v < value
    if operator == "lte":
        return v <= value
    if operator in ("gt", "after"):
        return v > value
    if operator == "gte":
        return v >= value
    if operator == "between":
        return value[0] <= v <= value[1]
    if operator == "within_last_days":
        low, high = _bounds_within(data_type, value, now)
        return low <= v <= high
    if operator == "contains":
        return value in v
    if operator == "starts_with":
        return v.startswith(value)
    if operator == "ends_with":
        return v.endswith(value)
    if operator == "is_true":
        return v is True
    if operator == "is_false":
        return v is False
    raise AssertionError(operator)


def tree_evaluate(
    tree: dict, entity_attributes: Mapping[str, Any], *, attributes: Mapping[str, str], now: datetime | None = None
) -> bool:
    """Whether a customer with these attribute values ({id: [values]}) is in the segment: the same semantics as
    the compiled SQL, in plain Python (the reference the compiler is tested against)."""
    return _evaluate(tree, entity_attributes, attributes, _now(now))


def _evaluate(node: dict, entity: Mapping[str, Any], attributes: Mapping[str, str], now: datetime) -> bool:
    if "children" in node:
        results = (_evaluate(child, entity, attributes, now) for child in node["children"])
        result = all(results) if node["operator"] == "and" else any(results)
    else:
        operator = node["operator"]
        raw = entity.get(node["attribute"])
        if node.get("field") is not None:  # a compound value's field: its values are the objects' fields
            field = node["field"]
            objects = raw if isinstance(raw, list) else []
            raw = [v[field] for v in objects if isinstance(v, dict) and v.get(field) is not None]
        if operator in ("is_set", "is_not_set"):
            has = isinstance(raw, list) and len(raw) > 0
            result = has if operator == "is_set" else not has
        else:
            data_type = _data_type(node, attributes)
            value = node.get("value")
            result = any(_matches(operator, v, value, data_type, now) for v in _typed(raw, data_type))
    return not result if node.get("negate") else result
