"""Every route of the URLconf, walked: who may call it.

Each API route and method is in exactly one table below, so a new endpoint fails
`test_every_route_is_classified` until someone decides who may call it:
- FEATURES: the role features it needs (all of them). A user whose role has every feature but one of those gets a
  403 naming it; a user without a role a 403; no token a 401.
- AUTHENTICATED: any signed-in user, no feature (their own tokens, notifications, profile). No token: a 401.
- PUBLIC: no token at all, each with the reason (websites, email providers, health checks, the schema).
The admin (`admin/...`) has its own access tests (Django's permissions from the role's features).

On top of the features, routes that reach a segment, or what is made of one (exports, schedules, campaigns),
follow the segment ACL (README "ACL"): a segment the user may not see is a 404, the same answer as an id that does
not exist; one they may see but not edit is a 403 on writes. `test_segment_acl_*` walk those with real objects.
"""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from cdp.features import ALL_FEATURES, Feature
from cdp.services.auth import role_create, user_create
from segments.models import SegmentGrant
from segments.services import segment_create, segment_grant_set, segment_note_create, segment_trash
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

F = Feature

# (method, route) -> the features it needs. Routes are the URLconf's, `{name}` for each parameter.
FEATURES: dict[tuple[str, str], tuple[str, ...]] = {
    # stitching
    ("GET", "api/customer_entities/{pk}/stitching_graph"): (F.CUSTOMERS_VIEW,),
    ("GET", "api/customer_entities/{pk}/changes"): (F.CUSTOMERS_VIEW,),
    ("POST", "api/customer_entities/{pk}/erase"): (F.CUSTOMERS_ERASE,),
    ("GET", "api/stitching/path"): (F.CUSTOMERS_VIEW,),
    **{
        (method, route): (F.CUSTOMERS_VIEW,) if method == "GET" else (F.STITCHING_EDIT,)
        for route, methods in {
            "api/stitching_categories": "GET POST",
            "api/stitching_categories/{pk}": "GET PUT PATCH DELETE",
            "api/stitching_rules": "GET POST",
            "api/stitching_rules/{pk}": "GET PUT PATCH DELETE",
            "api/stitching_blocked_values": "GET POST",
            "api/stitching_blocked_values/{pk}": "GET DELETE",
            "api/stitching_refused_links": "GET",
            "api/stitching_refused_links/{pk}": "GET",
            "api/stitching_hub_reviews": "GET",
            "api/stitching_hub_reviews/{pk}": "GET",
            "api/stitching_hub_reviews/{pk}/decide": "POST",
        }.items()
        for method in methods.split()
    },
    # customers and events
    ("GET", "api/customers/search"): (F.CUSTOMERS_VIEW,),
    ("GET", "api/events"): (F.CUSTOMERS_VIEW,),
    ("POST", "api/events"): (F.EVENTS_CREATE,),
    ("GET", "api/events/{pk}"): (F.CUSTOMERS_VIEW,),
    ("GET", "api/customer_entities"): (F.CUSTOMERS_VIEW,),
    ("GET", "api/customer_entities/{pk}"): (F.CUSTOMERS_VIEW,),
    ("GET", "api/customer_entities/{pk}/attributes"): (F.CUSTOMERS_VIEW,),
    ("GET", "api/customer_entities/{pk}/event_counts"): (F.CUSTOMERS_VIEW,),
    ("GET", "api/customer_entities/{pk}/events"): (F.CUSTOMERS_VIEW,),
    ("GET", "api/attributes"): (F.CUSTOMERS_VIEW,),
    ("POST", "api/attributes"): (F.ATTRIBUTES_EDIT,),
    ("GET", "api/attributes/{pk}"): (F.CUSTOMERS_VIEW,),
    ("PUT", "api/attributes/{pk}"): (F.ATTRIBUTES_EDIT,),
    ("PATCH", "api/attributes/{pk}"): (F.ATTRIBUTES_EDIT,),
    ("DELETE", "api/attributes/{pk}"): (F.ATTRIBUTES_EDIT,),
    ("GET", "api/attributes/{pk}/value_counts"): (F.CUSTOMERS_VIEW,),
    # users, roles, data sources, settings
    **{(method, route): (F.USERS_ADMIN,) for route in ("api/users", "api/user_roles") for method in ("GET", "POST")},
    **{
        (method, route): (F.USERS_ADMIN,)
        for route in ("api/users/{pk}", "api/user_roles/{pk}")
        for method in ("GET", "PUT", "PATCH", "DELETE")
    },
    ("GET", "api/data_sources"): (F.DATA_SOURCES_VIEW,),
    ("POST", "api/data_sources"): (F.DATA_SOURCES_EDIT,),
    ("GET", "api/data_sources/{pk}"): (F.DATA_SOURCES_VIEW,),
    ("PUT", "api/data_sources/{pk}"): (F.DATA_SOURCES_EDIT,),
    ("PATCH", "api/data_sources/{pk}"): (F.DATA_SOURCES_EDIT,),
    ("DELETE", "api/data_sources/{pk}"): (F.DATA_SOURCES_EDIT,),
    ("POST", "api/data_sources/{pk}/rotate_write_key"): (F.DATA_SOURCES_EDIT,),
    ("GET", "api/global_settings"): (F.SETTINGS_EDIT,),
    ("GET", "api/global_settings/changes"): (F.SETTINGS_EDIT,),
    ("GET", "api/global_settings/{key}"): (F.SETTINGS_EDIT,),
    ("PUT", "api/global_settings/{key}"): (F.SETTINGS_EDIT,),
    ("PATCH", "api/global_settings/{key}"): (F.SETTINGS_EDIT,),
    # segments
    ("GET", "api/segments"): (F.SEGMENTS_VIEW,),
    ("POST", "api/segments"): (F.SEGMENTS_EDIT,),
    ("GET", "api/segments/operators"): (F.SEGMENTS_VIEW,),
    ("POST", "api/segments/preview_count"): (F.SEGMENTS_VIEW,),
    ("GET", "api/segments/{pk}"): (F.SEGMENTS_VIEW,),
    ("PUT", "api/segments/{pk}"): (F.SEGMENTS_EDIT,),
    ("PATCH", "api/segments/{pk}"): (F.SEGMENTS_EDIT,),
    ("DELETE", "api/segments/{pk}"): (F.SEGMENTS_EDIT,),
    ("GET", "api/segments/{pk}/attribute_value_counts"): (F.SEGMENTS_VIEW, F.CUSTOMERS_VIEW),
    ("GET", "api/segments/{pk}/customers"): (F.SEGMENTS_VIEW, F.CUSTOMERS_VIEW),
    ("GET", "api/segments/{pk}/customers_count"): (F.SEGMENTS_VIEW,),
    ("POST", "api/segments/{pk}/duplicate"): (F.SEGMENTS_EDIT,),
    ("GET", "api/segments/{pk}/insights"): (F.SEGMENTS_VIEW,),  # + customers_view for `attributes`: see below
    ("GET", "api/segments/{pk}/overlap"): (F.SEGMENTS_VIEW,),
    ("POST", "api/segments/{pk}/size_snapshot"): (F.SEGMENTS_EDIT,),
    **{
        (method, route): (F.SEGMENTS_VIEW,) if method == "GET" else (F.SEGMENTS_EDIT,)
        for route, methods in {
            "api/segments/{segment_pk}/notes": "GET POST",
            "api/segments/{segment_pk}/notes/{pk}": "GET PUT PATCH DELETE",
            "api/segments/{segment_pk}/acl": "GET POST",
            "api/segments/{segment_pk}/acl/{pk}": "GET PUT PATCH DELETE",
            "api/trash/segments": "GET",
            "api/trash/segments/{pk}": "GET DELETE",
            "api/trash/segments/{pk}/restore": "POST",
            "api/tags": "GET POST",
            "api/tags/{pk}": "GET PUT PATCH DELETE",
        }.items()
        for method in methods.split()
    },
    # exports
    ("GET", "api/segment_export_destinations"): (F.EXPORTS_RUN,),
    ("POST", "api/segment_export_destinations"): (F.DESTINATIONS_EDIT,),
    ("GET", "api/segment_export_destinations/kinds"): (F.EXPORTS_RUN,),
    ("GET", "api/segment_export_destinations/{pk}"): (F.EXPORTS_RUN,),
    ("PUT", "api/segment_export_destinations/{pk}"): (F.DESTINATIONS_EDIT,),
    ("PATCH", "api/segment_export_destinations/{pk}"): (F.DESTINATIONS_EDIT,),
    ("DELETE", "api/segment_export_destinations/{pk}"): (F.DESTINATIONS_EDIT,),
    ("GET", "api/segment_exports"): (F.EXPORTS_RUN,),
    ("POST", "api/segment_exports"): (F.EXPORTS_RUN,),
    ("GET", "api/segment_exports/{pk}"): (F.EXPORTS_RUN,),
    ("GET", "api/segment_exports/{pk}/download"): (F.EXPORTS_RUN,),
    ("GET", "api/segment_export_schedules"): (F.EXPORTS_RUN,),
    ("POST", "api/segment_export_schedules"): (F.EXPORTS_RUN,),
    ("GET", "api/segment_export_schedules/{pk}"): (F.EXPORTS_RUN,),
    ("DELETE", "api/segment_export_schedules/{pk}"): (F.EXPORTS_RUN,),
    # email channel
    ("GET", "api/channels/email"): (F.EMAILS_VIEW,),
    ("PATCH", "api/channels/email"): (F.SETTINGS_EDIT,),
    ("POST", "api/channels/email/rotate_webhook_secret"): (F.SETTINGS_EDIT,),
    ("POST", "api/channels/email/send_test"): (F.SETTINGS_EDIT,),
    ("GET", "api/email_templates"): (F.EMAILS_VIEW,),
    ("POST", "api/email_templates"): (F.EMAILS_SEND,),
    ("GET", "api/email_templates/{pk}"): (F.EMAILS_VIEW,),
    ("PUT", "api/email_templates/{pk}"): (F.EMAILS_SEND,),
    ("PATCH", "api/email_templates/{pk}"): (F.EMAILS_SEND,),
    ("DELETE", "api/email_templates/{pk}"): (F.EMAILS_SEND,),
    ("POST", "api/email_templates/{pk}/preview"): (F.EMAILS_SEND,),
    ("GET", "api/emails"): (F.EMAILS_VIEW,),
    ("GET", "api/emails/suppression_list"): (F.EMAILS_VIEW,),
    ("GET", "api/emails/{email}"): (F.EMAILS_VIEW,),
    ("POST", "api/emails/block"): (F.EMAILS_BLOCK,),
    ("POST", "api/emails/unblock"): (F.EMAILS_BLOCK,),
    ("GET", "api/email_campaigns"): (F.EMAILS_VIEW,),
    ("POST", "api/email_campaigns"): (F.EMAILS_SEND,),
    ("GET", "api/email_campaigns/{pk}"): (F.EMAILS_VIEW,),
    ("GET", "api/email_campaigns/{pk}/recipients"): (F.EMAILS_VIEW,),
    ("GET", "api/email_campaigns/{pk}/report"): (F.EMAILS_VIEW,),
    ("POST", "api/email_campaigns/{pk}/pause"): (F.EMAILS_SEND,),
    ("POST", "api/email_campaigns/{pk}/resume"): (F.EMAILS_SEND,),
}

