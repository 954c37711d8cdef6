"""Show the Business Explorer in the administrator's chosen time zone (data stays UTC; the API answers UTC)."""

from zoneinfo import ZoneInfo

from django.utils import timezone

from cdp.services.global_settings import global_setting_cached


class DisplayTimezoneMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith("/admin/"):
            return self.get_response(request)
        timezone.activate(ZoneInfo(global_setting_cached("display_timezone")))
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
