"""Campaigns: a template to a segment over real SMTP; only consent and not blocked; a working unsubscribe link;
no one mailed twice on a retry; the segment ACL; provider rate limits; opt-in through a real Celery worker."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from cdp.models import Attribute, CustomerEntity
from cdp.services.auth import user_create
from emails.models import Campaign, CampaignRecipient, EmailAddress
from emails.selectors import campaigns_stalled
from emails.services.campaigns import LEASE, MAX_RUN_FAILURES, campaign_create, campaign_report, campaign_run
from emails.services.channel import channel_update
from emails.services.state import email_block, email_consent_change
from emails.services.templates import template_create
from notifications.models import Notification
from segments.services import segment_create
from stitching.models import Identifier
from tests.emails.servers import body_text

pytestmark = pytest.mark.django_db

VIP = {"attribute": "vip", "operator": "is_true"}


def member(entity_id: str, *emails: str, vip: bool = True) -> CustomerEntity:
    entity = CustomerEntity.objects.create(id=entity_id.ljust(32, "0"), attributes={"vip": [vip]})
    for email in emails:
        Identifier.objects.create(category_id="email", value=email, customer_entity=entity)
    return entity


@pytest.fixture
def audience(db, admin_user):
    """Members: ann (consent), bob (consent, blocked), cid (unsubscribed), dan (never asked), eve (two addresses,
    one with consent); fay is not in the segment."""
    Attribute.objects.update_or_create(id="vip", defaults={"name": "VIP", "data_type": "bool",
                                                            "computation": "last_value", "path": "vip"})  # fmt: skip
    member("a1", "ann@example.com")
    member("b2", "bob@example.com")
    member("c3", "cid@example.com")
    member("d4", "dan@example.com")
    member("e5", "eve@example.com", "eve@work.example.com")
    member("f6", "fay@example.com", vip=False)
    for email in ("ann@example.com", "bob@example.com", "cid@example.com", "eve@work.example.com",
                  "fay@example.com"):  # fmt: skip
        email_consent_change(email=email, consent=True, type="subscription_imported")
    email_consent_change(email="cid@example.com", consent=False, type="unsubscribe")
    email_block(email="bob@example.com", reason="bounced", user=admin_user)
    return segment_create(owner=admin_user, name="VIPs", conditions=VIP)


@pytest.fixture
def template(db):
    return template_create(
        name="Spring sale", subject="Spring sale for {{ email }}",
        html_body="<p>Hello {{ email }}</p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a>",
        text_body="Hello {{ email }}\nUnsubscribe: {{ unsubscribe_url }}",
    )  # fmt: skip


def test_campaign_mails_only_consenting_unblocked_members(
    channel, smtp_server, audience, template, admin_user, public_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        campaign = campaign_create(name="Spring", template=template, segment_id=audience.pk, user=admin_user)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DONE
    received = smtp_server.inbox.wait_for(2)
    assert sorted(m["To"] for m in received) == ["ann@example.com", "eve@work.example.com"]
    report = campaign_report(campaign=campaign)
    assert report == {"sent": 2, "failed": 0, "pending": 0,
                      "skipped": {"blocked": 1, "unsubscribed": 1, "no_consent": 2}}  # fmt: skip
    assert (campaign.total, campaign.sent, campaign.skipped) == (6, 2, 4)

    # The unsubscribe link carries email, campaign id and name, subject and message id, and works.
    message = smtp_server.inbox.to("ann@example.com")[0]
    link = re.search(r"Unsubscribe: (\S+)", body_text(message)).group(1)
    assert " ".join(str(message["List-Unsubscribe"]).split()).startswith(
        "<http://shop.example.com/emails/unsubscribe/one-click?token="
    )  # one-click (test_one_click_unsubscribe_from_the_mailbox); the body links to the page
    url = urlsplit(link)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    recipient = CampaignRecipient.objects.get(campaign=campaign, email="ann@example.com")
    assert query == {"email": "ann@example.com", "campaign_id": str(campaign.pk), "campaign_name": "Spring",
                     "subject": "Spring sale for ann@example.com", "message_id": recipient.message_id}  # fmt: skip
    page = public_client.get(f"{url.path}?{url.query}")
    assert page.status_code == 200 and 'value="ann@example.com"' in page.content.decode()
    response = public_client.post("/emails/unsubscribe", {
        "email": query["email"], "campaign": {"id": query["campaign_id"], "name": query["campaign_name"]},
        "subject": query["subject"], "message_id": query["message_id"], "unsubscribe_source": "unsubscribe page",
    }, format="json")  # fmt: skip
    assert response.status_code == 200
    assert EmailAddress.objects.get(email="ann@example.com").consent is False


def test_one_click_unsubscribe_from_the_mailbox(channel, smtp_server, audience, template, admin_user, public_client):
    """RFC 8058 (Gmail / Yahoo bulk-sender rules): the mailbox's Unsubscribe button POSTs to List-Unsubscribe."""
    from cdp.models import CustomerEvent

    campaign = campaign_create(name="Spring", template=template, segment_id=audience.pk, user=admin_user, start=False)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.QUEUED)
    campaign_run(campaign_id=campaign.pk)
    message = smtp_server.inbox.wait_for(2) and smtp_server.inbox.to("ann@example.com")[0]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = urlsplit(" ".join(str(message["List-Unsubscribe"]).split()).strip("<>"))
    one_click = f"{url.path}?{url.query}"
    recipient = CampaignRecipient.objects.get(campaign=campaign, email="ann@example.com")

    # A GET (a person, a link scanner) never unsubscribes: it goes to the unsubscribe page, prefilled.
    page = public_client.get(one_click)
    assert page.status_code == 302
    assert page["Location"] == (f"/email/unsubscribe.html?email=ann%40example.com&campaign_id={campaign.pk}"
                                f"&campaign_name=Spring&message_id={recipient.message_id}")  # fmt: skip
    assert EmailAddress.objects.get(email="ann@example.com").consent is True

    # The mailbox's POST unsubscribes; a repeat answers 200 too and records nothing more.
    for _ in range(2):
        done = public_client.post(one_click, "List-Unsubscribe=One-Click",
                                  content_type="application/x-www-form-urlencoded")  # fmt: skip
        assert done.status_code == 200, done.content
    assert EmailAddress.objects.get(email="ann@example.com").consent is False
    [event] = CustomerEvent.objects.filter(type="unsubscribe", payload__email="ann@example.com")
    assert event.payload["campaign"] == {"id": str(campaign.pk), "name": "Spring"}
    assert event.payload["message_id"] == recipient.message_id
    assert event.payload["unsubscribe_source"] == "one-click (List-Unsubscribe)"

    # A forged or damaged token unsubscribes nobody.
    forged = public_client.post(f"{url.path}?token=eyJlIjoiZXZlQHdvcmsuZXhhbXBsZS5jb20ifQ:1x:abc")
    assert forged.status_code == 400 and forged.json()["status"] == "TokenInvalid"
    assert public_client.get(f"{url.path}?token=x")["Location"] == "/email/unsubscribe.html"
    assert EmailAddress.objects.get(email="eve@work.example.com").consent is True


