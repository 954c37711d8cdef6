"""A small HTTP client for loaders: JSON in and out, retries with backoff, secrets scrubbed from every message.

Transient failures — timeouts, connection errors, 429 and 5xx — are retried with exponential backoff (with
jitter, capped), honouring `Retry-After` (seconds or an HTTP date, capped at `retry_after_cap`). Other 4xx are
permanent: a `LoaderError(permanent=True)` carrying the provider's own message (extracted by `error_message`).
When the retries run out the error is transient (`permanent=False`): the export can be resumed later; it is
`undelivered` when no attempt can have reached the destination (connection refused, unknown host, 429 / 503 / 408
/ 425), so even a destination that does not deduplicate may get the request again.

The sleep between attempts is injectable (`sleep=`), so tests exercise Retry-After without waiting.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from loaders.base import LoaderError, scrub

logger = logging.getLogger("loaders.http")

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# Answers that say the request was not taken in (unlike a 500 or a gateway timeout, after which it may have been).
NOT_TAKEN_STATUSES = frozenset({408, 425, 429, 503})


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _default_error_message(response: Response) -> str:
    data = response.json()
    if isinstance(data, dict):
        for key in ("message", "error", "detail"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return value["message"]
    text = response.body[:300].decode("utf-8", "replace").strip()
    return text or f"HTTP {response.status}"


def _address_refusal(url: str) -> str | None:
    """Why `url`'s host may not be called: it is, or resolves to, an address that is not public (loopback, private,
    link-local such as the cloud metadata service, ...), unless CDP_DESTINATIONS_ALLOW_PRIVATE. None when it may.
    (Checked before each attempt; a name re-resolved between the check and the connection is not covered.)"""
    from django.conf import settings

    if settings.CDP_DESTINATIONS_ALLOW_PRIVATE:
        return None
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        return f"the URL cannot be read ({exc})"
    if not host:
        return "the URL has no host"
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)}
    except (socket.gaierror, UnicodeError):
        return None  # unknown host: the attempt itself fails with "could not be reached"
    for address in sorted(found):
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if getattr(ip, "ipv4_mapped", None):
            ip = ip.ipv4_mapped
        if not ip.is_global:
            return (
                f"{host} is a non-public address ({ip}); destinations are reached over the internet only "
                "(set CDP_DESTINATIONS_ALLOW_PRIVATE=1 for a receiver inside your network)"
            )
    return None


# No proxies: destinations are reached directly (and tests' loopback servers must not go through one).
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class HttpClient:
    provider: str
    secrets: Iterable[str] = ()
    sleep: Callable[[float], None] | None = None
    attempts: int = 6
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    retry_after_cap: float = 300.0
    timeout: float = 30.0
    error_message: Callable[[Response], str] = _default_error_message
    log: Callable[[str], None] | None = None
    default_headers: dict[str, str] = field(default_factory=dict)

    def _scrub(self, text: str) -> str:
        return scrub(text, self.secrets)

    def _wait(self, seconds: float) -> None:
        (self.sleep or time.sleep)(seconds)

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_cap, self.backoff_base * (2 ** (attempt - 1)))
        return delay * (0.5 + random.random() / 2)  # jitter: several workers do not retry in lock-step

    def _send(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> Response:
        if not url.startswith(("http://", "https://")):
            raise LoaderError(f"{self.provider}: only http(s) URLs can be called.", permanent=True)
        if refusal := _address_refusal(url):
            raise LoaderError(f"{self.provider}: {refusal}.", permanent=True)
        request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310 (checked above)
        try:
            with _opener.open(request, timeout=self.timeout) as raw:
                return Response(raw.status, {k.lower(): v for k, v in raw.headers.items()}, raw.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return Response(exc.code, {k.lower(): v for k, v in (exc.headers or {}).items()}, exc.read())

    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        accept: Iterable[int] = (),
        sign: Callable[[bytes], dict[str, str]] | None = None,
    ) -> Response:
        """Send, retrying transient failures. Returns 2xx responses and statuses in `accept`; raises otherwise.

        `sign(body)` gives headers computed afresh for every attempt (a signature over a timestamp: a retry after
        minutes of backoff must not carry the first attempt's timestamp, which the receiver rejects as too old)."""
        all_headers = {"Accept": "application/json", "User-Agent": "cdp-loader/1", **self.default_headers}
        if json is not None:
            body = orjson.dumps(json)
            all_headers["Content-Type"] = "application/json"
        all_headers.update(headers or {})
        accepted = set(accept)
        last_problem = ""
        maybe_delivered = False  # an attempt may have reached the destination (a timeout, a 500...)
        for attempt in range(1, self.attempts + 1):
            delay: float | None = None
            try:
                response = self._send(method, url, body, {**all_headers, **sign(body or b"")} if sign else all_headers)
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                last_problem = f"{self.provider} could not be reached ({type(exc).__name__}: {reason})"
                if not isinstance(reason, ConnectionRefusedError | socket.gaierror):
                    maybe_delivered = True
            else:
                if 200 <= response.status < 300 or response.status in accepted:
                    return response
                message = self._scrub(self.error_message(response))
                if response.status not in RETRY_STATUSES:
                    raise LoaderError(
                        f"{self.provider} refused the request (HTTP {response.status}): {message}",
                        permanent=True,
                        status=response.status,
                    )
                last_problem = f"{self.provider} answered HTTP {response.status}: {message}"
                if response.status not in NOT_TAKEN_STATUSES:
                    maybe_delivered = True
                retry_after = retry_after_seconds(response.headers.get("retry-after"))
                if retry_after is not None:
                    delay = min(retry_after, self.retry_after_cap)
            if attempt == self.attempts:
                break
            if delay is None:
                delay = self._backoff(attempt)
            note = self._scrub(f"{last_problem}; retrying in {delay:.1f}s (attempt {attempt + 1}/{self.attempts})")
            logger.warning(note)
            if self.log:
                self.log(note)
            self._wait(delay)
        raise LoaderError(
            self._scrub(f"{last_problem}; gave up after {self.attempts} attempts"),
            permanent=False,
            undelivered=not maybe_delivered,
        )
