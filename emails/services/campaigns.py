"""Campaigns: send a template to a segment (API "Email Activations" / "Email Exports").

1. `campaign_create` checks the user may see the segment (segments' ACL) and enqueues `campaign_run` after commit.
2. Preparation is one INSERT ... SELECT: the segment's members (segments.selectors.segment_members_sql) →
   their stitched email identifiers (unique per value: one owner each) → one recipient row per address,
   already marked `skipped` with the reason (`blocked`, `unsubscribed`, `no_consent`) unless the address has
   consent and is not blocked. Rows are unique
   per (campaign, address) and inserted ON CONFLICT DO NOTHING, so a retried preparation adds nobody twice.
3. Sending reads pending rows in batches and claims each (pending → sending) just before handing it to the
   one sending service (which refuses blocked addresses again, in case one was blocked meanwhile; an address
   unsubscribed meanwhile is skipped too), paced to the
   channel's `send_rate_per_second`; a provider's rate-limit answer waits and retries. A row left in `sending`
   by a worker that died is never sent again (it becomes `failed` / "interrupted"): nobody gets a campaign twice;
   that is at most the one row it was handing over, the rest of its batch is still pending: nobody is skipped.
4. Progress (counters) is written after every batch; the report counts sent / failed / skipped by reason.
5. One run at a time: a run holds a lease on its campaign (renewed as it sends). The beat's watchdog
   (`emails.tasks.campaigns_resume`) runs again a campaign whose run died once its lease expired.
6. A marketer can pause an unfinished campaign (`campaign_pause`): its run stops before its next send (within
   a second), the rows it had not sent stay pending, and the watchdog leaves it alone; `campaign_resume` queues it
   again and it goes on with those rows (the audience prepared before the pause). A provider refusing the channel
   itself (bad credentials, a refused sender: ProviderError.channel) pauses the campaign the same way, with the
   reason, instead of failing every recipient one by one.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count, F, Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from cdp.celery import enqueue_with_safety_net
from emails.models import Campaign, CampaignRecipient, EmailAddress, EmailTemplate
from emails.providers import OutgoingEmail, ProviderError, provider_for
from emails.selectors import campaigns_stalled, lease_free
from emails.services.channel import channel_get
from emails.services.sending import RecipientBlocked, email_send
from emails.services.subscriptions import one_click_url
from emails.services.templates import PLACEHOLDERS, template_render, template_unknown_placeholders

logger = logging.getLogger(__name__)

BATCH_SIZE = 100
MAX_SEND_ATTEMPTS = 3
MAX_RETRY_WAIT_SECONDS = 60.0
# A run's lease on its campaign: renewed before a send once RENEW_AFTER has passed, so it outlasts the longest
# wait between two renewals (a provider's rate-limit answer waits at most MAX_RETRY_WAIT_SECONDS, then a send);
# a run that died is taken over once its lease expires.
LEASE = timedelta(minutes=5)
RENEW_AFTER = timedelta(minutes=1)
# Preparing is one INSERT ... SELECT over the segment (seconds for 100k members): while it runs the lease cannot be
# renewed, so it is taken for this long (a run that dies while preparing is taken over after it).
PREPARE_LEASE = timedelta(hours=1)
# A run that ends in an unexpected error (not a refused segment or a provider's answer) is raised and run again by
# the watchdog; this many in a row fail the campaign with the last error.
MAX_RUN_FAILURES = 3
# The counters (what the admin's progress bar and the API's `percent` show) are written after every batch and, within
# a batch (100 sends take 10 s at 10 emails/s, 100 s at 1/s), at most this often.
PROGRESS_EVERY = timedelta(seconds=2)
# How often a sending run looks whether the campaign was paused (one indexed read).
PAUSE_CHECK_EVERY = timedelta(seconds=1)


def recipients_members_sql(*, segment_id: int) -> tuple[str, list[Any]]:
    """SQL selecting `id` of the customer entities to mail (the segment's members), and its parameters.

    The one place campaigns learn who is in a segment: segments.selectors compiles the segment's conditions."""
    from segments.models import Segment
    from segments.selectors import segment_members_sql

    segment = Segment.objects.filter(pk=segment_id).first()
    if segment is None:
        raise ValidationError({"segment_id": f"Segment {segment_id} does not exist."})
    return segment_members_sql(segment=segment)


@transaction.atomic
def campaign_create(*, name: str, template: EmailTemplate, segment_id: int, user: Any, start: bool = True) -> Campaign:
    """A campaign of `template` to the segment the user may see; queued to run after commit when `start`."""
    from segments.selectors import segment_get_visible

    segment = segment_get_visible(user=user, segment_id=segment_id)  # Http404 when the ACL hides it
    if not (name or "").strip():
        raise ValidationError({"name": "A name is required."})
    problem = unsubscribe_link_problem(channel_get())
    if start and problem:
        raise ValidationError({"channel": problem})
    if start and (unknown := template_unknown_placeholders(template)):
        raise ValidationError({"template": f"The template uses {_braced(unknown)}, which a campaign cannot fill in: "
                                           "every email would show it as typed. A campaign fills in "
                                           f"{_braced(PLACEHOLDERS)}."})  # fmt: skip
    campaign = Campaign.objects.create(
        name=name.strip()[:200], template=template, segment_id=segment.pk,
        status=Campaign.Status.QUEUED if start else Campaign.Status.DRAFT,
        created_by=user if getattr(user, "pk", None) else None,
    )  # fmt: skip
    if start:
        campaign_enqueue(campaign=campaign)
    return campaign


def _braced(names: Any) -> str:
    return ", ".join(f"{{{{ {name} }}}}" for name in names)


@transaction.atomic
def campaign_pause(*, campaign: Campaign) -> Campaign:
    """Stop sending a queued, preparing or sending campaign: its run stops before its next send and the recipients
    not mailed yet stay pending until `campaign_resume`. ValidationError when the campaign is not unfinished."""
    if not Campaign.objects.filter(pk=campaign.pk, status__in=Campaign.UNFINISHED).update(
        status=Campaign.Status.PAUSED
    ):
        campaign.refresh_from_db(fields=["status"])
        raise ValidationError({"status": f"The campaign is {campaign.get_status_display().lower()}: only a queued, "
                                         "preparing or sending campaign can be paused."})  # fmt: skip
    campaign.refresh_from_db()
    return campaign


@transaction.atomic
def campaign_resume(*, campaign: Campaign) -> Campaign:
    """Queue a paused campaign again (after commit): it sends to the recipients it had not mailed yet."""

    if not Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.PAUSED).update(
        status=Campaign.Status.QUEUED, run_failures=0, message=""
    ):
        campaign.refresh_from_db(fields=["status"])
        raise ValidationError({"status": f"The campaign is {campaign.get_status_display().lower()}: only a paused "
                                         "campaign can be resumed."})  # fmt: skip
    transaction.on_commit(lambda: _run_enqueue(campaign.pk))
    campaign.refresh_from_db()
    return campaign


