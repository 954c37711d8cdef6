"""An analyst looks at an attribute in the Business Explorer: whether values are up to date, how many customers
have one, and its most frequent values drawn as bars."""

import re

import pytest
from playwright.sync_api import Page, expect

from cdp.models import Attribute, CustomerEntity, StaleEntity
from cdp.services import attributes as svc
from cdp.services.auth import user_create
from tests.browser.conftest import admin_login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "Attr1bute-admin-pass!"


@pytest.fixture
def stages(transactional_db):
    svc.attribute_create(id="stage", name="Lifecycle stage", computation="last_value", data_type="string",
                         path="lifecycle_stage")  # fmt: skip
    StaleEntity.objects.all().delete()  # (the new definition queued nobody: no customers yet)
    for stage, how_many in (("lead", 6), ("customer", 3), ("loyal customer", 1)):
        CustomerEntity.objects.bulk_create(CustomerEntity(attributes={"stage": [stage]}) for _ in range(how_many))
    CustomerEntity.objects.bulk_create(CustomerEntity(attributes={}) for _ in range(10))
    waiting = CustomerEntity.objects.first()
    StaleEntity.objects.create(entity_id=waiting.pk)


def test_the_attribute_page_draws_its_values(page: Page, stages):
    user_create(username="analyst", password=PASSWORD, is_superuser=True)
    admin_login(page, username="analyst", password=PASSWORD)

    page.goto("/admin/cdp/attribute/")
    expect(page.locator("#attributes-status")).to_contain_text("Recomputing: 1 customer waiting")

    page.goto("/admin/cdp/attribute/stage/change/")
    expect(page.locator("#attribute-coverage")).to_contain_text("10 of 20 customers (50.0 %) have a value")
    rows = page.locator("#attribute-values .attribute-value-row")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("lead")
    expect(rows.nth(0)).to_contain_text("6")
    expect(rows.nth(2)).to_contain_text("loyal customer")
    widths = [rows.nth(i).locator("td:nth-child(2) div").bounding_box()["width"] for i in range(3)]
    assert widths[0] > widths[1] > widths[2] > 0
    assert widths[0] == pytest.approx(widths[1] * 2, rel=0.1)
    colour = rows.nth(0).locator("td:nth-child(2) div").evaluate("e => getComputedStyle(e).backgroundColor")
    assert colour not in ("rgba(0, 0, 0, 0)", "transparent"), colour
    screenshot(page, "attribute-values")

    StaleEntity.objects.all().delete()
    page.goto("/admin/cdp/attribute/")
    expect(page.locator("#attributes-status")).to_have_text(re.compile(r"up to date"))


@pytest.fixture
def activity(transactional_db):
    svc.attribute_create(id="seen", name="Last seen", computation="last_event_time", data_type="datetime")
    svc.attribute_create(id="spent", name="Spent", computation="sum", data_type="float", path="amount", unit="EUR")
    StaleEntity.objects.all().delete()
    rows = [
        ("2026-01-05T10:00:00.000000Z", 0),
        ("2026-01-20T10:00:00.000000Z", 5),
        ("2026-03-02T10:00:00.000000Z", 100),
    ]
    CustomerEntity.objects.bulk_create(
        CustomerEntity(attributes={"seen": [seen], "spent": [spent]}) for seen, spent in rows
    )


def test_times_are_drawn_per_month_and_numbers_in_ranges(page: Page, activity):
    user_create(username="analyst", password=PASSWORD, is_superuser=True)
    admin_login(page, username="analyst", password=PASSWORD)

    page.goto("/admin/cdp/attribute/seen/change/")
    expect(page.locator("#attribute-values-kind")).to_contain_text("per month")
    rows = page.locator("#attribute-values .attribute-value-row")
    expect(rows).to_have_count(2)  # months with values only, oldest first
    expect(rows.nth(0)).to_contain_text("2026-01")
    expect(rows.nth(0)).to_contain_text("2")
    expect(rows.nth(1)).to_contain_text("2026-03")

    page.goto("/admin/cdp/attribute/spent/change/")
    expect(page.locator("#attribute-values-kind")).to_contain_text("ranges (EUR)")
    rows = page.locator("#attribute-values .attribute-value-row")
    # Ten equal ranges labelled by their bounds, the empty ones too: 0 and 5 in the first, 100 in the last.
    expect(rows).to_have_count(10)
    expect(rows.nth(0)).to_contain_text("0 – 10")
    expect(rows.nth(0)).to_contain_text("2")
    expect(rows.nth(1)).to_contain_text("10 – 20")
    expect(rows.nth(9)).to_contain_text("90 – 100")
    screenshot(page, "attribute-values-ranges")


def test_the_form_shows_the_fields_that_apply_to_the_computation(page: Page, transactional_db, default_categories):
    user_create(username="definer", password=PASSWORD, is_superuser=True)
    admin_login(page, username="definer", password=PASSWORD)
    page.goto("/admin/cdp/attribute/add/")

    def shown() -> set[str]:
        return {name for name in ("category", "path", "event_types", "sources", "fields")
                if page.locator(f"#id_{name}, #id_{name}_from").first.is_visible()}  # fmt: skip

    page.select_option("#id_computation", "count")
    page.select_option("#id_data_type", "int")
    expect(page.locator("#id_path")).to_be_hidden()
    assert shown() == {"event_types", "sources"}
    page.select_option("#id_computation", "identifier_values")
    page.select_option("#id_data_type", "string")
    expect(page.locator("#id_category")).to_be_visible()
    assert shown() == {"category"}
    # A category picked, then another computation: the hidden category is not sent on (no error on it).
    page.select_option("#id_category", "email")
    page.select_option("#id_computation", "last_value")
    expect(page.locator("#id_path")).to_be_visible()
    assert shown() == {"path", "event_types", "sources"}
    page.select_option("#id_data_type", "compound")
    expect(page.locator("#id_fields")).to_be_visible()
    assert shown() == {"event_types", "sources", "fields"}
    page.select_option("#id_data_type", "string")
    page.fill("#id_id", "last_plan")
    page.fill("#id_name", "Last plan")
    page.fill("#id_path", "properties.plan")
    page.locator("button[name=_save]").click()
    expect(page.get_by_text("was added successfully")).to_be_visible()
    saved = Attribute.objects.get(pk="last_plan")
    assert (saved.computation, saved.category, saved.path) == ("last_value", "", "properties.plan")
    screenshot(page, "attribute-form-conditional")
