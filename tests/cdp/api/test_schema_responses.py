"""The API's real answers, on demo data, match the OpenAPI schema it publishes: every field documented with its type
and nullability, the pagination shape, the status codes and the error bodies (tests/openapi.py)."""

import re

import pytest
import yaml

from cdp.services.demo import demo_data_load
from emails.services.channel import channel_update
from stitching.models import HubReview, Identifier
from stitching.services.engine import stitch_pending, system_source_get
from tests.conftest import client_for
from tests.emails.conftest import smtp_server  # noqa: F401 - a fixture
from tests.openapi import SchemaResponses

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(client) -> SchemaResponses:
    response = client.get("/api/schema/")
    assert response.status_code == 200
    return SchemaResponses(yaml.safe_load(response.content))


@pytest.fixture
def api(admin_user, schema):
    """The admin's API client; each call's answer is checked against the schema, the differences collected."""
    client = client_for(admin_user)
    client.problems = []
    client.schema_paths = schema.schema["paths"]

    def call(method: str, path: str, data=None, **extra):
        """`data`: the query of a GET, else the JSON body."""
        response = getattr(client, method.lower())(
            path, data, **({} if method == "GET" else {"format": "json"}), **extra
        )
        client.problems += schema.problems(method, path, response)
        return response

    client.call = call
    return client


@pytest.fixture
def demo(api, smtp_server):  # noqa: F811 - the fixture imported above
    """Demo data (customers, events from four sources, segments, a CSV destination), a refused link and a hub review,
    and an email channel."""
    demo_data_load(customers=25)
    event = {
        "source_id": "crm",
        "type": "lead",
        "event_time": "2026-11-01T10:00:00Z",
        "payload": {"email": "undefined"},
    }
    api.call("POST", "/api/events/", [event])  # a junk email: a refused link
    while stitch_pending().remaining:
        pass
    HubReview.objects.create(identifier=Identifier.objects.filter(category_id="email").first(), entity_count=20)
    channel_update(
        provider="smtp", sender_email="news@shop.example.com", smtp_host="127.0.0.1", smtp_port=smtp_server.port,
        smtp_security="none", public_base_url="http://shop.example.com",
    )  # fmt: skip


# Lists whose first row's id opens the detail paths below them.
LISTS = [
    "/api/users/", "/api/user_roles/", "/api/tokens/", "/api/data_sources/", "/api/global_settings/changes/",
    "/api/events/", "/api/customer_entities/", "/api/attributes/", "/api/stitching_categories/",
    "/api/stitching_rules/", "/api/stitching_blocked_values/", "/api/stitching_refused_links/",
    "/api/stitching_hub_reviews/", "/api/segments/", "/api/tags/", "/api/trash/segments/",
    "/api/segment_export_destinations/", "/api/segment_exports/", "/api/segment_export_schedules/",
    "/api/notifications/", "/api/emails/", "/api/email_templates/", "/api/email_campaigns/",
]  # fmt: skip


def _first_id(body) -> str | None:
    rows = body.get("results") if isinstance(body, dict) else body
    if not rows:
        return None
    row = rows[0]
    return str(row.get("id", row.get("email", row.get("key"))))


