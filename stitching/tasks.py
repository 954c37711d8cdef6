"""Stitching tasks. Thin: they call the engine, which claims work with SKIP LOCKED and is idempotent."""

import logging
import time

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from cdp.ratelimit import redis_client
from stitching.services import engine

logger = logging.getLogger(__name__)

BATCH = 5000
# Set (in the shared cache) while a stitch_pending task is queued and has not started: ingestion enqueues another
# only when it is not set. A busy webhook or API stream so costs one cache round trip per request instead of a
# task message each. The task clears it before it claims events, so events committed after that enqueue a new
# task; should a queued task be lost, the flag expires and the beat safety net (every minute) stitches anyway.
QUEUED_FLAG = "stitching:pending-task-queued"
QUEUED_FLAG_SECONDS = 60
# Within this many seconds after this process saw the flag set, it does not ask again: a stream of webhooks costs
# a few cache round trips per second per process, not one per request. An event committed in that window after
# the task's last look is stitched by the follow-up run the task schedules (see stitch_pending).
QUEUED_FLAG_LOCAL_SECONDS = 0.5
_flag_seen = [0.0]  # monotonic time this process last saw the flag set


@shared_task(name="stitching.tasks.stitch_pending")
def stitch_pending(limit: int = BATCH) -> int:
    """Stitch one batch of unstitched events; re-enqueue while more remain. Returns how many were assigned.

    When ingestion had flagged it (QUEUED_FLAG), one more run follows QUEUED_FLAG_LOCAL_SECONDS after this one:
    it stitches what a process committed after this run's last look without asking the flag again (a process
    skips the flag for that long after seeing it set). A run that finds the flag unset schedules nothing more."""
    _flag_seen[0] = 0.0  # (in this process; others notice within QUEUED_FLAG_LOCAL_SECONDS)
    try:
        flagged = _flag_clear()
    except Exception:  # noqa: BLE001 - the flag only saves messages; stitching goes on without the cache
        logger.warning("stitching: could not clear the queued-task flag", exc_info=True)
        flagged = False
    report = engine.stitch_pending(limit=limit)
    if report.remaining:
        stitch_pending.delay(limit)
    elif flagged:
        stitch_pending.apply_async((limit,), countdown=QUEUED_FLAG_LOCAL_SECONDS + 0.1)
    return report.events


def stitch_pending_enqueue(count: int) -> None:
    """cdp.hooks.on_events_ingested callback: runs after the new events committed.

    With a broker, a worker picks the batch up within seconds (one task message while none is waiting, see
    QUEUED_FLAG). Without one (the demo), stitching runs here,
    in-process, in a loop rather than through eager re-enqueueing (which would nest one call per batch).
    CDP_STITCH_AFTER_INGEST=0 turns it off, e.g. for a bulk import stitched afterwards with `manage.py restitch`.
    """
    if not settings.CDP_STITCH_AFTER_INGEST:
        return
    if settings.CELERY_BROKER_URL:
        now = time.monotonic()
        if now - _flag_seen[0] < QUEUED_FLAG_LOCAL_SECONDS:
            return
        try:
            queued_already = not _flag_set()
        except Exception:  # noqa: BLE001 - without the cache, enqueue every time rather than risk a late stitch
            queued_already = False
        else:
            _flag_seen[0] = now
        if not queued_already:
            stitch_pending.delay()
        return
    while engine.stitch_pending(limit=BATCH).remaining:
        pass


def _flag_set() -> bool:
    """Set QUEUED_FLAG unless it is set; True when this call set it. One Redis SET NX on the raw client (the
    cache API's add() built a client and pickled the value: ~0.7 ms of CPU per ingest call)."""
    client = redis_client(QUEUED_FLAG)
    if client is None:
        return cache.add(QUEUED_FLAG, 1, timeout=QUEUED_FLAG_SECONDS)
    return bool(client.set(cache.make_and_validate_key(QUEUED_FLAG), b"1", nx=True, ex=QUEUED_FLAG_SECONDS))


def _flag_clear() -> bool:
    """Clear QUEUED_FLAG; True when it was set."""
    client = redis_client(QUEUED_FLAG)
    if client is None:
        return bool(cache.delete(QUEUED_FLAG))
    return bool(client.delete(cache.make_and_validate_key(QUEUED_FLAG)))
