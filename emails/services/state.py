"""Consent and block state per address, changed only by recording the event that changes it.

Every change is one customer event (source "emails", stitched by its `email`) written through cdp's events
service, and the `EmailAddress` row updated in the same transaction. An event whose idempotency key was seen
before changes nothing (a replayed webhook, a re-run import, a confirmation link opened twice). An event older
than the state's last change (an import of last year's consents) is recorded but does not overwrite newer state,
so state always equals "the latest event wins", like the `email_consent` / `email_blocked` attributes.
"""

from __future__ import annotations

import hashlib
import unicodedata
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.db import IntegrityError, transaction
from django.utils import timezone

from cdp.services.events import EventRejected, event_record_build, events_ingest
from emails.models import EmailAddress, EmailSuppression
from emails.services.setup import emails_source_id

# customer_events.type → the name the documentation uses.
EVENT_NAMES: dict[str, str] = {
    "subscription_request": "Email Subscription Requested",
    "opt_in_email_sent": "Opt-in Subscription Email Sent",
    "subscription_confirmed": "Email Subscription Confirmed",
    "subscription_imported": "Email Subscription Imported",
    "unsubscribe": "Email Unsubscribed",
    "email_delivered": "Email Delivered",
    "email_bounced": "Email Bounced",
    "spam_complaint": "Email Spam Complaint",
    "email_address_blocked": "Email Address Blocked",
    "email_address_block_imported": "Email Address Block Imported",
    "email_address_unblocked": "Email Address Unblocked",
    "email_sent": "Email Sent",
}

MAX_EMAIL_LENGTH = 254
SUPPRESSION_PREFIX = b"cdp.emails.suppression\x00"
SUPPRESSED_REASON = "blocked before its customer was erased (GDPR); the reason was erased with it"
_validator = EmailValidator()


class EmailInvalid(ValueError):
    """Not an address we can use."""


def email_normalize(value: object) -> str:
    """Trimmed, lower-cased, validated address (Django's validator: RFC-ish local part, IDN domains).
    Raises EmailInvalid."""
    if not isinstance(value, str):
        raise EmailInvalid("email must be a string")
    text = unicodedata.normalize("NFC", value.strip()).lower()
    if not text or len(text) > MAX_EMAIL_LENGTH or any(unicodedata.category(c)[0] == "C" for c in text):
        raise EmailInvalid("Email address is invalid")
    try:
        _validator(text)
        text.encode()
    except (ValidationError, UnicodeEncodeError):
        raise EmailInvalid("Email address is invalid") from None
    return text


def suppression_digest(email: str) -> str:
    """What an erase keeps of a blocked address (EmailSuppression): a SHA-256 digest of the normalised address,
    prefixed so that generic tables of hashed addresses do not apply. Unkeyed on purpose: a rotated secret key
    must not unblock anyone silently."""
    text = unicodedata.normalize("NFC", email.strip()).lower()
    return hashlib.sha256(SUPPRESSION_PREFIX + text.encode("utf-8", "surrogatepass")).hexdigest()


def address_suppressed(email: str) -> EmailSuppression | None:
    return EmailSuppression.objects.filter(digest=suppression_digest(email)).first()


def address_state(email: str) -> EmailAddress | None:
    """The address's state; for an address erased while blocked, that block (not saved: nothing else is known)."""
    address = EmailAddress.objects.filter(email=email).first()
    if address is None and (kept := address_suppressed(email)) is not None:
        address = EmailAddress(email=email, blocked=True, blocked_reason=SUPPRESSED_REASON,
                               blocked_by=kept.blocked_by, blocked_at=kept.blocked_at)  # fmt: skip
    return address


def _address_locked(email: str) -> EmailAddress:
    """The address's row, created if new, locked for this transaction. An address erased while blocked comes
    back blocked (an event and the state, like any block)."""
    address = EmailAddress.objects.select_for_update().filter(email=email).first()
    if address is None:
        try:
            with transaction.atomic():
                EmailAddress.objects.create(email=email)
                _suppression_restore(email)
        except IntegrityError:
            pass  # created meanwhile by a concurrent request
        address = EmailAddress.objects.select_for_update().get(email=email)
    return address


