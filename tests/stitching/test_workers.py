"""Concurrency: two real Celery worker processes stitching at once on Redis give the same partition as one
full re-stitch, with identifiers that overlap across batches (so their components collide)."""

from __future__ import annotations

import random
import time

import pytest

from cdp.models import CustomerEvent
from cdp.services.data_sources import data_source_create
from stitching import tasks
from stitching.services import engine
from stitching.services.defaults import segment_default_rules_ensure
from tests.stitching.helpers import ingest, partition


@pytest.mark.worker
def test_two_workers_stitching_concurrently_equal_one_full_restitch(celery_worker_process):
    celery_worker_process.start(concurrency=2)  # the second worker, two processes: three stitchers in all
    source, _ = data_source_create(slug="race", name="Race", type="web", with_write_key=False)
    segment_default_rules_ensure(source=source)
    rng = random.Random(7)
    rows = []
    for n in range(1200):
        row = {"id": f"r{n}", "t": rng.randrange(600), "anonymousId": f"c{rng.randrange(150)}"}
        if rng.random() < 0.4:
            row["userId"] = f"u{rng.randrange(60)}"
        if rng.random() < 0.3:
            row["traits"] = {"email": f"p{rng.randrange(80)}@example.com"}
        rows.append(row)
    results = []
    # Batches are committed one by one (ingestion enqueues a stitch after each commit); more tasks race them.
    for start in range(0, len(rows), 100):
        ingest(source, rows[start : start + 100])
        results += [tasks.stitch_pending.delay(37) for _ in range(3)]
    for result in results:
        celery_worker_process.result_wait(result, timeout=120)
    deadline = time.monotonic() + 120
    while CustomerEvent.objects.filter(entity_link__customer_entity__isnull=True).exists():
        assert time.monotonic() < deadline, celery_worker_process.logs()
        time.sleep(0.2)
    concurrent = partition(by="key")
    engine.restitch()
    assert partition(by="key") == concurrent
