import pytest
import yaml

from cdp.models import GlobalSettingChange

pytestmark = pytest.mark.django_db


def test_lists_every_setting_with_its_default(admin_client):
    rows = {row["key"]: row for row in admin_client.get("/api/global_settings/").json()}
    assert rows["audience_api_returned_attributes"]["value"] == []
    assert rows["public_rate_limit_per_minute"]["type"] == "integer"


def test_a_change_is_validated_stored_and_audited(admin_client, admin_user):
    response = admin_client.patch(
        "/api/global_settings/audience_api_returned_attributes", {"value": ["ps_email_address"]}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["value"] == ["ps_email_address"]
    assert response.json()["modified_by"] == "admin"
    change = GlobalSettingChange.objects.get()
    assert (change.old_value, change.new_value, change.changed_by) == ([], ["ps_email_address"], admin_user)
    changes = admin_client.get("/api/global_settings/changes").json()["results"]
    assert changes[0]["key"] == "audience_api_returned_attributes"


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("public_rate_limit_per_minute", "lots", "must be an integer"),
        ("public_rate_limit_per_minute", -5, "between 0 and"),
        ("display_timezone", "Mars/Base", "IANA time zone"),
        ("public_cors_origins", ["shop.example.com"], "not an origin"),
        ("audience_api_returned_attributes", ["ps_email_address", "ps_emial"], "no attribute with the id 'ps_emial'"),
    ],
)
def test_invalid_values_are_refused_with_the_reason(admin_client, key, value, fragment):
    response = admin_client.patch(f"/api/global_settings/{key}", {"value": value}, format="json")
    assert response.status_code == 400
    assert fragment in response.json()["message"]
    assert not GlobalSettingChange.objects.exists()


def test_unknown_setting_is_404_listing_known_ones(admin_client):
    response = admin_client.patch("/api/global_settings/nope", {"value": 1}, format="json")
    assert response.status_code == 404
    assert "display_timezone" in response.json()["message"]


def test_missing_value_is_400(admin_client):
    response = admin_client.patch("/api/global_settings/display_timezone", {}, format="json")
    assert response.status_code == 400


def test_origins_are_stored_as_browsers_send_them(admin_client):
    value = ["https://Shop.Example.com/", "https://shop.example.com", "http://localhost:3000"]
    response = admin_client.patch("/api/global_settings/public_cors_origins", {"value": value}, format="json")
    assert response.status_code == 200
    assert response.json()["value"] == ["https://shop.example.com", "http://localhost:3000"]


def test_the_change_log_is_paginated_as_its_schema_says(admin_client, client):
    for limit in (10, 20, 30):
        admin_client.patch("/api/global_settings/public_rate_limit_per_minute", {"value": limit}, format="json")
    body = admin_client.get("/api/global_settings/changes?limit=2").json()
    assert (body["count"], len(body["results"])) == (3, 2)
    assert [row["new_value"] for row in body["results"]] == [30, 20]
    schema = yaml.safe_load(client.get("/api/schema/").content)
    answer = schema["paths"]["/api/global_settings/changes/"]["get"]["responses"]["200"]["content"]
    assert answer["application/json"]["schema"] == {"$ref": "#/components/schemas/PaginatedGlobalSettingChangeList"}
