"""Stitching API: categories, rules, blocked values, refused links, hub reviews; a customer's identity graph,
change history and GDPR erasure; and "why are these two identifiers one customer?". Thin: selectors for reads,
services for writes (their Django ValidationErrors become 400s in cdp.api.errors)."""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from cdp.api.errors import error_body
from cdp.api.pagination import MAX_LIMIT, MAX_OFFSET, LimitOffsetPagination, _int_param, int_query_parameter
from cdp.api.serializers import CustomerEntitySerializer
from cdp.api.views import ENTITY_NOT_FOUND, FULL_STRUCTURE, CdpViewSet, entity_get_or_404, entity_not_found
from cdp.features import Feature
from cdp.models import CustomerEntity
from cdp.services.erasure import ErasureBacklog, entity_erase
from stitching import selectors
from stitching.api import filters
from stitching.api import serializers as s
from stitching.services import config

ENTITY_ID = OpenApiParameter("id", str, OpenApiParameter.PATH, description="Customer entity id (32 hex characters).")
ERROR = OpenApiResponse(description='{"status": "error", "message": "..."}')


class StitchingConfigViewSet(CdpViewSet):
    read_feature = Feature.CUSTOMERS_VIEW
    write_feature = Feature.STITCHING_EDIT


@extend_schema(tags=["Stitching Categories"])
class StitchingCategoryViewSet(StitchingConfigViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                               mixins.CreateModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin):  # fmt: skip
    """Kinds of identifiers (email, phone, cookie, user id ...), each with a normaliser, a per-customer limit and a
    priority (which identifier a limit drops first)."""

    serializer_class = s.StitchingCategorySerializer
    delete_refusal = "Stitching rules or attributes use the category (`message` names them)."
    lookup_value_regex = r"[a-z0-9_\-]+"

    def get_queryset(self):
        return selectors.categories_list()

    def perform_create(self, serializer):
        serializer.instance = config.category_create(**serializer.validated_data)

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        data.pop("id", None)
        serializer.instance = config.category_update(category=serializer.instance, **data)

    def perform_destroy(self, instance):
        config.category_delete(category=instance)


