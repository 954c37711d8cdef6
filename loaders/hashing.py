"""Identifier normalisation and hashing for ad destinations (Pinterest, Meta Conversions API).

Normalise before hashing, as the providers require: emails and other ids trimmed and lower-cased; phones reduced
to their digits, country code included (a `(0)` trunk prefix and leading zeros — the `00` international prefix
too — are dropped, as Meta's rules say; we cannot guess a missing country code, so the number is sent with the
digits it has). A value that already looks hashed —
32 (MD5), 40 (SHA1) or 64 (SHA256) hex characters — is passed as it is (lower-cased), never hashed twice.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator

ALGORITHMS = ("SHA256", "SHA1", "MD5")
HEX_LENGTHS = frozenset({32, 40, 64})
HEX = re.compile(r"[0-9a-f]+")
_NOT_DIGITS = re.compile(r"\D+")
_TRUNK_ZERO = re.compile(r"\(\s*0\s*\)")

HASHERS: dict[str, Callable[[bytes], object]] = {
    "SHA256": hashlib.sha256,
    "SHA1": hashlib.sha1,
    "MD5": hashlib.md5,
}


def looks_hashed(value: str) -> bool:
    return len(value) in HEX_LENGTHS and HEX.fullmatch(value) is not None


def normalise_email(value: str) -> str:
    return value.strip().lower()


def normalise_phone(value: str) -> str:
    # "+44 (0)20 7946 0958": the "(0)" is the trunk prefix dialled only from inside the country, never part of the
    # international number (it made 4402079460958, which matches no one). Leading zeros go, as Meta's rules say
    # (the "00" international prefix included).
    digits = _NOT_DIGITS.sub("", _TRUNK_ZERO.sub("", value))
    return digits.lstrip("0")


def normalise(value: str, kind: str = "email") -> str:
    if kind == "phone":
        stripped = value.strip().lower()
        return stripped if looks_hashed(stripped) else normalise_phone(value)
    return value.strip().lower()


def hash_value(value: str, *, algorithm: str = "SHA256", kind: str = "email") -> str | None:
    """The normalised, hashed identifier; an already-hashed value unchanged; None for an empty one."""
    normalised = normalise(str(value), kind)
    if not normalised:
        return None
    if looks_hashed(normalised):
        return normalised
    return HASHERS[algorithm](normalised.encode("utf-8")).hexdigest()  # type: ignore[attr-defined]


def hash_values(values: Iterable[object], *, algorithm: str = "SHA256", kind: str = "email") -> Iterator[str]:
    """The hot loop of audience uploads: normalise + hash many identifiers, skipping empty ones."""
    hasher = HASHERS[algorithm]
    fullmatch = HEX.fullmatch
    for value in values:
        text = str(value).strip().lower() if kind != "phone" else normalise(str(value), "phone")
        if not text:
            continue
        if len(text) in HEX_LENGTHS and fullmatch(text):
            yield text
        else:
            yield hasher(text.encode("utf-8")).hexdigest()  # type: ignore[attr-defined]
