"""Segment exports: destinations (validated, secrets encrypted), the export engine, checkpoints and the watchdog,
schedules, notifications. Tasks run in-process here; tests/segments/test_exports_worker.py uses real workers."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from notifications.models import Notification
from segments.exports import services
from segments.exports.models import ExportDestination, ExportSchedule, SegmentExport
from tests.loaders.fakes import FakeCustomerIo, FakePinterest, FakeWebhookReceiver
from tests.segments.exports_helpers import (
    attributes_define,
    csv_destination,
    csv_rows,
    customerio_destination,
    customers_create,
    vip_segment,
    webhook_destination,
)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def on_commit(django_capture_on_commit_callbacks):
    return django_capture_on_commit_callbacks


@pytest.fixture
def marketer(admin_user):
    return admin_user


@pytest.fixture
def vip(db, marketer):
    attributes_define()
    customers_create(5)
    customers_create(2, vip=False, start=100)
    return vip_segment(marketer)


@pytest.fixture
def customerio():
    fake = FakeCustomerIo().start()
    yield fake
    fake.stop()


@pytest.fixture
def receiver():
    fake = FakeWebhookReceiver().start()
    yield fake
    fake.stop()


def run(export):
    """What the task does."""
    return services.export_run(export_id=export.pk, sleep=lambda s: None)


# --- destinations ---


def test_destination_config_is_validated_naming_the_field(db):
    with pytest.raises(ValidationError) as info:
        services.destination_create(name="P", kind="pinterest", config={"access_token": "t", "ad_account_id": "x1"})
    assert "ad_account_id" in info.value.message_dict["config"][0]
    with pytest.raises(ValidationError) as info:
        services.destination_create(name="F", kind="fax", config={})
    assert "kind" in info.value.message_dict
    with pytest.raises(ValidationError) as info:
        services.destination_create(name="C", kind="csv", config={}, mandatory_attributes=["nope"])
    assert "nope" in info.value.message_dict["mandatory_attributes"][0]


def test_attribute_ids_named_in_the_settings_must_exist(db):
    # A typo was accepted: the CSV had an empty column, Pinterest skipped every customer, the export "finished".
    attributes_define()
    with pytest.raises(ValidationError) as info:
        services.destination_create(name="C", kind="csv", config={"attributes": ["first_name", "frist_name"]})
    assert info.value.message_dict["config"] == ["attributes: unknown attribute(s): frist_name"]
    pinterest = {"access_token": "token-1234", "ad_account_id": "1", "audience_name": "VIP"}
    with pytest.raises(ValidationError) as info:
        services.destination_create(name="P", kind="pinterest", config={**pinterest, "identifier_attribute": "email"})
    assert info.value.message_dict["config"] == ["identifier_attribute: unknown attribute(s): email"]
    # Defaults are not checked (a deployment may not define them); existing attributes are fine.
    created = services.destination_create(
        name="Cio",
        kind="customerio",
        config={"site_id": "s", "api_key": "k-123456", "last_name_attribute": "last_name"},
    )
    services.destination_update(destination=created, config={**created.config, "email_attribute": "ps_email_address"})
    services.destination_create(name="C", kind="csv", config={"attributes": ["first_name", "vip"]})


def test_secrets_are_encrypted_masked_and_kept_when_masked(db, customerio):
    destination = customerio_destination(customerio, api_key="cio-api-key-secret-9876")
    stored = ExportDestination.objects.get(pk=destination.pk)
    assert "api_key" not in stored.config
    assert "cio-api-key-secret" not in stored.secrets_encrypted
    assert "cio-api-key-secret" not in repr(stored)
    shown = services.destination_config_display(stored)
    assert shown["api_key"] == "••••9876" and shown["site_id"] == "site-1"
    services.destination_update(destination=stored, config={**shown, "region": "EU"})
    assert stored.full_config()["api_key"] == "cio-api-key-secret-9876"
    assert stored.full_config()["region"] == "EU"
    services.destination_update(destination=stored, config={**shown, "api_key": "new-key-value-0000"})
    assert stored.full_config()["api_key"] == "new-key-value-0000"


# --- the engine ---


def test_csv_export_finishes_with_the_members_and_notifies(vip, marketer, django_capture_on_commit_callbacks):
    destination = csv_destination()
    with django_capture_on_commit_callbacks(execute=True):
        export = services.export_create(segment=vip, destination=destination, user=marketer)
    export.refresh_from_db()
    assert export.status == SegmentExport.Status.FINISHED, export.error_message
    assert (export.total, export.sent, export.progress) == (5, 5, 1.0)
    rows = csv_rows(export.file_name)
    assert rows[0] == ["customer_entity_id", "ps_email_address", "first_name"]
    assert [row[0] for row in rows[1:]] == [f"{i:032x}" for i in range(5)]
    assert rows[1][1:] == ["c0@example.com", "Name0"]
    note = Notification.objects.get(user=marketer)
    assert note.level == "success" and "finished" in note.title and "5 sent" in note.message
    assert "Started: 5 members" in export.log


def test_a_duplicated_task_message_claims_nothing(vip, marketer):
    export = services.export_create(segment=vip, destination=csv_destination(), user=marketer, enqueue=False)
    assert run(export).status == SegmentExport.Status.FINISHED
    assert run(export) is None


def test_partial_failures_are_counted_and_logged(vip, marketer, customerio):
    from cdp.models import CustomerEntity

    CustomerEntity.objects.filter(id=f"{2:032x}").update(attributes={"vip": [True], "ps_email_address": ["broken"]})
    export = services.export_create(segment=vip, destination=customerio_destination(customerio), user=marketer)
    export = run(SegmentExport.objects.get(pk=export.pk))
    assert export.status == SegmentExport.Status.FINISHED
    assert (export.sent, export.failed) == (4, 1)
    assert "Rejected: row" in export.log and "invalid (email)" in export.log
    assert customerio.people[f"{0:032x}"]["SegmentMembership"] == f"'{vip.pk}'"


def test_a_permanent_error_ends_the_export_with_the_provider_message(vip, marketer, customerio):
    destination = customerio_destination(customerio, api_key="wrong-key-value")
    export = run(services.export_create(segment=vip, destination=destination, user=marketer, enqueue=False))
    assert export.status == SegmentExport.Status.ERROR
    assert "Unauthorized request" in export.error_message and "wrong-key-value" not in export.error_message
    assert "wrong-key-value" not in export.log
    note = Notification.objects.get(user=marketer)
    assert note.level == "error" and "Unauthorized request" in note.message


def test_a_transient_failure_waits_and_retries_later_from_the_checkpoint(vip, marketer, customerio):
    for _ in range(6):
        customerio.fail_next(503, {"Retry-After": "1"}, {"meta": {"error": "maintenance"}})
    export = services.export_create(segment=vip, destination=customerio_destination(customerio), enqueue=False)
    export = run(export)
    assert export.status == SegmentExport.Status.WAITING
    assert "gave up after 6 attempts" in export.log and "Retrying in 60s" in export.log
    export = run(export)  # the retry (enqueued with a countdown) runs later
    assert export.status == SegmentExport.Status.FINISHED and export.sent == 5


def test_an_invalid_destination_is_refused_before_anything_is_queued(vip, marketer):
    destination = csv_destination()
    ExportDestination.objects.filter(pk=destination.pk).update(config={"file_name": "../../x"})
    destination.refresh_from_db()
    with pytest.raises(ValidationError) as info:
        services.export_create(segment=vip, destination=destination, user=marketer)
    assert "file_name" in str(info.value)
    assert not SegmentExport.objects.exists()


def test_a_webhook_receiver_that_refused_every_attempt_is_retried_later_not_failed(vip, marketer, receiver, on_commit):
    # It was down (a deploy) or said 429 / 503: the batch did not arrive, so resuming cannot deliver it twice. It
    # failed the export, and a new one sent every earlier batch again.
    export = services.export_create(
        segment=vip, destination=webhook_destination(receiver, batch_size=2), user=marketer, enqueue=False
    )
    for _ in range(6):  # every attempt of the first batch
        receiver.fail_next(503, {"Retry-After": "0"}, {"message": "deploying"})
    with on_commit() as callbacks:
        export = run(export)
    assert export.status == SegmentExport.Status.WAITING, export.error_message
    assert "Retrying in 60s" in export.log and len(callbacks) == 1
    export = run(export)
    assert export.status == SegmentExport.Status.FINISHED and export.sent == 5
    delivered = [c["id"] for batch in receiver.batches for c in batch["customers"]]
    assert delivered == [f"{i:032x}" for i in range(5)]  # each customer once


def test_a_webhook_batch_that_may_have_arrived_is_not_retried(vip, marketer, receiver):
    export = services.export_create(segment=vip, destination=webhook_destination(receiver), enqueue=False)
    for _ in range(6):
        receiver.fail_next(500, {"Retry-After": "0"}, {"message": "crashed midway"})
    export = run(export)
    assert export.status == SegmentExport.Status.ERROR and "HTTP 500" in export.error_message


# --- a worker that died: the watchdog ---


def _as_if_the_worker_died(export, *, checkpoint: str, sent: int, in_flight: str = "", state=None):
    SegmentExport.objects.filter(pk=export.pk).update(
        status=SegmentExport.Status.RUNNING,
        heartbeat_at=timezone.now() - timedelta(hours=1),
        checkpoint_entity_id=checkpoint,
        checkpoint_state=state or {},
        sent=sent,
        total=5,
        attempts=1,
        in_flight_entity_id=in_flight,
    )


def test_an_idempotent_export_resumes_after_its_last_checkpoint(vip, marketer, customerio, on_commit):
    export = services.export_create(segment=vip, destination=customerio_destination(customerio), enqueue=False)
    _as_if_the_worker_died(export, checkpoint=f"{2:032x}", sent=3, in_flight=f"{4:032x}")
    with on_commit(execute=True):
        assert services.exports_stale_recover() == {"resumed": 1, "failed": 0, "requeued": 0}
    export.refresh_from_db()
    assert export.status == SegmentExport.Status.FINISHED  # the re-enqueued task ran in-process
    assert export.sent == 5
    assert set(customerio.people) == {f"{3:032x}", f"{4:032x}"}  # only what came after the checkpoint
    assert "resuming" in export.log and "Resumed after entity" in export.log


def test_a_webhook_export_with_a_batch_in_flight_fails_cleanly_and_sends_nothing_twice(
    vip, marketer, receiver, on_commit
):
    export = services.export_create(
        segment=vip, destination=webhook_destination(receiver, batch_size=2), user=marketer, enqueue=False
    )
    _as_if_the_worker_died(export, checkpoint=f"{1:032x}", sent=2, in_flight=f"{3:032x}", state={"batches": 1})
    with on_commit(execute=True):
        assert services.exports_stale_recover() == {"resumed": 0, "failed": 1, "requeued": 0}
    export.refresh_from_db()
    assert export.status == SegmentExport.Status.ERROR
    assert "was not sent again" in export.error_message
    assert receiver.requests == []
    assert Notification.objects.get(user=marketer).level == "error"


def test_a_webhook_export_between_batches_resumes(vip, marketer, receiver, on_commit):
    export = services.export_create(segment=vip, destination=webhook_destination(receiver, batch_size=2), enqueue=False)
    _as_if_the_worker_died(export, checkpoint=f"{1:032x}", sent=2, state={"batches": 1})
    with on_commit(execute=True):
        services.exports_stale_recover()
    export.refresh_from_db()
    assert export.status == SegmentExport.Status.FINISHED and export.sent == 5
    sent = [c["id"] for batch in receiver.batches for c in batch["customers"]]
    assert sent == [f"{i:032x}" for i in range(2, 5)]
    assert [b["batch_id"] for b in receiver.batches] == [f"{export.pk}-2", f"{export.pk}-3"]


def test_fresh_running_exports_are_left_alone(vip):
    export = services.export_create(segment=vip, destination=csv_destination(), enqueue=False)
    SegmentExport.objects.filter(pk=export.pk).update(status="running", heartbeat_at=timezone.now())
    assert services.exports_stale_recover() == {"resumed": 0, "failed": 0, "requeued": 0}


def test_an_export_that_keeps_dying_is_given_up(vip, marketer, on_commit):
    export = services.export_create(segment=vip, destination=csv_destination(), user=marketer, enqueue=False)
    _as_if_the_worker_died(export, checkpoint="", sent=0)
    SegmentExport.objects.filter(pk=export.pk).update(attempts=services.MAX_ATTEMPTS)
    with on_commit(execute=True):
        services.exports_stale_recover()
    export.refresh_from_db()
    assert export.status == SegmentExport.Status.ERROR and "giving up" in export.error_message


def test_a_waiting_export_whose_message_was_lost_is_enqueued_again(vip, on_commit):
    export = services.export_create(segment=vip, destination=csv_destination(), enqueue=False)
    SegmentExport.objects.filter(pk=export.pk).update(
        created=timezone.now() - timedelta(hours=1), heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    with on_commit(execute=True):
        assert services.exports_stale_recover()["requeued"] == 1
    export.refresh_from_db()
    assert export.status == SegmentExport.Status.FINISHED


# --- schedules ---


def test_schedules_start_exports_when_due_and_only_then(vip, marketer, on_commit):
    destination = csv_destination()
    schedule = services.schedule_set(segment=vip, destination=destination, frequency="hourly", user=marketer)
    now = timezone.now()
    with on_commit(execute=True):
        assert services.schedules_run_due(now=now) == 1
    assert services.schedules_run_due(now=now + timedelta(minutes=30)) == 0
    with on_commit(execute=True):
        assert services.schedules_run_due(now=now + timedelta(minutes=61)) == 1
    exports = SegmentExport.objects.filter(schedule=schedule)
    assert exports.count() == 2 and all(e.status == "finished" for e in exports)
    assert exports.first().started_by == marketer
    services.schedule_set(segment=vip, destination=destination, frequency="daily", enabled=False)
    assert ExportSchedule.objects.get().frequency == "daily"
    assert services.schedules_run_due(now=now + timedelta(days=3)) == 0


def test_a_scheduled_export_that_cannot_start_tells_its_owner_once_per_period(vip, marketer, on_commit):
    """A destination that became invalid (a changed config, a key that cannot be decrypted any more) only logged a
    warning in the worker every 5 minutes: the schedule's owner never learned that no export ran."""
    destination = csv_destination()
    schedule = services.schedule_set(segment=vip, destination=destination, frequency="hourly", user=marketer)
    ExportDestination.objects.filter(pk=destination.pk).update(config={"file_name": "../../x"})
    now = timezone.now()

    assert services.schedules_run_due(now=now) == 0
    assert services.schedules_run_due(now=now + timedelta(minutes=5)) == 0  # the beat's next tick: not again

    [notice] = Notification.objects.filter(user=marketer, object_type="export_schedule")
    assert notice.level == Notification.Level.ERROR
    assert notice.title == f"Scheduled export of “{vip.name}” to {destination.name} not started"
    assert notice.message.startswith("destination: invalid configuration:") and "file_name" in notice.message
    assert notice.message.endswith(" It is tried again in an hour.")
    assert notice.link == f"/admin/segments/exportschedule/{schedule.pk}/change/"
    assert not SegmentExport.objects.exists()

    assert services.schedules_run_due(now=now + timedelta(minutes=61)) == 0  # the next period: tried, told again
    assert Notification.objects.filter(object_type="export_schedule").count() == 2


