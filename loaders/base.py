"""The loader contract: one class per destination kind, a registry from kind to class, one error type.

A loader
- declares its configuration as `fields` (validated up front by `config_validate`: a `ConfigError` names the bad
  field and nothing is sent), which of them are secrets (never logged, never shown back, never in a repr),
- says which customer attributes it needs (`attributes_required`),
- `load`s an iterable of customers — `{"id": <entity id>, "attributes": {<attribute id>: [values]}}`, optionally
  `"segments": [{"id", "name"}]` (the memberships to report) and `"left": True` (the customer left the exported
  segment since the last export) — in batches, and returns the counts sent / skipped / failed.

Delivery problems raise `LoaderError(message, permanent=...)`: transient ones (timeouts, 429, 5xx) were already
retried with backoff by `loaders.http` before they surface; permanent ones (bad credentials, a 4xx that retrying
cannot fix) stop the export with the provider's message. Messages never contain secrets.

Checkpoints: after every batch the destination acknowledged, a loader calls `context.checkpoint(...)` with the
last entity id of that batch (customers arrive ordered by entity id) and its counts, and any state it needs to
continue (e.g. the Pinterest customer list it created); a loader whose counts are not customers (Meta counts
events) also passes `customers=` (how many it has handled in all), which the progress is then measured by.
Before sending a batch it calls `context.sending(...)`.
An export that a dead worker left behind can then continue after the last acknowledged batch — or, for a loader
that is not `idempotent` (a webhook), fail cleanly instead of possibly delivering a batch twice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from cdp.text import storable_json

Customer = dict[str, Any]


class LoaderError(Exception):
    """A delivery failure. `permanent=False`: retrying later can help (the export may be resumed)."""

    def __init__(self, message: str, *, permanent: bool, status: int | None = None, undelivered: bool = False):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status = status
        # The request certainly did not reach the destination (every attempt was refused before it was taken in):
        # sending it again later cannot deliver it twice, even to a destination that does not deduplicate.
        self.undelivered = undelivered

    def __str__(self) -> str:
        return self.message


class ConfigError(LoaderError):
    """The destination's configuration is invalid; `field` names the offending setting."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}", permanent=True)
        self.field = field_name
        self.detail = message


@dataclass(frozen=True)
class ConfigField:
    """One setting of a destination. `kind`: str, bool, int, choice, url, list (of strings), dict."""

    name: str
    kind: str = "str"
    required: bool = False
    secret: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    max_length: int | None = None
    pattern: str | None = None  # a full-match regex for str values
    pattern_message: str = ""
    minimum: int | None = None
    maximum: int | None = None
    help: str = ""
    attribute: bool = False  # the value names customer attribute ids (checked to exist when a destination is saved)

    def clean(self, value: Any) -> Any:
        if not storable_json(value):
            raise ConfigError(self.name, "must not contain NUL characters or lone surrogates.")
        if value is None or value == "":
            if self.required:
                raise ConfigError(self.name, "this setting is required.")
            return self.default
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in {"true", "false", "1", "0", "yes", "no"}:
                return value.strip().lower() in {"true", "1", "yes"}
            raise ConfigError(self.name, "must be true or false.")
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise ConfigError(self.name, "must be a whole number.")
            try:
                number = int(value)
            except ValueError:
                raise ConfigError(self.name, "must be a whole number.") from None
            if self.minimum is not None and number < self.minimum:
                raise ConfigError(self.name, f"must be at least {self.minimum}.")
            if self.maximum is not None and number > self.maximum:
                raise ConfigError(self.name, f"must be at most {self.maximum}.")
            return number
        if self.kind == "list":
            if isinstance(value, str):
                value = [part.strip() for part in value.split(",") if part.strip()]
            if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
                raise ConfigError(self.name, "must be a list of non-empty strings.")
            if self.required and not value:
                raise ConfigError(self.name, "this setting is required.")
            return value
        if self.kind == "dict":
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise ConfigError(self.name, "must be an object of strings.")
            return value
        if not isinstance(value, str):
            raise ConfigError(self.name, "must be a string.")
        value = value.strip()
        if self.kind == "choice":
            matches = [choice for choice in self.choices if choice.lower() == value.lower()]
            if not matches:
                raise ConfigError(self.name, f"must be one of {', '.join(self.choices)}.")
            return matches[0]
        if self.max_length is not None and len(value) > self.max_length:
            raise ConfigError(self.name, f"must be at most {self.max_length} characters.")
        if self.pattern and not re.fullmatch(self.pattern, value):
            raise ConfigError(self.name, self.pattern_message or "has an invalid format.")
        # A host's first character, then anything but whitespace (as "[^\s/?#]+[^\s]*" but linear: that one
        # backtracked quadratically on a long value with a space, 100k characters took half a minute).
        if self.kind == "url" and not re.fullmatch(r"https?://[^\s/?#]\S*", value):
            raise ConfigError(self.name, "must be an http:// or https:// URL.")
        return value

    def describe(self) -> dict[str, Any]:
        """For the API / admin: what the setting is, never its value."""
        out: dict[str, Any] = {"name": self.name, "type": self.kind, "required": self.required, "secret": self.secret}
        if self.default is not None:
            out["default"] = self.default
        if self.choices:
            out["choices"] = list(self.choices)
        if self.help:
            out["help"] = self.help
        return out


