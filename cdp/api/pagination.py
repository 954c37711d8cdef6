"""limit / offset pagination (default 20, newest first by the view's ordering) with strict parameters."""

from collections import OrderedDict

from drf_spectacular.utils import OpenApiParameter
from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

MAX_LIMIT = 1000
# Far past any table, yet offset + limit stays inside PostgreSQL's bigint (a larger one was a 500) and the echoed
# offset is exact as a JSON number in JavaScript clients (below 2**53).
MAX_OFFSET = 10**15


def _int_param(request, name: str, default: int, maximum: int) -> int:
    """A whole number from 0 to `maximum`; every integer parameter has a maximum so none overflows the database."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError({name: f"must be a whole number, got {raw[:20]!r}"}) from None
    if value < 0:
        raise ValidationError({name: "must not be negative"})
    if value > maximum:
        raise ValidationError({name: f"must be at most {maximum}"})
    return value


def int_query_parameter(name: str, *, minimum: int, maximum: int, description: str = "") -> OpenApiParameter:
    """The schema of a query parameter read with `_int_param`, with the bounds the view enforces: a client (or a
    fuzzer) built from the schema otherwise sends values it is refused."""
    schema = {"type": "integer", "minimum": minimum, "maximum": maximum}
    return OpenApiParameter(name, schema, description=description)


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """Set `paginate_without_count = True` on a view over a huge table to skip COUNT(*)."""

    default_limit = 20
    max_limit = MAX_LIMIT

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        self.view = view
        self.page_rows: list = []
        self.limit = _int_param(request, self.limit_query_param, self.default_limit, self.max_limit)
        self.offset = _int_param(request, self.offset_query_param, 0, MAX_OFFSET)
        if self.limit == 0:
            raise ValidationError({self.limit_query_param: "must be at least 1"})
        if getattr(view, "paginate_without_count", False):
            rows = list(queryset[self.offset : self.offset + self.limit + 1])
            self.has_more = len(rows) > self.limit
            self.count = None
            self.page_rows = rows[: self.limit]
            return self.page_rows
        self.count = self.get_count(queryset)
        self.has_more = self.offset + self.limit < self.count
        if self.count == 0 or self.offset >= self.count:
            return []
        return list(queryset[self.offset : self.offset + self.limit])

    def get_next_link(self):
        if not self.has_more:
            return None
        # A view read in keyset order (`next_cursor`) continues after the page's last row, not at an offset: a row
        # that moves meanwhile would shift the offsets and another would never be read.
        next_cursor = getattr(self.view, "next_cursor", None)
        cursor = next_cursor(self.request, self.page_rows[-1]) if next_cursor and self.page_rows else None
        if cursor is not None:
            from rest_framework.utils.urls import remove_query_param, replace_query_param

            url = remove_query_param(self.request.build_absolute_uri(), self.offset_query_param)
            return replace_query_param(url, cursor[0], cursor[1])
        return super().get_next_link() if self.count is not None else self._link(self.offset + self.limit)

    def _link(self, offset: int):
        from rest_framework.utils.urls import replace_query_param

        url = self.request.build_absolute_uri()
        url = replace_query_param(url, self.limit_query_param, self.limit)
        return replace_query_param(url, self.offset_query_param, offset)

    def get_paginated_response(self, data):
        return Response(
            OrderedDict(
                [
                    ("count", self.count),
                    ("limit", self.limit),
                    ("offset", self.offset),
                    ("next", self.get_next_link()),
                    ("previous", self.get_previous_link()),
                    ("results", data),
                ]
            )
        )

    def get_schema_operation_parameters(self, view):
        """The bounds `paginate_queryset` enforces."""
        limit, offset = super().get_schema_operation_parameters(view)
        limit["schema"].update(minimum=1, maximum=self.max_limit)
        offset["schema"].update(minimum=0, maximum=MAX_OFFSET)
        return [limit, offset]

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["count", "limit", "offset", "results"],
            "properties": {
                "count": {"type": "integer", "nullable": True, "description": "null where counting is skipped"},
                "limit": {"type": "integer"},
                "offset": {"type": "integer"},
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }
