# ruff: noqa: E501 - provider payload fixtures read better on one line
"""Provider webhooks: Brevo and Infobip payloads → canonical events, state changes, auth, idempotency."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from cdp.models import CustomerEvent
from emails.models import EmailAddress, FeedbackRejection
from emails.services.channel import channel_update
from emails.services.feedback import feedback_apply
from emails.services.state import email_consent_change
from tests.emails.conftest import WEBHOOK_SECRET

pytestmark = pytest.mark.django_db

HOUR_AGO = datetime.now(UTC) - timedelta(hours=1)
AUTH = {"HTTP_AUTHORIZATION": f"Bearer {WEBHOOK_SECRET}"}


def brevo(event: str, email: str = "ann@example.com", **extra) -> dict:
    """Brevo's webhook body (as captured in django-anymail's tests); times default to now."""
    now = int(time.time())
    body = {
        "event": event, "email": email, "id": 9999999, "date": "2018-03-06 11:10:23", "ts": now,
        "ts_event": now, "ts_epoch": now * 1000 + 123, "message-id": "<201803011158.9876543210@smtp-relay.mailin.fr>",
        "subject": "Test subject", "tag": "header-tag", "tags": ["tag1"],
    }  # fmt: skip
    body.update(extra)
    return body


def infobip_report(group: str, *, permanent: bool = False, message_id: str = "hgtesn8bcmc71pujp92d",
                   done_at: str = "2020-09-08T05:27:59.256+0000", to: str = "john.doe@example.com") -> dict:  # fmt: skip
    error = (
        {"id": 0, "name": "NO_ERROR", "description": "No Error", "groupId": 0, "groupName": "OK", "permanent": False}
        if group == "DELIVERED"
        else {"id": 6034 if permanent else 4001, "name": "EC_SUPPRESSED_BOUNCE" if permanent else "EC_MAILBOX_FULL",
              "description": "bounce", "groupId": 2, "groupName": "HANDSET_ERRORS", "permanent": permanent}
    )  # fmt: skip
    return {"results": [{
        "bulkId": "aszzmbhu62l7bxkhmyrj", "messageId": message_id, "to": to,
        "sentAt": "2020-09-08T05:27:57.628+0000", "doneAt": done_at,
        "status": {"id": 5, "groupId": 3, "groupName": group, "name": f"{group}_X", "description": "..."},
        "error": error, "callbackData": "cb",
    }]}  # fmt: skip


def post(client, body, path="/emails/feedback", **headers):
    """POST a webhook, then apply the accepted payloads as the worker would (inside a test's transaction the
    after-commit enqueue does not run; test_an_accepted_webhook_is_applied_after_commit covers that path)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.generic("POST", path, raw, content_type="application/json", **headers)
    feedback_apply()
    return response


def events(type_=None):
    qs = CustomerEvent.objects.filter(source__slug="emails")
    return qs.filter(type=type_) if type_ else qs


def test_brevo_delivered_is_recorded_once(public_client, channel):
    response = post(public_client, brevo("delivered", ts_epoch=1520363423000), **AUTH)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "message": "Feedback received", "received": 1, "queued": 1}
    event = events("email_delivered").get()
    assert event.payload["email"] == "ann@example.com"
    assert event.payload["message_id"] == "<201803011158.9876543210@smtp-relay.mailin.fr>"
    assert event.payload["subject"] == "Test subject"
    assert event.event_time.isoformat().startswith("2018-03-06")
    replay = post(public_client, brevo("delivered", ts_epoch=1520363423000), **AUTH)
    assert replay.status_code == 200 and replay.json()["queued"] == 1
    assert events().count() == 1  # the replay recorded nothing new


def test_brevo_hard_bounce_blocks_the_address(public_client, channel):
    body = brevo("hard_bounce", reason=" RecipientError: 550 5.5.0 mailbox unavailable.")
    response = post(public_client, body, **AUTH)
    assert response.status_code == 200
    bounce = events("email_bounced").get()
    assert bounce.payload["bounce_type"] == "hard"
    assert bounce.payload["reason"] == "RecipientError: 550 5.5.0 mailbox unavailable."
    blocked = events("email_address_blocked").get()
    assert blocked.payload["blocked_by"] == "hard_bounce_webhook"
    address = EmailAddress.objects.get(email="ann@example.com")
    assert address.blocked and address.blocked_by == "hard_bounce_webhook"
    # A replay (the same body: a rebuilt one could carry the next second's timestamps) records nothing new.
    post(public_client, body, **AUTH)
    assert events().count() == 2


def test_brevo_soft_bounce_does_not_block(public_client, channel):
    post(public_client, brevo("soft_bounce", reason="mailbox full"), **AUTH)
    assert events("email_bounced").get().payload["bounce_type"] == "soft"
    assert not EmailAddress.objects.get(email="ann@example.com").blocked


