"""The public fast lane (cdp.middleware.PublicFastLaneMiddleware): the Audience API and the provider webhooks skip
the session / auth / CSRF / messages middleware, but keep the request id, the host check and `nosniff`."""

import pytest

pytestmark = pytest.mark.django_db


def test_the_audience_api_takes_the_lane_and_keeps_request_id_and_nosniff(client):
    response = client.get("/wbs?attribute=ps_email_address&value=a@example.com&segment=1")

    assert response.status_code == 400  # no such segment: answered by the view itself
    assert response["X-Request-ID"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "X-Frame-Options" not in response  # the clickjacking middleware did not run
    assert "Cookie" not in response.get("Vary", "")  # nor sessions


def test_a_webhook_on_the_lane_is_still_refused_without_its_secret(client):
    response = client.post("/emails/feedback/brevo", data=b"{}", content_type="application/json")

    assert response.status_code == 401
    assert response["X-Request-ID"]


def test_the_lane_still_checks_the_host(client, settings):
    settings.ALLOWED_HOSTS = ["cdp.example.com"]

    response = client.get("/wbs?attribute=a&value=b&segment=1", HTTP_HOST="evil.example.net")

    assert response.status_code == 400


def test_other_paths_keep_every_middleware(client):
    response = client.get("/admin/login/")

    assert response.status_code == 200
    assert response["X-Frame-Options"] == "DENY"
