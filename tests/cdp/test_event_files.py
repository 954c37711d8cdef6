"""File ingestion service (cdp.services.event_files): parsing, validation through event_record_build, the COPY
path into customer_events and its idempotency. COPY and per-chunk commits run on writer threads with their own
connections, so these tests use real commits (transactional_db)."""

import gzip
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from cdp import hooks
from cdp.models import CustomerEvent
from cdp.services.data_sources import data_source_create
from cdp.services.event_files import (
    EventFileError,
    data_source_for_load,
    event_file_format_detect,
    event_file_load,
)
from cdp.services.events import event_record_build, events_ingest


@pytest.fixture
def source(transactional_db):
    source, _ = data_source_create(slug="shop-import", name="Shop import", type="import", with_write_key=False)
    return source


def jsonl(path: Path, rows: list) -> Path:
    path.write_bytes(b"".join((row if isinstance(row, bytes) else orjson.dumps(row)) + b"\n" for row in rows))
    return path


def event(n: int, **extra) -> dict:
    return {
        "type": "page_view",
        "event_time": f"2024-05-01T10:00:{n % 60:02d}Z",
        "message_id": f"m-{n}",
        "payload": {"anonymousId": f"c-{n}", "n": n},
        **extra,
    }


def load(path: Path, source, **kwargs):
    rejected: list[tuple[int, str]] = []
    report = event_file_load(
        path=path, source=source, on_rejected=lambda line, reason: rejected.append((line, reason)), **kwargs
    )
    return report, rejected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.csv", "csv"),
        ("a.CSV.gz", "csv"),
        ("a.jsonl", "jsonl"),
        ("a.ndjson.gz", "jsonl"),
        ("export.2024.json", "jsonl"),
    ],
)
def test_format_is_detected_from_the_extension(name, expected):
    assert event_file_format_detect(Path(name)) == expected


def test_unknown_extension_asks_for_format():
    with pytest.raises(EventFileError, match="--format"):
        event_file_format_detect(Path("events.txt"))
    assert event_file_format_detect(Path("events.txt"), "csv") == "csv"


def test_source_is_found_by_slug_or_name_and_unknown_names_the_known(source):
    assert data_source_for_load("shop-import") == source
    assert data_source_for_load("shop IMPORT") == source
    with pytest.raises(EventFileError, match=r"unknown data source 'nope'.*shop-import"):
        data_source_for_load("nope")


def test_jsonl_events_are_stored_with_exact_values(source, tmp_path):
    rows = [
        {
            "type": "purchase",
            "event_time": "2024-01-02T03:04:05.123456+02:00",
            "messageId": "order-1",  # the Segment spelling is accepted
            "payload": {"amount": 12.5, "note": 'back\\slash "quoted" tab\there', "name": "Žluťoučký kůň"},
        },
        {"type": 'odd type\\with "escapes"', "event_time": 1714557600, "payload": {}},
        {"type": "no_payload", "event_time": "2024-05-01 10:00:00"},
        {"type": "tab\tand\nline break", "event_time": 1714557600},  # a type is a name: refused
    ]
    report, rejected = load(jsonl(tmp_path / "e.jsonl", rows), source)

    assert [(line, reason) for line, reason in rejected] == [
        (4, "type 'tab\\tand\\nline break' contains a control character (a line break, a tab ...)")
    ]
    assert (report.read, report.inserted, report.duplicates, report.rejected) == (4, 3, 0, 1)
    first, second, third = CustomerEvent.objects.filter(source=source).order_by("id")
    assert first.type == "purchase"
    assert first.event_time == datetime(2024, 1, 2, 1, 4, 5, 123456, tzinfo=UTC)
    assert first.payload == rows[0]["payload"]
    assert first.idempotency_key == "order-1"
    assert second.type == 'odd type\\with "escapes"'
    assert second.event_time == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert third.payload == {}
    assert third.event_time == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def test_stored_events_match_event_record_build(source, tmp_path):
    """The file path and the API path validate alike: same type, time, payload and idempotency key."""
    row = {"type": " identify ", "event_time": "2024-05-01T12:00:00+01:00", "payload": {"b": 1, "a": {"z": 2}}}
    load(jsonl(tmp_path / "e.jsonl", [row]), source)

    stored = CustomerEvent.objects.get(source=source)
    record = event_record_build(source_id=source.pk, **row)
    assert stored.idempotency_key == record.idempotency_key
    assert stored.idempotency_key.startswith("h:")
    assert (stored.type, stored.event_time, stored.payload) == (
        record.type,
        record.event_time,
        orjson.loads(record.payload_json),
    )