@pytest.mark.parametrize(("event", "canonical"), [("spam", "spam_complaint"), ("complaint", "spam_complaint"),
                                                  ("unsubscribed", "unsubscribe"), ("unsubscribe", "unsubscribe")])  # fmt: skip
def test_brevo_complaint_and_unsubscribe_withdraw_consent(public_client, channel, event, canonical):
    email_consent_change(email="ann@example.com", consent=True, type="subscription_imported", event_time=HOUR_AGO)
    assert post(public_client, brevo(event), **AUTH).status_code == 200
    assert events(canonical).get().payload["consent"] is False
    assert EmailAddress.objects.get(email="ann@example.com").consent is False


def test_brevo_blocked_blocks_with_block_webhook(public_client, channel):
    post(public_client, brevo("blocked"), **AUTH)
    assert events("email_address_blocked").get().payload["blocked_by"] == "block_webhook"
    assert EmailAddress.objects.get(email="ann@example.com").blocked


def test_brevo_opens_are_acknowledged_not_recorded(public_client, channel):
    response = post(public_client, brevo("opened"), **AUTH)
    assert response.status_code == 200 and response.json()["received"] == 0
    assert not events().exists()


def test_infobip_delivery_reports_and_five_soft_bounces_block(public_client, channel):
    path = "/emails/feedback/infobip"
    assert post(public_client, infobip_report("DELIVERED"), path, **AUTH).status_code == 200
    assert events("email_delivered").get().payload["email"] == "john.doe@example.com"
    for n in range(4):
        body = infobip_report("UNDELIVERABLE", message_id=f"m-{n}")
        assert post(public_client, body, path, **AUTH).status_code == 200
    address = EmailAddress.objects.get(email="john.doe@example.com")
    assert address.soft_bounces_in_row == 4 and not address.blocked
    # A replay of the fourth does not count twice.
    post(public_client, infobip_report("UNDELIVERABLE", message_id="m-3"), path, **AUTH)
    assert EmailAddress.objects.get(email="john.doe@example.com").soft_bounces_in_row == 4
    post(public_client, infobip_report("UNDELIVERABLE", message_id="m-4"), path, **AUTH)
    address.refresh_from_db()
    assert address.blocked and address.blocked_by == "hard_bounce_webhook"
    assert "5 soft bounces" in address.blocked_reason
    assert events("email_bounced").count() == 5
    assert events("email_address_blocked").count() == 1


def test_infobip_delivery_resets_the_soft_bounce_run(public_client, channel):
    path = "/emails/feedback/infobip"
    for n in range(4):
        post(public_client, infobip_report("UNDELIVERABLE", message_id=f"a-{n}"), path, **AUTH)
    post(public_client, infobip_report("DELIVERED", message_id="ok"), path, **AUTH)
    for n in range(4):
        post(public_client, infobip_report("UNDELIVERABLE", message_id=f"b-{n}"), path, **AUTH)
    assert not EmailAddress.objects.get(email="john.doe@example.com").blocked


def test_an_old_delivery_report_arriving_late_does_not_end_the_soft_bounce_run(public_client, channel):
    """Reports come out of order: the delivery of last week's message, reported after this week's soft bounces,
    reset their run, and an address bouncing every message was never blocked."""
    path = "/emails/feedback/infobip"
    for n in range(4):
        post(public_client, infobip_report("UNDELIVERABLE", message_id=f"b-{n}", done_at=f"2020-09-10T0{n}:00:00.000+0000"),
             path, **AUTH)  # fmt: skip
    post(public_client, infobip_report("DELIVERED", message_id="last-week", done_at="2020-09-03T05:00:00.000+0000"),
         path, **AUTH)  # fmt: skip
    assert EmailAddress.objects.get(email="john.doe@example.com").soft_bounces_in_row == 4
    post(public_client, infobip_report("UNDELIVERABLE", message_id="b-4", done_at="2020-09-10T05:00:00.000+0000"),
         path, **AUTH)  # fmt: skip
    address = EmailAddress.objects.get(email="john.doe@example.com")
    assert address.blocked and "5 soft bounces" in address.blocked_reason
    # A delivery after the latest soft bounce still ends a run.
    post(public_client, infobip_report("DELIVERED", message_id="b-4-retry", done_at="2020-09-10T06:00:00.000+0000"),
         path, **AUTH)  # fmt: skip
    assert EmailAddress.objects.get(email="john.doe@example.com").soft_bounces_in_row == 0


def test_infobip_permanent_error_is_a_hard_bounce(public_client, channel):
    post(public_client, infobip_report("UNDELIVERABLE", permanent=True), "/emails/feedback/infobip", **AUTH)
    assert events("email_bounced").get().payload["bounce_type"] == "hard"
    assert EmailAddress.objects.get(email="john.doe@example.com").blocked


