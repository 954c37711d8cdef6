"""The email admin pages render and their writes go through services (the browser tests drive the main flows)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from emails.models import EmailAddress, EmailChannel, Job
from emails.services.state import email_consent_change
from emails.services.templates import template_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(admin_user) -> Client:
    admin_user.is_staff = True
    admin_user.save()
    client = Client()
    client.force_login(admin_user)
    return client


def test_pages_render(staff, channel):
    email_consent_change(email="ann@example.com", consent=True, type="subscription_imported")
    template = template_create(name="T", subject="S", text_body="Hi {{ email }}")
    address = EmailAddress.objects.get()
    for url in [
        "/admin/emails/emailchannel/", f"/admin/emails/emailchannel/{channel.pk}/change/",
        "/admin/emails/emailtemplate/", f"/admin/emails/emailtemplate/{template.pk}/change/",
        f"/admin/emails/emailtemplate/{template.pk}/preview/", "/admin/emails/emailaddress/",
        f"/admin/emails/emailaddress/{address.pk}/change/", "/admin/emails/feedbackrejection/",
        "/admin/emails/job/", "/admin/emails/job/add/", "/admin/emails/campaign/", "/admin/emails/campaign/add/",
        "/admin/emails/emailaddress/block/?email=ann@example.com",
    ]:  # fmt: skip
        response = staff.get(url, follow=True)
        assert response.status_code == 200, url


def test_channel_form_keeps_secret_encrypted(staff, channel):
    url = f"/admin/emails/emailchannel/{channel.pk}/change/"
    form = staff.get(url).context["adminform"].form
    data = {name: form.initial.get(name) or "" for name in form.fields if name not in {"clear_credentials"}}
    data.update(credentials="smtp-password-0042", smtp_port=2525)
    response = staff.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    stored = EmailChannel.objects.get()
    assert stored.smtp_port == 2525 and stored.credentials_hint == "••••0042"
    assert "smtp-password-0042" not in stored.credentials_encrypted
    assert b"smtp-password-0042" not in staff.get(url).content


@pytest.mark.parametrize(
    "field, value, message",
    [
        (
            "opt_in_body",
            "Welcome! Reply to confirm.",
            "The text needs {{ confirm_url }}, the confirmation link: without it nobody can confirm a subscription.",
        ),
        ("send_rate_per_second", 0, "At least 1 email per second."),
        ("opt_in_frequency_hours", 0, "At least 1 hour."),
        ("smtp_port", 70000, "A port is at most 65535."),
        ("opt_in_link_valid_days", 10**6, "At most 3650 days (10 years)."),
    ],
)
def test_channel_form_shows_the_channel_s_checks_on_its_fields(staff, channel, field, value, message):
    """The checks the channel service makes beyond the model's were raised from save_model: a 500 page."""
    url = f"/admin/emails/emailchannel/{channel.pk}/change/"
    form = staff.get(url).context["adminform"].form
    data = {name: form.initial.get(name) or "" for name in form.fields if name not in {"clear_credentials"}}
    data[field] = value
    response = staff.post(url, data)
    assert response.status_code == 200  # the form again, not a 500
    assert response.context["adminform"].form.errors[field] == [message]
    assert EmailChannel.objects.get().smtp_port == channel.smtp_port  # nothing saved


def test_template_form_refuses_a_subject_with_a_line_break_on_the_form(staff):
    response = staff.post("/admin/emails/emailtemplate/add/", {"name": "T", "subject": "Sale\r\nBcc: all@example.com",
                                                               "text_body": "Hi {{ email }}"})  # fmt: skip
    assert response.status_code == 200  # the form again, not a 500
    assert response.context["adminform"].form.errors["subject"] == [
        "The subject must be one line: it holds a line break."
    ]


def test_channel_form_uses_the_admin_s_styled_widgets_and_readable_labels(staff, channel):
    # Django's bare password input has no border: the "Password / API key" box could not be seen at all.
    form = staff.get(f"/admin/emails/emailchannel/{channel.pk}/change/").context["adminform"].form
    for name in ("credentials", "smtp_host", "public_base_url"):
        assert "border" in str(form[name]), name
    assert "checkbox" in str(form["clear_credentials"]) and "border" in str(form["clear_credentials"])
    assert (form["smtp_host"].label, form["public_base_url"].label) == ("SMTP host", "Public base URL")


def test_the_profile_timeline_names_the_email_channel_s_events(staff, django_capture_on_commit_callbacks):
    from cdp.models import CustomerEntity

    # Given a customer whose consent came from an import (an event of the email channel, stitched by its address)
    with django_capture_on_commit_callbacks(execute=True):
        email_consent_change(email="ann@example.com", consent=True, type="subscription_imported")
    entity = CustomerEntity.objects.get(attributes__ps_email_address=["ann@example.com"])
    # When the marketer opens the profile, then the timeline reads the event's documented name, not its type
    page = staff.get(f"/admin/cdp/customerentity/{entity.pk}/change/").content.decode()
    assert 'title="subscription_imported">Email Subscription Imported</span>' in page


