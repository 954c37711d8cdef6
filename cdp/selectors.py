"""Reads. Return QuerySets; the API, admin and exports share them (and the FilterSets in cdp.filters)."""

from django.db.models import QuerySet

from cdp.models import ApiToken, CustomerEntity, CustomerEvent, DataSource, GlobalSettingChange, Role, User


def events_list() -> QuerySet[CustomerEvent]:
    return CustomerEvent.objects.select_related("source", "customer_entity").order_by("-event_time", "-id")


def entities_list() -> QuerySet[CustomerEntity]:
    return CustomerEntity.objects.order_by("-modified", "-id")


def data_sources_list() -> QuerySet[DataSource]:
    return DataSource.objects.order_by("-created", "-id")


def users_list() -> QuerySet[User]:
    return User.objects.select_related("role").order_by("-date_joined", "-id")


def roles_list() -> QuerySet[Role]:
    return Role.objects.order_by("-created", "-id")


def tokens_list(*, user: User) -> QuerySet[ApiToken]:
    """A user's own tokens; a user administrator sees everyone's."""
    qs = ApiToken.objects.select_related("user").order_by("-created", "-id")
    return qs if user.has_feature("users_admin") else qs.filter(user=user)


def global_setting_changes_list() -> QuerySet[GlobalSettingChange]:
    return GlobalSettingChange.objects.select_related("changed_by").order_by("-changed", "-id")
