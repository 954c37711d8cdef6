"""Audience API contract (SPEC §4): GET /wbs?attribute=&value=&segment=."""

import secrets
from urllib.parse import quote

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.ratelimit import rate_limit_setting_forget
from cdp.services.global_settings import global_setting_set
from segments.services import segment_trash, segment_update
from stitching.models import StitchingCategory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _settings_fresh():
    rate_limit_setting_forget()
    yield
    rate_limit_setting_forget()


@pytest.fixture
def web() -> Client:
    # A fresh client IP per test: rate-limit counters live in Redis and outlive the test database.
    return Client(REMOTE_ADDR=f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}")


@pytest.fixture
def email_category(db):
    StitchingCategory.objects.update_or_create(id="email", defaults={"name": "Email", "normalizer": "email"})


def wbs(client, **params):
    query = "&".join(f"{key}={quote(str(value))}" for key, value in params.items())
    return client.get(f"/wbs?{query}")


def test_member_gets_the_default_returned_attributes(web, exclusion_segment, customers, email_category):
    response = wbs(web, attribute="ps_email_address", value="alice@example.com", segment=exclusion_segment.pk)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    alice = customers["alice"]
    alice.refresh_from_db()
    assert response.json() == {
        "status": "ok",
        "returned_attributes": {
            "customer_entity_id": alice.pk,
            "modified": alice.modified.strftime("%Y-%m-%d %H:%M:%S"),
        },
    }


def test_configured_attributes_are_returned_with_null_for_missing_ones(web, exclusion_segment, customers):
    global_setting_set(key="audience_api_returned_attributes", value=["age", "gender"], user=None)
    from cdp.services.global_settings import global_settings_cache_clear

    global_settings_cache_clear()
    body = wbs(web, attribute="ps_email_address", value="carol@example.com", segment=exclusion_segment.pk).json()
    attributes = body["returned_attributes"]
    assert attributes["age"] == [18] and attributes["gender"] is None
    assert list(attributes)[:2] == ["customer_entity_id", "modified"]


def test_known_customer_outside_the_segment(web, exclusion_segment, customers):
    response = wbs(web, attribute="ps_email_address", value="bob@example.com", segment=exclusion_segment.pk)
    assert response.status_code == 404
    assert response.json() == {"status": "error", "message": "customer not in segment"}


def test_unknown_value(web, exclusion_segment, customers):
    response = wbs(web, attribute="ps_email_address", value="nobody@example.com", segment=exclusion_segment.pk)
    assert response.status_code == 404
    assert response.json() == {"status": "error", "message": "customer not found"}


def test_identifier_values_are_normalised_like_stitching(web, exclusion_segment, customers, email_category):
    response = wbs(web, attribute="ps_email_address", value="  Alice@Example.COM ", segment=exclusion_segment.pk)
    assert response.status_code == 200


@pytest.mark.parametrize(("attribute", "value"), [("age", "30"), ("consent", "true"), ("gender", "female")])
def test_only_stitching_identifiers_look_customers_up(web, exclusion_segment, customers, attribute, value):
    """Any attribute was a lookup key: `consent=true` handed anyone a member's id (and the configured returned
    attributes) without knowing who they asked about. The seed: the attribute "used for profile stitching"."""
    response = wbs(web, attribute=attribute, value=value, segment=exclusion_segment.pk)
    assert response.status_code == 400
    assert response.json() == {
        "status": "error",
        "message": f"attribute {attribute!r} is not a stitching identifier: look customers up by an identifier "
        "attribute (such as ps_email_address)",
    }
    assert "returned_attributes" not in response.json()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "attribute is required"),
        ("attribute=ps_email_address&value=a@b.c", "segment is required"),
        ("attribute=ps_email_address&segment=1", "value is required"),
        ("value=a@b.c&segment=1", "attribute is required"),
        ("attribute=&value=a@b.c&segment=1", "attribute must not be empty"),
        ("attribute=ps_email_address&value=%20&segment=1", "value must not be empty"),
        ("attribute=ps_email_address&value=a@b.c&segment=abc",
         "segment must be a segment id (a whole number), got 'abc'"),
        ("attribute=ps_email_address&value=a@b.c&segment=-1", "segment must be a segment id"),
        ("attribute=ps_email_address&value=a@b.c&segment=99999999999999999999", "segment must be a segment id"),
        ("attribute=nope&value=a@b.c&segment=1", "unknown attribute 'nope'"),
        ("attribute=ps_email_address&value=a%00b&segment=1", "value must not contain NUL characters"),
    ],
)  # fmt: skip
def test_bad_parameters_are_400_with_a_message(web, exclusion_segment, query, message):
    response = web.get(f"/wbs?{query}")
    assert response.status_code == 400
    assert response.json()["status"] == "error"
    assert response.json()["message"].startswith(message)


