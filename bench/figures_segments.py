"""Segment figures: a segment count through the compiler vs the best hand-written SQL, and the Audience API
(/wbs) under load from a second process (wrk), served by gunicorn with 2 sync workers, vs a trivial Django view.

Data: 1,000,000 customer entities (scaled by BENCH_SCALE) generated directly into `customer_entities`
(deterministic, written once to bench/.cache/ as COPY text, loaded with COPY with the secondary indexes dropped
and rebuilt); re-runs find the data in place and skip it. Attributes per customer, shaped like the seed's
exclusion-marketing case: consent (bool), age (int), gender (string), total_revenue (float, 0 for ~60%),
ps_email_address (1-2 emails), email_consent (bool), city (string), orders_count (int), last_seen (datetime).
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection
from pathlib import Path

from run import FIGURES, ROOT, Bench, Figure, _checkpoint, free_port, wrk_load

from segments.conditions import EXCLUSION_EXAMPLE as EXCLUSION_TREE

CACHE = ROOT / "bench" / ".cache"
SEED = 20261123
SEGMENT_NAME = "bench: consenting adults, not male, no revenue"
# (id, data type, computation); the definitions the generated values belong to.
ATTRIBUTES = [
    ("consent", "bool", "last_value"),
    ("age", "int", "last_value"),
    ("gender", "string", "last_value"),
    ("total_revenue", "float", "sum"),
    ("email_consent", "bool", "last_value"),
    ("city", "string", "last_value"),
    ("orders_count", "int", "count"),
    ("last_seen", "datetime", "last_event_time"),
]
CITIES = ["Prague", "Brno", "Ostrava", "Plzen", "Vienna", "Berlin", "Warsaw", "Bratislava", "London", "Paris"]
HAND_WRITTEN = [
    # One containment probe for both equalities, a jsonpath for the range, NOT containment for the exclusion.
    'SELECT count(*) FROM customer_entities WHERE attributes @> \'{"consent": [true], "total_revenue": [0]}\' '
    "AND attributes @? '$.age[*] ? (@ >= 18)' AND NOT attributes @> '{\"gender\": [\"male\"]}'",
    # The same with the whole filter as one jsonpath predicate over the row.
    'SELECT count(*) FROM customer_entities WHERE attributes @> \'{"consent": [true], "total_revenue": [0]}\' '
    "AND attributes @@ '$.age[*] >= 18' AND NOT attributes @> '{\"gender\": [\"male\"]}'",
]


def entity_id(n: int) -> str:
    return f"{(n * 2654435761 + SEED) % (1 << 128):032x}"


def email(n: int) -> str:
    return f"customer{n}@example.com"


def _rows_file(size: int) -> Path:
    """The COPY text of `size` entities (id, modified, attributes); generated once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"segment-entities-v2-{size}-s{SEED}.tsv"
    if path.exists():
        return path
    started = time.perf_counter()
    rng = random.Random(SEED)
    base = datetime(2026, 11, 1, tzinfo=UTC)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8", buffering=1 << 20) as out:
        for n in range(size):
            attributes: dict[str, list] = {"consent": [rng.random() < 0.7]}
            if rng.random() < 0.95:
                attributes["age"] = [rng.randint(13, 80)]
            if rng.random() < 0.9:
                attributes["gender"] = [rng.choice(["male", "female", "female", "male", "other"])]
            revenue = 0 if rng.random() < 0.6 else round(rng.uniform(1, 2000), 2)
            attributes["total_revenue"] = [revenue]
            attributes["ps_email_address"] = [email(n)] + ([f"alt{n}@example.org"] if rng.random() < 0.1 else [])
            attributes["email_consent"] = [rng.random() < 0.5]
            attributes["city"] = [rng.choice(CITIES)]
            attributes["orders_count"] = [0 if revenue == 0 else rng.randint(1, 30)]
            seen = base - timedelta(seconds=rng.randint(0, 365 * 86400))
            attributes["last_seen"] = [seen.strftime("%Y-%m-%dT%H:%M:%S.%fZ")]
            text = json.dumps(attributes, separators=(",", ":")).replace("\\", "\\\\")
            out.write(f"{entity_id(n)}\t{seen.isoformat()}\t{text}\n")
    tmp.replace(path)
    print(f"  generated {size:,} customer entities in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def entities_ensure(bench: Bench, size: int) -> None:
    """`size` generated entities in customer_entities (and nothing else there); loaded only when missing."""
    from django.db import connection

    key = f"segment-entities:{size}"
    if key in bench.memo:
        return
    attributes_ensure()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM customer_entities")
        count = cursor.fetchone()[0]
        cursor.execute("SELECT 1 FROM customer_entities WHERE id = %s", [entity_id(size - 1)])
        present = cursor.fetchone() is not None
    if count != size or not present:
        path = _rows_file(size)
        started = time.perf_counter()
        connection.ensure_connection()
        raw = connection.connection
        with raw.transaction(), raw.cursor() as cursor:
            # Events and identifiers point at entities: a benchmark database only, so clear them too.
            cursor.execute("TRUNCATE customer_entities CASCADE")
            cursor.execute("TRUNCATE customer_entities_stale")  # queued ids of the truncated customers
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'customer_entities' "
                "AND indexname <> 'customer_entities_pkey'"
            )
            indexes = cursor.fetchall()
            for name, _ in indexes:
                cursor.execute(f'DROP INDEX "{name}"')
            with cursor.copy("COPY customer_entities (id, modified, attributes) FROM STDIN") as copy:
                with path.open("rb") as f:
                    while block := f.read(1 << 20):
                        copy.write(block)
            cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
            for _, definition in indexes:
                cursor.execute(definition)
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE customer_entities")
            _checkpoint(cursor)
        print(f"  loaded {size:,} customer entities in {time.perf_counter() - started:.0f} s", flush=True)
        for memo_key in [k for k in bench.memo if k.startswith(("load:", "stitch-"))]:
            bench.memo.pop(memo_key)  # those figures' data were in the truncated tables
    else:
        with connection.cursor() as cursor:
            # What autovacuum does after writes: among others, it empties the GIN index's pending list, which
            # every lookup scans (an earlier run's writes had left ~200 pages: 1.4 ms per /wbs lookup).
            cursor.execute("VACUUM ANALYZE customer_entities")
    bench.memo[key] = True


