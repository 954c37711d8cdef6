"""Customer profile API: attribute definitions, customers with attributes, search, events and counts.

Thin: selectors read (cdp.selectors), services write (cdp.services.attributes).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from cdp import filters, selectors
from cdp.api import profile_serializers as ps
from cdp.api import serializers as s
from cdp.api.pagination import LimitOffsetPagination, _int_param, int_query_parameter
from cdp.api.views import ENTITY_NOT_FOUND, FULL_STRUCTURE, CdpViewSet, CustomerEntityViewSet, entity_get_or_404
from cdp.features import Feature
from cdp.models import Attribute, CustomerEntity
from cdp.services import attributes as attribute_services
from cdp.values import datetime_stored

VALUE_COUNTS_DEFAULT = 20
VALUE_COUNTS_MAX = 1000


@extend_schema_view(
    list=extend_schema(parameters=[FULL_STRUCTURE]), retrieve=extend_schema(parameters=[FULL_STRUCTURE])
)
@extend_schema(tags=["Attributes"])
class AttributeViewSet(CdpViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                       mixins.UpdateModelMixin, mixins.DestroyModelMixin):  # fmt: skip
    """Computed attribute definitions. Creating one, or changing what it computes, recomputes every customer in
    the background."""

    serializer_class = ps.AttributeSerializer
    delete_refusal = "Segments, export destinations or the Audience API setting use it (`message` names them)."
    read_feature = Feature.CUSTOMERS_VIEW
    write_feature = Feature.ATTRIBUTES_EDIT
    lookup_value_regex = r"[A-Za-z0-9_\-]+"

    def get_queryset(self):
        return selectors.attributes_list()

    def perform_create(self, serializer):
        serializer.instance = attribute_services.attribute_create(**serializer.validated_data)

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        data.pop("id", None)
        serializer.instance = attribute_services.attribute_update(attribute=serializer.instance, **data)

    def perform_destroy(self, instance):
        attribute_services.attribute_delete(attribute=instance)

    @extend_schema(
        tags=["Attribute Value Counts"],
        parameters=[
            int_query_parameter(
                "limit",
                minimum=1,
                maximum=VALUE_COUNTS_MAX,
                description=f"How many values (default {VALUE_COUNTS_DEFAULT}, at most {VALUE_COUNTS_MAX}).",
            )
        ],  # fmt: skip
        responses={200: ps.AttributeValueCountsSerializer},
    )
    @action(detail=True, methods=["get"], url_path="value_counts", pagination_class=None, filter_backends=[])
    def value_counts(self, request, pk=None):
        """The most frequent values of the attribute across all customers, with how many customers have each."""
        limit = _int_param(request, "limit", VALUE_COUNTS_DEFAULT, VALUE_COUNTS_MAX)
        if limit == 0:
            raise ValidationError({"limit": "must be at least 1"})
        return Response(selectors.attribute_value_counts(attribute=self.get_object(), limit=limit))


@extend_schema_view(
    list=extend_schema(parameters=[FULL_STRUCTURE], description="Newest change first. `count` is null."),
    retrieve=extend_schema(
        parameters=[FULL_STRUCTURE],
        description="One customer with their attribute values.",
        responses={200: ps.CustomerEntityDetailSerializer, 404: ENTITY_NOT_FOUND},
    ),
)
@extend_schema(tags=["Customer Entities"])
class CustomerProfileViewSet(CustomerEntityViewSet):
    """Customers: the list stays cheap (no attribute values); the detail and sub-resources form the profile."""

    def get_queryset(self):
        if self.action == "events":  # what the events FilterSet filters (the schema generator asks for it)
            return selectors.events_list()
        qs = super().get_queryset()
        # The list does not show values: do not read the (largest) column.
        return qs.defer("attributes") if self.action == "list" else qs

    def get_serializer_class(self):
        if self.action == "events":
            return s.CustomerEventSerializer
        return ps.CustomerEntityDetailSerializer if self.action == "retrieve" else s.CustomerEntitySerializer

    def _entity(self) -> CustomerEntity:
        return entity_get_or_404(CustomerEntity.objects.all(), self.kwargs["pk"])

    @extend_schema(
        tags=["Customer Attributes"], responses={200: ps.CustomerAttributesSerializer, 404: ENTITY_NOT_FOUND}
    )
    @action(detail=True, methods=["get"], url_path="attributes", pagination_class=None, filter_backends=[])
    def attributes(self, request, pk=None):
        """Every attribute definition with this customer's values (an empty list when not set)."""
        entity = self._entity()
        definitions = Attribute.objects.order_by("name", "id")
        stored = entity.attributes or {}
        rows = [
            {
                "id": a.pk,
                "name": a.name,
                "description": a.description,
                "data_type": a.data_type,
                "unit": a.unit,
                "computation": a.computation,
                "values": stored.get(a.pk, []),
            }
            for a in definitions
        ]
        body = {
            "customer_entity": entity.pk,
            "modified": entity.modified,
            "stale": selectors.entity_attributes_stale(entity_id=entity.pk),
            "attributes": rows,
        }
        return Response(ps.CustomerAttributesSerializer(body).data)

    @extend_schema(
        tags=["Customer Events"],
        parameters=[FULL_STRUCTURE],
        responses={200: s.CustomerEventSerializer(many=True), 404: ENTITY_NOT_FOUND},
        filters=True,
    )
    @action(
        detail=True, methods=["get"], url_path="events", filterset_class=filters.EntityEventFilter
    )  # fmt: skip
    def events(self, request, pk=None):
        """The customer's events, newest first, filtered by type, source and time (limit / offset; `count` is
        null)."""
        entity = self._entity()
        qs = self.filter_queryset(selectors.entity_events_list(entity_id=entity.pk))
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(tags=["Customers' Event Counts"], responses={200: ps.EventCountsSerializer, 404: ENTITY_NOT_FOUND})
    @action(detail=True, methods=["get"], url_path="event_counts", pagination_class=None, filter_backends=[])
    def event_counts(self, request, pk=None):
        """How many events the customer has per data source and event type, with totals."""
        entity = self._entity()
        return Response({"customer_entity": entity.pk, **selectors.entity_event_counts(entity_id=entity.pk)})


