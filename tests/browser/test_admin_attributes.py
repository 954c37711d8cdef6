"""An analyst looks at an attribute in the Business Explorer: whether values are up to date, how many customers
have one, and its most frequent values drawn as bars."""

import re

import pytest
from playwright.sync_api import Page, expect

from cdp.models import CustomerEntity, StaleEntity
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
