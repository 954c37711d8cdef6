"""Typed reading of settings from environment variables, with a clear error for a bad value."""

import os
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean: use one of 1/0, true/false, yes/no, on/off.")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum {minimum}.")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name}={value} is above the maximum {maximum}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_url(name: str, default: str = "", *, schemes: set[str], example: str) -> str:
    """A URL whose scheme is one of `schemes` (one ending in "+" takes any scheme it starts: "db+"); empty stays
    empty. The message names the variable and the scheme found, never the whole value (it may hold a password)."""
    value = env_str(name, default)
    if not value:
        return value
    scheme = urlsplit(value).scheme.lower() if "://" in value else ""
    if not any(scheme.startswith(s) and scheme != s if s.endswith("+") else scheme == s for s in schemes):
        found = f"{scheme}://" if scheme else "no scheme"
        allowed = ", ".join(f"{s}<driver>://" if s.endswith("+") else f"{s}://" for s in sorted(schemes))
        raise ImproperlyConfigured(f"{name} must be a URL starting with {allowed} (e.g. {example}); it has {found}.")
    return value
