"""FilterSets shared by the API, the admin and (later) exports, so they filter the same way."""

import re
from datetime import UTC, datetime, time, timedelta

import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_filters.fields import IsoDateTimeField

from cdp.models import ApiToken, CustomerEntity, CustomerEvent, DataSource, User
from cdp.services.events import idempotency_key_of


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


class SourceListField(forms.CharField):
    """Data sources by id or slug, comma-separated, cleaned to their ids; one that does not exist is an error naming
    it (a typo would otherwise read as "no events")."""

    def clean(self, value) -> list[int] | None:
        values = [v.strip() for v in str(super().clean(value) or "").split(",") if v.strip()]
        if not values:
            return None
        # (isdecimal: isdigit() lets "²" through, which int() refuses; 19 digits and more are past bigint.)
        ids = [int(v) for v in values if v.isdecimal() and len(v) < 19]
        known = list(DataSource.objects.filter(Q(slug__in=values) | Q(pk__in=ids)).values_list("slug", "pk"))
        found = {slug for slug, _ in known} | {str(pk) for _, pk in known}
        unknown = [v for v in values if v not in found and v.lstrip("0") not in found]
        if unknown:
            raise forms.ValidationError(f"No data source {', '.join(repr(v[:64]) for v in unknown[:5])}.")
        return [pk for _, pk in known]


class SourceFilter(django_filters.CharFilter):
    """A data source by id or slug."""

    field_class = SourceListField

    def filter(self, qs, value):
        return qs if not value else qs.filter(**{f"{self.field_name}_id__in": value})


class EventTypeListField(forms.CharField):
    """Event types, comma-separated, with the spaces around each dropped (a type has none: ingestion refuses them),
    as the data sources' list reads them: `page, identify` is two types, not `page` and ` identify` (no event)."""

    def clean(self, value) -> list[str] | None:
        return [v.strip() for v in str(super().clean(value) or "").split(",") if v.strip()] or None


class EventTypeFilter(django_filters.CharFilter):
    field_class = EventTypeListField

    def filter(self, qs, value):
        return qs if not value else qs.filter(**{f"{self.field_name}__in": value})


DATE_ONLY_RE = re.compile(r"\s*\d{4}-?\d{2}-?\d{2}\s*\Z")  # (2026-08-28 or 20260828)
# A time of day, then a space where the offset's "+" was: "10:05:00 01:00" (not "2026-08-28 10:05", a date and time).
UNESCAPED_PLUS_RE = re.compile(r"(\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?) (\d\d(?::?\d\d)?)\Z")