def test_a_campaign_name_with_a_line_break_still_gives_a_one_line_subject(channel, smtp_server, audience, admin_user):
    template = template_create(name="Named", subject="{{ campaign_name }} for {{ email }}", text_body="Hi")
    campaign = campaign_create(name="Spring\r\nsale", template=template, segment_id=audience.pk, user=admin_user,
                               start=False)  # fmt: skip
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.QUEUED)
    assert campaign_run(campaign_id=campaign.pk).startswith("sent 2")
    subjects = sorted(str(m["Subject"]) for m in smtp_server.inbox.wait_for(2))
    assert subjects == ["Spring sale for ann@example.com", "Spring sale for eve@work.example.com"]


def test_the_marketer_is_notified_when_a_campaign_is_sent_or_fails(channel, smtp_server, audience, template,
                                                                   admin_user):  # fmt: skip
    sent = campaign_create(name="Done", template=template, segment_id=audience.pk, user=admin_user, start=False)
    Campaign.objects.filter(pk=sent.pk).update(status=Campaign.Status.QUEUED)
    campaign_run(campaign_id=sent.pk)
    assert campaign_run(campaign_id=sent.pk) == "nothing to do"  # (a duplicated task notifies nobody again)
    channel_update(sender_email="")
    failed = campaign_create(name="Broken", template=template, segment_id=audience.pk, user=admin_user, start=False)
    Campaign.objects.filter(pk=failed.pk).update(status=Campaign.Status.QUEUED)
    campaign_run(campaign_id=failed.pk)

    notices = Notification.objects.filter(user=admin_user).order_by("id")
    assert [(n.title, n.level, n.message, n.link) for n in notices] == [
        ("Campaign “Done” sent", "success", "Sent 2, skipped 4, failed 0.",
         f"/admin/emails/campaign/{sent.pk}/change/"),
        ("Campaign “Broken” failed", "error", "the email channel cannot send: the email channel has no sender address "
         "configured", f"/admin/emails/campaign/{failed.pk}/change/"),
    ]  # fmt: skip


def test_retry_sends_nobody_twice(channel, smtp_server, audience, template, admin_user):
    campaign = campaign_create(name="Once", template=template, segment_id=audience.pk, user=admin_user, start=False)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.QUEUED)
    campaign_run(campaign_id=campaign.pk)
    smtp_server.inbox.wait_for(2)
    # A duplicated task, or one re-run after a crash, sends nothing again.
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING)
    campaign_run(campaign_id=campaign.pk)
    assert campaign_run(campaign_id=campaign.pk) == "nothing to do"
    assert len(smtp_server.inbox.messages) == 2
    assert CampaignRecipient.objects.filter(campaign=campaign).count() == 6


def test_interrupted_rows_are_not_sent_again(channel, smtp_server, audience, template, admin_user):
    campaign = campaign_create(name="Crash", template=template, segment_id=audience.pk, user=admin_user, start=False)
    from emails.services.campaigns import campaign_prepare

    campaign_prepare(campaign=campaign)
    CampaignRecipient.objects.filter(campaign=campaign, email="ann@example.com").update(status="sending")
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING)
    campaign_run(campaign_id=campaign.pk)
    assert [m["To"] for m in smtp_server.inbox.wait_for(1)] == ["eve@work.example.com"]
    assert CampaignRecipient.objects.get(campaign=campaign, email="ann@example.com").status == "failed"


