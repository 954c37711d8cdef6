"""Stitching tasks. Thin: they call the engine, which claims work with SKIP LOCKED and is idempotent."""

from celery import shared_task
from django.conf import settings

from stitching.services import engine

BATCH = 5000


@shared_task(name="stitching.tasks.stitch_pending")
def stitch_pending(limit: int = BATCH) -> int:
    """Stitch one batch of unstitched events; re-enqueue while more remain. Returns how many were assigned."""
    report = engine.stitch_pending(limit=limit)
    if report.remaining:
        stitch_pending.delay(limit)
    return report.events


def stitch_pending_enqueue(count: int) -> None:
    """cdp.hooks.on_events_ingested callback: runs after the new events committed.

    Without a broker there is no worker, and stitching a whole file import in-process would turn every
    `load_events` into a full stitch: then stitching waits for `manage.py restitch` (or a broker)."""
    if not settings.CELERY_BROKER_URL:
        return
    stitch_pending.delay()
