"""The admin segment builder's server side: the builder configuration rendered into the page, the live count and
value suggestion endpoints (validation paths, permissions), the insights page and its SVG charts."""

import json
import re

import pytest

from cdp.features import Feature
from cdp.services.auth import role_create, user_create
from segments import charts
from segments.admin_builder import default_insight_attributes, node_errors
from segments.builder import builder_config, value_suggestions_forget
from segments.conditions import OPERATOR_LABELS, OPERATOR_VALUES, OPERATORS
from segments.services import segment_create, segment_grant_set, segment_size_record
from tests.segments.conftest import EXCLUSION_TREE

pytestmark = pytest.mark.django_db

COUNT_URL = "/admin/segments/segment/builder/count/"
VALUES_URL = "/admin/segments/segment/builder/values/"


@pytest.fixture(autouse=True)
def _suggestions_fresh():
    value_suggestions_forget()
    yield
    value_suggestions_forget()


@pytest.fixture
def staff_cast(cast):
    for user in cast.values():
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    return cast


def _count(client, tree):
    return client.post(COUNT_URL, json.dumps({"conditions": tree}), content_type="application/json")


def test_the_builder_config_offers_the_validators_operators(example_attributes):
    config = builder_config()
    assert config["operators"] == {data_type: list(ops) for data_type, ops in OPERATORS.items()}
    offered = {a["id"]: a["type"] for a in config["attributes"]}
    assert example_attributes.items() <= offered.items()
    for data_type, ops in OPERATORS.items():
        assert set(config["operator_labels"][data_type]) == set(ops)
    assert config["operator_values"] == OPERATOR_VALUES  # which input each operator gets
    assert config["operator_labels"]["int"]["gte"] == OPERATOR_LABELS["gte"]


def test_the_change_form_renders_the_builder_not_json(client, staff_cast, exclusion_segment):
    client.force_login(staff_cast["owner"])
    page = client.get(f"/admin/segments/segment/{exclusion_segment.pk}/change/").content.decode()
    assert "data-segment-builder" in page
    assert 'id="segment-builder-config"' in page
    assert "segments/builder.js" in page and "segments/builder.css" in page
    assert "/admin/segments/segment/builder/count/" in page
    # the tree travels in a hidden field, the builder draws it
    assert '<textarea name="conditions"' in page and " hidden>" in page


def test_live_count_of_an_unsaved_tree(client, staff_cast, customers):
    client.force_login(staff_cast["owner"])
    response = _count(client, EXCLUSION_TREE)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "customers_count": 2}
    assert _count(client, {"operator": "and", "children": []}).json()["customers_count"] == 5


def test_live_count_points_at_the_bad_node(client, staff_cast, customers):
    client.force_login(staff_cast["owner"])
    tree = {"operator": "and", "children": [
        {"attribute": "age", "operator": "gte", "value": 18},
        {"operator": "or", "children": [{"attribute": "gender", "operator": "gte", "value": "x"}]},
    ]}  # fmt: skip
    response = _count(client, tree)
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "error"
    assert body["path"] == "conditions.children[1].children[0].operator"
    assert "not an operator for string attribute 'gender'" in body["message"]
    missing = _count(client, {"operator": "and", "children": [{"attribute": "age", "operator": "gte"}]}).json()
    assert missing["path"] == "conditions.children[0].value"


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"tree": {}}'])
def test_live_count_rejects_a_bad_body(client, staff_cast, body):
    client.force_login(staff_cast["owner"])
    response = client.post(COUNT_URL, body, content_type="application/json")
    assert response.status_code == 400
    assert "conditions" in response.json()["message"]


def test_builder_endpoints_need_the_segments_edit_feature(client, staff_cast, viewer_role, customers):
    viewer = user_create(username="looker", password="Looker-password-1!", role=viewer_role)
    viewer.is_staff = True
    viewer.save(update_fields=["is_staff"])
    client.force_login(viewer)
    assert _count(client, EXCLUSION_TREE).status_code == 403
    assert client.get(VALUES_URL, {"attribute": "gender"}).status_code == 403
    client.logout()
    assert _count(client, EXCLUSION_TREE).status_code == 302  # to the login page
    client.force_login(staff_cast["owner"])
    assert client.get(COUNT_URL).status_code == 405
    # building without customers_view: counts, but no value suggestions (customer data)
    builder_only = user_create(username="builder", password="Builder-password-1!", role=role_create(
        name="Segment builders", features=[Feature.SEGMENTS_VIEW, Feature.SEGMENTS_EDIT]))  # fmt: skip
    builder_only.is_staff = True
    builder_only.save(update_fields=["is_staff"])
    client.force_login(builder_only)
    assert _count(client, EXCLUSION_TREE).status_code == 200
    assert client.get(VALUES_URL, {"attribute": "gender"}).status_code == 403