def test_a_worker_dying_mid_batch_skips_nobody(channel, smtp_server, audience, template, admin_user):
    """A batch of up to 100 rows was marked `sending` when it was claimed: a worker killed after the first send left
    the others `sending`, and the next run marked them failed ("interrupted") — never sent. Only the row being handed
    over may be in doubt."""
    channel_update(send_rate_per_second=1)  # the run waits between its two sends
    campaign = campaign_create(name="Killed", template=template, segment_id=audience.pk, user=admin_user, start=False)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.QUEUED)
    left: dict[str, str] = {}

    class Killed(BaseException):
        pass

    def killed(seconds: float) -> None:
        # The worker is killed (SIGKILL, OOM) here, after ann's send: what it leaves is what the database holds now.
        left.update(CampaignRecipient.objects.filter(campaign=campaign).values_list("email", "status"))
        raise Killed

    with pytest.raises(Killed):
        campaign_run(campaign_id=campaign.pk, sleep=killed)
    assert left["ann@example.com"] == "sent" and left["eve@work.example.com"] == "pending"
    for email, status in left.items():  # (a killed process runs no clean-up)
        CampaignRecipient.objects.filter(campaign=campaign, email=email).update(status=status)
    _leased_by_another(campaign, seconds=-1)

    assert campaign_run(campaign_id=campaign.pk).startswith("sent 2")
    assert sorted(m["To"] for m in smtp_server.inbox.wait_for(2)) == ["ann@example.com", "eve@work.example.com"]


def _leased_by_another(campaign: Campaign, *, seconds: float) -> uuid.UUID:
    token = uuid.uuid4()
    until = timezone.now() + timedelta(seconds=seconds)
    Campaign.objects.filter(pk=campaign.pk).update(run_token=token, run_lease_until=until)
    return token


def test_a_campaign_another_run_holds_is_left_to_it(channel, smtp_server, audience, template, admin_user):
    campaign = campaign_create(name="Held", template=template, segment_id=audience.pk, user=admin_user, start=False)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.QUEUED)
    token = _leased_by_another(campaign, seconds=60)

    assert campaign_run(campaign_id=campaign.pk) == "already running"
    assert not CampaignRecipient.objects.filter(campaign=campaign).exists() and smtp_server.inbox.messages == []
    assert Campaign.objects.get(pk=campaign.pk).run_token == token  # not released by the run that did not hold it
    assert campaigns_stalled(lease=LEASE) == []


def test_a_run_that_died_is_taken_over_once_its_lease_expires(channel, smtp_server, audience, template, admin_user):
    from emails.services.campaigns import campaign_prepare

    campaign = campaign_create(name="Died", template=template, segment_id=audience.pk, user=admin_user, start=False)
    campaign_prepare(campaign=campaign)
    CampaignRecipient.objects.filter(campaign=campaign, email="ann@example.com").update(status="sending")
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.SENDING, started=timezone.now())
    _leased_by_another(campaign, seconds=-1)

    prepared = timezone.now() - timedelta(minutes=7)
    Campaign.objects.filter(pk=campaign.pk).update(prepared=prepared)
    assert campaigns_stalled(lease=LEASE) == [campaign.pk]  # the beat's watchdog runs it again
    assert campaign_run(campaign_id=campaign.pk).startswith("sent 1")
    assert Campaign.objects.get(pk=campaign.pk).prepared == prepared  # the audience stays the one prepared
    assert [m["To"] for m in smtp_server.inbox.wait_for(1)] == ["eve@work.example.com"]
    assert CampaignRecipient.objects.get(campaign=campaign, email="ann@example.com").status == "failed"
    done = Campaign.objects.get(pk=campaign.pk)
    assert (done.status, done.run_token, done.run_lease_until) == ("done", None, None)
    assert campaigns_stalled(lease=LEASE) == []


def test_a_run_stalled_past_its_lease_stops_before_its_next_send(
    channel, smtp_server, audience, template, admin_user, monkeypatch
):
    from emails.services import campaigns

    monkeypatch.setattr(campaigns, "RENEW_AFTER", timedelta(0))  # renew before every send
    channel_update(send_rate_per_second=1)  # the run waits between its two sends
    campaign = campaign_create(name="Stall", template=template, segment_id=audience.pk, user=admin_user, start=False)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.QUEUED)
    taken: list[uuid.UUID] = []

    def stalled(seconds: float) -> None:
        # The run stalls past its lease (a long GC pause, a frozen VM) and another run takes the campaign over.
        if not taken:
            taken.append(_leased_by_another(campaign, seconds=300))

    assert campaign_run(campaign_id=campaign.pk, sleep=stalled) == "stopped: another run took the campaign over"
    assert len(smtp_server.inbox.wait_for(1)) == 1
    assert Campaign.objects.get(pk=campaign.pk).run_token == taken[0]


