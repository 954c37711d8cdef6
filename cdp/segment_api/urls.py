"""Segment HTTP Tracking API, mounted at /v1/ (see cdp.segment_api.views)."""

from django.urls import path

from cdp.segment_api import views

app_name = "segment_api"

urlpatterns = [
    path("batch", views.batch, name="batch"),
    path("import", views.batch, name="import"),  # Segment's older name for batch
    path("track", views.track, name="track"),
    path("identify", views.identify, name="identify"),
    path("page", views.page, name="page"),
    path("screen", views.screen, name="screen"),
    path("alias", views.alias, name="alias"),
    path("group", views.group, name="group"),
    # analytics.js (analytics-next) posts to one-letter paths.
    path("t", views.track, name="track-short"),
    path("i", views.identify, name="identify-short"),
    path("p", views.page, name="page-short"),
    path("s", views.screen, name="screen-short"),
    path("a", views.alias, name="alias-short"),
    path("g", views.group, name="group-short"),
]