# (method, route) -> why a signed-in user needs no feature.
AUTHENTICATED: dict[tuple[str, str], str] = {
    ("POST", "api/users/logout"): "revokes the caller's own token",
    ("DELETE", "api/users/logout"): "revokes the caller's own token",
    ("GET", "api/users/me"): "the caller's own profile and features",
    ("GET", "api/tokens"): "the caller's own tokens (users_admin: everyone's)",
    ("POST", "api/tokens"): "a token for oneself (for another user: users_admin, checked in the view)",
    ("GET", "api/tokens/{pk}"): "one of the caller's own tokens",
    ("DELETE", "api/tokens/{pk}"): "revokes one of the caller's own tokens",
    ("GET", "api/notifications"): "the caller's own notifications",
    ("GET", "api/notifications/{pk}"): "one of the caller's own notifications",
    ("POST", "api/notifications/mark_read"): "marks the caller's own notifications",
}

# route -> why it needs no token (any method the view answers).
PUBLIC: dict[str, str] = {
    "": "redirects to the admin",
    "healthz": "load balancer liveness probe",
    "readyz": "load balancer readiness probe",
    "favicon.ico": "browsers ask for it",
    "api/schema/": "the OpenAPI schema: describes the API, holds no data",
    "api/docs/": "Swagger UI over the schema",
    "api/users/login": "username + password in, a token out",
    "wbs": "Audience API, called by websites (SPEC 4); rate limited per IP",
    **{
        f"v1/{name}": "Segment-compatible ingestion, authenticated by a data source's write key"
        for name in "batch import track identify page screen alias group t i p s a g".split()
    },
    "emails/subscribe": "public subscription form (SPEC 5); rate limited",
    "emails/unsubscribe": "public unsubscribe form (SPEC 5); rate limited",
    "emails/unsubscribe/one-click": "RFC 8058 one-click unsubscribe, a signed token in the URL",
    "emails/confirm": "the double opt-in link, a signed token in the URL",
    "emails/feedback": "provider webhook, authenticated by the webhook secret",
    "emails/feedback/{provider}": "provider webhook, authenticated by the webhook secret",
    "email/subscribe.html": "default subscription page",
    "email/unsubscribe.html": "default unsubscribe page",
}

