"""Edit typed global settings, with an audit trail."""

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
    return value


__all__ = ["SettingInvalid", "UnknownSetting", "global_setting_get", "global_setting_set"]
