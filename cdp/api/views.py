"""REST API for the core domain. Thin: selectors for reads, services for writes."""

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError, QuerySet
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ParseError, PermissionDenied, ValidationError
from rest_framework.permissions import SAFE_METHODS, AllowAny, IsAuthenticated
from rest_framework.response import Response

from cdp import filters, selectors
from cdp.api import serializers as s
from cdp.api.errors import NotFoundWithFields, error_body
from cdp.api.fields import FULL_STRUCTURE_PARAM, wants_full_structure
from cdp.api.idempotency import IdempotentPostMixin
from cdp.api.pagination import LimitOffsetPagination
from cdp.api.permissions import HasFeature
from cdp.features import Feature
from cdp.global_settings import DEFINITIONS, SettingInvalid
from cdp.models import ApiToken, CustomerEntity, GlobalSetting
from cdp.services import auth as auth_services
from cdp.services import data_sources as source_services
from cdp.services.events import events_create_bulk
from cdp.services.global_settings import global_setting_set

FULL_STRUCTURE = OpenApiParameter(
    FULL_STRUCTURE_PARAM, int, enum=[0, 1], description="1: embed related objects instead of their ids."
)


class CdpViewSet(IdempotentPostMixin, viewsets.GenericViewSet):
    """Feature permissions, `load_full_structure`, services' validation errors as 400, and POSTs done once per
    Idempotency-Key."""

    permission_classes = [IsAuthenticated, HasFeature]
    # Why a DELETE may be refused (a 400: the object is in use), for the schema; empty when it never is.
    delete_refusal = ""

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        context["full_structure"] = wants_full_structure(self.request) if self.request else False
        return context

    def get_object(self):
        """The object, or a 404 naming what was looked for ("No attribute 'x'.") rather than Django's "No
        Attribute matches the given query."."""
        try:
            return super().get_object()
        except Http404:
            lookup = self.kwargs.get(self.lookup_url_kwarg or self.lookup_field, "")
            name = self.get_queryset().model._meta.verbose_name
            raise NotFound(f"No {name} {str(lookup)[:80]!r}.") from None


@extend_schema(tags=["Authentication"])
class AuthViewSet(viewsets.ViewSet):
    permission_classes = [AllowAny]

    @extend_schema(
        request=s.LoginSerializer,
        responses={
            200: s.LoginResponseSerializer,
            401: OpenApiResponse(description="Wrong username or password."),
            429: OpenApiResponse(description="Too many failed logins for the user name: wait `Retry-After` seconds."),
        },
        auth=[],
    )
    @action(detail=False, methods=["post"], url_path="login")
    def login(self, request):
        """Exchange a username and password for an API token (a new token per login)."""
        data = s.LoginSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            result = auth_services.user_login(**data.validated_data)
        except auth_services.LoginThrottled as exc:
            response = Response(error_body(str(exc)), status=status.HTTP_429_TOO_MANY_REQUESTS)
            response["Retry-After"] = str(exc.retry_after)
            return response
        if result is None:
            return Response(error_body("Wrong username or password."), status=status.HTTP_401_UNAUTHORIZED)
        user, token, key = result
        return Response(
            {
                "token": key,
                "expires": token.expires.isoformat() if token.expires else None,
                "user": s.UserSerializer(user, context={"request": request}).data,
            }
        )

    @extend_schema(request=None, responses={204: None})
    @action(detail=False, methods=["post", "delete"], url_path="logout", permission_classes=[IsAuthenticated])
    def logout(self, request):
        """Revoke the token this request was made with."""
        if isinstance(request.auth, ApiToken):
            auth_services.token_revoke(token=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={200: s.UserSerializer})
    @action(detail=False, methods=["get"], url_path="me", permission_classes=[IsAuthenticated])
    def me(self, request):
        """The user this token belongs to, with the features of their role."""
        return Response(s.UserSerializer(request.user, context={"request": request}).data)


SUPERUSER_ONLY = "Only a superuser may change a superuser or create a token acting as one."


