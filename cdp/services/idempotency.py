"""Idempotency keys of API requests: what a retried POST finds (see cdp/api/idempotency.py).

A request claims its (user, key) by a row committed before it does any work; a second request with the key meanwhile
finds the claim and is refused instead of doing the work twice. The claim becomes the saved response when the
request succeeded, and is deleted when it did not (a refused or failed request changed nothing: its retry runs
again). A claim whose process died is taken over after LEASE. Rows, not PostgreSQL advisory locks: with PgBouncer
in transaction mode a session lock and its unlock may run on different server connections.
"""

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from cdp.models import IdempotentRequest
from cdp.services.secrets import SecretUnreadable, secret_decrypt_bytes, secret_encrypt_bytes, secret_hmac

logger = logging.getLogger(__name__)

# Saved responses are encrypted at rest: some carry a secret shown once (a new API token, a source's write key),
# which a retry must be able to show again.
PURPOSE = "cdp.api.idempotent_responses"
# A claim older than this whose request never finished (its process was killed) is taken over by a retry.
LEASE = timedelta(minutes=5)


class Outcome(Enum):
    CLAIMED = "claimed"  # this request does the work
    RUNNING = "running"  # another request with the key is doing it now
    DONE = "done"  # a request with the key succeeded: its response is saved


@dataclass(frozen=True)
class Claim:
    id: int
    created: datetime


def request_fingerprint(*, method: str, path: str, query: str, data: Any) -> str:
    """Keyed digest of what makes a request the same request: the method, the path (trailing slash or not), the
    query string and the parsed body in a canonical form (the same JSON with its keys in another order or other
    spacing is the same body)."""
    body = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    canonical = json.dumps([method.upper(), path.rstrip("/"), query, body])
    return secret_hmac(canonical.encode("utf-8", "surrogatepass"), purpose=PURPOSE)


def _ttl() -> timedelta:
    return timedelta(hours=settings.CDP_IDEMPOTENCY_TTL_HOURS)


def idempotent_request_claim(
    *, user_id: int, key: str, fingerprint: str
) -> tuple[Outcome, IdempotentRequest | Claim | None]:
    """(CLAIMED, Claim) when this request should do the work; (RUNNING, row) or (DONE, row) when another request
    with the key is running or succeeded (the caller compares the row's fingerprint)."""
    now = timezone.now()
    with transaction.atomic():
        row = IdempotentRequest.objects.select_for_update().filter(user_id=user_id, key=key).first()
        if row is None:
            try:
                with transaction.atomic():
                    row = IdempotentRequest.objects.create(
                        user_id=user_id, key=key, fingerprint=fingerprint, created=now
                    )
            except IntegrityError:  # claimed at the same moment by another request
                return Outcome.RUNNING, None
            return Outcome.CLAIMED, Claim(row.pk, row.created)
        if row.completed is not None and row.completed >= now - _ttl():
            return Outcome.DONE, row
        if row.completed is None and row.created >= now - LEASE:
            return Outcome.RUNNING, row
        # An answer older than the time kept, or a claim whose request died: a new request now.
        IdempotentRequest.objects.filter(pk=row.pk).update(
            fingerprint=fingerprint, created=now, completed=None, status_code=None, content_type="", location="",
            content=b"",
        )  # fmt: skip
        return Outcome.CLAIMED, Claim(row.pk, now)


def idempotent_response_save(
    *, claim: Claim, status_code: int, content_type: str, location: str, content: bytes
) -> bool:
    """Turn the claim into the saved response; False when the claim was taken over meanwhile (LEASE)."""
    return bool(
        IdempotentRequest.objects.filter(pk=claim.id, created=claim.created, completed__isnull=True).update(
            completed=timezone.now(),
            status_code=status_code,
            content_type=content_type,
            location=location,
            content=secret_encrypt_bytes(content, purpose=PURPOSE),
        )
    )


def idempotent_claim_release(*, claim: Claim) -> None:
    """Give the key back (the request did not succeed): its retry runs again."""
    IdempotentRequest.objects.filter(pk=claim.id, created=claim.created, completed__isnull=True).delete()


def idempotent_response_content(*, saved: IdempotentRequest) -> bytes:
    """The saved response's body; SecretUnreadable when the secret key changed since it was saved."""
    return secret_decrypt_bytes(bytes(saved.content), purpose=PURPOSE)


def idempotent_response_readable(*, saved: IdempotentRequest) -> bool:
    try:
        idempotent_response_content(saved=saved)
    except SecretUnreadable:
        return False
    return True


def idempotent_requests_purge() -> int:
    """Delete the responses older than the time kept and the claims of requests that died; returns how many.
    Idempotent."""
    now = timezone.now()
    deleted, _ = IdempotentRequest.objects.filter(
        # (created <= completed: the first condition's created bound changes nothing but lets the index serve it)
        Q(created__lt=now - _ttl(), completed__lt=now - _ttl()) | Q(completed__isnull=True, created__lt=now - LEASE)
    ).delete()
    return deleted
