"""REST API: "Segment Export Destinations", "Segment Exports" and export schedules. Thin: selectors + services."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from django_filters import rest_framework as django_filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from cdp.api.views import CdpViewSet
from cdp.features import Feature
from loaders.registry import LOADERS
from segments.exports import selectors, services
from segments.exports.api import serializers as s
from segments.exports.models import ExportDestination, ExportSchedule, SegmentExport
from segments.selectors import segment_get_visible

# The segment of the body is looked up under its ACL: one the user may not see is answered as one that does not exist.
SEGMENT_NOT_VISIBLE = OpenApiResponse(description="No segment `segment` you may see, or it is in the trash.")


@extend_schema(tags=["Segment Export Destinations"])
class ExportDestinationViewSet(CdpViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                               mixins.UpdateModelMixin, mixins.DestroyModelMixin):  # fmt: skip
    serializer_class = s.ExportDestinationSerializer
    delete_refusal = "An export to the destination is running: wait for it to end."
    read_feature = Feature.EXPORTS_RUN
    write_feature = Feature.DESTINATIONS_EDIT
    filterset_fields = ["kind"]

    def get_queryset(self):
        return selectors.destinations_list()

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = services.destination_create(
            name=data["name"],
            kind=data["kind"],
            config=data["config"],
            mandatory_attributes=data.get("mandatory_attributes"),
            user=self.request.user,
        )

    @extend_schema(request=s.DestinationUpdateSerializer, responses={200: s.ExportDestinationSerializer})
    def update(self, request, *args, **kwargs):
        """Rename, reconfigure (the kind cannot change) or change the mandatory attributes. PUT: `config` is the whole
        configuration (omitted settings take their defaults; omitted secrets keep their stored values). PATCH: only
        the settings in `config` change (`null` resets one to its default)."""
        destination = self.get_object()
        partial = kwargs.get("partial", False)
        data = s.DestinationUpdateSerializer(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        services.destination_update(destination=destination, config_partial=partial, **data.validated_data)
        return Response(self.get_serializer(destination).data)

    @extend_schema(request=s.DestinationUpdateSerializer, responses={200: s.ExportDestinationSerializer})
    def partial_update(self, request, *args, **kwargs):
        kwargs["partial"] = True
        return self.update(request, *args, **kwargs)

    def perform_destroy(self, instance):
        services.destination_delete(destination=instance)

    @extend_schema(responses={200: s.LoaderKindSerializer(many=True)})
    @action(detail=False, methods=["get"], url_path="kinds", pagination_class=None, filter_backends=[])
    def kinds(self, request):
        """The destination kinds and their configuration settings (which are required, which are secret)."""
        return Response(
            [
                {
                    "kind": kind,
                    "label": loader.label,
                    "idempotent": loader.idempotent,
                    "produces_file": loader.produces_file,
                    "fields": [field.describe() for field in loader.fields],
                }
                for kind, loader in LOADERS.items()
            ]
        )


class SegmentExportFilter(django_filters.FilterSet):
    class Meta:
        model = SegmentExport
        fields = ["segment", "destination", "status", "destination_kind"]


@extend_schema(tags=["Segment Exports"])
class SegmentExportViewSet(CdpViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """Exports of the segments you may see. Create one with POST {segment, destination}; poll it for progress."""

    serializer_class = s.SegmentExportSerializer
    read_feature = Feature.EXPORTS_RUN
    write_feature = Feature.EXPORTS_RUN
    filterset_class = SegmentExportFilter

    def get_queryset(self):
        return selectors.exports_visible(user=self.request.user)

    @extend_schema(
        request=s.SegmentExportCreateSerializer,
        responses={201: s.SegmentExportSerializer, 404: SEGMENT_NOT_VISIBLE},
    )
    def create(self, request):
        """Start an export of a segment to a destination (a Celery job; status `waiting` until a worker runs it)."""
        data = s.SegmentExportCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        segment = segment_get_visible(user=request.user, segment_id=data.validated_data["segment"])
        destination = ExportDestination.objects.filter(pk=data.validated_data["destination"]).first()
        if destination is None:
            raise DjangoValidationError({"destination": "unknown export destination."})
        export = services.export_create(segment=segment, destination=destination, user=request.user)
        return Response(self.get_serializer(export).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="The exported file.")}
    )
    @action(detail=True, methods=["get"], url_path="download")
    def download(self, request, pk=None):
        """The exported file (CSV destinations), once the export has finished."""
        export = self.get_object()
        if not export.has_file:
            raise NotFound("This export has no file to download (not a file destination, or not finished).")
        return selectors.export_file_response(export=export)


@extend_schema(tags=["Segment Exports"])
@extend_schema_view(create=extend_schema(responses={201: s.ExportScheduleSerializer, 404: SEGMENT_NOT_VISIBLE}))
class ExportScheduleViewSet(CdpViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                            mixins.DestroyModelMixin):  # fmt: skip
    """Scheduled (hourly / daily) exports of a segment to a destination. Create again to change the frequency or
    `enabled`: what the body leaves out stays as it was."""

    serializer_class = s.ExportScheduleSerializer
    read_feature = Feature.EXPORTS_RUN
    write_feature = Feature.EXPORTS_RUN

    def get_queryset(self):
        return selectors.schedules_visible(user=self.request.user)

    def perform_create(self, serializer):
        data = serializer.validated_data
        segment = segment_get_visible(user=self.request.user, segment_id=data["segment_id"])
        serializer.instance = services.schedule_set(
            segment=segment,
            destination=data["destination"],
            frequency=data.get("frequency"),  # each optional: a new schedule is daily and enabled
            enabled=data.get("enabled"),
            user=self.request.user,
        )

    def perform_destroy(self, instance: ExportSchedule):
        get_object_or_404(selectors.schedules_visible(user=self.request.user), pk=instance.pk)
        instance.delete()
