"""Garbage at every endpoint gets a 4xx with the JSON error shape, never a 500."""

import pytest
import yaml

from cdp.api.pagination import MAX_OFFSET

pytestmark = pytest.mark.django_db

QUERIES = [
    "limit=-5", "offset=x", "limit=1e9", "load_full_structure=yes", "source=%00", "type=" + "x" * 5000,
    "event_time_from=2025-13-45", "customer_entity=%ff%fe", "role=abc", "user=abc", "active=perhaps",
    "source=%C2%B2", "offset=99999999999999999999", "limit=99999999999999999999",
    # PostgreSQL text cannot hold NUL: each of these reached a query.
    "q=%00", "q=a%00", "type=%00", "category=%00", "value=a%00", "attribute=%00", "attributes=%00", "search=%00",
    "status=%00", "customer_entity=%00", "attribute=ps_email_address&value=a%00", "%00=1",
    "from_category=email&from_value=a%00&to_category=%00&to_value=a",
]  # fmt: skip
BODIES = ["{", "[]", "null", '"text"', "[1,2,3]", '{"value": NaN}', '{"a": "\\u0000"}', "x" * 10]
# Nested deeper than Python's JSON decoder recurses, and every field name the endpoints read given a NUL and a
# lone surrogate (a "\ud800" escape: valid JSON, not UTF-8): related ids are looked up, choices echoed back.
FIELDS = ("id", "name", "category", "source", "value", "path", "decision", "normalizer", "computation", "data_type",
          "event_type", "reason", "status", "attribute", "tree", "owner")  # fmt: skip
BODIES += [
    "[" * 100_000 + "]" * 100_000,
    "{" + ", ".join(f'"{field}": "a\\u0000b"' for field in FIELDS) + "}",
    "{" + ", ".join(f'"{field}": "a\\ud800b"' for field in FIELDS) + "}",
]


def _paths(client, ids: dict[str, str] | None = None) -> list[str]:
    """The schema's paths, `{id}` filled from `ids` (path prefix -> an existing id, so the view gets past its
    lookup) or "1"."""
    schema = yaml.safe_load(client.get("/api/schema/").content)
    paths = []
    for path in schema["paths"]:
        some_id = next((value for prefix, value in (ids or {}).items() if path.startswith(prefix)), "1")
        concrete = path.replace("{id}", some_id).replace("{key}", "display_timezone").replace("/?", "/")
        paths.append(concrete)
    return paths


@pytest.fixture
def existing_ids(web_source, default_attributes) -> dict[str, str]:
    from segments.services import segment_create
    from tests.stitching.graph_builder import GraphBuilder

    graph = GraphBuilder(web_source)
    entity = graph.entity(ps_email_address=["ann@example.com"])
    graph.event(entity, identifiers=[("email", "ann@example.com")])
    segment = segment_create(owner=None, name="Everyone")
    return {
        "/api/customer_entities/": entity.pk,
        "/api/segments/": str(segment.pk),
        "/api/attributes/": "ps_email_address",
        "/api/stitching_categories/": "email",
    }


def test_garbage_query_strings_never_500(admin_client, client, existing_ids):
    for path in _paths(client, existing_ids):
        for query in QUERIES:
            response = admin_client.get(f"{path}?{query}")
            assert response.status_code < 500, (path, query, response.content[:200])


def test_garbage_bodies_never_500(admin_client, client, existing_ids):
    for path in _paths(client, existing_ids):
        for method in ("post", "patch", "put"):
            for body in BODIES:
                response = getattr(admin_client, method)(path, body, content_type="application/json")
                assert response.status_code < 500, (method, path, body, response.content[:200])
                if response.status_code >= 400 and response.get("Content-Type", "").startswith("application/json"):
                    assert response.json()["status"] == "error"


@pytest.mark.parametrize(
    "url, name",
    [
        ("/api/customers/search?q=%00", "q"),
        ("/api/customers/search?attribute=ps_email_address&value=a%00", "value"),
        ("/api/events/?type=page_view,%00", "type"),
        ("/api/stitching_rules/?category=%00", "category"),
        ("/api/stitching/path?from_category=email&from_value=a&to_category=email&to_value=b%00", "to_value"),
        ("/admin/cdp/customerevent/?customer_entity=%00", "customer_entity"),
        ("/api/events/?a%00=1", "a\\x00"),
    ],
)
def test_a_nul_in_a_query_parameter_is_a_400_naming_it(admin_client, url, name):
    response = admin_client.get(url)
    assert response.status_code == 400
    assert response.json() == {
        "status": "error",
        "message": f"{name}: must not contain NUL characters",
        "errors": {name: ["must not contain NUL characters"]},
    }


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


def test_a_nul_in_a_related_id_is_a_400_naming_the_field(admin_client, web_source):
    from tests.stitching.graph_builder import categories

    categories()
    response = admin_client.post(
        "/api/stitching_blocked_values/", {"category": "em\x00ail", "value": "a@example.com"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["message"] == "category: An id cannot contain NUL characters."


def test_a_lone_surrogate_echoed_in_an_error_is_escaped_not_a_500(admin_client):
    """DRF's "… is not a valid choice" repeats the input; a lone surrogate cannot be written as UTF-8."""
    response = admin_client.post("/api/attributes/", '{"computation": "\\ud800"}', content_type="application/json")
    assert response.status_code == 400
    assert b"\\ud800" in response.content  # escaped in the JSON text
    assert "computation" in response.json()["errors"]
