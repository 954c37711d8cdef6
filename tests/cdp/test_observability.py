import json
import logging

import pytest
from django.conf import settings
from django.test import override_settings

from cdp.observability import RequestIdFilter


def test_response_carries_a_request_id(client):
    response = client.get("/healthz")
    assert len(response["X-Request-ID"]) == 32


def test_a_sane_incoming_request_id_is_kept_and_a_bad_one_replaced(client):
    assert client.get("/healthz", HTTP_X_REQUEST_ID="lb-123.abc")["X-Request-ID"] == "lb-123.abc"
    assert client.get("/healthz", HTTP_X_REQUEST_ID="bad id\nwith newline")["X-Request-ID"] != "bad id\nwith newline"


def test_json_log_lines_carry_the_request_id():
    from pythonjsonlogger.json import JsonFormatter

    formatter = JsonFormatter(**{k: v for k, v in settings.LOGGING["formatters"]["json"].items() if k != "()"})
    record = logging.LogRecord("cdp.test", logging.INFO, __file__, 1, "events stored", None, None)
    RequestIdFilter().filter(record)
    line = json.loads(formatter.format(record))
    assert line["message"] == "events stored"
    assert line["level"] == "INFO" and line["logger"] == "cdp.test" and line["request_id"] == "-"


@pytest.mark.django_db
def test_readyz_reports_a_broken_broker_as_503(client):
    from cdp.celery import app

    previous = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        with override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0"):
            response = client.get("/readyz")
    finally:
        app.conf.broker_url = previous
    assert response.status_code == 503
    assert response.json()["checks"]["broker"].startswith("error")


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_checks_answer_a_probe_by_the_hosts_own_address(client, path):
    """Load balancers and Kubernetes probe a host by its IP address, which is not in ALLOWED_HOSTS: the health
    checks still answer (other paths stay a 400)."""
    with override_settings(ALLOWED_HOSTS=["cdp.example.com"]):
        probe = client.get(path, HTTP_HOST="10.0.3.7:8000")
        other = client.get("/api/events", HTTP_HOST="10.0.3.7:8000")

    assert probe.status_code == 200, probe.content
    assert probe.json()["status"] == "ok"
    assert len(probe["X-Request-ID"]) == 32
    assert other.status_code == 400


class _RequestIds(logging.Handler):
    """Records the request id each line is written with (the filter runs when the line is emitted)."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.addFilter(RequestIdFilter())
        self.ids: list[str] = []

    def emit(self, record):
        self.ids.append(record.request_id)


@pytest.mark.django_db
def test_a_503_from_readyz_is_logged_once_with_its_request_id(client):
    """The handler logged a 5xx the view returned after the middleware was done, with the request id "-"."""
    from cdp.celery import app

    handler = _RequestIds()
    logging.getLogger("django.request").addHandler(handler)
    previous = app.conf.broker_url
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        with override_settings(CELERY_BROKER_URL="redis://127.0.0.1:1/0"):
            response = client.get("/readyz", HTTP_X_REQUEST_ID="probe-42")
    finally:
        app.conf.broker_url = previous
        logging.getLogger("django.request").removeHandler(handler)

    assert response.status_code == 503
    assert handler.ids == ["probe-42"]


@pytest.mark.django_db
def test_with_ssl_redirect_on_health_checks_still_answer_plain_http(client):
    """SECURE_SSL_REDIRECT=1 sends plain HTTP to HTTPS; a load balancer's HTTP probe must not get a redirect."""
    with override_settings(SECURE_SSL_REDIRECT=True):
        probe = client.get("/healthz")
        api = client.get("/api/events")

    assert probe.status_code == 200
    assert api.status_code == 301 and api["Location"].startswith("https://")