def test_progress_shows_the_sends_of_a_batch_still_sending(
    channel, smtp_server, audience, template, admin_user, monkeypatch
):
    from emails.services import campaigns

    # A slow channel: the first 100-recipient batch takes 100 s at 1 email/s; the progress bar must move meanwhile.
    monkeypatch.setattr(campaigns, "PROGRESS_EVERY", timedelta(0))
    channel_update(send_rate_per_second=1)
    campaign = campaign_create(name="Slow", template=template, segment_id=audience.pk, user=admin_user, start=False)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.QUEUED)
    seen: list[tuple[int, int, int]] = []

    def wait(seconds: float) -> None:  # between the two sends, while the batch is still sending
        seen.append(Campaign.objects.values_list("sent", "skipped", "total").get(pk=campaign.pk))

    campaign_run(campaign_id=campaign.pk, sleep=wait)
    assert seen == [(1, 4, 6)]
    assert Campaign.objects.get(pk=campaign.pk).percent == 100


def test_a_paused_campaign_stops_before_its_next_send_and_resumes_with_the_rest(
    channel, smtp_server, audience, template, admin_user, monkeypatch, django_capture_on_commit_callbacks
):
    from emails.services import campaigns

    monkeypatch.setattr(campaigns, "PAUSE_CHECK_EVERY", timedelta(0))
    channel_update(send_rate_per_second=1)  # the run waits between its two sends: the marketer pauses then
    campaign = campaign_create(name="Pause", template=template, segment_id=audience.pk, user=admin_user, start=False)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.QUEUED)

    def marketer_pauses(seconds: float) -> None:
        campaigns.campaign_pause(campaign=campaign)

    assert campaign_run(campaign_id=campaign.pk, sleep=marketer_pauses) == "paused"
    assert [m["To"] for m in smtp_server.inbox.wait_for(1)] == ["ann@example.com"]
    paused = Campaign.objects.get(pk=campaign.pk)
    assert (paused.status, paused.sent, paused.run_token) == ("paused", 1, None)
    assert CampaignRecipient.objects.get(campaign=campaign, email="eve@work.example.com").status == "pending"
    # Nothing sends it meanwhile: neither a duplicated task nor the watchdog.
    assert campaign_run(campaign_id=campaign.pk) == "paused"
    assert campaigns_stalled(lease=LEASE) == []
    with pytest.raises(ValidationError, match="only a queued, preparing or sending campaign can be paused"):
        campaigns.campaign_pause(campaign=campaign)

    with django_capture_on_commit_callbacks(execute=True):
        campaigns.campaign_resume(campaign=campaign)
    assert sorted(m["To"] for m in smtp_server.inbox.wait_for(2)) == ["ann@example.com", "eve@work.example.com"]
    done = Campaign.objects.get(pk=campaign.pk)
    assert (done.status, done.sent, done.skipped, done.total) == ("done", 2, 4, 6)
    with pytest.raises(ValidationError, match="only a paused campaign can be resumed"):
        campaigns.campaign_resume(campaign=campaign)


def test_a_campaign_paused_and_resumed_before_its_run_noticed_goes_on_sending(
    channel, smtp_server, audience, template, admin_user, monkeypatch
):
    from emails.services import campaigns

    monkeypatch.setattr(campaigns, "PAUSE_CHECK_EVERY", timedelta(0))
    channel_update(send_rate_per_second=1)
    member("g7", "gus@example.com")
    email_consent_change(email="gus@example.com", consent=True, type="subscription_imported")
    campaign = campaign_create(name="Blink", template=template, segment_id=audience.pk, user=admin_user, start=False)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.QUEUED)
    seen: list[str] = []

    def pause_and_resume(seconds: float) -> None:
        if not seen:  # between the first two sends: Pause, then Resume, within a second
            campaigns.campaign_pause(campaign=campaign)
            seen.append(campaign_run(campaign_id=campaign.pk))  # a task meeting the running run's lease
            Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.QUEUED)  # campaign_resume's write
        else:  # the running run went on, and says so
            seen.append(Campaign.objects.values_list("status", flat=True).get(pk=campaign.pk))

    assert campaign_run(campaign_id=campaign.pk, sleep=pause_and_resume).startswith("sent 3")
    assert seen == ["paused", "sending"]
    assert len(smtp_server.inbox.wait_for(3)) == 3
    assert Campaign.objects.get(pk=campaign.pk).status == "done"


def test_a_campaign_paused_while_it_is_prepared_stays_paused(channel, smtp_server, audience, template, admin_user,
                                                            monkeypatch):  # fmt: skip
    from emails.services import campaigns

    campaign = campaign_create(name="Early", template=template, segment_id=audience.pk, user=admin_user, start=False)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.QUEUED)
    prepare = campaigns.campaign_prepare

    def prepare_then_pause(*, campaign: Campaign) -> int:
        inserted = prepare(campaign=campaign)
        campaigns.campaign_pause(campaign=campaign)  # the marketer clicks Pause while the audience is prepared
        return inserted

    monkeypatch.setattr(campaigns, "campaign_prepare", prepare_then_pause)
    assert campaign_run(campaign_id=campaign.pk) == "paused"
    assert smtp_server.inbox.messages == []
    assert Campaign.objects.get(pk=campaign.pk).status == "paused"
    assert CampaignRecipient.objects.filter(campaign=campaign, status="pending").count() == 2


