"""One JSON error shape everywhere: {"status": "error", "message": "...", "errors": {...}?}."""

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, IntegrityError
from django.http import Http404, HttpResponse, JsonResponse
from django.utils.html import escape
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def error_body(message: str, errors: Any = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"status": "error", "message": message}
    if errors:
        body["errors"] = errors
    body.update(extra)
    return body


class NotFoundWithFields(exceptions.NotFound):
    """A 404 whose body carries fields besides the message, for a client to act on (e.g. `merged_into`)."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.body_fields = fields


def _first_message(detail: Any, path: str = "") -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            prefix = path if key == "non_field_errors" else (f"{path}.{key}" if path else str(key))
            return _first_message(value, prefix)
        return "Invalid input."
    if isinstance(detail, list):
        for index, value in enumerate(detail):
            if value in ({}, [], None):
                continue
            nested = isinstance(value, dict | list)
            return _first_message(value, f"{path}[{index}]" if nested and path else path)
        return "Invalid input."
    return f"{path}: {detail}" if path else str(detail)


def _as_lists(detail: Any, path: str = "", out: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """`errors` as documented, {"field": ["message", ...]}, at any depth: a field of a nested object or an item of a
    list is named by its path, as `message` names it ("ids.0", "items[1].name"), so a list or nested field's errors
    do not nest a second shape inside the first. A message raised as one string for a field (a service's
    ValidationError({"field": "message"})) becomes a list of one; messages for no field are "non_field_errors"."""
    out = {} if out is None else out
    if isinstance(detail, dict):
        for key, value in detail.items():
            prefix = path if key == "non_field_errors" and path else (f"{path}.{key}" if path else str(key))
            _as_lists(value, prefix, out)
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            if isinstance(value, dict | list):
                _as_lists(value, f"{path}[{index}]", out)
            else:
                _as_lists(value, path, out)
    else:
        out.setdefault(path or "non_field_errors", []).append(str(detail))
    return out


UNIQUE_VIOLATION = "23505"  # SQLSTATE


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, IntegrityError) and getattr(exc.__cause__, "sqlstate", None) == UNIQUE_VIOLATION:
        # A create retried while the first was still running: the service's "already exists" check passed for
        # both, the database's unique constraint stopped the second. Nothing was written twice.
        constraint = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) or "unique"
        exc = exceptions.ValidationError(
            {"non_field_errors": [f"It already exists: a request made at the same time created it ({constraint})."]}
        )
    elif isinstance(exc, DataError) and "NUL" in str(exc):
        # psycopg refuses text with NUL characters before it reaches PostgreSQL (fields check for it by name).
        exc = exceptions.ValidationError({"non_field_errors": ["A text value contains a NUL character (\\x00)."]})
    elif isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = response.data
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body(_first_message(detail), _as_lists(detail))
    elif isinstance(detail, dict) and "detail" in detail:
        response.data = error_body(str(detail["detail"]), **getattr(exc, "body_fields", {}))
    else:
        response.data = error_body(_first_message(detail))
    return response


# The Business Explorer's pages get HTML error pages (a marketer's browser showed the raw JSON); API clients JSON.
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} | CDP Business Explorer</title></head>
<body style="font-family: system-ui, sans-serif; margin: 4rem auto; max-width: 36rem; color: #1f2937">
<h1 style="font-size: 1.5rem">{title}</h1><p>{text}</p><p><a href="/admin/">Back to the Business Explorer</a></p>
</body></html>"""


def _wants_page(request) -> bool:
    return request.path.startswith("/admin/")


def busy_response(request, message: str, *, retry_after: int) -> HttpResponse:
    """503 with Retry-After for a write that could not get its turn (cdp.middleware.ServiceBusyMiddleware)."""
    if _wants_page(request):
        page = _PAGE.format(title="Busy, try again in a minute", text=escape(message))
        response = HttpResponse(page, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    else:
        response = JsonResponse(error_body(message), status=status.HTTP_503_SERVICE_UNAVAILABLE)
    response["Retry-After"] = str(retry_after)
    return response


def handler404(request, exception=None):
    if _wants_page(request):
        page = _PAGE.format(title="Page not found", text="There is no page at this address.")
        return HttpResponse(page, status=status.HTTP_404_NOT_FOUND)
    return JsonResponse(error_body("Not found."), status=status.HTTP_404_NOT_FOUND)


def handler500(request):
    """The request id (also in the X-Request-ID header and on the server's log lines of this error) is shown, so a
    user's report leads to the traceback."""
    from cdp.observability import current_request_id

    reference = current_request_id()
    if _wants_page(request):
        text = f"Something went wrong on our side. If it keeps happening, report it with this reference: {reference}"
        page = _PAGE.format(title="Server error", text=escape(text))
        return HttpResponse(page, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    return JsonResponse(
        error_body(f"Internal server error (reference {reference})."),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )
