"""Reads of the email channel for the API and the admin."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta

from django.db.models import Q, QuerySet
from django.db.models.functions import Now

from cdp.models import CustomerEvent
from emails.models import Campaign, CampaignRecipient, EmailAddress, EmailTemplate
from emails.services.setup import SOURCE_SLUG


def addresses_list(*, blocked: bool | None = None, consent: str | None = None, q: str = "") -> QuerySet[EmailAddress]:
    """`consent`: "true", "false" or "unknown"."""
    qs = EmailAddress.objects.all()
    if blocked is not None:
        qs = qs.filter(blocked=blocked)
    if consent == "true":
        qs = qs.filter(consent=True)
    elif consent == "false":
        qs = qs.filter(consent=False)
    elif consent == "unknown":
        qs = qs.filter(consent__isnull=True)
    if q:
        qs = qs.filter(email__icontains=q.strip().lower())
    return qs.order_by("-modified", "id")


def suppression_list() -> QuerySet[EmailAddress]:
    """The addresses no campaign mails: blocked, or unsubscribed (consent false); by address."""
    return EmailAddress.objects.filter(Q(blocked=True) | Q(consent=False)).order_by("email")


def suppression_list_csv() -> Iterator[str]:
    """The suppression list as CSV lines `email,reason` — the block list import's columns, so the file loads as a
    block list here or into another sender. The reason says why: `blocked: <reason>` or `unsubscribed`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["email", "reason"])
    rows = suppression_list().values_list("email", "blocked", "blocked_reason")
    for email, blocked, blocked_reason in rows.iterator(chunk_size=5000):
        writer.writerow([email, f"blocked: {blocked_reason}".strip().rstrip(":") if blocked else "unsubscribed"])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def address_events(*, email: str, limit: int = 200) -> list[CustomerEvent]:
    """The email events of one address, newest first (what led to its state)."""
    return list(
        CustomerEvent.objects.filter(source__slug=SOURCE_SLUG, payload__email=email).order_by("-event_time", "-id")[
            :limit
        ]
    )


def addresses_of_entity(*, entity_id: str) -> list[dict]:
    """The entity's stitched email addresses (stitching's identifiers) with their state, for the profile page."""
    from stitching.selectors import entity_identifier_values

    emails = entity_identifier_values(entity_id=entity_id, category_id="email")
    states = {a.email: a for a in EmailAddress.objects.filter(email__in=emails)}
    return [{"email": e, "state": states.get(e)} for e in emails]


def templates_list() -> QuerySet[EmailTemplate]:
    return EmailTemplate.objects.all()


def campaigns_list() -> QuerySet[Campaign]:
    return Campaign.objects.select_related("template")


def campaign_recipients(*, campaign: Campaign, status: str | None = None) -> QuerySet[CampaignRecipient]:
    qs = CampaignRecipient.objects.filter(campaign=campaign)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("id")


def lease_free() -> Q:
    """Campaigns no run holds: no lease, or an expired one (in the database's time)."""
    return Q(run_lease_until__isnull=True) | Q(run_lease_until__lt=Now())


def campaigns_stalled(*, lease: timedelta) -> list[int]:
    """Campaigns to run again: one whose run died (unfinished, its lease expired), or queued for longer than a
    `lease` without a run starting (its message lost: the broker was down at commit, say)."""
    waited = Q(started__isnull=False) | Q(created__lt=Now() - lease)
    stalled = Campaign.objects.filter(lease_free(), waited, status__in=Campaign.UNFINISHED).order_by("pk")
    return list(stalled.values_list("pk", flat=True))
