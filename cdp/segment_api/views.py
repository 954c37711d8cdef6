"""Segment-compatible ingestion endpoints: POST /v1/batch, /v1/track, /v1/identify, /v1/page, /v1/screen,
/v1/alias, /v1/group (and analytics.js's short forms /v1/t, /v1/i, /v1/p, /v1/s, /v1/a, /v1/g).

Any Segment SDK pointed at this server (its `host` / `apiHost` setting) works unchanged:

- Auth: HTTP basic auth with a data source's write key as the user name and an empty password, or `writeKey`
  in the JSON body (what analytics.js sends). Missing or unknown key: 401.
- Body: JSON (`application/json`, or `text/plain`, which browsers send without a CORS preflight), optionally
  `Content-Encoding: gzip`. At most 500 KB for a batch and 32 KB for one message, after decompression (413).
- CORS: any origin (`Access-Control-Allow-Origin: *`), OPTIONS preflights answered; no CSRF (no cookies used).
- Rate limited per client IP (scope "segment", shared by all /v1/* endpoints), see cdp.ratelimit.
- Answers: 200 `{"success": true}`. /v1/batch adds `accepted` (newly stored), `duplicates` (already stored,
  not stored again) and `rejected: [{index, reason}]`; the good messages of a batch are stored even when
  others are rejected, and a batch where every message is rejected is a 400 listing them. Errors use the
  project's JSON error shape plus a Segment-style `code` (`invalid_request`, `unauthorized`,
  `payload_too_large`, `rate_limited`), which Segment SDKs log.

Mapping of messages to customer events: see cdp.segment_api.services.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from cdp.api.errors import error_body
from cdp.http import BodyInvalid, BodyTooLarge, declared_length, gunzip_limited
from cdp.ratelimit import rate_limited
from cdp.segment_api.services import (
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    BatchInvalid,
    MessageTooLarge,
    segment_batch_ingest,
    segment_batch_messages,
    segment_message_ingest,
)
from cdp.services.data_sources import data_source_by_write_key
from cdp.services.events import EventRejected

RATE_LIMIT_SCOPE = "segment"
ACCEPTED_CONTENT_TYPES = {"", "application/json", "text/plain"}
# Room for the envelope around one message on the single-message endpoints (writeKey, sentAt, whitespace).
SINGLE_MESSAGE_ENVELOPE_BYTES = 2048
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    # Authorization must be named explicitly: the "*" wildcard does not cover it.
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding, X-Retry-Count, X-Request-ID",
    "Access-Control-Max-Age": "86400",
}


class RequestProblem(Exception):
    """A request we answer with an error: HTTP status, message, Segment-style code."""

    def __init__(self, status: int, message: str, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def _error(status: int, message: str, code: str, **extra: Any) -> JsonResponse:
    return JsonResponse(error_body(message, code=code, **extra), status=status)


def _gunzip(data: bytes, *, limit: int) -> bytes:
    """Decompress gzip, refusing to produce more than `limit` bytes."""
    try:
        return gunzip_limited(data, limit=limit)
    except BodyTooLarge as exc:
        raise RequestProblem(413, str(exc), "payload_too_large") from None
    except BodyInvalid as exc:
        raise RequestProblem(400, str(exc)) from None


def _json_body(request: HttpRequest, *, limit: int) -> dict[str, Any]:
    """The request's JSON object, decompressed and size-checked. Raises RequestProblem."""
    content_type = (request.content_type or "").lower()
    if content_type not in ACCEPTED_CONTENT_TYPES:
        raise RequestProblem(400, f"Content-Type {content_type!r} is not accepted: send application/json")
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in {"", "identity", "gzip", "x-gzip"}:
        raise RequestProblem(400, f"Content-Encoding {encoding!r} is not supported: send gzip or no encoding")
    # Compressed bodies may legitimately be smaller than the limit; the decompressed size is checked below.
    raw_limit = settings.CDP_MAX_REQUEST_BYTES if encoding in {"gzip", "x-gzip"} else limit
    declared = declared_length(request.META.get("CONTENT_LENGTH"))
    if declared is None:
        raise RequestProblem(400, "Content-Length header is not a number of bytes")
    if declared > raw_limit:
        raise RequestProblem(413, f"body is over the {raw_limit // 1024} KB limit", "payload_too_large")
    try:
        data = request.body
    except RequestDataTooBig:
        raise RequestProblem(413, f"body is over the {raw_limit // 1024} KB limit", "payload_too_large") from None
    if encoding in {"gzip", "x-gzip"}:
        data = _gunzip(data, limit=limit)
    elif len(data) > limit:
        raise RequestProblem(413, f"body is over the {limit // 1024} KB limit", "payload_too_large")
    if not data.strip():
        raise RequestProblem(400, "body is empty: send a JSON object")
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise RequestProblem(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestProblem(400, "body must be a JSON object")
    return body


def _header_write_key(request: HttpRequest) -> str | None:
    """The write key from `Authorization: Basic base64(key:)`, None when there is no Authorization header."""
    header = request.META.get("HTTP_AUTHORIZATION", "").strip()
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise RequestProblem(
            401, "Authorization must be HTTP basic auth with the write key as the user name", "unauthorized"
        )
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise RequestProblem(
            401, "Authorization header is not valid basic auth (base64 of 'writeKey:')", "unauthorized"
        ) from None
    return decoded.partition(":")[0]


def _source_id(write_key: object) -> int:
    if not isinstance(write_key, str) or not write_key.strip():
        raise RequestProblem(
            401,
            "write key missing: use HTTP basic auth with the source's write key as the user name, "
            "or writeKey in the body",
            "unauthorized",
        )
    source = data_source_by_write_key(write_key.strip())
    if source is None:
        raise RequestProblem(401, "invalid write key", "unauthorized")
    return source.pk


def _authenticated_body(request: HttpRequest, *, limit: int) -> tuple[int, dict[str, Any]]:
    """The source id and the JSON body; the header key is checked before the body is even read."""
    header_key = _header_write_key(request)
    if header_key is not None:
        source_id = _source_id(header_key)
        return source_id, _json_body(request, limit=limit)
    body = _json_body(request, limit=limit)
    return _source_id(body.get("writeKey")), body


def _segment_endpoint(view: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """CORS, preflight, POST only, rate limit, and RequestProblem → JSON error, for every /v1/* view."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest) -> HttpResponse:
        if request.method == "OPTIONS":
            response: HttpResponse = HttpResponse(status=204)
        elif request.method != "POST":
            response = _error(405, f"method {request.method} not allowed: use POST", "invalid_request")
            response["Allow"] = "POST, OPTIONS"
        else:
            try:
                response = view(request)
            except RequestProblem as problem:
                response = _error(problem.status, problem.message, problem.code)
        return response

    # Rate limiting sits outside so a 429 carries the CORS headers too (browsers hide it otherwise).
    limited = rate_limited(RATE_LIMIT_SCOPE)(wrapped)

    @functools.wraps(view)
    def with_cors(request: HttpRequest) -> HttpResponse:
        response = limited(request)
        for name, value in CORS_HEADERS.items():
            response[name] = value
        return response

    return csrf_exempt(with_cors)


@_segment_endpoint
def batch(request: HttpRequest) -> HttpResponse:
    received_at = datetime.now(UTC)
    source_id, body = _authenticated_body(request, limit=min(MAX_BATCH_BYTES, settings.CDP_MAX_REQUEST_BYTES))
    try:
        messages = segment_batch_messages(body)
    except BatchInvalid as exc:
        raise RequestProblem(400, str(exc)) from None
    result = segment_batch_ingest(
        source_id=source_id, messages=messages, received_at=received_at, batch_sent_at=body.get("sentAt")
    )
    counts = {"accepted": result.accepted, "duplicates": result.duplicates, "rejected": result.rejected}
    if result.rejected and not result.accepted and not result.duplicates:
        first = result.rejected[0]
        return _error(
            400,
            f"no message in the batch was accepted; message {first['index']}: {first['reason']}",
            "invalid_request",
            success=False,
            **counts,
        )
    return JsonResponse({"success": True, **counts})


def _single_message_view(message_type: str) -> Callable[[HttpRequest], HttpResponse]:
    def view(request: HttpRequest) -> HttpResponse:
        received_at = datetime.now(UTC)
        source_id, body = _authenticated_body(request, limit=MAX_MESSAGE_BYTES + SINGLE_MESSAGE_ENVELOPE_BYTES)
        try:
            segment_message_ingest(
                source_id=source_id, message=body, message_type=message_type, received_at=received_at
            )
        except MessageTooLarge as exc:
            raise RequestProblem(413, str(exc), "payload_too_large") from None
        except EventRejected as exc:
            raise RequestProblem(400, str(exc)) from None
        return JsonResponse({"success": True})

    view.__name__ = view.__qualname__ = message_type
    view.__doc__ = f"POST /v1/{message_type}: one Segment {message_type} message."
    return _segment_endpoint(view)


track = _single_message_view("track")
identify = _single_message_view("identify")
page = _single_message_view("page")
screen = _single_message_view("screen")
alias = _single_message_view("alias")
group = _single_message_view("group")
