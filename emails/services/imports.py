"""CSV imports of contact lists and block lists (management commands and the admin upload share this).

Contact list: `email, consent, subscription_source?, timestamp?` → *Email Subscription Imported*
(`subscription_imported`), `event_time` from `timestamp` (ISO 8601, naive = UTC, or Unix seconds / ms) when
present. Block list: `email, reason?` → *Email Address Block Imported* (`email_address_block_imported`).

Each row is checked against the seed's JSON schema (email an address, consent a boolean, the rest strings);
a bad row is reported with its line number and the good rows still load. Re-running a file is idempotent: each
row's event key is a hash of its values, so a row loaded before records nothing and changes nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from cdp.celery import enqueue_with_safety_net
from cdp.services.events import EventRejected, event_time_parse
from cdp.text import storable
from emails.models import Job
from emails.services.state import EmailInvalid, email_block_change, email_consent_change, email_normalize

CONTACT_COLUMNS = ("email", "consent", "subscription_source", "timestamp")
BLOCK_COLUMNS = ("email", "reason")
TRUE = {"true", "1", "yes", "y", "t"}
FALSE = {"false", "0", "no", "n", "f"}
MAX_ERRORS_KEPT = 1000
MAX_TEXT = 1000


class ImportFileInvalid(ValueError):
    """The file as a whole cannot be imported (no header, missing required column)."""


@dataclass
class ImportReport:
    total: int = 0
    loaded: int = 0
    duplicates: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0

    def error(self, line: int, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append({"line": line, "error": message})

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "loaded": self.loaded, "duplicates": self.duplicates,
                "errors": self.error_count, "bad_rows": self.errors}  # fmt: skip


def csv_rows(text: str, *, required: tuple[str, ...], known: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV text with a header. Raises ImportFileInvalid for a bad header.

    The delimiter is a comma, or a semicolon when the header line has semicolons and no comma (what a spreadsheet
    saves as CSV where the comma is the decimal separator), or a tab likewise."""
    text = text.lstrip("\ufeff")
    first_line = text.split("\n", 1)[0]
    delimiter = ","
    if "," not in first_line:
        delimiter = ";" if ";" in first_line else "\t" if "\t" in first_line else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise ImportFileInvalid("the file is empty; expected a header line") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise ImportFileInvalid(f"missing column(s): {', '.join(missing)}; the header has: {', '.join(header)}")
    unknown = [c for c in header if c not in known]
    if unknown:
        raise ImportFileInvalid(f"unknown column(s): {', '.join(unknown)}; allowed: {', '.join(known)}")
    for values in reader:
        line = reader.line_num
        if not values or all(not v.strip() for v in values):
            continue
        if len(values) < len(header) and not set(header[len(values) :]) & set(required):
            # Trailing optional cells left out ("x@example.com" under "email,reason"): spreadsheets and hand-typed
            # files drop the empty ones at the end of a line; they are empty.
            values = values + [""] * (len(header) - len(values))
        if len(values) != len(header):
            yield line, {"__error__": f"expected {len(header)} values, found {len(values)}"}
            continue
        yield line, dict(zip(header, values, strict=True))


def _text(row: dict[str, str], name: str) -> str | None:
    value = (row.get(name) or "").strip()
    if not value:
        return None
    if len(value) > MAX_TEXT:
        raise ValueError(f"{name} is longer than {MAX_TEXT} characters")
    if not storable(value):
        raise ValueError(f"{name} contains a NUL character or a lone surrogate, which cannot be stored")
    return value


def _key(kind: str, *values: object) -> str:
    return f"import:{kind}:" + hashlib.sha256("\x1f".join(str(v) for v in values).encode()).hexdigest()[:40]


def _contact(line: int, row: dict[str, str], report: ImportReport) -> None:
    email = email_normalize(row.get("email", ""))
    raw = (row.get("consent") or "").strip().lower()
    if raw in TRUE:
        consent = True
    elif raw in FALSE:
        consent = False
    else:
        raise ValueError(f"consent must be true or false, got {raw[:30]!r}" if raw else "consent is required")
    source = _text(row, "subscription_source")
    stamp = (row.get("timestamp") or "").strip()
    try:
        when: datetime | None = event_time_parse(stamp) if stamp else None
        created = email_consent_change(
            email=email, consent=consent, type="subscription_imported",
            payload={"subscription_source": source}, event_time=when,
            key=_key("contact", email, consent, source, when.isoformat() if when else ""),
            source=source or "contact list import",
        )  # fmt: skip
    except EventRejected as exc:  # (events name the time event_time; the analyst's file calls it timestamp)
        message = str(exc)
        raise ValueError(f"timestamp{message.removeprefix('event_time')}" if message.startswith("event_time")
                         else message) from None  # fmt: skip
    report.loaded += created
    report.duplicates += not created


def _block(line: int, row: dict[str, str], report: ImportReport) -> None:
    email = email_normalize(row.get("email", ""))
    reason = _text(row, "reason") or ""
    created = email_block_change(
        email=email, blocked=True, type="email_address_block_imported", by="block list import", reason=reason,
        key=_key("block", email, reason),
    )  # fmt: skip
    report.loaded += created
    report.duplicates += not created


KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], Callable]] = {
    Job.Kind.CONTACTS_IMPORT: (("email", "consent"), CONTACT_COLUMNS, _contact),
    Job.Kind.BLOCKLIST_IMPORT: (("email",), BLOCK_COLUMNS, _block),
}