@pytest.mark.parametrize(("kind", "canonical"), [("COMPLAINED", "spam_complaint"), ("UNSUBSCRIBED", "unsubscribe")])
def test_infobip_tracking_events(public_client, channel, kind, canonical):
    body = {"notificationType": kind, "recipient": "john.doe@example.com", "messageId": "m-1", "bulkId": "b",
            "sendDateTime": 1704106800000, "callbackData": "x"}  # fmt: skip
    assert post(public_client, body, "/emails/feedback/infobip", **AUTH).status_code == 200
    assert events(canonical).get().payload["consent"] is False


def test_channel_configuration_chooses_the_provider(public_client, channel):
    channel_update(webhook_provider="infobip")
    assert post(public_client, infobip_report("DELIVERED"), **AUTH).status_code == 200
    assert events("email_delivered").exists()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_AUTHORIZATION": "Bearer wrong-secret-000000000"},
        {"HTTP_AUTHORIZATION": "Basic !!notbase64"},
        {"HTTP_X_WEBHOOK_SECRET": "nope"},
    ],
)
def test_wrong_or_missing_secret_is_401_and_records_nothing(public_client, channel, headers):
    response = post(public_client, brevo("hard_bounce"), **headers)
    assert response.status_code == 401
    assert not events().exists() and not EmailAddress.objects.exists()
    assert not FeedbackRejection.objects.exists()


def test_basic_auth_and_header_secrets_work(public_client, channel):
    basic = base64.b64encode(f"brevo:{WEBHOOK_SECRET}".encode()).decode()
    assert post(public_client, brevo("delivered"), HTTP_AUTHORIZATION=f"Basic {basic}").status_code == 200
    assert post(public_client, brevo("delivered", **{"message-id": "<2@x>"}),
                HTTP_X_WEBHOOK_SECRET=WEBHOOK_SECRET).status_code == 200  # fmt: skip
    assert events().count() == 2


@pytest.mark.parametrize(
    ("body", "path", "reason"),
    [
        (b"{broken", "/emails/feedback", "validation: the body is not valid JSON"),
        (b"", "/emails/feedback", "validation: the body is empty; send a JSON object"),
        (b"42", "/emails/feedback", "validation: the body must be a JSON object"),
        (b'{"email": "ann@example.com"}', "/emails/feedback", "validation: event is required"),
        (b'{"event": "delivered", "email": "nope"}', "/emails/feedback", "validation: email is missing or not a valid address"),
        (b'{"event": "delivered", "email": "a@b.com"}', "/emails/feedback",
         "validation: message-id is required for a delivered event"),
        (b'{"event": ["x"], "email": "a@b.com"}', "/emails/feedback", "validation: event must be a string"),
        (b'{"results": []}', "/emails/feedback/infobip", "validation: results must be a non-empty list of delivery reports"),
        (b'{"results": [{"to": "a@b.com", "messageId": "m", "status": "x"}]}', "/emails/feedback/infobip",
         "validation: results[0].status must be an object"),
        (b'{"results": [{"to": "a@b.com", "messageId": "m", "status": {}}]}', "/emails/feedback/infobip",
         "validation: results[0].status.groupName is required"),
        (b'{"event": "delivered", "email": "a@b.com"}', "/emails/feedback/mailchimp", "validation: unknown provider 'mailchimp'"),
        (b'{"results": [{"to": 42, "messageId": "m", "status": {"groupName": "DELIVERED"}}]}', "/emails/feedback/infobip",
         "validation: results[0].email is missing or not a valid address"),
        ('{"event": "delivered", "email": "\u0430nn@\u2028example.com", "message-id": "x"}'.encode(), "/emails/feedback",
         "validation: email is missing or not a valid address"),
        (b'[]', "/emails/feedback", "validation: expected a JSON object or a list of 1 to 1000 objects"),
        (b'{"notificationType": "COMPLAINED"}', "/emails/feedback/infobip", "validation: recipient: email is missing or not a valid address"),
    ],
)  # fmt: skip
def test_malformed_payload_is_400_and_kept_for_inspection(public_client, channel, body, path, reason):
    body_check = body.replace(b"!", b"")
    response = public_client.generic("POST", path, body, content_type="application/json", **AUTH)
    assert response.status_code == 400
    assert response.json() == {"status": "error", "message": reason}
    kept = FeedbackRejection.objects.get()
    assert kept.reason == reason and kept.body == body_check.decode()
    assert not events().exists()


def test_huge_feedback_body_is_413(public_client, channel):
    huge = b'{"event": "delivered", "email": "a@b.com", "x": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    response = public_client.generic("POST", "/emails/feedback", huge, content_type="application/json", **AUTH)
    assert response.status_code == 413
    assert FeedbackRejection.objects.count() == 1