def test_event_sent_through_the_api_path_is_a_duplicate_in_a_file(source, tmp_path):
    row = {"type": "login", "event_time": "2024-05-01T12:00:00Z", "payload": {"userId": "u1"}}
    [outcome] = events_ingest([event_record_build(source_id=source.pk, **row)])
    assert outcome.created

    report, _ = load(jsonl(tmp_path / "e.jsonl", [row, event(1)]), source)

    assert (report.inserted, report.duplicates) == (1, 1)
    assert CustomerEvent.objects.filter(source=source).count() == 2


def test_event_loaded_from_a_file_is_a_duplicate_through_the_api_path(source, tmp_path):
    load(jsonl(tmp_path / "e.jsonl", [event(1)]), source)

    [outcome] = events_ingest([event_record_build(source_id=source.pk, **event(1))])

    assert not outcome.created
    assert outcome.id == CustomerEvent.objects.get(source=source).id


def test_bad_rows_are_reported_with_line_numbers_while_good_rows_load(source, tmp_path):
    rows = [
        event(1),
        b"{not json",
        event(2, event_time="yesterday"),
        b"",  # blank lines are skipped but still counted as lines
        event(3, payload=[1, 2]),
        b"[1, 2]",
        event(4, payload={"x": "nul\u0000"}),
        event(5, type=""),
        event(6, event_type="typo"),
        event(7, event_time="2999-01-01T00:00:00Z"),
        event(8),
    ]
    report, rejected = load(jsonl(tmp_path / "e.jsonl", rows), source)

    assert (report.read, report.inserted, report.rejected) == (10, 2, 8)
    lines = dict(rejected)
    assert list(lines) == [2, 3, 5, 6, 7, 8, 9, 10]
    assert "not valid JSON" in lines[2]
    assert "not an ISO 8601" in lines[3]
    assert "payload must be a JSON object" in lines[5]
    assert "must be a JSON object" in lines[6]
    assert "NUL" in lines[7]
    assert "type is required" in lines[8]
    assert "unknown field(s) 'event_type'" in lines[9]
    assert "future" in lines[10]
    assert set(CustomerEvent.objects.values_list("idempotency_key", flat=True)) == {"m-1", "m-8"}


def test_an_overlong_line_is_rejected_without_reading_it_whole(source, tmp_path, monkeypatch):
    monkeypatch.setattr("cdp.services.event_files.MAX_LINE_BYTES", 200)
    rows = [event(1), event(2, payload={"big": "x" * 1000}), event(3)]
    report, rejected = load(jsonl(tmp_path / "e.jsonl", rows), source)

    assert report.inserted == 2
    assert rejected == [(2, "line is longer than 0 KiB")]


def test_rerunning_a_file_inserts_nothing_new(source, tmp_path):
    path = jsonl(tmp_path / "e.jsonl", [event(n) for n in range(50)])
    first, _ = load(path, source, chunk_rows=7)
    again, _ = load(path, source, chunk_rows=7)

    assert (first.inserted, first.duplicates) == (50, 0)
    assert (again.inserted, again.duplicates) == (0, 50)
    assert CustomerEvent.objects.filter(source=source).count() == 50


def test_a_partly_loaded_file_loads_the_rest(source, tmp_path):
    rows = [event(n) for n in range(30)]
    load(jsonl(tmp_path / "head.jsonl", rows[:12]), source)

    report, _ = load(jsonl(tmp_path / "all.jsonl", rows), source, chunk_rows=5)

    assert (report.inserted, report.duplicates) == (18, 12)
    assert CustomerEvent.objects.filter(source=source).count() == 30


def test_duplicate_lines_within_a_file_are_stored_once(source, tmp_path):
    # Repeats inside one chunk, in neighbouring chunks on two writers, and far apart; with and without message id.
    hashed = {"type": "t", "event_time": "2024-05-01T00:00:00Z", "payload": {"k": 1}}
    rows = [event(1), event(1), hashed, event(2), hashed, event(3), event(2), event(1), event(4), event(3)]
    report, _ = load(jsonl(tmp_path / "e.jsonl", rows * 3), source, chunk_rows=3, workers=2)

    assert (report.read, report.inserted, report.duplicates) == (30, 5, 25)
    assert CustomerEvent.objects.filter(source=source).count() == 5


