"""The email channel: its configuration, templates, the state of each address, provider feedback, imports and
campaigns.

The event log in `customer_events` (source "emails") is the history; `EmailAddress` is the current state per
address that the services keep in step with it in the same transaction, so the public endpoints and campaign
preparation read one indexed row instead of replaying events.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Now


class EmailChannel(models.Model):
    """The one email channel configuration (a singleton row, pk=1)."""

    class Provider(models.TextChoices):
        SMTP = "smtp", "SMTP server"
        BREVO = "brevo", "Brevo (API)"
        INFOBIP = "infobip", "Infobip (API)"

    provider = models.CharField(max_length=20, choices=Provider.choices, default=Provider.SMTP)
    sender_email = models.EmailField(blank=True, help_text="From address of every email, e.g. news@shop.example.com")
    sender_name = models.CharField(max_length=200, blank=True, help_text="Display name, e.g. 'Shop newsletter'.")
    smtp_host = models.CharField(max_length=255, blank=True)
    smtp_port = models.PositiveIntegerField(default=587)
    smtp_username = models.CharField(max_length=255, blank=True)
    smtp_security = models.CharField(
        max_length=10, choices=[("none", "None"), ("starttls", "STARTTLS"), ("ssl", "SSL/TLS")], default="starttls"
    )
    api_base_url = models.CharField(
        max_length=255,
        blank=True,
        help_text="Provider API base URL; empty for the provider's default (Infobip: your account's base URL).",
    )
    # Fernet ciphertext of {"password": ...} (SMTP) or {"api_key": ...} (Brevo, Infobip); never shown back.
    credentials_encrypted = models.TextField(blank=True, editable=False)
    credentials_hint = models.CharField(max_length=16, blank=True, editable=False)
    public_base_url = models.URLField(
        blank=True,
        help_text="Where this server is reachable from the internet (links in emails), e.g. https://me.shop.com",
    )
    subscribe_page_url = models.URLField(blank=True, help_text="Empty: the built-in /email/subscribe.html.")
    unsubscribe_page_url = models.URLField(blank=True, help_text="Empty: the built-in /email/unsubscribe.html.")
    confirmed_page_url = models.URLField(
        blank=True, help_text="Where the opt-in link leads after confirming; empty: a built-in thank-you page."
    )
    opt_in_frequency_hours = models.PositiveIntegerField(
        default=24, help_text="At most one opt-in email per address in this many hours."
    )
    opt_in_link_valid_days = models.PositiveIntegerField(default=7, help_text="How long an opt-in link works.")
    opt_in_subject = models.CharField(max_length=255, default="Please confirm your subscription")
    opt_in_body = models.TextField(
        default="Hello,\n\nplease confirm your subscription by opening this link:\n\n{{ confirm_url }}\n\n"
        "If you did not ask to subscribe, ignore this email.",
        help_text="Plain text; {{ confirm_url }} and {{ email }} are replaced.",
    )
    webhook_provider = models.CharField(
        max_length=20,
        choices=[("brevo", "Brevo"), ("infobip", "Infobip")],
        default="brevo",
        help_text="Payload shape /emails/feedback expects (/emails/feedback/brevo and /infobip choose by path).",
    )
    webhook_secret_hash = models.CharField(max_length=64, blank=True, editable=False)
    webhook_secret_prefix = models.CharField(max_length=16, blank=True, editable=False)
    send_rate_per_second = models.PositiveIntegerField(
        default=10, help_text="Provider rate limit: at most this many emails per second."
    )
    modified = models.DateTimeField(auto_now=True)
    modified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = "email channel"

    def __str__(self) -> str:
        return f"Email channel ({self.get_provider_display()})"


class EmailTemplate(models.Model):
    """A campaign email. `{{ name }}` placeholders: email, unsubscribe_url, campaign_name, campaign_id."""

    name = models.CharField(max_length=200, unique=True)
    subject = models.CharField(max_length=255)
    html_body = models.TextField(blank=True)
    text_body = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-modified"]

    def __str__(self) -> str:
        return self.name


class EmailAddress(models.Model):
    """Current consent and block state of one (normalised) address."""

    email = models.CharField(max_length=254, unique=True)
    consent = models.BooleanField(null=True, help_text="True: subscribed; False: unsubscribed; empty: never asked.")
    consent_changed = models.DateTimeField(null=True, blank=True)
    consent_source = models.CharField(max_length=255, blank=True)
    blocked = models.BooleanField(default=False)
    blocked_reason = models.TextField(blank=True)
    blocked_by = models.CharField(max_length=255, blank=True, help_text="User (id), hard_bounce_webhook, import ...")
    blocked_at = models.DateTimeField(null=True, blank=True)
    soft_bounces_in_row = models.PositiveIntegerField(default=0)
    # When the latest of those soft bounces happened (the provider's time): a delivery report older than it, arriving
    # late, does not end the run.
    soft_bounce_last_at = models.DateTimeField(null=True, blank=True)
    opt_in_sent_at = models.DateTimeField(null=True, blank=True)
    # The latest subscription request (POST /emails/subscribe): a repeat from the same form within the opt-in
    # frequency window is the same request (same id, no second event).
    # (Database defaults too: rows written by SQL of their own, as the benchmark's, need not name them.)
    subscription_request_id = models.CharField(max_length=36, blank=True, default="", db_default="")
    subscription_requested_at = models.DateTimeField(null=True, blank=True)
    subscription_request_source = models.CharField(max_length=1000, blank=True, default="", db_default="")
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["email"]
        verbose_name = "email address"
        verbose_name_plural = "email addresses"
        indexes = [models.Index(fields=["blocked", "consent"], name="emails_address_state")]

    def __str__(self) -> str:
        return self.email


class EmailSuppression(models.Model):
    """The block of an address whose customer was erased (GDPR), kept without the address: a digest of it
    (`emails.services.state.suppression_digest`), who blocked it and when. The address stays unmailable, and is
    blocked again (the digest gone) as soon as it is recorded again."""

    digest = models.CharField(max_length=64, unique=True)
    blocked_by = models.CharField(max_length=255, blank=True)
    blocked_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "suppressed address (erased)"
        verbose_name_plural = "suppressed addresses (erased)"

    def __str__(self) -> str:
        return f"suppressed address {self.digest[:12]}"


class FeedbackRejection(models.Model):
    """A webhook payload we could not use (malformed, unknown shape): kept for inspection."""

    provider = models.CharField(max_length=20)
    received = models.DateTimeField(auto_now_add=True, db_index=True)
    reason = models.TextField()
    body = models.TextField(blank=True, help_text="The raw body (at most 64 KB kept).")
    content_type = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-received"]
        verbose_name = "rejected webhook payload"

    def __str__(self) -> str:
        return f"{self.provider} @ {self.received:%Y-%m-%d %H:%M:%S}"


class FeedbackInbox(models.Model):
    """Accepted webhook payloads as canonical events, waiting to be applied in order (the webhook answers once its
    row is written; `emails.services.feedback.feedback_apply` records the events and their state changes)."""

    id = models.BigAutoField(primary_key=True)
    provider = models.CharField(max_length=20)
    events = models.JSONField(help_text="[{type, email, key, event_time, payload}, ...] in the payload's order")
    received = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "emails_feedback_inbox"
        verbose_name = "webhook payload waiting"
        verbose_name_plural = "webhook payloads waiting"

    def __str__(self) -> str:
        return f"{self.provider} #{self.pk}"


class Job(models.Model):
    """A background job a user started from the admin or API (imports, campaigns): status and progress."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class Kind(models.TextChoices):
        CONTACTS_IMPORT = "contacts_import", "Contact list import"
        BLOCKLIST_IMPORT = "blocklist_import", "Block list import"

    kind = models.CharField(max_length=30, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    file_name = models.CharField(max_length=255, blank=True)
    content = models.TextField(blank=True, help_text="The uploaded CSV text.")
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    result = models.JSONField(default=dict, blank=True)
    message = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The run's last sign of life (its claim, then each progress report) and how many runs it took: the watchdog
    # (import_jobs_resume) runs again a job whose worker died or whose task message was lost.
    heartbeat = models.DateTimeField(null=True, blank=True, editable=False)
    attempts = models.PositiveSmallIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["-created"]
        verbose_name = "import job"

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def percent(self) -> int:
        return int(100 * self.processed / self.total) if self.total else (100 if self.status == "done" else 0)


class Campaign(models.Model):
    """Sending a template to a segment (API "Email Activations" / "Email Exports")."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        QUEUED = "queued", "Queued"
        PREPARING = "preparing", "Preparing recipients"
        SENDING = "sending", "Sending"
        PAUSED = "paused", "Paused"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    # The statuses a run still has work in (a paused campaign waits for a marketer to resume it).
    UNFINISHED = (Status.QUEUED, Status.PREPARING, Status.SENDING)

    name = models.CharField(max_length=200)
    template = models.ForeignKey(EmailTemplate, on_delete=models.PROTECT, related_name="campaigns")
    segment_id = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.DRAFT)
    total = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The run sending it holds a lease (a row, not a PostgreSQL session lock: PgBouncer in transaction mode would
    # take a session lock and its unlock to different server connections); a run that died loses it on expiry.
    run_token = models.UUIDField(null=True, blank=True, editable=False)
    run_lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    prepared = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When its recipients were prepared (the audience is fixed)."
    )
    run_failures = models.PositiveSmallIntegerField(
        default=0, editable=False, help_text="Runs that ended in an unexpected error."
    )

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return self.name

    @property
    def percent(self) -> int:
        done = self.sent + self.skipped + self.failed
        return int(100 * done / self.total) if self.total else (100 if self.status == "done" else 0)


class CampaignRecipient(models.Model):
    """One address of a campaign. Unique per campaign and address: a retried job never mails anyone twice."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        SKIPPED = "skipped", "Skipped"
        FAILED = "failed", "Failed"

    id = models.BigAutoField(primary_key=True)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="recipients", db_index=False)
    email = models.CharField(max_length=254)
    customer_entity_id = models.CharField(max_length=32, blank=True, db_collation="C")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    reason = models.CharField(max_length=255, blank=True)
    message_id = models.CharField(max_length=64, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["campaign", "email"], name="emails_recipient_unique")]
        indexes = [models.Index(fields=["campaign", "status"], name="emails_recipient_status")]

    def __str__(self) -> str:
        return f"{self.email} ({self.status})"
