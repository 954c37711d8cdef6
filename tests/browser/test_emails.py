"""Email pages in a real browser: subscribe (errors under the field, double opt-in over real SMTP, the link
confirms), the prefilled unsubscribe page, and block / unblock from the customer profile in the admin."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from cdp.models import CustomerEvent
from cdp.services.auth import user_create
from emails.models import EmailAddress
from emails.services.channel import channel_update
from emails.services.state import email_block, email_consent_change
from stitching.services.engine import stitch_pending
from tests.browser.conftest import admin_login, screenshot
from tests.emails import conftest as email_fixtures
from tests.emails.servers import body_text

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "Em4il-admin-pass!"
smtp_server = email_fixtures.smtp_server  # the loopback SMTP server fixture of tests/emails


@pytest.fixture
def channel(transactional_db, smtp_server, live_server):
    return channel_update(
        provider="smtp", sender_email="news@shop.example.com", smtp_host="127.0.0.1", smtp_port=smtp_server.port,
        smtp_security="none", public_base_url=live_server.url,
    )  # fmt: skip


def test_subscribe_page_shows_errors_under_the_field_and_opt_in_link_confirms(page: Page, channel, smtp_server):
    admin = user_create(username="admin", password=PASSWORD, is_superuser=True)
    email_block(email="blocked@example.com", reason="spam trap", user=admin)
    page.goto("/email/subscribe.html")
    page.fill("#email", "not an address")
    page.click("button[type=submit]")
    expect(page.locator("#email-error")).to_have_text("Email address is invalid")
    page.fill("#email", "blocked@example.com")
    page.click("button[type=submit]")
    expect(page.locator("#email-error")).to_have_text("Email address is blocked")
    page.fill("#email", "Reader@Example.com")
    page.click("button[type=submit]")
    expect(page.locator("#result")).to_contain_text("Check your inbox")
    screenshot(page, "email-subscribe-done")

    [message] = smtp_server.inbox.wait_for(1)
    link = re.search(r"(http://\S+/emails/confirm\?token=\S+)", body_text(message)).group(1)
    page.goto(link)
    expect(page.locator("#confirm-ok")).to_contain_text("reader@example.com")
    assert EmailAddress.objects.get(email="reader@example.com").consent is True
    # Subscribed now: the page says so under the field.
    page.goto("/email/subscribe.html?email=reader@example.com")
    expect(page.locator("#email")).to_have_value("reader@example.com")
    page.click("button[type=submit]")
    expect(page.locator("#email-error")).to_have_text("Email address is already subscribed")


def test_unsubscribe_page_is_prefilled_and_unsubscribes(page: Page, channel):
    email_consent_change(email="ann@example.com", consent=True, type="subscription_imported")
    page.goto("/email/unsubscribe.html?email=ann%40example.com&campaign_id=7&campaign_name=Spring+sale"
              "&subject=Hello&message_id=m-7")  # fmt: skip
    expect(page.locator("#email")).to_have_value("ann@example.com")
    expect(page.locator("main")).to_contain_text("Spring sale")
    page.click("button[type=submit]")
    expect(page.locator("#result")).to_contain_text("You have been unsubscribed")
    address = EmailAddress.objects.get(email="ann@example.com")
    assert address.consent is False
    event = CustomerEvent.objects.get(type="unsubscribe")
    assert event.payload["campaign"] == {"id": "7", "name": "Spring sale"} and event.payload["message_id"] == "m-7"
    # Again: not subscribed any more (304), said in words.
    page.goto("/email/unsubscribe.html?email=ann%40example.com")
    page.click("button[type=submit]")
    expect(page.locator("#result")).to_contain_text("not subscribed")


def test_block_and_unblock_from_the_customer_profile(page: Page, channel):
    # A customer known from an imported consent, stitched by email as every email event is.
    email_consent_change(email="ann@example.com", consent=True, type="subscription_imported")
    stitch_pending()
    entity = CustomerEvent.objects.get(type="subscription_imported").customer_entity
    user_create(username="marketer", password=PASSWORD, is_superuser=True)
    admin_login(page, username="marketer", password=PASSWORD)
    page.goto(f"/admin/cdp/customerentity/{entity.pk}/change/")
    row = page.locator('#profile-emails [data-email="ann@example.com"]')
    expect(row).to_contain_text("subscribed")
    row.locator(".email-block").click()
    page.fill("#id_reason", "   ")
    page.locator("#reason-form button[type=submit]").click()
    expect(page.locator("#reason-error")).to_contain_text("required")
    page.fill("#id_reason", "Asked us by phone")
    page.locator("#reason-form button[type=submit]").click()
    expect(page).to_have_url(re.compile(rf"/admin/cdp/customerentity/{entity.pk}/change/"))
    expect(row).to_contain_text("blocked (Asked us by phone)")
    screenshot(page, "email-profile-blocked")
    address = EmailAddress.objects.get(email="ann@example.com")
    assert address.blocked and address.blocked_by.startswith("marketer (")
    row.locator(".email-unblock").click()
    page.fill("#id_reason", "Resolved")
    page.locator("#reason-form button[type=submit]").click()
    expect(row.locator(".email-block")).to_be_visible()
    assert EmailAddress.objects.get(email="ann@example.com").blocked is False


def test_import_upload_and_campaign_from_the_admin(page: Page, channel, smtp_server, tmp_path):
    from cdp.models import Attribute, CustomerEntity
    from emails.services.setup import emails_setup_ensure
    from emails.services.templates import template_create
    from segments.services import segment_create
    from stitching.models import Identifier

    emails_setup_ensure()
    admin = user_create(username="marketer", password=PASSWORD, is_superuser=True)
    admin_login(page, username="marketer", password=PASSWORD)

    # A contact list: two good rows, one bad.
    csv_file = tmp_path / "contacts.csv"
    csv_file.write_text("email,consent,timestamp\nann@example.com,true,2024-01-01T00:00:00\nbob@example.com,no,\n"
                        "broken,yes,\n")  # fmt: skip
    page.goto("/admin/emails/job/add/")
    page.select_option("#id_kind", "contacts_import")
    page.set_input_files("#id_file", str(csv_file))
    page.locator("#em-form button[type=submit]").click()
    expect(page.locator("body")).to_contain_text("3 / 3 rows")
    expect(page.locator("body")).to_contain_text("2 loaded, 0 already loaded, 1 bad row(s)")
    expect(page.locator("body")).to_contain_text("line 4")
    screenshot(page, "email-import-done")

    # A campaign to a segment holding ann (consent) and bob (unsubscribed).
    Attribute.objects.update_or_create(id="vip", defaults={"name": "VIP", "data_type": "bool",
                                                            "computation": "last_value", "path": "vip"})  # fmt: skip
    for n, email in enumerate(["ann@example.com", "bob@example.com"]):
        entity = CustomerEntity.objects.create(id=f"{n}c" * 16, attributes={"vip": [True]})
        Identifier.objects.update_or_create(category_id="email", value=email, defaults={"customer_entity": entity})
    segment = segment_create(owner=admin, name="VIPs", conditions={"attribute": "vip", "operator": "is_true"})
    template = template_create(name="News", subject="News for {{ email }}", text_body="Hello {{ email }}")
    page.goto("/admin/emails/campaign/add/")
    page.fill("#id_name", "January news")
    page.select_option("#id_template", str(template.pk))
    page.select_option("#id_segment", str(segment.pk))
    page.locator("#em-form button[type=submit]").click()
    expect(page.locator("body")).to_contain_text("Sent 1 · failed 0 · pending 0 · skipped unsubscribed: 1")
    screenshot(page, "email-campaign-done")
    assert [m["To"] for m in smtp_server.inbox.wait_for(1)] == ["ann@example.com"]
