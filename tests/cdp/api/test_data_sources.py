import pytest

from cdp.models import Attribute, CustomerEvent, DataSource
from cdp.services.attributes import attribute_create
from cdp.services.data_sources import data_source_by_write_key, data_source_create
from stitching.services import engine

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


def test_the_system_source_is_reserved_and_takes_no_events(admin_client, web_source):
    """The "cdp" source holds stitching's merges and splits: a client's source under its slug would take them in, and
    events sent to it would pass for the system's (one became a customer of its own)."""
    response = admin_client.post("/api/data_sources/", {"slug": "cdp", "name": "Our CDP"}, format="json")
    assert response.status_code == 400
    assert "reserved for the system source" in response.json()["errors"]["slug"][0]
    response = admin_client.patch(f"/api/data_sources/{web_source.id}/", {"slug": "cdp"}, format="json")
    assert response.status_code == 400

    system = engine.system_source_get()
    assert admin_client.patch(f"/api/data_sources/{system.id}/", {"slug": "ours"}, format="json").status_code == 400
    response = admin_client.post(f"/api/data_sources/{system.id}/rotate_write_key")
    assert response.status_code == 400
    assert "takes no events" in response.json()["message"]

    event = {"type": "customer_entities_merged", "event_time": "2025-01-01T00:00:00Z", "payload": {}}
    batch = [{**event, "source_id": "cdp"}, {**event, "source_id": system.id}, {**event, "source_id": "web"}]
    response = admin_client.post("/api/events/", batch, format="json")
    assert response.status_code == 200
    assert [item["index"] for item in response.json()["rejected"]] == [0, 1]
    assert "takes no events from clients" in response.json()["rejected"][0]["reason"]
    assert not CustomerEvent.objects.filter(source=system).exists()


def test_the_email_channel_source_takes_no_client_events(admin_client, web_source):
    """An API client (events_create) posted a "subscription_confirmed" {"consent": true} to the source "emails":
    the email_consent attribute segments and exports use said yes while the address had never consented, and the
    address's consent record showed the forgery. The channel's events come from its own endpoints only."""
    from emails.services.setup import emails_setup_ensure

    emails = emails_setup_ensure()
    forged = {
        "type": "subscription_confirmed", "event_time": "2025-01-01T00:00:00Z",
        "payload": {"email": "victim@example.com", "consent": True},
    }  # fmt: skip
    batch = [{**forged, "source_id": "emails"}, {**forged, "source_id": emails.id}, {**forged, "source_id": "web"}]

    response = admin_client.post("/api/events/", batch, format="json")
    rotate = admin_client.post(f"/api/data_sources/{emails.id}/rotate_write_key")

    assert response.status_code == 200
    assert [item["index"] for item in response.json()["rejected"]] == [0, 1]
    assert "consent and block records" in response.json()["rejected"][0]["reason"]
    assert not CustomerEvent.objects.filter(source=emails).exists()
    assert CustomerEvent.objects.filter(source=web_source).count() == 1  # the good part of the batch
    assert rotate.status_code == 400 and "no write key" in rotate.json()["message"]


def test_a_source_an_attribute_reads_only_is_not_deleted_as_the_attribute_would_read_every_source(admin_client):
    source, _ = data_source_create(slug="kiosk", name="Kiosk")
    attribute_create(id="kiosk_visits", name="Kiosk visits", data_type="int", computation="count", sources=[source])
    data_source_create(slug="spare", name="Spare")

    response = admin_client.delete(f"/api/data_sources/{source.id}/")

    assert response.status_code == 400
    assert response.json()["message"].startswith("id: The attribute(s) kiosk_visits read only this source's events")
    assert list(Attribute.objects.get(pk="kiosk_visits").sources.all()) == [source]
    spare = DataSource.objects.get(slug="spare")
    assert admin_client.delete(f"/api/data_sources/{spare.id}/").status_code == 204
