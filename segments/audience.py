"""The Audience API: `GET /wbs?attribute=<attribute id>&value=<value>&segment=<segment id>` (public, no auth).

Answers (SPEC §4):

- member: 200 {"status": "ok", "returned_attributes": {"customer_entity_id": "...", "modified":
  "YYYY-MM-DD HH:MM:SS", "<attribute id>": [values] | null, ...}}: the two defaults plus the attributes an
  administrator listed in the global setting `audience_api_returned_attributes` (empty by default);
- known customer, not a member: 404 "customer not in segment"; no customer with that value: 404
  "customer not found";
- a missing, empty, repeated-but-empty or malformed parameter, an unknown attribute or segment (trashed
  segments are unknown here), a segment that can no longer be evaluated: 400 with a message naming it;
- over the per-IP limit (global setting `public_rate_limit_per_minute`, Redis counters): 429;
- the database unavailable: 503 "Service unavailable." (logged).

`attribute` is a stitching identifier attribute (computation identifier_values: ps_email_address, ps_user_id ...),
as the seed defines it; any other attribute is a 400. A public lookup by a value many customers share (`consent`
= true, a revenue) would hand anyone a member's id, and the configured returned attributes, without knowing who
they ask about. The value is normalised like the identifier's stitching category (an email in any case finds the
customer); if a value is still shared (a shared device's cookie), a member among its customers wins.

Speed: it is called on every page view. It takes the public fast lane (cdp.fastlane: answered at the WSGI entry,
without Django's request handler and middleware), and its one query is a prepared statement with a generic plan
(cdp.hot_sql). Per request there is the rate-limit counter (one Redis INCR) and ONE
SQL query: the customer is found through the GIN index (`attributes @> {"attr": [value]}`) and the segment's
compiled condition is evaluated on that row in the same statement. Attribute definitions, stitching
normalisers, the returned-attributes setting and compiled segments are cached per process for CACHE_SECONDS
(a segment saved in this process is dropped at once; other processes see it within the TTL).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from datetime import date
from typing import Any
from urllib.parse import parse_qsl

import orjson
import psycopg
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from cdp.api.errors import error_body
from cdp.hot_sql import fetch_one_prepared
from cdp.ratelimit import EnvironRequest, rate_limit_response
from segments.conditions import ConditionInvalid, datetime_storage, tree_compile, tree_validate

logger = logging.getLogger(__name__)

RATE_LIMIT_SCOPE = "audience"
CACHE_SECONDS = 5.0
MAX_VALUE_LENGTH = 1000
RETURNED_ATTRIBUTES_SETTING = "audience_api_returned_attributes"

_lock = threading.Lock()
# (expires, {attribute id: (data_type, normalizer or None, is a stitching identifier)})
_attributes: tuple[float, dict[str, tuple[str, str | None, bool]]] = (0.0, {})
# segment id -> (expires, ("ok", where, params) | ("missing",) | ("invalid", message))
_segments: dict[int, tuple[float, tuple]] = {}


class BadRequest(Exception):
    pass


def audience_cache_forget(*, segment_id: int | None = None) -> None:
    """Drop this process's cached compiled segment (or everything, with no id)."""
    global _attributes
    with _lock:
        if segment_id is None:
            _segments.clear()
            _attributes = (0.0, {})
        else:
            _segments.pop(segment_id, None)


def _attribute_definitions() -> dict[str, tuple[str, str | None, bool]]:
    global _attributes
    now = time.monotonic()
    expires, definitions = _attributes
    if expires > now:
        return definitions
    from cdp.models import Attribute
    from stitching.selectors import category_normalizers

    normalizers = category_normalizers()
    definitions = {}
    for attribute_id, data_type, computation, category in Attribute.objects.values_list(
        "id", "data_type", "computation", "category"
    ):
        identifier = computation == Attribute.Computation.IDENTIFIER_VALUES
        normalizer = normalizers.get(category) if identifier else None
        definitions[attribute_id] = (data_type, normalizer, identifier)
    with _lock:
        _attributes = (now + CACHE_SECONDS, definitions)
    return definitions


