"""Data sources and their write keys."""

from django.db import transaction

from cdp.models import DataSource
from cdp.services.secrets import secret_digest, secret_display_prefix, secret_generate

WRITE_KEY_PREFIX = "wk"


@transaction.atomic
def data_source_create(
    *, slug: str, name: str, type: str = DataSource.Type.OTHER, description: str = "", with_write_key: bool = True
) -> tuple[DataSource, str | None]:
    """Create a source; returns it with its plain write key (shown once) when one was asked for."""
    source = DataSource(slug=slug, name=name, type=type, description=description)
    source.full_clean()
    source.save()
    key = data_source_rotate_write_key(source=source) if with_write_key else None
    return source, key


@transaction.atomic
def data_source_update(*, source: DataSource, **fields) -> DataSource:
    for name, value in fields.items():
        setattr(source, name, value)
    source.full_clean()
    source.save()
    return source


def data_source_rotate_write_key(*, source: DataSource) -> str:
    """Give the source a new write key (the old one stops working); returns the plain key."""
    key = secret_generate(WRITE_KEY_PREFIX)
    source.write_key_hash = secret_digest(key)
    source.write_key_prefix = secret_display_prefix(key)
    source.save(update_fields=["write_key_hash", "write_key_prefix", "modified"])
    return key


def data_source_by_write_key(key: str) -> DataSource | None:
    if not key:
        return None
    return DataSource.objects.filter(write_key_hash=secret_digest(key)).first()
