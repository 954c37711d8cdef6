"""An administrator tightens a stitching limit to a time window in the admin and sees it in the list."""

import pytest
from playwright.sync_api import Page, expect

from cdp.services.auth import user_create
from stitching.models import StitchingCategory
from stitching.services.defaults import default_categories_ensure
from tests.browser.conftest import admin_login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "St1tching-admin-pass!"


def test_a_category_limit_gets_a_window_of_days(page: Page):
    default_categories_ensure()
    user_create(username="identity", password=PASSWORD, is_superuser=True)
    admin_login(page, username="identity", password=PASSWORD)
    page.goto("/admin/stitching/stitchingcategory/email/change/")

    page.fill("#id_limit_window_days", "30")
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.locator("#result_list")).to_contain_text("5 per 30 days")
    assert StitchingCategory.objects.get(pk="email").limit_window_days == 30
    screenshot(page, "stitching-categories-window")

    # A window without a limit is refused with a message next to the field.
    page.goto("/admin/stitching/stitchingcategory/cookie/change/")
    page.fill("#id_limit_window_days", "7")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("A window needs a limit per customer to apply to.")).to_be_visible()
    assert StitchingCategory.objects.get(pk="cookie").limit_window_days is None
