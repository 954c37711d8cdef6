# ruff: noqa: E501 - request bodies read better on one line
"""REST API: channel (secrets never shown back), templates + preview, address state, block / unblock, features."""

from __future__ import annotations

import pytest

from cdp.features import Feature
from cdp.models import CustomerEvent
from cdp.services.auth import role_create, user_create
from emails.models import EmailAddress, EmailChannel
from emails.services.channel import channel_update, webhook_secret_matches
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketer(db):
    role = role_create(name="Email marketer", features=[Feature.EMAILS_VIEW, Feature.EMAILS_SEND, Feature.EMAILS_BLOCK])
    return user_create(username="marketer", password="Marketer-password-1!", role=role)


@pytest.fixture
def marketer_client(marketer):
    return client_for(marketer)


def test_channel_credentials_are_write_only(admin_client, channel):
    response = admin_client.patch(
        "/api/channels/email", {"provider": "brevo", "credentials": "xkeysib-very-secret-key-9876"}, format="json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert "credentials" not in body
    assert body["credentials_set"] is True and body["credentials_hint"] == "••••9876"
    assert "very-secret" not in str(body)
    assert "very-secret" not in EmailChannel.objects.get().credentials_encrypted
    assert body["feedback_urls"]["brevo"].endswith("/emails/feedback/brevo")


def test_channel_validation_and_features(admin_client, marketer_client, channel):
    bad = admin_client.patch("/api/channels/email", {"provider": "pigeon"}, format="json")
    assert bad.status_code == 400 and "provider" in bad.json()["message"]
    assert marketer_client.get("/api/channels/email").status_code == 200
    assert marketer_client.patch("/api/channels/email", {"sender_name": "x"}, format="json").status_code == 403


def test_an_opt_in_text_without_its_confirmation_link_is_refused(admin_client, channel):
    """An opt-in text saved without {{ confirm_url }} (a rewrite that dropped it, a typo in its name) sent every
    subscriber an email they could not confirm, and nothing said so."""
    for change, field, message in [
        ({"opt_in_body": "Welcome! Click here to confirm."}, "opt_in_body", "The text needs {{ confirm_url }}"),
        ({"opt_in_body": "Confirm: {{ confirm_link }}"}, "opt_in_body", "{{ confirm_link }} is not filled in"),
        ({"opt_in_subject": "Hi {{ first_name }}"}, "opt_in_subject", "{{ first_name }} is not filled in"),
        ({"opt_in_subject": "Confirm\r\nBcc: all@example.com"}, "opt_in_subject", "must be one line"),
    ]:
        response = admin_client.patch("/api/channels/email", change, format="json")
        assert response.status_code == 400, (change, response.content)
        assert message in response.json()["errors"][field][0], response.json()
    assert EmailChannel.objects.get().opt_in_body == EmailChannel._meta.get_field("opt_in_body").default
    good = {"opt_in_subject": "Confirm, {{ email }}", "opt_in_body": "Open {{confirm_url}} to confirm {{ email }}."}
    assert admin_client.patch("/api/channels/email", good, format="json").status_code == 200


def test_rotate_webhook_secret_shows_it_once(admin_client, channel):
    secret = admin_client.post("/api/channels/email/rotate_webhook_secret").json()["webhook_secret"]
    assert webhook_secret_matches(EmailChannel.objects.get(), secret)
    assert secret not in str(admin_client.get("/api/channels/email").json())


def test_send_test_email(admin_client, channel, smtp_server):
    response = admin_client.post("/api/channels/email/send_test", {"to": "qa@example.com"}, format="json")
    assert response.status_code == 200, response.content
    assert smtp_server.inbox.wait_for(1)[0]["To"] == "qa@example.com"


def test_send_test_email_to_a_blocked_address_is_a_400_naming_it(admin_client, channel, smtp_server):
    """It was a 502 Bad Gateway, as if the provider had failed: the address given is what is wrong, and the provider
    was never asked."""
    assert (
        admin_client.post("/api/emails/block", {"email": "qa@example.com", "reason": "test"}, format="json").status_code
        == 200
    )

    response = admin_client.post("/api/channels/email/send_test", {"to": "QA@example.com"}, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {"to": ["QA@example.com is blocked"]}
    assert response.json()["message"] == "to: QA@example.com is blocked"
    assert smtp_server.inbox.messages == []


@pytest.mark.parametrize(
    "channel_settings, message",
    [
        ({}, "the email channel has no sender address configured"),
        (
            {"provider": "smtp", "sender_email": "news@shop.example.com"},
            "the email channel has no SMTP host configured",
        ),
        ({"provider": "brevo", "sender_email": "news@shop.example.com"}, "the email channel has no Brevo API key"),
    ],
)
def test_send_test_email_on_a_channel_not_set_up_is_a_409_naming_what_is_missing(
    admin_client, smtp_server, channel_settings, message
):
    """It was a 502 Bad Gateway (a server error to retry, for a client): the channel's own settings are what is
    missing, and no provider was asked."""
    channel_update(**channel_settings)

    response = admin_client.post("/api/channels/email/send_test", {"to": "qa@example.com"}, format="json")

    assert response.status_code == 409, response.content
    assert response.json() == {"status": "error", "message": message}
    assert smtp_server.inbox.messages == []


def test_templates_crud_and_preview(marketer_client):
    created = marketer_client.post(
        "/api/email_templates",
        {"name": "Spring", "subject": "Hi {{ email }}", "html_body": "<p>{{ campaign_name }} <a href='{{ unsubscribe_url }}'>"
         "unsubscribe</a> {{ nickname }}</p>", "text_body": ""},
        format="json",
    )  # fmt: skip
    assert created.status_code == 201, created.content
    template_id = created.json()["id"]
    preview = marketer_client.post(f"/api/email_templates/{template_id}/preview", {"email": "x@example.com"},
                                   format="json").json()  # fmt: skip
    assert preview["subject"] == "Hi x@example.com"
    assert "Preview campaign" in preview["html"]
    assert preview["unknown_placeholders"] == ["nickname"]
    empty = marketer_client.post("/api/email_templates", {"name": "Empty", "subject": "s"}, format="json")
    assert empty.status_code == 400
    assert marketer_client.delete(f"/api/email_templates/{template_id}").status_code == 204


def test_block_and_unblock_record_events_with_the_user(marketer_client, marketer, channel):
    response = marketer_client.post("/api/emails/block", {"email": "Ann@Example.com", "reason": "asked us"},
                                    format="json")  # fmt: skip
    assert response.status_code == 200, response.content
    assert response.json()["email"]["blocked"] is True
    address = EmailAddress.objects.get(email="ann@example.com")
    assert address.blocked_by == f"marketer ({marketer.pk})" and address.blocked_reason == "asked us"
    event = CustomerEvent.objects.get(type="email_address_blocked")
    assert event.payload == {"email": "ann@example.com", "type": "email_address_blocked", "blocked": True,
                             "reason": "asked us", "blocked_by": f"marketer ({marketer.pk})"}  # fmt: skip
    again = marketer_client.post("/api/emails/block", {"email": "ann@example.com", "reason": "x"}, format="json")
    assert again.json()["message"] == "ann@example.com was already blocked"
    detail = marketer_client.get("/api/emails/ann@example.com").json()
    assert [e["type"] for e in detail["events"]] == ["email_address_blocked"]
    unblocked = marketer_client.post("/api/emails/unblock", {"email": "ann@example.com", "reason": "mistake"},
                                     format="json")  # fmt: skip
    assert unblocked.json()["email"]["blocked"] is False
    assert (
        CustomerEvent.objects.get(type="email_address_unblocked").payload["unblocked_by"] == f"marketer ({marketer.pk})"
    )


def test_block_needs_reason_and_feature(marketer_client, analyst_client, channel):
    missing = marketer_client.post("/api/emails/block", {"email": "ann@example.com"}, format="json")
    assert missing.status_code == 400 and "reason" in missing.json()["message"]
    blank = marketer_client.post("/api/emails/block", {"email": "ann@example.com", "reason": "  "}, format="json")
    assert blank.status_code == 400
    invalid = marketer_client.post("/api/emails/block", {"email": "nope", "reason": "x"}, format="json")
    assert invalid.status_code == 400 and invalid.json()["message"] == "email: Email address is invalid"
    assert (
        analyst_client.post("/api/emails/block", {"email": "a@b.com", "reason": "x"}, format="json").status_code == 403
    )
    assert analyst_client.get("/api/emails").status_code == 403


def test_list_addresses_filters(marketer_client, channel, admin_user):
    from emails.services.state import email_block, email_consent_change

    email_consent_change(email="a@example.com", consent=True, type="subscription_imported")
    email_block(email="b@example.com", reason="x", user=admin_user)
    assert [r["email"] for r in marketer_client.get("/api/emails?blocked=true").json()["results"]] == ["b@example.com"]
    assert [r["email"] for r in marketer_client.get("/api/emails?consent=true").json()["results"]] == ["a@example.com"]
    assert marketer_client.get("/api/emails?consent=maybe").status_code == 400
    unknown = marketer_client.get("/api/emails/Nobody@Example.com")
    assert unknown.status_code == 404
    assert unknown.json()["message"] == ("nobody@example.com is not a known address: no subscription, import, block "
                                         "or provider event recorded its state.")  # fmt: skip


def test_suppression_list_downloads_as_a_block_list(marketer_client, analyst_client, admin_client, admin_user):
    from emails.services.imports import import_run
    from emails.services.state import email_block, email_consent_change
    from emails.services.subscriptions import subscription_request

    email_consent_change(email="ann@example.com", consent=True, type="subscription_imported")  # mailable
    email_consent_change(email="bob@example.com", consent=False, type="unsubscribe")
    email_block(email="cid@example.com", reason="spam trap, reported", user=admin_user)
    subscription_request(data={"email": "dan@example.com"})  # asked, not confirmed: neither mailable nor suppressed

    response = marketer_client.get("/api/emails/suppression_list")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="suppression-list.csv"'
    text = b"".join(response.streaming_content).decode()
    assert text == 'email,reason\nbob@example.com,unsubscribed\ncid@example.com,"blocked: spam trap, reported"\n'
    assert analyst_client.get("/api/emails/suppression_list").status_code == 403

    # The admin's button on Email addresses gives the same file.
    admin_user.is_staff = True
    admin_user.save()
    admin_client.force_login(admin_user)
    page = admin_client.get("/admin/emails/emailaddress/")
    assert b"/admin/emails/emailaddress/suppression-list/" in page.content
    download = admin_client.get("/admin/emails/emailaddress/suppression-list/")
    assert b"".join(download.streaming_content).decode() == text

    # It loads as a block list (here, or into another sender).
    report = import_run(kind="blocklist_import", text=text)
    assert (report.total, report.loaded, report.error_count) == (2, 2, 0)
    assert EmailAddress.objects.get(email="bob@example.com").blocked is True
