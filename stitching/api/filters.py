"""FilterSets of the stitching API (the admin filters the same fields with its list filters)."""

import django_filters

from cdp.filters import SourceFilter
from stitching.models import BlockedValue, EventIdentifier, HubReview, StitchingRule
from stitching.selectors import identifier_value_condition


class StitchingRuleFilter(django_filters.FilterSet):
    source = SourceFilter(field_name="source", help_text="Data source id or slug (comma-separated for several).")
    category = django_filters.BaseInFilter(field_name="category_id", help_text="Category id (comma-separated).")
    event_type = django_filters.CharFilter(field_name="event_type")

    class Meta:
        model = StitchingRule
        fields: list[str] = []


class BlockedValueFilter(django_filters.FilterSet):
    category = django_filters.CharFilter(field_name="category_id", help_text="Category id.")
    value = django_filters.CharFilter(field_name="value", help_text="Exact normalised value.")

    class Meta:
        model = BlockedValue
        fields: list[str] = []


class RefusedLinkFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(
        choices=[c for c in EventIdentifier.Status.choices if c[0] != EventIdentifier.Status.LINKED]
    )
    category = django_filters.CharFilter(field_name="identifier__category_id", help_text="Category id.")
    customer_entity = django_filters.CharFilter(field_name="event__entity_link__customer_entity_id")
    value = django_filters.CharFilter(
        method="filter_value",
        help_text="An identifier value, as stored or as any category normalises it (an email in any case, a phone "
        "number as written), as the admin's search.",
    )

    class Meta:
        model = EventIdentifier
        fields: list[str] = []

    def filter_value(self, queryset, name, value):
        term = value.strip()
        return queryset.filter(identifier_value_condition(term)) if term else queryset


class HubReviewFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=HubReview.Status.choices)

    class Meta:
        model = HubReview
        fields: list[str] = []