def _suppression_restore(email: str) -> None:
    kept = EmailSuppression.objects.select_for_update().filter(digest=suppression_digest(email)).first()
    if kept is None:
        return
    kept.delete()
    email_block_change(
        email=email, blocked=True, type="email_address_blocked", by=kept.blocked_by, reason=SUPPRESSED_REASON,
        event_time=kept.blocked_at, key=f"suppression-restored:{kept.pk}",
    )  # fmt: skip


def email_event_record(
    *, type: str, email: str, payload: dict[str, Any] | None = None, event_time: datetime | None = None,
    key: str | None = None,
) -> bool:  # fmt: skip
    """Record one email event (payload gets `email` and `type`); False when its key was recorded before."""
    body = {**(payload or {}), "email": email, "type": type}
    body = {k: v for k, v in body.items() if v is not None}
    record = event_record_build(
        source_id=emails_source_id(),
        type=type,
        event_time=event_time or datetime.now(UTC),
        payload=body,
        message_id=key,
    )
    return events_ingest([record])[0].created


def _newer(event_time: datetime | None, changed: datetime | None) -> bool:
    return changed is None or event_time is None or event_time >= changed


@transaction.atomic
def email_consent_change(
    *, email: str, consent: bool, type: str, payload: dict[str, Any] | None = None,
    event_time: datetime | None = None, key: str | None = None, source: str = "",
) -> bool:  # fmt: skip
    """Record a consent event (payload gets `consent`) and apply it; False when it was a duplicate."""
    address = _address_locked(email)
    when = event_time or timezone.now()
    if not email_event_record(type=type, email=email, payload={**(payload or {}), "consent": consent},
                              event_time=when, key=key):  # fmt: skip
        return False
    if _newer(when, address.consent_changed):
        address.consent = consent
        address.consent_changed = when
        address.consent_source = (source or type)[:255]
        address.save(update_fields=["consent", "consent_changed", "consent_source", "modified"])
    return True


@transaction.atomic
def email_block_change(
    *, email: str, blocked: bool, type: str, by: str, reason: str = "", payload: dict[str, Any] | None = None,
    event_time: datetime | None = None, key: str | None = None,
) -> bool:  # fmt: skip
    """Record a block / unblock event (payload gets `blocked`, `reason`, `blocked_by` or `unblocked_by`) and
    apply it; False when it was a duplicate."""
    address = _address_locked(email)
    when = event_time or timezone.now()
    body = {**(payload or {}), "blocked": blocked, "reason": reason or None}
    body["blocked_by" if blocked else "unblocked_by"] = by
    if not email_event_record(type=type, email=email, payload=body, event_time=when, key=key):
        return False
    if _newer(when, address.blocked_at):
        address.blocked = blocked
        address.blocked_reason = reason if blocked else ""
        address.blocked_by = by if blocked else ""
        address.blocked_at = when
        if not blocked:
            address.soft_bounces_in_row = 0
        address.save(update_fields=["blocked", "blocked_reason", "blocked_by", "blocked_at",
                                    "soft_bounces_in_row", "modified"])  # fmt: skip
    return True


def user_label(user: Any) -> str:
    """How a CDP user appears in `blocked_by`: "name (id)", as the seed's schema says."""
    if user is None:
        return "system"
    return f"{user.get_username()} ({user.pk})"


def _user_block_change(*, email: str, reason: str, user: Any, blocked: bool) -> bool:
    email = email_normalize(email)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": f"A reason is required to {'block' if blocked else 'unblock'} an address."})
    current = address_state(email)
    if (current is not None and current.blocked) == blocked:
        return False
    return email_block_change(
        email=email, blocked=blocked, type="email_address_blocked" if blocked else "email_address_unblocked",
        by=user_label(user), reason=reason[:2000],
    )  # fmt: skip


def email_block(*, email: str, reason: str, user: Any) -> bool:
    """A user blocks an address (Email Address Blocked). Reason required. False when it was blocked already."""
    return _user_block_change(email=email, reason=reason, user=user, blocked=True)


def email_unblock(*, email: str, reason: str, user: Any) -> bool:
    """A user unblocks an address (Email Address Unblocked). Reason required. False when it was not blocked."""
    return _user_block_change(email=email, reason=reason, user=user, blocked=False)


__all__ = [
    "EVENT_NAMES", "EmailInvalid", "EventRejected", "email_normalize", "suppression_digest", "address_suppressed",
    "address_state", "email_event_record", "email_consent_change", "email_block_change", "email_block",
    "email_unblock", "user_label",
]  # fmt: skip
