from cdp.api.urls import OptionalSlashRouter
from segments.exports.api import views

router = OptionalSlashRouter()
router.register("segment_export_destinations", views.ExportDestinationViewSet, basename="segment-export-destination")
router.register("segment_exports", views.SegmentExportViewSet, basename="segment-export")
router.register("segment_export_schedules", views.ExportScheduleViewSet, basename="segment-export-schedule")
urlpatterns = router.urls