@extend_schema_view(
    list=extend_schema(parameters=[FULL_STRUCTURE]), retrieve=extend_schema(parameters=[FULL_STRUCTURE])
)
@extend_schema(tags=["Users"])
class UserViewSet(CdpViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                  mixins.UpdateModelMixin, mixins.DestroyModelMixin):  # fmt: skip
    serializer_class = s.UserSerializer
    delete_refusal = "Users are deactivated, not deleted; you cannot deactivate yourself."
    filterset_class = filters.UserFilter
    read_feature = write_feature = Feature.USERS_ADMIN

    def get_queryset(self):
        return selectors.users_list()

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        data.setdefault("password", None)
        data.pop("is_active", None)
        try:
            serializer.instance = auth_services.user_create(**data)
        except DjangoValidationError as exc:
            raise ValidationError(_validation_detail(exc, "password")) from None

    def get_object(self):
        user = super().get_object()
        if self.request.method not in SAFE_METHODS and not auth_services.user_may_manage(
            actor=self.request.user, user=user
        ):
            raise PermissionDenied(SUPERUSER_ONLY)
        return user

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        if serializer.instance == self.request.user and data.get("is_active") is False:
            raise ValidationError({"is_active": "You cannot deactivate yourself."})
        password = data.pop("password", None)
        try:
            serializer.instance = auth_services.user_update(user=serializer.instance, password=password, **data)
        except DjangoValidationError as exc:
            raise ValidationError(_validation_detail(exc, "password")) from None

    def perform_destroy(self, instance):
        """Users are deactivated, not deleted, so what they did stays attributable."""
        if instance == self.request.user:
            raise ValidationError({"id": "You cannot deactivate yourself."})
        auth_services.user_deactivate(user=instance)


def _validation_detail(exc: DjangoValidationError, default_field: str) -> dict:
    return exc.message_dict if hasattr(exc, "error_dict") else {default_field: exc.messages}


