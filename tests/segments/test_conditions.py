"""The condition tree validator (messages point at the bad node) and the documented semantics, through SQL."""

import pytest
from django.db import connection

from cdp.models import CustomerEntity
from segments.conditions import ConditionInvalid, tree_compile, tree_evaluate, tree_validate

TYPES = {"gender": "string", "age": "int", "revenue": "float", "consent": "bool", "born": "date", "seen": "datetime"}
OK = {"attribute": "age", "operator": "gt", "value": 1}


def members(tree) -> set[str]:
    tree = tree_validate(tree, attributes=TYPES)
    where, params = tree_compile(tree, attributes=TYPES)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT e.id FROM customer_entities e WHERE {where}", params)
        sql = {row[0].rstrip("0") for row in cursor.fetchall()}
    python = {
        c.id.rstrip("0") for c in CustomerEntity.objects.all() if tree_evaluate(tree, c.attributes, attributes=TYPES)
    }
    assert sql == python
    return sql


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"operator": "and", "children": [OK, OK, {"attribute": "age", "operator": "between", "value": [1]}]},
         "conditions.children[2].value: 'between' needs two values [low, high]"),
        ({"operator": "xor", "children": []}, "conditions.operator: a group's operator is 'and' or 'or', not 'xor'"),
        ({"operator": "and", "children": [{"attribute": "nope", "operator": "equals", "value": 1}]},
         "conditions.children[0].attribute: unknown attribute 'nope'"),
        ({"attribute": "age", "operator": "contains", "value": "1"},
         "conditions.operator: 'contains' is not an operator for int attribute 'age'"),
        ({"attribute": "age", "operator": "gt", "value": "old"}, "conditions.value: must be a number, got 'old'"),
        ({"attribute": "age", "operator": "between", "value": [30, 18]},
         "conditions.value: 'between' needs low <= high"),
        ({"attribute": "gender", "operator": "in", "value": []}, "conditions.value: 'in' needs a non-empty list"),
        ({"attribute": "gender", "operator": "is_set", "value": "x"}, "conditions.value: 'is_set' takes no value"),
        ({"attribute": "gender", "operator": "equals"}, "conditions.value: 'equals' needs a value"),
        ({"attribute": "born", "operator": "before", "value": "15/06/2026"}, "conditions.value: must be a date"),
        ({"attribute": "seen", "operator": "after", "value": "yesterday"}, "conditions.value: must be a date and time"),
        ({"attribute": "seen", "operator": "within_last_days", "value": -1}, "conditions.value: 'within_last_days'"),
        ({"attribute": "gender", "operator": "equals", "value": "m", "negate": "yes"},
         "conditions.negate: must be true or false"),
        ({"attribute": "gender", "operator": "equals", "value": "m", "colour": 1}, "conditions.colour: unknown key"),
        ([], "conditions: must be an object"),
        ({"operator": "and"}, "conditions: needs 'attribute' (a condition) or 'children' (a group)"),
        ({"operator": "or", "children": [{"operator": "and", "children": [{"attribute": "consent", "operator": "equals",
                                                                            "value": True}]}]},
         "conditions.children[0].children[0].operator: 'equals' is not an operator for bool attribute 'consent'"),
    ],
)  # fmt: skip
def test_validator_names_the_bad_node(tree, message):
    with pytest.raises(ConditionInvalid) as caught:
        tree_validate(tree, attributes=TYPES)
    assert str(caught.value).startswith(message)


def test_validator_normalises_values():
    tree = tree_validate(
        {"operator": "and", "children": [
            {"attribute": "age", "operator": "gte", "value": "18"},
            {"attribute": "revenue", "operator": "equals", "value": 2.0},
            {"attribute": "seen", "operator": "after", "value": "2026-01-02T03:04:05+02:00"},
            {"attribute": "seen", "operator": "before", "value": "2026-01-02"},
        ]},
        attributes=TYPES,
    )  # fmt: skip
    values = [child["value"] for child in tree["children"]]
    assert values == [18, 2, "2026-01-02T01:04:05.000000Z", "2026-01-02T00:00:00.000000Z"]
    assert all(child["negate"] is False for child in tree["children"])


def test_too_deep_trees_are_refused():
    tree = {"attribute": "age", "operator": "gt", "value": 1}
    for _ in range(25):
        tree = {"operator": "and", "children": [tree]}
    with pytest.raises(ConditionInvalid, match="nest at most"):
        tree_validate(tree, attributes=TYPES)


@pytest.fixture
def genders(db):
    for entity_id, values in [("a", ["male"]), ("b", ["female"]), ("c", ["male", "female"]), ("d", []), ("e", None)]:
        attributes = {} if values is None else {"gender": values}
        CustomerEntity.objects.create(id=entity_id.ljust(32, "0"), attributes=attributes)


def test_not_equals_needs_some_other_value_while_not_equals_excludes_every_holder(genders):
    # not_equals: some value other than "male" (a missing attribute has no value at all).
    assert members({"attribute": "gender", "operator": "not_equals", "value": "male"}) == {"b", "c"}
    # NOT equals: no value is "male", which holds for an empty list and a missing attribute too.
    assert members({"attribute": "gender", "operator": "equals", "value": "male", "negate": True}) == {"b", "d", "e"}
    assert members({"attribute": "gender", "operator": "is_set"}) == {"a", "b", "c"}
    assert members({"attribute": "gender", "operator": "is_not_set"}) == {"d", "e"}


def test_any_value_matches_on_multi_valued_attributes(genders):
    assert members({"attribute": "gender", "operator": "equals", "value": "female"}) == {"b", "c"}
    assert members({"attribute": "gender", "operator": "in", "value": ["male", "x"]}) == {"a", "c"}
    assert members({"attribute": "gender", "operator": "starts_with", "value": "fe"}) == {"b", "c"}
    assert members({"attribute": "gender", "operator": "ends_with", "value": "ale"}) == {"a", "b", "c"}
    assert members({"attribute": "gender", "operator": "contains", "value": "em"}) == {"b", "c"}
    assert members({"operator": "or", "children": []}) == set()
    assert members({"operator": "and", "children": []}) == {"a", "b", "c", "d", "e"}


def test_regex_characters_in_text_operators_are_literal(db):
    CustomerEntity.objects.create(id="f".ljust(32, "0"), attributes={"gender": ["a.b*c"]})
    CustomerEntity.objects.create(id="9".ljust(32, "0"), attributes={"gender": ["axbbc"]})
    assert members({"attribute": "gender", "operator": "contains", "value": ".b*"}) == {"f"}
    assert members({"attribute": "gender", "operator": "ends_with", "value": "*c"}) == {"f"}
