"""`manage.py load_events FILE --source SLUG`: load events from a CSV or JSON Lines file (gzip too).

The work is done by `cdp.services.event_files.event_file_load`; this command parses arguments and reports.
Exit code 0 when every row loaded or was a duplicate, 1 when any row was rejected (the good rows still load)
or the file could not be read.
"""

import csv
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from cdp.services.event_files import (
    DEFAULT_CHUNK_ROWS,
    DEFAULT_WORKERS,
    FORMATS,
    EventFileError,
    data_source_for_load,
    event_file_load,
)

FORMATS_HELP = """\
file formats:
  JSON Lines  one object per line: {"type": "...", "event_time": "...", "payload": {...}, "message_id": "..."}
              payload defaults to {}; messageId is accepted for message_id; other keys reject the line.
  CSV         a header row with type and event_time, optionally message_id and payload (a JSON object in
              the cell); every other column becomes a payload key with the cell as a string (empty cells
              are left out). A column that is also a key of the payload cell rejects the row.
  event_time  ISO 8601 (naive means UTC) or Unix seconds / milliseconds.
  Without message_id the idempotency key is a hash of type, time and payload, as in the API.
  gzip is recognised by its first bytes; the format comes from the extension (.csv, .jsonl, .ndjson, .json,
  each optionally .gz) or --format.
"""


class Command(BaseCommand):
    help = (
        "Load customer events from a CSV or JSON Lines file (optionally gzipped) into a data source. "
        "Idempotent: re-running the same file stores nothing twice. Bad rows are reported with their line "
        "number and reason while the good rows load; the exit code is 1 when any row was rejected."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        from argparse import RawDescriptionHelpFormatter

        kwargs.setdefault("epilog", FORMATS_HELP)
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = RawDescriptionHelpFormatter
        return parser

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path of a .csv, .jsonl, .ndjson or .json file, optionally .gz.")
        parser.add_argument("--source", required=True, help="Slug or name of the data source the events come from.")
        parser.add_argument("--format", choices=FORMATS, help="File format, when the extension does not tell.")
        parser.add_argument("--errors-file", help="Write every rejected row to this CSV file (line,reason).")
        parser.add_argument(
            "--show-errors", type=int, default=20, help="How many rejected rows to print in full (default 20)."
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")
        parser.add_argument("--quiet", action="store_true", help="No progress bar and no summary line.")
        parser.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, help="Rows per COPY and commit.")
        parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="Database writer connections.")

    def handle(self, *args, **options):
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"no such file: {str(path)!r}")
        if options["chunk_rows"] < 1 or options["workers"] < 1:
            raise CommandError("--chunk-rows and --workers must be at least 1")
        try:
            source = data_source_for_load(options["source"])
        except EventFileError as exc:
            raise CommandError(str(exc)) from None

        quiet = options["quiet"]
        progress = not (quiet or options["no_progress"]) and sys.stderr.isatty()
        show = max(options["show_errors"], 0)
        shown = 0
        errors_file = None
        errors_writer = None
        if options["errors_file"]:
            try:
                errors_file = open(options["errors_file"], "w", newline="", encoding="utf-8")  # noqa: SIM115
            except OSError as exc:
                raise CommandError(f"cannot write the errors file: {exc}") from None
            errors_writer = csv.writer(errors_file)
            errors_writer.writerow(["line", "reason"])

        def on_rejected(line: int, reason: str) -> None:
            nonlocal shown
            if errors_writer is not None:
                errors_writer.writerow([line, reason])
            if shown < show:
                shown += 1
                message = f"line {line}: {reason}"
                if progress:
                    from tqdm import tqdm

                    tqdm.write(message, file=sys.stderr)
                else:
                    self.stderr.write(message)

        try:
            report = event_file_load(
                path=path,
                source=source,
                file_format=options["format"],
                chunk_rows=options["chunk_rows"],
                workers=options["workers"],
                on_rejected=on_rejected,
                progress=progress,
            )
        except EventFileError as exc:
            raise CommandError(str(exc)) from None
        finally:
            if errors_file is not None:
                errors_file.close()

        if report.rejected > shown:
            more = report.rejected - shown
            where = f"all are in {options['errors_file']}" if errors_writer else "use --errors-file PATH to list all"
            self.stderr.write(f"... and {more:,} more rejected row(s); {where}")
        if not quiet:
            self.stdout.write(f"{path.name} -> {source.slug}: {report.summary()}")
        if report.rejected:
            raise CommandError(
                f"{report.rejected:,} of {report.read:,} rows were rejected (the other rows were loaded)"
            )
