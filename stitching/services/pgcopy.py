"""Columns of fixed-width values in and out of PostgreSQL by binary COPY, as numpy arrays.

A binary COPY row is a 16-bit field count, then per field a 32-bit length and the value in network byte order; a
row of fixed-width, non-NULL fields has one layout, so a whole result is one numpy structured array (no per-row
Python work). Kinds: ">i8" (bigint), ">i4" (integer), ">i2" (smallint), "S<n>" (a text or varchar of exactly n
bytes), ">i8" also for timestamptz (microseconds since 2000-01-01 UTC, see `timestamptz`).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = b"\xff\xff"
POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _row_dtype(kinds: list[str]) -> np.dtype:
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for k, kind in enumerate(kinds):
        fields += [(f"l{k}", ">i4"), (f"v{k}", kind)]
    return np.dtype(fields)  # packed: no alignment padding, as on the wire


def copy_out(cursor, query: str, kinds: list[str], params=None) -> list[np.ndarray]:
    """The columns of `query` (no NULLs; each of its kind's width) as numpy arrays, in native byte order."""
    chunks = []
    with cursor.copy(f"COPY ({query}) TO STDOUT (FORMAT binary)", params) as copy:
        for block in copy:
            chunks.append(bytes(block))
    data = b"".join(chunks)
    if not data.startswith(HEADER[:11]):
        raise ValueError("not a binary COPY stream")
    extension = int.from_bytes(data[15:19], "big")
    body = memoryview(data)[19 + extension : len(data) - len(TRAILER)]
    dtype = _row_dtype(kinds)
    if len(body) % dtype.itemsize:
        raise ValueError("a value is NULL or not of its column's width")
    rows = np.frombuffer(body, dtype=dtype)
    if len(rows) and (rows["count"] != len(kinds)).any():
        raise ValueError("unexpected field count")
    for k, kind in enumerate(kinds):
        width = np.dtype(kind).itemsize
        if len(rows) and (rows[f"l{k}"] != width).any():
            raise ValueError(f"column {k}: a value is NULL or not {width} bytes")
    return [rows[f"v{k}"].astype(np.dtype(kind).newbyteorder("=")) for k, kind in enumerate(kinds)]


def copy_in(cursor, statement: str, columns: list[tuple[str, np.ndarray]]) -> None:
    """COPY the equal-length arrays into `statement` ("COPY table (a, b) "): each (kind, values)."""
    n = len(columns[0][1]) if columns else 0
    rows = np.empty(n, dtype=_row_dtype([kind for kind, _ in columns]))
    rows["count"] = len(columns)
    for k, (kind, values) in enumerate(columns):
        if len(values) != n:
            raise ValueError("columns of different lengths")
        rows[f"l{k}"] = np.dtype(kind).itemsize
        rows[f"v{k}"] = values
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
    import os

    raw = np.frombuffer(os.urandom(16 * count), dtype=np.uint8).reshape(count, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    return np.frombuffer(raw.tobytes().hex().encode("ascii"), dtype="S32")
