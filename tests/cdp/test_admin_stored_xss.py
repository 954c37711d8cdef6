"""Stored XSS: text that customers, API clients and colleagues put into the CDP (event payloads, attribute values,
segment names, notes, reasons, template names) is shown escaped on every admin page that shows it."""

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from cdp.models import Attribute, CustomerEntity, CustomerEvent
from cdp.services.auth import user_create
from cdp.services.data_sources import data_source_create
from cdp.services.events import event_record_build, events_ingest
from emails.services.state import email_block
from emails.services.templates import template_create
from notifications.services import notification_create
from segments.exports.services import destination_create
from segments.services import segment_create, segment_note_create

pytestmark = pytest.mark.django_db

# Breaks out of an attribute value, of element text, and of a <script> block.
PAYLOAD = "\"'><svg onload=alert(1)></script><script>alert(2)</script>"
RAW = ("<svg onload=alert(1)>", "<script>alert(2)</script>")


@pytest.fixture
def planted(db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    admin = user_create(username="admin", password="Adm1n-password!", is_superuser=True)
    source, _ = data_source_create(slug="web", name=PAYLOAD[:100], type="web", with_write_key=False)
    Attribute.objects.update_or_create(
        id="first_name",
        defaults={"name": PAYLOAD[:100], "description": PAYLOAD, "data_type": "string", "computation": "last_value",
                  "path": "traits.first_name"},
    )  # fmt: skip
    entity = CustomerEntity.objects.create(attributes={"first_name": [PAYLOAD]})
    record = event_record_build(
        source_id=source.pk, type="identify", event_time=datetime(2024, 5, 1, tzinfo=UTC),
        payload={"traits": {"first_name": PAYLOAD}, PAYLOAD: PAYLOAD}, message_id="m-1",
    )  # fmt: skip
    (outcome,) = events_ingest([record])
    event = CustomerEvent.objects.get(pk=outcome.id)
    tree = {"operator": "and", "children": [{"attribute": "first_name", "operator": "equals", "value": PAYLOAD}]}
    segment = segment_create(owner=admin, name=PAYLOAD[:100], description=PAYLOAD, conditions=tree, tags=["t<b>x"])
    segment_note_create(segment=segment, author=admin, text=PAYLOAD)
    destination = destination_create(name=PAYLOAD[:100], kind="csv", config={})
    email_block(email="victim@example.com", reason=PAYLOAD, user=admin)
    template = template_create(name=PAYLOAD[:100], subject=PAYLOAD, html_body="<p>{{ unsubscribe_url }}</p>",
                               text_body="{{ unsubscribe_url }}")  # fmt: skip
    notification_create(user=admin, title=PAYLOAD, message=PAYLOAD)
    return {
        "admin": admin, "entity": entity, "event": event, "segment": segment, "destination": destination,
        "template": template, "source": source,
    }  # fmt: skip


def test_planted_markup_is_escaped_on_every_page_that_shows_it(planted, client):
    client.force_login(planted["admin"])
    pages = [
        reverse("admin:cdp_customerentity_changelist"),
        reverse("admin:cdp_customerentity_change", args=[planted["entity"].pk]),
        reverse("admin:cdp_customerevent_changelist"),
        reverse("admin:cdp_customerevent_change", args=[planted["event"].pk]),
        reverse("admin:cdp_attribute_changelist"),
        reverse("admin:cdp_attribute_change", args=["first_name"]),
        reverse("admin:cdp_datasource_changelist"),
        reverse("admin:segments_segment_changelist"),
        reverse("admin:segments_segment_change", args=[planted["segment"].pk]),
        reverse("admin:segments_segment_segment_insights", args=[planted["segment"].pk]) + "?attributes=first_name",
        reverse("admin:segments_tag_changelist"),
        reverse("admin:segments_exportdestination_changelist"),
        reverse("admin:segments_exportdestination_change", args=[planted["destination"].pk]),
        reverse("admin:emails_emailaddress_changelist"),
        reverse("admin:emails_emailtemplate_changelist"),
        reverse("admin:emails_emailtemplate_change", args=[planted["template"].pk]),
        reverse("admin:notifications_notification_changelist"),
        reverse("admin:index"),
    ]
    shown_somewhere = False
    for url in pages:
        response = client.get(url, follow=True)
        assert response.status_code == 200, url
        content = response.content.decode()
        for raw in RAW:
            assert raw not in content, (url, raw)
        shown_somewhere |= "&lt;svg onload=alert(1)&gt;" in content
    assert shown_somewhere  # the text is there, escaped
