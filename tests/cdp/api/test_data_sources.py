import pytest

from cdp.models import DataSource
from cdp.services.data_sources import data_source_by_write_key

pytestmark = pytest.mark.django_db


def test_creating_a_source_shows_the_write_key_once(admin_client):
    response = admin_client.post("/api/data_sources/", {"slug": "app", "name": "App", "type": "mobile"}, format="json")
    assert response.status_code == 201
    key = response.json()["write_key_plain"]
    assert data_source_by_write_key(key).slug == "app"
    detail = admin_client.get(f"/api/data_sources/{response.json()['id']}/").json()
    assert "write_key_plain" not in detail
    assert detail["write_key"] == key[:10] + "…"
    assert DataSource.objects.get(slug="app").write_key_hash != key


def test_rotating_the_write_key_stops_the_old_one(admin_client, web_source):
    response = admin_client.post(f"/api/data_sources/{web_source.id}/rotate_write_key")
    assert response.status_code == 200
    assert data_source_by_write_key(web_source.plain_write_key) is None
    assert data_source_by_write_key(response.json()["write_key"]) == web_source


def test_bad_type_and_slug_are_named(admin_client):
    response = admin_client.post("/api/data_sources/", {"slug": "bad slug!", "name": "x", "type": "fax"}, format="json")
    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"slug", "type"}


def test_source_with_events_cannot_be_deleted(admin_client, web_source):
    admin_client.post(
        "/api/events/",
        [{"source_id": "web", "type": "page", "event_time": "2025-01-01T00:00:00Z", "payload": {}}],
        format="json",
    )
    response = admin_client.delete(f"/api/data_sources/{web_source.id}/")
    assert response.status_code == 400
    assert "has events" in response.json()["message"]


def test_viewer_cannot_edit(analyst_client, web_source):
    assert analyst_client.get("/api/data_sources/").status_code == 200
    response = analyst_client.patch(f"/api/data_sources/{web_source.id}/", {"name": "x"}, format="json")
    assert response.status_code == 403
    assert "data_sources_edit" in response.json()["message"]