def attributes_ensure() -> None:
    from cdp.models import Attribute

    for attribute_id, data_type, computation in ATTRIBUTES:
        Attribute.objects.get_or_create(
            id=attribute_id,
            defaults={
                "name": attribute_id,
                "data_type": data_type,
                "computation": computation,
                "path": "" if computation in ("count", "last_event_time") else f"traits.{attribute_id}",
            },
        )


def segment_ensure():
    from segments.models import Segment
    from segments.services import segment_create, segment_update

    segment = Segment.objects.filter(name=SEGMENT_NAME).first()
    if segment is None:
        return segment_create(owner=None, name=SEGMENT_NAME, conditions=EXCLUSION_TREE)
    return segment_update(segment=segment, conditions=EXCLUSION_TREE)


def _interleaved_medians(runs: list, rounds: int) -> list[tuple[float, object]]:
    """Median ms and result of each run, measured in interleaved rounds (after one warm-up round), so a burst of
    load on this shared machine hits every candidate alike instead of whichever ran at that moment."""
    results = [run() for run in runs]
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for n, run in enumerate(runs):
            started = time.perf_counter()
            results[n] = run()
            times[n].append((time.perf_counter() - started) * 1000)
    return [(statistics.median(t), result) for t, result in zip(times, results, strict=True)]


def figure_segment_count_ms(bench: Bench) -> Figure:
    """Count of a 4-condition segment with one NOT (the seed's exclusion case), compiled, vs hand-written SQL."""
    from django.db import connection

    from segments.selectors import segment_members_count

    size = bench.size(1_000_000)
    entities_ensure(bench, size)
    segment = segment_ensure()

    def hand_written(sql: str):
        def run():
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchone()[0]

        return run

    measured = _interleaved_medians(
        [hand_written(sql) for sql in HAND_WRITTEN] + [lambda: segment_members_count(segment=segment)], rounds=7
    )
    baselines, (value, count) = measured[:-1], measured[-1]
    baseline = min(ms for ms, _ in baselines)
    print("  hand-written: " + ", ".join(f"{ms:.0f} ms" for ms, _ in baselines), flush=True)
    if any(result != count for _, result in baselines):
        raise RuntimeError(f"compiled count {count} differs from the hand-written ones {[r for _, r in baselines]}")
    print(f"  compiled: {value:.0f} ms ({count:,} of {size:,} customers)", flush=True)
    note = "baseline: fastest of 2 hand-written SQL formulations on the same jsonb storage (count includes compile)"
    return Figure("segment_count_ms", value, "ms", baseline, value / baseline, size, note)


FIGURES.append(figure_segment_count_ms)


# --- Audience API under load -------------------------------------------------------------------------------------


# gunicorn's default sync workers: one request at a time per process, no thread hand-offs (gthread's poller and
# worker threads added ~1 ms of GIL waits to the median here). BENCH_WBS_WORKER_CLASS=gthread compares.
WORKER_CLASS = os.environ.get("BENCH_WBS_WORKER_CLASS", "sync")
WORKER_OPTIONS = ["--worker-class", WORKER_CLASS] + (
    ["--threads", "2", "--keep-alive", "30"] if WORKER_CLASS == "gthread" else []
)
CONNECTIONS = 4  # wrk's concurrent connections: two per worker, so a worker always has the next request waiting


def _serve(port: int) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "cdp.settings",
            "REDIS_URL": os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LOG_LEVEL": "WARNING",
            "DB_CONN_MAX_AGE": "600",
        }
    )
    command = [
        sys.executable, "-m", "gunicorn", "cdp.wsgi:application", "--workers", "2", "--bind", f"127.0.0.1:{port}",
        "--backlog", "2048", "--log-level", "warning", "--chdir", str(ROOT), *WORKER_OPTIONS,
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            conn = HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.2)
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {process.stderr.read().decode(errors='replace')[-2000:]}")
    process.kill()
    raise RuntimeError("gunicorn did not start within 30 s")