def test_pause_and_resume_through_the_api(channel, smtp_server, audience, template, admin_user, admin_client,
                                          django_capture_on_commit_callbacks):  # fmt: skip
    from cdp.features import Feature
    from cdp.services.auth import role_create
    from tests.conftest import client_for

    campaign = campaign_create(name="API", template=template, segment_id=audience.pk, user=admin_user, start=False)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.QUEUED)
    viewer = client_for(user_create(username="viewer", password="Viewer-password-1!",
                                    role=role_create(name="Viewer", features=[Feature.EMAILS_VIEW])))  # fmt: skip
    assert viewer.post(f"/api/email_campaigns/{campaign.pk}/pause").status_code == 403

    paused = admin_client.post(f"/api/email_campaigns/{campaign.pk}/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    again = admin_client.post(f"/api/email_campaigns/{campaign.pk}/pause")
    assert again.status_code == 400
    assert again.json()["message"] == ("status: The campaign is paused: only a queued, preparing or sending campaign "
                                       "can be paused.")  # fmt: skip
    assert admin_client.post("/api/email_campaigns/999999/resume").status_code == 404
    with django_capture_on_commit_callbacks(execute=True):
        resumed = admin_client.post(f"/api/email_campaigns/{campaign.pk}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
    assert Campaign.objects.get(pk=campaign.pk).status == "done"
    assert len(smtp_server.inbox.wait_for(2)) == 2


def test_no_campaign_goes_out_with_dead_relative_unsubscribe_links(
    channel, smtp_server, audience, template, admin_user, admin_client
):
    # Without a public base URL the links would be "/email/unsubscribe.html?..." in every email.
    queued = campaign_create(name="Before", template=template, segment_id=audience.pk, user=admin_user, start=False)
    Campaign.objects.filter(pk=queued.pk).update(status=Campaign.Status.QUEUED)
    channel_update(public_base_url="")

    refused = admin_client.post("/api/email_campaigns", {"name": "Spring", "template": template.pk,
                                                         "segment_id": audience.pk}, format="json")  # fmt: skip
    assert refused.status_code == 400
    assert refused.json()["message"].startswith("channel: the email channel has no public base URL")
    assert not Campaign.objects.filter(name="Spring").exists()
    # A campaign created before the setting was cleared fails with the reason instead of sending.
    assert campaign_run(campaign_id=queued.pk).startswith("failed: the email channel has no public base URL")
    assert Campaign.objects.get(pk=queued.pk).status == "failed" and smtp_server.inbox.messages == []

    # Its own unsubscribe page is enough: the links point there.
    channel_update(unsubscribe_page_url="https://shop.example.com/unsubscribe")
    created = admin_client.post("/api/email_campaigns", {"name": "Own page", "template": template.pk,
                                                         "segment_id": audience.pk}, format="json")  # fmt: skip
    assert created.status_code == 201, created.content


def test_queued_campaigns_whose_run_never_started_are_run_again_once(audience, template, admin_user, monkeypatch):
    from emails import tasks

    queued = campaign_create(name="Lost", template=template, segment_id=audience.pk, user=admin_user, start=False)
    recent = campaign_create(name="Recent", template=template, segment_id=audience.pk, user=admin_user, start=False)
    Campaign.objects.filter(pk__in=[queued.pk, recent.pk]).update(status=Campaign.Status.QUEUED)
    Campaign.objects.filter(pk=queued.pk).update(created=timezone.now() - timedelta(minutes=10))
    assert campaigns_stalled(lease=LEASE) == [queued.pk]  # the recent one's message is still on its way

    enqueued: list[int] = []
    monkeypatch.setattr(tasks.campaign_run, "delay", enqueued.append)
    assert tasks.campaigns_resume() == 1 and enqueued == [queued.pk]
    # While its message waits for a worker, the next passes do not queue it again.
    assert tasks.campaigns_resume() == 0 and enqueued == [queued.pk]


def test_a_run_that_finished_meanwhile_leaves_nothing_to_do(channel, smtp_server, audience, template, admin_user):
    campaign = campaign_create(name="Done", template=template, segment_id=audience.pk, user=admin_user, start=False)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.DONE)
    assert campaign_run(campaign_id=campaign.pk) == "nothing to do"
    assert not CampaignRecipient.objects.filter(campaign=campaign).exists()


def test_a_run_that_keeps_failing_fails_the_campaign_and_loses_no_recipient(
    channel, smtp_server, audience, template, admin_user, monkeypatch
):
    from emails.services import campaigns

    campaign = campaign_create(name="Bug", template=template, segment_id=audience.pk, user=admin_user, start=False)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.QUEUED)

    def broken(*args, **kwargs):
        raise RuntimeError("template engine broke")

    monkeypatch.setattr(campaigns, "template_render", broken)
    for _ in range(campaigns.MAX_RUN_FAILURES - 1):
        with pytest.raises(RuntimeError):  # raised: the worker logs it, the watchdog runs the campaign again
            campaign_run(campaign_id=campaign.pk)
        # It failed before the provider had any address: nothing was sent, everyone waits for the next run.
        statuses = set(CampaignRecipient.objects.filter(campaign=campaign).values_list("status", flat=True))
        assert statuses == {"pending", "skipped"} and Campaign.objects.get(pk=campaign.pk).status == "sending"
    result = campaign_run(campaign_id=campaign.pk)

    assert result == "failed: 3 runs failed, the last one with RuntimeError: template engine broke"
    failed = Campaign.objects.get(pk=campaign.pk)
    assert (failed.status, failed.run_token) == ("failed", None)
    assert smtp_server.inbox.messages == [] and campaigns_stalled(lease=LEASE) == []


