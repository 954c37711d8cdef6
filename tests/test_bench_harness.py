"""`make bench` is not run by CI; this keeps its harness importable: every figure module loads (before Django is
set up, as bench/run.py loads them) and the figures the issues name are registered."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMED = {
    "ingest_events_per_s",
    "stitch_events_per_s",
    "attributes_entities_per_s",
    "incremental_1k_s",
    "segment_count_ms",
    "wbs_p50_ms",
    "wbs_p99_ms",
    "wbs_rps",
    "ingest_peak_rss_mb",
    "csv_export_peak_rss_mb",
    "feedback_rps",
    "campaign_prepare_s",
    "csv_export_rows_per_s",
    "pinterest_ids_per_s",
}


def test_bench_harness_loads_every_figure():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "bench/run.py", "no_such_figure"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2, result.stderr
    known = set(result.stdout.split("known: ", 1)[1].strip().split(", "))
    assert NAMED <= known, f"figures not registered: {sorted(NAMED - known)}"
