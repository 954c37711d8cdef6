"""Feature-based authorisation. A view names the feature it needs to read and to write."""

from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import SAFE_METHODS, BasePermission


class HasFeature(BasePermission):
    """Views set `read_feature` and `write_feature` (or `feature_by_action` for finer control)."""

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        feature = required_feature(request, view)
        if feature is None or request.user.has_feature(feature):
            return True
        self.message = missing_feature_message(feature)
        return False


def missing_feature_message(feature: str, needed_for: str = "this request") -> str:
    return f"Your role does not have the feature '{feature}' needed for {needed_for}."


def feature_require(request, feature: str, *, needed_for: str = "this request") -> None:
    """A second feature an action needs on top of the one HasFeature checked: a 403 naming it."""
    if not request.user.has_feature(feature):
        raise PermissionDenied(missing_feature_message(feature, needed_for))


def required_feature(request, view) -> str | None:
    by_action = getattr(view, "feature_by_action", {}) or {}
    action = getattr(view, "action", None)
    if action in by_action:
        return by_action[action]
    if request.method in SAFE_METHODS:
        return getattr(view, "read_feature", None)
    return getattr(view, "write_feature", None)
