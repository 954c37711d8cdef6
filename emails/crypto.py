"""Encryption at rest for provider credentials: Fernet (AES-128-CBC + HMAC-SHA256) with a key derived from
SECRET_KEY. Rotating SECRET_KEY makes stored credentials unreadable: they must be entered again (the admin says
so instead of failing)."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class CredentialsUnreadable(Exception):
    """Stored credentials cannot be decrypted (SECRET_KEY changed, or the value was tampered with)."""


def _fernet() -> Fernet:
    digest = hashlib.sha256(b"cdp.emails.credentials\x00" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt_text(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt_text(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError):
        raise CredentialsUnreadable("stored credentials cannot be decrypted; enter them again") from None


def secret_hint(secret: str) -> str:
    """What the admin shows of a secret: its last four characters at most, never the whole."""
    if len(secret) < 8:
        return "••••"
    return "••••" + secret[-4:]
