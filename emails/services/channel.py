"""The email channel configuration: read it, change it, set its secrets (encrypted / hashed, shown once)."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from cdp.services.secrets import secret_digest, secret_display_prefix, secret_generate
from emails.crypto import decrypt_text, encrypt_text, secret_hint
from emails.models import EmailChannel

EDITABLE_FIELDS = (
    "provider", "sender_email", "sender_name", "smtp_host", "smtp_port", "smtp_username", "smtp_security",
    "api_base_url", "public_base_url", "subscribe_page_url", "unsubscribe_page_url", "confirmed_page_url",
    "opt_in_frequency_hours", "opt_in_link_valid_days", "opt_in_subject", "opt_in_body", "webhook_provider",
    "send_rate_per_second",
)  # fmt: skip
WEBHOOK_SECRET_PREFIX = "whs"  # noqa: S105 - a prefix, not a secret
MAX_OPT_IN_FREQUENCY_HOURS = 10 * 365 * 24
MAX_OPT_IN_LINK_VALID_DAYS = 10 * 365
MAX_PORT = 65535


CACHE_SECONDS = 5.0
_cache: dict[str, tuple[float, EmailChannel]] = {}


def channel_cached() -> EmailChannel:
    """The channel, re-read at most every CACHE_SECONDS per process (the webhook's hot path). A change made in
    another process is seen within that time; in this process at once."""
    now = time.monotonic()
    hit = _cache.get("channel")
    if hit is not None and now - hit[0] < CACHE_SECONDS:
        return hit[1]
    channel = channel_get()
    _cache["channel"] = (now, channel)
    return channel


def channel_cache_clear() -> None:
    _cache.clear()


def channel_get() -> EmailChannel:
    """The channel configuration (created with defaults on first use)."""
    channel = EmailChannel.objects.filter(pk=1).first()
    if channel is None:
        channel, _ = EmailChannel.objects.get_or_create(pk=1)
    return channel


@transaction.atomic
def channel_update(*, user: Any = None, credentials: str | None = None, **fields: Any) -> EmailChannel:
    """Change the configuration. `credentials` (SMTP password or API key) is stored encrypted; "" clears it,
    None keeps it."""
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise ValidationError({sorted(unknown)[0]: "Unknown or read-only field."})
    channel = EmailChannel.objects.select_for_update().get(pk=channel_get().pk)
    for name, value in fields.items():
        setattr(channel, name, value)
    if credentials is not None:
        credentials_set(channel=channel, secret=credentials)
    channel_validate(channel, changed=fields)
    channel.full_clean()
    channel.modified_by = user if getattr(user, "pk", None) else None
    channel.save()
    transaction.on_commit(channel_cache_clear)
    channel_cache_clear()
    return channel


def channel_validate(channel: EmailChannel, *, changed: Iterable[str]) -> None:
    """The checks beyond the model's of a changed (unsaved) channel; ValidationError naming the field. The admin's
    form runs them too, so that its errors show on the form."""
    if channel.opt_in_frequency_hours < 1:
        raise ValidationError({"opt_in_frequency_hours": "At least 1 hour."})
    # Larger windows and link ages put "now minus the window" before year 1: every subscribe / confirm a 500.
    if channel.opt_in_frequency_hours > MAX_OPT_IN_FREQUENCY_HOURS:
        raise ValidationError({"opt_in_frequency_hours": f"At most {MAX_OPT_IN_FREQUENCY_HOURS} hours (10 years)."})
    if channel.opt_in_link_valid_days > MAX_OPT_IN_LINK_VALID_DAYS:
        raise ValidationError({"opt_in_link_valid_days": f"At most {MAX_OPT_IN_LINK_VALID_DAYS} days (10 years)."})
    if channel.smtp_port > MAX_PORT:
        raise ValidationError({"smtp_port": f"A port is at most {MAX_PORT}."})
    if channel.send_rate_per_second < 1:
        raise ValidationError({"send_rate_per_second": "At least 1 email per second."})
    if {"opt_in_subject", "opt_in_body"} & set(changed):
        opt_in_text_check(subject=channel.opt_in_subject, body=channel.opt_in_body)


OPT_IN_PLACEHOLDERS = ("confirm_url", "email")


def opt_in_text_check(*, subject: str | None, body: str | None) -> None:
    """The opt-in email must carry its confirmation link (without it nobody can confirm a subscription, silently)
    and only placeholders it fills in; its subject is one line (an email header). ValidationError naming the field."""
    from emails.rendering import PLACEHOLDER
    from emails.services.templates import subject_problem

    subject, body = subject or "", body or ""
    if problem := subject_problem(subject):
        raise ValidationError({"opt_in_subject": problem})
    for name, text in (("opt_in_subject", subject), ("opt_in_body", body)):
        unknown = sorted({m.group(1) for m in PLACEHOLDER.finditer(text)} - set(OPT_IN_PLACEHOLDERS))
        if unknown:
            raise ValidationError({name: f"{{{{ {unknown[0]} }}}} is not filled in: the opt-in email can use "
                                         "{{ confirm_url }} and {{ email }}."})  # fmt: skip
    if not any(m.group(1) == "confirm_url" for m in PLACEHOLDER.finditer(body)):
        raise ValidationError({"opt_in_body": "The text needs {{ confirm_url }}, the confirmation link: without it "
                                              "nobody can confirm a subscription."})  # fmt: skip


def credentials_set(*, channel: EmailChannel, secret: str) -> None:
    """Encrypt the provider secret into the (unsaved) channel; the admin later shows only a hint."""
    secret = secret.strip()
    if not secret:
        channel.credentials_encrypted = ""
        channel.credentials_hint = ""
        return
    channel.credentials_encrypted = encrypt_text(json.dumps({"secret": secret}))
    channel.credentials_hint = secret_hint(secret)


def channel_secret(channel: EmailChannel) -> str:
    """The decrypted provider secret ("" when none is set). Raises CredentialsUnreadable."""
    if not channel.credentials_encrypted:
        return ""
    return json.loads(decrypt_text(channel.credentials_encrypted))["secret"]


@transaction.atomic
def webhook_secret_rotate(*, channel: EmailChannel | None = None, secret: str | None = None) -> str:
    """Set a new webhook secret (random unless given); returns it in plain text, the only time it is shown."""
    channel = channel or channel_get()
    secret = secret or secret_generate(WEBHOOK_SECRET_PREFIX)
    if len(secret) < 16:
        raise ValidationError({"webhook_secret": "At least 16 characters."})
    channel.webhook_secret_hash = secret_digest(secret)
    channel.webhook_secret_prefix = secret_display_prefix(secret)
    channel.save(update_fields=["webhook_secret_hash", "webhook_secret_prefix", "modified"])
    transaction.on_commit(channel_cache_clear)
    channel_cache_clear()
    return secret


def webhook_secret_matches(channel: EmailChannel, candidate: str | None) -> bool:
    if not candidate or not channel.webhook_secret_hash:
        return False
    return hmac.compare_digest(secret_digest(candidate), channel.webhook_secret_hash)
