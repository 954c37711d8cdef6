"""Determinism, by property test: random events over a small identifier pool, stitched incrementally in random
arrival orders and batch splits, give the same partition as a full re-stitch from scratch (bulk path)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdp.services.data_sources import data_source_create
from stitching.models import StitchingCategory
from stitching.services import config, engine
from stitching.services.defaults import segment_default_rules_ensure
from tests.stitching.helpers import ingest, partition

pytestmark = pytest.mark.django_db

# A small pool so that identifiers collide a lot: merges, limit refusals (2 user ids on one cookie), junk.
USER_IDS = st.sampled_from([None, "u1", "u2", "u3"])
COOKIES = st.sampled_from([None, "c1", "c2", "c3", "c4", "null"])
EMAILS = st.sampled_from([None, "a@x.cz", " A@X.cz", "b@x.cz", "c@x.cz", "d@x.cz", "e@x.cz", "f@x.cz", "g@x.cz"])

EVENT = st.fixed_dictionaries(
    {"t": st.integers(0, 20), "userId": USER_IDS, "anonymousId": COOKIES, "email": EMAILS, "ctx_email": EMAILS}
)


def _row(n: int, spec: dict) -> dict:
    row = {"id": f"m{n}", "t": spec["t"] * 720}  # half days apart: the email limit's window (1 or 3 days) matters
    if spec["userId"]:
        row["userId"] = spec["userId"]
    if spec["anonymousId"]:
        row["anonymousId"] = spec["anonymousId"]
    if spec["email"]:
        row["traits"] = {"email": spec["email"]}
    if spec["ctx_email"]:
        row["context"] = {"traits": {"email": spec["ctx_email"]}}
    return row


def _reset() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM stitching_entitychange")
        cursor.execute("DELETE FROM stitching_hubreview")
        cursor.execute("DELETE FROM stitching_event_identifiers")
        cursor.execute("DELETE FROM customer_events")
        cursor.execute("UPDATE stitching_identifiers SET customer_entity_id = NULL")
        cursor.execute("DELETE FROM customer_entities")


def _link_statuses() -> set[tuple[str, str, str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT e.idempotency_key, i.category_id, i.value, ei.status FROM stitching_event_identifiers ei "
            "JOIN customer_events e ON e.id = ei.event_id JOIN stitching_identifiers i ON i.id = ei.identifier_id"
        )
        return set(cursor.fetchall())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    specs=st.lists(EVENT, min_size=1, max_size=30),
    data=st.data(),
)
def test_incremental_stitching_in_any_order_and_batches_equals_a_full_restitch(specs, data, django_db_blocker):
    rows = [_row(n, spec) for n, spec in enumerate(specs)]
    order = data.draw(st.permutations(rows), label="arrival order")
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(rows) - 1)), max_size=5), label="batch cuts"))
    batch_limit = data.draw(st.integers(1, 10), label="stitch batch size")
    hub_limit = data.draw(st.sampled_from([2, 3, 20]), label="hub limit")
    max_identifiers = data.draw(st.sampled_from([2, 4, 1000]), label="identifiers cap")
    max_merges = data.draw(st.sampled_from([1, 2, 100]), label="merges cap")
    email_limit = data.draw(st.sampled_from([5, 2]), label="email limit")
    email_window = data.draw(st.sampled_from([None, 1, 3]), label="email limit window (days)")
    with transaction.atomic():
        from django.conf import settings as django_settings

        django_settings.STITCHING_HUB_LIMIT = hub_limit
        django_settings.STITCHING_MAX_IDENTIFIERS = max_identifiers
        django_settings.STITCHING_MAX_MERGES = max_merges
        try:
            source, _ = data_source_create(slug="prop", name="Prop", type="web", with_write_key=False)
            segment_default_rules_ensure(source=source)
            StitchingCategory.objects.filter(pk="email").update(
                max_per_entity=email_limit, limit_window_days=email_window
            )
            bounds = [0, *cuts, len(order)]
            for start, end in zip(bounds, bounds[1:], strict=False):
                if start < end:
                    ingest(source, order[start:end])
                    while engine.stitch_pending(limit=batch_limit).remaining:
                        pass
            incremental = partition(by="key")
            incremental_links = _link_statuses()
            engine.restitch()
            rebuilt = partition(by="key")
            assert incremental == rebuilt
            # Not only the partition: every link's outcome (linked, refused by a limit, held) is the same, so the
            # incremental fast path and the exact path agree on the identity graph too.
            assert incremental_links == _link_statuses()
            # And a rebuild from nothing (no entity to keep) gives the same partition again.
            _reset()
            ingest(source, rows)
            engine.restitch()
            assert partition(by="key") == incremental
            # A changed limit or window, re-stitched where it can matter, gives what a full rebuild gives.
            new_limit = data.draw(st.sampled_from([1, 2, 5, None]), label="new email limit")
            new_window = data.draw(st.sampled_from([None, 1, 3]), label="new window (days)") if new_limit else None
            email = StitchingCategory.objects.get(pk="email")
            config.category_update(category=email, max_per_entity=new_limit, limit_window_days=new_window)
            engine.restitch_requested()
            changed, changed_links = partition(by="key"), _link_statuses()
            engine.restitch()
            assert partition(by="key") == changed
            assert _link_statuses() == changed_links
        finally:
            del django_settings.STITCHING_HUB_LIMIT
            del django_settings.STITCHING_MAX_IDENTIFIERS
            del django_settings.STITCHING_MAX_MERGES
            transaction.set_rollback(True)