def test_a_campaign_failed_by_an_error_shows_what_it_sent(channel, smtp_server, audience, template, admin_user):
    """The counters are saved after each batch and at most every 2 seconds: a run ending in an error mid-batch left
    them as they were before its last sends, and a campaign failed that way kept showing them (sent 0 of 2 while
    ann had her email)."""
    channel_update(send_rate_per_second=1)  # the run waits between its two sends
    campaign = campaign_create(name="Broke", template=template, segment_id=audience.pk, user=admin_user, start=False)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.QUEUED,
                                                   run_failures=MAX_RUN_FAILURES - 1)  # fmt: skip

    def broken(seconds: float) -> None:
        raise RuntimeError("worker lost its mind")

    assert campaign_run(campaign_id=campaign.pk, sleep=broken).startswith("failed: 3 runs failed")
    assert [m["To"] for m in smtp_server.inbox.wait_for(1)] == ["ann@example.com"]
    failed = Campaign.objects.get(pk=campaign.pk)
    assert (failed.status, failed.sent, failed.skipped, failed.total) == ("failed", 1, 4, 6)
    assert campaign_report(campaign=campaign)["pending"] == 1  # eve, never handed over


def test_address_blocked_after_preparation_is_skipped(channel, smtp_server, audience, template, admin_user):
    from emails.services.campaigns import campaign_prepare

    campaign = campaign_create(name="Late block", template=template, segment_id=audience.pk, user=admin_user,
                               start=False)  # fmt: skip
    campaign_prepare(campaign=campaign)
    email_block(email="ann@example.com", reason="complained by phone", user=admin_user)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.QUEUED)
    campaign_run(campaign_id=campaign.pk)
    assert [m["To"] for m in smtp_server.inbox.wait_for(1)] == ["eve@work.example.com"]
    assert CampaignRecipient.objects.get(campaign=campaign, email="ann@example.com").reason == "blocked"


def test_address_unsubscribed_after_preparation_is_skipped(
    channel, smtp_server, audience, template, admin_user, public_client
):
    """The recipient rows were prepared with ann's consent; she unsubscribed (the page, a complaint) before her
    email went out: she was mailed all the same."""
    from emails.services.campaigns import campaign_prepare

    campaign = campaign_create(name="Late unsubscribe", template=template, segment_id=audience.pk, user=admin_user,
                               start=False)  # fmt: skip
    campaign_prepare(campaign=campaign)
    assert public_client.post("/emails/unsubscribe", {"email": "ann@example.com"}, format="json").status_code == 200
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.QUEUED)
    campaign_run(campaign_id=campaign.pk)
    assert [m["To"] for m in smtp_server.inbox.wait_for(1)] == ["eve@work.example.com"]
    assert CampaignRecipient.objects.get(campaign=campaign, email="ann@example.com").reason == "unsubscribed"
    assert campaign_report(campaign=campaign)["skipped"]["unsubscribed"] == 2  # cid before, ann since


def test_an_html_only_template_gets_a_readable_text_part(channel, smtp_server, audience, admin_user):
    """A template written in HTML only went out with an empty text/plain part: a reader showing plain text saw a
    blank email, with no unsubscribe link."""
    template = template_create(
        name="HTML only", subject="Sale",
        html_body="<html><head><style>p {color: red}</style></head><body><h1>Hello {{ email }}</h1>"
                  "<p>{{ campaign_name }}: 20% off</p><p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>"
                  "</body></html>",
    )  # fmt: skip
    name = "<script>alert(1)</script> & Spring"
    campaign = campaign_create(name=name, template=template, segment_id=audience.pk, user=admin_user, start=False)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.QUEUED)
    campaign_run(campaign_id=campaign.pk)
    message = smtp_server.inbox.wait_for(2)[0]
    html = message.get_body(preferencelist=("html",)).get_content()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Spring: 20% off" in html and "<script>" not in html
    text = message.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")
    recipient = CampaignRecipient.objects.get(campaign=campaign, email=message["To"])
    assert text.startswith(f"Hello {message['To']}\n\n{name}: 20% off\n\nUnsubscribe (http://shop.example.com/email/"
                           "unsubscribe.html?email=")  # fmt: skip
    assert f"message_id={recipient.message_id}" in text and "color: red" not in text


def test_a_template_with_a_placeholder_a_campaign_cannot_fill_is_refused(channel, smtp_server, audience, admin_client):
    """ "Hello {{ first_name }}" went out as typed to the whole segment (only the preview warned)."""
    template = template_create(name="Names", subject="Hi {{first_name}}", text_body="Hello {{ email }} {{ nickname }}")
    response = admin_client.post("/api/email_campaigns", {"name": "Spring", "template": template.pk,
                                                          "segment_id": audience.pk}, format="json")  # fmt: skip
    assert response.status_code == 400, response.content
    assert response.json()["errors"]["template"][0].startswith(
        "The template uses {{ first_name }}, {{ nickname }}, which a campaign cannot fill in"
    )
    assert not Campaign.objects.exists() and smtp_server.inbox.messages == []


