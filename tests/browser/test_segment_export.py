"""A marketer exports a segment to CSV from the Business Explorer, watches it finish and downloads the file.

A real Celery worker runs the export, so the page's live progress polling is what shows the end."""

import csv
import io

import pytest

from tests.browser.conftest import admin_login, screenshot
from tests.segments.exports_helpers import attributes_define, csv_destination, customers_create, vip_segment

pytestmark = [pytest.mark.browser, pytest.mark.worker]


@pytest.fixture
def media(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDIA_ROOT", str(tmp_path))
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def test_export_a_segment_to_csv_from_the_admin(media, celery_worker_process, page, admin_user):
    attributes_define()
    customers_create(25)
    customers_create(5, vip=False, start=100)
    segment = vip_segment(admin_user)
    destination = csv_destination(name="Analyst CSV")
    admin_login(page, username="admin", password="Adm1n-password!")

    # The segment's page has an "Export" button: pick a destination, confirm.
    page.goto(f"/admin/segments/segment/{segment.pk}/change/")
    page.locator(f'a[href$="/segment/{segment.pk}/export/"]').click()
    page.wait_for_url(f"**/admin/segments/segmentexport/new/?segment={segment.pk}")
    assert page.locator("#id_segment").input_value() == str(segment.pk)
    page.select_option("#id_destination", str(destination.pk))
    page.click("#new-export-form button[type=submit]")
    page.get_by_text(f"Export “{segment.name}” to Analyst CSV?").wait_for()
    page.get_by_role("button", name="Start export").click()
    page.wait_for_url("**/admin/segments/segmentexport/*/change/")

    # Live progress: the page polls the export until the worker finishes it, then shows the outcome and the file.
    page.get_by_text("Finished: 25 sent, 0 skipped, 0 failed.", exact=False).wait_for(timeout=30_000)
    assert page.locator("[data-export-status]").first.inner_text() == "Finished"
    assert page.locator('[data-export-count$="-sent"]').first.inner_text() == "25"
    download_link = page.locator("a.export-download")
    assert download_link.is_visible()
    screenshot(page, "segment-export-finished")
    with page.expect_download() as info:
        download_link.click()
    rows = list(csv.reader(io.StringIO(open(info.value.path(), encoding="utf-8").read())))  # noqa: SIM115
    assert rows[0] == ["customer_entity_id", "ps_email_address", "first_name"]
    assert len(rows) == 26
    assert rows[1] == [f"{0:032x}", "c0@example.com", "Name0"]

    # The history lists it; the notification says it finished.
    page.goto("/admin/segments/segmentexport/")
    assert "Analyst CSV" in page.content()
    page.goto("/admin/notifications/notification/")
    assert "finished" in page.locator("#result_list").inner_text()