def test_value_suggestions(client, staff_cast, customers):
    client.force_login(staff_cast["owner"])
    body = client.get(VALUES_URL, {"attribute": "gender"}).json()
    assert body["values"][0] == {"value": "female", "count": 3}
    assert {"value": "male", "count": 1} in body["values"]
    assert [row["value"] for row in client.get(VALUES_URL, {"attribute": "gender", "q": "FEM"}).json()["values"]] == [
        "female"
    ]
    assert client.get(VALUES_URL, {"attribute": "nope"}).status_code == 400
    assert client.get(VALUES_URL).status_code == 400


def test_a_bad_saved_tree_is_shown_on_its_node(client, staff_cast, example_attributes):
    client.force_login(staff_cast["owner"])
    bad = {"operator": "and", "children": [{"attribute": "age", "operator": "between", "value": [1]}]}
    response = client.post("/admin/segments/segment/add/", {
        "name": "Bad", "description": "", "conditions": json.dumps(bad),
        "notes-TOTAL_FORMS": "0", "notes-INITIAL_FORMS": "0", "grants-TOTAL_FORMS": "0", "grants-INITIAL_FORMS": "0",
    })  # fmt: skip
    assert response.status_code == 200
    config = _builder_config(response.content.decode())
    assert config["errors"][0]["path"] == "conditions.children[0].value"
    assert "needs two values" in config["errors"][0]["message"]