def test_an_empty_list_says_whether_nothing_is_there_or_nothing_matches(staff):
    # The theme said "This page yielded into no results. Create a new item or reset your filters." on every empty
    # list, with a "Reset filters" button when no filter was set.
    empty = staff.get("/admin/emails/job/").content.decode()
    assert "No import jobs yet" in empty and "Add import job" in empty
    assert "Reset filters" not in empty and "yielded" not in empty
    filtered = staff.get("/admin/emails/job/", {"status__exact": "failed"}).content.decode()
    assert "No import jobs match this search or these filters." in filtered and "Reset filters" in filtered


def test_bulk_block_asks_a_reason_then_blocks(staff, admin_user):
    for email in ("a@example.com", "b@example.com"):
        email_consent_change(email=email, consent=True, type="subscription_imported")
    ids = [str(pk) for pk in EmailAddress.objects.values_list("pk", flat=True)]
    url = "/admin/emails/emailaddress/"
    form = staff.post(url, {"action": "block_selected", "_selected_action": ids})
    assert form.status_code == 200 and b"Reason" in form.content
    missing = staff.post(url, {"action": "block_selected", "_selected_action": ids, "confirm": "yes", "reason": " "})
    assert b"This field is required" in missing.content or b"A reason is required" in missing.content
    assert not EmailAddress.objects.filter(blocked=True).exists()
    done = staff.post(url, {"action": "block_selected", "_selected_action": ids, "confirm": "yes",
                            "reason": "spam traps"}, follow=True)  # fmt: skip
    assert b"2 addresses blocked" in done.content
    assert EmailAddress.objects.filter(blocked=True, blocked_reason="spam traps",
                                       blocked_by=f"admin ({admin_user.pk})").count() == 2  # fmt: skip


def test_import_upload_starts_a_job(staff, django_capture_on_commit_callbacks):
    upload = SimpleUploadedFile("blocked.csv", b"email,reason\nx@example.com,trap\nbad,\n", content_type="text/csv")
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post("/admin/emails/job/add/", {"kind": "blocklist_import", "file": upload})
    assert response.status_code == 302
    job = Job.objects.get()
    assert job.status == "done" and job.result["loaded"] == 1 and job.result["errors"] == 1
    page = staff.get(f"/admin/emails/job/{job.pk}/change/")
    assert b"line 3" in page.content and b"2 / 2 rows" in page.content
    # The line number and the reason stand apart (the theme gives table cells no padding of their own).
    assert b'padding-right:16px;white-space:nowrap">line 3</td>' in page.content
    assert b"data-job-live" not in page.content  # done: nothing more to show


def test_running_import_page_reloads_to_show_its_progress(staff, admin_user):
    # Given an import a worker is still running (the page the upload redirects to)
    job = Job.objects.create(kind="contacts_import", status=Job.Status.RUNNING, file_name="c.csv", total=300,
                             processed=0, created_by=admin_user)  # fmt: skip
    # When its page is open, then it reloads itself until the job ends (as a campaign's page does)
    assert b"data-job-live" in staff.get(f"/admin/emails/job/{job.pk}/change/").content
    Job.objects.filter(pk=job.pk).update(status=Job.Status.DONE, processed=300)
    assert b"data-job-live" not in staff.get(f"/admin/emails/job/{job.pk}/change/").content


def test_admin_lists_and_pages_show_times_as_the_profile_does(staff, admin_user):
    # Django's English formats gave "Nov. 25, 2026, 7:25 a.m." on these pages, "2026-11-25 07:25 UTC" on others.
    job = Job.objects.create(kind="contacts_import", status=Job.Status.DONE, file_name="c.csv", total=1, processed=1,
                             created_by=admin_user)  # fmt: skip
    Job.objects.filter(pk=job.pk).update(created=datetime(2026, 11, 25, 7, 25, tzinfo=UTC))
    for url in ("/admin/emails/job/", f"/admin/emails/job/{job.pk}/change/"):
        page = staff.get(url).content.decode()
        assert "2026-11-25 07:25 UTC" in page, url
        assert "a.m." not in page and "Nov." not in page, url


