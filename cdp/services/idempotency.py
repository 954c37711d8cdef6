"""Idempotency keys of API requests: what a retried POST finds (see cdp/api/idempotency.py).

A request holds a session-level advisory lock on (user, key) while it runs, so a second request with the same key
arriving meanwhile is refused instead of doing the work twice; the lock goes with the connection if the process
dies (a row marking the key "in progress" would stay behind). The response is saved only when the request
succeeded: a refused or failed request changed nothing, and its retry runs again.
"""

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from cdp.models import IdempotentRequest
from cdp.services.secrets import secret_decrypt_bytes, secret_encrypt_bytes

LOCK_NAMESPACE = 0x1DE7  # advisory lock class id of idempotency keys (stitching's is 0x5717)
# Saved responses are encrypted at rest: some carry a secret shown once (a new API token, a source's write key),
# which a retry must be able to show again.
PURPOSE = "cdp.api.idempotent_responses"


@dataclass(frozen=True)
class Claim:
    user_id: int
    key: str
    fingerprint: str
    lock: int


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query.encode()):
        digest.update(len(part).to_bytes(8, "big") + part)
    digest.update(body)
    return digest.hexdigest()


def _lock_key(user_id: int, key: str) -> int:
    """A signed 32-bit advisory lock key; two keys sharing one only make the second wait for a retry."""
    digest = hashlib.sha256(f"{user_id}\0{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


def claim(*, user_id: int, key: str, fingerprint: str) -> Claim | None:
    """Lock (user, key) for this request; None when another request holds it now."""
    lock = _lock_key(user_id, key)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [LOCK_NAMESPACE, lock])
        if not cursor.fetchone()[0]:
            return None
    return Claim(user_id=user_id, key=key, fingerprint=fingerprint, lock=lock)


def release(claim: Claim) -> None:
    if connection.connection is None:  # the connection was closed: the lock went with it
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [LOCK_NAMESPACE, claim.lock])


def _ttl() -> timedelta:
    return timedelta(hours=settings.CDP_IDEMPOTENCY_TTL_HOURS)


def saved_response(claim: Claim) -> IdempotentRequest | None:
    """The response saved for the claim's key within the time kept, if any."""
    return IdempotentRequest.objects.filter(
        user_id=claim.user_id, key=claim.key, created__gte=timezone.now() - _ttl()
    ).first()


def response_save(claim: Claim, *, status_code: int, content_type: str, location: str, content: bytes) -> None:
    """Save a successful response (replacing one older than the time kept, which a retry no longer finds)."""
    IdempotentRequest.objects.update_or_create(
        user_id=claim.user_id,
        key=claim.key,
        defaults={
            "fingerprint": claim.fingerprint,
            "status_code": status_code,
            "content_type": content_type,
            "location": location,
            "content": secret_encrypt_bytes(content, purpose=PURPOSE),
            "created": timezone.now(),
        },
    )


def saved_content(saved: IdempotentRequest) -> bytes:
    """The saved response's body; SecretUnreadable when the secret key changed since it was saved."""
    return secret_decrypt_bytes(bytes(saved.content), purpose=PURPOSE)


def idempotent_requests_purge() -> int:
    """Delete the responses older than the time kept; returns how many. Idempotent."""
    deleted, _ = IdempotentRequest.objects.filter(created__lt=timezone.now() - _ttl()).delete()
    return deleted