def test_list_and_detail_answers_match_the_schema(api, demo, django_capture_on_commit_callbacks):
    consent = {"operator": "and", "children": [{"attribute": "email_consent", "operator": "is_true"}]}
    body = {"name": "Consent", "tags": ["vip"], "conditions": consent}
    segment = api.call("POST", "/api/segments/", body).json()["id"]
    api.call("POST", f"/api/segments/{segment}/notes/", {"text": "For the spring campaign."})
    analyst = [row for row in api.call("GET", "/api/users/").json()["results"] if row["username"] == "analyst"][0]
    api.call("POST", f"/api/segments/{segment}/acl/", {"user": analyst["id"], "permission": "view"})
    api.call("POST", "/api/segments/", {"name": "Old", "conditions": {"operator": "and", "children": []}})
    api.call("DELETE", f"/api/segments/{api.call('GET', '/api/segments/', {'q': 'Old'}).json()['results'][0]['id']}/")
    api.call("POST", f"/api/segments/{segment}/size_snapshot/")
    destination = api.call("GET", "/api/segment_export_destinations/").json()["results"][0]["id"]
    with django_capture_on_commit_callbacks(execute=True):  # the export runs (in-process) and notifies
        api.call("POST", "/api/segment_exports/", {"segment": segment, "destination": destination})
    api.call("POST", "/api/segment_export_schedules/", {"segment": segment, "destination": destination})
    api.call("POST", "/api/tokens/", {"name": "CRM sync"})
    api.call("POST", "/api/stitching_blocked_values/", {"value": "n/a", "reason": "placeholder"})
    api.call("PATCH", "/api/global_settings/display_timezone", {"value": "Europe/Prague"})
    body = {"name": "Spring", "subject": "Hi {{ email }}", "html_body": "<a href='{{ unsubscribe_url }}'>x</a>"}
    template = api.call("POST", "/api/email_templates/", body).json()
    with django_capture_on_commit_callbacks(execute=True):  # the campaign is sent
        api.call("POST", "/api/email_campaigns/", {"name": "Spring", "template": template["id"], "segment_id": segment})
    assert api.problems == []

    for path in LISTS:
        body = api.call("GET", path).json()
        api.call("GET", path, {"load_full_structure": 1})
        first = _first_id(body)
        assert first is not None, f"{path} is empty: nothing to check its rows and detail with"
        details = [p for p in api.schema_paths if p.startswith(path + "{") and p.count("{") == 1]
        for template in details:
            if "get" in api.schema_paths[template]:
                detail = re.sub(r"\{[^}]+\}", first, template)
                api.call("GET", detail)
                api.call("GET", detail, {"load_full_structure": 1})

    for sub in ["acl", "notes"]:
        rows = api.call("GET", f"/api/segments/{segment}/{sub}/").json()["results"]
        api.call("GET", f"/api/segments/{segment}/{sub}/{rows[0]['id']}/")
    customer = api.call("GET", "/api/customer_entities/").json()["results"][0]["id"]
    email = api.call("GET", "/api/emails/").json()["results"][0]["email"]
    for path, query in [
        ("/api/global_settings/", {}), ("/api/users/me", {}), ("/api/channels/email", {}),
        ("/api/segments/operators/", {}), ("/api/segment_export_destinations/kinds/", {}),
        (f"/api/segments/{segment}/customers/", {}), (f"/api/segments/{segment}/customers_count/", {}),
        (f"/api/segments/{segment}/insights/", {"attributes": "email_consent"}),
        (f"/api/segments/{segment}/overlap/", {"with": segment}),
        (f"/api/segments/{segment}/attribute_value_counts/", {"attribute": "ps_email_address"}),
        ("/api/attributes/total_revenue/value_counts/", {}), ("/api/customers/search/", {"q": email}),
        (f"/api/customer_entities/{customer}/attributes/", {}), (f"/api/customer_entities/{customer}/events/", {}),
        (f"/api/customer_entities/{customer}/event_counts/", {}), (f"/api/customer_entities/{customer}/changes/", {}),
        (f"/api/customer_entities/{customer}/stitching_graph/", {}),
    ]:  # fmt: skip
        api.call("GET", path, query)

    assert api.problems == []


def test_error_answers_match_the_schema(api, demo):
    """Refusals the services make (an object in use, a state that does not allow it, a customer merged or erased)
    are documented with their status and body."""
    role = api.call("GET", "/api/user_roles/").json()["results"][0]["id"]
    api.call("DELETE", f"/api/user_roles/{role}/")  # assigned to a user
    api.call("DELETE", "/api/attributes/email_consent/")  # a segment uses it
    api.call("DELETE", "/api/stitching_categories/email/")  # rules use it
    sources = {row["slug"]: row["id"] for row in api.call("GET", "/api/data_sources/").json()["results"]}
    api.call("DELETE", f"/api/data_sources/{sources['web']}/")  # it has events
    api.call("POST", f"/api/data_sources/{system_source_get().pk}/rotate_write_key/")  # the system source has none
    api.call("GET", "/api/emails/not-an-address/")
    api.call("POST", "/api/events/", [{"source_id": "nowhere", "type": "x", "event_time": "2026-01-01T00:00:00Z"}])
    api.call("POST", "/api/events/", {"nothing": 1})
    api.call("POST", "/api/emails/block/", {"email": "qa@example.com", "reason": "test"})
    api.call("POST", "/api/channels/email/send_test", {"to": "qa@example.com"})
    customer = api.call("GET", "/api/customer_entities/").json()["results"][0]["id"]
    assert api.call("POST", f"/api/customer_entities/{customer}/erase/").status_code == 200
    gone = api.call("GET", f"/api/customer_entities/{customer}/")
    assert gone.status_code == 404 and gone.json()["erased"] is True

    statuses = sorted({problem.split(":")[0] for problem in api.problems})
    assert api.problems == [], statuses


