"""Property: the SQL compiler and the plain-Python reference evaluator agree on random trees and customers
(on real PostgreSQL, over the real customer_entities table and its jsonb storage)."""

from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connection
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cdp.models import CustomerEntity
from segments.conditions import OPERATORS, datetime_storage, tree_compile, tree_evaluate, tree_validate

NOW = datetime(2026, 6, 15, 12, 30, tzinfo=UTC)
TYPES = {"s": "string", "tags": "string", "n": "int", "f": "float", "b": "bool", "d": "date", "t": "datetime"}

texts = st.sampled_from(
    ["a", "b", "ab", "ba", "A", "abc", ".*", "a.c", "a\\b", '"q"', "ü", "x y", "^a", "a$", "(", "%_"]
)
ints = st.integers(min_value=-3, max_value=3)
floats = st.one_of(ints, st.sampled_from([-1.5, 0.5, 2.25, 1e-7, 3.0000001]))
days = st.integers(min_value=-40, max_value=5).map(lambda n: (NOW.date() + timedelta(days=n)).isoformat())
moments = st.integers(min_value=-40 * 24, max_value=48).map(lambda h: datetime_storage(NOW + timedelta(hours=h)))
SCALARS = {"string": texts, "int": ints, "float": floats, "bool": st.booleans(), "date": days, "datetime": moments}
wrong = st.sampled_from(["3", 3, True, None, "2026-06-15"])


def values_for(data_type):
    return st.lists(st.one_of(SCALARS[data_type], SCALARS[data_type], SCALARS[data_type], wrong), max_size=3)


entities = st.lists(
    st.fixed_dictionaries({}, optional={key: values_for(data_type) for key, data_type in TYPES.items()}),
    min_size=1,
    max_size=12,
)


@st.composite
def conditions(draw):
    attribute = draw(st.sampled_from(sorted(TYPES)))
    data_type = TYPES[attribute]
    operator = draw(st.sampled_from(OPERATORS[data_type]))
    node = {"attribute": attribute, "operator": operator}
    scalar = SCALARS[data_type]
    if operator in ("contains", "starts_with", "ends_with"):
        node["value"] = draw(texts.filter(bool))
    elif operator == "in":
        node["value"] = draw(st.lists(scalar, min_size=1, max_size=3))
    elif operator == "between":
        node["value"] = sorted(draw(st.lists(scalar, min_size=2, max_size=2)))
    elif operator == "within_last_days":
        node["value"] = draw(st.integers(min_value=0, max_value=45))
    elif operator in ("before", "after") and data_type == "datetime":
        node["value"] = draw(st.one_of(moments, days))  # a bare date means its midnight
    elif operator not in ("is_set", "is_not_set", "is_true", "is_false"):
        node["value"] = draw(scalar)
    if draw(st.booleans()):
        node["negate"] = draw(st.booleans())
    return node


trees = st.recursive(
    conditions(),
    lambda children: st.fixed_dictionaries(
        {"operator": st.sampled_from(["and", "or"]), "children": st.lists(children, max_size=4)},
        optional={"negate": st.booleans()},
    ),
    max_leaves=12,
)


@pytest.mark.django_db
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees, customers=entities)
# jsonpath compares null with anything: null != "x" is true there, while a null is no date at all.
@example(tree={"attribute": "d", "operator": "not_equals", "value": "2026-06-15"}, customers=[{"d": [None]}])
def test_compiled_sql_selects_exactly_the_customers_the_reference_evaluator_accepts(tree, customers):
    tree = tree_validate(tree, attributes=TYPES)
    CustomerEntity.objects.all().delete()
    rows = [CustomerEntity(id=f"{i:032x}", attributes=attrs) for i, attrs in enumerate(customers)]
    CustomerEntity.objects.bulk_create(rows)
    where, params = tree_compile(tree, attributes=TYPES, now=NOW)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT e.id FROM customer_entities e WHERE {where}", params)
        selected = {row[0] for row in cursor.fetchall()}
    expected = {row.id for row in rows if tree_evaluate(tree, row.attributes, attributes=TYPES, now=NOW)}
    assert selected == expected, (where, params)


def test_dates_in_the_window_are_inclusive_of_today_and_the_first_day():
    tree = tree_validate({"attribute": "d", "operator": "within_last_days", "value": 7}, attributes=TYPES)
    today = NOW.date()
    assert tree_evaluate(tree, {"d": [today.isoformat()]}, attributes=TYPES, now=NOW)
    assert tree_evaluate(tree, {"d": [(today - timedelta(days=7)).isoformat()]}, attributes=TYPES, now=NOW)
    assert not tree_evaluate(tree, {"d": [(today - timedelta(days=8)).isoformat()]}, attributes=TYPES, now=NOW)
    assert not tree_evaluate(tree, {"d": [(today + timedelta(days=1)).isoformat()]}, attributes=TYPES, now=NOW)
    assert date.fromisoformat(today.isoformat()) == today


any_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


@pytest.mark.django_db
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    operator=st.sampled_from(["equals", "not_equals", "contains", "starts_with", "ends_with", "in"]),
    needle=any_text.filter(bool),
    values=st.lists(st.lists(any_text, max_size=3), min_size=1, max_size=6),
    negate=st.booleans(),
)
def test_any_text_compiles_to_valid_sql_with_the_reference_semantics(operator, needle, values, negate):
    node = {"attribute": "s", "operator": operator, "value": [needle] if operator == "in" else needle, "negate": negate}
    tree = tree_validate(node, attributes=TYPES)
    CustomerEntity.objects.all().delete()
    rows = [CustomerEntity(id=f"{i:032x}", attributes={"s": v}) for i, v in enumerate(values)]
    CustomerEntity.objects.bulk_create(rows)
    where, params = tree_compile(tree, attributes=TYPES, now=NOW)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT e.id FROM customer_entities e WHERE {where}", params)
        selected = {row[0] for row in cursor.fetchall()}
    expected = {row.id for row in rows if tree_evaluate(tree, row.attributes, attributes=TYPES, now=NOW)}
    assert selected == expected, (where, params)
