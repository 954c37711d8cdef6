"""manage.py import_email_blocklist FILE.csv — block list (email, reason?) → Email Address Block Imported."""

from emails.management.commands._email_import import EmailImportCommand
from emails.models import Job


class Command(EmailImportCommand):
    help = __doc__
    kind = Job.Kind.BLOCKLIST_IMPORT
    columns = "email, reason (optional)"
