"""Stitching tasks. Thin: they call the engine, which claims work with SKIP LOCKED and is idempotent."""

from celery import shared_task
from django.conf import settings

from cdp.celery import enqueue_with_safety_net
from cdp.coalesce import Coalesced
from stitching.services import engine

BATCH = 5000
# One waiting stitch_pending message for a stream of ingest calls (see cdp.coalesce).
QUEUED = Coalesced("stitching:pending-task-queued")


@shared_task(name="stitching.tasks.stitch_pending")
def stitch_pending(limit: int = BATCH) -> int:
    """Stitch one batch of unstitched events; re-enqueue while more remain. Returns how many were assigned.
    A run that ingestion asked for schedules one more run shortly after it (cdp.coalesce)."""
    flagged = QUEUED.started()
    report = engine.stitch_pending(limit=limit)
    if report.remaining:
        stitch_pending.delay(limit)
    elif flagged:
        stitch_pending.apply_async((limit,), countdown=QUEUED.local_seconds + 0.1)
    return report.events


def stitch_pending_enqueue(count: int) -> None:
    """cdp.hooks.on_events_ingested callback: runs after the new events committed.

    With a broker, a worker picks the batch up within seconds (one task message while none is waiting, see
    QUEUED). Without one (the demo), stitching runs here, in-process, in a loop rather than through eager
    re-enqueueing (which would nest one call per batch).
    CDP_STITCH_AFTER_INGEST=0 turns it off, e.g. for a bulk import stitched afterwards with `manage.py restitch`.
    """
    if not settings.CDP_STITCH_AFTER_INGEST:
        return
    if settings.CELERY_BROKER_URL:
        enqueue_with_safety_net(lambda: QUEUED.request(stitch_pending.delay), what="stitching new events")
        return
    while engine.stitch_pending(limit=BATCH).remaining:
        pass


@shared_task(name="stitching.tasks.restitch_requested")
def restitch_requested() -> int:
    """Re-stitch the components configuration changes queued (engine.restitch_requested); the beat runs it every
    minute too, so a lost message or a failed run only delays the work. Returns how many events moved."""
    return engine.restitch_requested().events


def restitch_requested_enqueue() -> None:
    """After a configuration change committed: a worker re-stitches what it queued (in process without a broker,
    as before the queue existed: the change's request waits for the split or join)."""
    if settings.CELERY_BROKER_URL:
        enqueue_with_safety_net(restitch_requested.delay, what="re-stitching after a configuration change")
        return
    engine.restitch_requested()