def test_webhooks_through_the_wsgi_lane(channel):
    """What gunicorn serves: the fast lane at the WSGI entry answers like the view (tests above use the test client)."""
    from tests.cdp.test_fast_lane import wsgi

    payload = json.dumps(brevo("delivered", ts_epoch=1520363423000)).encode()
    status, headers, body = wsgi("/emails/feedback/brevo", method="POST", body=payload)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    assert not events().exists()

    status, headers, body = wsgi("/emails/feedback/brevo", method="POST", body=payload,
                                 HTTP_AUTHORIZATION=f"Bearer {WEBHOOK_SECRET}")  # fmt: skip
    assert status == 200 and json.loads(body)["queued"] == 1
    assert headers["Content-Length"] == str(len(body))
    status, _, body = wsgi("/emails/feedback/brevo", method="POST", body=payload,
                           HTTP_AUTHORIZATION=f"Bearer {WEBHOOK_SECRET}")  # fmt: skip
    assert status == 200
    feedback_apply()
    status, _, body = wsgi("/emails/feedback/brevo", method="POST", body=b"{not json",
                           HTTP_AUTHORIZATION=f"Bearer {WEBHOOK_SECRET}")  # fmt: skip
    assert status == 400 and json.loads(body)["message"] == "validation: the body is not valid JSON"
    status, _, _ = wsgi("/emails/feedback/brevo", method="POST", body=b"x" * (1024 * 1024 + 1),
                        HTTP_AUTHORIZATION=f"Bearer {WEBHOOK_SECRET}")  # fmt: skip
    assert status == 413
    assert events().count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_accepted_webhook_is_applied_after_commit(public_client, channel):
    """Autocommit, as a web worker runs: the accepted payload's apply is enqueued after its row committed (here
    the task runs eagerly) and the event is there when the answer is."""
    raw = json.dumps(brevo("hard_bounce", reason="no such user")).encode()
    response = public_client.generic("POST", "/emails/feedback", raw, content_type="application/json", **AUTH)

    assert response.status_code == 200
    assert events("email_bounced").count() == 1
    assert EmailAddress.objects.get(email="ann@example.com").blocked


def test_payloads_waiting_together_are_applied_in_order(public_client, channel):
    """Several payloads accepted before one apply (a busy stream, a worker that was down): a delivery between
    Infobip soft bounces still ends their run, as it would have one by one."""
    from emails.models import FeedbackInbox

    def accept(report):
        raw = json.dumps(report).encode()
        return public_client.generic("POST", "/emails/feedback/infobip", raw, content_type="application/json", **AUTH)

    for n in range(4):
        accept(infobip_report("UNDELIVERABLE", message_id=f"a-{n}"))
    accept(infobip_report("DELIVERED", message_id="ok"))
    accept(infobip_report("UNDELIVERABLE", message_id="b-0"))
    assert FeedbackInbox.objects.count() == 6 and not events().exists()

    assert feedback_apply() == 6

    assert not FeedbackInbox.objects.exists()
    assert events("email_bounced").count() == 5 and events("email_delivered").count() == 1
    address = EmailAddress.objects.get(email="john.doe@example.com")
    assert not address.blocked and address.soft_bounces_in_row == 1


def test_a_payload_that_cannot_be_applied_is_set_aside_and_the_others_go_on(public_client, channel):
    from emails.models import FeedbackInbox

    post_only = public_client.generic  # accept without applying
    raw = json.dumps(brevo("delivered", ts_epoch=1520363423000)).encode()
    post_only("POST", "/emails/feedback", raw, content_type="application/json", **AUTH)
    broken = FeedbackInbox.objects.create(provider="brevo", events=[{"type": "email_bounced", "key": "k"}])  # no email
    raw = json.dumps(brevo("hard_bounce", reason="no such user")).encode()
    post_only("POST", "/emails/feedback", raw, content_type="application/json", **AUTH)

    assert feedback_apply() == 2

    assert not FeedbackInbox.objects.exists()
    assert events("email_delivered").count() == 1 and events("email_bounced").count() == 1
    rejection = FeedbackRejection.objects.get()
    assert rejection.reason.startswith("could not apply: KeyError") and "email_bounced" in rejection.body
    assert broken.pk  # (kept for inspection as a rejection, not retried forever)


def test_an_event_without_a_time_gets_the_time_it_was_received(public_client, channel):
    from emails.models import FeedbackInbox

    report = infobip_report("DELIVERED")
    del report["results"][0]["doneAt"], report["results"][0]["sentAt"]
    raw = json.dumps(report).encode()
    public_client.generic("POST", "/emails/feedback/infobip", raw, content_type="application/json", **AUTH)
    accepted = FeedbackInbox.objects.get().events[0]["event_time"]

    feedback_apply()

    assert events("email_delivered").get().event_time == datetime.fromisoformat(accepted)
