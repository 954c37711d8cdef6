"""URLs of the email channel: the public endpoints and pages at the site root, the REST API under /api/."""

from django.urls import include, path

from emails import public_views as views

app_name = "emails"

urlpatterns = [
    path("emails/subscribe", views.subscribe_view, name="subscribe"),
    path("emails/unsubscribe", views.unsubscribe_view, name="unsubscribe"),
    path("emails/unsubscribe/one-click", views.one_click_view, name="one-click"),
    path("emails/confirm", views.confirm_view, name="confirm"),
    path("emails/feedback", views.feedback_view, name="feedback"),
    path("emails/feedback/<str:provider>", views.feedback_view, name="feedback-provider"),
    path("email/subscribe.html", views.subscribe_page, name="subscribe-page"),
    path("email/unsubscribe.html", views.unsubscribe_page, name="unsubscribe-page"),
    path("api/", include("emails.api.urls")),
]
