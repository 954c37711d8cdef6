"""How computed attribute values are stored as JSON, shared by the computation, segment conditions and the API.

Models-free on purpose: `segments.conditions` is plain Python (the benchmark harness and the property tests import
it before Django is set up)."""

from datetime import UTC, datetime

# PostgreSQL to_char format of a stored date-time: UTC, fixed width, so stored values sort lexicographically.
DATETIME_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'


def datetime_stored(moment: datetime) -> str:
    """An aware date-time as attribute values store it (DATETIME_FORMAT, in UTC); OverflowError before year 1 in
    UTC. isoformat, not strftime("%Y"): glibc writes the year 999 as "999", which compares after "2000" as text."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def compound_text(value: dict, names: dict[str, str] | None = None) -> str:
    """A compound attribute's value (an object of its fields) in one line: "Order: A1 · total: 120.5"."""
    names = names or {}
    return " · ".join(f"{names.get(key, key)}: {_scalar_text(item)}" for key, item in value.items())


def _scalar_text(value) -> str:
    return "yes" if value is True else "no" if value is False else str(value)