def _builder_config(page: str) -> dict:
    match = re.search(r'<script id="segment-builder-config" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(match.group(1))


def test_node_errors_parse_paths():
    assert node_errors(["conditions.children[2].value: needs a value", "something else"]) == [
        {"path": "conditions.children[2].value", "message": "needs a value"},
        {"path": "conditions", "message": "something else"},
    ]


def test_insights_page_draws_its_charts(client, staff_cast, exclusion_segment):
    client.force_login(staff_cast["owner"])
    segment_size_record(segment=exclusion_segment, size=1)
    response = client.get(f"/admin/segments/segment/{exclusion_segment.pk}/insights/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="insights-count">2<' in page
    assert 'class="seg-chart seg-line"' in page
    assert page.count('class="seg-chart seg-bars"') == 4  # the tree's attributes
    assert 'class="seg-chart seg-share"' in page  # email_consent exists: 1 of the 2 members
    assert "1 of 2 (50.0%)" in page
    chosen = client.get(f"/admin/segments/segment/{exclusion_segment.pk}/insights/", {"attributes": ["gender"]})
    assert chosen.content.decode().count('class="seg-chart seg-bars"') == 1


def test_insights_show_members_values_only_with_customers_view(client, staff_cast, exclusion_segment):
    """A role without customers_view saw the top email addresses of the members on the insights page."""
    segment_grant_set(segment=exclusion_segment, user=staff_cast["role_member"], permission="view")
    client.force_login(staff_cast["role_member"])  # segments_view + segments_edit, no customers_view
    response = client.get(
        f"/admin/segments/segment/{exclusion_segment.pk}/insights/", {"attributes": ["ps_email_address", "gender"]}
    )
    page = response.content.decode()
    assert response.status_code == 200 and 'id="insights-count">2<' in page
    assert 'class="seg-chart seg-bars"' not in page and "alice@example.com" not in page
    assert 'id="insights-top-values-denied"' in page and "customers_view" in page
    assert 'class="seg-chart seg-share"' in page  # the aggregate consent share stays


def test_insights_respect_the_acl(client, staff_cast, exclusion_segment):
    client.force_login(staff_cast["outsider"])
    assert client.get(f"/admin/segments/segment/{exclusion_segment.pk}/insights/").status_code == 404


def test_insights_of_a_segment_with_a_deleted_attribute(client, staff_cast, customers):
    segment = segment_create(owner=staff_cast["owner"], name="Old", conditions=EXCLUSION_TREE, tags=[])
    from cdp.models import Attribute

    Attribute.objects.filter(pk="gender").delete()
    client.force_login(staff_cast["owner"])
    page = client.get(f"/admin/segments/segment/{segment.pk}/insights/").content.decode()
    assert "cannot be evaluated" in page and "unknown attribute" in page


def test_default_insight_attributes_follow_the_tree(example_attributes):
    from cdp.models import Attribute

    definitions = {a.pk: a for a in Attribute.objects.all()}
    assert default_insight_attributes(EXCLUSION_TREE, definitions) == ["gender", "consent", "age", "total_revenue"]
    assert default_insight_attributes({"operator": "and", "children": []}, definitions)


def test_charts_escape_text_and_handle_empty_data():
    svg = charts.bar_chart([{"label": "<script>", "count": 3}], total=4, title="a & b")
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "(75%)" in svg
    assert "No member has a value" in charts.bar_chart([], total=0, title="x")
    assert "No measurements yet" in charts.line_chart([], title="x")
    one = charts.line_chart([("2026-01-01", 5)], title="x")
    assert one.count("<circle") == 1
    many = charts.line_chart([("d1", 1), ("d2", 7), ("d3", 3)], title="x")
    assert many.count("<circle") == 3 and "seg-line-path" in many
    assert "0 of 0 (0.0%)" in charts.share_bar(0, 0, title="x")


def test_the_tree_in_words(example_attributes):
    from segments.builder import tree_describe

    assert tree_describe(EXCLUSION_TREE) == (
        'Consent is true AND Age is at least 18 AND NOT (Gender equals "male") AND Total revenue equals 0'
    )
    nested = {"operator": "or", "negate": True, "children": [
        {"attribute": "gender", "operator": "in", "value": ["a", "b"]},
        {"operator": "and", "children": [{"attribute": "age", "operator": "between", "value": [1, 5]},
                                         {"attribute": "birthday", "operator": "within_last_days", "value": 7}]},
    ]}  # fmt: skip
    assert tree_describe(nested) == (
        'NOT (Gender is one of ["a", "b"] OR (Age is between 1 and 5 AND Birthday is within the last 7 days))'
    )
    assert tree_describe({"operator": "and", "children": []}) == "every customer"


def test_change_form_shows_the_conditions_in_words_and_links_the_insights(
    client, staff_cast, viewer_role, exclusion_segment
):
    from segments.services import segment_grant_set

    client.force_login(staff_cast["owner"])
    page = client.get(f"/admin/segments/segment/{exclusion_segment.pk}/change/").content.decode()
    assert 'id="segment-summary-text">Consent is true AND Age is at least 18 AND NOT (Gender equals &quot;male' in page
    assert f"/admin/segments/segment/{exclusion_segment.pk}/insights/" in page
    # a viewer reads the words, and the JSON is hidden
    looker = user_create(username="looker", password="Looker-password-1!", role=viewer_role)
    looker.is_staff = True
    looker.save(update_fields=["is_staff"])
    segment_grant_set(segment=exclusion_segment, user=looker, role=None, permission="view")
    client.force_login(looker)
    page = client.get(f"/admin/segments/segment/{exclusion_segment.pk}/change/").content.decode()
    assert "segment-summary-text" in page and ".field-conditions { display: none" in page
    assert "data-segment-builder" not in page


def test_value_suggestions_are_kept_a_minute_per_process(client, staff_cast, customers):
    from cdp.models import CustomerEntity

    client.force_login(staff_cast["owner"])
    assert client.get(VALUES_URL, {"attribute": "gender"}).json()["values"][0]["count"] == 3
    CustomerEntity.objects.create(id="f" * 32, attributes={"gender": ["female"]})
    assert client.get(VALUES_URL, {"attribute": "gender"}).json()["values"][0]["count"] == 3
    value_suggestions_forget()
    assert client.get(VALUES_URL, {"attribute": "gender"}).json()["values"][0]["count"] == 4


def test_value_suggestions_on_a_large_table_come_from_a_sample(client, staff_cast, customers, monkeypatch):
    from django.db import connection

    from segments import builder

    monkeypatch.setattr(builder, "SAMPLE_ROWS", 1)  # 5 customers count as "large": a 20% block sample, × 5
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE customer_entities")
    client.force_login(staff_cast["owner"])
    body = client.get(VALUES_URL, {"attribute": "gender"}).json()
    assert body["approximate"] is True
    assert all(row["count"] % 5 == 0 for row in body["values"])
    assert body["entities_with_value"] % 5 == 0
    monkeypatch.setattr(builder, "SAMPLE_ROWS", 100_000)
    value_suggestions_forget()
    assert client.get(VALUES_URL, {"attribute": "gender"}).json()["approximate"] is False
