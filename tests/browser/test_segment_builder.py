"""A marketer builds the seed's exclusion segment in the admin builder (consent is true AND age >= 18 AND NOT
gender = male AND total revenue = 0) without seeing JSON, watches the live count, saves it, and the saved
segment's count matches the REST API and the fixture; then opens the segment's insights charts."""

import pytest
from playwright.sync_api import Page, expect

from cdp.features import Feature
from cdp.models import Attribute, CustomerEntity
from cdp.services.auth import role_create, token_create, user_create
from segments.builder import value_suggestions_forget
from segments.conditions import tree_evaluate
from segments.models import Segment
from segments.services import segment_create, segment_size_record
from tests.browser.conftest import admin_login, screenshot
from tests.segments.conftest import EXAMPLE_ATTRIBUTES, EXCLUSION_TREE

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "Bu1lder-marketer-pass!"

# name: (consent, age, gender, total revenue, email consent); None = no value stored
PEOPLE = {
    "alice": (True, 30, "female", 0, True),  # in
    "carol": (True, 18, None, 0, False),  # in: no gender is "not male"
    "fay": (True, 52, "other", 0, True),  # in
    "gina": (True, 19, "female", 0.0, None),  # in
    "bob": (True, 40, "male", 0, True),  # male
    "dave": (False, 25, "female", 0, True),  # no consent
    "erin": (True, 16, "female", 0, True),  # under 18
    "hank": (True, 33, "female", 12.5, True),  # has bought
    "ivan": (None, 45, "female", 0, None),  # consent unknown
}
EXPECTED_MEMBERS = {"alice", "carol", "fay", "gina"}
WITH_CONSENT = {name for name, person in PEOPLE.items() if person[0]}


@pytest.fixture(autouse=True)
def _suggestions_fresh():
    value_suggestions_forget()
    yield
    value_suggestions_forget()


@pytest.fixture
def attributes(transactional_db) -> dict[str, str]:
    for attribute_id, data_type, computation in EXAMPLE_ATTRIBUTES:
        Attribute.objects.update_or_create(
            id=attribute_id,
            defaults={"name": attribute_id.replace("_", " ").capitalize(), "data_type": data_type,
                      "computation": computation, "path": f"traits.{attribute_id}"},
        )  # fmt: skip
    return {attribute_id: data_type for attribute_id, data_type, _ in EXAMPLE_ATTRIBUTES}


@pytest.fixture
def people(attributes) -> dict[str, CustomerEntity]:
    """Customers as the attribute computation stores them: {"<attribute id>": [values]}."""
    created = {}
    for index, (name, values) in enumerate(PEOPLE.items()):
        stored = {
            attribute_id: [value]
            for attribute_id, value in zip(("consent", "age", "gender", "total_revenue", "email_consent"), values,
                                           strict=True)
            if value is not None
        }  # fmt: skip
        stored["ps_email_address"] = [f"{name}@example.com"]
        created[name] = CustomerEntity.objects.create(id=f"{index + 1:x}".rjust(32, "b"), attributes=stored)
    # the fixture agrees with the reference evaluator of the backend
    members = {n for n, e in created.items() if tree_evaluate(EXCLUSION_TREE, e.attributes, attributes=attributes)}
    assert members == EXPECTED_MEMBERS
    return created


@pytest.fixture
def marketer(transactional_db):
    role = role_create(name="Marketers", features=[Feature.SEGMENTS_VIEW, Feature.SEGMENTS_EDIT,
                                                   Feature.CUSTOMERS_VIEW])  # fmt: skip
    user = user_create(username="marketer", password=PASSWORD, role=role)
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


def count_text(n: int) -> str:
    return f"{n:,} customer" + ("" if n == 1 else "s")


def condition(page: Page, index: int):
    return page.locator(f'[data-path="conditions.children[{index}]"]')


def pick_attribute(page: Page, index: int, search: str, attribute_id: str) -> None:
    node = condition(page, index)
    node.locator("[data-role=attribute]").click()
    node.locator("[data-role=attribute]").fill(search)
    node.locator(f'.seg-attr-option[data-attribute="{attribute_id}"]').click()


