"""Segments REST API: segments, customers count and members, duplicate, insights, value counts, notes, ACL grants,
trash, tags. Reads through segments.selectors (ACL applied there), writes through segments.services.

ACL in the API: a segment the user may not see is a 404 everywhere (ids cannot be probed); one they see but may
not edit is a 403 on writes. Role features gate on top: segments_view to read, segments_edit to write (and
customers_view to list members' attributes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response

from cdp.api.pagination import _int_param, int_query_parameter
from cdp.api.permissions import feature_require
from cdp.api.views import FULL_STRUCTURE, CdpViewSet
from cdp.features import Feature
from cdp.models import Attribute
from segments import selectors, services
from segments.api import serializers as s
from segments.conditions import ConditionInvalid, operators_by_type
from segments.filters import SegmentFilter, TagFilter
from segments.models import Segment, SegmentGrant, SegmentNote

VALUE_COUNTS_DEFAULT = 10
VALUE_COUNTS_MAX = 100
INSIGHT_ATTRIBUTES_MAX = 10


def _evaluate(function: Callable[..., Any], **kwargs) -> Any:
    """Run a selector that evaluates the segment; a tree the current attributes no longer fit is a 400."""
    try:
        return function(**kwargs)
    except ConditionInvalid as exc:
        raise ValidationError({"conditions": f"the segment cannot be evaluated: {exc}"}) from None


def _save(function: Callable[..., Any], **kwargs) -> Any:
    try:
        return function(**kwargs)
    except DjangoValidationError as exc:
        raise ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}) from None


class SegmentScopedMixin:
    """Views under /api/segments/{segment_pk}/...: the segment, with the ACL applied (404 / 403)."""

    def segment(self, *, edit: bool = False) -> Segment:
        return selectors.segment_get_visible(user=self.request.user, segment_id=self.kwargs["segment_pk"], edit=edit)


@extend_schema_view(
    list=extend_schema(parameters=[FULL_STRUCTURE], description="Segments you may see, newest first."),
    retrieve=extend_schema(parameters=[FULL_STRUCTURE]),
    destroy=extend_schema(description="Move the segment to the trash (restore it with the Trash API)."),
)
@extend_schema(tags=["Segments"])
class SegmentViewSet(CdpViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                     mixins.UpdateModelMixin, mixins.DestroyModelMixin):  # fmt: skip
    serializer_class = s.SegmentSerializer
    filterset_class = SegmentFilter
    read_feature = Feature.SEGMENTS_VIEW
    write_feature = Feature.SEGMENTS_EDIT
    feature_by_action = {
        "customers": Feature.CUSTOMERS_VIEW,
        "attribute_value_counts": Feature.CUSTOMERS_VIEW,
        "preview_count": Feature.SEGMENTS_VIEW,
    }

    def get_queryset(self):
        return selectors.segments_visible(user=self.request.user)

    def get_object(self) -> Segment:
        edit = self.request.method not in ("GET", "HEAD", "OPTIONS") and self.action not in ("size_snapshot",)
        segment = selectors.segment_get_visible(user=self.request.user, segment_id=self.kwargs["pk"], edit=edit)
        self.check_object_permissions(self.request, segment)
        return segment

    def perform_create(self, serializer):
        serializer.instance = _save(services.segment_create, owner=self.request.user, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = _save(services.segment_update, segment=serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance):
        services.segment_trash(segment=instance)

    @extend_schema(responses={200: s.OperatorsSerializer})
    @action(detail=False, methods=["get"], url_path="operators", filter_backends=[], pagination_class=None)
    def operators(self, request):
        """The condition operators for each attribute data type, with a label and what their value is (single,
        list, range [low, high], days, or none): what a segment builder offers."""
        return Response(operators_by_type())

    @extend_schema(request=s.ConditionsPreviewSerializer, responses={200: s.PreviewCountSerializer})
    @action(detail=False, methods=["post"], url_path="preview_count", filter_backends=[], pagination_class=None)
    def preview_count(self, request):
        """Validate a condition tree and count its customers without saving a segment (the builder's live count).
        Needs segments_view only: nothing is written."""
        data = s.ConditionsPreviewSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tree = _save(services.conditions_clean, conditions=data.validated_data["conditions"])
        count = _evaluate(selectors.conditions_members_count, conditions=tree)
        return Response({"customers_count": count})

    @extend_schema(request=None, responses={200: s.SegmentCountSerializer})
    @action(detail=True, methods=["get"], url_path="customers_count")
    def customers_count(self, request, pk=None):
        """How many customers are in the segment now (also recorded as today's size for the insights)."""
        segment = self.get_object()
        count = _evaluate(selectors.segment_members_count, segment=segment)
        services.segment_size_record(segment=segment, size=count)
        return Response({"segment_id": segment.pk, "customers_count": count})

    @extend_schema(responses={200: s.SegmentMemberSerializer(many=True)})
    @action(detail=True, methods=["get"], url_path="customers", filter_backends=[])
    def customers(self, request, pk=None):
        """The segment's customers with their attribute values, most recently changed first (needs the
        customers_view feature as well)."""
        feature_require(request, Feature.SEGMENTS_VIEW)
        segment = self.get_object()
        queryset = _evaluate(selectors.segment_members, segment=segment)
        page = _evaluate(self.paginate_queryset, queryset=queryset)
        return self.get_paginated_response(s.SegmentMemberSerializer(page, many=True).data)

    @extend_schema(request=s.SegmentDuplicateSerializer, responses={201: s.SegmentSerializer})
    @action(detail=True, methods=["post"], url_path="duplicate")
    def duplicate(self, request, pk=None):
        """A copy you own (conditions, description, tags; not notes or grants). Needs view access only."""
        segment = selectors.segment_get_visible(user=request.user, segment_id=pk)
        data = s.SegmentDuplicateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        copy = _save(
            services.segment_duplicate, segment=segment, owner=request.user, name=data.validated_data.get("name")
        )
        return Response(self.get_serializer(copy).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[
            OpenApiParameter("attributes", str, description="Comma-separated attribute ids for top values."),
            int_query_parameter(
                "limit",
                minimum=0,
                maximum=VALUE_COUNTS_MAX,
                description=f"Top values per attribute (default {VALUE_COUNTS_DEFAULT}, also for 0).",
            ),
            int_query_parameter("days", minimum=1, maximum=3660, description="Days of size history (default 90)."),
        ],
        responses={200: s.SegmentInsightsSerializer},
    )
    @action(detail=True, methods=["get"], url_path="insights", filter_backends=[], pagination_class=None)
    def insights(self, request, pk=None):
        """Size now and over time, top values of chosen attributes among the members, and the share of members
        with email consent (when the email_consent attribute exists)."""
        segment = self.get_object()
        limit = _int_param(request, "limit", VALUE_COUNTS_DEFAULT, VALUE_COUNTS_MAX) or VALUE_COUNTS_DEFAULT
        days = _int_param(request, "days", 90, 3660)
        if days == 0:
            raise ValidationError({"days": "must be at least 1 (the size history's number of days)"})
        names = [n.strip() for n in (request.query_params.get("attributes") or "").split(",") if n.strip()]
        if names:  # the members' values (emails, names ...) are customer data, as in the attribute value counts API
            feature_require(request, Feature.CUSTOMERS_VIEW, needed_for="the top values of attributes")
        if len(names) > INSIGHT_ATTRIBUTES_MAX:
            raise ValidationError({"attributes": f"At most {INSIGHT_ATTRIBUTES_MAX} attributes."})
        attributes = {a.pk: a for a in Attribute.objects.filter(pk__in=names)}
        unknown = [n for n in names if n not in attributes]
        if unknown:
            raise ValidationError({"attributes": f"Unknown attribute {unknown[0][:64]!r}."})
        count = _evaluate(selectors.segment_members_count, segment=segment)
        services.segment_size_record(segment=segment, size=count)
        body: dict[str, Any] = {
            "segment": segment.pk,
            "customers_count": count,
            "size_history": selectors.segment_size_history(segment=segment, days=days),
            "top_values": [
                _evaluate(
                    selectors.segment_attribute_value_counts, segment=segment, attribute=attributes[n], limit=limit
                )
                for n in dict.fromkeys(names)
            ],
        }
        consent = _evaluate(selectors.segment_email_consent_share, segment=segment)
        if consent is not None:
            body["email_consent"] = consent
        return Response(body)

    @extend_schema(
        parameters=[OpenApiParameter("with", int, required=True, description="The id of the segment to compare with.")],
        responses={200: s.SegmentOverlapSerializer},
    )
    @action(detail=True, methods=["get"], url_path="overlap", filter_backends=[], pagination_class=None)
    def overlap(self, request, pk=None):
        """Compare two segments: customers in each, in both, and in only one of them (counts only). The other
        segment must be one you may see too (else a 404, as for this one)."""
        segment = self.get_object()
        raw = request.query_params.get("with")
        if raw is None or not raw.strip():
            raise ValidationError({"with": "Give the id of the segment to compare with (?with=<id>)."})
        text = raw.strip()
        if not text.isascii() or not text.isdigit() or len(text) > 18:
            raise ValidationError({"with": f"must be a segment id (a whole number), got {raw[:40]!r}"})
        other = selectors.segment_get_visible(user=request.user, segment_id=int(text))
        return Response(_evaluate(selectors.segments_overlap, segment=segment, other=other))

    @extend_schema(request=None, responses={201: s.SizeSnapshotSerializer})
    @action(detail=True, methods=["post"], url_path="size_snapshot")
    def size_snapshot(self, request, pk=None):
        """Count the segment now and store it as today's size (the daily beat task does this for every segment)."""
        segment = self.get_object()
        snapshot = _evaluate(services.segment_size_record, segment=segment)
        return Response(
            {"day": snapshot.day, "size": snapshot.size, "measured": snapshot.measured}, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        tags=["Attribute Value Counts"],
        parameters=[
            OpenApiParameter("attribute", str, required=True, description="Attribute id."),
            int_query_parameter(
                "limit",
                minimum=1,
                maximum=VALUE_COUNTS_MAX,
                description=f"How many values (default {VALUE_COUNTS_DEFAULT}).",
            ),
        ],
        responses={200: s.SegmentValueCountsSerializer},
    )
    @action(detail=True, methods=["get"], url_path="attribute_value_counts", filter_backends=[], pagination_class=None)
    def attribute_value_counts(self, request, pk=None):
        """The most frequent values of one attribute among the segment's members (customer data: needs the
        customers_view feature as well, as the attribute value counts API does)."""
        feature_require(request, Feature.SEGMENTS_VIEW)
        segment = self.get_object()
        limit = _int_param(request, "limit", VALUE_COUNTS_DEFAULT, VALUE_COUNTS_MAX)
        if limit == 0:
            raise ValidationError({"limit": "must be at least 1"})
        attribute_id = request.query_params.get("attribute")
        if not attribute_id:
            raise ValidationError({"attribute": "Give the attribute id."})
        attribute = Attribute.objects.filter(pk=attribute_id).first()
        if attribute is None:
            raise ValidationError({"attribute": f"Unknown attribute {attribute_id[:64]!r}."})
        return Response(
            _evaluate(selectors.segment_attribute_value_counts, segment=segment, attribute=attribute, limit=limit)
        )


@extend_schema(tags=["Trash"])
class SegmentTrashViewSet(CdpViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin):
    """Trashed segments you may see. Restore one, or delete it for good (owner, editors and administrators)."""

    serializer_class = s.SegmentSerializer
    filterset_class = SegmentFilter
    read_feature = Feature.SEGMENTS_VIEW
    write_feature = Feature.SEGMENTS_EDIT

    def get_queryset(self):
        return selectors.segments_visible(user=self.request.user, trashed=True).order_by("-trashed_at", "-id")

    def get_object(self) -> Segment:
        edit = self.request.method not in ("GET", "HEAD", "OPTIONS")
        return selectors.segment_get_visible(
            user=self.request.user, segment_id=self.kwargs["pk"], edit=edit, trashed=True
        )

    @extend_schema(description="Delete the trashed segment for good (its notes, grants and history too).")
    def destroy(self, request, *args, **kwargs):
        _save(services.segment_delete, segment=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: s.SegmentSerializer})
    @action(detail=True, methods=["post"], url_path="restore")
    def restore(self, request, pk=None):
        """Take the segment out of the trash."""
        segment = services.segment_restore(segment=self.get_object())
        return Response(self.get_serializer(segment).data)


@extend_schema(tags=["Segment Notes"])
class SegmentNoteViewSet(SegmentScopedMixin, CdpViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                         mixins.CreateModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin):  # fmt: skip
    """Notes on a segment, newest first. Everyone who sees the segment reads them; those who may edit it write
    them; authors edit and delete their own notes (editors of the segment any)."""

    serializer_class = s.SegmentNoteSerializer
    read_feature = Feature.SEGMENTS_VIEW
    write_feature = Feature.SEGMENTS_EDIT
    queryset = SegmentNote.objects.none()

    def get_queryset(self):
        return SegmentNote.objects.filter(segment=self.segment()).select_related("author")

    def get_object(self) -> SegmentNote:
        # DRF's get_object_or_404: a pk that is no number ("abc", 5000 digits) is a 404, not Django's ValueError.
        note = get_object_or_404(self.get_queryset(), pk=self.kwargs["pk"])
        if self.request.method not in ("GET", "HEAD", "OPTIONS") and note.author_id != self.request.user.pk:
            self.segment(edit=True)
        return note

    def perform_create(self, serializer):
        segment = self.segment(edit=True)
        serializer.instance = _save(
            services.segment_note_create, segment=segment, author=self.request.user, **serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = _save(
            services.segment_note_update, note=serializer.instance, text=serializer.validated_data.get("text")
        )

    def perform_destroy(self, instance):
        services.segment_note_delete(note=instance)


@extend_schema(tags=["Segment ACL"])
class SegmentGrantViewSet(SegmentScopedMixin, CdpViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                          mixins.CreateModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin):  # fmt: skip
    """Who besides the owner may view or edit the segment: grants to users or roles. Everyone who sees the segment
    reads them; the owner and administrators change them. Creating a grant for a user or role that already has one
    replaces its permission."""

    serializer_class = s.SegmentGrantSerializer
    read_feature = Feature.SEGMENTS_VIEW
    write_feature = Feature.SEGMENTS_EDIT
    queryset = SegmentGrant.objects.none()

    def get_queryset(self):
        return SegmentGrant.objects.filter(segment=self.segment()).select_related("user", "role")

    def _managed_segment(self) -> Segment:
        segment = self.segment(edit=True)
        if not selectors.segment_can_manage_acl(user=self.request.user, segment=segment):
            raise PermissionDenied("Only the owner or an administrator changes who may see this segment.")
        return segment

    def perform_create(self, serializer):
        segment = self._managed_segment()
        data = serializer.validated_data
        serializer.instance = _save(
            services.segment_grant_set, segment=segment, user=data.get("user"), role=data.get("role"),
            permission=data.get("permission", SegmentGrant.Permission.VIEW),
        )  # fmt: skip

    @transaction.atomic  # a grant replaced by one the service refuses (no user or role, the owner) is kept
    def perform_update(self, serializer):
        segment = self._managed_segment()
        grant = serializer.instance
        data = serializer.validated_data
        user = data.get("user", grant.user)
        role = data.get("role", grant.role)
        if "user" in data and data["user"] is not None:
            role = None
        if "role" in data and data["role"] is not None:
            user = None
        if (user, role) != (grant.user, grant.role):
            services.segment_grant_delete(grant=grant)
        serializer.instance = _save(
            services.segment_grant_set, segment=segment, user=user, role=role,
            permission=data.get("permission", grant.permission),
        )  # fmt: skip

    def perform_destroy(self, instance):
        self._managed_segment()
        services.segment_grant_delete(grant=instance)


@extend_schema(tags=["Tags"])
class TagViewSet(CdpViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                 mixins.UpdateModelMixin, mixins.DestroyModelMixin):  # fmt: skip
    """Tags label segments. Deleting a tag removes it from its segments."""

    serializer_class = s.TagSerializer
    filterset_class = TagFilter
    read_feature = Feature.SEGMENTS_VIEW
    write_feature = Feature.SEGMENTS_EDIT

    def get_queryset(self):
        return selectors.tags_list(user=self.request.user)

    def perform_create(self, serializer):
        serializer.instance = _save(services.tag_create, **serializer.validated_data)
        serializer.instance.segments_count = 0

    def perform_update(self, serializer):
        serializer.instance = _save(services.tag_update, tag=serializer.instance, **serializer.validated_data)

    def perform_destroy(self, instance):
        services.tag_delete(tag=instance)
