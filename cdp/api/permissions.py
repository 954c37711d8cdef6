"""Feature-based authorisation. A view names the feature it needs to read and to write."""

from rest_framework.permissions import SAFE_METHODS, BasePermission


class HasFeature(BasePermission):
    """Views set `read_feature` and `write_feature` (or `feature_by_action` for finer control)."""

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        feature = required_feature(request, view)
        if feature is None or request.user.has_feature(feature):
            return True
        self.message = f"Your role does not have the feature '{feature}' needed for this request."
        return False


def required_feature(request, view) -> str | None:
    by_action = getattr(view, "feature_by_action", {}) or {}
    action = getattr(view, "action", None)
    if action in by_action:
        return by_action[action]
    if request.method in SAFE_METHODS:
        return getattr(view, "read_feature", None)
    return getattr(view, "write_feature", None)
