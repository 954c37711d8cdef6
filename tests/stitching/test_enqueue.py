"""Ingestion enqueues stitching with one task message while none is waiting (cdp.coalesce), on the
real Redis broker: a webhook or API stream must not queue a task per request."""

import pytest

from cdp.celery import app as celery_app
from stitching import tasks

pytestmark = pytest.mark.django_db


def _queued() -> int:
    with celery_app.connection_for_write() as connection:
        return connection.default_channel.client.llen("celery")


@pytest.fixture
def broker_queue(settings):
    """Tasks are sent to the broker (not run eagerly) and stay there: no worker runs in these tests."""
    settings.CDP_STITCH_AFTER_INGEST = True
    assert settings.CELERY_BROKER_URL, "the tests run with a Redis broker (REDIS_URL)"
    celery_app.conf.task_always_eager = False
    celery_app.control.purge()
    tasks.QUEUED.seen = 0.0
    yield
    celery_app.control.purge()


def test_a_stream_of_ingests_queues_one_task_until_it_starts(broker_queue):
    for _ in range(5):
        tasks.stitch_pending_enqueue(1)
        tasks.QUEUED.seen = 0.0  # as if each came from another process: the shared flag decides

    assert _queued() == 1


def test_within_a_process_the_flag_is_not_asked_again_at_once(broker_queue):
    tasks.stitch_pending_enqueue(1)
    tasks.QUEUED._clear()  # another process's task started: this one notices after local_seconds

    tasks.stitch_pending_enqueue(1)
    assert _queued() == 1

    tasks.QUEUED.seen -= tasks.QUEUED.local_seconds
    tasks.stitch_pending_enqueue(1)
    assert _queued() == 2


def test_once_the_task_starts_new_events_queue_the_next_one(broker_queue):
    tasks.stitch_pending_enqueue(1)
    tasks.stitch_pending()  # what the worker runs: it clears the flag before claiming events, and being flagged
    # schedules one follow-up run (an ETA message: held by a worker until its time)
    assert _queued() == 2

    tasks.stitch_pending_enqueue(1)
    tasks.QUEUED.seen = 0.0
    tasks.stitch_pending_enqueue(1)

    assert _queued() == 3


def test_an_unflagged_run_schedules_nothing_more(broker_queue):
    tasks.stitch_pending()  # the beat's safety net, with no ingestion since the last run

    assert _queued() == 0


def test_without_the_cache_every_ingest_still_queues_a_task(broker_queue, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}  # add() never stores

    tasks.stitch_pending_enqueue(1)
    tasks.QUEUED.seen = 0.0
    tasks.stitch_pending_enqueue(1)

    assert _queued() == 2