def test_provider_rate_limit_is_waited_out(channel, provider_api, audience, template, admin_user):
    channel_update(provider="brevo", api_base_url=f"{provider_api.url}/v3/", credentials="test-api-key-123456",
                   send_rate_per_second=50)  # fmt: skip
    provider_api.fail_next = [429, 429]
    waits: list[float] = []
    campaign = campaign_create(name="Limited", template=template, segment_id=audience.pk, user=admin_user,
                               start=False)  # fmt: skip
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.QUEUED)
    campaign_run(campaign_id=campaign.pk, sleep=waits.append)
    report = campaign_report(campaign=Campaign.objects.get(pk=campaign.pk))
    assert report["sent"] == 2 and report["failed"] == 0
    assert len(provider_api.calls) == 4
    assert len(waits) >= 2


@pytest.mark.parametrize("provider", ["brevo", "infobip"])
def test_a_refused_api_key_pauses_the_campaign_instead_of_failing_everyone(
    channel, provider_api, audience, template, admin_user, provider, django_capture_on_commit_callbacks
):
    base = f"{provider_api.url}/v3/" if provider == "brevo" else provider_api.url
    channel_update(provider=provider, api_base_url=base, credentials="a-revoked-api-key-0000", send_rate_per_second=50)
    campaign = campaign_create(name="Key", template=template, segment_id=audience.pk, user=admin_user, start=False)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.QUEUED)

    assert campaign_run(campaign_id=campaign.pk, sleep=lambda s: None).startswith("paused: ")
    paused = Campaign.objects.get(pk=campaign.pk)
    assert paused.status == "paused" and paused.message.startswith("Paused: the email provider refused the channel (")
    [notice] = Notification.objects.filter(user=admin_user)  # the marketer who started it is told
    assert (notice.title, notice.level, notice.message) == ("Campaign “Key” paused", "error", paused.message)
    assert "Fix the email channel's settings, then resume the campaign." in paused.message
    assert len(provider_api.calls) == 1  # it stopped at the first refusal
    report = campaign_report(campaign=paused)
    assert (report["pending"], report["failed"], report["sent"]) == (2, 0, 0)  # nobody lost

    channel_update(credentials="test-api-key-123456")  # the marketer fixes the key and resumes
    with django_capture_on_commit_callbacks(execute=True):
        from emails.services.campaigns import campaign_resume

        campaign_resume(campaign=paused)
    done = Campaign.objects.get(pk=campaign.pk)
    assert (done.status, done.sent, done.failed, done.message) == ("done", 2, 0, "")


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # (loopback: no TLS to require)
def test_a_refused_smtp_login_pauses_the_campaign(channel, audience, template, admin_user):
    from tests.emails.servers import SmtpServer

    with SmtpServer(require_auth=("news", "right-password")) as server:
        channel_update(smtp_port=server.port, smtp_username="news", credentials="wrong-password")
        campaign = campaign_create(name="Login", template=template, segment_id=audience.pk, user=admin_user,
                                   start=False)  # fmt: skip
        Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.QUEUED)
        assert campaign_run(campaign_id=campaign.pk) == "paused: SMTP authentication failed: 535"
    report = campaign_report(campaign=Campaign.objects.get(pk=campaign.pk))
    assert (report["pending"], report["failed"]) == (2, 0)


def test_campaign_api_respects_segment_acl(
    channel, smtp_server, audience, template, admin_user, admin_client, django_capture_on_commit_callbacks
):
    from cdp.features import Feature
    from cdp.services.auth import role_create
    from tests.conftest import client_for

    role = role_create(name="Sender", features=[Feature.EMAILS_SEND, Feature.EMAILS_VIEW])
    other = client_for(user_create(username="sender", password="Sender-password-1!", role=role))
    hidden = other.post("/api/email_campaigns", {"name": "x", "template": template.pk, "segment_id": audience.pk},
                        format="json")  # fmt: skip
    assert hidden.status_code == 404 and hidden.json()["message"] == "Segment not found."
    # A segment in the trash is named so to those who may see it (and stays 'not found' to the others).
    from segments.services import segment_restore, segment_trash

    segment_trash(segment=audience)
    trashed = admin_client.post("/api/email_campaigns", {"name": "x", "template": template.pk,
                                                         "segment_id": audience.pk}, format="json")  # fmt: skip
    assert trashed.status_code == 404 and trashed.json()["message"] == "The segment is in the trash: restore it first."
    still_hidden = other.post("/api/email_campaigns", {"name": "x", "template": template.pk,
                                                       "segment_id": audience.pk}, format="json")  # fmt: skip
    assert still_hidden.json()["message"] == "Segment not found."
    segment_restore(segment=audience)
    with django_capture_on_commit_callbacks(execute=True):
        created = admin_client.post("/api/email_campaigns", {"name": "Spring", "template": template.pk,
                                                             "segment_id": audience.pk}, format="json")  # fmt: skip
    assert created.status_code == 201, created.content
    campaign_id = created.json()["id"]
    assert other.get(f"/api/email_campaigns/{campaign_id}").status_code == 404
    assert admin_client.get(f"/api/email_campaigns/{campaign_id}/report").status_code == 200
    recipients = admin_client.get(f"/api/email_campaigns/{campaign_id}/recipients?status=skipped").json()
    assert recipients["count"] == 4


