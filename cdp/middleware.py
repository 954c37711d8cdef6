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

    The Audience API (`/wbs`, called on every page view) and the provider feedback webhooks use no session,
    user, CSRF token, message or admin time zone; running those middlewares was about half of such a request's
    time in Django. Which views take the lane is `PUBLIC_FAST_LANE` (URL names): each is resolved with the normal
    URL configuration, so the paths, their parameters and the views stay those of `cdp/urls.py`. What the lane
    still does: the `ALLOWED_HOSTS` check and `SecurityMiddleware`'s `nosniff` header (views set their own CORS
    and rate limits; errors go through Django's handler as usual)."""

    def __init__(self, get_response):
        self.get_response = get_response
        self._paths: dict[str, tuple] | None = None

    def _lane(self) -> dict[str, tuple]:
        if self._paths is None:
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
            self._paths = lane
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
