"""The public endpoints in the OpenAPI schema: the Audience API (`GET /wbs`) and the Segment-compatible ingestion
(`POST /v1/...`). They are plain Django views (the fast lane answers /wbs before Django's handler), which
drf-spectacular does not see, so this postprocessing hook describes them; the descriptions follow the views'
contracts (segments.audience, cdp.segment_api.views) and tests hold the two together."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from cdp.segment_api.services import MAX_BATCH_BYTES, MAX_MESSAGE_BYTES

SEGMENT_MESSAGE_TYPES = ("track", "identify", "page", "screen", "alias", "group")
# analytics.js (analytics-next) posts to one-letter paths.
SEGMENT_SHORT_PATHS = {"t": "track", "i": "identify", "p": "page", "s": "screen", "a": "alias", "g": "group"}

_ERROR = {
    "type": "object",
    "description": "The project's error body. The /v1 endpoints add a Segment-style `code`.",
    "properties": {
        "status": {"type": "string", "enum": ["error"]},
        "message": {"type": "string", "description": "What is wrong, naming the parameter or field."},
        "errors": {"description": "Per-field or per-item details, when there are several."},
        "code": {
            "type": "string",
            "enum": ["invalid_request", "unauthorized", "payload_too_large", "rate_limited"],
            "description": "On /v1 errors, and on every 429 (`rate_limited`).",
        },
    },
    "required": ["status", "message"],
}
_RATE_LIMITED = {
    "description": "Over the per-IP limit (global setting `public_rate_limit_per_minute`).",
    "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to the next window."}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PublicError"}}},
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PublicError"}}},
    }


def _batch_rejected(success: dict[str, Any]) -> dict[str, Any]:
    """A batch's 400: the error body, and when every message was rejected, the 200's lists with the reasons."""
    counts = {name: schema for name, schema in success.items() if name != "success"}
    schema = {
        "type": "object",
        "properties": _ERROR["properties"] | {"success": {"type": "boolean", "enum": [False]}} | counts,
        "required": _ERROR["required"],
    }
    return {
        "description": "Invalid JSON, or every message of the batch rejected (`rejected` gives each one's reason).",
        "content": {"application/json": {"schema": schema}},
    }


def _audience() -> dict[str, Any]:
    def parameter(name: str, description: str) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": True, "schema": {"type": "string"}, "description": description}

    return {
        "get": {
            "operationId": "audience_lookup",
            "summary": "Is the visitor with this attribute value in the segment?",
            "description": (
                "Public (no authentication), rate limited per IP. The attribute is a stitching identifier "
                "(ps_email_address, ps_user_id ...; any other is a 400); the value is normalised like its stitching "
                "category."
            ),
            "tags": ["audience"],
            "security": [],
            "parameters": [
                parameter("attribute", "Identifier attribute id, e.g. ps_email_address."),
                parameter("value", "The visitor's value of that attribute."),
                parameter("segment", "Segment id."),
            ],
            "responses": {
                "200": {
                    "description": "The customer is a member.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "status": {"type": "string", "enum": ["ok"]},
                                    "returned_attributes": {
                                        "type": "object",
                                        "description": (
                                            "customer_entity_id, modified (YYYY-MM-DD HH:MM:SS) and the attributes "
                                            "listed in the global setting audience_api_returned_attributes "
                                            "(each a list of values, or null)."
                                        ),
                                        "additionalProperties": True,
                                    },
                                },
                                "required": ["status", "returned_attributes"],
                            },
                            "example": {
                                "status": "ok",
                                "returned_attributes": {
                                    "customer_entity_id": "6f1c0b5e2a8d4c1e9b7a3d2f1e0c9b8a",
                                    "modified": "2025-05-30 15:52:23",
                                },
                            },
                        }
                    },
                },
                "400": _error("A missing or malformed parameter, an unknown attribute or segment."),
                "404": _error('"customer not found" (no customer has the value) or "customer not in segment".'),
                "429": _RATE_LIMITED,
                "503": _error("The database is unavailable."),
            },
        }
    }


def _segment_operation(name: str, *, short: str | None = None) -> dict[str, Any]:
    batch = name == "batch"
    # A batch body is also bounded by the server's request limit; one message is bounded as a message (its JSON
    # as stored), the body around it may add writeKey and sentAt.
    limit = min(MAX_BATCH_BYTES, settings.CDP_MAX_REQUEST_BYTES) if batch else MAX_MESSAGE_BYTES
    success: dict[str, Any] = {"success": {"type": "boolean", "enum": [True]}}
    if batch:
        success |= {
            "accepted": {"type": "integer", "description": "Messages newly stored."},
            "duplicates": {"type": "integer", "description": "Messages already stored (not stored again)."},
            "rejected": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"index": {"type": "integer"}, "reason": {"type": "string"}},
                    "required": ["index", "reason"],
                },
            },
        }
    message = {
        "type": "object",
        "description": "A Segment message (https://segment.com/docs/connections/spec/).",
        "properties": {
            "type": {"type": "string", "enum": list(SEGMENT_MESSAGE_TYPES)},
            "userId": {"type": "string"},
            "anonymousId": {"type": "string"},
            "event": {"type": "string", "description": "track: the event name."},
            "properties": {"type": "object", "additionalProperties": True},
            "traits": {"type": "object", "additionalProperties": True},
            "context": {"type": "object", "additionalProperties": True},
            "timestamp": {"type": "string", "format": "date-time", "description": "When it happened (the event time)."},
            "sentAt": {
                "type": "string",
                "format": "date-time",
                "description": "The device's clock when sending: a clock over a minute off has its times corrected.",
            },
            "messageId": {"type": "string", "description": "Idempotency: a message stored twice is stored once."},
        },
        "additionalProperties": True,
    }
    body = (
        {
            "type": "object",
            "properties": {
                "batch": {"type": "array", "items": message},
                "writeKey": {"type": "string"},
                "sentAt": {"type": "string", "format": "date-time"},
            },
            "required": ["batch"],
        }
        if batch
        else message | {"properties": message["properties"] | {"writeKey": {"type": "string"}}}
    )
    kind = "a batch of Segment messages" if batch else f"one Segment {name} message"
    return {
        "post": {
            "operationId": f"segment_{short or name}",
            "summary": f"Store {kind}" + (f" (analytics.js's short path for /v1/{name})" if short else ""),
            "description": (
                "Segment HTTP Tracking API compatible. Authenticate with HTTP basic auth (a data source's write "
                "key as the user name, empty password) or `writeKey` in the body. JSON, `text/plain` or gzip "
                f"(`Content-Encoding: gzip`), at most {limit // 1024} KB after decompression. CORS: any origin."
                + (" The good messages of a batch are stored even when others are rejected." if batch else "")
            ),
            "tags": ["segment"],
            "security": [{"segmentWriteKey": []}, {}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body}, "text/plain": {"schema": body}},
            },
            "responses": {
                "200": {
                    "description": "Stored.",
                    "content": {
                        "application/json": {
                            "schema": {"type": "object", "properties": success, "required": list(success)}
                        }
                    },
                },
                "400": _batch_rejected(success) if batch else _error("Invalid JSON or message."),
                "401": _error("Missing or unknown write key."),
                "413": _error(f"{'Body' if batch else 'Message'} over {limit // 1024} KB."),
                "429": _RATE_LIMITED,
            },
        }
    }


def public_endpoints(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: add /wbs and /v1/* to the schema."""
    paths = result.setdefault("paths", {})
    paths["/wbs"] = _audience()
    for name in ("batch", "import", *SEGMENT_MESSAGE_TYPES):
        paths[f"/v1/{name}"] = _segment_operation("batch" if name == "import" else name, short=None)
        if name == "import":
            paths[f"/v1/{name}"]["post"]["operationId"] = "segment_import"
            paths[f"/v1/{name}"]["post"]["summary"] += " (Segment's older name for /v1/batch)"
    for short, name in SEGMENT_SHORT_PATHS.items():
        paths[f"/v1/{short}"] = _segment_operation(name, short=short)
    components = result.setdefault("components", {})
    components.setdefault("schemas", {})["PublicError"] = _ERROR
    components.setdefault("securitySchemes", {})["segmentWriteKey"] = {
        "type": "http",
        "scheme": "basic",
        "description": "A data source's write key as the user name, an empty password.",
    }
    result.setdefault("tags", [])
    known = {tag.get("name") for tag in result["tags"]}
    for name, description in (
        ("audience", "Public: real-time segment membership for websites."),
        ("segment", "Public: Segment-compatible event ingestion."),
    ):
        if name not in known:
            result["tags"].append({"name": name, "description": description})
    return result
