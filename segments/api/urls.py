"""Segments routes under /api/ (included from cdp/urls.py)."""

from cdp.api.urls import OptionalSlashRouter
from segments.api import views

router = OptionalSlashRouter()
router.register("segments", views.SegmentViewSet, basename="segment")
router.register(r"segments/(?P<segment_pk>[0-9]+)/notes", views.SegmentNoteViewSet, basename="segment-note")
router.register(r"segments/(?P<segment_pk>[0-9]+)/acl", views.SegmentGrantViewSet, basename="segment-grant")
router.register("trash/segments", views.SegmentTrashViewSet, basename="trash-segment")
router.register("tags", views.TagViewSet, basename="tag")

urlpatterns = router.urls
