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


def test_error_answers_are_documented_with_the_shape_they_have(client, outsider_client, analyst_client):
    schema = yaml.safe_load(client.get("/api/schema/").content)
    error = "#/components/schemas/Error"
    events = schema["paths"]["/api/events/"]
    assert {"400", "401", "403"} <= set(events["get"]["responses"])
    assert {"400", "401", "403", "413", "415"} <= set(events["post"]["responses"])
    assert schema["paths"]["/api/users/login"]["post"]["responses"]["401"]["content"]["application/json"]["schema"] == {
        "$ref": error
    }
    assert "404" in schema["paths"]["/api/tokens/{id}/"]["get"]["responses"]
    assert "403" not in schema["paths"]["/api/users/me"]["get"]["responses"]  # no feature needed: never a 403
    for path, operations in schema["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            for code, answer in operation["responses"].items():
                if code in {"401", "403", "413", "415"}:
                    assert answer["content"]["application/json"]["schema"] == {"$ref": error}, (method, path, code)

    # What the API sends has the documented required fields.
    required = set(schema["components"]["schemas"]["Error"]["required"])
    assert required <= set(client.get("/api/events/").json())  # 401
    assert required <= set(outsider_client.get("/api/events/").json())  # 403
    assert required <= set(analyst_client.get("/api/events/?limit=x").json())  # 400
    assert required <= set(analyst_client.get("/api/tokens/999999/").json())  # 404


def test_swagger_ui_is_served_from_our_own_static_files(client):
    """The page loads Swagger UI from our static files (drf-spectacular-sidecar), not a CDN: /api/docs/ works on a
    network without internet access."""
    from django.contrib.staticfiles import finders

    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui-bundle.js" in page and "cdn.jsdelivr" not in page and "unpkg" not in page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")


def test_public_endpoints_are_in_the_schema_with_every_route_and_answer(client):
    """/wbs and /v1/* are plain Django views, described by a postprocessing hook: every Segment route of the
    URLconf is there, with the answers the views give."""
    from cdp.segment_api.urls import urlpatterns

    schema = yaml.safe_load(client.get("/api/schema/").content)
    routes = {f"/v1/{pattern.pattern}" for pattern in urlpatterns}
    assert routes <= set(schema["paths"])
    operation_ids = set()
    for route in routes:
        operation = schema["paths"][route]["post"]
        operation_ids.add(operation["operationId"])
        assert {"200", "400", "401", "413", "429"} <= set(operation["responses"])
        assert "segmentWriteKey" in {name for requirement in operation["security"] for name in requirement}
    assert len(operation_ids) == len(routes)  # unique, as OpenAPI requires
    audience = schema["paths"]["/wbs"]["get"]
    assert {parameter["name"] for parameter in audience["parameters"]} == {"attribute", "value", "segment"}
    assert {"200", "400", "404", "429", "503"} <= set(audience["responses"])

    # The documented error body is what the endpoints send.
    required = set(schema["components"]["schemas"]["PublicError"]["required"])
    unknown_key = client.post(
        "/v1/track", data="{}", content_type="application/json", HTTP_AUTHORIZATION="Basic bm9wZTo="
    )
    assert unknown_key.status_code == 401
    assert required <= set(unknown_key.json())
    missing = client.get("/wbs")
    assert missing.status_code == 400
    assert required <= set(missing.json())


def test_schema_generates_without_warnings():
    """`manage.py check` (and `check --deploy`) printed three drf_spectacular warnings about enum names, and the
    schema had hashed component names (Kind0d6Enum, StatusEdbEnum)."""
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    GENERATOR_STATS.reset()
    schema = SchemaGenerator().get_schema(request=None, public=True)

    assert not GENERATOR_STATS._warn_cache, list(GENERATOR_STATS._warn_cache)
    names = set(schema["components"]["schemas"])
    assert {"DestinationKindEnum", "EventIdentifierStatusEnum"} <= names
    assert not {"Kind0d6Enum", "StatusEdbEnum"} & names


def test_every_limit_offset_and_days_query_parameter_documents_the_bounds_the_view_enforces(client):
    """Value counts, insights, the stitching graph and a customer's changes documented `limit` (and `days`, `offset`)
    as any integer, and refused 0 or 1001 with a 400: a client built from the schema (schemathesis did) sent values
    the schema allows and was refused."""
    schema = yaml.safe_load(client.get("/api/schema/").content)
    unbounded = [
        (method, path, parameter["name"])
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "query" and parameter["name"] in {"limit", "offset", "days"}
        if not {"minimum", "maximum"} <= set(parameter["schema"])
    ]
    value_counts = schema["paths"]["/api/attributes/{id}/value_counts/"]["get"]["parameters"]

    assert unbounded == []
    assert [p["schema"] for p in value_counts if p["name"] == "limit"] == [
        {"type": "integer", "minimum": 1, "maximum": 1000}
    ]


def test_value_counts_refuse_a_limit_outside_the_documented_bounds(admin_client):
    assert admin_client.get("/api/attributes/nope/value_counts/?limit=0").status_code == 400
    assert admin_client.get("/api/attributes/nope/value_counts/?limit=1001").status_code == 400
