from django.urls import path, re_path
from rest_framework.routers import SimpleRouter

from cdp.api import profile_views, views


class OptionalSlashRouter(SimpleRouter):
    """`/api/events` and `/api/events/` both work (no redirect that would drop a POST body)."""

    def __init__(self):
        super().__init__()
        self.trailing_slash = "/?"


router = OptionalSlashRouter()
router.register("users", views.UserViewSet, basename="user")
router.register("user_roles", views.RoleViewSet, basename="role")
router.register("tokens", views.ApiTokenViewSet, basename="token")
router.register("data_sources", views.DataSourceViewSet, basename="data-source")
router.register("global_settings", views.GlobalSettingViewSet, basename="global-setting")
router.register("events", views.CustomerEventViewSet, basename="event")
router.register("customer_entities", profile_views.CustomerProfileViewSet, basename="customer-entity")
router.register("attributes", profile_views.AttributeViewSet, basename="attribute")


def auth(actions: dict[str, str]):
    """The AuthViewSet view for `actions`, with the options their `@action` sets (its `permission_classes`). A
    router passes them on; `as_view` alone does not, and `users/me` answered 200 (an empty user) with no token."""
    options = getattr(views.AuthViewSet, next(iter(actions.values()))).kwargs
    return views.AuthViewSet.as_view(actions, **options)


urlpatterns = [
    path("users/login", auth({"post": "login"}), name="login"),
    path("users/logout", auth({"post": "logout", "delete": "logout"}), name="logout"),
    path("users/me", auth({"get": "me"}), name="me"),
    re_path(
        r"^customers/search/?$", profile_views.CustomersSearchViewSet.as_view({"get": "list"}), name="customers-search"
    ),
    *router.urls,
]
