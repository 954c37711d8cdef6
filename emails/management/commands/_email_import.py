"""Shared body of import_email_contacts and import_email_blocklist: read the CSV, import with a tqdm bar,
report bad rows with their line numbers. Exit status 1 when any row was bad (the good ones are loaded)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from emails.services.imports import ImportFileInvalid, import_run, rows_count


class EmailImportCommand(BaseCommand):
    kind: str = ""
    columns: str = ""

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help=f"CSV file with a header: {self.columns}")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar (e.g. in cron logs).")

    def handle(self, *args, file: str, no_progress: bool = False, **options) -> None:
        path = Path(file)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise CommandError(f"{file}: no such file") from None
        except UnicodeDecodeError as exc:
            raise CommandError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        bar = tqdm(total=rows_count(text), unit="rows", disable=no_progress, file=self.stderr._out)
        seen = 0

        def progress(done: int) -> None:
            nonlocal seen
            bar.update(done - seen)
            seen = done

        try:
            report = import_run(kind=self.kind, text=text, progress=progress, progress_every=100)
        except ImportFileInvalid as exc:
            raise CommandError(f"{file}: {exc}") from None
        finally:
            bar.close()
        for row in report.errors:
            self.stderr.write(f"{file}:{row['line']}: {row['error']}")
        if report.error_count > len(report.errors):
            self.stderr.write(f"... and {report.error_count - len(report.errors)} more bad rows")
        self.stdout.write(
            f"{report.total} rows: {report.loaded} loaded, {report.duplicates} already loaded, {report.error_count} bad"
        )
        if report.error_count:
            raise SystemExit(1)
