"""Stitching next to configuration changes and other transactions, on several connections (threads): what the
soak (scripts/soak_stitching.py) found, each made deterministic by waiting until a transaction waits for a lock."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connections, transaction

from stitching.models import EventIdentifier, StitchingCategory
from stitching.services import config, engine
from tests.stitching.helpers import ingest


def _wait_until_waiting_for_a_lock(done: threading.Event, locktype: str = "advisory") -> None:
    """Until another session waits for a lock of this type (or `done`: it did not wait at all)."""
    deadline = time.monotonic() + 10
    with connections["default"].cursor() as cursor:
        while not done.is_set() and time.monotonic() < deadline:
            cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted AND locktype = %s)", [locktype])
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)


def _in_thread(target, errors: list) -> tuple[threading.Thread, threading.Event]:
    done = threading.Event()

    def run() -> None:
        try:
            target()
        except Exception as error:  # noqa: BLE001 - reported by the test
            errors.append(error)
        finally:
            connections.close_all()
            done.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, done


@pytest.mark.django_db(transaction=True)
def test_a_batch_stitching_while_a_rule_is_added_extracts_its_events_by_the_new_rule(shop_source, settings):
    """A batch that loaded the rules before a new rule committed, and committed after the rule's transaction had
    listed the customers to re-stitch, left its events without the new rule's identifiers for good."""
    settings.CDP_STITCH_AFTER_INGEST = False
    (event,) = ingest(shop_source, [{"id": "1", "anonymousId": "c1", "device": "d1"}])
    added, release, errors = threading.Event(), threading.Event(), []

    def add_rule() -> None:
        with transaction.atomic():
            cookie = StitchingCategory.objects.get(pk="cookie")
            config.rule_create(source=shop_source, category=cookie, path="device")
            added.set()
            release.wait(10)

    adding, _ = _in_thread(add_rule, errors)
    try:
        assert added.wait(10)
        stitching, stitched = _in_thread(engine.stitch_pending, errors)
        _wait_until_waiting_for_a_lock(stitched)  # the batch waits for the change (the fix); else it is done
    finally:
        release.set()
        adding.join(10)
    stitching.join(10)
    assert not errors
    engine.restitch_requested()
    assert EventIdentifier.objects.filter(event_id=event, identifier__value="d1", status="linked").exists()
