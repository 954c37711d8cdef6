"""Load customer events from CSV and JSON Lines files (optionally gzipped): `manage.py load_events`.

Contract:
- Every row is validated by `cdp.services.events.event_record_build`, the same function the REST bulk API and
  the Segment endpoints use, so a file accepts, rejects and deduplicates exactly like the API (same
  idempotency key for the same event).
- The file is streamed: memory stays flat whatever its size. Rows are sent in chunks with PostgreSQL COPY into
  a TEMP staging table and moved into `customer_events` by an idempotent insert; each chunk commits on its
  own, so a huge file makes progress and a re-run (after a crash or on purpose) stores nothing twice.
- A bad row never stops the load: it is reported with its line number and the reason, and the good rows load.

Row formats (also in `manage.py load_events --help`):
- JSON Lines: one object per line, `{"type", "event_time", "payload"?, "message_id"?}`. `messageId` is accepted
  for `message_id` (the Segment spelling, as the bulk API accepts it); a missing payload is `{}`; any other key
  rejects the row, so a typo such as `event_type` is reported rather than silently dropped.
- CSV: a header row naming `type` and `event_time` (required), `message_id` and `payload` (a JSON object in
  the cell) optionally; every other column becomes a payload key holding the cell as a string (empty cells
  are left out). A column whose name is also a key of the row's payload JSON rejects the row.

Speed (issue 2): Python parses and validates on the calling thread while `workers` threads, each with its own
database connection, COPY earlier chunks and insert them, so parsing overlaps with PostgreSQL's work.
"""

from __future__ import annotations

import csv
import gzip
import io
import queue
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import orjson
import psycopg.errors
from django.db import connection as django_connection
from django.db.models import Q

from cdp.models import DataSource
from cdp.services.data_sources import data_source_client_events_refusal
from cdp.services.events import EventRejected, event_record_build, events_ingested_notify

FORMATS = ("csv", "jsonl")
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_CHUNK_ROWS = 10_000
DEFAULT_WORKERS = 2
# A JSON Lines row longer than this is rejected unread: no valid event is this large (payloads are capped at
# 64 KiB) and reading it whole would break the flat-memory promise.
MAX_LINE_BYTES = 1024 * 1024
JSONL_KEYS = frozenset({"type", "event_time", "payload", "message_id", "messageId"})
CSV_REQUIRED = ("type", "event_time")
REASON_MAX_CHARS = 300

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# Rows are staged with the event time as microseconds since the epoch: Python formats an int several times
# faster than an ISO string, and the conversion below is exact.
STAGING_TABLE = "load_events_staging"
STAGING_BUFFERS_MB = 64
_STAGING_DDL = f"""
    CREATE TEMP TABLE IF NOT EXISTS {STAGING_TABLE} (
        type text NOT NULL,
        event_us bigint NOT NULL,
        payload jsonb NOT NULL,
        idempotency_key text NOT NULL
    ) ON COMMIT DELETE ROWS
"""
_COPY_SQL = f"COPY {STAGING_TABLE} (type, event_us, payload, idempotency_key) FROM STDIN"
_SELECT_STAGED = f"""
    SELECT %(source_id)s, s.type, timestamptz 'epoch' + s.event_us * interval '1 microsecond', s.payload,
           s.idempotency_key
    FROM {STAGING_TABLE} s
"""
_INSERT_SQL = f"""
    INSERT INTO customer_events (source_id, type, event_time, payload, idempotency_key)
    {_SELECT_STAGED}
"""
# After a chunk met keys already stored: skip them with an anti-join (a probe of the unique index), then a
# plain insert. ON CONFLICT DO NOTHING would do the same, but its speculative insertion costs PostgreSQL about
# a third more per row with this table's indexes.
_INSERT_NEW_SQL = f"""
    INSERT INTO customer_events (source_id, type, event_time, payload, idempotency_key)
    {_SELECT_STAGED}
    WHERE NOT EXISTS (
        SELECT 1 FROM customer_events e
        WHERE e.source_id = %(source_id)s AND e.idempotency_key = s.idempotency_key
    )
"""
# The last resort, when another writer stored one of the keys between the anti-join and the insert.
_INSERT_ON_CONFLICT_SQL = f"""
    INSERT INTO customer_events (source_id, type, event_time, payload, idempotency_key)
    {_SELECT_STAGED}
    ON CONFLICT (source_id, idempotency_key) DO NOTHING
"""


