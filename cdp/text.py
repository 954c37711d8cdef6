"""Whether a text from outside can be stored: PostgreSQL text holds neither NUL characters nor lone surrogates
(a JSON "\\ud800" escape decodes to one; it is not UTF-8)."""

from typing import Any


def utf8(text: str) -> bool:
    """False for lone surrogates (from a JSON "\\ud800" escape or undecodable file bytes)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def storable(text: str) -> bool:
    return "\x00" not in text and utf8(text)


def storable_json(value: Any) -> bool:
    """Every text in a parsed JSON value (object keys too) is storable."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return all(storable_json(k) and storable_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(storable_json(item) for item in value)
    return True