def test_schedule_frequency_is_checked(vip):
    with pytest.raises(ValidationError):
        services.schedule_set(segment=vip, destination=csv_destination(), frequency="weekly")


def test_customerio_membership_lists_every_segment_sent_to_the_destination(vip, marketer, customerio):
    from segments.services import segment_create

    destination = customerio_destination(customerio, one_attribute_per_segment=True)
    early = segment_create(
        owner=marketer,
        name="Early birds",
        conditions={
            "operator": "and",
            "children": [{"attribute": "first_name", "operator": "in", "value": ["Name0", "Name1"]}],
        },
    )
    run(services.export_create(segment=early, destination=destination, user=marketer, enqueue=False))
    run(services.export_create(segment=vip, destination=destination, user=marketer, enqueue=False))
    first = customerio.people[f"{0:032x}"]
    ordered = sorted([early.pk, vip.pk])
    assert first["SegmentMembership"] == ",".join(f"'{pk}'" for pk in ordered)
    assert first["In Early birds"] is True and first["In VIP customers"] is True
    assert customerio.people[f"{3:032x}"]["SegmentMembership"] == f"'{vip.pk}'"


def test_a_segment_that_cannot_be_evaluated_ends_in_an_error_not_running(vip, marketer):
    from cdp.models import Attribute

    export = services.export_create(segment=vip, destination=csv_destination(), user=marketer, enqueue=False)
    Attribute.objects.filter(id="vip").delete()
    export = run(export)
    assert export.status == SegmentExport.Status.ERROR and "vip" in export.error_message


