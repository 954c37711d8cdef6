from cdp.api.urls import OptionalSlashRouter
from notifications.api.views import NotificationViewSet

router = OptionalSlashRouter()
router.register("notifications", NotificationViewSet, basename="notification")
urlpatterns = router.urls
