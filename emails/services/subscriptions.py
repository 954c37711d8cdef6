"""Double opt-in subscription, confirmation and unsubscription (the public endpoints' services).

Subscribe records *Email Subscription Requested* with a new `subscription_request_id` (a repeat from the same form
within the opt-in frequency window, the consent unchanged since, is the same request: same id, no second event);
unless the opt-in email
was sent within the channel's frequency limit (24 h by default), the opt-in email is sent by a Celery task after
commit, which records *Opt-in Subscription Email Sent*. Its link carries a signed, expiring token (email +
request id); opening it records *Email Subscription Confirmed* (once per request) and sets consent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.core import signing
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from cdp.celery import enqueue_or_unavailable
from cdp.text import storable
from emails.models import EmailAddress
from emails.providers import OutgoingEmail
from emails.rendering import render_text
from emails.services.channel import channel_get
from emails.services.sending import email_send
from emails.services.state import (
    _address_locked,
    address_state,
    email_consent_change,
    email_event_record,
    email_normalize,
)

TOKEN_SALT = "emails.opt-in"  # noqa: S105 - a signing salt, not a secret
ONE_CLICK_SALT = "emails.one-click"
MAX_TEXT = 1000


class PublicRequestError(Exception):
    """An answer for the public endpoints: HTTP status, the seed's `status` code and message."""

    def __init__(self, status_code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.status = status
        self.message = message


def _invalid(message: str) -> PublicRequestError:
    return PublicRequestError(400, "error", f"validation: {message}")


def _email_from(data: dict[str, Any]) -> str:
    if "email" not in data or data["email"] is None:
        raise _invalid("email is required property")
    if not isinstance(data["email"], str):
        raise _invalid("email must be a string")
    try:
        return email_normalize(data["email"])
    except ValueError:
        raise PublicRequestError(400, "EmailInvalid", "Email address is invalid") from None


def _optional_text(data: dict[str, Any], name: str, prefix: str = "") -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(f"{prefix}{name} must be a string")
    if len(value) > MAX_TEXT:
        raise _invalid(f"{prefix}{name} is longer than {MAX_TEXT} characters")
    if not storable(value):
        raise _invalid(f"{prefix}{name} contains characters that cannot be stored")
    return value


def _known_fields(data: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise _invalid(f"{str(extra[0])[:60]} is not an allowed property")


@dataclass
class SubscribeOutcome:
    subscription_request_id: str
    opt_in_queued: bool


def subscription_request(*, data: Any, base_url: str = "") -> SubscribeOutcome:
    """POST /emails/subscribe. Raises PublicRequestError for the seed's 400 answers."""
    if not isinstance(data, dict):
        raise _invalid("the body must be a JSON object")
    _known_fields(data, {"email", "subscription_source"})
    email = _email_from(data)
    source = _optional_text(data, "subscription_source")
    channel = channel_get()
    with transaction.atomic():
        address = _address_locked(email)
        if address.blocked:
            raise PublicRequestError(400, "EmailBlocked", "Email address is blocked")
        if address.consent:
            raise PublicRequestError(400, "EmailAlreadySubscribed", "Email address is already subscribed")
        now = timezone.now()
        limit = timedelta(hours=channel.opt_in_frequency_hours)
        repeat = (
            address.subscription_request_id
            and address.subscription_requested_at is not None
            and address.subscription_requested_at > now - limit
            and address.subscription_request_source == (source or "")
            # (not when the consent changed since: unsubscribed, or a confirmation withdrawn)
            and (address.consent_changed is None or address.consent_changed < address.subscription_requested_at)
        )
        if repeat:
            # A retried request or a double click: the same request, recorded once (its email is sent once: see
            # opt_in_email_send, or again if the first send failed).
            request_id = address.subscription_request_id
        else:
            request_id = str(uuid.uuid4())
            email_event_record(
                type="subscription_request",
                email=email,
                payload={"subscription_source": source, "subscription_request_id": request_id},
                key=f"subscription_request:{request_id}",
            )
            address.subscription_request_id = request_id
            address.subscription_requested_at = now
            address.subscription_request_source = source or ""
            address.save(update_fields=["subscription_request_id", "subscription_requested_at",
                                        "subscription_request_source", "modified"])  # fmt: skip
        queue = address.opt_in_sent_at is None or address.opt_in_sent_at <= now - limit
        if queue:
            from emails.tasks import opt_in_email_send

            # Nothing sends an opt-in email later: without a broker the request fails (a 503) and the subscriber's
            # retry sends it (the request is recorded: the retry is the same request, not another event).
            transaction.on_commit(
                lambda: enqueue_or_unavailable(
                    lambda: opt_in_email_send.delay(email, request_id, base_url), what="opt-in email"
                )
            )
    return SubscribeOutcome(request_id, queue)


def opt_in_token(email: str, request_id: str) -> str:
    return signing.dumps({"e": email, "r": request_id}, salt=TOKEN_SALT, compress=True)


def opt_in_confirm_url(*, base_url: str, email: str, request_id: str) -> str:
    base = (channel_get().public_base_url or base_url).rstrip("/")
    return f"{base}{reverse('emails:confirm')}?{urlencode({'token': opt_in_token(email, request_id)})}"


def opt_in_email_send(*, email: str, request_id: str, base_url: str = "") -> str:
    """Send the opt-in email for one request, at most once per address per frequency window.

    The window is claimed with a conditional UPDATE before sending, so duplicated or concurrent tasks send one
    email; a failed send gives the claim back. Returns "sent", "skipped" (window) or raises ProviderError."""
    channel = channel_get()
    now = timezone.now()
    window_start = now - timedelta(hours=channel.opt_in_frequency_hours)
    claimed = EmailAddress.objects.filter(
        Q(opt_in_sent_at__isnull=True) | Q(opt_in_sent_at__lte=window_start), email=email, blocked=False
    ).update(opt_in_sent_at=now)
    if not claimed:
        return "skipped"
    url = opt_in_confirm_url(base_url=base_url, email=email, request_id=request_id)
    values = {"confirm_url": url, "email": email}
    try:
        provider_message_id = email_send(
            message=OutgoingEmail(
                to=email,
                subject=render_text(channel.opt_in_subject, values),
                text=render_text(channel.opt_in_body, values),
                tags=["opt-in"],
            ),
            channel=channel,
        )
    except Exception:
        EmailAddress.objects.filter(email=email, opt_in_sent_at=now).update(opt_in_sent_at=None)
        raise
    email_event_record(
        type="opt_in_email_sent",
        email=email,
        payload={"subscription_request_id": request_id, "provider_message_id": provider_message_id or None},
        key=f"opt_in_email_sent:{request_id}",
    )
    return "sent"


def subscription_confirm(*, token: str) -> str:
    """The opt-in link. Returns the confirmed address; raises PublicRequestError for a bad or expired token."""
    max_age = timedelta(days=channel_get().opt_in_link_valid_days)
    try:
        data = signing.loads(token, salt=TOKEN_SALT, max_age=max_age)
        email, request_id = data["e"], data["r"]
    except signing.SignatureExpired:
        raise PublicRequestError(400, "TokenExpired", "This confirmation link has expired; subscribe again.") from None
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise PublicRequestError(400, "TokenInvalid", "This confirmation link is not valid.") from None
    state = address_state(email)
    if state is not None and state.blocked:
        raise PublicRequestError(400, "EmailBlocked", "Email address is blocked")
    email_consent_change(
        email=email,
        consent=True,
        type="subscription_confirmed",
        payload={"subscription_request_id": request_id},
        key=f"subscription_confirmed:{request_id}",
        source="opt-in confirmation",
    )
    return email


def unsubscribe(*, data: Any) -> bool:
    """POST /emails/unsubscribe. True: unsubscribed now; False: unknown or not subscribed (304, no event)."""
    if not isinstance(data, dict):
        raise _invalid("the body must be a JSON object")
    _known_fields(data, {"email", "campaign", "message_id", "subject", "unsubscribe_source"})
    email = _email_from(data)
    payload: dict[str, Any] = {}
    campaign = data.get("campaign")
    if campaign is not None:
        if not isinstance(campaign, dict):
            raise _invalid("campaign must be an object with id and name")
        for name in ("id", "name"):
            if campaign.get(name) in (None, ""):
                raise _invalid(f"campaign.{name} is required property")
            _optional_text(campaign, name, "campaign.")
        payload["campaign"] = {"id": campaign["id"], "name": campaign["name"]}
    for name in ("message_id", "subject", "unsubscribe_source"):
        payload[name] = _optional_text(data, name)
    state = address_state(email)
    if state is None or state.consent is not True:
        return False
    with transaction.atomic():
        current = _address_locked(email)
        if current.consent is not True:
            return False
        return email_consent_change(
            email=email, consent=False, type="unsubscribe", payload=payload,
            source=payload.get("unsubscribe_source") or "unsubscribe",
        )  # fmt: skip


# --- one-click unsubscribe (RFC 8058) ---------------------------------------------------------------------------
# A campaign email's List-Unsubscribe header carries a signed URL, with `List-Unsubscribe-Post:
# List-Unsubscribe=One-Click`: the mailbox provider (Gmail, Yahoo: required of bulk senders) POSTs to it when the
# recipient clicks its Unsubscribe button. The token names the address, the campaign and the message and does not
# expire (an old email's link must still work); only a POST unsubscribes — a GET (a person, a link scanner) is sent
# to the unsubscribe page.


@dataclass
class OneClick:
    email: str
    campaign_id: int
    message_id: str


def one_click_url(*, base_url: str, email: str, campaign_id: int, message_id: str) -> str:
    token = signing.dumps({"e": email, "c": campaign_id, "m": message_id}, salt=ONE_CLICK_SALT, compress=True)
    return f"{base_url.rstrip('/')}{reverse('emails:one-click')}?{urlencode({'token': token})}"


def one_click_load(*, token: str) -> OneClick:
    """The signed token's address, campaign and message; PublicRequestError 400 when it is not one of ours."""
    try:
        data = signing.loads(token, salt=ONE_CLICK_SALT)
        return OneClick(email_normalize(data["e"]), int(data["c"]), str(data["m"]))
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise PublicRequestError(400, "TokenInvalid", "This unsubscribe link is not valid.") from None


def one_click_campaign_name(click: OneClick) -> str:
    from emails.models import Campaign

    name = Campaign.objects.filter(pk=click.campaign_id).values_list("name", flat=True).first()
    return name or f"campaign {click.campaign_id}"


def one_click_unsubscribe(*, token: str) -> bool:
    """The List-Unsubscribe POST: the address stops receiving campaigns (an *Email Unsubscribed* event naming the
    campaign and message). True when it was unsubscribed now, False when it already was not subscribed."""
    click = one_click_load(token=token)
    campaign = {"id": str(click.campaign_id), "name": one_click_campaign_name(click)}
    return unsubscribe(data={"email": click.email, "campaign": campaign, "message_id": click.message_id,
                             "unsubscribe_source": "one-click (List-Unsubscribe)"})  # fmt: skip
