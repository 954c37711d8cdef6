"""Data sources and their write keys."""

from django.core.exceptions import ValidationError
from django.db import transaction

from cdp.models import Attribute, CustomerEvent, DataSource
from cdp.services.secrets import secret_digest, secret_display_prefix, secret_generate

WRITE_KEY_PREFIX = "wk"
# The source of the system's own events (merges and splits, emitted by identity stitching), created on first use.
# Reserved: a client's source under this slug would take them in, and events sent to it would pass for the system's.
SYSTEM_SOURCE_SLUG = "cdp"
SYSTEM_SOURCE_TAKES_NO_EVENTS = (
    f"the data source {SYSTEM_SOURCE_SLUG!r} holds the merges and splits identity stitching records; it takes no "
    "events from clients: send them to another source"
)


# Sources only the CDP writes events to (slug -> why clients may not): the system source, and those other apps
# reserve (the email channel's consent and block records). Events sent to them by API clients, write keys or event
# files would pass for the CDP's own records.
_CLIENT_EVENTS_REFUSED: dict[str, str] = {SYSTEM_SOURCE_SLUG: SYSTEM_SOURCE_TAKES_NO_EVENTS}


def data_source_reserve(*, slug: str, reason: str) -> None:
    """An app's source takes no client events (`reason` says why and where to go instead). Call from ready()."""
    _CLIENT_EVENTS_REFUSED[slug] = reason


def data_source_client_events_refusal(slug: str) -> str | None:
    """Why clients may not send events to the source with this slug; None when they may."""
    return _CLIENT_EVENTS_REFUSED.get(slug)


def data_sources_reserved() -> list[str]:
    return list(_CLIENT_EVENTS_REFUSED)


def data_source_is_system(source: DataSource) -> bool:
    return source.slug == SYSTEM_SOURCE_SLUG


def data_source_slug_problem(*, source: DataSource | None, slug: str) -> str | None:
    """Why a client's source (`source`, None for a new one) cannot have `slug`, None when it can: the system
    source's slug is neither taken nor given up."""
    current = source.slug if source is not None else None
    if slug == current or SYSTEM_SOURCE_SLUG not in (slug, current):
        return None
    if current == SYSTEM_SOURCE_SLUG:
        return f"The system source's slug {SYSTEM_SOURCE_SLUG!r} does not change: stitching finds it by it."
    return f"The slug {SYSTEM_SOURCE_SLUG!r} is reserved for the system source (the merges and splits of stitching)."


@transaction.atomic
def data_source_create(
    *,
    slug: str,
    name: str,
    type: str = DataSource.Type.OTHER,
    description: str = "",
    with_write_key: bool = True,
    system: bool = False,
) -> tuple[DataSource, str | None]:
    """Create a source; returns it with its plain write key (shown once) when one was asked for. `system`: the
    system source (stitching's), the only one that may take the reserved slug."""
    problem = None if system else data_source_slug_problem(source=None, slug=slug)
    if problem:
        raise ValidationError({"slug": problem})
    source = DataSource(slug=slug, name=name, type=type, description=description)
    source.full_clean()
    source.save()
    key = data_source_rotate_write_key(source=source) if with_write_key else None
    return source, key


@transaction.atomic
def data_source_update(*, source: DataSource, **fields) -> DataSource:
    problem = data_source_slug_problem(source=source, slug=fields.get("slug", source.slug))
    if problem:
        raise ValidationError({"slug": problem})
    for name, value in fields.items():
        setattr(source, name, value)
    source.full_clean()
    source.save()
    return source


def data_source_delete_problem(*, source: DataSource) -> str | None:
    """Why the source cannot be deleted, None when it can. Its events would lose their source (the database refuses
    that too), and an attribute reading only its events would silently read every source's instead: the
    many-to-many row goes with the source, and an empty `sources` means all."""
    if data_source_is_system(source):
        return "It is the system source: stitching records merges and splits in it."
    if CustomerEvent.objects.filter(source=source).exists():
        return "The data source has events; it cannot be deleted."
    attributes = sorted(Attribute.objects.filter(sources=source).values_list("pk", flat=True))
    if attributes:
        return (
            f"The attribute(s) {', '.join(attributes)} read only this source's events: without it they would read "
            "every source's. Change their sources first."
        )
    return None


@transaction.atomic
def data_source_delete(*, source: DataSource) -> None:
    """Delete a source nothing depends on; its stitching rules go with it (they have no events to read). Raises
    ValidationError saying what depends on it."""
    problem = data_source_delete_problem(source=source)
    if problem:
        raise ValidationError({"id": problem})
    source.delete()


def data_source_rotate_write_key(*, source: DataSource) -> str:
    """Give the source a new write key (the old one stops working); returns the plain key."""
    if data_source_is_system(source):
        raise ValidationError({"id": f"The system source {SYSTEM_SOURCE_SLUG!r} takes no events: it has no write key."})
    if refusal := data_source_client_events_refusal(source.slug):
        raise ValidationError({"id": f"{refusal[0].upper()}{refusal[1:]}; it has no write key."})
    key = secret_generate(WRITE_KEY_PREFIX)
    source.write_key_hash = secret_digest(key)
    source.write_key_prefix = secret_display_prefix(key)
    source.save(update_fields=["write_key_hash", "write_key_prefix", "modified"])
    return key


def data_source_by_write_key(key: str) -> DataSource | None:
    if not key:
        return None
    return DataSource.objects.filter(write_key_hash=secret_digest(key)).first()