def test_build_the_exclusion_segment_and_match_the_api(page: Page, live_server, people, marketer):
    admin_login(page, username="marketer", password=PASSWORD)
    page.goto("/admin/segments/segment/add/")
    page.fill("#id_name", "Consenting adults who have not bought, not male")
    builder = page.locator("[data-segment-builder]")
    count = builder.locator("[data-count-value]")
    expect(count).to_have_text(count_text(len(PEOPLE)))  # an empty AND group: everybody
    expect(page.locator("textarea[name=conditions]")).to_be_hidden()

    # consent is true (a yes / no attribute: its first operator is "is true", no value)
    builder.locator('[data-path="conditions"] > .seg-group-actions [data-action=add-condition]').click()
    expect(condition(page, 0).locator("[data-node-error]")).to_have_text("Pick an attribute.")
    pick_attribute(page, 0, "cons", "consent")
    expect(condition(page, 0).locator("[data-role=operator]")).to_have_value("is_true")
    options = condition(page, 0).locator("[data-role=operator] option")
    expect(options).to_have_count(4)  # is true, is false, is set, is not set
    expect(count).to_have_text(count_text(len(WITH_CONSENT)))

    # age >= 18: operators of a number; while the value is missing the count says what is wrong, on the node
    builder.locator('[data-path="conditions"] > .seg-group-actions [data-action=add-condition]').click()
    pick_attribute(page, 1, "age", "age")
    condition(page, 1).locator("[data-role=operator]").select_option("gte")
    expect(builder.locator("[data-count-error]")).to_contain_text("'gte' needs a value")
    expect(condition(page, 1)).to_have_class(lambda_class("seg-invalid"))
    expect(condition(page, 1).locator("[data-node-error]")).to_contain_text("needs a value")
    expect(condition(page, 1).locator("[data-role=value]")).to_have_attribute("type", "number")
    condition(page, 1).locator("[data-role=value]").fill("18")
    expect(count).to_have_text(count_text(len({n for n in WITH_CONSENT if PEOPLE[n][1] >= 18})))
    expect(condition(page, 1)).not_to_have_class(lambda_class("seg-invalid"))

    # NOT gender = male, with suggestions from the attribute value counts
    builder.locator('[data-path="conditions"] > .seg-group-actions [data-action=add-condition]').click()
    pick_attribute(page, 2, "gend", "gender")
    expect(condition(page, 2).locator("[data-role=operator]")).to_have_value("equals")
    value = condition(page, 2).locator("[data-role=value]")
    value.click()
    expect(condition(page, 2).locator("datalist option[value=male]")).to_have_count(1)
    value.fill("male")
    condition(page, 2).locator("[data-action=negate]").click()
    expect(condition(page, 2).locator("[data-action=negate]")).to_have_attribute("aria-pressed", "true")

    # total revenue = 0
    builder.locator('[data-path="conditions"] > .seg-group-actions [data-action=add-condition]').click()
    pick_attribute(page, 3, "revenue", "total_revenue")
    condition(page, 3).locator("[data-role=value]").fill("0")
    expect(count).to_have_text(count_text(len(EXPECTED_MEMBERS)))
    screenshot(page, "segment-builder-exclusion")

    page.locator("button[name=_continue]").click()
    page.wait_for_url("**/admin/segments/segment/*/change/")
    segment = Segment.objects.get(name="Consenting adults who have not bought, not male")
    assert segment.owner == marketer
    assert segment.conditions == {
        "operator": "and",
        "negate": False,
        "children": [
            {"attribute": "consent", "operator": "is_true", "negate": False},
            {"attribute": "age", "operator": "gte", "value": 18, "negate": False},
            {"attribute": "gender", "operator": "equals", "value": "male", "negate": True},
            {"attribute": "total_revenue", "operator": "equals", "value": 0, "negate": False},
        ],
    }
    # the saved segment is drawn back into the builder and counted
    expect(page.locator("[data-count-value]")).to_have_text(count_text(len(EXPECTED_MEMBERS)))
    expect(condition(page, 2).locator("[data-action=negate]")).to_have_attribute("aria-pressed", "true")
    expect(condition(page, 1).locator("[data-role=attribute]")).to_have_value("Age")

    _, key = token_create(user=marketer, name="browser test")
    api = f"/api/segments/{segment.pk}/customers_count"
    response = page.request.get(api, headers={"Authorization": f"Token {key}"})
    assert response.status == 200, response.text()
    assert response.json()["customers_count"] == len(EXPECTED_MEMBERS)


def lambda_class(name: str):
    import re

    return re.compile(rf"(^|\s){name}(\s|$)")


