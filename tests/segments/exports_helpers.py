"""Shared pieces of the segment export tests: customers, a segment over them, destinations on fake providers."""

from __future__ import annotations

import csv
import io

from django.core.files.storage import default_storage

from cdp.models import Attribute, CustomerEntity
from segments.exports.services import destination_create
from segments.services import segment_create

VIP_TREE = {"operator": "and", "children": [{"attribute": "vip", "operator": "is_true"}]}


def attributes_define() -> None:
    for attribute_id, data_type, computation, category in [
        ("vip", "bool", "last_value", ""),
        ("ps_email_address", "string", "identifier_values", "email"),
        ("first_name", "string", "last_value", ""),
    ]:
        Attribute.objects.update_or_create(
            id=attribute_id,
            defaults={
                "name": attribute_id,
                "data_type": data_type,
                "computation": computation,
                "category": category,
                "path": "" if category else f"traits.{attribute_id}",
            },
        )


def customers_create(n: int, *, vip: bool = True, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        entity = CustomerEntity.objects.create(
            id=f"{i:032x}",
            attributes={"vip": [vip], "ps_email_address": [f"c{i}@example.com"], "first_name": [f"Name{i}"]},
        )
        ids.append(entity.id)
    return ids


def vip_segment(owner, name: str = "VIP customers"):
    return segment_create(owner=owner, name=name, conditions=VIP_TREE)


def csv_destination(name: str = "CSV files"):
    return destination_create(name=name, kind="csv", config={}, mandatory_attributes=["ps_email_address", "first_name"])


def customerio_destination(fake, name: str = "Customer.io", **config):
    return destination_create(
        name=name,
        kind="customerio",
        config={"site_id": "site-1", "api_key": "cio-api-key-secret", "api_base_url": fake.url, **config},
    )


def webhook_destination(fake, name: str = "Webhook", **config):
    return destination_create(name=name, kind="webhook", config={"url": fake.url, "secret": fake.secret, **config})


def csv_rows(file_name: str) -> list[list[str]]:
    with default_storage.open(file_name, "rb") as handle:
        return list(csv.reader(io.StringIO(handle.read().decode("utf-8"))))