def import_run(
    *, kind: str, text: str, progress: Callable[[int], None] | None = None, progress_every: int = 200
) -> ImportReport:
    """Import a CSV text of `kind` (Job.Kind); `progress(rows done)` is called every `progress_every` rows."""
    required, known, load = KINDS[kind]
    report = ImportReport()
    for line, row in csv_rows(text, required=required, known=known):
        report.total += 1
        try:
            if "__error__" in row:
                raise ValueError(row["__error__"])
            load(line, row, report)
        except EmailInvalid:
            given = (row.get("email") or "").strip()
            report.error(line, f"email {given[:80]!r} is not a valid address" if given else "email is required")
        except (ValueError, EventRejected) as exc:
            report.error(line, str(exc))
        if progress is not None and report.total % progress_every == 0:
            progress(report.total)
    if progress is not None:
        progress(report.total)
    return report


def rows_count(text: str) -> int:
    return max(0, sum(1 for line in text.splitlines() if line.strip()) - 1)


@transaction.atomic
def import_job_create(*, kind: str, file_name: str, text: str, user: Any = None) -> Job:
    """An import job from an uploaded file; runs in a Celery task after commit."""
    if kind not in KINDS:
        raise ValueError(f"unknown import kind {kind!r}")
    job = Job.objects.create(kind=kind, file_name=file_name[:255], content=text, total=rows_count(text),
                             created_by=user if getattr(user, "pk", None) else None)  # fmt: skip
    transaction.on_commit(lambda: import_job_enqueue(job_id=job.pk))
    return job


def import_job_enqueue(*, job_id: int) -> None:
    """Run a queued job in a worker. Without a broker (Redis down) the job stays queued, which its message says, and
    the watchdog (import_jobs_resume) runs it once the broker is back: the upload that created it still succeeds."""
    from emails.tasks import import_run as task

    if not enqueue_with_safety_net(lambda: task.delay(job_id), what=f"import job {job_id}"):
        minutes = round(IMPORT_STALE_AFTER.total_seconds() / 60)
        Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
            message="The task queue is unavailable: the import waits for it. The watchdog starts it once the queue "
            f"is back (it takes imports queued for over {minutes} minutes)."
        )


def import_job_run(*, job_id: int) -> str:
    """Run a queued job (a duplicated task finds it claimed and does nothing)."""
    claimed = Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
        status=Job.Status.RUNNING, heartbeat=timezone.now(), attempts=F("attempts") + 1, message=""
    )
    if not claimed:
        return "not queued"
    job = Job.objects.get(pk=job_id)

    def progress(done: int) -> None:
        Job.objects.filter(pk=job_id).update(processed=done, heartbeat=timezone.now())

    try:
        report = import_run(kind=job.kind, text=job.content, progress=progress)
    except ImportFileInvalid as exc:
        Job.objects.filter(pk=job_id).update(status=Job.Status.FAILED, message=str(exc), finished=timezone.now())
        return f"failed: {exc}"
    except Exception as exc:
        # Anything else (a lost database connection, a bug) left the job "running" for ever, its failure only in the
        # worker's log; the job says so now, and the error goes on to be logged with its traceback.
        message = (
            f"failed unexpectedly ({type(exc).__name__}) after {job.processed} row(s); the worker's log has the "
            "details. Rows already imported stay imported: upload the file again to finish it."
        )
        Job.objects.filter(pk=job_id).update(status=Job.Status.FAILED, message=message, finished=timezone.now())
        raise
    result = report.as_dict()
    message = f"{report.loaded} loaded, {report.duplicates} already loaded, {report.error_count} bad row(s)"
    Job.objects.filter(pk=job_id).update(
        status=Job.Status.DONE, result=result, message=message, processed=report.total, total=report.total,
        finished=timezone.now(),
    )  # fmt: skip
    return message


# A running job silent for this long lost its worker (killed, restarted); one queued this long lost its task message.
IMPORT_STALE_AFTER = timedelta(minutes=10)
IMPORT_ATTEMPTS_MAX = 3


def import_jobs_resume(*, now: datetime | None = None) -> list[int]:
    """The watchdog: the ids of the jobs to run again (each its task enqueued by the caller). A running job whose
    run has been silent for IMPORT_STALE_AFTER is queued again (imports are idempotent: rows already imported load
    nothing twice) until IMPORT_ATTEMPTS_MAX runs, then failed with the reason; a job queued that long is run (a
    duplicated task finds it claimed)."""
    now = now or timezone.now()
    stale = now - IMPORT_STALE_AFTER
    running = Job.objects.filter(status=Job.Status.RUNNING, heartbeat__lt=stale)
    running.filter(attempts__gte=IMPORT_ATTEMPTS_MAX).update(
        status=Job.Status.FAILED, finished=now,
        message=f"the worker stopped (killed or restarted) {IMPORT_ATTEMPTS_MAX} times while importing this file. "
        "Rows already imported stay imported: upload the file again to finish it.",
    )  # fmt: skip
    running.filter(attempts__lt=IMPORT_ATTEMPTS_MAX).update(status=Job.Status.QUEUED)
    return list(
        Job.objects.filter(status=Job.Status.QUEUED)
        .filter(Q(heartbeat__lt=stale) | Q(heartbeat__isnull=True, created__lt=stale))
        .values_list("pk", flat=True)
    )


__all__ = [
    "ImportFileInvalid",
    "ImportReport",
    "import_run",
    "import_job_create",
    "import_job_enqueue",
    "import_job_run",
    "import_jobs_resume",
]