class EventFileError(Exception):
    """The file as a whole cannot be loaded (unreadable, unknown format, CSV header without required columns)."""


@dataclass(slots=True)
class LoadReport:
    """What a load did. `duplicates` counts rows already stored or repeated earlier in the file."""

    read: int = 0
    inserted: int = 0
    duplicates: int = 0
    rejected: int = 0
    seconds: float = 0.0
    chunks: int = 0
    first_rejections: list[tuple[int, str]] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (
            f"read {self.read:,} / inserted {self.inserted:,} / duplicates {self.duplicates:,} / "
            f"rejected {self.rejected:,} in {self.seconds:.1f} s ({self.events_per_s:,.0f} events/s)"
        )


def data_source_for_load(ref: str) -> DataSource:
    """The data source whose slug or name is `ref` (slug first). Raises EventFileError naming the choices."""
    ref = ref.strip()
    source = DataSource.objects.filter(slug=ref).first()
    matches = [source] if source else list(DataSource.objects.filter(Q(name__iexact=ref))[:2])
    if len(matches) == 1:
        if refusal := data_source_client_events_refusal(matches[0].slug):
            raise EventFileError(refusal)
        return matches[0]
    if len(matches) > 1:
        raise EventFileError(f"several data sources are named {ref!r}; give the slug instead")
    known = list(DataSource.objects.order_by("slug").values_list("slug", flat=True)[:20])
    hint = f"; known slugs: {', '.join(known)}" if known else "; there are no data sources yet (create one first)"
    raise EventFileError(f"unknown data source {ref!r}{hint}")


def event_file_format_detect(path: Path, explicit: str | None = None) -> str:
    """'csv' or 'jsonl' from `explicit` or the extension (a trailing .gz is ignored)."""
    if explicit:
        if explicit not in FORMATS:
            raise EventFileError(f"unknown format {explicit!r}; use one of {', '.join(FORMATS)}")
        return explicit
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    fmt = EXTENSIONS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise EventFileError(
            f"cannot tell the format of {path.name!r} from its extension (.csv, .jsonl, .ndjson, .json, "
            "optionally .gz); give --format"
        )
    return fmt