def campaign_enqueue(*, campaign: Campaign) -> None:
    Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.DRAFT).update(status=Campaign.Status.QUEUED)
    transaction.on_commit(lambda: _run_enqueue(campaign.pk))


def _run_enqueue(campaign_id: int) -> None:
    """Run the campaign in a worker. Without a broker (Redis down) it stays queued, which its message says, and the
    watchdog (campaigns_resume) runs it once the broker is back: the request that started it still succeeds."""
    from emails.tasks import campaign_run as task

    if not enqueue_with_safety_net(lambda: task.delay(campaign_id), what=f"campaign {campaign_id}"):
        minutes = round(LEASE.total_seconds() / 60)
        Campaign.objects.filter(pk=campaign_id, status=Campaign.Status.QUEUED).update(
            message="The task queue is unavailable: the campaign waits for it. The watchdog starts it once the queue "
            f"is back (it takes campaigns queued for over {minutes} minutes)."
        )


# Identifier values are collated "C" and email addresses by the database default: the join compares in the
# addresses' collation so that their unique index can look an address up (a "C" comparison cannot use it).
_PREPARE_SQL = """
INSERT INTO emails_campaignrecipient
    (campaign_id, email, customer_entity_id, status, reason, message_id, provider_message_id, attempts)
SELECT %s, i.value, i.customer_entity_id,
       CASE WHEN a.blocked THEN 'skipped' WHEN a.consent THEN 'pending' ELSE 'skipped' END,
       CASE WHEN a.blocked THEN 'blocked' WHEN a.consent THEN '' WHEN a.consent = false THEN 'unsubscribed'
            ELSE 'no_consent' END,
       md5(%s || ':' || i.value), '', 0
FROM ({members}) AS m
JOIN stitching_identifiers i ON i.customer_entity_id = m.id AND i.category_id = 'email'
LEFT JOIN emails_emailaddress a ON a.email = i.value COLLATE "default"
ON CONFLICT (campaign_id, email) DO NOTHING
"""