@extend_schema(tags=["User Roles"])
class RoleViewSet(CdpViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                  mixins.UpdateModelMixin, mixins.DestroyModelMixin):  # fmt: skip
    serializer_class = s.RoleSerializer
    delete_refusal = "The role is assigned to users: give them another role first."
    read_feature = write_feature = Feature.USERS_ADMIN

    def get_queryset(self):
        return selectors.roles_list()

    def perform_create(self, serializer):
        serializer.instance = auth_services.role_create(**serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = auth_services.role_update(role=serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance):
        try:
            instance.delete()
        except ProtectedError:
            raise ValidationError({"id": "The role is assigned to users; give them another role first."}) from None


@extend_schema_view(
    list=extend_schema(parameters=[FULL_STRUCTURE]), retrieve=extend_schema(parameters=[FULL_STRUCTURE])
)
@extend_schema(tags=["Authentication"])
class ApiTokenViewSet(CdpViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                      mixins.DestroyModelMixin):  # fmt: skip
    """Your API tokens (user administrators: everyone's). The token itself is shown only when created."""

    serializer_class = s.ApiTokenSerializer
    filterset_class = filters.ApiTokenFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ApiToken.objects.none()
        return selectors.tokens_list(user=self.request.user)

    @extend_schema(request=s.ApiTokenSerializer, responses={201: s.ApiTokenCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        owner = serializer.validated_data.get("user", request.user)
        if owner != request.user and not request.user.has_feature(Feature.USERS_ADMIN):
            raise PermissionDenied(f"Creating tokens for other users needs the feature '{Feature.USERS_ADMIN}'.")
        if not auth_services.user_may_manage(actor=request.user, user=owner):
            raise PermissionDenied(SUPERUSER_ONLY)
        token, key = auth_services.token_create(
            user=owner, name=serializer.validated_data.get("name", ""), expires=serializer.validated_data.get("expires")
        )
        token.token = key
        body = s.ApiTokenCreatedSerializer(token, context=self.get_serializer_context()).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None})
    def destroy(self, request, *args, **kwargs):
        """Revoke the token (it stays listed, with its revocation time)."""
        auth_services.token_revoke(token=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["Data Sources"])
class DataSourceViewSet(CdpViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                        mixins.UpdateModelMixin, mixins.DestroyModelMixin):  # fmt: skip
    serializer_class = s.DataSourceSerializer
    delete_refusal = "The source has events, or is the system source `cdp`."
    filterset_class = filters.DataSourceFilter
    read_feature = Feature.DATA_SOURCES_VIEW
    write_feature = Feature.DATA_SOURCES_EDIT

    def get_queryset(self):
        return selectors.data_sources_list()

    @extend_schema(request=s.DataSourceSerializer, responses={201: s.DataSourceCreatedSerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        source, key = source_services.data_source_create(**serializer.validated_data)
        source.write_key_plain = key
        return Response(s.DataSourceCreatedSerializer(source).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        serializer.instance = source_services.data_source_update(
            source=serializer.instance, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        try:
            source_services.data_source_delete(source=instance)
        except ProtectedError:  # an event stored since the check
            raise ValidationError({"id": "The data source has events; it cannot be deleted."}) from None

    @extend_schema(
        request=None,
        responses={
            200: s.WriteKeySerializer,
            400: OpenApiResponse(description="The system source `cdp` takes no events: it has no write key."),
        },
    )
    @action(detail=True, methods=["post"], url_path="rotate_write_key")
    def rotate_write_key(self, request, pk=None):
        """Issue a new write key; the old one stops working at once."""
        key = source_services.data_source_rotate_write_key(source=self.get_object())
        return Response({"write_key": key})


@extend_schema(tags=["Global Settings"])
class GlobalSettingViewSet(CdpViewSet):
    """Typed settings an administrator edits. Every change is validated and audited."""

    serializer_class = s.GlobalSettingSerializer
    read_feature = write_feature = Feature.SETTINGS_EDIT
    lookup_field = "key"
    lookup_value_regex = r"[a-z0-9_]+"
    pagination_class = None
    queryset = GlobalSetting.objects.none()  # the schema's hint; rows come from DEFINITIONS

    def _rows(self, keys):
        stored = {row.key: row for row in GlobalSetting.objects.select_related("modified_by").filter(key__in=keys)}
        rows = []
        for key in keys:
            definition, row = DEFINITIONS[key], stored.get(key)
            rows.append(
                {
                    "key": key,
                    "type": definition.type,
                    "description": definition.description,
                    "default": definition.default,
                    "value": row.value if row else definition.default,
                    "modified": row.modified if row else None,
                    "modified_by": row.modified_by.username if row and row.modified_by else None,
                }
            )
        return rows

    def _get_key(self, key: str) -> str:
        if key not in DEFINITIONS:
            raise NotFound(f"Unknown setting {key!r}. Known settings: {', '.join(sorted(DEFINITIONS))}.")
        return key

    @extend_schema(responses={200: s.GlobalSettingSerializer(many=True)})
    def list(self, request):
        return Response(self._rows(sorted(DEFINITIONS)))

    def retrieve(self, request, key=None):
        return Response(self._rows([self._get_key(key)])[0])

    @extend_schema(request=s.GlobalSettingSerializer, responses={200: s.GlobalSettingSerializer})
    def partial_update(self, request, key=None):
        key = self._get_key(key)
        if not isinstance(request.data, dict) or "value" not in request.data:
            raise ValidationError({"value": "This field is required."})
        try:
            global_setting_set(key=key, value=request.data["value"], user=request.user)
        except SettingInvalid as exc:
            raise ValidationError({"value": f"{key} {exc}"}) from None
        return Response(self._rows([key])[0])

    update = partial_update

    # The collection's pagination (the viewset has none: its list is the few settings), so the schema documents the
    # paginated answer the action gives rather than a bare array.
    @extend_schema(responses={200: s.GlobalSettingChangeSerializer(many=True)})
    @action(detail=False, methods=["get"], url_path="changes", pagination_class=LimitOffsetPagination)
    def changes(self, request):
        """The audit log of setting changes, newest first (limit/offset)."""
        page = self.paginate_queryset(selectors.global_setting_changes_list())
        return self.get_paginated_response(s.GlobalSettingChangeSerializer(page, many=True).data)


@extend_schema_view(
    list=extend_schema(parameters=[FULL_STRUCTURE], description="Newest first by event_time. `count` is null."),
    retrieve=extend_schema(parameters=[FULL_STRUCTURE]),
)
@extend_schema(tags=["Events"])
class CustomerEventViewSet(CdpViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    serializer_class = s.CustomerEventSerializer
    filterset_class = filters.CustomerEventFilter
    read_feature = Feature.CUSTOMERS_VIEW
    feature_by_action = {"create": Feature.EVENTS_CREATE}
    paginate_without_count = True

    def get_queryset(self):
        return selectors.events_list()

    @extend_schema(
        tags=["Create Customer Events"],
        request=s.EventBulkRequestSerializer,
        responses={
            200: s.EventBulkResponseSerializer,
            400: OpenApiResponse(
                s.EventBulkErrorSerializer,
                description="Every event was rejected (`rejected` gives each one's reason), or the body is not events.",
            ),
        },
    )
    def create(self, request, *args, **kwargs):
        """Store up to 1,000 events. Each is validated on its own: good ones are stored, each bad one is
        listed with its index and reason; an event already stored (same source and message_id, or the
        same content when no message_id is given) is reported as a duplicate and not stored again."""
        return Response(*events_bulk_create(request.data))


def _events_from_body(body: Any) -> list:
    from django.conf import settings

    events = body.get("events") if isinstance(body, dict) else body
    if not isinstance(events, list):
        raise ParseError('The body must be a JSON array of events or an object {"events": [...]}.')
    if not events:
        raise ValidationError({"events": "No events given."})
    limit = settings.CDP_MAX_EVENTS_PER_REQUEST
    if len(events) > limit:
        raise ValidationError({"events": f"At most {limit} events per request; got {len(events)}."})
    return events


def events_bulk_create(body: Any) -> tuple[dict, int]:
    events = _events_from_body(body)
    result = events_create_bulk(events=events)
    body = {"status": "ok", "accepted": result.accepted, "duplicates": result.duplicates, "rejected": result.rejected}
    if not result.accepted and not result.duplicates:
        body.update(status="error", message=f"All {len(events)} events were rejected; see 'rejected'.")
        return body, status.HTTP_400_BAD_REQUEST
    if result.rejected:
        body["message"] = f"{len(result.rejected)} of {len(events)} events were rejected; the others were stored."
    return body, status.HTTP_200_OK


ENTITY_NOT_FOUND = OpenApiResponse(
    s.EntityNotFoundSerializer,
    description='{"status": "error", "message": "..."}; for an id merged into another customer also '
    '"merged_into": "<the customer it belongs to now>" (and "split_into": [...], the customers split off that one '
    'since), for an erased one "erased": true.',
)


def entity_get_or_404(queryset: QuerySet[CustomerEntity], pk: str) -> CustomerEntity:
    """The customer entity, else a 404 that says what became of an id that existed (see entity_not_found)."""
    entity = queryset.filter(pk=pk.lower()).first()
    if entity is None:
        raise entity_not_found(pk.lower())
    return entity


def entity_not_found(entity_id: str) -> NotFound:
    """The 404 for a customer entity id that does not exist. A client holding an id from an earlier export or sync
    learns where a merged-away customer went (`merged_into`, following merges to the customer that exists now) or
    that it was erased (`erased`), instead of an answer that reads like "never existed"."""
    from stitching.selectors import entity_fate  # lazy: stitching builds on cdp

    fate = entity_fate(entity_id=entity_id)
    if fate is None:
        return NotFound("Customer entity not found.")
    if fate.merged_into is not None and fate.split_into:
        message = (
            f"Customer entity {entity_id} was merged into {fate.merged_into}, which was split later: its events "
            f"are now in {fate.merged_into} or {', '.join(fate.split_into)}."
        )
        return NotFoundWithFields(message, merged_into=fate.merged_into, split_into=list(fate.split_into))
    if fate.merged_into is not None:
        message = f"Customer entity {entity_id} was merged into {fate.merged_into}."
        return NotFoundWithFields(message, merged_into=fate.merged_into)
    if fate.erased == entity_id:
        return NotFoundWithFields(f"Customer entity {entity_id} was erased.", erased=True)
    return NotFoundWithFields(
        f"Customer entity {entity_id} was merged into {fate.erased}, which was erased.", erased=True
    )


@extend_schema_view(
    list=extend_schema(parameters=[FULL_STRUCTURE]), retrieve=extend_schema(parameters=[FULL_STRUCTURE])
)
@extend_schema(tags=["Customer Entities"])
class CustomerEntityViewSet(CdpViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    serializer_class = s.CustomerEntitySerializer
    filterset_class = filters.CustomerEntityFilter
    read_feature = Feature.CUSTOMERS_VIEW
    lookup_value_regex = r"[0-9a-fA-F]{32}"
    paginate_without_count = True

    def get_queryset(self):
        return selectors.entities_list()

    def next_cursor(self, request, last: CustomerEntity) -> tuple[str, str] | None:
        """With ordering=modified (a sync), `next` reads on after the page's last customer (`after`), as the README
        says a sync must, instead of at an offset."""
        if self.action != "list" or request.query_params.get("ordering") != "modified":
            return None
        return "after", f"{serializers.DateTimeField().to_representation(last.modified)},{last.pk}"

    def get_object(self):
        return entity_get_or_404(self.get_queryset(), self.kwargs["pk"])
