"""`load_full_structure=1`: related objects are ids by default and whole objects on request."""

import re
from collections.abc import Mapping

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.relations import MANY_RELATION_KWARGS

FULL_STRUCTURE_PARAM = "load_full_structure"
SLUG_RE = re.compile(r"[-a-zA-Z0-9_]{1,64}\Z")


def wants_full_structure(request) -> bool:
    if request is None:
        return False
    raw = request.query_params.get(FULL_STRUCTURE_PARAM, "0")
    if raw not in ("0", "1", "true", "false"):
        raise serializers.ValidationError({FULL_STRUCTURE_PARAM: "must be 0 or 1"})
    return raw in ("1", "true")


class IdRelatedField(serializers.PrimaryKeyRelatedField):
    """DRF's primary-key field, refusing what its lookup would misread: NUL characters, fractional numbers, and
    (as a list) an object."""

    @classmethod
    def many_init(cls, *args, **kwargs):
        list_kwargs = {"child_relation": cls(*args, **kwargs)}
        list_kwargs.update({key: value for key, value in kwargs.items() if key in MANY_RELATION_KWARGS})
        return IdListField(**list_kwargs)

    def to_internal_value(self, data):
        if isinstance(data, str) and "\x00" in data:  # PostgreSQL text cannot hold it: no such object
            raise serializers.ValidationError("An id cannot contain NUL characters.")
        if isinstance(data, float) and not data.is_integer():
            # The lookup would truncate 1.5 to the id 1.
            raise serializers.ValidationError(f"{data!r} is not an id: ids are whole numbers or texts.")
        return super().to_internal_value(data)


@extend_schema_field(OpenApiTypes.ANY)
class ExpandableRelatedField(IdRelatedField):
    """Writes take the id; reads give the id, or `full_serializer`'s object when load_full_structure=1."""

    def __init__(self, *, full_serializer: type[serializers.Serializer], **kwargs):
        self.full_serializer = full_serializer
        kwargs.setdefault("help_text", "Id; the whole object when load_full_structure=1.")
        super().__init__(**kwargs)

    def use_pk_only_optimization(self) -> bool:
        return not self.context.get("full_structure", False)

    def to_representation(self, value):
        if self.context.get("full_structure", False):
            return self.full_serializer(value, context=self.context).data
        return super().to_representation(value)


class IdListField(serializers.ManyRelatedField):
    """A list of ids. DRF's takes any iterable, so an object was read as the list of its keys ({} cleared it)."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            self.fail("not_a_list", input_type=type(data).__name__)
        return super().to_internal_value(data)


class SourceRelatedField(ExpandableRelatedField):
    """A data source, written by id or by slug ("web"), as the events API and the filters take it."""

    def to_internal_value(self, data):
        if isinstance(data, str) and SLUG_RE.match(data.strip()) and not data.strip().isdecimal():
            source = self.get_queryset().filter(slug=data.strip()).first()
            if source is None:
                raise serializers.ValidationError(f"No data source {data.strip()[:64]!r}.")
            return source
        return super().to_internal_value(data)
