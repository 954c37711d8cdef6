"""The Business Explorer's export pages (segments/exports/admin.py) through Django's test client."""

import pytest

from segments.exports.models import ExportSchedule
from segments.exports.services import schedule_set
from tests.segments.exports_helpers import attributes_define, csv_destination, vip_segment

pytestmark = pytest.mark.django_db


def test_changing_a_schedules_segment_changes_that_schedule_not_adds_another(client, admin_user):
    attributes_define()
    vip = vip_segment(admin_user)
    other = vip_segment(admin_user, name="Other")
    destination = csv_destination()
    schedule = schedule_set(segment=vip, destination=destination, frequency="daily", user=admin_user)
    ExportSchedule.objects.filter(pk=schedule.pk).update(last_run_at="2026-01-01T00:00:00Z")
    client.force_login(admin_user)

    response = client.post(
        f"/admin/segments/exportschedule/{schedule.pk}/change/",
        {"segment": other.pk, "destination": destination.pk, "frequency": "hourly", "enabled": "on"},
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    assert list(ExportSchedule.objects.values_list("pk", "segment_id", "frequency")) == [
        (schedule.pk, other.pk, "hourly")
    ]
    assert ExportSchedule.objects.get().last_run_at is None  # a pair never exported on it: due at once


def test_a_schedule_cannot_be_changed_into_a_duplicate(client, admin_user):
    attributes_define()
    vip = vip_segment(admin_user)
    other = vip_segment(admin_user, name="Other")
    destination = csv_destination()
    schedule_set(segment=vip, destination=destination, frequency="daily", user=admin_user)
    second = schedule_set(segment=other, destination=destination, frequency="daily", user=admin_user)
    client.force_login(admin_user)

    response = client.post(
        f"/admin/segments/exportschedule/{second.pk}/change/",
        {"segment": vip.pk, "destination": destination.pk, "frequency": "daily", "enabled": "on"},
    )

    assert response.status_code == 200 and "already exists" in response.content.decode()
    assert ExportSchedule.objects.get(pk=second.pk).segment_id == other.pk


def test_a_destination_an_export_waits_for_cannot_be_deleted_in_the_admin(client, admin_user):
    from segments.exports.models import ExportDestination, SegmentExport
    from segments.exports.services import export_create

    attributes_define()
    destination = csv_destination()
    export = export_create(segment=vip_segment(admin_user), destination=destination, user=admin_user, enqueue=False)
    client.force_login(admin_user)
    url = f"/admin/segments/exportdestination/{destination.pk}/delete/"
    assert client.get(url).status_code == 200  # the confirmation page

    response = client.post(url, {"post": "yes"}, follow=True)

    assert "an export to this destination is running; wait for it to end." in response.content.decode()
    assert ExportDestination.objects.filter(pk=destination.pk).exists()
    SegmentExport.objects.filter(pk=export.pk).update(status=SegmentExport.Status.FINISHED)
    client.post(url, {"post": "yes"})
    assert not ExportDestination.objects.exists()


def test_deleting_a_destination_needs_the_edit_feature(client, db):
    from cdp.features import Feature
    from cdp.services.auth import role_create, user_create
    from segments.exports.models import ExportDestination

    role = role_create(name="Exporter", features=[Feature.EXPORTS_RUN, Feature.SEGMENTS_VIEW])
    user = user_create(username="exporter", password="Exporter-password!", role=role)
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    destination = csv_destination()
    client.force_login(user)
    response = client.post(f"/admin/segments/exportdestination/{destination.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403 and ExportDestination.objects.filter(pk=destination.pk).exists()


def test_destination_and_new_export_forms_use_the_admin_s_styled_widgets(client, admin_user):
    # Django's bare widgets render without a border in the Business Explorer: the kind, the configuration and the
    # mandatory attributes of a destination, and the two choices of "New export", looked like plain text.
    attributes_define()
    vip_segment(admin_user)
    destination = csv_destination()
    client.force_login(admin_user)
    destination_form = (
        client.get(f"/admin/segments/exportdestination/{destination.pk}/change/").context["adminform"].form
    )
    new_export_form = client.get("/admin/segments/segmentexport/new/").context["form"]
    for field in (*destination_form, *new_export_form):
        assert "border" in str(field), field.name


def test_the_exports_list_shows_the_file_link_next_to_the_progress(client, admin_user):
    from segments.exports.models import SegmentExport

    # Given an export in the history
    attributes_define()
    segment = vip_segment(admin_user)
    destination = csv_destination()
    SegmentExport.objects.create(
        segment=segment,
        destination=destination,
        segment_name=segment.name,
        destination_name=destination.name,
        destination_kind="csv",
        started_by=admin_user,
    )
    client.force_login(admin_user)
    # When the list is shown, then its file link follows the progress bar instead of being the last of eleven
    # columns, which a laptop's screen scrolled out of sight
    row = client.get("/admin/segments/segmentexport/").content.decode()
    assert row.index('class="export-progress"') < row.index('class="export-download"') < row.index("data-export-count")
