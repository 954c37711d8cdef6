"""The API's JSON body parser: DRF's, with bodies its decoder takes badly a 400 instead of a 500, the size limit
(`CDP_MAX_REQUEST_BYTES`) enforced, and gzip bodies (`Content-Encoding: gzip`) read."""

import math

from django.conf import settings
from rest_framework import parsers, status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.utils import json

from cdp.http import ACCEPTED_ENCODINGS, GZIP_ENCODINGS, BodyInvalid, BodyTooLarge, declared_length, gunzip_limited


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


class EncodingNotSupported(APIException):
    status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    default_code = "unsupported_encoding"


def _finite_float(text: str) -> float:
    """A JSON number as a float; one beyond a float's range (1e400) is refused: Python's decoder makes it infinity,
    which no field expects (an id lookup raised OverflowError, a 500)."""
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]}{'…' if len(text) > 40 else ''} is out of range")
    return value


def request_body_read(stream, meta) -> bytes:
    """The body's bytes, decompressed, at most CDP_MAX_REQUEST_BYTES. DRF reads its parsers' stream straight from
    the request, past Django's DATA_UPLOAD_MAX_MEMORY_SIZE (which guards `request.body` and forms only): a 60 MB
    body was read and parsed whole."""
    limit = settings.CDP_MAX_REQUEST_BYTES
    encoding = meta.get("HTTP_CONTENT_ENCODING", "").strip().lower()
    if encoding not in ACCEPTED_ENCODINGS:
        raise EncodingNotSupported(f"Content-Encoding {encoding[:40]!r} is not supported: send gzip or no encoding.")
    declared = declared_length(meta.get("CONTENT_LENGTH"))
    too_large = f"The request body is over the {limit // 1024} KB limit: send less per request (fewer events)."
    if declared is not None and declared > limit:
        raise PayloadTooLarge(too_large)
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(too_large)
    if encoding in GZIP_ENCODINGS:
        try:
            data = gunzip_limited(data, limit=limit)
        except BodyTooLarge:
            raise PayloadTooLarge(
                f"The request body is over the {limit // 1024} KB limit once decompressed: send less per request "
                "(fewer events)."
            ) from None
        except BodyInvalid as exc:
            raise ParseError(f"The request {exc}.") from None
    return data


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        # DRF's parse with a parse_float added, reading the body through request_body_read.
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        request = parser_context.get("request")
        data = request_body_read(stream, request.META if request is not None else {})
        try:
            text = data.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - the body is not valid {encoding}: {exc}") from None
        try:
            parse_constant = json.strict_constant if self.strict else None
            return json.loads(text, parse_constant=parse_constant, parse_float=_finite_float)
        except RecursionError:
            # e.g. "[" * 100_000: Python's decoder recurses once per level.
            raise ParseError("JSON parse error - nested too deeply.") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
