"""A fixed-window, per-client-IP rate limiter for the public (unauthenticated) endpoints.

Counters live in the Django cache, which is Redis in production (`REDIS_URL`), so every web process and host
shares them. The limit is the global setting `public_rate_limit_per_minute` (0 = unlimited), read at most every
a few seconds per process so a request does not cost a database query. Each scope (one public API,
e.g. "segment" for all of /v1/*) has its own counter per IP and minute.

Use it as a decorator on a view::

    @rate_limited("audience")
    def audience_view(request): ...

or call `rate_limit_response(request, scope=...)` and return its answer when it is not None. Over the limit the
client gets 429 with `Retry-After` (seconds to the next window) and the usual JSON error body.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse

from cdp.api.errors import error_body

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
SETTING_KEY = "public_rate_limit_per_minute"


def rate_limit_per_minute() -> int:
    """The configured limit (0 = unlimited), cached per process for a few seconds."""
    from cdp.services.global_settings import global_setting_cached

    return int(global_setting_cached(SETTING_KEY) or 0)


def rate_limits_reset() -> None:
    """Forget every client's count (shared counters and this process's pending batches) and the cached settings:
    a fresh start for tests, or after an operator lifted a block."""
    rate_limit_setting_forget()
    with _pending_lock:
        _pending.clear()
    client = redis_client("ratelimit:")
    if client is not None:
        pattern = cache.make_and_validate_key("ratelimit:") + "*"
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
    else:
        cache.clear()


def rate_limit_setting_forget() -> None:
    """Drop the per-process copy of the settings so the next request reads them (tests, admin changes)."""
    from cdp.services.global_settings import global_settings_cache_clear

    global_settings_cache_clear()


class EnvironRequest:
    """What the rate limiter reads of a request, for callers without a Django request (the WSGI fast lane): its
    META, here the WSGI environ."""

    __slots__ = ("META",)

    def __init__(self, environ: dict):
        self.META = environ


def client_ip(request: HttpRequest) -> str:
    """The client's IP: the first X-Forwarded-For entry when settings.TRUST_X_FORWARDED_FOR, else REMOTE_ADDR.

    Only trust X-Forwarded-For behind a proxy that overwrites it; otherwise any client could pick its own IP.
    """
    if getattr(settings, "TRUST_X_FORWARDED_FOR", False):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        first = forwarded.split(",", 1)[0].strip()
        if first:
            try:
                return str(ipaddress.ip_address(first))
            except ValueError:
                pass  # junk in the header: fall back to the address we really saw
    return request.META.get("REMOTE_ADDR") or "unknown"


_clients: dict[int, object] = {}


def redis_client(key: str):
    """The raw redis client behind Django's Redis cache backend (one per process and backend: building a
    redis.Redis costs more than the round trip), or None for other backends. Keys must go through
    `cache.make_and_validate_key` to share the cache's prefix and version."""
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return None
    client = _clients.get(id(backend._cache))
    if client is None:
        client = _clients[id(backend._cache)] = backend._cache.get_client(key, write=True)
    return client


def _window_count(key: str, amount: int = 1) -> int:
    """Add `amount` requests to the window's counter; returns the count including them."""
    client = redis_client(key)
    if client is not None:
        # One round trip (INCRBY + EXPIRE NX pipelined) instead of the cache API's EXISTS, INCR (and ADD).
        with client.pipeline(transaction=False) as pipe:
            pipe.incrby(cache.make_and_validate_key(key), amount)
            pipe.expire(cache.make_and_validate_key(key), WINDOW_SECONDS + 5, nx=True)
            return int(pipe.execute()[0])
    try:
        return cache.incr(key, amount)
    except ValueError:  # no counter yet in this window
        if cache.add(key, amount, timeout=WINDOW_SECONDS + 5):
            return amount
        return cache.incr(key, amount)  # another request created it meanwhile


# Per-process batching of the shared counter. A client's requests are counted here and added to the shared counter
# in batches of `_batch_size(limit)` (1% of the limit; 1, i.e. every request, for limits up to 199 per minute),
# and whenever the last known shared count plus this process's pending requests would pass the limit. Each
# process can so let a client exceed the limit by less than one batch (under 1%), and a busy client costs one
# cache round trip per batch instead of one per request (the Audience API is called on every page view).
_pending: dict[str, list[int]] = {}  # key -> [requests not yet added to the shared counter, last shared count]
_pending_window = [0]
_pending_lock = threading.Lock()


def _batch_size(limit: int) -> int:
    return max(1, limit // 100)


def _counted(key: str, window: int, limit: int) -> int | None:
    """Count one request; the shared count when it was synchronised (None: still within this process's batch)."""
    with _pending_lock:
        if _pending_window[0] != window:  # a new window: the old counters are over
            _pending.clear()
            _pending_window[0] = window
        entry = _pending.setdefault(key, [0, 0])
        entry[0] += 1
        if entry[0] < _batch_size(limit) and entry[1] + entry[0] <= limit:
            return None
        amount, entry[0] = entry[0], 0
    try:
        count = _window_count(key, amount)
    except Exception:
        with _pending_lock:
            if _pending_window[0] == window:
                _pending.setdefault(key, [0, 0])[0] += amount  # retried with the next request
        raise
    with _pending_lock:
        if _pending_window[0] == window and key in _pending:
            _pending[key][1] = count
    return count


def rate_limit_response(request: HttpRequest, *, scope: str) -> HttpResponse | None:
    """Count this request; a 429 response when the client is over the limit, else None.

    Fails open: when the cache is unreachable the request is served (and a warning logged), because losing
    events is worse than briefly not limiting.
    """
    limit = rate_limit_per_minute()
    if limit <= 0:
        return None
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    key = f"ratelimit:{scope}:{client_ip(request)}:{window}"
    try:
        count = _counted(key, window, limit)
    except Exception:  # noqa: BLE001 - any cache failure: serve rather than fail
        logger.warning("rate limit cache unavailable; request not limited", exc_info=True)
        return None
    if count is None or count <= limit:
        return None
    retry_after = max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))
    response = JsonResponse(
        error_body(
            f"Too many requests: at most {limit} per minute from one client. Retry after {retry_after} seconds.",
            code="rate_limited",
        ),
        status=429,
    )
    response["Retry-After"] = str(retry_after)
    return response


def rate_limited(scope: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Decorator for a public view: counts each request (CORS preflights excepted) against `scope`'s limit."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method != "OPTIONS":
                limited = rate_limit_response(request, scope=scope)
                if limited is not None:
                    return limited
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
