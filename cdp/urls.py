from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from cdp.observability import healthz, readyz
from segments.audience import audience_view

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # Browsers ask for it on every page; the admin's pages name it too (UNFOLD["SITE_FAVICONS"]).
    path("favicon.ico", RedirectView.as_view(url=static("cdp/favicon.svg"), permanent=False), name="favicon"),
    path("readyz", readyz, name="readyz"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/", include("stitching.api.urls")),
    path("api/", include("cdp.api.urls")),
    path("api/", include("segments.api.urls")),
    path("api/", include("notifications.api.urls")),
    path("api/", include("segments.exports.api.urls")),
    path("wbs", audience_view, name="audience"),
    path("v1/", include("cdp.segment_api.urls")),
    path("", include("emails.urls")),
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
]

handler404 = "cdp.api.errors.handler404"
handler500 = "cdp.api.errors.handler500"
