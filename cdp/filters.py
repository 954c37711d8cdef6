"""FilterSets shared by the API, the admin and (later) exports, so they filter the same way."""

import django_filters
from django import forms
from django.db.models import Q

from cdp.models import ApiToken, CustomerEntity, CustomerEvent, DataSource, User


class StrictBooleanField(forms.Field):
    """true/false/1/0/yes/no; anything else is an error (not silently ignored)."""

    _values = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}

    def to_python(self, value):
        if value in (None, ""):
            return None
        if isinstance(value, bool):
            return value
        try:
            return self._values[str(value).strip().lower()]
        except KeyError:
            raise forms.ValidationError(f"{value!r} is not a boolean: use true or false.") from None


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


class SourceFilter(django_filters.CharFilter):
    """A data source by id or slug."""

    def filter(self, qs, value):
        if value in (None, ""):
            return qs
        values = [v.strip() for v in str(value).split(",") if v.strip()]
        condition = Q(**{f"{self.field_name}__slug__in": values})
        ids = [int(v) for v in values if v.isdecimal()]  # isdigit() lets "²" through, which int() refuses
        if ids:
            condition |= Q(**{f"{self.field_name}_id__in": ids})
        return qs.filter(condition)


class CustomerEventFilter(django_filters.FilterSet):
    source = SourceFilter(field_name="source", help_text="Data source id or slug (comma-separated for several).")
    type = django_filters.BaseInFilter(field_name="type", help_text="Event type (comma-separated for several).")
    event_time_from = django_filters.IsoDateTimeFilter(field_name="event_time", lookup_expr="gte")
    event_time_to = django_filters.IsoDateTimeFilter(field_name="event_time", lookup_expr="lt")
    created_from = django_filters.IsoDateTimeFilter(field_name="created", lookup_expr="gte")
    created_to = django_filters.IsoDateTimeFilter(field_name="created", lookup_expr="lt")
    customer_entity = django_filters.CharFilter(field_name="entity_link__customer_entity_id")
    stitched = StrictBooleanFilter(
        field_name="entity_link__customer_entity",
        lookup_expr="isnull",
        exclude=True,
        help_text="true: only stitched events.",
    )
    message_id = django_filters.CharFilter(field_name="idempotency_key")

    class Meta:
        model = CustomerEvent
        fields: list[str] = []


class CustomerEntityFilter(django_filters.FilterSet):
    modified_from = django_filters.IsoDateTimeFilter(field_name="modified", lookup_expr="gte")
    modified_to = django_filters.IsoDateTimeFilter(field_name="modified", lookup_expr="lt")

    class Meta:
        model = CustomerEntity
        fields: list[str] = []


class DataSourceFilter(django_filters.FilterSet):
    type = django_filters.ChoiceFilter(choices=DataSource.Type.choices)
    search = django_filters.CharFilter(method="filter_search", help_text="Part of the name or slug.")

    class Meta:
        model = DataSource
        fields: list[str] = []

    def filter_search(self, qs, name, value):
        return qs.filter(Q(name__icontains=value) | Q(slug__icontains=value))


class UserFilter(django_filters.FilterSet):
    role = django_filters.NumberFilter(field_name="role_id")
    is_active = StrictBooleanFilter()
    search = django_filters.CharFilter(method="filter_search", help_text="Part of the username, name or email.")

    class Meta:
        model = User
        fields: list[str] = []

    def filter_search(self, qs, name, value):
        return qs.filter(
            Q(username__icontains=value)
            | Q(email__icontains=value)
            | Q(first_name__icontains=value)
            | Q(last_name__icontains=value)
        )


class ApiTokenFilter(django_filters.FilterSet):
    user = django_filters.NumberFilter(field_name="user_id")
    active = StrictBooleanFilter(field_name="revoked", lookup_expr="isnull")

    class Meta:
        model = ApiToken
        fields: list[str] = []