def test_campaign_page_pauses_and_resumes_with_a_confirmation(staff, admin_user):
    from cdp.models import Attribute
    from emails.models import Campaign
    from segments.services import segment_create

    Attribute.objects.create(id="vip", name="VIP", data_type="bool", computation="last_value", path="vip")
    segment = segment_create(owner=admin_user, name="All", conditions={"attribute": "vip", "operator": "is_set"})
    template = template_create(name="T", subject="S", text_body="Hi {{ email }}")
    campaign = Campaign.objects.create(name="Spring", template=template, segment_id=segment.pk,
                                       status=Campaign.Status.SENDING)  # fmt: skip
    url = f"/admin/emails/campaign/{campaign.pk}/change/"
    page = staff.get(url).content.decode()
    assert f"/campaign/{campaign.pk}/pause/" in page and f"/campaign/{campaign.pk}/resume/" not in page
    assert f'href="/admin/segments/segment/{segment.pk}/change/">All</a>' in page  # the segment by name
    assert "data-campaign-live" in page  # reloads to show its progress while it sends

    confirm = staff.get(f"/admin/emails/campaign/{campaign.pk}/pause/")
    assert b"Pause the campaign" in confirm.content
    assert Campaign.objects.get(pk=campaign.pk).status == "sending"  # (a GET only asks)
    done = staff.post(f"/admin/emails/campaign/{campaign.pk}/pause/", {"confirm": "yes"}, follow=True)
    assert "Campaign “Spring” paused." in done.content.decode()
    assert Campaign.objects.get(pk=campaign.pk).status == "paused"
    page = staff.get(url).content.decode()
    assert f"/campaign/{campaign.pk}/resume/" in page and f"/campaign/{campaign.pk}/pause/" not in page
    assert "data-campaign-live" not in page

    # A page left open: pausing a paused campaign says why nothing happened.
    again = staff.post(f"/admin/emails/campaign/{campaign.pk}/pause/", {"confirm": "yes"}, follow=True)
    assert "only a queued, preparing or sending campaign can be paused" in again.content.decode()


def test_campaign_page_says_why_sending_failed(staff, admin_user):
    from cdp.models import Attribute
    from emails.models import Campaign, CampaignRecipient
    from segments.services import segment_create

    # Given a campaign whose recipients failed (an SMTP server that was down) and one that was sent
    Attribute.objects.create(id="vip", name="VIP", data_type="bool", computation="last_value", path="vip")
    segment = segment_create(owner=admin_user, name="All", conditions={"attribute": "vip", "operator": "is_set"})
    template = template_create(name="T", subject="S", text_body="Hi {{ email }}")
    campaign = Campaign.objects.create(name="Spring", template=template, segment_id=segment.pk, status="done")
    down = "SMTP server unreachable: [Errno 111] Connection refused"
    for email, status, reason in [("a@x.cz", "failed", down), ("b@x.cz", "failed", down), ("c@x.cz", "sent", "")]:
        CampaignRecipient.objects.create(campaign=campaign, email=email, status=status, reason=reason)
    # When its page is shown, then it gives the reason with how many it failed, not only "failed 2"
    page = staff.get(f"/admin/emails/campaign/{campaign.pk}/change/").content.decode()
    assert "Sent 1 · failed 2" in page
    assert "Why sending failed:<ul><li>SMTP server unreachable: [Errno 111] Connection refused (2)</li></ul>" in page


def test_campaign_and_import_forms_use_the_admin_s_styled_widgets(staff):
    # Django's bare widgets render without a border in the Business Explorer: the Name box was invisible.
    campaign_form = staff.get("/admin/emails/campaign/add/").context["form"]
    import_form = staff.get("/admin/emails/job/add/").context["form"]
    for field in (*campaign_form.visible_fields(), *import_form.visible_fields()):
        assert "border" in str(field), field.name


def test_new_campaign_form_says_why_it_cannot_start(staff, admin_user, channel):
    from cdp.models import Attribute
    from emails.models import Campaign
    from emails.services.channel import channel_update
    from segments.services import segment_create

    Attribute.objects.create(id="vip", name="VIP", data_type="bool", computation="last_value", path="vip")
    segment = segment_create(owner=admin_user, name="All", conditions={"attribute": "vip", "operator": "is_set"})
    template = template_create(name="T", subject="S", text_body="Hi {{ email }}")
    channel_update(public_base_url="")
    response = staff.post("/admin/emails/campaign/add/", {"name": "Spring", "template": template.pk,
                                                          "segment": segment.pk})  # fmt: skip
    assert response.status_code == 200
    assert "the email channel has no public base URL" in response.content.decode()
    assert not Campaign.objects.exists()