def test_groups_or_and_not_and_a_bad_save_points_at_the_node(page: Page, live_server, people, marketer):
    admin_login(page, username="marketer", password=PASSWORD)
    page.goto("/admin/segments/segment/add/")
    page.fill("#id_name", "Young or old")
    builder = page.locator("[data-segment-builder]")
    count = builder.locator("[data-count-value]")
    # a nested OR group: age < 18 OR age between 50 and 60
    builder.locator('[data-path="conditions"] > .seg-group-actions [data-action=add-group]').click()
    group = page.locator('[data-path="conditions.children[0]"]')
    expect(group.locator("[data-role=group-operator]").first).to_have_value("or")
    inner = page.locator('[data-path="conditions.children[0].children[0]"]')
    inner.locator("[data-role=attribute]").click()
    inner.locator("[data-role=attribute]").fill("age")
    inner.locator('.seg-attr-option[data-attribute="age"]').click()
    inner.locator("[data-role=operator]").select_option("lt")
    inner.locator("[data-role=value]").fill("18")
    group.locator(":scope > .seg-group-actions [data-action=add-condition]").click()
    second = page.locator('[data-path="conditions.children[0].children[1]"]')
    second.locator("[data-role=attribute]").fill("age")
    second.locator("[data-role=attribute]").press("Enter")
    second.locator("[data-role=operator]").select_option("between")
    second.locator("[data-role=value-low]").fill("50")
    second.locator("[data-role=value-high]").fill("60")
    expect(count).to_have_text(count_text(2))  # erin (16), fay (52)
    # NOT on the group
    group.locator(":scope > .seg-group-head [data-action=negate]").click()
    expect(count).to_have_text(count_text(len(PEOPLE) - 2))
    group.locator(":scope > .seg-group-head [data-action=negate]").click()
    # switch to AND: nobody is both
    group.locator("[data-role=group-operator]").first.select_option("and")
    expect(count).to_have_text(count_text(0))
    group.locator("[data-role=group-operator]").first.select_option("or")
    # gender in [other, female] via the list input
    builder.locator('[data-path="conditions"] > .seg-group-actions [data-action=add-condition]').click()
    third = page.locator('[data-path="conditions.children[1]"]')
    third.locator("[data-role=attribute]").fill("gender")
    third.locator("[data-role=attribute]").press("Enter")
    third.locator("[data-role=operator]").select_option("in")
    third.locator("[data-role=value-item]").fill("other")
    third.locator("[data-role=value-item]").press("Enter")
    expect(third.locator(".seg-chip")).to_have_count(1)
    expect(count).to_have_text(count_text(1))  # fay
    # remove the list condition again; then leave the between's high value empty and save anyway
    third.locator("[data-action=remove]").click()
    expect(count).to_have_text(count_text(2))
    second.locator("[data-role=value-high]").fill("")
    expect(builder.locator("[data-count-error]")).to_contain_text("between")
    page.locator("button[name=_continue]").click()
    # the server's validation message is shown on the node it points at, the tree drawn back as it was
    bad = page.locator('[data-path="conditions.children[0].children[1]"]')
    expect(bad.locator("[data-node-error]")).to_contain_text("'between' needs two values")
    expect(bad.locator("[data-role=value-low]")).to_have_value("50")
    assert not Segment.objects.filter(name="Young or old").exists()
    screenshot(page, "segment-builder-invalid-save")


def test_a_between_with_only_its_upper_bound_keeps_it_in_place(page: Page, live_server, people, marketer):
    """The 'To' of an 'is between' typed before its 'From' jumped into the 'From' box at the next redraw (NOT,
    + Condition): the value stored was [high] alone."""
    admin_login(page, username="marketer", password=PASSWORD)
    page.goto("/admin/segments/segment/add/")
    builder = page.locator("[data-segment-builder]")
    builder.locator('[data-path="conditions"] > .seg-group-actions [data-action=add-condition]').click()
    pick_attribute(page, 0, "age", "age")
    condition(page, 0).locator("[data-role=operator]").select_option("between")
    condition(page, 0).locator("[data-role=value-high]").fill("40")
    condition(page, 0).locator("[data-action=negate]").click()
    builder.locator('[data-path="conditions"] > .seg-group-actions [data-action=add-condition]').click()
    expect(condition(page, 0).locator("[data-role=value-low]")).to_have_value("")
    expect(condition(page, 0).locator("[data-role=value-high]")).to_have_value("40")
    condition(page, 0).locator("[data-role=value-low]").fill("18")
    condition(page, 1).locator("[data-action=remove]").click()
    # NOT (18 <= age <= 40): erin (16), fay (52), ivan (45)
    expect(builder.locator("[data-count-value]")).to_have_text(count_text(3))
    expect(condition(page, 0).locator("[data-role=value-low]")).to_have_value("18")
    expect(condition(page, 0).locator("[data-role=value-high]")).to_have_value("40")


