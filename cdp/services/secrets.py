"""Secrets: those we hand out (API tokens, write keys: random, shown once, stored as a SHA-256 digest) and those
we keep (provider credentials: encrypted at rest with Fernet, never shown back in full)."""

import hashlib
import secrets


def secret_generate(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def secret_digest(secret: str) -> str:
    # High-entropy random secrets: an unsalted fast hash is enough and lets us look them up by digest.
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def secret_display_prefix(secret: str) -> str:
    return secret[:10]


# --- secrets we keep (provider credentials, destination API keys): encrypted at rest ---------------------------


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted: the key changed (or the value was tampered with); enter it again."""


def _key_material() -> str:
    import os

    from django.conf import settings

    return os.environ.get("CDP_SECRETS_KEY") or settings.SECRET_KEY


def secret_hmac(data: bytes, *, purpose: str) -> str:
    """HMAC-SHA256 (hex) of `data` with a key per purpose derived like the encryption key: a digest of something
    that may hold a password, which must not be guessable offline from the database alone."""
    import hmac

    key = hashlib.sha256(b"hmac\x00" + purpose.encode() + b"\x00" + _key_material().encode("utf-8")).digest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def _fernet(purpose: str):
    """Fernet (AES-128-CBC + HMAC-SHA256) with a key per purpose, derived from CDP_SECRETS_KEY when set, else from
    SECRET_KEY. Rotating that key makes stored secrets unreadable (SecretUnreadable), never silently wrong."""
    import base64

    from cryptography.fernet import Fernet

    key = hashlib.sha256(purpose.encode() + b"\x00" + _key_material().encode("utf-8")).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def secret_encrypt(plain: str, *, purpose: str) -> str:
    return _fernet(purpose).encrypt(plain.encode("utf-8")).decode("ascii")


def secret_decrypt(token: str, *, purpose: str) -> str:
    from cryptography.fernet import InvalidToken

    try:
        return _fernet(purpose).decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError):
        raise SecretUnreadable("stored secret cannot be decrypted (the secret key changed?); enter it again") from None


def secret_encrypt_bytes(plain: bytes, *, purpose: str) -> bytes:
    return _fernet(purpose).encrypt(plain)


def secret_decrypt_bytes(token: bytes, *, purpose: str) -> bytes:
    from cryptography.fernet import InvalidToken

    try:
        return _fernet(purpose).decrypt(token)
    except (InvalidToken, ValueError):
        raise SecretUnreadable("stored value cannot be decrypted (the secret key changed?)") from None


def secret_hint(secret: str) -> str:
    """What may be shown of a kept secret: its last four characters at most, never the whole."""
    if len(secret) < 8:
        return "••••"
    return "••••" + secret[-4:]
