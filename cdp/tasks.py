"""Celery tasks of the core app. Thin: each loads what it needs and calls a service.

Periodic ones are scheduled in settings.CELERY_BEAT_SCHEDULE (run `celery -A cdp beat` once per deployment).
"""

from datetime import timedelta

from celery import shared_task

from cdp.celery import enqueue_with_safety_net
from cdp.services import attributes as attribute_services
from cdp.services import auth, idempotency

# Revoked or expired tokens stay visible this long (to trace a leaked key) before they are deleted.
TOKENS_PURGE_AFTER = timedelta(days=30)


@shared_task(name="cdp.tasks.tokens_purge")
def tokens_purge() -> int:
    """Delete API tokens revoked or expired more than 30 days ago; returns how many were deleted."""
    return auth.tokens_purge(older_than=TOKENS_PURGE_AFTER)


@shared_task(name="cdp.tasks.idempotent_requests_purge")
def idempotent_requests_purge() -> int:
    """Delete the saved responses of idempotent API requests older than CDP_IDEMPOTENCY_TTL_HOURS."""
    return idempotency.idempotent_requests_purge()


@shared_task(name="cdp.tasks.ping")
def ping() -> str:
    """Answers "pong": proves a worker consumes the queue (health checks, test harness)."""
    return "pong"


# Customers per task run: the task re-enqueues itself while more are stale, so one run never holds a worker long.
ATTRIBUTES_RECOMPUTE_LIMIT = 50_000


@shared_task(name="cdp.tasks.attributes_recompute")
def attributes_recompute(entity_ids: list[str] | None = None) -> int:
    """Recompute stale customers' attributes (or the given ones); re-enqueues itself while stale ones remain.

    Idempotent and safe to run in several workers at once (batches are claimed with SKIP LOCKED).
    """
    done = attribute_services.attributes_recompute(entity_ids=entity_ids, limit=ATTRIBUTES_RECOMPUTE_LIMIT)
    if entity_ids is None and done >= ATTRIBUTES_RECOMPUTE_LIMIT and attribute_services.stale_entities_exist():
        attributes_recompute.delay()
    return done


def attributes_recompute_enqueue() -> None:
    """Run after a commit that left customers stale: a Celery task with a broker; in-process without one (the
    demo), calling the service directly rather than an eager task (no broker connection attempt, no nesting)."""
    from django.conf import settings

    if settings.CELERY_BROKER_URL:
        enqueue_with_safety_net(attributes_recompute.delay, what="recomputing attributes")
    else:
        attribute_services.attributes_recompute()