def _compiled_segment(segment_id: int) -> tuple:
    now = time.monotonic()
    hit = _segments.get(segment_id)
    if hit is not None and hit[0] > now:
        return hit[1]
    from segments.models import Segment

    row = Segment.objects.filter(pk=segment_id, trashed_at__isnull=True).values_list("conditions", flat=True).first()
    if row is None:
        entry: tuple = ("missing",)
    else:
        from segments.selectors import attribute_types

        types = attribute_types()  # (with compound attributes' fields; compiled once per segment and CACHE_SECONDS)
        try:
            where, params = tree_compile(tree_validate(row, attributes=types), attributes=types)
            entry = ("ok", where, params)
        except ConditionInvalid as exc:
            entry = ("invalid", str(exc))
    with _lock:
        if len(_segments) > 10_000:  # bogus ids cannot grow the cache without bound
            _segments.clear()
        _segments[segment_id] = (now + CACHE_SECONDS, entry)
    return entry


def _query(environ: dict) -> dict[str, str]:
    """The query string's parameters, the last of repeated ones, decoded as Django's request.GET would."""
    from django.conf import settings

    try:
        raw = environ.get("QUERY_STRING", "").encode("iso-8859-1")
    except UnicodeEncodeError:
        raise BadRequest("the query string is not valid") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("iso-8859-1")
    try:
        pairs = parse_qsl(
            text, keep_blank_values=True, encoding="utf-8", max_num_fields=settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        )
    except ValueError:
        raise BadRequest("too many query parameters") from None
    return dict(pairs)


def _param(query: dict[str, str], name: str) -> str:
    raw = query.get(name)
    if raw is None:
        raise BadRequest(f"{name} is required")
    if not raw.strip():
        raise BadRequest(f"{name} must not be empty")
    if "\x00" in raw:
        raise BadRequest(f"{name} must not contain NUL characters")
    return raw


def _typed_value(raw: str, data_type: str, normalizer: str | None) -> Any:
    text = raw.strip()
    try:
        if data_type == "int":
            return int(text)
        if data_type == "float":
            number = float(text)
            if not math.isfinite(number):
                raise ValueError(text)
            return int(number) if number.is_integer() and abs(number) < 2**53 else number
        if data_type == "bool":
            return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[text.lower()]
        if data_type == "date":
            return date.fromisoformat(text).isoformat()
        if data_type == "datetime":
            return datetime_storage(text)
    except (ValueError, KeyError, OverflowError, ConditionInvalid):
        raise BadRequest(f"value {raw[:60]!r} is not a valid {data_type} for this attribute") from None
    if normalizer is not None:
        from stitching.normalizers import normalize

        try:
            normalised = normalize(normalizer, raw)
        except ValueError:
            normalised = None
        if normalised:
            return normalised
    return raw if normalizer is None else text


def _returned_attributes() -> list[str]:
    from cdp.services.global_settings import global_setting_cached

    value = global_setting_cached(RETURNED_ATTRIBUTES_SETTING)
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _raw_json(value: Any) -> Any:
    return orjson.Fragment(value) if isinstance(value, str | bytes) else value