DRF_METHODS = {"get", "post", "put", "patch", "delete"}


def _route(pattern: str) -> str:
    route = pattern.replace("^", "").replace("/?$", "").replace("$", "")
    route = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", route)
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def _walk(patterns, prefix: str = ""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield _route(prefix + str(pattern.pattern)), pattern.callback


def url_routes() -> tuple[set[tuple[str, str]], set[str]]:
    """(method, route) of every DRF action, and every other route, outside the admin."""
    api, other = set(), set()
    for route, callback in _walk(get_resolver().url_patterns):
        if route.startswith("admin/") or "{format}" in route:
            continue
        actions = getattr(callback, "actions", None)
        if actions:
            api |= {(method.upper(), route) for method in actions if method in DRF_METHODS}
        else:
            other.add(route)
    return api, other


def test_every_route_is_classified():
    """A new endpoint fails here until it is put in FEATURES, AUTHENTICATED or PUBLIC."""
    api, other = url_routes()
    public_api = {(method, route) for method, route in api if route in PUBLIC}
    unclassified = sorted(api - public_api - set(FEATURES) - set(AUTHENTICATED))
    assert not unclassified, f"routes nobody decided the access of: {unclassified}"
    assert not sorted(other - set(PUBLIC)), "plain Django views must be public on purpose (or be DRF views)"
    stale = sorted((set(FEATURES) | set(AUTHENTICATED)) - api) + sorted(set(PUBLIC) - other - {r for _, r in api})
    assert not stale, f"tables name routes the URLconf no longer has: {stale}"
    assert set().union(*FEATURES.values()) <= ALL_FEATURES


def url_of(route: str) -> str:
    """A URL of the route with made-up ids: the feature check answers before anything is looked up."""
    values = {"pk": "1", "segment_pk": "1", "key": "public_rate_limit_per_minute", "email": "a@example.com"}
    if route.startswith("api/customer_entities/"):
        values["pk"] = "0" * 32
    return "/" + re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], route)