def time_in_utc(moment: datetime) -> datetime:
    """An aware time as UTC, the way PostgreSQL is asked: it refuses a UTC offset past 15:59 (Python reads up to 23:59,
    so "...+18:48" was a 500). A time before year 1 or after 9999 in UTC, which Python cannot hold, is the calendar's
    first or last moment: as a bound it keeps or leaves out the same stored times."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return (datetime.min if moment.year == 1 else datetime.max).replace(tzinfo=UTC)


class TimeField(IsoDateTimeField):
    """An ISO 8601 time, as UTC; a "+01:00" not escaped in the URL (it arrives as " 01:00") is read as the offset it
    was."""

    def read(self, value) -> datetime | None:
        """The time as given (its own offset, or the current time zone's for one without)."""
        if isinstance(value, str):
            value = UNESCAPED_PLUS_RE.sub(r"\1+\2", value.strip())
        return super().to_python(value)

    def to_python(self, value):
        return self.utc(self.read(value))

    @staticmethod
    def utc(parsed: datetime | None) -> datetime | None:
        """An aware time as UTC (time_in_utc); None and a naive time as they are."""
        return parsed if parsed is None or timezone.is_naive(parsed) else time_in_utc(parsed)


class TimeLowerBoundFilter(django_filters.IsoDateTimeFilter):
    """An inclusive lower bound (ISO 8601)."""

    field_class = TimeField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("lookup_expr", "gte")
        super().__init__(*args, **kwargs)


class UpperBoundField(TimeField):
    """An ISO 8601 time; a date alone (2026-08-28) is the midnight after that day, so an exclusive bound takes in the
    whole day, as the admin's date range does (none for 9999-12-31: every event is before the end of that day)."""

    def to_python(self, value):
        parsed = self.read(value)
        if parsed is not None and DATE_ONLY_RE.match(str(value)):
            try:
                day = parsed.date() + timedelta(days=1)  # (parsed: midnight of that date, where it was read)
            except OverflowError:
                return None
            parsed = timezone.make_aware(datetime.combine(day, time.min), parsed.tzinfo)
        return self.utc(parsed)


class TimeUpperBoundFilter(django_filters.IsoDateTimeFilter):
    """An exclusive upper bound (from <= t < to: consecutive windows neither overlap nor leave a gap); a date alone
    takes in that whole day (UpperBoundField)."""

    field_class = UpperBoundField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("lookup_expr", "lt")
        kwargs.setdefault(
            "help_text", "Before this time (ISO 8601); a date alone (YYYY-MM-DD) takes in that whole day."
        )
        super().__init__(*args, **kwargs)


class CustomerEventFilter(django_filters.FilterSet):
    source = SourceFilter(field_name="source", help_text="Data source id or slug (comma-separated for several).")
    type = EventTypeFilter(field_name="type", help_text="Event type (comma-separated for several).")
    event_time_from = TimeLowerBoundFilter(field_name="event_time")
    event_time_to = TimeUpperBoundFilter(field_name="event_time")
    created_from = TimeLowerBoundFilter(field_name="created")
    created_to = TimeUpperBoundFilter(field_name="created")
    customer_entity = django_filters.CharFilter(field_name="entity_link__customer_entity_id")
    stitched = StrictBooleanFilter(
        field_name="entity_link__customer_entity",
        lookup_expr="isnull",
        exclude=True,
        help_text="true: only stitched events.",
    )
    message_id = django_filters.CharFilter(
        method="filter_message_id", help_text="The message id the event was sent with (exact)."
    )

    class Meta:
        model = CustomerEvent
        fields: list[str] = []

    def filter_message_id(self, queryset, name, value):
        return queryset.filter(idempotency_key=idempotency_key_of(value.strip()))


class EntityEventFilter(CustomerEventFilter):
    """One customer's events: every one is that customer's and stitched, so those two filters would only mislead."""

    customer_entity = None
    stitched = None


class CustomerEntityFilter(django_filters.FilterSet):
    modified_from = TimeLowerBoundFilter(field_name="modified")
    modified_to = TimeUpperBoundFilter(field_name="modified")
    ordering = django_filters.ChoiceFilter(
        choices=[("-modified", "newest change first (the default)"), ("modified", "oldest change first")],
        method="filter_ordering",
        help_text="modified: oldest change first (by modified, then id), for an incremental sync with `after`.",
    )
    after = django_filters.CharFilter(
        method="filter_after",
        help_text="With ordering=modified: only the customers after this one, given as '<modified>,<id>' of the last "
        "customer read (keyset paging). A sync that reads page after page this way (offset 0) misses no customer "
        "changed meanwhile: with offsets, one that moves shifts every later page by one and another is never read.",
    )

    def filter_ordering(self, queryset, name, value):
        return queryset.order_by(value, value.replace("modified", "id"))

    def filter_after(self, queryset, name, value):
        if self.form.cleaned_data.get("ordering") != "modified":
            raise ValidationError({"after": "after needs ordering=modified."})
        modified_text, _, entity_id = value.partition(",")
        # A "+00:00" not escaped in the URL arrives as " 00:00".
        modified = parse_datetime(re.sub(r" (\d\d:?\d\d)$", r"+\1", modified_text.strip()))
        entity_id = entity_id.strip().lower()
        if modified is None or timezone.is_naive(modified) or not re.fullmatch(r"[0-9a-z_-]{1,32}", entity_id):
            raise ValidationError(
                {"after": "Give '<modified>,<id>' of the last customer read, e.g. '2026-01-01T10:00:00.123456Z,"
                 "0840bad62e8649b087e7a2cfb63fc426'."}
            )  # fmt: skip
        modified = time_in_utc(modified)
        return queryset.filter(modified__gte=modified).filter(Q(modified__gt=modified) | Q(id__gt=entity_id))

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