def audience_membership(*, attribute: str, value: str, segment: str) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of one Audience API question, parameters as received. Raises BadRequest."""
    if len(attribute) > 64:
        raise BadRequest("attribute must be an attribute id (at most 64 characters)")
    if len(value) > MAX_VALUE_LENGTH:
        raise BadRequest(f"value must be at most {MAX_VALUE_LENGTH} characters")
    text = segment.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise BadRequest(f"segment must be a segment id (a whole number), got {segment[:40]!r}")
    segment_id = int(text)
    definitions = _attribute_definitions()
    definition = definitions.get(attribute)
    if definition is None:
        raise BadRequest(f"unknown attribute {attribute[:64]!r}")
    data_type, normalizer, identifier = definition
    if data_type == "compound":
        raise BadRequest(f"attribute {attribute!r} is compound (objects of fields): look customers up by an identifier")
    if not identifier:
        raise BadRequest(
            f"attribute {attribute!r} is not a stitching identifier: look customers up by an identifier attribute "
            "(such as ps_email_address)"
        )
    lookup_value = _typed_value(value, data_type, normalizer)
    compiled = _compiled_segment(segment_id)
    if compiled[0] == "missing":
        raise BadRequest(f"unknown segment {segment_id}")
    if compiled[0] == "invalid":
        raise BadRequest(f"segment {segment_id} cannot be evaluated: {compiled[1]}")
    _, where, params = compiled
    returned = _returned_attributes()
    columns = "".join(", e.attributes -> %s::text" for _ in returned)
    sql = (
        f"SELECT e.id, to_char(e.modified AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), ({where}) AS member{columns} "
        "FROM customer_entities e "
        "WHERE e.attributes @> %s::jsonb ORDER BY 3 DESC, e.modified DESC LIMIT 1"
    )
    row = fetch_one_prepared(sql, [*params, *returned, json.dumps({attribute: [lookup_value]})])
    if row is None:
        return 404, error_body("customer not found")
    entity_id, modified, member, *values = row
    if not member:
        return 404, error_body("customer not in segment")
    attributes: dict[str, Any] = {
        "customer_entity_id": entity_id,
        "modified": modified,  # formatted by PostgreSQL: no timestamp parsing here
    }
    for attribute_id, attribute_value in zip(returned, values, strict=True):
        if attribute_id not in attributes:
            # jsonb comes back as its JSON text: embedded as is, not parsed and re-serialised.
            attributes[attribute_id] = None if attribute_value is None else _raw_json(attribute_value)
    return 200, {"status": "ok", "returned_attributes": attributes}


JSON = ("Content-Type", "application/json")


def audience_answer(environ: dict) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) of GET /wbs for a WSGI environ (see the module docstring). The fast lane
    (cdp.fastlane) calls it for the WSGI server; `audience_view` wraps it for requests through Django's handler."""
    method = environ.get("REQUEST_METHOD", "GET")
    if method == "OPTIONS":
        return _cors(environ, 204, [], b"")
    if method not in ("GET", "HEAD"):
        body = orjson.dumps(error_body(f"method {method[:20]} not allowed: use GET"))
        return 405, [JSON, ("Allow", "GET, OPTIONS")], body
    try:
        limited = rate_limit_response(EnvironRequest(environ), scope=RATE_LIMIT_SCOPE)
        if limited is not None:
            return _cors(environ, 429, [JSON, ("Retry-After", limited["Retry-After"])], limited.content)
        query = _query(environ)
        status, body = audience_membership(
            attribute=_param(query, "attribute"), value=_param(query, "value"), segment=_param(query, "segment")
        )
    except BadRequest as exc:
        status, body = 400, error_body(str(exc))
    except (DatabaseError, psycopg.Error):  # the database is down or restarting: not the caller's fault
        logger.exception("Audience API: database unavailable")
        status, body = 503, error_body("Service unavailable.")
    return _cors(environ, status, [JSON], orjson.dumps(body))


def _cors(environ: dict, status: int, headers: list, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    origin = environ.get("HTTP_ORIGIN")
    if origin:
        from cdp.services.global_settings import global_setting_cached

        try:
            allowed = origin in (global_setting_cached("public_cors_origins") or [])
        except DatabaseError:  # the answer (a 503 already, likely) goes out without CORS rather than as a 500
            allowed = False
        if allowed:
            headers.append(("Access-Control-Allow-Origin", origin))
            headers.append(("Access-Control-Allow-Methods", "GET, OPTIONS"))
        headers.append(("Vary", "Origin"))
    return status, headers, body


@csrf_exempt
def audience_view(request: HttpRequest) -> HttpResponse:
    """GET /wbs through Django's handler (the test client, another server): the same answer as the fast lane's."""
    status, headers, body = audience_answer(request.META)
    response = HttpResponse(body, status=status)
    for name, value in headers:
        response[name] = value
    return response


audience_view.wsgi_answer = audience_answer
