"""Stitching tasks. Thin: they call the engine, which claims work with SKIP LOCKED and is idempotent."""

from celery import shared_task

from stitching.services import engine

BATCH = 5000


@shared_task(name="stitching.tasks.stitch_pending", ignore_result=True)
def stitch_pending(limit: int = BATCH) -> int:
    """Stitch one batch of unstitched events; re-enqueue while more remain. Returns how many were assigned."""
    report = engine.stitch_pending(limit=limit)
    if report.remaining:
        stitch_pending.delay(limit)
    return report.events


def stitch_pending_enqueue(count: int) -> None:
    """cdp.hooks.on_events_ingested callback: runs after the new events committed."""
    stitch_pending.delay()
