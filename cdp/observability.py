"""Request ids for logs, and the health endpoints load balancers call."""

import contextvars
import logging
import re
import uuid

from django.db import connection
from django.http import JsonResponse
from django.utils.log import log_response

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def current_request_id() -> str:
    return request_id_var.get()


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class DemoteToWarning(logging.Filter):
    """A record logged at ERROR with a traceback that is no server fault (a request for a host name this site does
    not serve: internet scanners send them all day) becomes one WARNING line, so ERROR stays worth paging on."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True


class RequestIdMiddleware:
    """Takes a sane X-Request-ID from the proxy or makes one; logs and the response carry it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
            if response.status_code >= 500 and not getattr(response, "_has_been_logged", False):
                # Django's handler logs a server error it did not raise (a 503 from /readyz) after the middleware
                # returned, when the request id is gone: log it here, with the id, and mark it logged.
                log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response


class HealthCheckMiddleware:
    """`/healthz` and `/readyz` answer before the `ALLOWED_HOSTS` check (and the rest of the middleware): load
    balancers and orchestrators probe a host by its own address (`Host: 10.0.3.7:8000`), which is not one of the
    site's names, so the probes were a 400 and every host looked dead. They build no URL from the host and reveal
    nothing, so any host may ask."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info == "/healthz":
            return healthz(request)
        if request.path_info == "/readyz":
            return readyz(request)
        return self.get_response(request)


def healthz(request):
    """The process is up and serving."""
    return JsonResponse({"status": "ok"})


# Set once this process saw every migration applied (the schema does not go back): later probes skip the check.
_schema_current = False


def migrations_unapplied() -> int:
    """How many of this code's migrations the database has not applied (the migration graph, one query)."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    return len(executor.migration_plan(executor.loader.graph.leaf_nodes()))


def readyz(request):
    """Ready for traffic: the database answers and has this code's migrations, and the Celery broker (when
    configured) answers."""
    from django.conf import settings

    global _schema_current
    checks: dict[str, str] = {}
    healthy = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        healthy = False
        checks["database"] = f"error: {type(exc).__name__}"
    else:
        # New code on a database not migrated yet (a deploy that skipped `migrate`, or ran it after starting the
        # web) answered 500s wherever a new column was read, while /readyz said ready.
        try:
            unapplied = 0 if _schema_current else migrations_unapplied()
        except Exception as exc:  # noqa: BLE001
            healthy = False
            checks["migrations"] = f"error: {type(exc).__name__}"
        else:
            _schema_current = unapplied == 0
            if unapplied:
                healthy = False
                checks["migrations"] = f"error: {unapplied} not applied (run manage.py migrate)"
            else:
                checks["migrations"] = "ok"
    if settings.CELERY_BROKER_URL:
        try:
            from cdp.celery import app

            with app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
            checks["broker"] = "ok"
        except Exception as exc:  # noqa: BLE001
            healthy = False
            checks["broker"] = f"error: {type(exc).__name__}"
    else:
        checks["broker"] = "not configured (tasks run in-process)"
    return JsonResponse({"status": "ok" if healthy else "error", "checks": checks}, status=200 if healthy else 503)
