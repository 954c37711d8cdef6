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
