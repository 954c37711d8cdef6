"""`manage.py load_events`: arguments, the report on stdout / stderr, the errors file and the exit code."""

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from cdp.models import CustomerEvent
from cdp.services.data_sources import data_source_create
from stitching.services.engine import system_source_get

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def source(transactional_db):
    source, _ = data_source_create(slug="crm-export", name="CRM export", type="crm", with_write_key=False)
    return source


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    error = None
    try:
        call_command("load_events", *args, stdout=out, stderr=err)
    except CommandError as exc:
        error = exc
    return out.getvalue(), err.getvalue(), error


def write_jsonl(path: Path, rows) -> Path:
    path.write_bytes(b"".join((r if isinstance(r, bytes) else orjson.dumps(r)) + b"\n" for r in rows))
    return path


def good(n: int) -> dict:
    return {"type": "page_view", "event_time": "2024-05-01T10:00:00Z", "message_id": f"m{n}", "payload": {"n": n}}


def test_loads_jsonl_and_prints_a_summary(source, tmp_path):
    path = write_jsonl(tmp_path / "events.jsonl", [good(n) for n in range(3)])

    out, err, error = run(str(path), "--source", "crm-export")

    assert error is None, err
    assert "read 3 / inserted 3 / duplicates 0 / rejected 0" in out
    assert "events/s" in out
    assert CustomerEvent.objects.filter(source=source).count() == 3


def test_loads_csv_by_source_name(source, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("type,event_time,email\nsignup,2024-05-01T10:00:00Z,a@example.com\n")

    out, err, error = run(str(path), "--source", "CRM export", "--quiet")

    assert error is None, err
    assert out == ""
    assert CustomerEvent.objects.get(source=source).payload == {"email": "a@example.com"}


def test_rerun_inserts_nothing_new(source, tmp_path):
    path = write_jsonl(tmp_path / "events.jsonl", [good(n) for n in range(4)])
    run(str(path), "--source", "crm-export")

    out, _, error = run(str(path), "--source", "crm-export")

    assert error is None
    assert "inserted 0 / duplicates 4" in out
    assert CustomerEvent.objects.count() == 4


def test_rejected_rows_are_reported_and_the_command_fails_after_loading_the_good_rows(source, tmp_path):
    rows = [good(1), b"{oops", {**good(2), "event_time": "soon"}, good(3)] + [b"[]"] * 5
    path = write_jsonl(tmp_path / "events.jsonl", rows)
    errors = tmp_path / "errors.csv"

    out, err, error = run(str(path), "--source", "crm-export", "--show-errors", "3", "--errors-file", str(errors))

    assert isinstance(error, CommandError)
    assert "7 of 9 rows were rejected" in str(error)
    assert "inserted 2" in out and "rejected 7" in out
    assert "line 2: not valid JSON" in err
    assert "line 3: event_time 'soon' is not an ISO 8601 date-time" in err
    assert "line 5:" in err and "line 6:" not in err
    assert f"... and 4 more rejected row(s); all are in {errors}" in err
    with errors.open() as f:
        table = list(csv.reader(f))
    assert table[0] == ["line", "reason"]
    assert [row[0] for row in table[1:]] == ["2", "3", "5", "6", "7", "8", "9"]
    assert CustomerEvent.objects.count() == 2


def test_unknown_source_is_named(source, tmp_path):
    path = write_jsonl(tmp_path / "events.jsonl", [good(1)])

    _, _, error = run(str(path), "--source", "web-shop")

    assert "unknown data source 'web-shop'" in str(error)
    assert "crm-export" in str(error)


def test_the_system_source_takes_no_file(source, tmp_path):
    system_source_get()
    path = write_jsonl(tmp_path / "events.jsonl", [good(1)])

    _, _, error = run(str(path), "--source", "cdp")

    assert "takes no events from clients" in str(error)
    assert not CustomerEvent.objects.exists()


def test_missing_file_and_unreadable_format_are_errors(source, tmp_path):
    assert "no such file" in str(run(str(tmp_path / "nope.jsonl"), "--source", "crm-export")[2])
    odd = tmp_path / "events.txt"
    odd.write_text("{}\n")
    assert "--format" in str(run(str(odd), "--source", "crm-export")[2])
    write_jsonl(odd, [good(1)])
    assert run(str(odd), "--source", "crm-export", "--format", "jsonl")[2] is None


def test_empty_file_loads_nothing_and_succeeds(source, tmp_path):
    path = tmp_path / "events.csv"
    path.write_bytes(b"")

    out, _, error = run(str(path), "--source", "crm-export")

    assert error is None
    assert "read 0 / inserted 0" in out


def _database_url() -> str:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def test_exit_code_is_non_zero_when_rows_are_rejected(source, tmp_path):
    """The real process, as a shell script or CI job sees it."""
    path = write_jsonl(tmp_path / "events.jsonl", [good(1), b"nonsense"])
    env = {**os.environ, "DATABASE_URL": _database_url(), "SECRET_KEY": "test", "DEBUG": "0"}
    command = [sys.executable, str(ROOT / "manage.py"), "load_events", str(path), "--source", "crm-export"]

    failed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    write_jsonl(path, [good(1), good(2)])
    passed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)

    assert failed.returncode == 1, failed.stderr
    assert "line 2: not valid JSON" in failed.stderr
    assert passed.returncode == 0, passed.stderr
    assert "inserted 1 / duplicates 1" in passed.stdout
