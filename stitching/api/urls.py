"""Stitching routes under /api/ (included from cdp/urls.py before the core API)."""

from django.urls import re_path

from cdp.api.urls import OptionalSlashRouter
from stitching.api import views

router = OptionalSlashRouter()
router.register("stitching_categories", views.StitchingCategoryViewSet, basename="stitching-category")
router.register("stitching_rules", views.StitchingRuleViewSet, basename="stitching-rule")
router.register("stitching_blocked_values", views.BlockedValueViewSet, basename="stitching-blocked-value")
router.register("stitching_refused_links", views.RefusedLinkViewSet, basename="stitching-refused-link")
router.register("stitching_hub_reviews", views.HubReviewViewSet, basename="stitching-hub-review")

ENTITY = r"^customer_entities/(?P<pk>[0-9a-fA-F]{32})"
entity = views.CustomerStitchingViewSet.as_view
urlpatterns = [
    re_path(rf"{ENTITY}/stitching_graph/?$", entity({"get": "stitching_graph"}), name="customer-stitching-graph"),
    re_path(rf"{ENTITY}/changes/?$", entity({"get": "changes"}), name="customer-entity-changes"),
    re_path(rf"{ENTITY}/erase/?$", entity({"post": "erase"}), name="customer-entity-erase"),
    re_path(r"^stitching/path/?$", views.IdentityPathViewSet.as_view({"get": "path"}), name="stitching-path"),
    *router.urls,
]
