"""WSGI entry (gunicorn, runserver): Django, with the public fast lane in front of it (cdp.fastlane)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")

from cdp.fastlane import FastLaneApplication  # noqa: E402 - after the settings module is known

application = FastLaneApplication(get_wsgi_application())