def campaign_prepare(*, campaign: Campaign) -> int:
    """Insert the campaign's recipient rows (idempotent); returns how many were new."""
    members, params = recipients_members_sql(segment_id=campaign.segment_id)
    with transaction.atomic(), connection.cursor() as cursor:
        # Hash joins over a large segment's members, identifiers and address states stay in memory.
        cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute(_PREPARE_SQL.format(members=members), [campaign.pk, f"c{campaign.pk}", *params])
        inserted = cursor.rowcount
    campaign_progress_save(campaign=campaign)
    return inserted


def campaign_report(*, campaign: Campaign) -> dict[str, Any]:
    rows = CampaignRecipient.objects.filter(campaign=campaign).values("status", "reason").annotate(n=Count("id"))
    report: dict[str, Any] = {"sent": 0, "failed": 0, "pending": 0, "skipped": {}}
    for row in rows:
        if row["status"] == CampaignRecipient.Status.SKIPPED:
            report["skipped"][row["reason"] or "other"] = report["skipped"].get(row["reason"] or "other", 0) + row["n"]
        elif row["status"] in (CampaignRecipient.Status.PENDING, CampaignRecipient.Status.SENDING):
            report["pending"] += row["n"]
        else:
            report[row["status"]] += row["n"]
    return report


def campaign_failure_reasons(*, campaign: Campaign, limit: int = 5) -> list[tuple[str, int]]:
    """The commonest reasons the campaign's failed recipients failed, with how many each: a campaign page that said
    only "failed 21" left the marketer to guess (an unreachable SMTP server, a refused address ...)."""
    rows = (
        CampaignRecipient.objects.filter(campaign=campaign, status=CampaignRecipient.Status.FAILED)
        .values("reason")
        .annotate(n=Count("id"))
        .order_by("-n", "reason")[:limit]
    )
    return [(row["reason"] or "no reason given", row["n"]) for row in rows]


def campaign_progress_save(*, campaign: Campaign) -> None:
    report = campaign_report(campaign=campaign)
    campaign.sent = report["sent"]
    campaign.failed = report["failed"]
    campaign.skipped = sum(report["skipped"].values())
    campaign.total = campaign.sent + campaign.failed + campaign.skipped + report["pending"]
    Campaign.objects.filter(pk=campaign.pk).update(
        sent=campaign.sent, failed=campaign.failed, skipped=campaign.skipped, total=campaign.total
    )


def unsubscribe_link_problem(channel: Any) -> str | None:
    """Why the campaign emails' unsubscribe links would not work, or None. They are absolute URLs built from the
    channel's public base URL (or its own unsubscribe page): without either they would be relative, dead links."""
    if channel.public_base_url or channel.unsubscribe_page_url:
        return None
    return ("the email channel has no public base URL (or unsubscribe page URL), so the unsubscribe link in every "
            "email would not work: set it in the email channel's settings first.")  # fmt: skip


