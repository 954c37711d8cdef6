"""Encryption of destination secrets at rest (Fernet: AES-128-CBC + HMAC-SHA256).

The key is derived from `CDP_SECRETS_KEY` when set, else from `SECRET_KEY`. Rotating that key makes stored
destination secrets unreadable: re-enter them (the export then fails with a message saying so, never silently).
"""

from __future__ import annotations

import base64
import hashlib
import os

import orjson
from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class SecretsUnreadable(Exception):
    pass


def _fernet() -> Fernet:
    material = os.environ.get("CDP_SECRETS_KEY") or settings.SECRET_KEY
    key = hashlib.sha256(b"cdp-destination-secrets\x00" + material.encode("utf-8")).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def secrets_encrypt(values: dict[str, str]) -> str:
    if not values:
        return ""
    return _fernet().encrypt(orjson.dumps(values)).decode("ascii")


def secrets_decrypt(token: str) -> dict[str, str]:
    if not token:
        return {}
    try:
        return orjson.loads(_fernet().decrypt(token.encode("ascii")))
    except (InvalidToken, ValueError):
        raise SecretsUnreadable(
            "The destination's secrets cannot be decrypted (the secret key changed?); enter them again."
        ) from None
