"""manage.py import_email_contacts FILE.csv — contact list (email, consent, subscription_source?, timestamp?)
→ Email Subscription Imported events; event_time from `timestamp` (UTC) when present."""

from emails.management.commands._email_import import EmailImportCommand
from emails.models import Job


class Command(EmailImportCommand):
    help = __doc__
    kind = Job.Kind.CONTACTS_IMPORT
    columns = "email, consent, subscription_source (optional), timestamp (optional)"