def unsubscribe_url(*, base_url: str, email: str, campaign: Campaign, subject: str, message_id: str) -> str:
    channel = channel_get()
    page = channel.unsubscribe_page_url or (base_url.rstrip("/") + "/email/unsubscribe.html")
    query = urlencode({"email": email, "campaign_id": campaign.pk, "campaign_name": campaign.name,
                       "subject": subject, "message_id": message_id})  # fmt: skip
    return f"{page}{'&' if '?' in page else '?'}{query}"


def _next_batch(campaign: Campaign) -> list[CampaignRecipient]:
    """The next pending rows, read only: each is claimed (pending → sending) just before its hand-over to the
    provider (_claim), so a run that dies leaves in `sending` only the row it was handing over — a batch marked
    `sending` up front would have left up to BATCH_SIZE rows that were never sent marked "interrupted", never sent.
    (One run sends a campaign at a time: its lease.)"""
    return list(
        CampaignRecipient.objects.filter(campaign=campaign, status=CampaignRecipient.Status.PENDING).order_by("id")[
            :BATCH_SIZE
        ]
    )


def _claim(recipient: CampaignRecipient) -> bool:
    """pending → sending, right before the hand-over; False when the row is not pending any more (erased since it
    was read, or another run's)."""
    return bool(
        CampaignRecipient.objects.filter(
            pk=recipient.pk, email=recipient.email, status=CampaignRecipient.Status.PENDING
        ).update(status=CampaignRecipient.Status.SENDING)
    )


def _finish(recipient: CampaignRecipient, status: str, reason: str = "", provider_message_id: str = "") -> None:
    recipient.status = status
    recipient.reason = reason[:255]
    recipient.provider_message_id = provider_message_id[:255]
    recipient.sent_at = timezone.now() if status == CampaignRecipient.Status.SENT else None
    recipient.save(update_fields=["status", "reason", "provider_message_id", "sent_at", "attempts"])


class LeaseLost(Exception):
    """Another run took the campaign over: this run's lease had expired (it was stalled longer than LEASE)."""


class CampaignPaused(Exception):
    """A marketer paused the campaign (campaign_pause): the run stops before its next send."""


class ChannelRefused(Exception):
    """The provider refused the channel itself (ProviderError.channel: credentials, sender, account): the run
    stops and pauses the campaign with the reason, the recipients not sent wait; resumed once the channel is fixed."""


def _still_unfinished(campaign: Campaign) -> None:
    """CampaignPaused unless the campaign is still to be sent (not paused meanwhile)."""
    status = Campaign.objects.filter(pk=campaign.pk).values_list("status", flat=True).first()
    if status not in Campaign.UNFINISHED:
        raise CampaignPaused
    if status == Campaign.Status.QUEUED:  # paused and resumed before this run noticed: it goes on sending
        Campaign.objects.filter(pk=campaign.pk, status=status).update(status=Campaign.Status.SENDING)


class _Lease:
    """A run's hold on its campaign (Campaign.run_token / run_lease_until): taken when free, expired or only
    reserved by the watchdog (no token), renewed, released at the end. Expiry is in the database's time, so the
    workers' clocks need not agree."""

    def __init__(self, campaign_id: int) -> None:
        self.campaign_id = campaign_id
        self.token = uuid.uuid4()
        self.renewed = time.monotonic()

    def take(self) -> bool:
        free = lease_free() | Q(run_token__isnull=True)  # (no token: only reserved by the watchdog)
        taken = Campaign.objects.filter(free, pk=self.campaign_id, status__in=Campaign.UNFINISHED).update(
            run_token=self.token, run_lease_until=Now() + LEASE
        )
        self.renewed = time.monotonic()
        return taken == 1

    def keep(self, *, force: bool = False, duration: timedelta = LEASE) -> None:
        """Renew when due (or `force`d) for `duration`; LeaseLost when another run holds the campaign now."""
        if not force and time.monotonic() - self.renewed < RENEW_AFTER.total_seconds():
            return
        if not self._mine().update(run_lease_until=Now() + duration):
            raise LeaseLost
        self.renewed = time.monotonic()

    def release(self) -> None:
        self._mine().update(run_token=None, run_lease_until=None)

    def _mine(self) -> QuerySet[Campaign]:
        return Campaign.objects.filter(pk=self.campaign_id, run_token=self.token)