def call(client: APIClient, method: str, url: str):
    return getattr(client, method.lower())(url, {}, format="json")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def user_with(features, name: str = "someone"):
    role = role_create(name=f"Role of {name}", features=sorted(features))
    return user_create(username=name, password="Some-password-123!", role=role)


CASES = [(method, route, feature) for (method, route), needed in FEATURES.items() for feature in needed]


@pytest.mark.parametrize(("method", "route", "feature"), CASES, ids=[f"{m} {r} -{f}" for m, r, f in CASES])
def test_a_role_without_the_feature_gets_403_naming_it(method, route, feature):
    client = client_for(user_with(ALL_FEATURES - {feature}))

    response = call(client, method, url_of(route))

    assert response.status_code == 403, response.content[:300]
    assert feature in response.json()["message"]


@pytest.mark.parametrize(("method", "route"), sorted(FEATURES), ids=[f"{m} {r}" for m, r in sorted(FEATURES)])
def test_a_user_without_a_role_gets_403_and_no_token_401(method, route):
    outsider = user_create(username="outsider", password="Some-password-123!")

    assert call(client_for(outsider), method, url_of(route)).status_code == 403
    assert call(APIClient(), method, url_of(route)).status_code == 401


@pytest.mark.parametrize(("method", "route"), sorted(AUTHENTICATED), ids=[f"{m} {r}" for m, r in sorted(AUTHENTICATED)])
def test_routes_for_any_signed_in_user_still_need_a_token(method, route):
    assert call(APIClient(), method, url_of(route)).status_code == 401