class _CountingReader(io.RawIOBase):
    """A raw file that remembers how many bytes were read, for the progress bar under gzip."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._raw.readinto(buffer)
        self.bytes_read += n or 0
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


def _open_binary(path: Path) -> tuple[BinaryIO, _CountingReader]:
    """The decompressed byte stream (gzip recognised by its magic bytes) and the counter of file bytes read."""
    try:
        raw = path.open("rb", buffering=0)
    except OSError as exc:
        raise EventFileError(f"cannot open {str(path)!r}: {exc.strerror or exc}") from None
    counter = _CountingReader(raw)
    buffered = io.BufferedReader(counter, buffer_size=1 << 20)
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        return io.BufferedReader(gzip.GzipFile(fileobj=buffered, mode="rb"), buffer_size=1 << 20), counter
    return buffered, counter


def _reason(text: str) -> str:
    return text if len(text) <= REASON_MAX_CHARS else text[: REASON_MAX_CHARS - 1] + "…"


# A parsed row is (type, event_time, payload, message_id); a row that cannot even be parsed is the reason (str).
Row = tuple[object, object, object, object] | str


def _jsonl_rows(stream: BinaryIO, *, from_json_extension: bool = False) -> Iterator[tuple[int, Row]]:
    """(line number, row) for every non-blank line."""
    readline = stream.readline
    loads = orjson.loads
    decode_error = orjson.JSONDecodeError
    allowed = JSONL_KEYS
    limit = MAX_LINE_BYTES + 1
    line_no = 0
    first = True
    while line := readline(limit):
        line_no += 1
        if len(line) == limit and not line.endswith(b"\n"):
            while (rest := readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
            yield line_no, f"line is longer than {MAX_LINE_BYTES // 1024} KiB"
            continue
        if first:
            first = False
            line = line.removeprefix(b"\xef\xbb\xbf")
            if from_json_extension and line.lstrip().startswith(b"["):
                raise EventFileError(
                    "the file is a JSON array; load_events reads JSON Lines: one event object per line"
                )
        try:
            obj = loads(line)
        except decode_error as exc:
            if not line.strip():
                continue
            yield line_no, f"not valid JSON: {exc}"
            continue
        if obj.__class__ is not dict:
            yield line_no, "a line must be a JSON object with type, event_time and payload"
            continue
        if not allowed.issuperset(obj):
            unknown = ", ".join(sorted(repr(k) for k in obj if k not in allowed)[:5])
            yield line_no, f"unknown field(s) {unknown}; a line has type, event_time, payload and message_id"
            continue
        message_id = obj.get("message_id")
        if message_id is None:
            message_id = obj.get("messageId")
        yield line_no, (obj.get("type"), obj.get("event_time"), obj.get("payload", {}), message_id)


def _csv_rows(stream: BinaryIO) -> Iterator[tuple[int, Row]]:
    """(line number where the record starts, row) for every non-blank CSV record after the header."""
    # surrogateescape: a byte that is not UTF-8 survives into the cell and is rejected with that row only.
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise EventFileError(f"the CSV header on line 1 is malformed: {exc}") from None
    if header is None:
        return
    names = [name.strip() for name in header]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise EventFileError(f"the CSV header repeats column(s) {', '.join(map(repr, duplicated))}")
    missing = [name for name in CSV_REQUIRED if name not in names]
    if missing:
        raise EventFileError(
            f"the CSV header lacks the required column(s) {', '.join(missing)}; it has {', '.join(names)[:200]}"
        )
    i_type, i_time = names.index("type"), names.index("event_time")
    i_message = names.index("message_id") if "message_id" in names else None
    i_payload = names.index("payload") if "payload" in names else None
    known = {"type", "event_time", "message_id", "payload"}
    extras = [(i, name) for i, name in enumerate(names) if name not in known and name]
    width = len(names)
    loads = orjson.loads
    previous_end = reader.line_num
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield previous_end + 1, f"malformed CSV: {exc}"
            previous_end = reader.line_num
            continue
        start, previous_end = previous_end + 1, reader.line_num
        if not cells:
            continue
        if len(cells) != width:
            yield start, f"the row has {len(cells)} cells but the header has {width} columns"
            continue
        payload: object = {}
        if i_payload is not None and cells[i_payload].strip():
            try:
                payload = loads(cells[i_payload])
            except orjson.JSONDecodeError as exc:
                yield start, f"the payload cell is not valid JSON: {exc}"
                continue
            if payload.__class__ is not dict:
                yield start, "the payload cell must hold a JSON object"
                continue
        clash = None
        for i, name in extras:
            value = cells[i]
            if value != "":
                if name in payload:
                    clash = name
                    break
                payload[name] = value
        if clash is not None:
            yield start, f"column {clash!r} clashes with the key {clash!r} in the payload cell"
            continue
        message_id = cells[i_message] if i_message is not None else None
        yield start, (cells[i_type], cells[i_time], payload, message_id)


def _copy_escape(text: str) -> str:
    """Escape a value for COPY text format."""
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class _ChunkWriters:
    """Threads that COPY chunks into their own staging table and insert them, each on its own connection.

    Chunks go in through `submit`; `(rows, inserted)` results of committed chunks come out of `completed`.
    A worker's failure is re-raised on the calling thread by `submit`, `completed` or `close`.
    """

    def __init__(self, *, source_id: int, workers: int):
        self.source_id = source_id
        self._work: queue.Queue[tuple[bytes, int] | None] = queue.Queue(maxsize=workers)
        self._done: queue.Queue[tuple[int, int]] = queue.Queue()
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"load_events-writer-{n}", daemon=True) for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, data: bytes, rows: int) -> None:
        while True:
            self._raise_if_failed()
            try:
                self._work.put((data, rows), timeout=0.2)
                return
            except queue.Full:
                continue

    def completed(self, *, raise_errors: bool = True) -> Iterator[tuple[int, int]]:
        if raise_errors:
            self._raise_if_failed()
        while True:
            try:
                yield self._done.get_nowait()
            except queue.Empty:
                return

    def close(self, *, abort: bool = False) -> None:
        """Wait for queued chunks (or drop them when aborting) and stop the threads."""
        if abort:
            self._stop.set()
            while True:
                try:
                    self._work.get_nowait()
                except queue.Empty:
                    break
        for _ in self._threads:
            while any(t.is_alive() for t in self._threads):
                try:
                    self._work.put(None, timeout=0.2)
                    break
                except queue.Full:
                    continue
        for thread in self._threads:
            thread.join()
        if not abort:
            self._raise_if_failed()

    def _run(self) -> None:
        # django.db.connection is per thread: this thread gets its own connection, closed when it ends.
        try:
            django_connection.ensure_connection()
            raw = django_connection.connection
            with raw.cursor() as cursor:
                # A chunk's staging rows should stay in memory (the default 8MB spills a chunk to disk); the
                # setting only counts before the session's first temp table.
                cursor.execute(f"SET temp_buffers = '{STAGING_BUFFERS_MB}MB'")
                cursor.execute(_STAGING_DDL)
            expect_duplicates = False
            while (item := self._work.get()) is not None:
                if self._stop.is_set():
                    continue
                data, rows = item
                inserted = _chunk_store(raw, data, rows, source_id=self.source_id, expect_duplicates=expect_duplicates)
                expect_duplicates = inserted < rows
                self._done.put((rows, inserted))
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread, which re-raises it
            self._error = exc
            self._stop.set()
        finally:
            django_connection.close()


def _chunk_store(raw, data: bytes, rows: int, *, source_id: int, expect_duplicates: bool, attempts: int = 3) -> int:
    """COPY one chunk into staging and insert its new events, in one transaction. Returns the rows inserted.

    Idempotent whatever the path: the unique constraint on (source_id, idempotency_key) is the guard.
    - Fresh rows (the usual case for a new file): a plain INSERT ... SELECT, the cheapest for PostgreSQL.
    - If that meets a stored key (a re-run, overlapping files), it is rolled back to a savepoint and the chunk
      is inserted with the anti-join; `expect_duplicates` (the previous chunk met some) starts there.
    - If a concurrent writer stores a key in between, ON CONFLICT DO NOTHING settles it.
    Two writers holding the same keys in opposite order can deadlock; PostgreSQL aborts one, which retries its
    chunk from the start (nothing of it was committed).
    """
    params = {"source_id": source_id}
    for attempt in range(1, attempts + 1):
        try:
            with raw.transaction(), raw.cursor() as cursor:
                with cursor.copy(_COPY_SQL) as copy:
                    copy.write(data)
                if not expect_duplicates:
                    try:
                        with raw.transaction():  # a savepoint: a failure keeps the staged rows
                            cursor.execute(_INSERT_SQL, params)
                            return cursor.rowcount
                    except psycopg.errors.UniqueViolation:
                        pass
                # The anti-join must probe the unique index row by row: the staging table has no statistics,
                # and a hash join would read the whole events table.
                cursor.execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
                try:
                    with raw.transaction():
                        cursor.execute(_INSERT_NEW_SQL, params)
                        return cursor.rowcount
                except psycopg.errors.UniqueViolation:
                    cursor.execute(_INSERT_ON_CONFLICT_SQL, params)
                    return cursor.rowcount
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def event_file_load(
    *,
    path: Path,
    source: DataSource,
    file_format: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    workers: int = DEFAULT_WORKERS,
    on_rejected: Callable[[int, str], None] | None = None,
    progress: bool = False,
    keep_rejections: int = 20,
) -> LoadReport:
    """Load the events of one file into `source`; see the module docstring for the contract.

    `on_rejected(line, reason)` is called for every rejected row, in file order; the report keeps the first
    `keep_rejections`. Raises EventFileError when the file as a whole cannot be read; chunks committed before
    that stay stored (a re-run is idempotent).
    """
    from tqdm import tqdm

    if chunk_rows < 1 or workers < 1:
        raise ValueError("chunk_rows and workers must be positive")
    path = Path(path)
    fmt = event_file_format_detect(path, file_format)
    started = time.perf_counter()
    report = LoadReport()
    stream, counter = _open_binary(path)
    total = path.stat().st_size
    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress, desc=path.name)
    writers = _ChunkWriters(source_id=source.pk, workers=workers)
    ok = False

    def reject(line_no: int, reason: str) -> None:
        reason = _reason(reason)
        report.rejected += 1
        if len(report.first_rejections) < keep_rejections:
            report.first_rejections.append((line_no, reason))
        if on_rejected is not None:
            on_rejected(line_no, reason)

    def collect(raise_errors: bool = True) -> None:
        for rows, inserted in writers.completed(raise_errors=raise_errors):
            report.inserted += inserted
            report.duplicates += rows - inserted
            if inserted:
                events_ingested_notify(inserted)

    try:
        if fmt == "csv":
            rows = _csv_rows(stream)
        else:
            rows = _jsonl_rows(stream, from_json_extension=path.name.lower().removesuffix(".gz").endswith(".json"))
        source_id = source.pk
        lines: list[str] = []
        keys: set[str] = set()
        now = datetime.now(UTC)
        epoch, microsecond = _EPOCH, _MICROSECOND
        escape = _copy_escape
        try:
            for line_no, row in rows:
                report.read += 1
                if row.__class__ is str:
                    reject(line_no, row)
                    continue
                try:
                    record = event_record_build(
                        source_id=source_id,
                        type=row[0],
                        event_time=row[1],
                        payload=row[2],
                        message_id=row[3],
                        now=now,
                    )
                except EventRejected as exc:
                    reject(line_no, str(exc))
                    continue
                key = record.idempotency_key
                if key in keys:  # repeated within this chunk: the insert would trip over itself
                    report.duplicates += 1
                    continue
                keys.add(key)
                event_type, payload_json = record.type, record.payload_json
                if not event_type.isprintable() or "\\" in event_type:
                    event_type = escape(event_type)
                if not key.isprintable() or "\\" in key:
                    key = escape(key)
                if "\\" in payload_json:  # orjson escapes control characters, so backslashes are all to double
                    payload_json = payload_json.replace("\\", "\\\\")
                lines.append(f"{event_type}\t{(record.event_time - epoch) // microsecond}\t{payload_json}\t{key}\n")
                if len(lines) >= chunk_rows:
                    writers.submit("".join(lines).encode(), len(lines))
                    report.chunks += 1
                    lines, keys = [], set()
                    now = datetime.now(UTC)
                    bar.update(counter.bytes_read - bar.n)
                    collect()
        except (OSError, EOFError, zlib.error) as exc:
            raise EventFileError(f"cannot read the file after line {report.read}: {exc}") from None
        if lines:
            writers.submit("".join(lines).encode(), len(lines))
            report.chunks += 1
        writers.close()
        collect()
        bar.update(total - bar.n)
        ok = True
    finally:
        if not ok:
            # Chunks that committed before the failure stay stored: count them and tell the stitcher.
            writers.close(abort=True)
            collect(raise_errors=False)
        bar.close()
        stream.close()
    report.seconds = time.perf_counter() - started
    return report
