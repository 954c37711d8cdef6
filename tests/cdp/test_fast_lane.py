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


# --- the lane at the WSGI entry (cdp.fastlane): what gunicorn and runserver serve ---------------------------------


def wsgi(path: str, query: str = "", *, method: str = "GET", body: bytes = b"", host: str = "testserver", **headers):
    """One request through cdp.wsgi.application: (status code, headers, body)."""
    from io import BytesIO

    from cdp.wsgi import application

    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": "testserver",
        "SERVER_PORT": "80", "HTTP_HOST": host, "REMOTE_ADDR": "192.0.2.10", "wsgi.input": BytesIO(body),
        "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json", "wsgi.url_scheme": "http",
        "SERVER_PROTOCOL": "HTTP/1.1", **headers,
    }  # fmt: skip
    answer = {}

    def start_response(status, response_headers):
        answer["status"], answer["headers"] = int(status.split()[0]), dict(response_headers)

    content = b"".join(application(environ, start_response))
    return answer["status"], answer["headers"], content


def test_the_wsgi_lane_answers_like_the_view(client):
    for query in (
        "attribute=ps_email_address&value=a@example.com&segment=1",  # unknown segment
        "attribute=ps_email_address&segment=1",  # missing value
        "attribute=&value=x&segment=1",  # empty attribute
        "attribute=no_such&value=x&segment=abc",  # malformed segment
        "value=%ff%fe&attribute=a&attribute=ps_email_address&segment=1",  # bad UTF-8, repeated parameter
    ):
        status, headers, body = wsgi("/wbs", query)
        through_django = client.get(f"/wbs?{query}")
        assert (status, body) == (through_django.status_code, through_django.content), query
        assert headers["Content-Type"] == "application/json"
        assert headers["Content-Length"] == str(len(body))
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_the_wsgi_lane_keeps_a_sane_request_id_and_makes_one_otherwise():
    _, headers, _ = wsgi("/wbs", "attribute=a&value=b&segment=1", HTTP_X_REQUEST_ID="abc-123")
    assert headers["X-Request-ID"] == "abc-123"
    _, headers, _ = wsgi("/wbs", "attribute=a&value=b&segment=1", HTTP_X_REQUEST_ID="<script>")
    assert len(headers["X-Request-ID"]) == 32


def test_the_wsgi_lane_checks_the_host(settings):
    settings.ALLOWED_HOSTS = ["cdp.example.com"]

    status, _, _ = wsgi("/wbs", "attribute=a&value=b&segment=1", host="evil.example.net")
    assert status == 400
    status, _, _ = wsgi("/emails/feedback/brevo", method="POST", body=b"{}", host="evil.example.net")
    assert status == 400


def test_the_wsgi_lane_answers_other_methods_and_preflights():
    status, headers, _ = wsgi("/wbs", "attribute=a&value=b&segment=1", method="POST")
    assert status == 405 and headers["Allow"] == "GET, OPTIONS"
    status, _, _ = wsgi("/wbs", method="OPTIONS")
    assert status == 204


@pytest.mark.django_db(transaction=True)  # autocommit, as in production: the lane's prepared-statement path
def test_the_wsgi_lane_reopens_a_connection_that_died():
    from django.db import connection

    from segments.audience import audience_cache_forget

    wsgi("/wbs", "attribute=ps_email_address&value=a@example.com&segment=1")
    assert connection.connection is not None and not connection.in_atomic_block
    connection.connection.close()  # closed under Django's feet
    audience_cache_forget()  # so the next request queries the attribute definitions

    status, _, body = wsgi("/wbs", "attribute=ps_email_address&value=a@example.com&segment=424242")
    assert status == 400 and b"unknown" in body  # answered (the attribute, or with it the segment, is unknown)


@pytest.mark.django_db(transaction=True)  # Django's handler closes old connections at the request's start and end
def test_paths_off_the_lane_go_to_django():
    status, headers, _ = wsgi("/admin/login/")
    assert status == 200 and headers["X-Frame-Options"] == "DENY"


@pytest.mark.django_db(transaction=True)
def test_the_audience_api_answers_503_when_the_database_is_unreachable():
    from django.db import connection

    from segments.audience import audience_cache_forget

    audience_cache_forget()  # so the request needs the database
    port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = "1"  # nothing listens there: connecting fails for real
    try:
        status, headers, body = wsgi("/wbs", "attribute=ps_email_address&value=a@example.com&segment=1")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port

    assert status == 503 and headers["Content-Type"] == "application/json"
    assert body == b'{"status":"error","message":"Service unavailable."}'