def test_unknown_and_trashed_segments_are_400(web, exclusion_segment, customers):
    response = wbs(web, attribute="ps_email_address", value="alice@example.com", segment=exclusion_segment.pk + 1000)
    assert (
        response.status_code == 400 and response.json()["message"] == f"unknown segment {exclusion_segment.pk + 1000}"
    )
    segment_trash(segment=exclusion_segment)
    response = wbs(web, attribute="ps_email_address", value="alice@example.com", segment=exclusion_segment.pk)
    assert response.status_code == 400


def test_a_saved_change_is_seen_at_once_in_this_process(
    web, exclusion_segment, customers, django_capture_on_commit_callbacks
):
    params = {"attribute": "ps_email_address", "value": "bob@example.com", "segment": exclusion_segment.pk}
    assert wbs(web, **params).status_code == 404
    with django_capture_on_commit_callbacks(execute=True):
        segment_update(segment=exclusion_segment, conditions={"operator": "and", "children": []})
    assert wbs(web, **params).status_code == 200


def test_membership_is_one_query(web, exclusion_segment, customers, django_assert_max_num_queries):
    params = {"attribute": "ps_email_address", "value": "alice@example.com", "segment": exclusion_segment.pk}
    wbs(web, **params)  # warms the per-process caches (definitions, compiled segment, settings)
    with django_assert_max_num_queries(1):
        assert wbs(web, **params).status_code == 200


def test_only_get(web, exclusion_segment):
    response = web.post(f"/wbs?attribute=a&value=b&segment={exclusion_segment.pk}")
    assert response.status_code == 405 and response["Allow"] == "GET, OPTIONS"


def test_rate_limited_per_client_ip(web, exclusion_segment, customers):
    global_setting_set(key="public_rate_limit_per_minute", value=3, user=None)
    rate_limit_setting_forget()
    params = {"attribute": "ps_email_address", "value": "alice@example.com", "segment": exclusion_segment.pk}
    assert [wbs(web, **params).status_code for _ in range(4)] == [200, 200, 200, 429]
    other = Client(REMOTE_ADDR="2001:db8::beef:1")
    assert wbs(other, **params).status_code in (200, 429)  # its own counter (it may exist from an earlier run)


def test_cors_for_configured_origins(web, exclusion_segment, customers):
    global_setting_set(key="public_cors_origins", value=["https://shop.example.com"], user=None)
    rate_limit_setting_forget()
    params = f"attribute=ps_email_address&value=alice@example.com&segment={exclusion_segment.pk}"
    allowed = web.get(f"/wbs?{params}", HTTP_ORIGIN="https://shop.example.com")
    assert allowed["Access-Control-Allow-Origin"] == "https://shop.example.com"
    other = web.get(f"/wbs?{params}", HTTP_ORIGIN="https://evil.example.com")
    assert "Access-Control-Allow-Origin" not in other


query_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    names=st.lists(st.sampled_from(["attribute", "value", "segment", "x", ""]), max_size=5),
    values=st.lists(
        st.one_of(query_text, st.sampled_from(["age", "ps_email_address", "1", "%", "%00", "1e9"])),
        min_size=5,
        max_size=5,
    ),  # fmt: skip
    raw=st.one_of(st.none(), st.binary(max_size=40)),
)
def test_no_query_string_makes_a_500(exclusion_segment, names, values, raw):
    client = Client(REMOTE_ADDR="2001:db8::f022")
    if raw is not None:
        query = raw.decode("latin-1")
    else:
        query = "&".join(f"{quote(n)}={quote(v)}" for n, v in zip(names, values, strict=False))
    response = client.get("/wbs", QUERY_STRING=query)
    assert response.status_code in (200, 400, 404, 429), (query, response.content)
    assert response.json()["status"] in ("ok", "error")


@pytest.mark.django_db(transaction=True)
def test_a_dead_database_connection_is_reopened(web, exclusion_segment, customers):
    import psycopg
    from django.db import connection

    params = {"attribute": "ps_email_address", "value": "alice@example.com", "segment": exclusion_segment.pk}
    assert wbs(web, **params).status_code == 200
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    settings_dict = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in settings_dict.items() if k != "cursor_factory"}, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    assert wbs(web, **params).status_code == 200
