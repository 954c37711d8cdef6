"""Brevo through django-anymail's Brevo backend (POST {api_url}smtp/email with the `api-key` header)."""

from __future__ import annotations

from anymail.exceptions import AnymailAPIError, AnymailError, AnymailRecipientsRefused
from django.core.mail import get_connection

from emails.providers.base import ChannelNotConfigured, EmailProvider, OutgoingEmail, ProviderError, register

DEFAULT_API_URL = "https://api.brevo.com/v3/"


@register
class BrevoProvider(EmailProvider):
    kind = "brevo"

    def __init__(self, channel, secret):
        super().__init__(channel, secret)
        if not secret:
            raise ChannelNotConfigured("the email channel has no Brevo API key")
        api_url = channel.api_base_url or DEFAULT_API_URL
        self.backend = get_connection(
            "anymail.backends.brevo.EmailBackend", api_key=secret, api_url=api_url.rstrip("/") + "/"
        )

    def send(self, message: OutgoingEmail) -> str:
        mail = self.django_message(message, self.backend)
        if message.tags:
            mail.tags = message.tags
        try:
            mail.send()
        except AnymailRecipientsRefused as exc:
            raise ProviderError(f"Brevo refused the recipient: {exc}", permanent=True) from None
        except AnymailAPIError as exc:
            status = getattr(exc, "status_code", None)
            retry_after = None
            response = getattr(exc, "response", None)
            if response is not None:
                reset = response.headers.get("x-sib-ratelimit-reset") or response.headers.get("Retry-After")
                try:
                    retry_after = float(reset) if reset else None
                except ValueError:
                    retry_after = None
            transient = status is None or status == 429 or status >= 500
            # 401 / 403: the API key or the account, not this recipient.
            raise ProviderError(f"Brevo API error {status}", permanent=not transient, retry_after=retry_after,
                                channel=status in (401, 403)) from None  # fmt: skip
        except AnymailError as exc:
            raise ProviderError(f"Brevo: {exc}", permanent=False) from None
        status = mail.anymail_status
        return status.message_id or ""