def test_the_start_button_pressed_twice_starts_one_campaign(
    staff, admin_user, channel, smtp_server, django_capture_on_commit_callbacks
):
    """Two POSTs of one new-campaign form (a double click, the form sent again from the browser's history) started
    two campaigns: everyone in the segment got the email twice."""
    from cdp.models import Attribute, CustomerEntity
    from emails.models import Campaign
    from segments.services import segment_create
    from stitching.models import Identifier

    Attribute.objects.create(id="vip", name="VIP", data_type="bool", computation="last_value", path="vip")
    entity = CustomerEntity.objects.create(id="a1".ljust(32, "0"), attributes={"vip": [True]})
    Identifier.objects.create(category_id="email", value="ann@example.com", customer_entity=entity)
    email_consent_change(email="ann@example.com", consent=True, type="subscription_imported")
    segment = segment_create(owner=admin_user, name="VIPs", conditions={"attribute": "vip", "operator": "is_true"})
    template = template_create(name="T", subject="S", text_body="Hi {{ email }}\n{{ unsubscribe_url }}")
    form = staff.get("/admin/emails/campaign/add/").context["form"]
    data = {"submission": form["submission"].value(), "name": "Spring", "template": template.pk,
            "segment": segment.pk}  # fmt: skip
    assert data["submission"]
    with django_capture_on_commit_callbacks(execute=True):
        first = staff.post("/admin/emails/campaign/add/", data)
        again = staff.post("/admin/emails/campaign/add/", data)
    campaign = Campaign.objects.get()
    assert first["Location"] == again["Location"] == f"/admin/emails/campaign/{campaign.pk}/change/"
    assert [m["To"] for m in smtp_server.inbox.wait_for(1)] == ["ann@example.com"]
    # A new form is a new campaign.
    data["submission"] = staff.get("/admin/emails/campaign/add/").context["form"]["submission"].value()
    assert data["submission"] != form["submission"].value()
    with django_capture_on_commit_callbacks(execute=True):
        staff.post("/admin/emails/campaign/add/", data)
    assert Campaign.objects.count() == 2


def test_the_profile_shows_a_block_reason_only_to_those_who_may_see_the_email_channel(web_source, admin_user):
    """A role with customers_view alone saw the channel's block reason (free text: a bounce message, a complaint)
    on the profile, which the email addresses' own pages keep for emails_view."""
    from django.urls import reverse

    from cdp.features import Feature
    from cdp.services.auth import role_create, user_create
    from emails.services.state import email_block
    from tests.stitching.graph_builder import GraphBuilder

    graph = GraphBuilder(web_source)
    ann = graph.entity(ps_email_address=["ann@example.com"])
    graph.event(ann, identifiers=[("email", "ann@example.com")])
    email_block(email="ann@example.com", reason="complained about the weekly offers", user=admin_user)
    url = reverse("admin:cdp_customerentity_change", args=[ann.pk])

    def page_for(*features) -> str:
        role = role_create(name="+".join(features), features=list(features))
        client = Client()
        client.force_login(user_create(username="+".join(features), password=None, role=role))
        return client.get(url).content.decode()

    viewer = page_for(Feature.CUSTOMERS_VIEW)
    assert "ann@example.com" in viewer and "blocked" in viewer
    assert "complained about the weekly offers" not in viewer
    assert "complained about the weekly offers" in page_for(Feature.CUSTOMERS_VIEW, Feature.EMAILS_VIEW)
    assert "complained about the weekly offers" in page_for(Feature.CUSTOMERS_VIEW, Feature.EMAILS_BLOCK)


@pytest.mark.django_db(transaction=True)
def test_an_import_uploaded_while_redis_is_down_waits_and_the_watchdog_runs_it(staff):
    """With Redis unreachable, the upload stored the queued job, then its task message failed after the commit: a
    500. Now the upload is accepted, the job says it waits for the task queue, and the watchdog runs it once Redis is
    back."""
    from datetime import timedelta

    from django.utils import timezone

    from emails.services.imports import IMPORT_STALE_AFTER
    from emails.tasks import import_jobs_resume
    from tests.workers import broker_unreachable

    upload = SimpleUploadedFile("blocked.csv", b"email,reason\nx@example.com,trap\n", content_type="text/csv")
    with broker_unreachable():
        response = staff.post("/admin/emails/job/add/", {"kind": "blocklist_import", "file": upload})

    assert response.status_code == 302
    job = Job.objects.get()
    assert job.status == Job.Status.QUEUED
    assert job.message.startswith("The task queue is unavailable: the import waits for it.")
    assert b"The task queue is unavailable" in staff.get(f"/admin/emails/job/{job.pk}/change/").content

    Job.objects.filter(pk=job.pk).update(created=timezone.now() - IMPORT_STALE_AFTER - timedelta(seconds=1))
    assert import_jobs_resume() == 1  # the beat's watchdog, Redis back (its task runs in-process here)
    job.refresh_from_db()
    assert job.status == Job.Status.DONE and job.message.startswith("1 loaded")
    assert EmailAddress.objects.get(email="x@example.com").blocked
