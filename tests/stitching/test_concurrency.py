"""Stitching next to configuration changes and other transactions, on several connections (threads): what the
soak (scripts/soak_stitching.py) found, each made deterministic by waiting until a transaction waits for a lock."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from cdp.models import CustomerEntity, StaleEntity
from stitching.models import BlockedValue, EventIdentifier, Identifier, StitchingCategory, StitchingRule
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


@pytest.mark.django_db
def test_a_restitch_extracts_its_whole_component_again_not_only_the_events_it_was_asked_for(shop_source):
    """The events a re-stitch reads before it holds the locks (those of a customer, or carrying an identifier) are
    not all of its component: another transaction may have moved events in, or an earlier change split some off
    the customer it was asked for. Those kept the identifiers of the rules of their time."""
    a, b = ingest(
        shop_source,
        [{"id": "1", "anonymousId": "c1", "userId": "u1"}, {"id": "2", "anonymousId": "c1", "device": "d9"}],
    )
    engine.stitch_pending()
    # A rule these events were not extracted by, as if the batch that stitched them had loaded the rules before it.
    StitchingRule.objects.create(source=shop_source, event_type="*", category_id="cookie", path="device")
    engine.component_restitch(identifier_ids=[Identifier.objects.get(category_id="user_id", value="u1").pk])
    assert EventIdentifier.objects.filter(event_id=b, identifier__value="d9", status="linked").exists()


@pytest.mark.django_db(transaction=True)
def test_restitching_a_blocked_value_takes_no_row_lock_before_the_identifier_locks(shop_source, caplog):
    """The re-stitch of a just blocked value updated its links' status before waiting for the value's lock: a
    stitching transaction holding that lock and writing the same links deadlocked with it."""
    caplog.set_level(logging.INFO, logger="stitching.services.engine")
    (event,) = ingest(shop_source, [{"id": "1", "anonymousId": "c1"}])
    engine.stitch_pending()
    identifier = Identifier.objects.get(category_id="cookie", value="c1")
    holding, release, errors = threading.Event(), threading.Event(), []

    def stitching_transaction() -> None:
        with transaction.atomic(), connections["default"].cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)", [engine.LOCK_NAMESPACE, engine._identifier_key("cookie", "c1")]
            )
            holding.set()
            release.wait(10)
            cursor.execute("UPDATE stitching_event_identifiers SET reason = reason WHERE event_id = %s", [event])

    other, _ = _in_thread(stitching_transaction, errors)
    try:
        assert holding.wait(10)
        restitching, restitched = _in_thread(
            lambda: engine.component_restitch(identifier_ids=[identifier.pk], cause="value_blocked"), errors
        )
        _wait_until_waiting_for_a_lock(restitched)
    finally:
        release.set()
        other.join(15)
    restitching.join(15)
    # PostgreSQL broke no deadlock: in neither transaction (the engine retries its own, and says so).
    assert not errors
    assert "deadlock" not in caplog.text


@pytest.mark.django_db
def test_a_batch_queues_its_customers_for_new_attributes_in_one_statement_in_id_order(shop_source):
    """A batch with an event for the fast path and a merge queued their customers in two statements, each in id
    order but not together: a transaction queueing every customer (an attribute definition saved) deadlocked
    with it (the soak's full recompute)."""
    ingest(shop_source, [{"id": "1", "anonymousId": "c1"}, {"id": "2", "anonymousId": "c2"}])
    engine.stitch_pending()
    ingest(
        shop_source,
        [
            {"id": "3", "anonymousId": "c3"},  # a new customer: the fast path
            {"id": "4", "anonymousId": "c1", "userId": "u1"},  # these two merge the first two customers
            {"id": "5", "anonymousId": "c2", "userId": "u1"},
        ],
    )
    with CaptureQueriesContext(connection) as queries:
        report = engine.stitch_pending()
    assert report.merges == 1
    queueing = [q["sql"] for q in queries.captured_queries if "INTO customer_entities_stale" in q["sql"]]
    assert len(queueing) == 1 and "ORDER BY" in queueing[0]
    assert set(StaleEntity.objects.values_list("pk", flat=True)) >= set(
        CustomerEntity.objects.values_list("pk", flat=True)
    )


@pytest.mark.django_db(transaction=True)
def test_a_configuration_change_waits_for_stitching_in_flight_only_so_long_then_answers_503(
    admin_client, client, admin_user, shop_source, monkeypatch
):
    """A configuration change waits for the stitching in flight (config_change_lock); a full re-stitch holds it for
    minutes on a large data set, so a request gives up after CONFIG_CHANGE_WAIT_SECONDS: a 503 saying so, in the
    API and the admin, and nothing changed."""
    monkeypatch.setattr(engine, "CONFIG_CHANGE_WAIT_SECONDS", 0.3)
    holding, release, errors = threading.Event(), threading.Event(), []

    def rebuild() -> None:  # what restitch_all holds for its whole run
        with transaction.atomic(), connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [engine.LOCK_NAMESPACE, engine.GLOBAL_LOCK_KEY])
            holding.set()
            release.wait(30)

    thread, _ = _in_thread(rebuild, errors)
    try:
        assert holding.wait(10)
        answer = admin_client.post(
            "/api/stitching_blocked_values/", {"category": "email", "value": "x@y.com", "reason": "r"}, format="json"
        )
        assert answer.status_code == 503
        assert answer["Retry-After"] == "60"
        assert answer.json()["message"].startswith("Stitching is busy")
        client.force_login(admin_user)
        page = client.post(
            "/admin/stitching/blockedvalue/add/", {"category": "email", "value": "x@y.com", "reason": ""}
        )
        assert page.status_code == 503
        assert "Stitching is busy" in page.content.decode()
        cookie = StitchingCategory.objects.get(pk="cookie")
        with pytest.raises(engine.StitchingBusy):
            config.rule_create(source=shop_source, category=cookie, path="device")
    finally:
        release.set()
        thread.join(10)
    assert not errors
    assert not BlockedValue.objects.exists()
    assert not StitchingRule.objects.filter(path="device").exists()
    # Once the rebuild is over, the same change goes through (and the connection's lock_timeout is as before).
    answer = admin_client.post(
        "/api/stitching_blocked_values/", {"category": "email", "value": "x@y.com", "reason": "r"}, format="json"
    )
    assert answer.status_code == 201
    with connection.cursor() as cursor:
        cursor.execute("SHOW lock_timeout")
        assert cursor.fetchone()[0] == "0"
