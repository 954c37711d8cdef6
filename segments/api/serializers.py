from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cdp.api.fields import IdRelatedField
from cdp.api.profile_serializers import AttributeValueCountsSerializer
from cdp.api.serializers import UserBriefSerializer
from cdp.models import CustomerEntity, Role, User
from segments.conditions import EXCLUSION_EXAMPLE
from segments.models import Segment, SegmentGrant, SegmentNote, Tag


@extend_schema_field(
    {
        "type": "object",
        "description": (
            "Condition tree: a group {operator: and|or, children: [...], negate?} or a condition {attribute, "
            "operator, value?, negate?}. Operators by data type: string equals, not_equals, in, contains, "
            "starts_with, ends_with; int/float/date/datetime equals, not_equals, lt, lte, gt, gte, between; "
            "date/datetime also before, after, within_last_days; bool is_true, is_false; every type is_set, "
            "is_not_set."
        ),
        "example": EXCLUSION_EXAMPLE,
    }
)
class ConditionTreeField(serializers.JSONField):
    pass


class TagNamesField(serializers.ListField):
    child = serializers.CharField(max_length=64)

    def to_representation(self, data):
        return [tag.name for tag in data.all()] if hasattr(data, "all") else list(data)


class SegmentSerializer(serializers.ModelSerializer):
    owner = serializers.SerializerMethodField()
    conditions = ConditionTreeField(required=False)
    tags = TagNamesField(required=False, help_text="Tag names (created when new).")
    can_edit = serializers.SerializerMethodField()

    class Meta:
        model = Segment
        fields = ["id", "name", "description", "owner", "conditions", "tags", "can_edit", "trashed_at", "created",
                  "modified"]  # fmt: skip
        read_only_fields = ["trashed_at", "created", "modified"]

    @extend_schema_field(OpenApiTypes.ANY)
    def get_owner(self, segment: Segment):
        """The owner's id; the user object when load_full_structure=1."""
        if segment.owner is None:
            return None
        if self.context.get("full_structure"):
            return UserBriefSerializer(segment.owner).data
        return segment.owner_id

    def validate(self, attrs):
        """`owner` is read-only: a request changing it is refused rather than answered 200 with the owner kept.
        Sending the current owner back (a fetched segment sent again; yourself on create) is fine."""
        if "owner" in self.initial_data:
            sent = self.initial_data["owner"]
            if isinstance(sent, dict):
                sent = sent.get("id")
            request = self.context.get("request")
            current = (
                self.instance.owner_id
                if self.instance is not None
                else getattr(request, "user", None) and request.user.pk
            )
            if sent is not None and str(sent) != str(current):
                raise serializers.ValidationError(
                    {"owner": "The owner cannot be changed: a segment belongs to whoever created it. Share it with "
                     "other users or roles through its grants instead."}
                )  # fmt: skip
        return attrs

    def get_can_edit(self, segment: Segment) -> bool:
        from segments.selectors import segment_can_edit

        request = self.context.get("request")
        return bool(request and segment_can_edit(user=request.user, segment=segment))


class SegmentDuplicateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, help_text="Default: 'Copy of <name>'.")


class SegmentCountSerializer(serializers.Serializer):
    segment_id = serializers.IntegerField()
    customers_count = serializers.IntegerField()


class SegmentMemberSerializer(serializers.ModelSerializer):
    class Meta:
        model = CustomerEntity
        fields = ["id", "created", "modified", "attributes"]


class SegmentNoteSerializer(serializers.ModelSerializer):
    author = UserBriefSerializer(read_only=True)

    class Meta:
        model = SegmentNote
        fields = ["id", "segment", "author", "text", "created", "modified"]
        read_only_fields = ["segment", "author", "created", "modified"]


class SegmentGrantSerializer(serializers.ModelSerializer):
    user = IdRelatedField(queryset=User.objects.filter(is_active=True), required=False, allow_null=True)
    role = IdRelatedField(queryset=Role.objects.all(), required=False, allow_null=True)

    class Meta:
        model = SegmentGrant
        fields = ["id", "segment", "user", "role", "permission", "created"]
        read_only_fields = ["segment", "created"]


class TagSerializer(serializers.ModelSerializer):
    segments_count = serializers.IntegerField(read_only=True, help_text="Live segments with the tag.")

    class Meta:
        model = Tag
        fields = ["id", "name", "color", "segments_count", "created"]
        read_only_fields = ["created"]


class SegmentValueCountsSerializer(AttributeValueCountsSerializer):
    """The attribute value counts shape, among the segment's members."""

    segment = serializers.IntegerField()
    customers = serializers.IntegerField(help_text="Members of the segment.")


class SizeSnapshotSerializer(serializers.Serializer):
    day = serializers.DateField()
    size = serializers.IntegerField()
    measured = serializers.DateTimeField()


class EmailConsentSerializer(serializers.Serializer):
    attribute = serializers.CharField()
    customers = serializers.IntegerField()
    with_consent = serializers.IntegerField()
    share = serializers.FloatField(allow_null=True, help_text="with_consent / customers (null for an empty segment)")


class SegmentInsightsSerializer(serializers.Serializer):
    segment = serializers.IntegerField()
    customers_count = serializers.IntegerField()
    size_history = SizeSnapshotSerializer(many=True, help_text="Daily sizes, oldest first.")
    top_values = SegmentValueCountsSerializer(many=True, help_text="For each attribute asked for.")
    email_consent = EmailConsentSerializer(
        required=False, help_text="Only when the email_consent attribute exists (the email channel)."
    )


class ConditionsPreviewSerializer(serializers.Serializer):
    conditions = ConditionTreeField()


class PreviewCountSerializer(serializers.Serializer):
    customers_count = serializers.IntegerField()


class OperatorSerializer(serializers.Serializer):
    operator = serializers.CharField()
    label = serializers.CharField()
    value = serializers.ChoiceField(choices=["single", "list", "range", "days", "none"])


class OperatorsSerializer(serializers.Serializer):
    string = OperatorSerializer(many=True)
    int = OperatorSerializer(many=True)
    float = OperatorSerializer(many=True)
    date = OperatorSerializer(many=True)
    datetime = OperatorSerializer(many=True)
    bool = OperatorSerializer(many=True)
    compound = OperatorSerializer(many=True)


class SegmentOverlapSerializer(serializers.Serializer):
    segment = serializers.IntegerField()
    other = serializers.IntegerField(help_text="The segment compared with (?with=).")
    segment_count = serializers.IntegerField(help_text="Customers in the segment.")
    other_count = serializers.IntegerField(help_text="Customers in the other segment.")
    both = serializers.IntegerField(help_text="Customers in both.")
    only_segment = serializers.IntegerField(help_text="In the segment, not in the other.")
    only_other = serializers.IntegerField(help_text="In the other segment, not in this one.")
