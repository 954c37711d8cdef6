"""Celery tasks of the email channel. Thin: ids in, a service call; enqueued after commit by the services."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from cdp.celery import PersonalDataTask, enqueue_with_safety_net
from cdp.coalesce import Coalesced
from emails.providers import ProviderError

MAX_RETRIES = 5
logger = logging.getLogger(__name__)


@shared_task(name="emails.tasks.opt_in_email_send", bind=True, max_retries=MAX_RETRIES, base=PersonalDataTask)
def opt_in_email_send(self, email: str, request_id: str, base_url: str = "") -> str:
    """Send one opt-in email (at most one per address per frequency window; see the service). The address is
    logged as '<redacted>' (PersonalDataTask)."""
    from emails.services.subscriptions import opt_in_email_send as send

    try:
        return send(email=email, request_id=request_id, base_url=base_url)
    except ProviderError as exc:
        if exc.permanent or self.request.called_directly:
            # A warning, not only the task's INFO "succeeded" line: no subscriber gets a confirmation link until the
            # channel is fixed (a missing sender address, bad credentials).
            logger.warning("opt-in email for request %s not sent: %s", request_id, exc)
            return f"failed: {exc}"
        countdown = exc.retry_after or min(600, 10 * 2**self.request.retries)
        raise self.retry(countdown=countdown, exc=exc) from None


@shared_task(name="emails.tasks.import_run")
def import_run(job_id: int) -> str:
    from emails.services.imports import import_job_run

    return import_job_run(job_id=job_id)


@shared_task(name="emails.tasks.import_jobs_resume")
def import_jobs_resume() -> int:
    """The beat's watchdog for imports: run again the jobs whose worker died or whose task message was lost."""
    from emails.services.imports import import_jobs_resume as resume

    job_ids = resume()
    for job_id in job_ids:
        import_run.delay(job_id)
    return len(job_ids)


@shared_task(name="emails.tasks.campaign_run", acks_late=True)
def campaign_run(campaign_id: int) -> str:
    from emails.services.campaigns import campaign_run as run

    return run(campaign_id=campaign_id)


@shared_task(name="emails.tasks.campaigns_resume")
def campaigns_resume() -> int:
    """The beat's watchdog: run again the campaigns whose run died (their lease expired) or never started."""
    from emails.services.campaigns import campaigns_resume as resume

    reserved = resume()
    for campaign_id in reserved:
        campaign_run.delay(campaign_id)
    return len(reserved)


# One waiting feedback_apply message for a stream of webhooks (see cdp.coalesce).
FEEDBACK_QUEUED = Coalesced("emails:feedback-apply-queued")


@shared_task(name="emails.tasks.feedback_apply")
def feedback_apply() -> int:
    """Apply the accepted webhook payloads (the inbox), in order. Also the beat's safety net."""
    from emails.services.feedback import feedback_apply as apply

    flagged = FEEDBACK_QUEUED.started()
    applied = apply()
    if flagged:
        feedback_apply.apply_async(countdown=FEEDBACK_QUEUED.local_seconds + 0.1)
    return applied


def feedback_apply_enqueue() -> None:
    """After a webhook's payload committed: a worker applies it within moments; without a broker, here."""
    if settings.CELERY_BROKER_URL:
        enqueue_with_safety_net(lambda: FEEDBACK_QUEUED.request(feedback_apply.delay), what="applying webhooks")
    else:
        from emails.services.feedback import feedback_apply as apply

        apply()
