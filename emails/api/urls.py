from django.urls import path

from cdp.api.urls import OptionalSlashRouter
from emails.api import views

router = OptionalSlashRouter()
router.register("email_templates", views.EmailTemplateViewSet, basename="email-template")
router.register("emails", views.EmailAddressViewSet, basename="email-address")
router.register("email_campaigns", views.CampaignViewSet, basename="email-campaign")

channel = views.EmailChannelViewSet.as_view
urlpatterns = [
    path("channels/email", channel({"get": "retrieve", "patch": "partial_update"}), name="email-channel"),
    path(
        "channels/email/rotate_webhook_secret",
        channel({"post": "rotate_webhook_secret"}),
        name="email-channel-rotate-secret",
    ),  # fmt: skip
    path("channels/email/send_test", channel({"post": "send_test"}), name="email-channel-send-test"),
    *router.urls,
]
