"""Columns of fixed-width values between PostgreSQL and numpy arrays: in by binary COPY, out as binary arrays.

A binary COPY row is a 16-bit field count, then per field a 32-bit length and the value in network byte order; a
row of fixed-width, non-NULL fields has one layout, so a whole result is one numpy structured array (no per-row
Python work). Kinds: ">i8" (bigint), ">i4" (integer), ">i2" (smallint), "S<n>" (a text or varchar of exactly n
bytes; "S0" with None instead of values: the empty text in every row), ">i8" also for timestamptz (microseconds
since 2000-01-01 UTC, see `timestamptz`).
"""

from __future__ import annotations

import os
import struct
from datetime import UTC, datetime

import numpy as np
import psycopg
from psycopg.adapt import Loader
from psycopg.pq import Format

HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = b"\xff\xff"
POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _row_dtype(kinds: list[str]) -> np.dtype:
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for k, kind in enumerate(kinds):
        fields.append((f"l{k}", ">i4"))
        if kind != "S0":  # the empty text: its length (0) only
            fields.append((f"v{k}", kind))
    return np.dtype(fields)  # packed: no alignment padding, as on the wire


def copy_in(cursor, statement: str, columns: list[tuple[str, np.ndarray | None]]) -> None:
    """COPY the equal-length arrays into `statement` ("COPY table (a, b) "): each (kind, values)."""
    copy_rows(cursor, statement, rows_build(columns))


def rows_build(columns: list[tuple[str, np.ndarray | int | None]]) -> np.ndarray:
    """The rows of `copy_in` as one structured array (field "v<k>" holds column k's values: a column given as a
    single value, e.g. 0, can be filled in later)."""
    sized = [values for _, values in columns if isinstance(values, np.ndarray)]
    n = len(sized[0]) if sized else 0
    rows = np.empty(n, dtype=_row_dtype([kind for kind, _ in columns]))
    rows["count"] = len(columns)
    for k, (kind, values) in enumerate(columns):
        if kind == "S0":
            rows[f"l{k}"] = 0
            continue
        if isinstance(values, np.ndarray) and len(values) != n:
            raise ValueError("columns of different lengths")
        rows[f"l{k}"] = np.dtype(kind).itemsize
        rows[f"v{k}"] = values
    return rows


def copy_rows(cursor, statement: str, rows: np.ndarray) -> None:
    """COPY rows built by `rows_build` into `statement`."""
    with cursor.copy(f"{statement} FROM STDIN (FORMAT binary)") as copy:
        copy.write(HEADER)
        copy.write(rows.tobytes())
        copy.write(TRAILER)


def timestamptz(moment: datetime) -> int:
    """A timestamptz as binary COPY carries it."""
    delta = moment - POSTGRES_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def uuid_hex(count: int) -> np.ndarray:
    """`count` random version-4 UUIDs as 32-byte lower-case hex strings (uuid.uuid4().hex), in one pass."""
    raw = np.frombuffer(os.urandom(16 * count), dtype=np.uint8).reshape(count, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    return np.frombuffer(raw.tobytes().hex().encode("ascii"), dtype="S32")


class _IntArrayLoader(Loader):
    """A binary int2[] / int4[] / int8[] of one dimension without NULLs as a numpy int64 array (one frombuffer;
    psycopg's own loader makes a Python int per element)."""

    format = Format.BINARY

    def load(self, data) -> np.ndarray:
        ndim, has_null, element_oid = struct.unpack_from(">iiI", data)
        if ndim == 0:
            return np.empty(0, dtype=np.int64)
        if ndim != 1 or has_null:
            raise ValueError("expected a one-dimensional array without NULLs")
        (size,) = struct.unpack_from(">i", data, 12)
        width = _INT_WIDTHS[element_oid]
        rows = np.frombuffer(data, dtype=np.dtype([("l", ">i4"), ("v", f">i{width}")]), count=size, offset=20)
        return rows["v"].astype(np.int64)


# Element oid -> width: int2, int4, int8, and timestamptz (microseconds since 2000-01-01 UTC, see `timestamptz`).
_INT_WIDTHS = {21: 2, 23: 4, 20: 8, 1184: 8}
_INT_ARRAY_OIDS = (1005, 1007, 1016, 1185)  # int2[], int4[], int8[], timestamptz[]


def fetch_arrays(connection, query: str, params=None) -> list:
    """The one row `query` returns (e.g. SELECT array_agg(a), array_agg(b) ...) in binary: integer and timestamptz
    arrays as numpy int64 arrays (one binary value per column instead of a COPY message per row), other columns as
    psycopg loads them (bytea as bytes, text[] as a list)."""
    with psycopg.Cursor(connection) as cursor:  # server-side binding (a client-side cursor has no binary results)
        for oid in _INT_ARRAY_OIDS:
            cursor.adapters.register_loader(oid, _IntArrayLoader)
        cursor.execute(query, params, binary=True)
        return list(cursor.fetchone())