def test_customerio_hears_who_left_the_segment_since_the_last_export(vip, marketer, customerio):
    from cdp.models import CustomerEntity
    from segments.exports.models import ExportedMember

    destination = customerio_destination(customerio, one_attribute_per_segment=True)
    run(services.export_create(segment=vip, destination=destination, user=marketer, enqueue=False))
    leaver = f"{1:032x}"
    assert customerio.people[leaver]["In VIP customers"] is True
    entity = CustomerEntity.objects.get(pk=leaver)
    entity.attributes = {**entity.attributes, "vip": [False]}
    entity.save(update_fields=["attributes"])

    second = run(services.export_create(segment=vip, destination=destination, user=marketer, enqueue=False))

    assert second.status == SegmentExport.Status.FINISHED
    assert customerio.people[leaver]["In VIP customers"] is False
    assert customerio.people[leaver]["SegmentMembership"] == ""
    assert customerio.people[f"{0:032x}"]["In VIP customers"] is True
    # Only the latest run's members are kept, and the leaver is not one of them.
    kept = set(ExportedMember.objects.values_list("export_id", "entity_id"))
    assert {export for export, _ in kept} == {second.pk}
    assert (second.pk, leaver) not in kept and len(kept) == 4


def test_a_pinterest_destination_creates_one_audience_per_segment_and_then_updates_it(vip, marketer):
    from cdp.models import CustomerEntity

    pinterest = FakePinterest().start()
    try:
        destination = services.destination_create(
            name="Pinterest",
            kind="pinterest",
            config={
                "access_token": pinterest.token,
                "ad_account_id": "549755885175",
                "audience_name": "VIP",
                "api_base_url": pinterest.url,
            },
        )
        first = run(services.export_create(segment=vip, destination=destination, user=marketer, enqueue=False))
        leaver = CustomerEntity.objects.get(pk=f"{1:032x}")
        leaver.attributes = {**leaver.attributes, "vip": [False]}
        leaver.save(update_fields=["attributes"])

        second = run(services.export_create(segment=vip, destination=destination, user=marketer, enqueue=False))

        assert second.status == SegmentExport.Status.FINISHED, second.error_message
        assert len(pinterest.audiences) == 1
        audience_id = first.details["audience_id"]
        assert second.details["audience_id"] == audience_id
        assert len(pinterest.audience_members(audience_id)) == 4
    finally:
        pinterest.stop()


