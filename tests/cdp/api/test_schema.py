import pytest
import yaml

pytestmark = pytest.mark.django_db


def test_openapi_schema_lists_every_endpoint(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    paths = set(schema["paths"])
    for expected in [
        "/api/users/login",
        "/api/users/logout",
        "/api/users/me",
        "/api/users/",
        "/api/user_roles/",
        "/api/tokens/",
        "/api/data_sources/",
        "/api/data_sources/{id}/rotate_write_key",
        "/api/global_settings/",
        "/api/global_settings/{key}",
        "/api/events/",
        "/api/events/{id}/",
        "/api/customer_entities/",
    ]:
        assert any(path.rstrip("/?") == expected.rstrip("/") for path in paths), expected
    assert "ApiToken" in schema["components"]["securitySchemes"]


def test_swagger_ui_is_served(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
