"""The registry from destination kind to loader class. Adding a destination: copy a module, register it here."""

from __future__ import annotations

from typing import Any

from loaders.base import ConfigError, Loader
from loaders.csv_file import CsvLoader
from loaders.customerio import CustomerIoLoader
from loaders.meta_capi import MetaConversionsLoader
from loaders.pinterest import PinterestLoader
from loaders.webhook import WebhookLoader

LOADERS: dict[str, type[Loader]] = {
    loader.kind: loader
    for loader in (CsvLoader, PinterestLoader, CustomerIoLoader, MetaConversionsLoader, WebhookLoader)
}

KIND_CHOICES: list[tuple[str, str]] = [(kind, loader.label) for kind, loader in LOADERS.items()]


def loader_class(kind: str) -> type[Loader]:
    try:
        return LOADERS[kind]
    except KeyError:
        raise ConfigError("kind", f"unknown destination kind {kind!r}; one of {', '.join(LOADERS)}.") from None


def loader_for(kind: str, config: dict[str, Any]) -> Loader:
    """A configured loader; raises ConfigError (naming the field) before anything is sent."""
    return loader_class(kind)(config)