@dataclass
class LoadResult:
    """What a load did. `errors` keeps a bounded sample of per-row reasons (never PII, never secrets)."""

    sent: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # e.g. the Pinterest audience id, the CSV file name

    MAX_ERRORS: ClassVar[int] = 50

    def error(self, reason: str) -> None:
        if len(self.errors) < self.MAX_ERRORS:
            self.errors.append(reason)

    def add(self, other: LoadResult) -> None:
        self.sent += other.sent
        self.skipped += other.skipped
        self.failed += other.failed
        for reason in other.errors:
            self.error(reason)


@dataclass
class LoadContext:
    """What the export tells a loader, and how the loader reports back. Defaults make a stand-alone load work.

    - `segment_id` / `segment_name`: the exported segment.
    - `members_sql`: `(sql, params)` selecting the member entity ids (column `id`) ordered by id, when the
      members come from the database (lets the CSV loader COPY them); None for a plain iterable.
    - `state`: what an earlier, interrupted run of this export checkpointed (e.g. the created customer list id).
    - `previous`: what the last finished export of the same segment to the same destination reported (its
      `details`, e.g. the Pinterest audience it created); empty for the first one.
    - `log(message)`: the export's log; `sending` / `checkpoint`: see the module docstring.
    - `sleep`: used between retries; tests pass a recorder so they stay fast.
    """

    segment_id: Any = None
    segment_name: str = ""
    attributes: list[str] = field(default_factory=list)  # the destination's mandatory attributes
    members_sql: tuple[str, list[Any]] | None = None
    # Or, better for COPY (no self-join): the members' condition as SQL over `customer_entities e`.
    members_condition: tuple[str, list[Any]] | None = None
    state: dict[str, Any] = field(default_factory=dict)
    previous: dict[str, Any] = field(default_factory=dict)
    export_id: Any = None
    log: Callable[[str], None] = lambda message: None
    sending: Callable[[str], None] = lambda last_entity_id: None
    checkpoint: Callable[..., None] = lambda **kwargs: None
    sleep: Callable[[float], None] | None = None
    storage: Any = None  # the Django storage for file destinations (default storage when None)


class Loader:
    """Base class. Subclasses set `kind`, `label`, `fields` and implement `load`."""

    kind: ClassVar[str] = ""
    label: ClassVar[str] = ""
    fields: ClassVar[tuple[ConfigField, ...]] = ()
    # Re-sending an acknowledged batch changes nothing at the destination (identify, ADD, event_id dedup).
    idempotent: ClassVar[bool] = True
    # Writes a file the admin and the API can offer for download.
    produces_file: ClassVar[bool] = False

    def __init__(self, config: dict[str, Any]):
        # Always validated: a loader never runs on an unchecked configuration.
        self.config = self.config_validate(config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {config_redact(type(self), self.config)}>"

    @classmethod
    def secret_fields(cls) -> frozenset[str]:
        return frozenset(f.name for f in cls.fields if f.secret)

    @classmethod
    def config_validate(cls, config: dict[str, Any] | None) -> dict[str, Any]:
        """The cleaned configuration, or a `ConfigError` naming the first bad field. Unknown keys are errors."""
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise ConfigError("config", "must be an object.")
        known = {f.name for f in cls.fields}
        for key in config:
            if key not in known:
                raise ConfigError(key, f"unknown setting for a {cls.label or cls.kind} destination.")
        cleaned = {f.name: f.clean(config.get(f.name)) for f in cls.fields}
        cls.config_check(cleaned)
        return cleaned

    @classmethod
    def config_check(cls, config: dict[str, Any]) -> None:
        """Cross-field rules; raise ConfigError."""

    def attributes_required(self) -> list[str]:
        """The customer attributes this loader reads (the export adds the destination's mandatory ones)."""
        return []

    def load(self, customers: Iterable[Customer], *, context: LoadContext | None = None) -> LoadResult:
        raise NotImplementedError

    def http(self, context: LoadContext, *, provider: str, **options: Any):
        """An HTTP client that retries with backoff, sleeps with `context.sleep`, logs retries to the export's
        log and scrubs this configuration's secrets from every message (see loaders.http)."""
        from loaders.http import HttpClient

        return HttpClient(provider=provider, secrets=self.secrets(), sleep=context.sleep, log=context.log, **options)

    def secrets(self) -> list[str]:
        """The secret values of this configuration, to scrub from any message."""
        return [str(self.config[name]) for name in self.secret_fields() if self.config.get(name)]

    def scrub(self, text: str) -> str:
        return scrub(text, self.secrets())


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text


def secret_mask(value: Any) -> str:
    """How a stored secret is shown back: never in full."""
    text = str(value or "")
    if not text:
        return ""
    return "••••" + (text[-4:] if len(text) >= 12 else "")


def config_redact(loader_class: type[Loader], config: dict[str, Any]) -> dict[str, Any]:
    secret = loader_class.secret_fields()
    return {key: (secret_mask(value) if key in secret and value else value) for key, value in config.items()}


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def first_values(attributes: dict[str, Any], attribute_id: str) -> list[Any]:
    """An attribute's values as a list (attributes are lists; tolerate a scalar)."""
    value = attributes.get(attribute_id)
    if value is None:
        return []
    if isinstance(value, list):
        return [v for v in value if v is not None and v != ""]
    return [value]