def campaign_run(*, campaign_id: int, sleep: Callable[[float], None] = time.sleep) -> str:
    """Prepare (once) and send a campaign. Idempotent; concurrent runs of one campaign do nothing (the first
    holds its lease), and a run stalled past its lease stops before its next send once another has taken over. A
    run that ends in an unexpected error is counted and raised (the watchdog runs the campaign again); the
    MAX_RUN_FAILURES-th fails the campaign with the error."""
    lease = _Lease(campaign_id)
    if not lease.take():
        status = Campaign.objects.filter(pk=campaign_id).values_list("status", flat=True).first()
        if status == Campaign.Status.PAUSED:
            return "paused"
        return "already running" if status in Campaign.UNFINISHED else "nothing to do"
    try:
        # Read under the lease: a run that finished just before sees the campaign done.
        campaign = Campaign.objects.select_related("template").get(pk=campaign_id)
        return _run_leased(campaign, lease, sleep)
    except LeaseLost:
        return "stopped: another run took the campaign over"
    except CampaignPaused:
        campaign_progress_save(campaign=Campaign(pk=campaign_id))
        return "paused"
    except ChannelRefused as exc:
        campaign_progress_save(campaign=Campaign(pk=campaign_id))
        message = (f"Paused: the email provider refused the channel ({exc}). Fix the email channel's settings, "
                   "then resume the campaign.")  # fmt: skip
        if Campaign.objects.filter(pk=campaign_id, status__in=Campaign.UNFINISHED).update(
            status=Campaign.Status.PAUSED, message=message
        ):
            campaign_notify(campaign_id=campaign_id, title="Campaign “{name}” paused", message=message, error=True)
        return f"paused: {exc}"
    except Exception as exc:
        # The counters as the run left them (the sends since its last progress save): the campaign may stay failed.
        campaign_progress_save(campaign=Campaign(pk=campaign_id))
        Campaign.objects.filter(pk=campaign_id).update(run_failures=F("run_failures") + 1)
        runs = Campaign.objects.values_list("run_failures", flat=True).get(pk=campaign_id)
        if runs < MAX_RUN_FAILURES:
            raise
        logger.exception("campaign %s: run %s failed, the campaign is failed", campaign_id, runs)
        return _fail(Campaign(pk=campaign_id), f"{runs} runs failed, the last one with {type(exc).__name__}: {exc}")
    finally:
        lease.release()


def campaigns_resume() -> list[int]:
    """The watchdog's pass: reserve and return the campaigns to run again (emails.selectors.campaigns_stalled).
    The reservation (a lease without a run's token) keeps the next passes from queueing them again for LEASE while
    their message waits for a worker; the run takes it over."""
    reserved = []
    for campaign_id in campaigns_stalled(lease=LEASE):
        if Campaign.objects.filter(lease_free(), pk=campaign_id).update(run_token=None, run_lease_until=Now() + LEASE):
            reserved.append(campaign_id)
    return reserved


