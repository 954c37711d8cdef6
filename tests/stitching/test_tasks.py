import pytest

from cdp.models import CustomerEvent

pytestmark = pytest.mark.django_db


def _send(client, **payload):
    event = {"source_id": "web", "type": "identify", "event_time": "2025-01-01T00:00:00Z", "payload": payload}
    return client.post("/api/events/", [event], format="json")


def test_without_a_broker_new_events_are_stitched_in_process(
    analyst_client, web_source, settings, django_capture_on_commit_callbacks
):
    settings.CELERY_BROKER_URL = ""
    with django_capture_on_commit_callbacks(execute=True):
        _send(analyst_client, userId="u-1")
    assert CustomerEvent.objects.filter(entity_link__customer_entity__isnull=True).count() == 0


def test_stitching_after_ingest_can_be_turned_off(
    analyst_client, web_source, settings, django_capture_on_commit_callbacks
):
    settings.CELERY_BROKER_URL = ""
    settings.CDP_STITCH_AFTER_INGEST = False
    with django_capture_on_commit_callbacks(execute=True):
        _send(analyst_client, userId="u-2")
    assert CustomerEvent.objects.filter(entity_link__customer_entity__isnull=True).count() == 1
