"""manage.py restitch: the analyst's command, its arguments and what it says."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from cdp.models import CustomerEvent
from stitching.services import engine
from tests.stitching.helpers import ingest

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("restitch", *args, "--no-progress", stdout=out, stderr=StringIO())
    return out.getvalue()


def test_an_entity_id_is_taken_in_any_case_as_the_api_takes_it(shop_source):
    (event,) = ingest(shop_source, [{"id": "1", "userId": "u-1"}])
    engine.stitch_pending()
    entity = CustomerEvent.objects.get(pk=event).customer_entity_id

    assert "re-stitched: 0 events reassigned" in run("--entity", entity.upper())


def test_a_merged_away_entity_names_the_customer_to_restitch_instead(shop_source):
    a, b = ingest(shop_source, [{"id": "1", "t": 0, "anonymousId": "cookie-1"}, {"id": "2", "t": 1, "userId": "u-1"}])
    engine.stitch_pending()
    before = {CustomerEvent.objects.get(pk=a).customer_entity_id, CustomerEvent.objects.get(pk=b).customer_entity_id}
    ingest(shop_source, [{"id": "3", "t": 2, "anonymousId": "cookie-1", "userId": "u-1"}])
    engine.stitch_pending()
    survivor = CustomerEvent.objects.get(pk=a).customer_entity_id
    (merged_away,) = before - {survivor}

    with pytest.raises(CommandError, match=f"was merged into {survivor}: re-stitch --entity {survivor}"):
        run("--entity", merged_away)
    with pytest.raises(CommandError, match="no customer entity '0{32}'"):
        run("--entity", "0" * 32)
    with pytest.raises(CommandError, match="no data source with slug 'nope'"):
        run("--source", "nope")


def test_a_full_rebuild_shows_its_total_in_the_progress_bar(shop_source):
    ingest(shop_source, [{"id": "1", "userId": "u-1"}, {"id": "2", "anonymousId": "c-1"}, {"id": "3", "userId": "u-1"}])
    engine.stitch_pending()
    err = StringIO()

    call_command("restitch", stdout=StringIO(), stderr=err)

    assert "3/3" in err.getvalue()  # every event but the system's, so the bar ends at 100 %
