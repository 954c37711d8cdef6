"""FilterSets for segments, shared by the API and the admin."""

import django_filters

from cdp.filters import StrictBooleanFilter
from segments.models import Segment, Tag


class SegmentFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name contains")
    tag = django_filters.CharFilter(method="filter_tag", label="Tag name (comma-separated: any of them)")
    owner = django_filters.NumberFilter(field_name="owner_id", label="Owner user id")
    mine = StrictBooleanFilter(method="filter_mine", label="Only segments I own")

    class Meta:
        model = Segment
        fields = ["q", "tag", "owner", "mine"]

    def filter_tag(self, queryset, name, value):
        names = [item.strip() for item in value.split(",") if item.strip()]
        if not names:
            return queryset
        tag_ids = [tag.pk for tag in Tag.objects.all() if tag.name.lower() in {n.lower() for n in names}]
        return queryset.filter(tags__in=tag_ids).distinct()

    def filter_mine(self, queryset, name, value):
        if value is None:
            return queryset
        user = getattr(self.request, "user", None)
        if value:
            return queryset.filter(owner_id=getattr(user, "pk", None))
        return queryset.exclude(owner_id=getattr(user, "pk", None))


class TagFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name contains")

    class Meta:
        model = Tag
        fields = ["q"]
