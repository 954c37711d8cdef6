"""Serializers of the stitching API. Writes only shape input; validation that matters lives in the services."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cdp.api.fields import ExpandableRelatedField, SourceRelatedField
from cdp.api.serializers import DataSourceBriefSerializer, UserBriefSerializer
from cdp.models import DataSource
from stitching.models import (
    BlockedValue,
    EntityChange,
    EventIdentifier,
    HubReview,
    Identifier,
    RestitchCause,
    StitchingCategory,
    StitchingRule,
)


class StitchingCategorySerializer(serializers.ModelSerializer):
    id = serializers.CharField(max_length=64, help_text="e.g. email, phone, cookie, user_id (fixed once created).")

    class Meta:
        model = StitchingCategory
        fields = ["id", "name", "normalizer", "max_per_entity", "limit_window_days", "priority", "created", "modified"]
        read_only_fields = ["created", "modified"]

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None:
            fields["id"].read_only = True  # the id is what rules and identifiers refer to
        return fields


class StitchingCategoryBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = StitchingCategory
        fields = ["id", "name", "normalizer"]


class StitchingRuleSerializer(serializers.ModelSerializer):
    source = SourceRelatedField(
        queryset=DataSource.objects.all(), full_serializer=DataSourceBriefSerializer,
        help_text="Data source id or slug; the whole object when load_full_structure=1.",
    )  # fmt: skip
    category = ExpandableRelatedField(
        queryset=StitchingCategory.objects.all(), full_serializer=StitchingCategoryBriefSerializer
    )
    event_type = serializers.CharField(
        max_length=128, required=False, default=StitchingRule.ANY_TYPE, help_text="Event type, or * for every type."
    )
    path = serializers.CharField(max_length=255, help_text="Dotted payload path, e.g. traits.email.")

    class Meta:
        model = StitchingRule
        fields = ["id", "source", "event_type", "category", "path", "priority", "created", "modified"]
        read_only_fields = ["created", "modified"]
        validators: list = []  # uniqueness is checked by the service, with a message that names the rule


class BlockedValueSerializer(serializers.ModelSerializer):
    category = ExpandableRelatedField(
        queryset=StitchingCategory.objects.all(),
        full_serializer=StitchingCategoryBriefSerializer,
        allow_null=True,
        required=False,
        help_text="Category id; empty / null blocks the value in every category.",
    )
    value = serializers.CharField(
        max_length=400,
        trim_whitespace=False,
        help_text="Stored normalised by the category's normaliser; for every category stored trimmed and matched as "
        "each category's normaliser makes it (e.g. lower-cased for e-mails).",
    )
    created_by = ExpandableRelatedField(read_only=True, full_serializer=UserBriefSerializer)

    class Meta:
        model = BlockedValue
        fields = ["id", "category", "value", "reason", "created_by", "created"]
        read_only_fields = ["created_by", "created"]
        validators: list = []


class IdentifierBriefSerializer(serializers.ModelSerializer):
    category = serializers.CharField(source="category_id")

    class Meta:
        model = Identifier
        fields = ["id", "category", "value", "customer_entity", "first_seen"]


class RefusedLinkSerializer(serializers.ModelSerializer):
    identifier = IdentifierBriefSerializer(read_only=True)
    event_time = serializers.DateTimeField(source="event.event_time", read_only=True)
    event_type = serializers.CharField(source="event.type", read_only=True)
    source = serializers.CharField(source="event.source.slug", read_only=True)
    customer_entity = serializers.CharField(source="event.customer_entity_id", read_only=True, allow_null=True)

    class Meta:
        model = EventIdentifier
        fields = [
            "id", "event", "event_type", "event_time", "source", "customer_entity", "identifier", "rule", "status",
            "reason",
        ]  # fmt: skip


class HubReviewSerializer(serializers.ModelSerializer):
    identifier = IdentifierBriefSerializer(read_only=True)
    decided_by = ExpandableRelatedField(read_only=True, full_serializer=UserBriefSerializer)

    class Meta:
        model = HubReview
        fields = ["id", "identifier", "entity_count", "status", "decided_by", "decided", "created"]


class HubReviewDecisionSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(
        choices=[("approve", "Approve: let it link"), ("block", "Block the value")],
        help_text="approve: the identifier may join the customers; block: its value is blocked.",
    )


class EntityChangeSerializer(serializers.ModelSerializer):
    cause = serializers.SerializerMethodField(
        help_text="Why the re-stitch that made this merge or split ran (also `detail.cause`); null for a merge an "
        "incoming event made (`event` names it) and for an erasure."
    )

    class Meta:
        model = EntityChange
        fields = [
            "id", "kind", "customer_entity_id", "other_entity_ids", "event", "identifier", "cause", "detail", "created",
        ]  # fmt: skip

    @extend_schema_field(serializers.ChoiceField(choices=RestitchCause.choices, allow_null=True))
    def get_cause(self, obj: EntityChange) -> str | None:
        return (obj.detail or {}).get("cause")


class GraphNodeSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="event:<id> or identifier:<id>")
    kind = serializers.ChoiceField(choices=["event", "identifier"])
    event_id = serializers.IntegerField(required=False)
    type = serializers.CharField(required=False)
    source = serializers.CharField(required=False)
    source_name = serializers.CharField(required=False)
    event_time = serializers.DateTimeField(required=False)
    identifier_id = serializers.IntegerField(required=False)
    category = serializers.CharField(required=False)
    value = serializers.CharField(required=False)
    first_seen = serializers.DateTimeField(required=False, allow_null=True)
    customer_entity_id = serializers.CharField(
        required=False, allow_null=True, help_text="The customer the identifier belongs to now."
    )


class GraphEdgeSerializer(serializers.Serializer):
    source = serializers.CharField(help_text="The event node.")
    target = serializers.CharField(help_text="The identifier node.")
    status = serializers.ChoiceField(choices=EventIdentifier.Status.choices)
    reason = serializers.CharField()
    rule_id = serializers.IntegerField(allow_null=True)
    path = serializers.CharField(allow_null=True, help_text="The payload path of the rule that read it.")
    event_time = serializers.DateTimeField()


class GraphCountsSerializer(serializers.Serializer):
    events = serializers.IntegerField()
    identifiers = serializers.IntegerField()
    events_shown = serializers.IntegerField()
    identifiers_shown = serializers.IntegerField()


class StitchingGraphSerializer(serializers.Serializer):
    customer_entity_id = serializers.CharField()
    nodes = GraphNodeSerializer(many=True)
    edges = GraphEdgeSerializer(many=True)
    counts = GraphCountsSerializer()
    truncated = serializers.BooleanField(help_text="True when events or identifiers were left out (see limit).")


class IdentityPathSerializer(serializers.Serializer):
    linked = serializers.BooleanField()
    customer_entity_id = serializers.CharField()
    events = serializers.IntegerField(help_text="How many events the chain passes through.")
    path = GraphNodeSerializer(many=True, help_text="identifier, event, identifier, ..., identifier")
    # "from" is a Python keyword: declared below.


IdentityPathSerializer._declared_fields["from"] = GraphNodeSerializer()
IdentityPathSerializer._declared_fields["to"] = GraphNodeSerializer()


class ErasureReportSerializer(serializers.Serializer):
    customer_entity_id = serializers.CharField()
    events = serializers.IntegerField(help_text="Events erased.")
    identifiers = serializers.IntegerField(help_text="Identifiers erased (those no other event carries).")
    event_links = serializers.IntegerField(help_text="Identity graph edges erased.")
    history_rows_scrubbed = serializers.IntegerField(help_text="Merge history rows whose details were cleared.")
