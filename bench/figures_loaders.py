"""Benchmark figures of segment exports and loaders (see bench/README.md).

- `csv_export_rows_per_s`: a 1,000,000-member segment exported to a CSV destination by the export engine
  (`segments.exports.services.export_run`: member count, COPY ... TO STDOUT streamed into the file), vs a raw
  `COPY (SELECT <the same columns> ...) TO STDOUT` of the same rows into a file.
- `csv_export_peak_rss_mb`: peak RSS of `manage.py run_export` (a subprocess) on that segment, vs on a segment a
  tenth of its size: a ratio near 1 means memory is flat.
- `pinterest_ids_per_s`: the Pinterest loader (normalise + SHA256 + batch into comma-separated `records` + HTTP to
  a local fake Pinterest) on 1,000,000 emails, vs plain `hashlib.sha256` over the same strings.

Data: customer entities are written directly with COPY (ids `b` + 31 hex digits, deterministic, with a boolean
attribute `bench_export` for the segment, `bench_small` on every tenth), once per size: a re-run finds them.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from run import FIGURES, ROOT, Bench, Figure, run_peak_rss

SEGMENT_FULL = "Bench export"
SEGMENT_SMALL = "Bench export (tenth)"
DESTINATION = "Bench CSV"
ATTRIBUTES = ["bench_email", "bench_name", "bench_orders"]


def _entity_id(i: int) -> str:
    return f"b{i:031x}"


def bench_entities_ensure(size: int) -> None:
    """Exactly `size` bench entities exist (created with COPY; kept between runs)."""
    from django.db import connection

    from cdp.models import Attribute

    for attribute_id, data_type in [
        ("bench_export", "bool"),
        ("bench_small", "bool"),
        *((a, "string") for a in ATTRIBUTES),
    ]:
        Attribute.objects.update_or_create(
            id=attribute_id,
            defaults={"name": attribute_id, "data_type": data_type, "computation": "last_value", "path": attribute_id},
        )
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM customer_entities WHERE attributes ? 'bench_export'")
        if cursor.fetchone()[0] == size:
            return
        cursor.execute("DELETE FROM customer_entities WHERE attributes ? 'bench_export'")
    started = time.perf_counter()
    connection.ensure_connection()
    raw = connection.connection
    with raw.transaction(), raw.cursor() as cursor:
        with cursor.copy("COPY customer_entities (id, attributes) FROM STDIN") as copy:
            for i in range(size):
                small = "true" if i % 10 == 0 else "false"
                attributes = (
                    f'{{"bench_export": [true], "bench_small": [{small}], "bench_email": ["user{i}@example.com"], '
                    f'"bench_name": ["Name {i}"], "bench_orders": ["{i % 17}", "{i % 5}"]}}'
                )
                copy.write_row((_entity_id(i), attributes))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE customer_entities")
    print(f"  created {size:,} bench entities in {time.perf_counter() - started:.1f} s", flush=True)


def _segment_and_destination(size: int):
    from segments.exports.models import ExportDestination
    from segments.exports.services import destination_create
    from segments.models import Segment
    from segments.services import segment_create

    bench_entities_ensure(size)
    segments = {}
    for name, attribute in [(SEGMENT_FULL, "bench_export"), (SEGMENT_SMALL, "bench_small")]:
        segment = Segment.objects.filter(name=name).first() or segment_create(
            owner=None,
            name=name,
            conditions={"operator": "and", "children": [{"attribute": attribute, "operator": "is_true"}]},
        )
        segments[name] = segment
    destination = ExportDestination.objects.filter(name=DESTINATION).first() or destination_create(
        name=DESTINATION, kind="csv", config={}, mandatory_attributes=ATTRIBUTES
    )
    return segments, destination


def _raw_copy_seconds(size: int) -> float:
    """The same rows and columns, COPY ... TO STDOUT into a file, nothing else."""
    from django.db import connection

    from loaders.csv_file import cell_sql

    cells = ", ".join(cell_sql(a) for a in ATTRIBUTES)
    sql = (
        f"COPY (SELECT e.id, {cells} FROM customer_entities e WHERE e.attributes @> '{{\"bench_export\": [true]}}' "
        "ORDER BY e.id) TO STDOUT (FORMAT csv)"
    )
    target = ROOT / "bench" / ".cache" / "raw_copy_to.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    connection.ensure_connection()
    started = time.perf_counter()
    with connection.connection.cursor() as cursor, target.open("wb") as out:
        with cursor.copy(sql) as copy:
            for data in copy:
                out.write(data)
    seconds = time.perf_counter() - started
    target.unlink()
    print(f"  raw COPY TO {size:,}: {seconds:.2f} s", flush=True)
    return seconds


def _export_seconds(size: int) -> tuple[float, int]:
    from segments.exports.services import export_create, export_run

    segments, destination = _segment_and_destination(size)
    started = time.perf_counter()
    export = export_create(segment=segments[SEGMENT_FULL], destination=destination, enqueue=False)
    export = export_run(export_id=export.pk)
    seconds = time.perf_counter() - started
    if export.status != "finished":
        raise RuntimeError(f"export failed: {export.error_message}")
    print(f"  export_run {export.sent:,} rows: {seconds:.2f} s", flush=True)
    return seconds, export.sent


def _run_export_rss_mb(segment_name: str) -> float:
    command = [sys.executable, str(ROOT / "manage.py"), "run_export", segment_name, DESTINATION, "--no-progress"]
    returncode, output, peak_rss_mb = run_peak_rss(command)
    if returncode != 0:
        raise RuntimeError(f"run_export failed:\n{output}")
    print(f"  run_export {segment_name!r}: peak RSS {peak_rss_mb:.0f} MB | {output}", flush=True)
    return peak_rss_mb


def figure_csv_export_rows_per_s(bench: Bench) -> Figure:
    """A 1M-member segment to CSV through the export engine vs raw COPY TO of the same rows."""
    size = bench.size(1_000_000)
    _segment_and_destination(size)
    baseline = size / _raw_copy_seconds(size)
    seconds, rows = _export_seconds(size)
    value = rows / seconds
    return Figure("csv_export_rows_per_s", value, "rows/s", baseline, value / baseline, size, "baseline: raw COPY TO")


def figure_csv_export_peak_rss_mb(bench: Bench) -> Figure:
    """Peak RSS of `manage.py run_export` on the 1M segment vs on a tenth of it: ~1 means flat memory."""
    size = bench.size(1_000_000)
    _segment_and_destination(size)
    value = _run_export_rss_mb(SEGMENT_FULL)
    baseline = _run_export_rss_mb(SEGMENT_SMALL)
    return Figure("csv_export_peak_rss_mb", value, "MB", baseline, value / baseline, size, "baseline: size / 10")


class _FakePinterest(BaseHTTPRequestHandler):
    """Just enough of the Ads API v5 for uploads: create a customer list, patch it, create an audience."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = b'{"id": "549755885176", "name": "bench"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PATCH = do_GET = _answer

    def log_message(self, *args) -> None:
        pass


