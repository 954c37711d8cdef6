"""In a real browser: a marketer saves the seed's exclusion segment in the Business Explorer and sees the same
customer count as the API gives."""

import json

import pytest
from playwright.sync_api import Page, expect

from segments.models import Segment
from tests.browser.conftest import admin_login, screenshot
from tests.conftest import client_for
from tests.segments.conftest import EXCLUSION_TREE, customers_create, example_attributes_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "Segment-owner-pass-1!"


def test_a_marketer_saves_the_exclusion_segment_and_sees_its_count(page: Page, transactional_db):
    from cdp.features import Feature
    from cdp.services.auth import role_create, user_create

    example_attributes_create()
    customers_create()
    role = role_create(name="Marketer", features=[Feature.SEGMENTS_VIEW, Feature.SEGMENTS_EDIT])
    owner = user_create(username="owner", password=PASSWORD, role=role)
    owner.is_staff = True
    owner.save(update_fields=["is_staff"])
    admin_login(page, username="owner", password=PASSWORD)

    page.goto("/admin/segments/segment/add/")
    page.fill("#id_name", "Women 18+ who have not bought yet")
    page.fill("#id_conditions", json.dumps(EXCLUSION_TREE, indent=2))
    page.click("button[name=_continue]")
    expect(page.locator("body")).to_contain_text("was added successfully")

    segment = Segment.objects.get(name="Women 18+ who have not bought yet")
    api_count = client_for(owner).get(f"/api/segments/{segment.pk}/customers_count").json()["customers_count"]
    assert api_count == 2
    count = page.locator("xpath=//label[normalize-space()='Customers now']/../following-sibling::div//*[contains("
                         "@class, 'readonly')]")  # fmt: skip
    expect(count).to_have_text(str(api_count))
    screenshot(page, "segment-exclusion-saved")

    page.goto("/admin/segments/segment/")
    expect(page.locator("#result_list")).to_contain_text("Women 18+ who have not bought yet")