def test_a_meta_rerun_sends_only_new_events_and_the_recent_events_of_new_members(vip, marketer):
    # Meta deduplicates an event_id only within 48 hours: a daily export re-sent each event of the week up to 7
    # times, and Meta counted the conversion again after two days.
    from cdp.models import CustomerEvent
    from cdp.services.data_sources import data_source_create
    from tests.entities import events_attach
    from tests.loaders.fakes import FakeMetaGraph

    source, _ = data_source_create(slug="shop", name="Shop", with_write_key=False)
    now = timezone.now()

    def purchase(entity_id: str, key: str, *, stored_days_ago: float) -> None:
        event = CustomerEvent.objects.create(
            source=source,
            type="purchase",
            event_time=now - timedelta(days=stored_days_ago),
            created=now - timedelta(days=stored_days_ago),
            payload={},
            idempotency_key=key,
        )
        events_attach([event], entity_id)

    purchase(f"{0:032x}", "old-0", stored_days_ago=4)
    purchase(f"{100:032x}", "old-100", stored_days_ago=4)  # not a member yet
    graph = FakeMetaGraph().start()
    try:
        destination = services.destination_create(
            name="Meta",
            kind="meta_capi",
            config={
                "pixel_id": "1",
                "access_token": graph.token,
                "event_types": ["purchase"],
                "api_base_url": graph.url,
            },
        )
        first = run(services.export_create(segment=vip, destination=destination, user=marketer, enqueue=False))
        assert first.sent == 1 and set(graph.events) == {("purchase", "old-0")}
        # Three days later: a new purchase of a member, and a customer who joined the segment meanwhile.
        details = {**first.details, "events_read_at": (now - timedelta(days=3)).isoformat()}
        SegmentExport.objects.filter(pk=first.pk).update(details=details)
        purchase(f"{0:032x}", "new-0", stored_days_ago=0)
        from cdp.models import CustomerEntity

        joined = CustomerEntity.objects.get(pk=f"{100:032x}")
        joined.attributes = {**joined.attributes, "vip": [True]}
        joined.save(update_fields=["attributes"])
        graph.requests.clear()

        second = run(services.export_create(segment=vip, destination=destination, user=marketer, enqueue=False))
    finally:
        graph.stop()
    assert second.status == SegmentExport.Status.FINISHED, second.error_message
    resent = sorted(event["event_id"] for request in graph.requests for event in request.json()["data"])
    assert resent == ["new-0", "old-100"]  # not old-0 again
    assert second.sent == 2


def test_customerio_hears_that_a_renamed_segments_old_attribute_is_false(vip, marketer, customerio):
    from segments.services import segment_update

    destination = customerio_destination(customerio, one_attribute_per_segment=True)
    run(services.export_create(segment=vip, destination=destination, user=marketer, enqueue=False))
    segment_update(segment=vip, name="Top customers")

    second = run(services.export_create(segment=vip, destination=destination, user=marketer, enqueue=False))

    assert second.status == SegmentExport.Status.FINISHED
    person = customerio.people[f"{0:032x}"]
    assert person["In Top customers"] is True
    assert person["In VIP customers"] is False  # was left true for ever
