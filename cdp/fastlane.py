"""The public fast lane at the WSGI entry: the hot public endpoints answered without Django's request handler.

`/wbs` (called on every page view) and the provider feedback webhooks (a provider posts every delivery report)
are plain functions of the request: no session, user, CSRF token, message or admin time zone. Served through
Django's handler, a request also paid for the request signals (and with them a database health-check round trip
per request), the URL resolver, the middleware chain and the response machinery: about a third of a `/wbs`
request's time. `FastLaneApplication` wraps the project's WSGI application (`cdp.wsgi.application`, also what
`runserver` serves) and sends the paths of `PUBLIC_FAST_LANE` straight to their views:

- the paths and views are those of `cdp/urls.py`: each URL name in the setting is reversed and resolved once;
- what the lane still does: the request id (`X-Request-ID`, in logs too), the `ALLOWED_HOSTS` check (400),
  `nosniff`, and Django's own exception handling (`response_for_exception`: logged, `got_request_exception` sent,
  a 500 page, never a traceback to the client);
- database connections: no per-request health check (a `SELECT 1` round trip). Before the request a connection
  the driver knows to be closed or broken is dropped; after it, one that saw an error, or is older than
  `CONN_MAX_AGE`, is checked and closed, as Django's request signals would. A connection that died unnoticed
  (a database restart) fails the request that finds it out, unless that was the hot path's own statement
  (`cdp.hot_sql` reopens and retries it).

Requests that reach Django's handler another way (the test client, another server) take the same views through
`cdp.middleware.PublicFastLaneMiddleware`, which skips the same middleware inside Django.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from http import HTTPStatus

from django.core.handlers.exception import response_for_exception
from django.core.handlers.wsgi import WSGIRequest, get_script_name
from django.db import connections
from django.http import HttpRequest
from django.urls import set_script_prefix

from cdp.observability import VALID_REQUEST_ID, request_id_var

logger = logging.getLogger(__name__)


def fast_lane_routes() -> dict[str, tuple]:
    """{path: (view, args, kwargs)} for the URL names in settings.PUBLIC_FAST_LANE."""
    from django.conf import settings
    from django.urls import NoReverseMatch, get_resolver, reverse

    lane: dict[str, tuple] = {}
    for name, kwargs_list in getattr(settings, "PUBLIC_FAST_LANE", {}).items():
        for kwargs in kwargs_list or [{}]:
            try:
                path = reverse(name, kwargs=kwargs or None)
            except NoReverseMatch:
                continue
            match = get_resolver().resolve(path)
            lane[path] = (match.func, match.args, match.kwargs)
    return lane


def connections_check() -> None:
    """Before a lane request: close connections whose driver already knows they are closed or broken (attribute
    reads, no round trip), so this request opens a new one instead of failing on it."""
    for conn in connections.all(initialized_only=True):
        raw = conn.connection
        if raw is not None and not conn.in_atomic_block and (raw.closed or getattr(raw, "broken", False)):
            conn.close()


def connections_tidy() -> None:
    """After a lane request: what Django's request signals do for persistent connections, minus the health check
    of a healthy one. A connection that saw an error is tested and closed when unusable; one past CONN_MAX_AGE, or
    left outside autocommit, is closed."""
    now = time.monotonic()
    for conn in connections.all(initialized_only=True):
        if conn.connection is None or conn.in_atomic_block:  # an enclosing transaction (tests) is not ours
            continue
        if (
            conn.errors_occurred
            or (conn.close_at is not None and now >= conn.close_at)
            or conn.autocommit != conn.settings_dict["AUTOCOMMIT"]
        ):
            conn.close_if_unusable_or_obsolete()


class FastLaneApplication:
    """WSGI application: PUBLIC_FAST_LANE paths go straight to their views, everything else to `application`."""

    def __init__(self, application):
        self.application = application
        self._routes: dict[str, tuple] | None = None

    def routes(self) -> dict[str, tuple]:
        if self._routes is None:
            self._routes = fast_lane_routes()
        return self._routes

    def __call__(self, environ, start_response):
        route = self.routes().get(environ.get("PATH_INFO", ""))
        if route is None:
            return self.application(environ, start_response)
        status, headers, body = self.serve(route, environ)
        start_response(status, headers)
        return body

    def serve(self, route: tuple, environ) -> tuple[str, list[tuple[str, str]], Iterable[bytes]]:
        """(status line, headers, body iterable) of one lane request; never raises.

        A view with a `wsgi_answer` function (environ, *args, **kwargs) -> (status, headers, body) is answered by
        it without building a Django request (the Audience API); other views get a WSGIRequest."""
        view, args, kwargs = route
        set_script_prefix(get_script_name(environ))
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        request = None
        try:
            connections_check()
            answer = getattr(view, "wsgi_answer", None)
            try:
                if answer is not None:
                    _host_check(environ)
                    status, headers, content = answer(environ, *args, **kwargs)
                    headers.append(("Content-Length", str(len(content))))
                    headers.append(("X-Content-Type-Options", "nosniff"))
                    headers.append(("X-Request-ID", request_id))
                    return f"{status} {_reason(status)}", headers, [content]
                request = WSGIRequest(environ)
                request.get_host()  # DisallowedHost (a 400) for a host not in ALLOWED_HOSTS
                response = view(request, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - Django's own handling: logged, signalled, a 4xx / 500 page
                response = response_for_exception(request or WSGIRequest(environ), exc)
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response["X-Request-ID"] = request_id
            headers = [*response.items(), *(("Set-Cookie", c.output(header="")) for c in response.cookies.values())]
            body = response if getattr(response, "streaming", False) else [response.content]
            return f"{response.status_code} {response.reason_phrase}", headers, body
        finally:
            request_id_var.reset(token)
            try:
                connections_tidy()
            except Exception:  # noqa: BLE001 - closing a broken connection must not turn an answer into an error
                logger.warning("fast lane: closing a database connection failed", exc_info=True)


def _host_check(environ) -> None:
    """Raise DisallowedHost unless the request's host is in ALLOWED_HOSTS (Django's own check, on a bare request:
    no query string or body parsed)."""
    request = HttpRequest.__new__(HttpRequest)  # get_host reads META and settings only: no QueryDicts built
    request.META = environ
    request.get_host()


_REASONS = {status.value: status.phrase for status in HTTPStatus}


def _reason(status: int) -> str:
    return _REASONS.get(status, "Unknown")
