"""The provider contract: `send(message) -> provider message id`, raising ProviderError(permanent=...)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.core.mail import EmailMultiAlternatives

from emails.models import EmailChannel


class ProviderError(Exception):
    """Sending failed. `permanent`: retrying the same message cannot help (bad address, bad credentials);
    otherwise retry later, after `retry_after` seconds when the provider said so (rate limit). `channel`: the
    provider refused the channel itself (credentials, sender, account), so no address can be sent to until someone
    fixes the channel's settings — a campaign stops instead of failing every recipient."""

    def __init__(
        self, message: str, *, permanent: bool, retry_after: float | None = None, channel: bool = False
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        self.channel = channel


class ChannelNotConfigured(ProviderError):
    """The channel's own settings cannot send (no sender address, an unknown provider, credentials that no longer
    decrypt): nothing was sent and no provider was asked; someone must fix the settings first."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


@dataclass
class OutgoingEmail:
    to: str
    subject: str
    text: str = ""
    html: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    message_id: str = ""  # ours; providers that accept it get it as a header / callback data


class EmailProvider:
    kind: ClassVar[str]

    def __init__(self, channel: EmailChannel, secret: str) -> None:
        self.channel = channel
        self.secret = secret

    @property
    def from_header(self) -> str:
        if self.channel.sender_name:
            from email.utils import formataddr

            return formataddr((self.channel.sender_name, self.channel.sender_email))
        return self.channel.sender_email

    def send(self, message: OutgoingEmail) -> str:
        raise NotImplementedError

    def django_message(self, message: OutgoingEmail, connection: Any) -> EmailMultiAlternatives:
        """The message as Django's email object on `connection` (the SMTP and anymail backends)."""
        mail = EmailMultiAlternatives(
            subject=message.subject,
            body=message.text or "",
            from_email=self.from_header,
            to=[message.to],
            headers=dict(message.headers),  # (a copy: the SMTP provider adds the Message-ID to the mail's headers)
            connection=connection,
        )
        if message.html:
            mail.attach_alternative(message.html, "text/html")
        return mail

    def close(self) -> None:
        """Release connections kept open between sends (campaigns send many through one provider object)."""


PROVIDERS: dict[str, type[EmailProvider]] = {}


def register(cls: type[EmailProvider]) -> type[EmailProvider]:
    PROVIDERS[cls.kind] = cls
    return cls


def provider_for(channel: EmailChannel) -> EmailProvider:
    from emails.crypto import CredentialsUnreadable
    from emails.services.channel import channel_secret

    cls = PROVIDERS.get(channel.provider)
    if cls is None:
        raise ChannelNotConfigured(f"unknown email provider {channel.provider!r}")
    if not channel.sender_email:
        raise ChannelNotConfigured("the email channel has no sender address configured")
    try:
        secret = channel_secret(channel)
    except CredentialsUnreadable as exc:
        raise ChannelNotConfigured(str(exc)) from None
    return cls(channel, secret)