def _run_leased(campaign: Campaign, lease: _Lease, sleep: Callable[[float], None]) -> str:
    if campaign.status not in Campaign.UNFINISHED:
        return "nothing to do"
    # Rows a dead worker left in `sending` may have gone out: never send them again.
    CampaignRecipient.objects.filter(campaign=campaign, status=CampaignRecipient.Status.SENDING).update(
        status=CampaignRecipient.Status.FAILED, reason="interrupted: unknown whether it was sent"
    )
    if campaign.prepared is None:
        if not Campaign.objects.filter(pk=campaign.pk, status__in=Campaign.UNFINISHED).update(
            status=Campaign.Status.PREPARING, started=campaign.started or timezone.now(), message=""
        ):
            raise CampaignPaused
        # One statement that cannot renew the lease: a longer one while it runs. The audience is fixed here: a
        # later run (after a crash) sends to these rows without preparing again.
        lease.keep(force=True, duration=PREPARE_LEASE)
        try:
            campaign_prepare(campaign=campaign)
        except ValidationError as exc:
            return _fail(campaign, "; ".join(exc.messages))
        Campaign.objects.filter(pk=campaign.pk).update(prepared=timezone.now())
        lease.keep(force=True)
    # (Conditional: a campaign paused while it was being prepared stays paused.)
    if not Campaign.objects.filter(pk=campaign.pk, status__in=Campaign.UNFINISHED).update(
        status=Campaign.Status.SENDING,
        message="",  # (e.g. the task queue's outage: over)
    ):
        raise CampaignPaused
    channel = channel_get()
    problem = unsubscribe_link_problem(channel)  # (the channel may have changed since the campaign was created)
    if problem:
        return _fail(campaign, problem)
    try:
        provider = provider_for(channel)
    except ProviderError as exc:
        return _fail(campaign, f"the email channel cannot send: {exc}")
    interval = 1.0 / max(1, channel.send_rate_per_second)
    base_url = channel.public_base_url
    next_send = progress_saved = pause_checked = time.monotonic()
    sent_before = False
    untried: list[int] = []
    try:
        while True:
            lease.keep()
            _still_unfinished(campaign)
            pause_checked = time.monotonic()
            batch = _next_batch(campaign)
            if not batch:
                break
            untried = [recipient.pk for recipient in batch]
            for recipient in batch:
                if sent_before:  # (with 0 when a send took longer than the interval: between every two sends)
                    sleep(max(0.0, next_send - time.monotonic()))
                sent_before = True
                next_send = max(next_send + interval, time.monotonic())
                if time.monotonic() - pause_checked >= PAUSE_CHECK_EVERY.total_seconds():
                    _still_unfinished(campaign)
                    pause_checked = time.monotonic()
                untried.remove(recipient.pk)
                attempts = recipient.attempts  # counted just before each hand-over to the provider
                try:
                    _send_one(campaign, recipient, provider, base_url, sleep, lease)
                except BaseException:
                    if recipient.attempts == attempts:  # failed before the provider had it: not sent
                        untried.append(recipient.pk)
                    raise
                if time.monotonic() - progress_saved >= PROGRESS_EVERY.total_seconds():
                    campaign_progress_save(campaign=campaign)
                    progress_saved = time.monotonic()
            campaign_progress_save(campaign=campaign)
            progress_saved = time.monotonic()
    except BaseException:
        # Claimed rows this run did not hand to the provider were not sent: pending again for the next run (one
        # the provider had stays `sending`: unknown whether it went out).
        CampaignRecipient.objects.filter(pk__in=untried, status=CampaignRecipient.Status.SENDING).update(
            status=CampaignRecipient.Status.PENDING
        )
        raise
    finally:
        provider.close()
    campaign_progress_save(campaign=campaign)
    # (Paused after its last send: it stays paused, and resuming it finds nothing left and finishes it.)
    summary = f"sent {campaign.sent}, skipped {campaign.skipped}, failed {campaign.failed}"
    if Campaign.objects.filter(pk=campaign.pk, status__in=Campaign.UNFINISHED).update(
        status=Campaign.Status.DONE, finished=timezone.now(), run_failures=0
    ):
        campaign_notify(campaign_id=campaign.pk, title="Campaign “{name}” sent", message=f"{summary.capitalize()}.")
    return summary


