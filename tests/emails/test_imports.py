"""Contact list and block list imports: commands (bad rows with line numbers, good rows loaded, idempotent
re-run, event_time from the timestamp) and the admin upload's job."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command

from cdp.models import CustomerEvent
from emails.models import EmailAddress, Job
from emails.services.imports import import_job_create

pytestmark = pytest.mark.django_db

CONTACTS = """email,consent,subscription_source,timestamp
ann@example.com,true,shop checkout,2024-03-01T10:00:00
BOB@example.com,false,,1709287200
not-an-email,true,,
cid@example.com,maybe,,
dan@example.com,yes,fair,2024-03-01T12:00:00+02:00
eve@example.com,1,,not-a-date
fay@example.com,true,,,extra
"""


def run(command: str, path) -> tuple[str, str, int]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        call_command(command, str(path), "--no-progress", stdout=out, stderr=err)
    except SystemExit as exc:
        code = exc.code
    return out.getvalue(), err.getvalue(), code


def test_contact_import_loads_good_rows_and_reports_bad_ones(tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_text(CONTACTS)
    out, err, code = run("import_email_contacts", path)
    assert code == 1
    assert "7 rows: 3 loaded, 0 already loaded, 4 bad" in out
    assert f"{path}:4: email 'not-an-email' is not a valid address" in err
    assert f"{path}:5: consent must be true or false, got 'maybe'" in err
    assert f"{path}:7: timestamp 'not-a-date' is not an ISO 8601 date-time" in err  # the file's column name
    assert f"{path}:8: expected 4 values, found 5" in err
    ann = CustomerEvent.objects.get(type="subscription_imported", payload__email="ann@example.com")
    assert ann.event_time == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert ann.payload == {"email": "ann@example.com", "consent": True, "subscription_source": "shop checkout",
                           "type": "subscription_imported"}  # fmt: skip
    dan = CustomerEvent.objects.get(payload__email="dan@example.com")
    assert dan.event_time == datetime(2024, 3, 1, 10, tzinfo=UTC)
    bob = CustomerEvent.objects.get(payload__email="bob@example.com")
    assert bob.event_time == datetime.fromtimestamp(1709287200, tz=UTC)
    assert EmailAddress.objects.get(email="bob@example.com").consent is False
    assert EmailAddress.objects.get(email="ann@example.com").consent is True
    # Re-running the same file loads nothing twice.
    out, _, _ = run("import_email_contacts", path)
    assert "3 already loaded" in out
    assert CustomerEvent.objects.filter(type="subscription_imported").count() == 3


def test_bad_contact_rows_are_reported_in_the_file_s_words(tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_text("email,consent,subscription_source,timestamp\n,true,,\nann@example.com,true,,99999999999\n"
                    "bob@example.com,true,a\x00b,\ncid@example.com,true,,\n")  # fmt: skip
    out, err, code = run("import_email_contacts", path)
    assert code == 1 and "4 rows: 1 loaded, 0 already loaded, 3 bad" in out
    assert f"{path}:2: email is required" in err
    assert f"{path}:3: timestamp 5138-11-16T09:46:39+00:00 is more than a day in the future" in err
    assert f"{path}:4: subscription_source contains a NUL character or a lone surrogate, which cannot be stored" in err


def test_block_list_import(tmp_path):
    path = tmp_path / "blocked.csv"
    path.write_text("email,reason\nspam@example.com,spam trap\nx@,\nold@example.com,\n")
    out, err, code = run("import_email_blocklist", path)
    assert "3 rows: 2 loaded" in out and ":3: email 'x@' is not a valid address" in err
    address = EmailAddress.objects.get(email="spam@example.com")
    assert address.blocked and address.blocked_reason == "spam trap" and address.blocked_by == "block list import"
    event = CustomerEvent.objects.get(type="email_address_block_imported", payload__email="spam@example.com")
    assert event.payload["reason"] == "spam trap"


def test_a_spreadsheet_s_semicolon_csv_is_read_too(tmp_path):
    """Excel in locales whose decimal separator is a comma saves CSV with semicolons (and a BOM)."""
    path = tmp_path / "contacts.csv"
    path.write_text(
        "\ufeffEmail;Consent;subscription_source\nann@example.com;true;shop, checkout\nbob@example.com;false;\n"
    )
    out, err, code = run("import_email_contacts", path)
    assert code == 0 and "2 rows: 2 loaded" in out, err
    assert EmailAddress.objects.get(email="ann@example.com").consent is True
    event = CustomerEvent.objects.get(type="subscription_imported", payload__email="ann@example.com")
    assert event.payload["subscription_source"] == "shop, checkout"
    tabbed = tmp_path / "blocked.tsv"
    tabbed.write_text("email\treason\nspam@example.com\tspam trap\n")
    out, err, code = run("import_email_blocklist", tabbed)
    assert code == 0 and EmailAddress.objects.get(email="spam@example.com").blocked_reason == "spam trap"


def test_bad_file_is_a_command_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("mail,consent\na@b.com,true\n")
    with pytest.raises(CommandError, match="missing column"):
        call_command("import_email_contacts", str(path), "--no-progress")
    with pytest.raises(CommandError, match="no such file"):
        call_command("import_email_contacts", str(tmp_path / "nope.csv"))


def test_upload_job_runs_with_progress_and_result(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = import_job_create(kind=Job.Kind.CONTACTS_IMPORT, file_name="contacts.csv", text=CONTACTS)
    job.refresh_from_db()
    assert job.status == Job.Status.DONE
    assert job.processed == job.total == 7 and job.percent == 100
    assert job.result["loaded"] == 3 and job.result["errors"] == 4
    assert job.result["bad_rows"][0] == {"line": 4, "error": "email 'not-an-email' is not a valid address"}


def test_a_job_that_fails_unexpectedly_says_so_instead_of_running_for_ever():
    """An error other than a bad file (here: a job of a kind this version does not know, as after a downgrade)
    left the job 'running' for ever, the failure only in the worker's log."""
    from emails.services.imports import import_job_run

    job = Job.objects.create(kind="retired_import", file_name="old.csv", content="email\nann@example.com\n", total=1)

    with pytest.raises(KeyError):
        import_job_run(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert job.finished is not None
    assert job.message.startswith("failed unexpectedly (KeyError) after 0 row(s); the worker's log has the details.")


def test_the_watchdog_runs_again_a_job_whose_worker_died_or_whose_message_was_lost():
    """A worker killed mid-import left the job 'running' for ever (and a lost task message, 'queued'); imports are
    idempotent, so the beat's watchdog runs such a job again, until a third run died too."""
    from datetime import timedelta

    from django.utils import timezone

    from emails.tasks import import_jobs_resume

    long_ago = timezone.now() - timedelta(minutes=30)
    died = Job.objects.create(kind=Job.Kind.CONTACTS_IMPORT, file_name="a.csv", content=CONTACTS, total=7,
                              status=Job.Status.RUNNING, heartbeat=long_ago, attempts=1, processed=2)  # fmt: skip
    lost = Job.objects.create(kind=Job.Kind.BLOCKLIST_IMPORT, file_name="b.csv", content="email\nx@example.com\n")
    Job.objects.filter(pk=lost.pk).update(created=long_ago)
    hopeless = Job.objects.create(kind=Job.Kind.CONTACTS_IMPORT, file_name="c.csv", content=CONTACTS, total=7,
                                  status=Job.Status.RUNNING, heartbeat=long_ago, attempts=3)  # fmt: skip
    alive = Job.objects.create(kind=Job.Kind.CONTACTS_IMPORT, file_name="d.csv", content=CONTACTS, total=7,
                               status=Job.Status.RUNNING, heartbeat=timezone.now(), attempts=1)  # fmt: skip

    assert import_jobs_resume() == 2  # (tasks run in-process here)

    died.refresh_from_db(), lost.refresh_from_db(), hopeless.refresh_from_db(), alive.refresh_from_db()
    assert died.status == Job.Status.DONE and died.attempts == 2 and died.result["loaded"] == 3
    assert lost.status == Job.Status.DONE and EmailAddress.objects.get(email="x@example.com").blocked
    assert hopeless.status == Job.Status.FAILED and "stopped (killed or restarted) 3 times" in hopeless.message
    assert alive.status == Job.Status.RUNNING
    assert import_jobs_resume() == 0


def test_a_line_without_its_trailing_optional_cells_is_loaded_and_one_missing_a_required_cell_is_not(tmp_path):
    path = tmp_path / "blocked.csv"
    path.write_text("email,reason\ntrap@example.com\nlisted@example.com,spam trap\n")
    out, err, code = run("import_email_blocklist", path)
    assert (code, err) == (0, "")
    assert "2 rows: 2 loaded" in out
    assert EmailAddress.objects.get(email="trap@example.com").blocked
    path = tmp_path / "contacts.csv"
    path.write_text("email,consent,timestamp\nann@example.com\n")
    _, err, code = run("import_email_contacts", path)
    assert code == 1
    assert f"{path}:2: expected 3 values, found 1" in err  # consent is required: not taken for empty
