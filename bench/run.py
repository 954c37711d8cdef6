"""Benchmark harness: `make bench` (see bench/README.md).

Runs every figure in FIGURES against the database in DATABASE_URL (created and migrated when missing; default
postgres://postgres@127.0.0.1:5432/cdp_bench), prints a table and writes bench/results.json:

    {"<figure>": {"value", "unit", "baseline", "ratio", "size"}, ...}

Each figure has a baseline measured in the same run on the same machine, so the ratio means something on a
noisy or slower machine. BENCH_SCALE=0.1 scales every size. `bench/run.py NAME ...` runs only those figures.
To add a figure: write `def figure_<name>(bench: Bench) -> Figure` and append it to FIGURES, here or in a module
bench/figures_<area>.py (imported at start-up).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cdp_bench")
os.environ.setdefault("SECRET_KEY", "bench")
os.environ.setdefault("LOG_FORMAT", "text")
# Figures measure one stage each: ingestion must not stitch in-process (there is no broker here).
os.environ.setdefault("CDP_STITCH_AFTER_INGEST", "0")
os.environ.setdefault("CDP_DESTINATIONS_ALLOW_PRIVATE", "1")  # the loader figures' fakes listen on loopback

import generate  # noqa: E402  (bench/generate.py)

RESULTS = ROOT / "bench" / "results.json"
SCALE = float(os.environ.get("BENCH_SCALE", "1"))
SOURCE_SLUG = "bench"


def free_port() -> int:
    """A free loopback port for a server a figure starts."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# wrk's Lua hooks shared by the HTTP load figures: count statuses per thread and print a JSON summary at the end.
WRK_REPORT = r"""
local wrk_threads = {}
local setup_previous = setup
function setup(thread)
  table.insert(wrk_threads, thread)
  if setup_previous then setup_previous(thread) end
end
statuses = {}  -- a global: the main script reads each thread's copy with thread:get
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(wrk_threads) do
    local counts = thread:get("statuses")
    for status, n in pairs(counts) do merged[tostring(status)] = (merged[tostring(status)] or 0) + n end
  end
  local parts = {}
  for status, n in pairs(merged) do table.insert(parts, string.format('"%s": %d', status, n)) end
  io.write(string.format(
    'WRK_JSON {"requests": %d, "seconds": %f, "p50_ms": %f, "p99_ms": %f, "socket_errors": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    table.concat(parts, ", ")))
end
"""


def wrk_load(url: str, seconds: float, *, script: str = "", connections: int = 4) -> dict:
    """Load `url` with wrk (one thread, `connections` connections) for `seconds`; `script` is Lua defining
    `request` (and optionally `setup`). Returns {requests, seconds, p50_ms, p99_ms, socket_errors, statuses}."""
    import shutil
    import tempfile

    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk; `make bench` tries scripts/ensure_wrk.sh)")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script + "\n" + WRK_REPORT)
        path = f.name
    try:
        result = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", path, url],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    finally:
        os.unlink(path)
    for line in result.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            return json.loads(line.removeprefix("WRK_JSON "))
    raise RuntimeError(f"wrk printed no summary: {result.stdout[-2000:]} {result.stderr[-2000:]}")