@extend_schema_view(
    list=extend_schema(parameters=[FULL_STRUCTURE]), retrieve=extend_schema(parameters=[FULL_STRUCTURE])
)
@extend_schema(tags=["Stitching Category Rules"])
class StitchingRuleViewSet(StitchingConfigViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                           mixins.CreateModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin):  # fmt: skip
    """For events of a data source and type (* = any), where a category's identifier sits in the payload. Changing
    rules re-stitches the customers holding the events they apply to."""

    serializer_class = s.StitchingRuleSerializer
    filterset_class = filters.StitchingRuleFilter

    def get_queryset(self):
        return selectors.rules_list()

    def perform_create(self, serializer):
        serializer.instance = config.rule_create(**serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = config.rule_update(rule=serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance):
        config.rule_delete(rule=instance)


@extend_schema_view(
    list=extend_schema(parameters=[FULL_STRUCTURE]), retrieve=extend_schema(parameters=[FULL_STRUCTURE])
)
@extend_schema(tags=["Stitching Blocked Values"])
class BlockedValueViewSet(StitchingConfigViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                          mixins.CreateModelMixin, mixins.DestroyModelMixin):  # fmt: skip
    """Identifier values that never link events. Adding one splits the customers it had joined; removing one lets
    them join again."""

    serializer_class = s.BlockedValueSerializer
    filterset_class = filters.BlockedValueFilter

    def get_queryset(self):
        return selectors.blocked_values_list()

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = config.blocked_value_add(
            category=data.get("category"), value=data["value"], reason=data.get("reason", ""), user=self.request.user
        )

    def perform_destroy(self, instance):
        config.blocked_value_remove(blocked_value=instance, user=self.request.user)


@extend_schema(tags=["Stitching Refused Links"])
class RefusedLinkViewSet(StitchingConfigViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Identifiers events carried that were not allowed to link (blocked value, per-customer limit, held for hub
    review), with the reason. Newest first; `count` is null (the table can be large)."""

    serializer_class = s.RefusedLinkSerializer
    filterset_class = filters.RefusedLinkFilter
    paginate_without_count = True

    def get_queryset(self):
        return selectors.refused_links_list()


@extend_schema(tags=["Stitching Hub Reviews"])
class HubReviewViewSet(StitchingConfigViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Identifiers held because they would suddenly join many customers, waiting for a decision."""

    serializer_class = s.HubReviewSerializer
    filterset_class = filters.HubReviewFilter

    def get_queryset(self):
        return selectors.hub_reviews_list()

    @extend_schema(request=s.HubReviewDecisionSerializer, responses={200: s.HubReviewSerializer, 400: ERROR})
    @action(detail=True, methods=["post"], url_path="decide")
    def decide(self, request, pk=None):
        """Approve (the identifier links the customers it joins) or block its value; the affected customers are
        re-stitched."""
        decision = s.HubReviewDecisionSerializer(data=request.data)
        decision.is_valid(raise_exception=True)
        review = config.hub_review_decide(
            review=self.get_object(), approve=decision.validated_data["decision"] == "approve", user=request.user
        )
        return Response(s.HubReviewSerializer(review, context=self.get_serializer_context()).data)


@extend_schema(tags=["Customer Stitching Graph"], parameters=[ENTITY_ID])
class CustomerStitchingViewSet(CdpViewSet):
    """Per-customer stitching reads and GDPR erasure, under /api/customer_entities/{id}/ (explicit paths, so they
    sit next to the customer entity routes without clashing)."""

    read_feature = Feature.CUSTOMERS_VIEW
    feature_by_action = {"erase": Feature.CUSTOMERS_ERASE}
    queryset = CustomerEntity.objects.none()  # the schema's hint
    serializer_class = CustomerEntitySerializer

    def _entity(self, pk: str) -> CustomerEntity:
        return entity_get_or_404(CustomerEntity.objects.only("id"), pk)

    @extend_schema(
        parameters=[
            int_query_parameter(
                "limit",
                minimum=1,
                maximum=selectors.GRAPH_MAX_EVENTS,
                description=f"At most this many events (default {selectors.GRAPH_DEFAULT_EVENTS}, "
                f"max {selectors.GRAPH_MAX_EVENTS}): first those that brought each identifier, then the newest.",
            )
        ],
        responses={200: s.StitchingGraphSerializer, 404: ENTITY_NOT_FOUND},
    )
    def stitching_graph(self, request, pk: str):
        """The identity graph: which events brought which identifiers, when, and whether each link was allowed."""
        entity = self._entity(pk)
        limit = _int_param(request, "limit", selectors.GRAPH_DEFAULT_EVENTS, selectors.GRAPH_MAX_EVENTS)
        if limit == 0:
            raise ValidationError({"limit": "must be at least 1"})
        return Response(selectors.identity_graph(entity.pk, limit=limit))

    @extend_schema(
        parameters=[
            int_query_parameter("limit", minimum=1, maximum=MAX_LIMIT),
            int_query_parameter("offset", minimum=0, maximum=MAX_OFFSET),
        ],
        responses={200: s.EntityChangeSerializer(many=True)},
    )
    def changes(self, request, pk: str):
        """Merge, split and erasure history of a customer id, newest first. Works for an erased customer too (the
        erasure record holds no personal data)."""
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(selectors.entity_changes_list(entity_id=pk.lower()), request, view=self)
        return paginator.get_paginated_response(s.EntityChangeSerializer(page, many=True).data)

    @extend_schema(
        request=None,
        responses={
            200: s.ErasureReportSerializer,
            404: ENTITY_NOT_FOUND,
            503: OpenApiResponse(description="Data received before the erase is still being processed: retry."),
        },
    )
    def erase(self, request, pk: str):
        """GDPR erasure: the customer's events (those still queued too), identifiers (those no other event
        carries), attribute values and the email channel's state of their addresses are deleted; an erasure record
        with counts (no personal data) stays in the change history. An id merged into another customer (also by
        events received before the erase) is a 404 naming that customer (`merged_into`): erase that one. 503 when
        the data received before could not be processed in time: nothing was erased."""
        entity = self._entity(pk)
        try:
            report = entity_erase(entity=entity, user=request.user)
        except CustomerEntity.DoesNotExist:  # erased or merged away since it was read
            raise entity_not_found(entity.pk) from None
        except ErasureBacklog as backlog:
            response = Response(error_body(str(backlog)), status=status.HTTP_503_SERVICE_UNAVAILABLE)
            response["Retry-After"] = "60"
            return response
        return Response(report.as_dict(), status=status.HTTP_200_OK)


@extend_schema(tags=["Customer Stitching Graph"])
class IdentityPathViewSet(CdpViewSet):
    read_feature = Feature.CUSTOMERS_VIEW
    queryset = CustomerEntity.objects.none()
    serializer_class = s.IdentityPathSerializer
    PARAMS = ("from_category", "from_value", "to_category", "to_value")

    @extend_schema(
        parameters=[OpenApiParameter(name, str, required=True) for name in PARAMS],
        responses={200: s.IdentityPathSerializer, 400: ERROR, 404: ERROR, 422: ERROR},
    )
    def path(self, request):
        """Why are these two identifiers one customer? The shortest chain identifier → event → identifier → ...
        that links them (values are normalised like the category's identifiers). 400 for an unknown category or a
        value that cannot be one of its identifiers; 404 when no event carried a value or they are not linked."""
        values = {name: request.query_params.get(name, "") for name in self.PARAMS}
        missing = [name for name, value in values.items() if not value.strip()]
        if missing:
            raise ValidationError({missing[0]: "This query parameter is required."})
        try:
            result = selectors.identity_path(
                values["from_category"], values["from_value"], values["to_category"], values["to_value"]
            )
        except selectors.PathNotFound as exc:
            raise NotFound(str(exc)) from None
        except selectors.PathSearchTooLarge as exc:
            return Response(error_body(str(exc)), status=status.HTTP_422_UNPROCESSABLE_ENTITY)
        return Response(result)