def figure_pinterest_ids_per_s(bench: Bench) -> Figure:
    """Pinterest loader (normalise + SHA256 + batch + HTTP to a local fake) vs plain hashlib over the same ids."""
    from loaders.base import LoadContext
    from loaders.registry import loader_for

    size = bench.size(1_000_000)
    emails = [f" User{i}@Example.com" for i in range(size)]
    ids = [_entity_id(i) for i in range(size)]
    started = time.perf_counter()
    for email in emails:
        hashlib.sha256(email.encode()).hexdigest()
    baseline = size / (time.perf_counter() - started)

    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakePinterest)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        loader = loader_for(
            "pinterest",
            {
                "access_token": "bench-token",
                "ad_account_id": "549755885175",
                "audience_name": "Bench",
                "api_base_url": f"http://127.0.0.1:{server.server_address[1]}",
            },
        )
        # What the export engine hands the loader: one dict per customer with its attributes.
        customers = ({"id": ids[i], "attributes": {"ps_email_address": [email]}} for i, email in enumerate(emails))
        started = time.perf_counter()
        result = loader.load(customers, context=LoadContext())
        seconds = time.perf_counter() - started
    finally:
        server.shutdown()
        server.server_close()
    identifiers = result.details["identifiers"]
    print(f"  pinterest loader: {identifiers:,} identifiers in {seconds:.2f} s", flush=True)
    value = identifiers / seconds
    return Figure("pinterest_ids_per_s", value, "ids/s", baseline, value / baseline, size, "baseline: plain hashlib")


FIGURES.extend([figure_csv_export_rows_per_s, figure_csv_export_peak_rss_mb, figure_pinterest_ids_per_s])