@pytest.mark.worker
def test_opt_in_email_through_a_real_worker(celery_worker_process, smtp_server, public_client):
    channel_update(
        provider="smtp", sender_email="news@shop.example.com", smtp_host="127.0.0.1", smtp_port=smtp_server.port,
        smtp_security="none", public_base_url="http://shop.example.com",
    )  # fmt: skip
    response = public_client.post("/emails/subscribe", {"email": "worker@example.com"}, format="json")
    assert response.status_code == 200
    [message] = smtp_server.inbox.wait_for(1, timeout=30)
    assert message["To"] == "worker@example.com"
    assert "/emails/confirm?token=" in body_text(message)


def test_an_address_erased_while_its_batch_is_sending_is_not_mailed(
    channel, smtp_server, audience, template, admin_user
):
    from emails.services.erasure import email_addresses_erase

    channel_update(send_rate_per_second=1)  # the worker waits between sends: the erase comes in meanwhile
    campaign = campaign_create(name="Erase", template=template, segment_id=audience.pk, user=admin_user, start=False)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.QUEUED)
    erased: list[str] = []

    def meanwhile(seconds: float) -> None:
        if not erased:
            erased.append("eve@work.example.com")
            email_addresses_erase(emails=erased)

    campaign_run(campaign_id=campaign.pk, sleep=meanwhile)
    assert [m["To"] for m in smtp_server.inbox.wait_for(1)] == ["ann@example.com"]
    assert campaign_report(campaign=campaign)["skipped"].get("erased") == 1
    assert not CampaignRecipient.objects.filter(email="eve@work.example.com").exists()


def test_a_retried_campaign_create_with_its_key_sends_once(
    channel, smtp_server, audience, template, admin_client, django_capture_on_commit_callbacks
):
    body = {"name": "Spring", "template": template.pk, "segment_id": audience.pk}
    key = "campaign-spring-2026"
    with django_capture_on_commit_callbacks(execute=True):
        first = admin_client.post("/api/email_campaigns", body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert first.status_code == 201, first.content
    with django_capture_on_commit_callbacks(execute=True):
        again = admin_client.post("/api/email_campaigns", body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert (again.status_code, again["Idempotent-Replayed"], again.json()["id"]) == (201, "true", first.json()["id"])
    assert Campaign.objects.filter(name="Spring").count() == 1
    assert len(smtp_server.inbox.wait_for(2)) == 2  # ann and eve's work address, once each
    assert CampaignRecipient.objects.filter(campaign_id=first.json()["id"], status="sent").count() == 2


def test_two_workers_racing_on_one_campaign_send_each_email_once(
    transactional_db, default_categories, channel, smtp_server, audience, template, admin_user
):
    """Two runs at once on their own database connections (two workers given the same campaign): one holds the
    lease and sends, the other leaves it; each address gets the campaign once."""
    import threading

    from django.db import connection

    # Committed here, the fixture's consent events were stitched and the customers' attributes computed from
    # their events, which carry no "vip": the segment's members get it back.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE customer_entities SET attributes = attributes || jsonb_build_object('vip', jsonb_build_array("
            "id NOT LIKE 'f6%%'))"
        )
    channel_update(send_rate_per_second=5)  # the first run is still sending when the second one starts
    campaign = campaign_create(name="Race", template=template, segment_id=audience.pk, user=admin_user, start=False)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.QUEUED)
    start = threading.Barrier(2)
    results: list[str] = []

    def worker() -> None:
        try:
            start.wait()
            results.append(campaign_run(campaign_id=campaign.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(results)[0] == "already running" and sorted(results)[1].startswith("sent 2")
    assert sorted(m["To"] for m in smtp_server.inbox.wait_for(2)) == ["ann@example.com", "eve@work.example.com"]
    assert Campaign.objects.get(pk=campaign.pk).status == "done"


@pytest.mark.django_db(transaction=True)
def test_a_campaign_started_while_redis_is_down_waits_and_the_watchdog_sends_it(
    default_categories, channel, smtp_server, audience, template, admin_client
):
    """With Redis unreachable, POST /api/email_campaigns stored the queued campaign, then its task message failed
    after the commit: a 500. Now it is accepted, its message says it waits for the task queue, and the watchdog
    sends it once Redis is back."""
    from django.db import connection

    from emails import tasks
    from tests.workers import broker_unreachable

    with connection.cursor() as cursor:  # (as in the test above: committed, the members' "vip" was recomputed away)
        cursor.execute(
            "UPDATE customer_entities SET attributes = attributes || jsonb_build_object('vip', jsonb_build_array("
            "id NOT LIKE 'f6%%'))"
        )
    with broker_unreachable():
        created = admin_client.post("/api/email_campaigns", {"name": "Outage", "template": template.pk,
                                                             "segment_id": audience.pk}, format="json")  # fmt: skip

    assert created.status_code == 201, created.content
    assert created.json()["status"] == "queued"
    campaign = Campaign.objects.get(pk=created.json()["id"])
    assert campaign.message.startswith("The task queue is unavailable: the campaign waits for it.")

    Campaign.objects.filter(pk=campaign.pk).update(created=timezone.now() - LEASE - timedelta(seconds=1))
    assert tasks.campaigns_resume() == 1  # the beat's watchdog, Redis back (its task runs in-process here)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DONE and campaign.message == ""
    assert len(smtp_server.inbox.wait_for(2)) == 2