def test_insights_page_draws_its_charts(page: Page, live_server, people, marketer):
    segment = segment_create(owner=marketer, name="Exclusion", conditions=EXCLUSION_TREE, tags=[])
    segment_size_record(segment=segment, size=3)
    admin_login(page, username="marketer", password=PASSWORD)
    page.goto(f"/admin/segments/segment/{segment.pk}/change/")
    expect(page.locator("#segment-summary-text")).to_contain_text("Consent is true AND Age is at least 18")
    expect(page.locator(f'a[href$="/segment/{segment.pk}/insights/"]')).to_have_count(2)  # action + summary
    page.get_by_role("link", name="Insights", exact=False).first.click()
    page.wait_for_url(f"**/admin/segments/segment/{segment.pk}/insights/")
    insights = page.locator("#segment-insights")
    expect(insights.locator("#insights-count")).to_have_text(str(len(EXPECTED_MEMBERS)))
    expect(insights.locator("#insights-size svg.seg-line circle.seg-point")).to_have_count(1)
    bars = insights.locator('#insights-top-values [data-attribute="gender"] svg.seg-bars .seg-bar')
    expect(bars).to_have_count(2)  # female, other (carol has no gender)
    expect(bars.first).to_contain_text("female")
    expect(insights.locator("#insights-consent svg.seg-share")).to_contain_text("2 of 4 (50.0%)")
    # choose another attribute
    insights.locator("#insights-attributes input[value=age]").check()
    insights.locator("#insights-attributes input[value=gender]").uncheck()
    insights.locator("#insights-attributes input[value=consent]").uncheck()
    insights.locator("#insights-attributes input[value=total_revenue]").uncheck()
    insights.locator("#insights-attributes button[type=submit]").click()
    expect(insights.locator('#insights-top-values [data-attribute="age"] svg.seg-bars .seg-bar')).to_have_count(4)
    expect(insights.locator('#insights-top-values [data-attribute="gender"]')).to_have_count(0)
    box = insights.locator("#insights-size svg").bounding_box()
    assert box and box["width"] > 300 and box["height"] > 80
    screenshot(page, "segment-insights")


def test_a_condition_on_a_compound_attributes_field(page: Page, live_server, people, marketer):
    """Customers whose last order was over 100: the builder offers a compound attribute's fields, each with the
    operators and input of its type, counts live and saves the field."""
    Attribute.objects.update_or_create(
        id="last_order",
        defaults={"name": "Last order", "data_type": "compound", "computation": "last_value", "event_types": ["order"],
                  "fields": [{"id": "order_id", "name": "Order", "data_type": "string", "path": "order_id"},
                             {"id": "total", "name": "Total", "data_type": "float", "path": "revenue"}]},
    )  # fmt: skip
    totals = {"alice": 120.5, "bob": 80, "carol": 300}
    for name, total in totals.items():
        entity = people[name]
        entity.attributes["last_order"] = [{"order_id": f"{name}-1", "total": total}]
        entity.save(update_fields=["attributes"])
    admin_login(page, username="marketer", password=PASSWORD)
    page.goto("/admin/segments/segment/add/")
    page.fill("#id_name", "Big last orders")
    builder = page.locator("[data-segment-builder]")
    count = builder.locator("[data-count-value]")
    builder.locator('[data-path="conditions"] > .seg-group-actions [data-action=add-condition]').click()
    pick_attribute(page, 0, "last", "last_order")
    # The whole attribute: whether there is one.
    expect(condition(page, 0).locator("[data-role=operator]")).to_have_value("is_set")
    expect(count).to_have_text(count_text(len(totals)))
    # One of its fields: a number's operators and input.
    condition(page, 0).locator("[data-role=field]").select_option("total")
    condition(page, 0).locator("[data-role=operator]").select_option("gt")
    expect(condition(page, 0).locator("[data-role=value]")).to_have_attribute("type", "number")
    condition(page, 0).locator("[data-role=value]").fill("100")
    expect(count).to_have_text(count_text(2))  # alice and carol
    screenshot(page, "segment-builder-compound-field")

    page.locator("button[name=_continue]").click()
    page.wait_for_url("**/admin/segments/segment/*/change/")
    segment = Segment.objects.get(name="Big last orders")
    assert segment.conditions["children"] == [
        {"attribute": "last_order", "field": "total", "operator": "gt", "value": 100, "negate": False}
    ]
    expect(condition(page, 0).locator("[data-role=field]")).to_have_value("total")
    expect(page.locator("[data-count-value]")).to_have_text(count_text(2))
