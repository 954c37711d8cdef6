"""The one sending service through each provider: SMTP (aiosmtpd), Brevo and Infobip (local HTTP servers
speaking their send APIs); blocked addresses never receive mail; credentials are encrypted at rest."""

from __future__ import annotations

import json

import pytest

from emails.models import EmailChannel
from emails.providers import PROVIDERS, OutgoingEmail, ProviderError
from emails.services.channel import channel_secret, channel_update
from emails.services.sending import RecipientBlocked, email_send
from emails.services.state import email_block, email_unblock
from tests.emails.servers import body_text

pytestmark = pytest.mark.django_db

UNSUBSCRIBE = {
    "List-Unsubscribe": "<https://shop.example.com/u>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}
MESSAGE = OutgoingEmail(to="ann@example.com", subject="Hello", text="Plain body", html="<p>HTML body</p>",
                        headers=UNSUBSCRIBE, message_id="m-1")  # fmt: skip


def test_registry_has_every_provider_kind():
    assert set(PROVIDERS) == set(EmailChannel.Provider.values)


def test_smtp_send(channel, smtp_server):
    provider_id = email_send(message=MESSAGE)
    [received] = smtp_server.inbox.wait_for(1)
    assert received["Subject"] == "Hello"
    assert received["List-Unsubscribe"] == "<https://shop.example.com/u>"
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Plain body" in body_text(received)
    assert received["Message-ID"] == provider_id


def test_brevo_send_through_anymail(channel, provider_api):
    channel_update(provider="brevo", api_base_url=f"{provider_api.url}/v3/", credentials="test-api-key-123456")
    provider_id = email_send(message=MESSAGE)
    [call] = provider_api.calls
    assert call.path == "/v3/smtp/email"
    assert call.json["to"] == [{"email": "ann@example.com"}]
    assert call.json["sender"] == {"email": "news@shop.example.com", "name": "Shop"}
    assert call.json["subject"] == "Hello" and call.json["htmlContent"] == "<p>HTML body</p>"
    assert {k: v for k, v in call.json["headers"].items() if k.startswith("List-")} == UNSUBSCRIBE
    assert provider_id.startswith("<1.brevo@")


def test_brevo_rate_limit_is_a_transient_error_and_bad_key_permanent(channel, provider_api):
    channel_update(provider="brevo", api_base_url=f"{provider_api.url}/v3/", credentials="test-api-key-123456")
    provider_api.fail_next = [429]
    with pytest.raises(ProviderError) as limited:
        email_send(message=MESSAGE)
    assert limited.value.permanent is False
    channel_update(credentials="wrong-key-00000000")
    with pytest.raises(ProviderError) as refused:
        email_send(message=MESSAGE)
    assert refused.value.permanent is True


def test_infobip_send(channel, provider_api):
    channel_update(provider="infobip", api_base_url=provider_api.url, credentials="test-api-key-123456")
    provider_id = email_send(message=MESSAGE)
    [call] = provider_api.calls
    assert call.path == "/email/3/send"
    assert call.form["to"] == ["ann@example.com"]
    assert call.form["subject"] == ["Hello"]
    assert call.form["html"] == ["<p>HTML body</p>"]
    assert call.form["callbackData"] == ["m-1"]
    assert [json.loads(h) for h in call.form["headers"]] == [UNSUBSCRIBE]  # one-click unsubscribe (RFC 8058)
    assert provider_id == "ib-1"
    provider_api.fail_next = [503]
    with pytest.raises(ProviderError) as failed:
        email_send(message=MESSAGE)
    assert failed.value.permanent is False


def test_blocked_address_never_receives_mail(channel, smtp_server, admin_user):
    email_block(email="ann@example.com", reason="asked by phone", user=admin_user)
    with pytest.raises(RecipientBlocked):
        email_send(message=MESSAGE)
    with pytest.raises(RecipientBlocked):
        email_send(message=OutgoingEmail(to=" ANN@example.com", subject="x", text="x"))
    assert smtp_server.inbox.messages == []
    email_unblock(email="ann@example.com", reason="mistake", user=admin_user)
    email_send(message=MESSAGE)
    assert len(smtp_server.inbox.wait_for(1)) == 1


def test_credentials_are_encrypted_at_rest(channel):
    channel = channel_update(credentials="super-secret-api-key-42")
    stored = EmailChannel.objects.get(pk=channel.pk)
    assert "super-secret" not in stored.credentials_encrypted
    assert stored.credentials_hint == "••••y-42"
    assert channel_secret(stored) == "super-secret-api-key-42"


class _RefusingInbox:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 - aiosmtpd's hook
        return f"550 5.1.1 <{address}>: Recipient address rejected"


def test_a_refused_recipient_is_a_permanent_error_without_the_address(channel):
    """The message held smtplib's {address: (code, answer)}: the address went into the opt-in task's logged result
    (and the answer repeated it). Now the SMTP code only."""
    from aiosmtpd.controller import Controller

    from tests.emails.servers import free_port

    controller = Controller(_RefusingInbox(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        channel_update(smtp_port=controller.port)
        with pytest.raises(ProviderError) as refused:
            email_send(message=MESSAGE)
    finally:
        controller.stop()
    assert refused.value.permanent is True
    assert str(refused.value) == "recipient refused: SMTP 550"