# --- the segment ACL -------------------------------------------------------------------------------------------


@pytest.fixture
def cast(db, settings, tmp_path):
    """An owner's segment (trashed one too) with a note, a grant, an export, a schedule and a campaign; a viewer with
    a view grant; a stranger with every feature but users_admin (which sees every segment) and no grant."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from cdp.models import Attribute
    from emails.models import Campaign
    from emails.services.templates import template_create
    from segments.exports.models import ExportSchedule, SegmentExport
    from segments.exports.services import destination_create

    settings.MEDIA_ROOT = tmp_path
    Attribute.objects.update_or_create(
        id="vip", defaults={"name": "VIP", "data_type": "bool", "computation": "last_value", "path": "traits.vip"}
    )
    everything = ALL_FEATURES - {F.USERS_ADMIN}
    owner = user_with(everything, "owner")
    viewer = user_with(everything, "viewer")
    stranger = user_with(everything, "stranger")
    tree = {"operator": "and", "children": [{"attribute": "vip", "operator": "is_true"}]}
    segment = segment_create(owner=owner, name="VIP", conditions=tree)
    other = segment_create(owner=owner, name="Other", conditions=tree)
    trashed = segment_create(owner=owner, name="Old", conditions=tree)
    for s in (segment, other, trashed):
        segment_grant_set(segment=s, user=viewer, permission=SegmentGrant.Permission.VIEW)
    segment_trash(segment=trashed)
    grant = segment.grants.get()
    note = segment_note_create(segment=segment, author=owner, text="Hello")
    destination = destination_create(name="CSV", kind="csv", config={})
    file_name = default_storage.save("exports/acl/customers.csv", ContentFile(b"customer_entity_id\n"))
    export = SegmentExport.objects.create(
        segment=segment, destination=destination, segment_name=segment.name, destination_name="CSV",
        destination_kind="csv", status=SegmentExport.Status.FINISHED, started_by=owner, file_name=file_name,
    )  # fmt: skip
    schedule = ExportSchedule.objects.create(segment=segment, destination=destination, frequency="daily")
    template = template_create(name="T", subject="Hi", html_body="<p>Hi {{ unsubscribe_url }}</p>", text_body="Hi")
    campaign = Campaign.objects.create(name="C", template=template, segment_id=segment.pk)
    ids = {
        "segment": segment.pk, "other": other.pk, "trashed": trashed.pk, "grant": grant.pk, "note": note.pk,
        "export": export.pk, "schedule": schedule.pk, "campaign": campaign.pk, "destination": destination.pk,
        "template": template.pk, "viewer": viewer.pk,
    }  # fmt: skip
    return {"owner": owner, "viewer": viewer, "stranger": stranger, "ids": ids}


# (method, url, body): every route that reaches the segment `{segment}` or what is made of it. The stranger gets a
# 404 on each; the viewer what ACL_VIEWER says (a write they may not do: 403).
ACL_ROUTES: list[tuple[str, str, dict]] = [
    ("GET", "/api/segments/{segment}", {}),
    ("PUT", "/api/segments/{segment}", {"name": "X", "conditions": {"operator": "and", "children": []}}),
    ("PATCH", "/api/segments/{segment}", {"name": "X"}),
    ("DELETE", "/api/segments/{segment}", {}),
    ("GET", "/api/segments/{segment}/attribute_value_counts?attribute=vip", {}),
    ("GET", "/api/segments/{segment}/customers", {}),
    ("GET", "/api/segments/{segment}/customers_count", {}),
    ("POST", "/api/segments/{segment}/duplicate", {}),
    ("GET", "/api/segments/{segment}/insights", {}),
    ("GET", "/api/segments/{segment}/overlap?with={other}", {}),
    ("POST", "/api/segments/{segment}/size_snapshot", {}),
    ("GET", "/api/segments/{segment}/notes", {}),
    ("POST", "/api/segments/{segment}/notes", {"text": "Hi"}),
    ("GET", "/api/segments/{segment}/notes/{note}", {}),
    ("PATCH", "/api/segments/{segment}/notes/{note}", {"text": "Hi"}),
    ("DELETE", "/api/segments/{segment}/notes/{note}", {}),
    ("GET", "/api/segments/{segment}/acl", {}),
    ("POST", "/api/segments/{segment}/acl", {"user": "{viewer}", "permission": "edit"}),
    ("GET", "/api/segments/{segment}/acl/{grant}", {}),
    ("PATCH", "/api/segments/{segment}/acl/{grant}", {"permission": "edit"}),
    ("DELETE", "/api/segments/{segment}/acl/{grant}", {}),
    ("GET", "/api/trash/segments/{trashed}", {}),
    ("POST", "/api/trash/segments/{trashed}/restore", {}),
    ("DELETE", "/api/trash/segments/{trashed}", {}),
    ("POST", "/api/segment_exports", {"segment": "{segment}", "destination": "{destination}"}),
    ("GET", "/api/segment_exports/{export}", {}),
    ("GET", "/api/segment_exports/{export}/download", {}),
    (
        "POST",
        "/api/segment_export_schedules",
        {"segment": "{segment}", "destination": "{destination}", "frequency": "hourly"},
    ),  # fmt: skip
    ("GET", "/api/segment_export_schedules/{schedule}", {}),
    ("DELETE", "/api/segment_export_schedules/{schedule}", {}),
    ("POST", "/api/email_campaigns", {"name": "C2", "template": "{template}", "segment_id": "{segment}"}),
    ("GET", "/api/email_campaigns/{campaign}", {}),
    ("GET", "/api/email_campaigns/{campaign}/report", {}),
    ("GET", "/api/email_campaigns/{campaign}/recipients", {}),
    ("POST", "/api/email_campaigns/{campaign}/pause", {}),
    ("POST", "/api/email_campaigns/{campaign}/resume", {}),
]

# What the viewer (a view grant) gets where it is not a plain success: writes to the segment itself are refused.
ACL_VIEWER_REFUSED = {
    ("PUT", "/api/segments/{segment}"),
    ("PATCH", "/api/segments/{segment}"),
    ("DELETE", "/api/segments/{segment}"),
    ("POST", "/api/segments/{segment}/notes"),
    ("PATCH", "/api/segments/{segment}/notes/{note}"),
    ("DELETE", "/api/segments/{segment}/notes/{note}"),
    ("POST", "/api/segments/{segment}/acl"),
    ("PATCH", "/api/segments/{segment}/acl/{grant}"),
    ("DELETE", "/api/segments/{segment}/acl/{grant}"),
    ("POST", "/api/trash/segments/{trashed}/restore"),
    ("DELETE", "/api/trash/segments/{trashed}"),
}


def _fill(value, ids: dict):
    if isinstance(value, dict):
        return {key: _fill(item, ids) for key, item in value.items()}
    if isinstance(value, str) and re.fullmatch(r"\{\w+\}", value):
        return ids[value[1:-1]]
    if isinstance(value, str):
        return re.sub(r"\{(\w+)\}", lambda m: str(ids[m.group(1)]), value)
    return value


def acl_call(user, method: str, url: str, body: dict, ids: dict):
    client = client_for(user)
    return getattr(client, method.lower())(_fill(url, ids), _fill(body, ids), format="json")


@pytest.mark.parametrize(("method", "url", "body"), ACL_ROUTES, ids=[f"{m} {u}" for m, u, _ in ACL_ROUTES])
def test_segment_acl_a_segment_you_may_not_see_is_a_404(cast, method, url, body):
    response = acl_call(cast["stranger"], method, url, body, cast["ids"])

    assert response.status_code == 404, response.content[:300]


@pytest.mark.parametrize(("method", "url", "body"), ACL_ROUTES, ids=[f"{m} {u}" for m, u, _ in ACL_ROUTES])
def test_segment_acl_a_segment_you_may_only_view_refuses_writes(cast, method, url, body):
    response = acl_call(cast["viewer"], method, url, body, cast["ids"])

    if (method, url) in ACL_VIEWER_REFUSED:
        assert response.status_code == 403, response.content[:300]
    else:
        assert response.status_code < 500 and response.status_code not in (401, 403, 404), response.content[:300]


def test_segment_acl_a_segment_that_does_not_exist_answers_as_one_you_may_not_see(cast):
    """Same status for a hidden segment and a missing one wherever a body names a segment: ids cannot be probed."""
    ids = {**cast["ids"], "segment": 999_999_999}
    for method, url, body in ACL_ROUTES:
        if method == "POST" and "segment" in str(body):
            hidden = acl_call(cast["stranger"], method, url, body, cast["ids"])
            missing = acl_call(cast["stranger"], method, url, body, ids)
            assert (hidden.status_code, hidden.json()) == (missing.status_code, missing.json()), url


def test_segment_acl_lists_show_only_what_is_made_of_visible_segments(cast):
    stranger = client_for(cast["stranger"])
    for url in (
        "/api/segments",
        "/api/trash/segments",
        "/api/segment_exports",
        "/api/segment_export_schedules",
        "/api/email_campaigns",
    ):
        response = stranger.get(url)
        assert response.status_code == 200, url
        assert response.json()["results"] == [], url
    overlap = client_for(cast["viewer"]).get(f"/api/segments/{cast['ids']['segment']}/overlap?with=999999999")
    assert overlap.status_code == 404


def test_segment_insights_top_values_need_customers_view(cast):
    """The insights' top values are members' attribute values: customers_view on top of segments_view."""
    role = role_create(name="Segments only", features=[F.SEGMENTS_VIEW])
    cast["viewer"].role = role
    cast["viewer"].save()
    client = client_for(cast["viewer"])
    url = f"/api/segments/{cast['ids']['segment']}/insights"

    assert client.get(url).status_code == 200
    response = client.get(url + "?attributes=vip")
    assert response.status_code == 403
    assert F.CUSTOMERS_VIEW in response.json()["message"]


# --- CSRF ------------------------------------------------------------------------------------------------------


def test_a_signed_in_browser_session_calls_the_api_only_with_the_csrf_token(cast):
    """The API also takes the admin's session cookie (the Business Explorer's pages call it): another site's form
    posting to /api/ with that cookie is refused without the CSRF token."""
    from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(cast["owner"])
    body = {"name": "From elsewhere", "conditions": {"operator": "and", "children": []}}

    forged = browser.post("/api/segments", body, content_type="application/json")
    assert forged.status_code == 403
    assert "CSRF" in forged.json()["message"]

    secret = _get_new_csrf_string()
    browser.cookies["csrftoken"] = secret
    allowed = browser.post(
        "/api/segments", body, content_type="application/json", HTTP_X_CSRFTOKEN=_mask_cipher_secret(secret)
    )
    assert allowed.status_code == 201, allowed.content[:300]


def test_admin_writes_need_the_csrf_token(cast):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(cast["owner"])
    cast["owner"].is_staff = True
    cast["owner"].save()

    response = browser.post(f"/admin/segments/segment/{cast['ids']['segment']}/delete/", {"post": "yes"})

    assert response.status_code == 403


# --- the admin -------------------------------------------------------------------------------------------------

# Admin pages every staff user may open, whatever their role: nothing on them comes from a feature.
ADMIN_OPEN_TO_STAFF = {
    "/admin/": "the index (lists only the models the role may see)",
    "/admin/search/": "searches only the models the role may see",
    "/admin/password_change/": "their own password",
    "/admin/password_change/done/": "their own password",
    "/admin/jsi18n/": "JavaScript translations",
    "/admin/notifications/notification/": "their own notifications",
}


def test_every_admin_page_refuses_a_staff_user_without_a_role(client):
    """Each admin URL (change lists, add pages, unfold actions, custom views) GET as a staff user whose role is
    empty: a refusal (403, 404, or a redirect away), except ADMIN_OPEN_TO_STAFF. The suppression list download,
    the import upload and the campaign form answered 200 (they named no permission / replaced add_view)."""
    staff = user_create(username="staffer", password="Some-password-123!")
    staff.is_staff = True
    staff.save()
    client.force_login(staff)
    opened = []
    for route, _ in _walk(get_resolver().url_patterns):
        if not route.startswith("admin/"):
            continue
        url = "/" + re.sub(r"\{(\w+)\}", "1", route)
        response = client.get(url)
        if response.status_code not in (302, 403, 404, 405) and url not in ADMIN_OPEN_TO_STAFF:
            opened.append((url, response.status_code))
        if response.status_code == 302:
            assert not response["Location"].startswith(url.rstrip("/")) or "/change/" in response["Location"], url
    assert not opened, opened


def test_admin_upload_and_campaign_pages_need_the_features_to_post(cast, client):
    """POSTs to the import upload and the campaign form were run for any staff user (add_view replaced without its
    permission check): a role without emails_block imported a contact list (consent for any address)."""
    from emails.models import Campaign, Job

    role = role_create(name="Emails view", features=[F.EMAILS_VIEW, F.SEGMENTS_VIEW])
    viewer = cast["viewer"]
    viewer.role = role
    viewer.is_staff = True
    viewer.save()
    client.force_login(viewer)
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("contacts.csv", b"email,consent\nvictim@example.com,true\n", content_type="text/csv")

    imported = client.post("/admin/emails/job/add/", {"kind": "contacts_import", "file": upload})
    sent = client.post(
        "/admin/emails/campaign/add/",
        {"name": "Spam", "template": cast["ids"]["template"], "segment": cast["ids"]["segment"]},
    )
    download = client.get("/admin/emails/emailaddress/suppression-list/")

    assert imported.status_code == 403 and not Job.objects.exists()
    assert sent.status_code == 403 and Campaign.objects.count() == 1
    assert download.status_code == 200  # emails_view may download it
