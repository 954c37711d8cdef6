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


def compound_text(value: dict, fields: list[dict] | None = None) -> str:
    """A compound attribute's value (an object of its fields) in one line, in the definition's field order and
    with the fields' names: "Order: A1 · Total: 120.5"."""
    names = {f["id"]: f.get("name") or f["id"] for f in fields or []}
    # (jsonb keeps an object's keys shortest first: the definition's order, then any other key.)
    keys = [k for k in names if k in value] + [k for k in value if k not in names]
    return " · ".join(f"{names.get(key, key)}: {_scalar_text(value[key])}" for key in keys)


def _scalar_text(value) -> str:
    return "yes" if value is True else "no" if value is False else str(value)
