"""Segment exports on real Celery workers (Redis broker): a normal run, and a worker killed (-9) mid-export —
resumed by the watchdog without losing customers (idempotent destination), or cleanly failed without sending a
batch twice (webhook)."""

import time
from datetime import timedelta

import pytest

from segments.exports import services
from segments.exports.models import SegmentExport
from tests.loaders.fakes import FakeCustomerIo, FakeWebhookReceiver
from tests.segments.exports_helpers import (
    attributes_define,
    csv_destination,
    csv_rows,
    customerio_destination,
    customers_create,
    vip_segment,
    webhook_destination,
)

pytestmark = pytest.mark.worker


@pytest.fixture
def media(settings, tmp_path, monkeypatch):
    """The worker process writes files too: point both at the same MEDIA_ROOT (before the worker starts)."""
    monkeypatch.setenv("MEDIA_ROOT", str(tmp_path))
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


class SlowCustomerIo(FakeCustomerIo):
    delay = 0.4

    def handle(self, request):
        time.sleep(self.delay)
        return super().handle(request)


class SlowReceiver(FakeWebhookReceiver):
    delay = 0.4

    def handle(self, request):
        time.sleep(self.delay)
        return super().handle(request)


def wait_for(predicate, timeout=30.0, what="condition", workers=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}\n{workers.logs() if workers else ''}")


def export_state(pk):
    return SegmentExport.objects.get(pk=pk)


def test_a_worker_runs_a_csv_export(media, celery_worker_process, admin_user):
    attributes_define()
    customers_create(30)
    export = services.export_create(segment=vip_segment(admin_user), destination=csv_destination(), user=admin_user)
    done = wait_for(
        lambda: export_state(export.pk).is_done and export_state(export.pk),
        what="the export to finish",
        workers=celery_worker_process,
    )
    assert done.status == "finished", done.error_message
    assert len(csv_rows(done.file_name)) == 31


def test_a_killed_worker_leaves_an_idempotent_export_resumable(media, celery_worker_process, admin_user):
    fake = SlowCustomerIo().start()
    try:
        attributes_define()
        customers_create(12)
        destination = customerio_destination(fake, batch_size=1)
        export = services.export_create(segment=vip_segment(admin_user), destination=destination, user=admin_user)
        wait_for(
            lambda: export_state(export.pk).sent >= 3, what="3 acknowledged batches", workers=celery_worker_process
        )
        celery_worker_process.kill()  # kill -9: no warm shutdown, no ack
        stuck = export_state(export.pk)
        assert stuck.status == "running" and stuck.checkpoint_entity_id
        received_before = len(fake.requests)

        # The watchdog (beat) notices the silent export and resumes it on another worker.
        assert services.exports_stale_recover(older_than=timedelta(0))["resumed"] == 1
        celery_worker_process.start()
        done = wait_for(
            lambda: export_state(export.pk).is_done and export_state(export.pk),
            what="the resumed export to finish",
            workers=celery_worker_process,
        )
        assert done.status == "finished", done.error_message
        assert done.sent == 12 and done.attempts == 2
        assert set(fake.people) == {f"{i:032x}" for i in range(12)}
        # Resumed after the checkpoint: at most the one batch that was in flight is sent again.
        assert len(fake.requests) <= 12 + 1
        assert len(fake.requests) - received_before <= 12 - stuck.sent + 1
        assert "Resumed after entity" in done.log
    finally:
        fake.stop()


def test_a_killed_worker_never_makes_a_webhook_batch_arrive_twice(media, celery_worker_process, admin_user):
    receiver = SlowReceiver().start()
    receiver.delay = 1.5
    try:
        attributes_define()
        customers_create(10)
        destination = webhook_destination(receiver, batch_size=2)
        export = services.export_create(segment=vip_segment(admin_user), destination=destination, user=admin_user)
        # Kill while the second batch is at the receiver (sent, not yet acknowledged).
        wait_for(lambda: len(receiver.requests) >= 2, what="the second batch in flight", workers=celery_worker_process)
        celery_worker_process.kill()
        assert export_state(export.pk).in_flight_entity_id

        assert services.exports_stale_recover(older_than=timedelta(0))["failed"] == 1
        failed = export_state(export.pk)
        assert failed.status == "error" and "was not sent again" in failed.error_message
        celery_worker_process.start()
        time.sleep(1.0)  # nothing is left for a worker to pick up
        time.sleep(receiver.delay)
        batch_ids = [r.headers["x-cdp-batch-id"] for r in receiver.requests]
        assert batch_ids == [f"{export.pk}-1", f"{export.pk}-2"]
        assert export_state(export.pk).status == "error"
    finally:
        receiver.stop()