def test_public_endpoint_answers_match_the_schema(client, schema, web_source):
    """/v1/* and /wbs are described by a hook (cdp.api.schema_public), not by serializers: their bodies too."""
    import base64

    auth = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{web_source.plain_write_key}:".encode()).decode()}
    track = {"userId": "u-1", "event": "Order Completed", "properties": {"revenue": 42}}
    answers = [
        ("POST", "/v1/track", client.post("/v1/track", track, content_type="application/json", **auth)),
        ("POST", "/v1/batch", client.post("/v1/batch", {"batch": [{"type": "track", **track}, {"type": "bogus"}]},
                                          content_type="application/json", **auth)),
        ("POST", "/v1/batch", client.post("/v1/batch", {"batch": [{"type": "bogus"}]}, content_type="application/json",
                                          **auth)),
        ("POST", "/v1/track", client.post("/v1/track", "{bad", content_type="application/json", **auth)),
        ("POST", "/v1/track", client.post("/v1/track", track, content_type="application/json")),
        ("GET", "/wbs", client.get("/wbs")),
        ("GET", "/wbs", client.get("/wbs", {"attribute": "ps_email_address", "value": "x@example.com", "segment": 9})),
    ]  # fmt: skip

    assert [answer.status_code for _, _, answer in answers] == [200, 200, 400, 400, 401, 400, 400]
    assert [problem for method, path, answer in answers for problem in schema.problems(method, path, answer)] == []


def test_errors_of_list_items_are_named_by_their_path_as_documented(api):
    """A list field's item (`ids.0`) or a nested field had its errors nested one level deeper ({"ids": {"0": [...]}}),
    which neither the README's nor the schema's {"<field>": ["<message>"]} allows: a generated client failed to read
    them. Each is now named by its path, as `message` names it."""
    marked = api.call("POST", "/api/notifications/mark_read/", {"ids": [{}]})
    role = api.call("POST", "/api/user_roles/", {"name": "Fuzz", "features": ["segments_view", "no_such_feature"]})

    assert marked.status_code == 400 and marked.json()["errors"] == {"ids.0": ["A valid integer is required."]}
    assert marked.json()["message"] == "ids.0: A valid integer is required."
    assert role.status_code == 400 and list(role.json()["errors"]) == ["features.1"]
    assert api.problems == []


def test_a_bad_idempotency_key_on_a_post_without_a_body_is_a_documented_400(api):
    """The 400 for a bad Idempotency-Key header was documented only on POSTs that take a body or a query."""
    rotated = api.call("POST", "/api/channels/email/rotate_webhook_secret", HTTP_IDEMPOTENCY_KEY="")

    assert rotated.status_code == 400 and "Idempotency-Key" in rotated.json()["message"]
    assert api.problems == []


def test_a_create_naming_a_segment_the_user_cannot_see_is_a_documented_404(api):
    """Exports, schedules and campaigns look the body's segment up under the ACL and answer 404 for one the user may
    not see (as for one that does not exist): the schema did not list that 404."""
    destination = api.call("POST", "/api/segment_export_destinations/", {"name": "Files", "kind": "csv", "config": {}})
    template = api.call("POST", "/api/email_templates/", {"name": "T", "subject": "Hi", "html_body": "<p>Hi</p>"})
    missing = 999_999

    answers = [
        api.call("POST", "/api/segment_exports/", {"segment": missing, "destination": destination.json()["id"]}),
        api.call(
            "POST", "/api/segment_export_schedules/", {"segment": missing, "destination": destination.json()["id"]}
        ),
        api.call(
            "POST", "/api/email_campaigns/", {"name": "C", "template": template.json()["id"], "segment_id": missing}
        ),
    ]

    assert [answer.status_code for answer in answers] == [404, 404, 404], [answer.content for answer in answers]
    assert api.problems == []