# Runs a command as its child and prints the child's peak RSS last. A child forked from the bench process itself
# would report the bench's own RSS at the fork (the kernel keeps the pre-exec high-water mark in ru_maxrss), and
# after the stitching figures the bench holds ~900 MB; this small process forks the measured one instead.
_PEAK_RSS_WRAPPER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
sys.stdout.flush()
print(f"\\nPEAK_RSS_KB={usage.ru_maxrss} EXIT={os.waitstatus_to_exitcode(status)}", flush=True)
"""


def run_peak_rss(command: list[str]) -> tuple[int, str, float]:
    """(exit code, output, peak RSS in MB) of `command`, its stdout and stderr together."""
    result = subprocess.run([sys.executable, "-c", _PEAK_RSS_WRAPPER, *command], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, check=False)  # fmt: skip
    text = result.stdout.decode(errors="replace").rstrip()
    output, _, summary = text.rpartition("PEAK_RSS_KB=")
    peak_kb, _, exit_code = summary.partition(" EXIT=")
    return int(exit_code), output.strip(), int(peak_kb) / 1024


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: float
    ratio: float
    size: int
    note: str = ""


@dataclass
class LoadRun:
    """One `manage.py load_events` subprocess."""

    size: int
    seconds: float
    peak_rss_mb: float
    output: str


@dataclass
class Bench:
    """Shared helpers and measurements, so figures can reuse an expensive run."""

    scale: float = SCALE
    memo: dict[str, object] = field(default_factory=dict)

    def size(self, full: int) -> int:
        return max(1000, int(full * self.scale))

    def events_file(self, events: int) -> Path:
        key = f"file:{events}"
        if key not in self.memo:
            started = time.perf_counter()
            path = generate.events_file(events)
            took = time.perf_counter() - started
            if took > 1:
                print(f"  generated {path.name} in {took:.0f} s", flush=True)
            self.memo[key] = path
        return self.memo[key]

    def source_id(self) -> int:
        from cdp.models import DataSource
        from cdp.services.data_sources import data_source_create

        source = DataSource.objects.filter(slug=SOURCE_SLUG).first()
        if source is None:
            source, _ = data_source_create(slug=SOURCE_SLUG, name="Benchmark", type="import", with_write_key=False)
        return source.pk

    def events_truncate(self) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE customer_events, customer_event_entities CASCADE")
            _checkpoint(cursor)

    def load_events(self, events: int) -> LoadRun:
        """Time `manage.py load_events` on `events` generated events into an empty customer_events table."""
        key = f"load:{events}"
        if key in self.memo:
            return self.memo[key]
        path = self.events_file(events)
        self.source_id()
        self.events_truncate()
        command = [sys.executable, str(ROOT / "manage.py"), "load_events", str(path)]
        command += ["--source", SOURCE_SLUG, "--no-progress"]
        started = time.perf_counter()
        returncode, output, peak_rss_mb = run_peak_rss(command)
        seconds = time.perf_counter() - started
        if returncode != 0:
            raise RuntimeError(f"load_events failed ({returncode}):\n{output}")
        run = LoadRun(events, seconds, peak_rss_mb, output)
        print(f"  load_events {events:,}: {seconds:.1f} s, peak RSS {run.peak_rss_mb:.0f} MB | {output}", flush=True)
        self.memo[key] = run
        return run

    def raw_copy_seconds(self, events: int) -> float:
        """Seconds to COPY the same rows, pre-rendered as text, into a table with no index or constraint."""
        from django.db import connection

        rendered = _copy_rows_file(self.events_file(events), self.source_id())
        connection.ensure_connection()
        raw = connection.connection
        with raw.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS bench_raw_copy")
            cursor.execute(
                "CREATE TABLE bench_raw_copy (source_id bigint, type varchar(128), event_time timestamptz, "
                "payload jsonb, idempotency_key varchar(128))"
            )
            _checkpoint(cursor)
        try:
            started = time.perf_counter()
            with raw.transaction(), raw.cursor() as cursor, rendered.open("rb") as f:
                with cursor.copy(
                    "COPY bench_raw_copy (source_id, type, event_time, payload, idempotency_key) FROM STDIN"
                ) as copy:
                    while block := f.read(1 << 20):
                        copy.write(block)
            seconds = time.perf_counter() - started
        finally:
            with raw.cursor() as cursor:
                cursor.execute("DROP TABLE IF EXISTS bench_raw_copy")
        print(f"  raw COPY {events:,}: {seconds:.1f} s", flush=True)
        return seconds


def _checkpoint(cursor) -> None:
    """Start timed runs from a clean WAL state when allowed (superuser); harmless to skip. The kernel's write-back
    of what came before (a load writes gigabytes) is flushed too, so it does not compete with the timed run."""
    try:
        cursor.execute("CHECKPOINT")
    except Exception:  # noqa: BLE001
        cursor.connection.rollback()
    os.sync()


def _copy_rows_file(jsonl: Path, source_id: int) -> Path:
    """The rows load_events stores (through the same event_record_build), rendered for COPY; cached."""
    import orjson

    from cdp.services.events import event_record_build

    out = jsonl.with_suffix(f".copy-s{source_id}.tsv")
    if out.exists():
        return out
    tmp = out.with_suffix(".tmp")
    with jsonl.open("rb") as f, tmp.open("w", encoding="utf-8", buffering=1 << 20) as w:
        for line in f:
            row = orjson.loads(line)
            record = event_record_build(
                source_id=source_id,
                type=row["type"],
                event_time=row["event_time"],
                payload=row.get("payload", {}),
                message_id=row.get("message_id"),
            )
            payload = record.payload_json.replace("\\", "\\\\")
            w.write(
                f"{source_id}\t{record.type}\t{record.event_time.isoformat()}\t{payload}\t{record.idempotency_key}\n"
            )
    tmp.replace(out)
    return out


# --- figures -------------------------------------------------------------------------------------------------


def figure_ingest_events_per_s(bench: Bench) -> Figure:
    """load_events on 1M events, end to end (process start to exit), vs raw COPY of the same rows."""
    size = bench.size(1_000_000)
    baseline = size / bench.raw_copy_seconds(size)
    value = size / bench.load_events(size).seconds
    return Figure("ingest_events_per_s", value, "events/s", baseline, value / baseline, size, "baseline: raw COPY")


def figure_ingest_peak_rss_mb(bench: Bench) -> Figure:
    """Peak RSS of load_events on 1M events vs on a tenth of them: a ratio near 1 means memory is flat."""
    size = bench.size(1_000_000)
    value = bench.load_events(size).peak_rss_mb
    baseline = bench.load_events(max(1000, size // 10)).peak_rss_mb
    return Figure("ingest_peak_rss_mb", value, "MB", baseline, value / baseline, size, "baseline: size / 10")


FIGURES: list[Callable[[Bench], Figure]] = [figure_ingest_events_per_s, figure_ingest_peak_rss_mb]


# --- stitching figures -------------------------------------------------------------------------------------------


def stitch_people(size: int) -> int:
    """~300k people for 1M events (the issue's shape), scaled with the size."""
    return max(10, size * 3 // 10)


def stitch_events_load(bench: Bench, size: int) -> int:
    """Load `size` generated events over stitch_people(size) people into an empty, unstitched events table, with
    Segment's default stitching rules on the bench source; returns the source id. Not timed."""
    from django.db import connection

    from cdp.models import DataSource
    from stitching.services.defaults import segment_default_rules_ensure

    source_id = bench.source_id()
    segment_default_rules_ensure(source=DataSource.objects.get(pk=source_id))
    key = f"stitch-load:{size}"
    if key in bench.memo:
        return source_id
    path = generate.events_file(size, people=stitch_people(size))
    bench.events_truncate()
    with connection.cursor() as cursor:
        # A first stitch: no identifiers (nor graph, history, reviews) left by an earlier run of the bench.
        # (TRUNCATE, not DELETE: a first stitch meets empty tables, not 350k dead rows to step over.)
        cursor.execute(
            "TRUNCATE stitching_identifiers, stitching_event_identifiers, customer_entities, customer_entities_stale "
            "CASCADE"
        )
    command = [sys.executable, str(ROOT / "manage.py"), "load_events", str(path), "--source", SOURCE_SLUG]
    subprocess.run(command + ["--no-progress"], check=True, stdout=subprocess.DEVNULL)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE customer_events")
        cursor.execute("VACUUM ANALYZE customer_event_entities")
        _checkpoint(cursor)
    bench.memo.pop(f"load:{size}", None)  # the events table no longer holds load_events' default data set
    bench.memo[key] = path
    return source_id


def stitch_full(bench: Bench, size: int) -> float:
    """Seconds of `restitch()` of everything (the bulk path) on freshly loaded, unstitched events."""
    from stitching.services import engine

    key = f"stitch-full:{size}"
    if key not in bench.memo:
        stitch_events_load(bench, size)
        # The bulk path's module (numpy, scipy) is loaded before the clock starts, as in a process that has stitched
        # before: 0.2-0.3 s once per process, whatever the number of events.
        import stitching.services.bulk  # noqa: F401

        started = time.perf_counter()
        report = engine.restitch()
        seconds = time.perf_counter() - started
        print(f"  restitch {size:,}: {seconds:.1f} s, {report.entities_created:,} customers", flush=True)
        steps = ", ".join(f"{k} {v:.2f}" for k, v in sorted(report.timings.items(), key=lambda kv: -kv[1]))
        print(f"  restitch steps (s): {steps}", flush=True)
        bench.memo[key] = seconds
    return bench.memo[key]


def stitch_incremental_1k(bench: Bench, size: int, events: int = 1000, timings: dict | None = None) -> float:
    """Seconds to stitch `events` new events incrementally (stitch_pending batches) into the fully stitched
    data set: returning customers (rows of the same file, new message ids) so they link to existing ones. The
    attributes figure can add the recompute of the entities it queues (customer_entities_stale) to this."""
    import orjson

    from cdp.services import attributes as attribute_services
    from cdp.services.events import event_record_build, events_ingest
    from stitching.services import engine

    stitch_full(bench, size)
    # Steady state first: no customer waits for its attributes (run alone, the full stitch just queued them all),
    # so the figure times these 1,000 events' customers only. Not timed.
    attribute_services.attributes_recompute()
    from django.db import connection

    with connection.cursor() as cursor:  # what autovacuum does within a minute after such a bulk change
        cursor.execute("VACUUM ANALYZE customer_entities_stale")
        cursor.execute("VACUUM ANALYZE customer_entities")
    source_id = bench.source_id()
    path = bench.memo[f"stitch-load:{size}"]
    records = []
    run = len([k for k in bench.memo if k.startswith("stitch-incremental")])
    with path.open("rb") as f:
        for n, line in enumerate(f):
            if n % max(1, size // events) == 0 and len(records) < events:
                row = orjson.loads(line)
                records.append(
                    event_record_build(
                        source_id=source_id,
                        type=row["type"],
                        event_time=row["event_time"],
                        payload=row["payload"],
                        message_id=f"incremental-{run}-{n}",
                    )
                )
    started = time.perf_counter()
    events_ingest(records)
    if timings is not None:
        timings["ingest"] = time.perf_counter() - started
    started = time.perf_counter()
    while engine.stitch_pending(limit=events).remaining:
        pass
    seconds = time.perf_counter() - started
    bench.memo[f"stitch-incremental:{run}"] = seconds
    print(f"  {len(records):,} new events stitched incrementally in {seconds:.3f} s", flush=True)
    return seconds


def figure_stitch_events_per_s(bench: Bench) -> Figure:
    """Full stitch (restitch of everything) of 1M events over ~300k people vs an in-memory Python union-find."""
    from django.db import connection

    size = bench.size(1_000_000)
    value = size / stitch_full(bench, size)
    # Baseline: union-find in Python over the same linked (event, identifier) pairs, already in memory.
    with connection.cursor() as cursor:
        cursor.execute("SELECT event_id, identifier_id FROM stitching_event_identifiers WHERE status = 'linked'")
        pairs = cursor.fetchall()
    started = time.perf_counter()
    parent: dict[int, int] = {}
    owner: dict[int, int] = {}
    for e, i in pairs:
        parent.setdefault(e, e)
        o = owner.setdefault(i, e)
        if o == e:
            continue
        a, b = e, o
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        while parent[b] != b:
            parent[b] = parent[parent[b]]
            b = parent[b]
        if a != b:
            parent[max(a, b)] = min(a, b)
    baseline = size / (time.perf_counter() - started)
    note = "baseline: in-memory Python union-find over the same (event, identifier) pairs"
    return Figure("stitch_events_per_s", value, "events/s", baseline, value / baseline, size, note)


FIGURES.append(figure_stitch_events_per_s)


# --- attribute figures -----------------------------------------------------------------------------------------

# Attribute definitions over the generated events (the migration's defaults are shaped like the demo data, so
# most of them find nothing here): the benchmark computes both sets, as a deployment with real traffic would.
BENCH_ATTRIBUTES = [
    ("bench_purchases", "count", "int", ["purchase"], ""),
    ("bench_purchase_amount", "sum", "float", ["purchase"], "properties.amount"),
    ("bench_average_purchase", "average", "float", ["purchase"], "properties.amount"),
    ("bench_last_purchase", "last_event_time", "datetime", ["purchase"], ""),
    ("bench_last_page", "last_value", "string", ["page_view"], "properties.path"),
    ("bench_viewed_categories", "unique_values", "string", ["product_view"], "properties.category"),
    ("bench_first_name", "last_value", "string", ["identify"], "traits.firstName"),
    ("bench_quantity_max", "max", "int", ["add_to_cart", "purchase"], "properties.quantity"),
]


def bench_attributes_ensure() -> list:
    """The definitions the attributes figures compute: the migration's defaults, the email channel's two and
    BENCH_ATTRIBUTES. Definitions other figures left (the segment and email figures add theirs, and re-add them
    when they run) are deleted first, so every run computes the same set."""
    import importlib

    from cdp.models import Attribute

    defaults = importlib.import_module("cdp.migrations.0003_default_attributes").DEFAULT_ATTRIBUTES
    keep = {row[0] for row in defaults} | {row[0] for row in BENCH_ATTRIBUTES} | {"email_consent", "email_blocked"}
    Attribute.objects.exclude(id__in=keep).delete()
    for attribute_id, computation, data_type, event_types, path in BENCH_ATTRIBUTES:
        Attribute.objects.get_or_create(
            id=attribute_id,
            defaults={"name": attribute_id, "computation": computation, "data_type": data_type,
                      "event_types": event_types, "path": path},
        )  # fmt: skip
    return list(Attribute.objects.prefetch_related("sources"))


def _entities_mark_all_stale() -> None:
    """Queue every customer, its attributes cleared (as a full stitch leaves them): every value is written anew."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("UPDATE customer_entities SET attributes = '{}' WHERE attributes <> '{}'")
        cursor.execute("INSERT INTO customer_entities_stale SELECT id FROM customer_entities ON CONFLICT DO NOTHING")
        cursor.execute("VACUUM ANALYZE customer_entities")
        cursor.execute("VACUUM ANALYZE customer_entities_stale")
        _checkpoint(cursor)


def _recompute_in_workers(workers: int) -> int:
    """Run attributes_recompute() in `workers` threads (each its own connection) sharing the stale queue, as
    that many Celery workers would; returns how many customers they recomputed together."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from cdp.services import attributes as attribute_services

    def work() -> int:
        try:
            return attribute_services.attributes_recompute()
        finally:
            connection.close()

    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(lambda _: work(), range(workers)))


def figure_attributes_entities_per_s(bench: Bench) -> Figure:
    """Attributes of every stitched customer (1M events, ~300k people) vs the same as one UPDATE statement."""
    from django.db import connection, transaction

    from cdp.services import attributes as attribute_services

    size = bench.size(1_000_000)
    # Run alone, the data set is loaded and stitched first (not timed here), as the incremental figure does: the
    # tables may hold what later figures left (the segment figures' million generated customers).
    stitch_full(bench, size)
    definitions = bench_attributes_ensure()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM customer_entities")
        entities = cursor.fetchone()[0]
    # Baseline: the same compiled computation as ONE statement updating every customer at once (a hash
    # aggregate over the whole events table): no claiming, no batches, no concurrency. Run first, so the
    # measured run meets the more bloated table.
    _entities_mark_all_stale()
    program = attribute_services.compile_attributes(definitions, all_entities=True)
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '64MB'")  # what the batches get
        cursor.execute(program.update_sql, {})
    baseline_seconds = time.perf_counter() - started
    _entities_mark_all_stale()
    workers = min(4, os.cpu_count() or 1)
    started = time.perf_counter()
    done = _recompute_in_workers(workers)
    seconds = time.perf_counter() - started
    print(
        f"  {done:,} customers x {len(definitions)} attributes: {seconds:.1f} s in {workers} workers "
        f"(batches of {attribute_services.BATCH_SIZE:,}); one statement: {baseline_seconds:.1f} s",
        flush=True,
    )
    value, baseline = done / seconds, entities / baseline_seconds
    note = f"{workers} workers sharing the queue; baseline: the same computation as one UPDATE of all customers"
    return Figure("attributes_entities_per_s", value, "entities/s", baseline, value / baseline, entities, note)


FIGURES.append(figure_attributes_entities_per_s)


def figure_incremental_1k_s(bench: Bench) -> Figure:
    """1,000 new events of returning customers stitched into the stitched data set and their customers'
    attributes recomputed, in process (what the two Celery tasks run), vs storing the same events."""
    from cdp.services import attributes as attribute_services

    size = bench.size(1_000_000)
    timings: dict[str, float] = {}
    stitch_seconds = stitch_incremental_1k(bench, size, timings=timings)
    started = time.perf_counter()
    recomputed = attribute_services.attributes_recompute()
    attributes_seconds = time.perf_counter() - started
    value = stitch_seconds + attributes_seconds
    # Without a broker the recompute task stitching enqueues runs in process, inside stitch_pending's time: then
    # nothing is left to recompute here.
    print(f"  then {recomputed:,} touched customers left to recompute, in {attributes_seconds:.3f} s", flush=True)
    note = "stitch + attributes of 1,000 new events; baseline: storing those events (events_ingest)"
    return Figure("incremental_1k_s", value, "s", timings["ingest"], value / timings["ingest"], 1000, note)


FIGURES.append(figure_incremental_1k_s)


# --- figures of other areas ------------------------------------------------------------------------------
# Each area keeps its figures in bench/figures_<area>.py and registers them with `FIGURES.append(...)` after
# `from run import Bench, Figure, FIGURES` (this module is imported as `run` there, so `sys.modules` fixes that).

sys.modules.setdefault("run", sys.modules[__name__])
for _module in sorted((ROOT / "bench").glob("figures_*.py")):
    __import__(_module.stem)


# --- running -------------------------------------------------------------------------------------------------


def database_prepare() -> None:
    """Create the benchmark database when missing, then migrate it."""
    import dj_database_url
    import psycopg

    config = dj_database_url.parse(os.environ["DATABASE_URL"])
    name = config["NAME"]
    params = {
        "host": config["HOST"] or "127.0.0.1",
        "port": config["PORT"] or 5432,
        "user": config["USER"] or None,
        "password": config["PASSWORD"] or None,
    }
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def table(figures: list[Figure]) -> str:
    header = ("figure", "value", "unit", "baseline", "ratio", "size")
    rows = [(f.name, f"{f.value:,.1f}", f.unit, f"{f.baseline:,.1f}", f"{f.ratio:.3f}", f"{f.size:,}") for f in figures]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    wanted = set(argv)
    known = {f.__name__.removeprefix("figure_") for f in FIGURES}
    if wanted - known:
        print(f"unknown figure(s): {', '.join(sorted(wanted - known))}; known: {', '.join(sorted(known))}")
        return 2
    database_prepare()
    bench = Bench()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW shared_buffers")
        shared_buffers = cursor.fetchone()[0]
        cursor.execute("SHOW max_wal_size")
        max_wal_size = cursor.fetchone()[0]
    database = os.environ["DATABASE_URL"].rsplit("/", 1)[-1]
    print(
        f"BENCH_SCALE={bench.scale} database={database} shared_buffers={shared_buffers} max_wal_size={max_wal_size}",
        flush=True,
    )
    figures = []
    for function in FIGURES:
        if wanted and function.__name__.removeprefix("figure_") not in wanted:
            continue
        print(f"{function.__name__.removeprefix('figure_')}: {function.__doc__.splitlines()[0]}", flush=True)
        figures.append(function(bench))
    print()
    print(table(figures))
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() and wanted else {}
    for figure in figures:
        data = asdict(figure)
        data.pop("name")
        results[figure.name] = data
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
