"""Serializers of the customer profile API: attribute definitions, a customer with attribute values, counts."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cdp.api.fields import SourceRelatedField
from cdp.api.serializers import CustomerEntitySerializer, DataSourceBriefSerializer
from cdp.models import Attribute, CustomerEntity, DataSource
from cdp.selectors import entity_attributes_stale


class AttributeSerializer(serializers.ModelSerializer):
    """Validation of the computation is the service's (attribute_create / attribute_update)."""

    id = serializers.CharField(max_length=64, help_text="Permanent, e.g. total_order_value (a-z, 0-9, _).")
    sources = SourceRelatedField(
        many=True, queryset=DataSource.objects.all(), full_serializer=DataSourceBriefSerializer, required=False,
        help_text="Only events of these data sources (ids or slugs; empty: all).",
    )  # fmt: skip
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=128), required=False, help_text="Only these event types (empty: all)."
    )

    class Meta:
        model = Attribute
        fields = [
            "id", "name", "description", "data_type", "unit", "computation", "category", "sources", "event_types",
            "path", "fields", "created", "modified",
        ]  # fmt: skip
        read_only_fields = ["created", "modified"]
        extra_kwargs = {
            "data_type": {
                "required": False,
                "help_text": "Default: int for a count, datetime for event times, float for numbers, else string.",
            },
            "computation": {"required": True},
            "fields": {
                "required": False,
                "help_text": 'A compound attribute\'s fields (first / last / unique values only), each {"id", "name", '
                '"data_type" (a scalar type), "path"}; its values are objects of them. Empty for other types.',
            },
        }

    def validate_id(self, value: str) -> str:
        if self.instance is not None and value != self.instance.pk:
            raise serializers.ValidationError("The id of an attribute cannot be changed.")
        return value

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None:  # may be sent again as it is; another id is refused (validate_id)
            fields["id"].required = False
        return fields


class CustomerEntityDetailSerializer(CustomerEntitySerializer):
    attributes = serializers.JSONField(
        read_only=True, help_text='Computed attribute values, {"<attribute id>": [values...]}; unset ones are absent.'
    )
    attributes_stale = serializers.SerializerMethodField(
        help_text="true while a recomputation is pending (values may lag the latest events)."
    )

    class Meta(CustomerEntitySerializer.Meta):
        model = CustomerEntity
        fields = [*CustomerEntitySerializer.Meta.fields, "attributes", "attributes_stale"]

    def get_attributes_stale(self, entity: CustomerEntity) -> bool:
        return entity_attributes_stale(entity_id=entity.pk)


@extend_schema_field(OpenApiTypes.ANY)
class AnyValueField(serializers.JSONField):
    pass


class AttributeValueSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    data_type = serializers.CharField()
    unit = serializers.CharField()
    computation = serializers.CharField()
    values = serializers.ListField(child=AnyValueField(), help_text="Empty when the customer has no value.")


class CustomerAttributesSerializer(serializers.Serializer):
    customer_entity = serializers.CharField()
    modified = serializers.DateTimeField(help_text="Last change of an attribute value.")
    stale = serializers.BooleanField(help_text="true while a recomputation is pending.")
    attributes = AttributeValueSerializer(many=True)


class _SourceCount(serializers.Serializer):
    source = serializers.IntegerField()
    slug = serializers.CharField()
    count = serializers.IntegerField()


class _TypeCount(serializers.Serializer):
    type = serializers.CharField()
    count = serializers.IntegerField()


class _SourceTypeCount(serializers.Serializer):
    source = serializers.IntegerField()
    slug = serializers.CharField()
    type = serializers.CharField()
    count = serializers.IntegerField()
    first_event_time = serializers.DateTimeField()
    last_event_time = serializers.DateTimeField()


class EventCountsSerializer(serializers.Serializer):
    customer_entity = serializers.CharField()
    total = serializers.IntegerField(help_text="The customer's events, without the system events.")
    system_events = serializers.IntegerField(
        help_text="Merges and splits stitching recorded on the customer (system events), not counted in the rest."
    )
    by_source = _SourceCount(many=True)
    by_type = _TypeCount(many=True)
    by_source_and_type = _SourceTypeCount(many=True)


class _ValueCount(serializers.Serializer):
    value = AnyValueField()
    count = serializers.IntegerField(help_text="Customers having this value.")


class AttributeValueCountsSerializer(serializers.Serializer):
    attribute = serializers.CharField()
    entities_with_value = serializers.IntegerField(help_text="Customers with at least one value.")
    values = _ValueCount(many=True, help_text="Most frequent first.")