def _paths_script(paths: list[str]) -> str:
    """wrk Lua: each request takes the next of `paths` (a stride through them, so connections spread out)."""
    listing = ",\n".join(json.dumps(p) for p in paths)
    return (
        f"local paths = {{\n{listing}\n}}\nlocal n = 0\n"
        "function request()\n  n = n + 1\n  return wrk.format('GET', paths[(n * 7919) % #paths + 1])\nend\n"
    )


def _merged(runs: list[dict]) -> dict:
    """Phases summed (requests, seconds, statuses); latency percentiles as the median of the phases' own."""
    statuses: dict[str, int] = {}
    for run in runs:
        for status, count in run["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    return {
        "n": sum(run["requests"] for run in runs),
        "elapsed": sum(run["seconds"] for run in runs),
        "statuses": statuses,
        "socket_errors": sum(run["socket_errors"] for run in runs),
        "p50": statistics.median(run["p50_ms"] for run in runs),
        "p99": statistics.median(run["p99_ms"] for run in runs),
    }


def wbs_load(bench: Bench) -> dict:
    """One gunicorn (2 workers) serving the app; /healthz (the trivial view) and /wbs in alternating phases, each
    under the same load from a separate client process (4 threads, keep-alive). Shared by the three wbs figures."""
    if "wbs-load" in bench.memo:
        return bench.memo["wbs-load"]
    from cdp.services.global_settings import global_setting_set

    size = bench.size(1_000_000)
    entities_ensure(bench, size)
    segment = segment_ensure()
    # Count every request (the production path) but never limit the benchmark's single client IP.
    global_setting_set(key="public_rate_limit_per_minute", value=1_000_000, user=None)
    global_setting_set(key="audience_api_returned_attributes", value=["age", "city"], user=None)
    rng = random.Random(SEED)
    paths = []
    for _ in range(5000):
        n = rng.randrange(size) if rng.random() < 0.95 else size + rng.randrange(size)  # 5% unknown customers
        paths.append(f"/wbs?attribute=ps_email_address&value={email(n)}&segment={segment.pk}")
    seconds = max(8.0, 20.0 * min(1.0, bench.scale * 2))
    port = free_port()
    server = _serve(port)
    url = f"http://127.0.0.1:{port}"
    phases = 4  # alternate the two loads so a burst of other work on this shared machine hits both alike
    runs: dict[str, list[dict]] = {"trivial": [], "wbs": []}
    wbs_script = _paths_script(paths)
    try:
        wrk_load(url, 1, script=_paths_script(paths[:200]), connections=CONNECTIONS)  # warm both workers up
        for _ in range(phases):
            runs["trivial"].append(wrk_load(url + "/healthz", seconds / phases, connections=CONNECTIONS))
            runs["wbs"].append(wrk_load(url, seconds / phases, script=wbs_script, connections=CONNECTIONS))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    trivial, audience = _merged(runs["trivial"]), _merged(runs["wbs"])
    for name, run in (("trivial view", trivial), ("/wbs", audience)):
        rps = run["n"] / run["elapsed"]
        print(f"  {name}: {rps:,.0f} req/s, p50 {run['p50']:.2f} ms, p99 {run['p99']:.2f} ms, {run['statuses']}")
    bad = {k: v for k, v in audience["statuses"].items() if k not in ("200", "404")}
    if audience["socket_errors"] or trivial["socket_errors"]:
        bad["socket errors"] = audience["socket_errors"] + trivial["socket_errors"]
    if bad:
        raise RuntimeError(f"/wbs answered unexpected statuses under load: {bad}")
    bench.memo["wbs-load"] = {"trivial": trivial, "wbs": audience, "size": size}
    return bench.memo["wbs-load"]


def figure_wbs_p50_ms(bench: Bench) -> Figure:
    """Audience API median latency under load (gunicorn, 2 workers, client in another process)."""
    load = wbs_load(bench)
    value, baseline = load["wbs"]["p50"], load["trivial"]["p50"]
    return Figure("wbs_p50_ms", value, "ms", baseline, value / baseline, load["size"], "baseline: trivial Django view")


def figure_wbs_p99_ms(bench: Bench) -> Figure:
    """Audience API 99th percentile latency under the same load."""
    load = wbs_load(bench)
    value, baseline = load["wbs"]["p99"], load["trivial"]["p99"]
    return Figure("wbs_p99_ms", value, "ms", baseline, value / baseline, load["size"], "baseline: trivial Django view")


def figure_wbs_rps(bench: Bench) -> Figure:
    """Audience API requests per second under the same load."""
    load = wbs_load(bench)
    value = load["wbs"]["n"] / load["wbs"]["elapsed"]
    baseline = load["trivial"]["n"] / load["trivial"]["elapsed"]
    return Figure("wbs_rps", value, "req/s", baseline, value / baseline, load["size"], "baseline: trivial Django view")


FIGURES.extend([figure_wbs_p50_ms, figure_wbs_p99_ms, figure_wbs_rps])
