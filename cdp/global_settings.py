"""Typed global settings an administrator edits (API "Global Settings", admin). Values are validated here.

Add a setting by adding a `SettingDefinition` to `DEFINITIONS`; stored values live in `GlobalSetting`.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import available_timezones

from cdp.models import Attribute
from cdp.text import storable


class SettingInvalid(ValueError):
    pass


def _check_int(minimum: int, maximum: int) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingInvalid("must be an integer")
        if not minimum <= value <= maximum:
            raise SettingInvalid(f"must be between {minimum} and {maximum}")
        return value

    return check


def _check_identifier_list(value: Any) -> Any:
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise SettingInvalid("must be a list of non-empty strings")
    if len(value) > 100:
        raise SettingInvalid("must have at most 100 items")
    if not all(storable(item) for item in value):
        raise SettingInvalid("must not contain NUL characters or lone surrogates")
    return [item.strip() for item in value]


def _check_attribute_ids(value: Any) -> Any:
    """Ids of attributes that exist: a misspelt id would make the Audience API answer null for it forever, and an
    attribute this setting names cannot be deleted, so the two stay consistent."""
    value = list(dict.fromkeys(_check_identifier_list(value)))
    unknown = sorted(set(value) - set(Attribute.objects.filter(pk__in=value).values_list("pk", flat=True)))
    if unknown:
        raise SettingInvalid(f"names no attribute with the id {', '.join(repr(item) for item in unknown)}")
    return value


# Files of the host's zoneinfo directory that are not IANA zone names: "localtime" is the server's own zone (another
# host may have none, and every admin page failed there), "posixrules" and "Factory" are placeholders.
NOT_ZONES = {"localtime", "posixrules", "Factory"}


def _check_timezone(value: Any) -> Any:
    if not isinstance(value, str) or value in NOT_ZONES or value not in available_timezones() | {"UTC"}:
        raise SettingInvalid("must be an IANA time zone name such as 'Europe/Prague'")
    return value


def _check_origins(value: Any) -> Any:
    """Origins as browsers send them in the Origin header, which the public endpoints compare exactly: lower-case
    (a scheme and a host name are case-insensitive), without the slash an address copied from the address bar
    ends with."""
    origins = []
    for origin in _check_identifier_list(value):
        origin = origin.lower().removesuffix("/")
        if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
            raise SettingInvalid(f"{origin!r} is not an origin like 'https://shop.example.com'")
        origins.append(origin)
    return list(dict.fromkeys(origins))


@dataclass(frozen=True)
class SettingDefinition:
    key: str
    type: str  # JSON-schema-ish type name shown to clients
    default: Any
    description: str
    check: Callable[[Any], Any] = field(repr=False)


DEFINITIONS: dict[str, SettingDefinition] = {
    d.key: d
    for d in [
        SettingDefinition(
            "audience_api_returned_attributes",
            "array[string]",
            [],
            "Attribute ids the public Audience API (/wbs) may return besides customer_entity_id and modified.",
            _check_attribute_ids,
        ),
        SettingDefinition(
            "display_timezone",
            "string",
            "UTC",
            "Time zone the Business Explorer shows times in (data is stored in UTC).",
            _check_timezone,
        ),
        SettingDefinition(
            "public_cors_origins",
            "array[string]",
            [],
            "Web origins allowed to call the public endpoints from a browser (CORS).",
            _check_origins,
        ),
        SettingDefinition(
            "public_rate_limit_per_minute",
            "integer",
            600,
            "Requests per minute one client IP may make to each public endpoint (0 = unlimited).",
            _check_int(0, 1_000_000),
        ),
    ]
}
