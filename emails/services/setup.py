"""The "emails" data source every email event is recorded under, its stitching rule (payload `email` → the
email category) and the computed attributes `email_consent` / `email_blocked` segments use.

A data migration creates the source and the attributes; `emails_source_id` (called for every email event) adds
the stitching rule through the stitching services and re-creates whatever is missing (a flushed test database,
a deleted row), so recording an email event never fails for want of its source or goes unstitched.
"""

from __future__ import annotations

from django.db import transaction

from cdp.models import Attribute, DataSource

SOURCE_SLUG = "emails"
SOURCE_NAME = "Email channel"

# Which events set which attribute (the payload carries `consent` / `blocked` so one last_value reads it).
CONSENT_EVENTS = ["subscription_confirmed", "subscription_imported", "unsubscribe", "spam_complaint"]
BLOCK_EVENTS = ["email_address_blocked", "email_address_block_imported", "email_address_unblocked"]

ATTRIBUTES = [
    {
        "id": "email_consent",
        "name": "Email consent",
        "computation": Attribute.Computation.LAST_VALUE,
        "data_type": Attribute.DataType.BOOL,
        "path": "consent",
        "event_types": CONSENT_EVENTS,
        "description": "Whether the customer's latest email consent change subscribed (true) or unsubscribed them.",
    },
    {
        "id": "email_blocked",
        "name": "Email blocked",
        "computation": Attribute.Computation.LAST_VALUE,
        "data_type": Attribute.DataType.BOOL,
        "path": "blocked",
        "event_types": BLOCK_EVENTS,
        "description": "Whether the customer's latest email block change blocked (true) or unblocked an address.",
    },
]


def emails_setup_ensure() -> DataSource:
    """Create what is missing of the source, its stitching rule and the two attributes; returns the source."""
    from cdp.services.attributes import attribute_create
    from cdp.services.data_sources import data_source_create
    from stitching.services.defaults import rules_ensure

    with transaction.atomic():
        source = DataSource.objects.filter(slug=SOURCE_SLUG).first()
        if source is None:
            source, _ = data_source_create(
                slug=SOURCE_SLUG,
                name=SOURCE_NAME,
                type=DataSource.Type.EMAIL,
                description="Consent, block and delivery events of the email channel.",
                with_write_key=False,
            )
        rules_ensure(source=source, rules=[("email", "email", 10)])
        for spec in ATTRIBUTES:
            if not Attribute.objects.filter(pk=spec["id"]).exists():
                attribute_create(**spec, sources=[source])
    return source


_source_id_cache: dict[str, int] = {}


def emails_source_id() -> int:
    """The source's id, cached per process; each call checks (one indexed query) that the source still has its
    stitching rule, and sets up what is missing otherwise."""
    from stitching.models import StitchingRule

    cached = _source_id_cache.get(SOURCE_SLUG)
    if cached is not None and StitchingRule.objects.filter(source_id=cached, path="email").exists():
        return cached
    source = emails_setup_ensure()
    _source_id_cache[SOURCE_SLUG] = source.pk
    return source.pk
