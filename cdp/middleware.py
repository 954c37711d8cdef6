"""Show the Business Explorer in the administrator's chosen time zone (data stays UTC; the API answers UTC); the
public fast lane; query parameters with a NUL character refused."""

import logging
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.http import JsonResponse
from django.utils import timezone

from cdp.api.errors import busy_response, error_body
from cdp.http import ServiceBusy
from cdp.services.global_settings import global_setting_cached

logger = logging.getLogger(__name__)


def display_zone() -> ZoneInfo:
    """The display time zone, or UTC when this host cannot load it (a zone its time zone database lacks): every
    admin page failed then, the global settings page where it is changed too."""
    name = global_setting_cached("display_timezone")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        logger.warning("display_timezone %r is not in this host's time zone database: showing UTC", name)
        return ZoneInfo("UTC")


class DisplayTimezoneMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith("/admin/"):
            return self.get_response(request)
        timezone.activate(display_zone())
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


class PublicFastLaneMiddleware:
    """The public hot paths answer right after the request id, skipping the rest of the middleware.

    Served by `cdp.wsgi.application` (gunicorn, runserver), these paths never reach Django's handler: the WSGI
    entry sends them to their views (`cdp.fastlane`). This middleware gives requests that do come through the
    handler (the test client, another server) the same lane: the Audience API (`/wbs`) and the provider feedback
    webhooks use no session, user, CSRF token, message or admin time zone. Which views take the lane is
    `PUBLIC_FAST_LANE` (URL names), resolved with the normal URL configuration. What the lane still does: the
    `ALLOWED_HOSTS` check and the `nosniff` header (views set their own CORS and rate limits; errors go through
    Django's handler as usual)."""

    def __init__(self, get_response):
        self.get_response = get_response
        self._paths: dict[str, tuple] | None = None

    def _lane(self) -> dict[str, tuple]:
        if self._paths is None:
            from cdp.fastlane import fast_lane_routes

            self._paths = fast_lane_routes()
        return self._paths

    def __call__(self, request):
        hit = self._lane().get(request.path_info)
        if hit is None:
            return self.get_response(request)
        view, args, kwargs = hit
        request.get_host()  # DisallowedHost (a 400) for a host not in ALLOWED_HOSTS, as CommonMiddleware would
        response = view(request, *args, **kwargs)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response


class QueryNulMiddleware:
    """In the API and the Business Explorer, a query parameter (or the path) holding a NUL character is a 400 naming
    it, before any view reads it. PostgreSQL text cannot hold NUL, so such a value reaching a query (a filter, a
    search, a lookup by id, an admin list filter, an object id in the URL) was a 500; one check here covers every
    reader there, present and future.
    The public endpoints check their own parameters and answer in their own shape (the e-mail confirm link shows a
    page; the Audience API takes the fast lane, before this middleware)."""

    PREFIXES = ("/api/", "/admin/")
    MESSAGE = "must not contain NUL characters"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path_info.startswith(self.PREFIXES):
            return self.get_response(request)
        if "\x00" in request.path_info:  # an object id in the URL (/admin/.../%00/change/)
            return JsonResponse(error_body(f"The path {self.MESSAGE}."), status=400)
        for name, values in request.GET.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                shown = name.replace("\x00", "\\x00")[:64]
                return JsonResponse(error_body(f"{shown}: {self.MESSAGE}", {shown: [self.MESSAGE]}), status=400)
        return self.get_response(request)


class ServiceBusyMiddleware:
    """A ServiceBusy raised by a view (a write that could not get its turn: cdp.http.ServiceBusy) is a 503 with
    Retry-After and its message: a page in the admin, JSON elsewhere; nothing was changed (its transaction rolled
    back on the way out). DRF leaves such exceptions to Django, so API views and the admin's forms and actions get
    the same answer without each catching it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, ServiceBusy):
            return None
        return busy_response(request, str(exception), retry_after=exception.retry_after)
