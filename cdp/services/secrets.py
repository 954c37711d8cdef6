"""Secrets we hand out (API tokens, write keys): random, shown once, stored as a SHA-256 digest."""

import hashlib
import secrets


def secret_generate(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def secret_digest(secret: str) -> str:
    # High-entropy random secrets: an unsalted fast hash is enough and lets us look them up by digest.
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def secret_display_prefix(secret: str) -> str:
    return secret[:10]