def _send_one(
    campaign: Campaign,
    recipient: CampaignRecipient,
    provider,
    base_url: str,
    sleep: Callable[[float], None],
    lease: _Lease,
) -> None:
    # The batch was read up to a minute ago (rate-limited sending): an erase since then took the address off the
    # row (GDPR), and it must not be mailed.
    if not CampaignRecipient.objects.filter(pk=recipient.pk, email=recipient.email).exists():
        _finish(recipient, CampaignRecipient.Status.SKIPPED, "erased")
        return
    # An unsubscribe (the page, a one-click POST, a provider's complaint) since preparation: not mailed any more.
    # (A block since is refused by email_send.)
    consent = EmailAddress.objects.filter(email=recipient.email).values_list("consent", flat=True).first()
    if consent is not True:
        _finish(recipient, CampaignRecipient.Status.SKIPPED, "no_consent" if consent is None else "unsubscribed")
        return
    template = campaign.template
    subject = template_render(template, {"email": recipient.email, "campaign_name": campaign.name,
                                         "campaign_id": campaign.pk}).subject  # fmt: skip
    link = unsubscribe_url(base_url=base_url, email=recipient.email, campaign=campaign, subject=subject,
                           message_id=recipient.message_id)  # fmt: skip
    values = {"email": recipient.email, "unsubscribe_url": link, "campaign_id": campaign.pk,
              "campaign_name": campaign.name, "subject": subject, "message_id": recipient.message_id}  # fmt: skip
    rendered = template_render(template, values)
    text = rendered.text
    if link not in text and not (rendered.html and "unsubscribe_url" in template.html_body):
        text = (text + "\n\n" if text else "") + f"Unsubscribe: {link}"
    headers = {"List-Unsubscribe": f"<{link}>", "X-Campaign-Id": str(campaign.pk)}
    if base_url:  # RFC 8058 one-click (our endpoint: it needs the public base URL); the body keeps the page's link
        one_click = one_click_url(base_url=base_url, email=recipient.email, campaign_id=campaign.pk,
                                  message_id=recipient.message_id)  # fmt: skip
        headers.update({"List-Unsubscribe": f"<{one_click}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})
    message = OutgoingEmail(
        to=recipient.email, subject=rendered.subject, text=text, html=rendered.html, headers=headers,
        tags=[f"campaign-{campaign.pk}"], message_id=recipient.message_id,
    )  # fmt: skip
    claimed = False
    while True:
        lease.keep()  # after any wait: a run that stalled past its lease must not send what another now sends
        if not claimed:
            if not _claim(recipient):
                return
            claimed = True
        recipient.attempts += 1
        try:
            provider_id = email_send(message=message, provider=provider)
        except RecipientBlocked:
            _finish(recipient, CampaignRecipient.Status.SKIPPED, "blocked")
            return
        except ProviderError as exc:
            if exc.channel:  # nobody can be sent to: not this recipient's failure, it was not sent
                recipient.attempts -= 1
                raise ChannelRefused(str(exc)) from None
            if exc.permanent or recipient.attempts >= MAX_SEND_ATTEMPTS:
                _finish(recipient, CampaignRecipient.Status.FAILED, str(exc))
                return
            sleep(min(MAX_RETRY_WAIT_SECONDS, exc.retry_after or 2.0**recipient.attempts))
            continue
        _finish(recipient, CampaignRecipient.Status.SENT, provider_message_id=provider_id or "")
        return


def _fail(campaign: Campaign, message: str) -> str:
    if (
        Campaign.objects.filter(pk=campaign.pk)
        .exclude(status=Campaign.Status.FAILED)
        .update(status=Campaign.Status.FAILED, message=message[:2000], finished=timezone.now())
    ):
        campaign_notify(campaign_id=campaign.pk, title="Campaign “{name}” failed", message=message, error=True)
    return f"failed: {message}"


def campaign_notify(*, campaign_id: int, title: str, message: str, error: bool = False) -> None:
    """Tell the user who started the campaign how it ended (admin Notifications, GET /api/notifications/)."""
    from django.urls import NoReverseMatch, reverse

    from notifications.models import Notification
    from notifications.services import notification_create

    campaign = Campaign.objects.select_related("created_by").filter(pk=campaign_id).first()
    if campaign is None or campaign.created_by is None:
        return
    try:
        link = reverse("admin:emails_campaign_change", args=[campaign.pk])
    except NoReverseMatch:
        link = ""
    notification_create(
        user=campaign.created_by, title=title.format(name=campaign.name), message=message, link=link,
        level=Notification.Level.ERROR if error else Notification.Level.SUCCESS,
        object_type="email_campaign", object_id=str(campaign.pk),
    )  # fmt: skip
