"""Encryption at rest for the email provider's credentials: `cdp.services.secrets` (Fernet, a key of their own).
Rotating the secret key makes stored credentials unreadable: they must be entered again (the admin says so instead
of failing)."""

from __future__ import annotations

from cdp.services.secrets import SecretUnreadable, secret_decrypt, secret_encrypt, secret_hint

__all__ = ["CredentialsUnreadable", "decrypt_text", "encrypt_text", "secret_hint"]

PURPOSE = "cdp.emails.credentials"


class CredentialsUnreadable(SecretUnreadable):
    """Stored credentials cannot be decrypted (the secret key changed, or the value was tampered with)."""


def encrypt_text(plain: str) -> str:
    return secret_encrypt(plain, purpose=PURPOSE)


def decrypt_text(token: str) -> str:
    try:
        return secret_decrypt(token, purpose=PURPOSE)
    except SecretUnreadable:
        raise CredentialsUnreadable("stored credentials cannot be decrypted; enter them again") from None
