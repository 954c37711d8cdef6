"""A marketer opens a stitched customer's profile: attributes grouped, the timeline, the identity graph picture
and "why are these one customer?"; then erases the customer (GDPR) after confirming."""

import re

import pytest
from playwright.sync_api import Page, expect

from cdp.models import CustomerEntity, DataSource
from cdp.services.auth import user_create
from cdp.services.data_sources import data_source_create
from stitching.models import EntityChange
from tests.browser.conftest import admin_login, screenshot
from tests.stitching.graph_builder import GraphBuilder

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "Pr0file-admin-pass!"


@pytest.fixture
def ann(transactional_db, default_attributes) -> CustomerEntity:
    """Ann: browsed anonymously on two cookies, signed up, bought twice from the app; one refused address."""
    web, _ = data_source_create(slug="web", name="Website", type="web")
    graph = GraphBuilder(web)
    ann = graph.entity(
        first_name=["Ann"],
        last_name=["Novak"],
        ps_email_address=["ann@example.com"],
        ps_phone=["+420777123456"],
        ps_user_id=["u-1001"],
        ps_cookie=["c-7f3a", "c-91bd"],
        events_count=[7],
        first_event_time=["2024-05-01T13:00:00+00:00"],
        last_event_time=["2024-05-01T19:00:00+00:00"],
        orders_count=[2],
        total_revenue=[184.5],
        average_order_value=[92.25],
        lifecycle_stage=["customer"],
    )
    graph.event(ann, identifiers=[("cookie", "c-7f3a")], type="page", payload={"properties": {"path": "/"}})
    graph.event(ann, identifiers=[("cookie", "c-7f3a"), ("email", "ann@example.com")], type="identify",
                payload={"traits": {"email": "Ann@Example.com", "firstName": "Ann"}})  # fmt: skip
    graph.event(ann, identifiers=[("email", "ann@example.com"), ("user_id", "u-1001")], type="signed_up")
    graph.event(ann, identifiers=[("user_id", "u-1001"), ("cookie", "c-91bd")], type="page")
    graph.event(ann, identifiers=[("user_id", "u-1001"), ("phone", "+420777123456")], type="Order Completed",
                payload={"properties": {"revenue": 120.0}})  # fmt: skip
    graph.event(
        ann,
        identifiers=[("user_id", "u-1001")],
        refused=[("email", "team@example.com", "blocked", "blocked value: shared team inbox", None)],
        type="Order Completed",
        payload={"properties": {"revenue": 64.5}},
    )
    graph.event(ann, identifiers=[("cookie", "c-91bd")], type="page", payload={"properties": {"path": "/sale"}})
    EntityChange.objects.create(
        kind="merge", customer_entity_id=ann.pk, other_entity_ids=["0f" * 16], detail={"identifier": "email"}
    )
    EntityChange.objects.create(
        kind="split",
        customer_entity_id=ann.pk,
        other_entity_ids=["1e" * 16],
        detail={"identifier_category": "email", "cause": "value_blocked"},
    )
    return ann


def test_profile_shows_attributes_timeline_and_identity_graph(page: Page, ann):
    user_create(username="marketer", password=PASSWORD, is_superuser=True)
    admin_login(page, username="marketer", password=PASSWORD)
    page.goto(f"/admin/cdp/customerentity/{ann.pk}/change/")

    profile = page.locator("#customer-profile")
    expect(profile.locator(".cp-name")).to_have_text("Ann Novak")
    # The header's path and the window title name her, not her id.
    expect(page.locator("h1", has_text="Customer profiles")).to_contain_text("Ann Novak")
    expect(page).to_have_title(re.compile(r"^Ann Novak \| "))
    expect(page.locator("#profile-identifiers")).to_contain_text("ann@example.com")
    expect(page.locator("#profile-identifiers")).to_contain_text("+420777123456")
    # Attributes, grouped.
    emails = page.locator("[data-group=identifiers] [data-attribute=ps_email_address]")
    expect(emails).to_contain_text("ann@example.com")
    expect(page.locator("[data-group=revenue] [data-attribute=total_revenue]")).to_contain_text("184.50")
    expect(page.locator("[data-group=activity] [data-attribute=events_count]")).to_contain_text("7")
    expect(page.locator("[data-group=other] [data-attribute=lifecycle_stage]")).to_contain_text("customer")
    # Timeline: newest first, payload expandable.
    items = page.locator("#profile-timeline .cp-event")
    expect(items).to_have_count(7)
    expect(items.first.locator(".cp-event-type")).to_have_text("Page viewed · /sale")
    items.nth(1).locator("summary").click()
    expect(items.nth(1).locator(".cp-payload")).to_contain_text('"revenue": 64.5')
    # The identity graph picture: 7 events, 6 identifiers, one refused (dashed) link.
    graph = page.locator("#identity-graph svg")
    expect(graph).to_be_visible()
    expect(graph.locator("[data-kind=event]")).to_have_count(7)
    expect(graph.locator("[data-kind=identifier]")).to_have_count(6)
    expect(graph.locator("path[data-status=blocked]")).to_have_count(1)
    # Merge history.
    expect(page.locator("#profile-changes")).to_contain_text("Merged")
    expect(page.locator("#profile-changes")).to_contain_text("at a shared Email, because a value was blocked")
    screenshot(page, "customer-profile")

    # Why are the first cookie and the phone one customer?
    detail = page.locator("#identity-graph-detail")
    graph.locator("[data-node^='identifier:']", has_text="c-7f3a").click()
    expect(detail).to_contain_text("c-7f3a")  # the first pick registered before the second click
    graph.locator("[data-node^='identifier:']", has_text="+420777123456").click()
    expect(detail).to_contain_text("Why one customer: 3 event(s) link them.")
    expect(detail.locator("li")).to_have_count(7)
    expect(graph.locator(".cp-path-edge")).to_have_count(6)
    page.locator("#identity-graph").scroll_into_view_if_needed()
    screenshot(page, "customer-profile-why")


