"""One waiting task message for a stream of requests: `Coalesced` (used by stitching and the email feedback).

A producer that would enqueue a Celery task after every ingest call (a webhook, an API batch) instead asks for a
run: the task is enqueued only when no run is waiting. A flag in the shared cache (Redis `SET NX` with a TTL)
says "a run is queued and has not started"; the task clears it when it starts, before it reads its work, so work
committed after that asks for (and gets) another run. Within `local_seconds` after a process saw the flag set it
does not ask again (a busy stream costs a few cache round trips per second per process, not one per request);
for work committed in that window after the run's last look, a run that was flagged schedules one more run
`local_seconds` later (`Coalesced.started` says when). Should a queued message be lost, the flag expires after
`ttl` seconds and the beat's safety net runs the task anyway. Without a cache the producer enqueues every time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.core.cache import cache

from cdp.ratelimit import redis_client

logger = logging.getLogger(__name__)


class Coalesced:
    def __init__(self, flag: str, *, ttl: int = 60, local_seconds: float = 0.5):
        self.flag = flag
        self.ttl = ttl
        self.local_seconds = local_seconds
        self.seen = 0.0  # monotonic time this process last saw the flag set

    def request(self, enqueue: Callable[[], object]) -> None:
        """Call `enqueue` unless a run is known to be waiting."""
        now = time.monotonic()
        if now - self.seen < self.local_seconds:
            return
        try:
            waiting = not self._set()
        except Exception:  # noqa: BLE001 - without the cache, enqueue every time rather than risk a late run
            logger.warning("coalesced task %s: cache unavailable, enqueueing", self.flag, exc_info=True)
            waiting = False
        else:
            self.seen = now
        if not waiting:
            enqueue()

    def started(self) -> bool:
        """Called by the task when it starts, before it reads its work: clears the flag; True when it was set
        (the run was asked for: schedule one more run `local_seconds` after this one ends)."""
        self.seen = 0.0
        try:
            return self._clear()
        except Exception:  # noqa: BLE001 - the flag only saves messages; the work goes on without the cache
            logger.warning("coalesced task %s: could not clear the flag", self.flag, exc_info=True)
            return False

    def forget(self) -> None:
        """Clear the flag and this process's memory of it (tests)."""
        self.seen = 0.0
        cache.delete(self.flag)

    def _set(self) -> bool:
        client = redis_client(self.flag)
        if client is None:
            return cache.add(self.flag, 1, timeout=self.ttl)
        # The raw client: the cache API's add() built a client and pickled the value (~0.7 ms of CPU per call).
        return bool(client.set(cache.make_and_validate_key(self.flag), b"1", nx=True, ex=self.ttl))

    def _clear(self) -> bool:
        client = redis_client(self.flag)
        if client is None:
            return bool(cache.delete(self.flag))
        return bool(client.delete(cache.make_and_validate_key(self.flag)))