def test_gzip_is_recognised_by_its_magic_bytes(source, tmp_path):
    data = b"".join(orjson.dumps(event(n)) + b"\n" for n in range(5))
    compressed = tmp_path / "events.jsonl"  # no .gz in the name
    compressed.write_bytes(gzip.compress(data))
    named = tmp_path / "more.csv.gz"
    named.write_bytes(gzip.compress(b"type,event_time,message_id\nclick,2024-05-01T00:00:00Z,c1\n"))

    assert load(compressed, source)[0].inserted == 5
    assert load(named, source)[0].inserted == 1


def test_csv_extra_columns_go_into_the_payload(source, tmp_path):
    path = tmp_path / "e.csv"
    path.write_text(
        "\ufefftype,event_time,message_id,payload,email,plan\n"
        'signup,2024-05-01T10:00:00Z,s1,"{""utm"": {""source"": ""ads""}}",a@example.com,pro\n'
        "signup,2024-05-01T11:00:00Z,s2,,b@example.com,\n"
        'signup,2024-05-01T12:00:00Z,s3,,,"multi\nline"\n',
        encoding="utf-8",
    )
    report, rejected = load(path, source)

    assert rejected == []
    assert report.inserted == 3
    events = {e.idempotency_key: e for e in CustomerEvent.objects.filter(source=source)}
    assert events["s1"].payload == {"utm": {"source": "ads"}, "email": "a@example.com", "plan": "pro"}
    assert events["s2"].payload == {"email": "b@example.com"}  # empty cells are left out
    assert events["s3"].payload == {"plan": "multi\nline"}


def test_csv_bad_rows_are_reported_with_their_starting_line(source, tmp_path):
    path = tmp_path / "e.csv"
    path.write_bytes(
        b"type,event_time,payload,email\n"
        b'ab,2024-05-01T00:00:00Z,,"x@example.com\nsecond line"\n'  # lines 2-3, good
        b'click,2024-05-01T00:00:00Z,"{""email"": ""y""}",y@example.com\n'  # 4: clash
        b"click,2024-05-01T00:00:00Z,[1],\n"  # 5: payload not an object
        b"click,2024-05-01T00:00:00Z,{bad,\n"  # 6: payload not JSON
        b"click,2024-05-01T00:00:00Z\n"  # 7: too few cells
        b"cl\xffck,2024-05-01T00:00:00Z,,\n"  # 8: not UTF-8
        b'"click"x,2024-05-01T00:00:00Z,,\n'  # 9: malformed quoting
        b"view,2024-05-01T00:00:01Z,,\n"  # 10: good
    )
    report, rejected = load(path, source)

    assert report.inserted == 2
    lines = dict(rejected)
    assert list(lines) == [4, 5, 6, 7, 8, 9]
    assert "clashes" in lines[4]
    assert "must hold a JSON object" in lines[5]
    assert "not valid JSON" in lines[6]
    assert "2 cells but the header has 4" in lines[7]
    assert "UTF-8" in lines[8]
    assert "malformed CSV" in lines[9]


def test_csv_without_required_columns_is_refused_before_loading(source, tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("kind,when\nclick,2024-05-01T00:00:00Z\n")
    with pytest.raises(EventFileError, match="lacks the required column"):
        load(path, source)
    assert not CustomerEvent.objects.exists()


def test_empty_files_load_nothing(source, tmp_path):
    for name in ("e.jsonl", "e.csv"):
        (tmp_path / name).write_bytes(b"")
        report, rejected = load(tmp_path / name, source)
        assert (report.read, report.inserted, rejected) == (0, 0, [])


def test_a_json_array_file_is_refused_with_a_hint(source, tmp_path):
    path = tmp_path / "e.json"
    path.write_bytes(orjson.dumps([event(1)]))
    with pytest.raises(EventFileError, match="JSON Lines"):
        load(path, source)


def test_new_events_are_announced_once_per_committed_chunk(source, tmp_path):
    announced: list[int] = []
    hooks.on_events_ingested(announced.append)
    try:
        load(jsonl(tmp_path / "e.jsonl", [event(n) for n in range(10)]), source, chunk_rows=4)
        load(jsonl(tmp_path / "e.jsonl", [event(n) for n in range(10)]), source, chunk_rows=4)
    finally:
        hooks._events_ingested.remove(announced.append)
    assert sorted(announced) == [2, 4, 4]  # the re-run stored nothing, so announced nothing
