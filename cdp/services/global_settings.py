"""Edit typed global settings, with an audit trail."""

import threading
import time
from typing import Any

from django.db import transaction

from cdp.global_settings import DEFINITIONS, SettingInvalid
from cdp.models import GlobalSetting, GlobalSettingChange, User


class UnknownSetting(KeyError):
    pass


def global_setting_get(key: str) -> Any:
    definition = DEFINITIONS.get(key)
    if definition is None:
        raise UnknownSetting(key)
    stored = GlobalSetting.objects.filter(key=key).values_list("value", flat=True).first()
    return definition.default if stored is None else stored


# Hot paths (public endpoints, every admin request) read settings through a short per-process cache instead of a
# query per request; a change reaches every process within CACHE_SECONDS.
CACHE_SECONDS = 10.0
_cache: dict[str, tuple[float, Any]] = {}
_cache_lock = threading.Lock()


def global_setting_cached(key: str) -> Any:
    """The setting's value, read from the database at most every CACHE_SECONDS per process."""
    now = time.monotonic()
    hit = _cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    value = global_setting_get(key)
    with _cache_lock:
        _cache[key] = (now + CACHE_SECONDS, value)
    return value


def global_settings_cache_clear() -> None:
    with _cache_lock:
        _cache.clear()


@transaction.atomic
def global_setting_set(*, key: str, value: Any, user: User | None) -> Any:
    """Validate and store a value; raises UnknownSetting or SettingInvalid (message says why)."""
    definition = DEFINITIONS.get(key)
    if definition is None:
        raise UnknownSetting(key)
    value = definition.check(value)
    current = GlobalSetting.objects.select_for_update().filter(key=key).first()
    old = definition.default if current is None else current.value
    if old == value and current is not None:
        return value
    GlobalSetting.objects.update_or_create(key=key, defaults={"value": value, "modified_by": user})
    GlobalSettingChange.objects.create(key=key, old_value=old, new_value=value, changed_by=user)
    transaction.on_commit(global_settings_cache_clear)
    return value


__all__ = [
    "SettingInvalid",
    "UnknownSetting",
    "global_setting_cached",
    "global_setting_get",
    "global_setting_set",
    "global_settings_cache_clear",
]
