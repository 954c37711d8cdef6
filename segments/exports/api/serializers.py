from rest_framework import serializers

from cdp.api.fields import IdRelatedField
from loaders.registry import KIND_CHOICES
from segments.exports.models import ExportDestination, ExportSchedule, SegmentExport
from segments.exports.services import destination_config_display


class ExportDestinationSerializer(serializers.ModelSerializer):
    kind = serializers.ChoiceField(choices=KIND_CHOICES)
    config = serializers.JSONField(
        help_text="The loader's settings (see GET .../kinds). Secrets are write-only: shown back masked; send the "
        "masked value or omit a secret to keep the stored one. A PATCH changes only the settings it names."
    )
    mandatory_attributes = serializers.ListField(child=serializers.CharField(), required=False)
    loader = serializers.CharField(source="loader_label", read_only=True)
    created_by = serializers.StringRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = ExportDestination
        fields = ["id", "name", "kind", "loader", "config", "mandatory_attributes", "created_by", "created", "modified"]
        read_only_fields = ["id", "loader", "created_by", "created", "modified"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["config"] = destination_config_display(instance)
        return data


class DestinationUpdateSerializer(serializers.Serializer):
    # The column's length: a longer name was a DataError from the database (a 500), not a 400 naming it.
    name = serializers.CharField(required=False, max_length=ExportDestination._meta.get_field("name").max_length)
    config = serializers.JSONField(required=False)
    mandatory_attributes = serializers.ListField(child=serializers.CharField(), required=False)


class LoaderFieldSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField()
    required = serializers.BooleanField()
    secret = serializers.BooleanField()
    default = serializers.JSONField(required=False)
    choices = serializers.ListField(child=serializers.CharField(), required=False)
    help = serializers.CharField(required=False)


class LoaderKindSerializer(serializers.Serializer):
    kind = serializers.CharField()
    label = serializers.CharField()
    idempotent = serializers.BooleanField()
    produces_file = serializers.BooleanField()
    fields = LoaderFieldSerializer(many=True)


class SegmentExportSerializer(serializers.ModelSerializer):
    started_by = serializers.StringRelatedField(
        read_only=True,
        allow_null=True,
        help_text="Who started it (a scheduled run: who made the schedule); null when nobody did "
        "(`manage.py run_export` without `--user`).",
    )
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = SegmentExport
        fields = [
            "id", "segment", "segment_name", "destination", "destination_name", "destination_kind", "status",
            "progress", "total", "sent", "skipped", "failed", "error_message", "details", "started_by", "schedule",
            "created", "started_at", "finished_at", "attempts", "download_url", "log",
        ]  # fmt: skip
        read_only_fields = fields

    def get_download_url(self, obj: SegmentExport) -> str | None:
        request = self.context.get("request")
        if not obj.has_file or request is None:
            return None
        return request.build_absolute_uri(f"/api/segment_exports/{obj.pk}/download")


class SegmentExportCreateSerializer(serializers.Serializer):
    segment = serializers.IntegerField(help_text="Segment id (you must be able to see it).")
    destination = serializers.IntegerField(help_text="Export destination id.")


class ExportScheduleSerializer(serializers.ModelSerializer):
    serializer_related_field = IdRelatedField  # `destination`: 1.5 is refused, not read as the id 1
    # The view looks the segment up under the ACL: one the user may not see is a 404 like one that does not exist
    # (a related field would answer "does not exist" for the one and let the other through: ids could be probed).
    segment = serializers.IntegerField(source="segment_id", help_text="Segment id (you must be able to see it).")

    class Meta:
        model = ExportSchedule
        fields = ["id", "segment", "destination", "frequency", "enabled", "last_run_at", "created"]
        read_only_fields = ["id", "last_run_at", "created"]
        # One schedule per segment and destination: creating it again changes it (`schedule_set`), so no
        # unique-together check here (it refused that with a 400, and told anyone a hidden segment's schedule exists).
        validators: list = []