def test_erase_customer_after_confirmation(page: Page, ann):
    user_create(username="dpo", password=PASSWORD, is_superuser=True)
    admin_login(page, username="dpo", password=PASSWORD)
    page.goto(f"/admin/cdp/customerentity/{ann.pk}/change/")
    page.locator("#erase-customer").click()
    expect(page.get_by_text("This cannot be undone")).to_be_visible()
    screenshot(page, "customer-erase-confirm")
    assert CustomerEntity.objects.filter(pk=ann.pk).exists()  # nothing happens before confirming

    page.get_by_role("button", name="Erase customer").click()
    expect(page.get_by_text(f"Customer {ann.pk} erased: 7 event(s)")).to_be_visible()
    assert not CustomerEntity.objects.filter(pk=ann.pk).exists()
    erase = EntityChange.objects.get(kind="erase")
    assert erase.detail["events"] == 7 and "ann@example.com" not in str(erase.detail)


def test_the_graph_of_many_cookies_keeps_its_labels_and_its_width(page: Page, ann):
    """A shared tablet: 24 cookies seen with one address. They take several lanes over the events that brought
    them instead of one row four times the axis, and the row labels stay in view however the graph scrolls."""
    graph = GraphBuilder(DataSource.objects.get(slug="web"))
    for n in range(24):
        graph.event(ann, identifiers=[("cookie", f"tablet-cookie-{n:02d}"), ("email", "ann@example.com")], type="page")
    user_create(username="narrow", password=PASSWORD, is_superuser=True)
    page.set_viewport_size({"width": 1024, "height": 900})
    admin_login(page, username="narrow", password=PASSWORD)
    page.goto(f"/admin/cdp/customerentity/{ann.pk}/change/")
    svg = page.locator("#identity-graph svg")
    expect(svg.locator("[data-kind=identifier]")).to_have_count(30)

    cookie_rows = page.evaluate(
        """() => new Set([...document.querySelectorAll('#identity-graph [data-kind=identifier] rect')]
            .filter((r) => r.getAttribute('stroke') === '#d97706').map((r) => r.getAttribute('y'))).size"""
    )
    assert cookie_rows > 1
    # The header shows a few cookies and says how many more.
    expect(page.locator(".cp-chip", has_text="more")).to_have_text("+21 more")
    width = float(svg.get_attribute("width"))
    assert width < 2 * page.evaluate("document.querySelector('.cp-graph-wrap').clientWidth")

    def labels_in_view() -> bool:
        return page.evaluate(
            """() => {
                const wrap = document.querySelector('.cp-graph-wrap').getBoundingClientRect();
                const labels = [...document.querySelectorAll('#identity-graph .cp-graph-labels text')];
                return labels.length === 4 && labels.every((t) => t.getBoundingClientRect().left >= wrap.left);
            }"""
        )

    page.wait_for_function("document.querySelector('.cp-graph-wrap').scrollLeft > 0")  # opened on the newest
    assert labels_in_view()
    page.evaluate("document.querySelector('.cp-graph-wrap').scrollLeft = 0")
    page.wait_for_timeout(100)
    assert labels_in_view()
    page.locator("#identity-graph").scroll_into_view_if_needed()
    screenshot(page, "customer-profile-many-cookies")
