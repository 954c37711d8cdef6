from datetime import datetime

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cdp.api.fields import ExpandableRelatedField
from cdp.features import Feature
from cdp.global_settings import DEFINITIONS
from cdp.models import ApiToken, CustomerEntity, CustomerEvent, DataSource, GlobalSettingChange, Role, User
from cdp.services.events import message_id_of


class RoleSerializer(serializers.ModelSerializer):
    features = serializers.ListField(child=serializers.ChoiceField(choices=Feature.choices), allow_empty=True)

    class Meta:
        model = Role
        fields = ["id", "name", "description", "features", "created", "modified"]
        read_only_fields = ["created", "modified"]


class UserBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email", "first_name", "last_name"]


class UserSerializer(serializers.ModelSerializer):
    role = ExpandableRelatedField(
        queryset=Role.objects.all(), full_serializer=RoleSerializer, allow_null=True, required=False
    )
    features = serializers.ListField(child=serializers.CharField(), read_only=True)
    password = serializers.CharField(write_only=True, required=False, style={"input_type": "password"})

    class Meta:
        model = User
        fields = [
            "id", "username", "email", "first_name", "last_name", "role", "features", "is_superuser",
            "is_active", "last_login", "date_joined", "password",
        ]  # fmt: skip
        read_only_fields = ["is_superuser", "last_login", "date_joined"]


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"})


class LoginResponseSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Shown once. Send it as `Authorization: Token <token>`.")
    expires = serializers.DateTimeField(
        allow_null=True, help_text="When the token stops working (CDP_LOGIN_TOKEN_TTL_HOURS after the login)."
    )
    user = UserSerializer()


class ApiTokenSerializer(serializers.ModelSerializer):
    user = ExpandableRelatedField(
        queryset=User.objects.all(), full_serializer=UserBriefSerializer, required=False,
        help_text="Owner; only user administrators may create tokens for someone else.",
    )  # fmt: skip
    prefix = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields = ["id", "user", "name", "prefix", "created", "last_used", "expires", "revoked"]
        read_only_fields = ["created", "last_used", "revoked"]

    def get_prefix(self, token: ApiToken) -> str:
        return f"{token.key_prefix}…"

    def validate_expires(self, value: datetime | None) -> datetime | None:
        """A token that is dead when it is handed out is a mistake (a date in the wrong year or zone), not a wish."""
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError(f"{value.isoformat()} is in the past: give a time in the future.")
        return value


class ApiTokenCreatedSerializer(ApiTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The token itself: shown this once, never again.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]


class DataSourceSerializer(serializers.ModelSerializer):
    write_key = serializers.SerializerMethodField(help_text="The first characters of the write key.")

    class Meta:
        model = DataSource
        fields = ["id", "slug", "name", "type", "description", "write_key", "created", "modified"]
        read_only_fields = ["created", "modified"]

    def get_write_key(self, source: DataSource) -> str | None:
        return f"{source.write_key_prefix}…" if source.write_key_prefix else None


class DataSourceCreatedSerializer(DataSourceSerializer):
    write_key_plain = serializers.CharField(
        read_only=True, help_text="The write key for public ingestion (Segment-compatible /v1/*): shown once."
    )

    class Meta(DataSourceSerializer.Meta):
        fields = [*DataSourceSerializer.Meta.fields, "write_key_plain"]


class WriteKeySerializer(serializers.Serializer):
    write_key = serializers.CharField(help_text="The new write key: shown once. The old one stops working.")


class CustomerEntitySerializer(serializers.ModelSerializer):
    class Meta:
        model = CustomerEntity
        fields = ["id", "created", "modified"]


class DataSourceBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = DataSource
        fields = ["id", "slug", "name", "type"]


class CustomerEventSerializer(serializers.ModelSerializer):
    source = ExpandableRelatedField(read_only=True, full_serializer=DataSourceBriefSerializer)
    customer_entity = ExpandableRelatedField(
        source="entity_link.customer_entity", read_only=True, full_serializer=CustomerEntitySerializer
    )
    message_id = serializers.SerializerMethodField(
        help_text="The message id the event was sent with; null when none was (it is then deduplicated on its content)."
    )

    class Meta:
        model = CustomerEvent
        fields = ["id", "source", "type", "event_time", "payload", "created", "message_id", "customer_entity"]

    def get_message_id(self, event: CustomerEvent) -> str | None:
        # The stored key is internal: a content hash ("h:…") when no message id was sent, escaped ("m:h:…") when the
        # message id itself starts like one. The client sees what it sent.
        return message_id_of(event.idempotency_key)


class EventInputSerializer(serializers.Serializer):
    """Documentation of one event in a bulk create request (validation is event_record_build's)."""

    source_id = serializers.CharField(help_text="Data source id or slug.")
    type = serializers.CharField(max_length=128)
    event_time = serializers.DateTimeField(help_text="ISO 8601 (naive = UTC) or Unix seconds / milliseconds.")
    payload = serializers.DictField()
    message_id = serializers.CharField(
        required=False, help_text="Idempotency key: the same message id from the same source is stored once."
    )


class EventBulkRequestSerializer(serializers.Serializer):
    events = EventInputSerializer(many=True, help_text="Up to 1,000 events. A bare JSON array is accepted too.")


class _IndexedId(serializers.Serializer):
    index = serializers.IntegerField()
    id = serializers.IntegerField()


class _Rejected(serializers.Serializer):
    index = serializers.IntegerField()
    reason = serializers.CharField()


class EventBulkResponseSerializer(serializers.Serializer):
    status = serializers.CharField()
    message = serializers.CharField(required=False)
    accepted = _IndexedId(many=True, help_text="Newly stored events.")
    duplicates = _IndexedId(many=True, help_text="Events stored before (same source and message id): not stored again.")
    rejected = _Rejected(many=True)


class EventBulkErrorSerializer(serializers.Serializer):
    """The 400 of a bulk create: every event rejected (the lists as in a 200), or a body that is not events at all
    (`message` and `errors` only)."""

    status = serializers.ChoiceField(choices=["error"])
    message = serializers.CharField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)
    accepted = _IndexedId(many=True, required=False)
    duplicates = _IndexedId(many=True, required=False)
    rejected = _Rejected(many=True, required=False, help_text="Each event with the reason it was refused.")


class EntityNotFoundSerializer(serializers.Serializer):
    """The 404 for a customer entity id: what became of it when it existed."""

    status = serializers.ChoiceField(choices=["error"])
    message = serializers.CharField()
    merged_into = serializers.CharField(
        required=False, help_text="It was merged: the customer (32 hex) that holds its events now."
    )
    split_into = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="The customer it was merged into was split later: its events may be in any of these too.",
    )
    erased = serializers.BooleanField(required=False, help_text="true: it (or the customer it went into) was erased.")


class GlobalSettingSerializer(serializers.Serializer):
    key = serializers.CharField(read_only=True)
    type = serializers.CharField(read_only=True)
    description = serializers.CharField(read_only=True)
    default = serializers.JSONField(read_only=True)
    value = serializers.JSONField()
    modified = serializers.DateTimeField(read_only=True, allow_null=True)
    modified_by = serializers.CharField(read_only=True, allow_null=True)


class GlobalSettingChangeSerializer(serializers.ModelSerializer):
    changed_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = GlobalSettingChange
        fields = ["id", "key", "old_value", "new_value", "changed_by", "changed"]


@extend_schema_field({"type": "string", "enum": sorted(DEFINITIONS)})
class SettingKeyField(serializers.CharField):
    pass
