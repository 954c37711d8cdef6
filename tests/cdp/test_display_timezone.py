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


@pytest.mark.parametrize("name", ["localtime", "posixrules", "Factory"])
def test_host_files_that_are_not_time_zones_are_refused(admin_client, name):
    """'localtime' was taken (a file of the host's zoneinfo directory): the server's own zone, and on a host
    without that file every admin page failed."""
    response = admin_client.patch(
        "/api/global_settings/display_timezone", {"value": name}, content_type="application/json"
    )
    assert response.status_code == 400
    assert "display_timezone must be an IANA time zone name" in response.json()["message"]


def test_a_stored_zone_this_host_cannot_load_shows_utc_instead_of_failing(client, admin_user, web_source):
    """A value saved where the time zone database knew it (or before validation was stricter) made every admin
    page a 500, the global settings page included; now the admin shows UTC and logs a warning."""
    from cdp.models import GlobalSetting

    _one_event(web_source)
    GlobalSetting.objects.create(key="display_timezone", value="Mars/Olympus_Mons")
    global_settings_cache_clear()
    client.force_login(admin_user)

    page = client.get("/admin/cdp/customerevent/")
    settings_page = client.get("/admin/cdp/globalsetting/")

    assert page.status_code == 200
    assert "2025-01-15 10:00:00 UTC" in page.content.decode()
    assert settings_page.status_code == 200
