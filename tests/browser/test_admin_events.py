"""A marketer's first look at events in the Business Explorer, in a real browser."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from cdp.models import CustomerEvent
from cdp.services.auth import user_create
from cdp.services.data_sources import data_source_create
from cdp.services.events import event_record_build, events_ingest
from tests.browser.conftest import admin_login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
PASSWORD = "Br0wser-admin-pass!"


@pytest.fixture
def shop_events(transactional_db) -> dict[str, CustomerEvent]:
    web, _ = data_source_create(slug="web", name="Website", type="web")
    app, _ = data_source_create(slug="app", name="Mobile app", type="mobile")
    rows = {
        "web_purchase_new": (web, "purchase", T0),
        "web_purchase_old": (web, "purchase", T0 - timedelta(days=10)),
        "web_page_view": (web, "page_view", T0 - timedelta(hours=1)),
        "app_purchase": (app, "purchase", T0 - timedelta(hours=2)),
    }
    records = [
        event_record_build(source_id=src.pk, type=kind, event_time=when, payload={"name": name}, message_id=name)
        for name, (src, kind, when) in rows.items()
    ]
    ids = [outcome.id for outcome in events_ingest(records)]
    return {name: CustomerEvent.objects.get(pk=pk) for name, pk in zip(rows, ids, strict=True)}


def shown_event_ids(page: Page) -> set[int]:
    """Ids of the events in the result table (from the links to their detail pages)."""
    hrefs = page.locator("#result_list a[href*='/customerevent/']").evaluate_all("els => els.map(e => e.href)")
    return {int(re.search(r"/customerevent/(\d+)/change/", href).group(1)) for href in hrefs}


def test_marketer_logs_in_and_filters_events_by_source_type_and_time(page: Page, shop_events):
    user_create(username="marketer", password=PASSWORD, is_superuser=True)

    admin_login(page, username="marketer", password=PASSWORD)
    page.get_by_role("link", name="Customer events").first.click()
    expect(page.locator("#result_list")).to_be_visible()
    assert shown_event_ids(page) == {e.pk for e in shop_events.values()}
    screenshot(page, "events-all")

    # Filter: source Website, type purchase, event time on 2024-05-01 from 06:00.
    page.locator("a", has_text="Filters").click()  # unfold's filter sheet opener is a link without href
    page.locator("select[name='source__id__exact']").select_option(label="Website")
    page.fill("input[name='type']", "purchase")
    page.fill("input[name='event_time_from_0']", "2024-05-01")
    page.fill("input[name='event_time_from_1']", "06:00")
    screenshot(page, "events-filter-sheet")
    page.get_by_role("button", name="Apply Filters").click()

    expect(page.locator("#result_list")).to_be_visible()
    assert shown_event_ids(page) == {shop_events["web_purchase_new"].pk}
    screenshot(page, "events-filtered")

    # The detail page shows the payload.
    page.locator(f"#result_list a[href*='/customerevent/{shop_events['web_purchase_new'].pk}/']").click()
    expect(page.locator("pre")).to_contain_text('"name": "web_purchase_new"')
    screenshot(page, "event-detail")


def test_data_source_write_key_is_shown_once_and_rotates_after_confirmation(page: Page, transactional_db):
    user_create(username="owner", password=PASSWORD, is_superuser=True)
    admin_login(page, username="owner", password=PASSWORD)

    page.goto("/admin/cdp/datasource/add/")
    page.fill("input[name='name']", "Newsletter")
    page.fill("input[name='slug']", "newsletter")
    page.select_option("select[name='type']", "email")
    page.locator("button[name='_save']").click()
    first_key = page.locator("[data-testid=secret]").input_value()
    assert first_key.startswith("wk_")
    screenshot(page, "data-source-key-once")

    page.get_by_role("link", name="I have saved it").click()
    expect(page.locator("body")).not_to_contain_text(first_key)
    page.get_by_role("link", name="Rotate write key").click()
    expect(page.locator("body")).to_contain_text("stops working")
    screenshot(page, "data-source-rotate-confirm")
    page.get_by_role("button", name="Rotate write key").click()
    second_key = page.locator("[data-testid=secret]").input_value()
    assert second_key.startswith("wk_") and second_key != first_key
