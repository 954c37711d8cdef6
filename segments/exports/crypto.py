"""Encryption of destination secrets at rest: `cdp.services.secrets` (Fernet, a key of their own). Rotating the
secret key makes stored destination secrets unreadable: re-enter them (the export then fails with a message saying
so, never silently)."""

from __future__ import annotations

import orjson

from cdp.services.secrets import SecretUnreadable, secret_decrypt, secret_encrypt

PURPOSE = "cdp-destination-secrets"


class SecretsUnreadable(SecretUnreadable):
    pass


def secrets_encrypt(values: dict[str, str]) -> str:
    if not values:
        return ""
    return secret_encrypt(orjson.dumps(values).decode("utf-8"), purpose=PURPOSE)


def secrets_decrypt(token: str) -> dict[str, str]:
    if not token:
        return {}
    try:
        return orjson.loads(secret_decrypt(token, purpose=PURPOSE))
    except (SecretUnreadable, ValueError):
        raise SecretsUnreadable(
            "The destination's secrets cannot be decrypted (the secret key changed?); enter them again."
        ) from None
