"""Checks a real API answer against the OpenAPI schema the project publishes (`/api/schema/`).

A client generated from the schema trusts it: a field the schema does not list, a null where it promises a string,
a status code it does not document, each breaks such a client. The schema's components become JSON Schema
(draft 2020-12, jsonschema is already installed with drf-spectacular): OpenAPI 3.0's `nullable` becomes a null
alternative, and an object that lists its properties is closed (`additionalProperties: false`), so an undocumented
field is reported too.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

import jsonschema

_OPENAPI_ONLY = {"nullable", "readOnly", "writeOnly", "example", "discriminator", "xml", "externalDocs", "deprecated"}

FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if isinstance(value, str) and datetime.fromisoformat(value).tzinfo is None:
        raise ValueError("no time zone")
    return True


@FORMATS.checks("date", raises=ValueError)
def _date(value: object) -> bool:
    if isinstance(value, str):
        date.fromisoformat(value)
    return True


# drf-spectacular writes a blank-allowed URL or email field as `oneOf` [the format, an empty string]: the format
# must refuse "" for exactly one to match.
@FORMATS.checks("uri")
def _uri(value: object) -> bool:
    return not isinstance(value, str) or "://" in value


@FORMATS.checks("email")
def _email(value: object) -> bool:
    return not isinstance(value, str) or "@" in value


def json_schema(node: Any) -> Any:
    """An OpenAPI 3.0 schema object as JSON Schema, its `$ref`s pointing into `$defs`."""
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: json_schema(value) for key, value in node.items() if key not in _OPENAPI_ONLY}
    if "$ref" in out:
        out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/$defs/")
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if node.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


class SchemaResponses:
    """The operations of one OpenAPI document; `problems()` lists how an answer differs from what it documents."""

    def __init__(self, schema: dict) -> None:
        self.schema = schema
        self.defs = {name: json_schema(component) for name, component in schema["components"]["schemas"].items()}
        # Literal paths before templated ones: /api/segments/operators/ is not /api/segments/{id}/.
        self.paths = sorted(schema["paths"].items(), key=lambda item: item[0].count("{"))

    def operation(self, method: str, path: str) -> tuple[str, dict] | tuple[None, None]:
        for template, operations in self.paths:
            # The router takes a path with or without its trailing slash (the README writes them without).
            pattern = re.sub(r"\{[^}]+\}", "[^/]+", template.rstrip("/")) + "/?"
            if re.fullmatch(pattern, path) and method.lower() in operations:
                return template, operations[method.lower()]
        return None, None

    def problems(self, method: str, path: str, response) -> list[str]:
        """`response` is a Django test response; `path` without its query string."""
        template, operation = self.operation(method, path)
        if operation is None:
            return [f"{method} {path}: not in the schema"]
        where = f"{method} {template} {response.status_code}"
        answer = operation["responses"].get(str(response.status_code))
        if answer is None:
            return [f"{where}: status not documented (documented: {sorted(operation['responses'])})"]
        content = answer.get("content") or {}
        if response.status_code == 204 or not content:
            return [f"{where}: a body, none documented"] if response.content else []
        media = response.get("Content-Type", "").split(";")[0]
        if media not in content:
            return [f"{where}: {media} not documented (documented: {sorted(content)})"]
        if media != "application/json":
            return []
        root = dict(json_schema(content[media]["schema"]), **{"$defs": self.defs})
        validator = jsonschema.Draft202012Validator(root, format_checker=FORMATS)
        return [
            f"{where}: {'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message[:300]}"
            for error in validator.iter_errors(response.json())
        ]
