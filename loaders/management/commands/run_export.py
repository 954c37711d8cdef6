"""`manage.py run_export SEGMENT DESTINATION`: export a segment to a destination now, with a progress bar.

SEGMENT and DESTINATION are ids or exact names. The export is recorded like any other (history, log, counts,
notifications) and runs in this process, its retries too: a transient failure (the destination down, rate limits
that outlast the retries) is retried here from the last acknowledged batch a minute later, up to the export's 5
attempts, saying so. Exit code 0 when it finished, 1 when it failed. Interrupted while waiting to retry, the export
stays `waiting` and a worker's watchdog takes it over.
"""

from __future__ import annotations

import sys
import threading

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from tqdm import tqdm

from cdp.models import User
from segments.exports import services
from segments.exports.models import ExportDestination, SegmentExport
from segments.models import Segment


def _find(model, ref: str, what: str):
    found = model.objects.filter(pk=int(ref)).first() if ref.isdigit() else None
    found = found or model.objects.filter(name=ref).first()
    if found is None:
        names = ", ".join(repr(n) for n in model.objects.values_list("name", flat=True)[:20])
        raise CommandError(f"Unknown {what} {ref!r}. Known: {names or 'none'}.")
    return found


class Command(BaseCommand):
    help = "Export a segment to an export destination now (the same engine as the admin and the API)."

    def add_arguments(self, parser):
        parser.add_argument("segment", help="Segment id or name.")
        parser.add_argument("destination", help="Export destination id or name.")
        parser.add_argument("--user", help="Record the export as started by this user name (gets the notification).")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args, segment: str, destination: str, user: str | None, no_progress: bool, **options):
        segment_obj = _find(Segment, segment, "segment")
        destination_obj = _find(ExportDestination, destination, "export destination")
        user_obj = None
        if user:
            user_obj = User.objects.filter(username=user).first()
            if user_obj is None:
                raise CommandError(f"Unknown user {user!r}.")
        try:
            export = services.export_create(
                segment=segment_obj, destination=destination_obj, user=user_obj, enqueue=False
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None

        errors: list[BaseException] = []
        stop = threading.Event()
        notes: list[str] = []

        def run() -> None:
            # Was one attempt: a transient failure queued the retry for a Celery worker and the command ended with
            # "Export #n: waiting; ..." and exit code 1, as if it had failed, while it went on elsewhere (or, with
            # no worker, never).
            try:
                while True:
                    services.export_run(export_id=export.pk, retry_later=False)
                    current = SegmentExport.objects.get(pk=export.pk)
                    if current.status != SegmentExport.Status.WAITING or stop.is_set():
                        return
                    problem = services.export_log_last_message(current.log)
                    notes.append(f"Attempt {current.attempts} of {services.MAX_ATTEMPTS}: {problem}")
                    if stop.wait(services.TRANSIENT_RETRY_DELAY_S):
                        return
            except BaseException as exc:  # noqa: BLE001 — reported by the main thread
                errors.append(exc)
            finally:
                connection.close()

        worker = threading.Thread(target=run, name=f"export-{export.pk}")
        worker.start()
        bar = tqdm(
            total=None, unit="customer", disable=no_progress, desc=f"{segment_obj.name} → {destination_obj.name}"
        )
        try:
            while worker.is_alive():
                worker.join(timeout=0.5)
                while notes:
                    bar.write(notes.pop(0), file=sys.stderr)
                current = SegmentExport.objects.get(pk=export.pk)
                if current.total is not None and bar.total != current.total:
                    bar.total = current.total
                # The progress, not the counts: a Meta export counts events, more than its customers.
                if current.total:
                    bar.n = round(current.progress * current.total)
                else:
                    bar.n = current.sent + current.skipped + current.failed
                bar.refresh()
        except KeyboardInterrupt:
            stop.set()
            raise
        finally:
            bar.close()
        if errors:
            raise errors[0]
        export = SegmentExport.objects.get(pk=export.pk)
        summary = (
            f"Export #{export.pk}: {export.status}; "
            f"{export.sent} sent, {export.skipped} skipped, {export.failed} failed."
        )
        if export.status != SegmentExport.Status.FINISHED:
            raise CommandError(f"{summary} {export.error_message}")
        if export.file_name:
            summary += f" File: {export.file_name}"
        self.stdout.write(summary)
