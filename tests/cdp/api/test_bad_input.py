"""Garbage at every endpoint gets a 4xx with the JSON error shape, never a 500."""

import pytest
import yaml

from cdp.api.pagination import MAX_OFFSET

pytestmark = pytest.mark.django_db

QUERIES = [
    "limit=-5", "offset=x", "limit=1e9", "load_full_structure=yes", "source=%00", "type=" + "x" * 5000,
    "event_time_from=2025-13-45", "customer_entity=%ff%fe", "role=abc", "user=abc", "active=perhaps",
    "source=%C2%B2", "offset=99999999999999999999", "limit=99999999999999999999",
]  # fmt: skip
BODIES = ["{", "[]", "null", '"text"', "[1,2,3]", '{"value": NaN}', '{"a": "\\u0000"}', "x" * 10]


def _paths(client) -> list[str]:
    schema = yaml.safe_load(client.get("/api/schema/").content)
    paths = []
    for path in schema["paths"]:
        concrete = path.replace("{id}", "1").replace("{key}", "display_timezone").replace("/?", "/")
        paths.append(concrete)
    return paths


def test_garbage_query_strings_never_500(admin_client, client):
    for path in _paths(client):
        for query in QUERIES:
            response = admin_client.get(f"{path}?{query}")
            assert response.status_code < 500, (path, query, response.content[:200])


def test_garbage_bodies_never_500(admin_client, client, web_source):
    for path in _paths(client):
        for method in ("post", "patch", "put"):
            for body in BODIES:
                response = getattr(admin_client, method)(path, body, content_type="application/json")
                assert response.status_code < 500, (method, path, body, response.content[:200])
                if response.status_code >= 400 and response.get("Content-Type", "").startswith("application/json"):
                    assert response.json()["status"] == "error"


def test_an_offset_past_the_maximum_is_a_400_naming_it(admin_client):
    assert admin_client.get(f"/api/events/?offset={MAX_OFFSET}").json()["results"] == []
    response = admin_client.get(f"/api/events/?offset={MAX_OFFSET + 1}")
    assert response.status_code == 400
    assert response.json()["message"] == f"offset: must be at most {MAX_OFFSET}"


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/track", "/v1/identify"])
def test_segment_endpoints_never_500_on_garbage(client, web_source, path):
    for body in [*BODIES, '{"batch": "x"}', '{"batch": [null, 1, "x", {}]}', '{"userId": {"a": 1}}']:
        response = client.post(path, body, content_type="application/json", HTTP_AUTHORIZATION=_basic(web_source))
        assert 200 <= response.status_code < 500, (path, body, response.content[:200])


def _basic(source) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{source.plain_write_key}:".encode()).decode()
