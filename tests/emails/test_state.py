"""Email events are stitched by email onto the customer's profile, and consent / blocked become attributes."""

from __future__ import annotations

import pytest

from cdp.models import CustomerEvent, DataSource
from cdp.services.attributes import attributes_recompute
from emails.services.setup import emails_setup_ensure
from emails.services.state import email_block, email_consent_change, email_unblock
from stitching.services.engine import stitch_pending

pytestmark = pytest.mark.django_db


def test_consent_and_block_events_are_stitched_and_become_attributes(admin_user):
    email_consent_change(email="ann@example.com", consent=True, type="subscription_imported")
    email_block(email="ann@example.com", reason="asked by phone", user=admin_user)
    stitch_pending()
    attributes_recompute()
    events = CustomerEvent.objects.filter(source__slug="emails")
    assert events.count() == 2
    entity = events.first().customer_entity
    assert entity is not None and {e.customer_entity_id for e in events} == {entity.pk}
    entity.refresh_from_db()
    assert entity.attributes["email_consent"] == [True]
    assert entity.attributes["email_blocked"] == [True]
    assert entity.attributes["ps_email_address"] == ["ann@example.com"]
    email_unblock(email="ann@example.com", reason="mistake", user=admin_user)
    stitch_pending()
    attributes_recompute()
    entity.refresh_from_db()
    assert entity.attributes["email_blocked"] == [False]


def test_older_event_does_not_override_newer_state():
    from datetime import UTC, datetime

    from emails.models import EmailAddress

    email_consent_change(email="bob@example.com", consent=False, type="unsubscribe")
    email_consent_change(email="bob@example.com", consent=True, type="subscription_imported",
                         event_time=datetime(2020, 1, 1, tzinfo=UTC))  # fmt: skip
    assert EmailAddress.objects.get(email="bob@example.com").consent is False


def test_setup_is_recreated_when_missing():
    DataSource.objects.filter(slug="emails").delete()
    source = emails_setup_ensure()
    assert source.stitching_rules.filter(path="email", category_id="email").exists()
    assert source.slug == "emails"