@extend_schema(tags=["Customers Search"])
class CustomersSearchViewSet(CdpViewSet):
    """Find customers by any identifier (an email, phone, user id or cookie, as typed: it is normalised per
    stitching category) or text attribute value (`q`), or by an exact value of one attribute (`attribute` and
    `value`, the value read as the attribute's data type)."""

    read_feature = Feature.CUSTOMERS_VIEW
    serializer_class = ps.CustomerEntityDetailSerializer
    pagination_class = LimitOffsetPagination
    queryset = CustomerEntity.objects.none()  # the schema's hint; rows come from the search selector

    @extend_schema(
        parameters=[
            OpenApiParameter("q", str, description="An identifier or text attribute value (exact)."),
            OpenApiParameter("attribute", str, description="An attribute id, with `value`."),
            OpenApiParameter("value", str, description="The attribute value: a number, true / false, YYYY-MM-DD ..."),
        ],
        responses={200: ps.CustomerEntityDetailSerializer(many=True)},
    )
    def list(self, request):
        params = request.query_params
        q = (params.get("q") or "").strip()
        attribute_id, raw_value = params.get("attribute"), params.get("value")
        if not q and not attribute_id:
            raise ValidationError({"q": "Give q (an identifier or value), or attribute and value."})
        if len(q) > 400:
            raise ValidationError({"q": "At most 400 characters."})
        attribute, value = None, None
        if attribute_id:
            attribute = Attribute.objects.filter(pk=attribute_id).first()
            if attribute is None:
                raise ValidationError({"attribute": f"Unknown attribute {attribute_id[:64]!r}."})
            if raw_value in (None, ""):
                raise ValidationError({"value": "Give the value to look for."})
            value = attribute_value_parse(attribute, raw_value)
        qs = selectors.customers_search(q=q or None, attribute=attribute, value=value)
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


def attribute_value_parse(attribute: Attribute, raw: str) -> Any:
    """A query-string value as the JSON value stored for the attribute's data type (ValidationError if it is
    not one)."""
    data_type, text = attribute.data_type, raw.strip()
    if data_type == Attribute.DataType.COMPOUND:
        raise ValidationError(
            {"attribute": f"{attribute.pk} is a compound attribute (objects of fields): search by a text, number, "
             "yes / no or date attribute instead."}
        )  # fmt: skip
    try:
        if data_type == Attribute.DataType.INT:
            return int(text)
        if data_type == Attribute.DataType.FLOAT:
            number = float(text)
            if not math.isfinite(number):
                raise ValueError
            return int(number) if number.is_integer() else number
        if data_type == Attribute.DataType.BOOL:
            return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[text.lower()]
        if data_type == Attribute.DataType.DATE:
            return date.fromisoformat(text).isoformat()
        if data_type == Attribute.DataType.DATETIME:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return datetime_stored(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    except (ValueError, KeyError, OverflowError):
        raise ValidationError(
            {"value": f"{raw[:60]!r} is not a {attribute.get_data_type_display().lower()} ({data_type})."}
        ) from None
    if attribute.computation == Attribute.Computation.IDENTIFIER_VALUES:
        return _identifier_normalise(attribute.category, raw)
    return text


def _identifier_normalise(category_id: str, raw: str) -> str:
    from stitching.models import StitchingCategory
    from stitching.normalizers import normalize

    normalizer = StitchingCategory.objects.filter(pk=category_id).values_list("normalizer", flat=True).first()
    if normalizer is None:
        return raw.strip()
    return normalize(normalizer, raw) or raw.strip()
