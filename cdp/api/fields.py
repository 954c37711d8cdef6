"""`load_full_structure=1`: related objects are ids by default and whole objects on request."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

FULL_STRUCTURE_PARAM = "load_full_structure"


def wants_full_structure(request) -> bool:
    if request is None:
        return False
    raw = request.query_params.get(FULL_STRUCTURE_PARAM, "0")
    if raw not in ("0", "1", "true", "false"):
        raise serializers.ValidationError({FULL_STRUCTURE_PARAM: "must be 0 or 1"})
    return raw in ("1", "true")


@extend_schema_field(OpenApiTypes.ANY)
class ExpandableRelatedField(serializers.PrimaryKeyRelatedField):
    """Writes take the id; reads give the id, or `full_serializer`'s object when load_full_structure=1."""

    def __init__(self, *, full_serializer: type[serializers.Serializer], **kwargs):
        self.full_serializer = full_serializer
        kwargs.setdefault("help_text", "Id; the whole object when load_full_structure=1.")
        super().__init__(**kwargs)

    def use_pk_only_optimization(self) -> bool:
        return not self.context.get("full_structure", False)

    def to_internal_value(self, data):
        if isinstance(data, str) and "\x00" in data:  # PostgreSQL text cannot hold it: no such object
            raise serializers.ValidationError("An id cannot contain NUL characters.")
        return super().to_internal_value(data)

    def to_representation(self, value):
        if self.context.get("full_structure", False):
            return self.full_serializer(value, context=self.context).data
        return super().to_representation(value)