def test_gunicorn_logs_json_lines_without_an_access_log():
    """gunicorn's own lines (start-up, worker boots, WORKER TIMEOUT) were plain text among the app's JSON lines; the
    checkout's gunicorn.conf.py gives them the app's format, and keeps gunicorn's access log off (paths with query
    strings may carry personal data)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    from tests.emails.servers import free_port

    base_dir = Path(__file__).resolve().parents[2]
    port = free_port()
    env = {**os.environ, "LOG_FORMAT": "json", "DEBUG": "0", "ALLOWED_HOSTS": "127.0.0.1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "cdp.wsgi", "-w", "1", "-b", f"127.0.0.1:{port}"],
        cwd=base_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz?email=ann@example.com", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode()

    lines = [line for line in output.splitlines() if line.strip()]
    assert any("Booting worker" in line for line in lines), output
    assert all(line.startswith("{") for line in lines), output
    assert {json.loads(line)["logger"] for line in lines} <= {"gunicorn.error", "django.request"}, output
    assert "ann@example.com" not in output
    # No control socket: gunicorn 27 shares one per user by default, so instances on one host took it from each other.
    assert "Control socket" not in output


@pytest.mark.django_db
def test_readyz_is_not_ready_until_the_migrations_are_applied(client, monkeypatch):
    """New code on a database not migrated yet answered 500s wherever a new column was read, while /readyz said
    ready: a load balancer sent it traffic."""
    from django.db import connection

    from cdp import observability

    monkeypatch.setattr(observability, "_schema_current", False)
    with connection.cursor() as cursor:  # as if the newest migration of an app had not run (rolled back after)
        cursor.execute(
            "DELETE FROM django_migrations WHERE id = (SELECT max(id) FROM django_migrations WHERE app = 'cdp')"
        )
    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == "error: 1 not applied (run manage.py migrate)"
    assert response.json()["checks"]["database"] == "ok"


@pytest.mark.django_db
def test_readyz_reports_the_migrations_once_applied(client, monkeypatch):
    from cdp import observability

    monkeypatch.setattr(observability, "_schema_current", False)
    response = client.get("/readyz")

    assert response.json()["checks"]["migrations"] == "ok"
    assert observability._schema_current is True


def _request_with_id(path: str, request_id: str):
    from django.test import RequestFactory

    from cdp.observability import request_id_var

    return RequestFactory().get(path), request_id_var.set(request_id)


@pytest.mark.parametrize(("path", "kind"), [("/api/events", "application/json"), ("/admin/cdp/user/", "text/html")])
def test_a_server_error_shows_the_request_id_to_quote(path, kind):
    """The 500 said only 'Internal server error.' (raw JSON in the admin's browser tab): a user's report could not
    be matched with the traceback in the log. It now names the request id, as an HTML page in the admin."""
    from cdp.api.errors import handler500
    from cdp.observability import request_id_var

    request, token = _request_with_id(path, "6f1c0e2a9b")
    try:
        response = handler500(request)
    finally:
        request_id_var.reset(token)

    assert response.status_code == 500
    assert response["Content-Type"].startswith(kind)
    assert "6f1c0e2a9b" in response.content.decode()
    if kind == "application/json":
        assert json.loads(response.content) == {
            "status": "error",
            "message": "Internal server error (reference 6f1c0e2a9b).",
        }


@pytest.mark.django_db
def test_an_unknown_admin_address_is_an_html_page_and_an_api_one_json(client, admin_user):
    client.force_login(admin_user)
    page = client.get("/admin/no/such/page/")
    api = client.get("/api/no-such-endpoint")

    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")
    assert "Page not found" in page.content.decode()
    assert api.status_code == 404 and api.json() == {"status": "error", "message": "Not found."}


@pytest.mark.django_db
def test_a_host_this_site_does_not_serve_is_one_warning_line(client):
    """Internet scanners send other host names all day: Django logs each at ERROR with a traceback, which buried
    the errors worth paging on. It is one WARNING line now (the answer is still a 400)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("django.security.DisallowedHost")
    handler = Keep()
    logger.addHandler(handler)
    try:
        response = client.get("/admin/", HTTP_HOST="scanner.example.net")
    finally:
        logger.removeHandler(handler)

    assert response.status_code == 400
    assert [(r.levelname, r.exc_info) for r in records] == [("WARNING", None)]
    assert "scanner.example.net" in records[0].getMessage()
