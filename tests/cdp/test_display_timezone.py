import pytest

from cdp.services.events import event_record_build, events_ingest
from cdp.services.global_settings import global_setting_set, global_settings_cache_clear

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_settings_cache():
    global_settings_cache_clear()
    yield
    global_settings_cache_clear()


def _one_event(source) -> None:
    events_ingest(
        [event_record_build(source_id=source.id, type="page", event_time="2025-01-15T10:00:00Z", payload={"p": 1})]
    )


def test_admin_shows_times_in_the_display_time_zone(client, admin_user, web_source):
    _one_event(web_source)
    global_setting_set(key="display_timezone", value="Europe/Prague", user=admin_user)
    global_settings_cache_clear()  # on_commit does it in production; the test transaction never commits
    client.force_login(admin_user)
    page = client.get("/admin/cdp/customerevent/").content.decode()
    assert "2025-01-15 11:00:00 CET" in page


def test_api_answers_in_utc_whatever_the_display_time_zone(admin_client, admin_user, web_source):
    _one_event(web_source)
    global_setting_set(key="display_timezone", value="Europe/Prague", user=admin_user)
    global_settings_cache_clear()
    row = admin_client.get("/api/events/").json()["results"][0]
    assert row["event_time"] == "2025-01-15T10:00:00Z"
