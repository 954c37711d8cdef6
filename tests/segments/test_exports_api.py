"""API "Segment Export Destinations", "Segment Exports", export schedules and notifications; `run_export`."""

import pytest
from django.core.management import CommandError, call_command

from cdp.features import Feature
from cdp.services.auth import role_create, user_create
from notifications.models import Notification
from segments.exports.models import ExportDestination, SegmentExport
from tests.conftest import client_for
from tests.segments.exports_helpers import attributes_define, csv_destination, customers_create, vip_segment


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


@pytest.fixture
def exporter(db):
    role = role_create(name="Exporter", features=[Feature.EXPORTS_RUN, Feature.SEGMENTS_VIEW])
    return user_create(username="exporter", password="Exporter-password!", role=role)


@pytest.fixture
def vip(db, exporter):
    attributes_define()
    customers_create(3)
    return vip_segment(exporter)


def test_destinations_need_the_feature_to_edit_and_never_show_secrets(admin_client, exporter, outsider_client):
    body = {
        "name": "Pinterest VIP",
        "kind": "pinterest",
        "config": {"access_token": "pina_secret_token_1234", "ad_account_id": "549755885175", "audience_name": "VIP"},
        "mandatory_attributes": [],
    }
    assert outsider_client.post("/api/segment_export_destinations/", body, format="json").status_code == 403
    assert client_for(exporter).post("/api/segment_export_destinations/", body, format="json").status_code == 403
    response = admin_client.post("/api/segment_export_destinations/", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["config"]["access_token"] == "••••1234"
    listed = client_for(exporter).get("/api/segment_export_destinations/").json()
    assert listed["results"][0]["name"] == "Pinterest VIP"
    assert "pina_secret_token" not in str(listed)
    destination_id = response.json()["id"]
    patched = admin_client.patch(
        f"/api/segment_export_destinations/{destination_id}",
        {"config": {**response.json()["config"], "audience_name": "VIP 2"}},
        format="json",
    )
    assert patched.status_code == 200
    assert ExportDestination.objects.get().full_config()["access_token"] == "pina_secret_token_1234"


def test_a_patch_changes_only_the_settings_it_names(admin_client):
    # Changing the region reset one_attribute_per_segment to false: Customer.io stopped hearing "In <segment>".
    body = {
        "name": "Customer.io",
        "kind": "customerio",
        "config": {"site_id": "site-1", "api_key": "cio-key-secret-1234", "one_attribute_per_segment": True},
    }
    destination_id = admin_client.post("/api/segment_export_destinations/", body, format="json").json()["id"]
    url = f"/api/segment_export_destinations/{destination_id}"

    patched = admin_client.patch(url, {"config": {"region": "EU"}}, format="json")

    assert patched.status_code == 200, patched.json()
    config = ExportDestination.objects.get().full_config()
    assert config["region"] == "EU" and config["one_attribute_per_segment"] is True and config["site_id"] == "site-1"
    assert config["api_key"] == "cio-key-secret-1234"
    # null puts a setting back to its default; a PUT is the whole configuration.
    admin_client.patch(url, {"config": {"region": None}}, format="json")
    assert ExportDestination.objects.get().full_config()["region"] == "US"
    put = admin_client.put(url, {"name": "Customer.io", "config": {"site_id": "site-2"}}, format="json")
    assert put.status_code == 200, put.json()
    config = ExportDestination.objects.get().full_config()
    assert config["one_attribute_per_segment"] is False and config["api_key"] == "cio-key-secret-1234"


def test_a_second_export_of_the_same_pair_while_one_is_under_way_is_a_400(exporter, vip):
    client = client_for(exporter)
    destination = csv_destination()
    body = {"segment": vip.pk, "destination": destination.pk}
    first = client.post("/api/segment_exports/", body, format="json")  # not run: no on-commit callbacks here
    assert first.status_code == 201

    second = client.post("/api/segment_exports/", body, format="json")

    assert second.status_code == 400
    assert second.json()["message"] == (
        f"segment: an export of this segment to CSV files is already under way (#{first.json()['id']}); wait for it "
        "to end."
    )
    assert SegmentExport.objects.count() == 1
    SegmentExport.objects.update(status=SegmentExport.Status.FINISHED)
    assert client.post("/api/segment_exports/", body, format="json").status_code == 201


def test_a_stored_secret_is_not_sent_to_a_new_url_without_being_entered_again(admin_client):
    # Pointing api_base_url at one's own server, the stored token (never shown back) was sent there as a bearer.
    body = {
        "name": "Pinterest VIP",
        "kind": "pinterest",
        "config": {"access_token": "pina_secret_token_1234", "ad_account_id": "549755885175", "audience_name": "VIP"},
    }
    destination_id = admin_client.post("/api/segment_export_destinations/", body, format="json").json()["id"]
    url = f"/api/segment_export_destinations/{destination_id}"

    moved = admin_client.patch(url, {"config": {"api_base_url": "https://collector.example.net"}}, format="json")

    assert moved.status_code == 400
    assert moved.json()["message"] == (
        "config: access_token: enter it again: api_base_url changed, and a stored secret is only sent where it was "
        "entered for."
    )
    assert ExportDestination.objects.get().full_config()["api_base_url"] == "https://api.pinterest.com"
    masked = {"api_base_url": "https://collector.example.net", "access_token": "••••1234"}
    assert admin_client.patch(url, {"config": masked}, format="json").status_code == 400
    entered = {"api_base_url": "https://collector.example.net", "access_token": "another-token-5678"}
    assert admin_client.patch(url, {"config": entered}, format="json").status_code == 200
    # Other changes keep the stored secret.
    assert admin_client.patch(url, {"config": {"audience_name": "VIP 2"}}, format="json").status_code == 200
    assert ExportDestination.objects.get().full_config()["access_token"] == "another-token-5678"


def test_bad_destination_config_is_a_400_naming_the_field(admin_client):
    response = admin_client.post(
        "/api/segment_export_destinations/",
        {"name": "P", "kind": "pinterest", "config": {"access_token": "t", "ad_account_id": "12345678901234567890"}},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["status"] == "error" and "ad_account_id" in response.json()["message"]


def test_kinds_describe_the_settings(admin_client):
    kinds = {k["kind"]: k for k in admin_client.get("/api/segment_export_destinations/kinds").json()}
    assert set(kinds) == {"csv", "pinterest", "customerio", "meta_capi", "webhook"}
    fields = {f["name"]: f for f in kinds["customerio"]["fields"]}
    assert fields["api_key"]["secret"] and fields["site_id"]["required"] and fields["region"]["choices"] == ["US", "EU"]


def test_create_an_export_poll_it_and_download_the_csv(exporter, vip, django_capture_on_commit_callbacks):
    client = client_for(exporter)
    destination = csv_destination()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/segment_exports/", {"segment": vip.pk, "destination": destination.pk}, format="json"
        )
    assert response.status_code == 201, response.json()
    export = client.get(f"/api/segment_exports/{response.json()['id']}").json()
    assert export["status"] == "finished" and export["sent"] == 3 and export["progress"] == 1.0
    assert export["download_url"].endswith(f"/api/segment_exports/{export['id']}/download")
    download = client.get(f"/api/segment_exports/{export['id']}/download")
    assert download.status_code == 200 and download["Content-Type"] == "text/csv"
    lines = b"".join(download.streaming_content).decode().splitlines()
    assert lines[0] == "customer_entity_id,ps_email_address,first_name" and len(lines) == 4
    notes = client.get("/api/notifications/?unread=true").json()
    assert notes["results"][0]["level"] == "success"
    marked = client.post("/api/notifications/mark_read", {}, format="json").json()
    assert marked == {"marked": 1, "unread": 0}


def test_exports_follow_the_segment_acl(exporter, vip, admin_user, outsider):
    other_role = role_create(name="Other exporter", features=[Feature.EXPORTS_RUN])
    other = client_for(user_create(username="other", password="Other-password!", role=other_role))
    destination = csv_destination()
    response = other.post("/api/segment_exports/", {"segment": vip.pk, "destination": destination.pk}, format="json")
    assert response.status_code == 404
    client_for(exporter).post(
        "/api/segment_exports/", {"segment": vip.pk, "destination": destination.pk}, format="json"
    )
    assert other.get("/api/segment_exports/").json()["results"] == []
    assert client_for(outsider).get("/api/segment_exports/").status_code == 403


def test_unknown_destination_is_a_400(exporter, vip):
    response = client_for(exporter).post(
        "/api/segment_exports/", {"segment": vip.pk, "destination": 999}, format="json"
    )
    assert response.status_code == 400 and "destination" in response.json()["message"]


def test_schedules_api(exporter, vip):
    client = client_for(exporter)
    destination = csv_destination()
    body = {"segment": vip.pk, "destination": destination.pk, "frequency": "daily"}
    response = client.post("/api/segment_export_schedules/", body, format="json")
    assert response.status_code == 201, response.json()
    assert client.get("/api/segment_export_schedules/").json()["results"][0]["frequency"] == "daily"


def test_creating_a_schedule_again_changes_its_frequency(exporter, vip):
    """ "Create again to change the frequency": the serializer's unique-together check answered 400 "The fields
    segment, destination must make a unique set." instead."""
    client = client_for(exporter)
    destination = csv_destination()
    body = {"segment": vip.pk, "destination": destination.pk, "frequency": "daily"}
    first = client.post("/api/segment_export_schedules/", body, format="json")

    again = client.post("/api/segment_export_schedules/", {**body, "frequency": "hourly"}, format="json")

    assert again.status_code == 201, again.json()
    assert again.json()["id"] == first.json()["id"]
    assert [s["frequency"] for s in client.get("/api/segment_export_schedules/").json()["results"]] == ["hourly"]


def test_a_schedule_of_a_hidden_segment_answers_as_one_of_a_missing_segment(exporter, vip):
    """A segment the user may not see is a 404 like an id that does not exist (it was a 400 "Invalid pk ... does
    not exist" for the one and a 404 for the other: segment ids could be probed)."""
    stranger = user_create(
        username="stranger", password="Stranger-password!", role=role_create(name="S", features=[Feature.EXPORTS_RUN])
    )
    destination = csv_destination()
    client = client_for(stranger)

    hidden = client.post(
        "/api/segment_export_schedules/", {"segment": vip.pk, "destination": destination.pk, "frequency": "daily"},
        format="json",
    )  # fmt: skip
    missing = client.post(
        "/api/segment_export_schedules/", {"segment": 999999, "destination": destination.pk, "frequency": "daily"},
        format="json",
    )  # fmt: skip

    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()


def test_a_schedule_without_frequency_is_daily(exporter, vip):
    """The schema marks `frequency` optional (the model's default: daily); leaving it out was a 500 (KeyError)."""
    client = client_for(exporter)
    body = {"segment": vip.pk, "destination": csv_destination().pk}

    response = client.post("/api/segment_export_schedules/", body, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["frequency"] == "daily" and response.json()["enabled"] is True


def test_creating_a_schedule_again_changes_only_what_the_body_names(exporter, vip):
    """Re-sending the pair without `frequency` or `enabled` used to turn an hourly schedule back to daily and
    re-enable a disabled one."""
    client = client_for(exporter)
    pair = {"segment": vip.pk, "destination": csv_destination().pk}
    client.post("/api/segment_export_schedules/", {**pair, "frequency": "hourly", "enabled": False}, format="json")

    again = client.post("/api/segment_export_schedules/", pair, format="json")
    enabled = client.post("/api/segment_export_schedules/", {**pair, "enabled": True}, format="json")

    assert again.status_code == 201 and (again.json()["frequency"], again.json()["enabled"]) == ("hourly", False)
    assert (enabled.json()["frequency"], enabled.json()["enabled"]) == ("hourly", True)


@pytest.mark.django_db(transaction=True)
def test_run_export_command_exports_and_reports(exporter, capsys, settings, tmp_path):
    attributes_define()
    customers_create(4)
    segment = vip_segment(exporter, name="Command VIPs")
    csv_destination(name="Files")
    call_command("run_export", "Command VIPs", "Files", "--user", "exporter", "--no-progress")
    out = capsys.readouterr().out
    assert "finished; 4 sent" in out
    export = SegmentExport.objects.get(segment=segment)
    assert export.started_by == exporter and export.file_name
    assert Notification.objects.filter(user=exporter, level="success").exists()
    with pytest.raises(CommandError, match="Unknown segment"):
        call_command("run_export", "Nope", "Files")


@pytest.mark.django_db(transaction=True)
def test_run_export_retries_a_transient_failure_itself_and_says_so(exporter, capsys, monkeypatch):
    from segments.exports import services
    from tests.loaders.fakes import FakeCustomerIo
    from tests.segments.exports_helpers import customerio_destination

    # Was: the retry went to a Celery worker and the command ended "Export #n: waiting; ..." with exit code 1.
    monkeypatch.setattr(services, "TRANSIENT_RETRY_DELAY_S", 0)
    attributes_define()
    customers_create(3)
    vip_segment(exporter, name="Command VIPs")
    fake = FakeCustomerIo().start()
    try:
        customerio_destination(fake, name="Cio")
        for _ in range(6):  # every attempt of the first run
            fake.fail_next(503, {"Retry-After": "0"}, {"meta": {"error": "down for maintenance"}})
        call_command("run_export", "Command VIPs", "Cio", "--no-progress")
    finally:
        fake.stop()
    captured = capsys.readouterr()
    assert "finished; 3 sent" in captured.out
    assert "Attempt 1 of 5: Customer.io answered HTTP 503: down for maintenance" in captured.err
    export = SegmentExport.objects.get()
    assert export.status == SegmentExport.Status.FINISHED and export.attempts == 2
    assert len(fake.people) == 3


@pytest.mark.django_db(transaction=True)
def test_an_export_started_while_redis_is_down_waits_and_the_watchdog_starts_it(exporter, vip):
    """With Redis unreachable, POST /api/segment_exports/ stored the export, then its task message failed after the
    commit: a 500 for an export left waiting with nothing said (and a retry refused: one export of a pair at a
    time). Now it is accepted, its log says it waits for the task queue, and the watchdog starts it once Redis is
    back."""
    from datetime import timedelta

    from segments.exports.services import exports_stale_recover
    from tests.workers import broker_unreachable

    client = client_for(exporter)
    destination = csv_destination()
    with broker_unreachable():
        response = client.post("/api/segment_exports/", {"segment": vip.pk, "destination": destination.pk},
                               format="json")  # fmt: skip

    assert response.status_code == 201, response.content
    export = SegmentExport.objects.get(pk=response.json()["id"])
    assert export.status == SegmentExport.Status.WAITING
    assert "The task queue is unavailable: the export waits for it." in export.log

    assert exports_stale_recover(older_than=timedelta(0))["requeued"] == 1  # the beat's watchdog, Redis back
    export.refresh_from_db()
    assert export.status == SegmentExport.Status.FINISHED and export.sent == 3
