"""The one way this system sends an email. Whatever sends (opt-in, campaign, a test from the admin) calls
`email_send`, which refuses blocked addresses (those erased while blocked too), so a blocked address never receives
mail from here."""

from __future__ import annotations

import uuid

from emails.models import EmailAddress, EmailChannel
from emails.providers import EmailProvider, OutgoingEmail, ProviderError, provider_for
from emails.services.channel import channel_get
from emails.services.state import address_suppressed


class RecipientBlocked(ProviderError):
    """The address is blocked: not sent, and retrying cannot help."""

    def __init__(self, email: str) -> None:
        super().__init__(f"{email} is blocked", permanent=True)


def new_message_id() -> str:
    return uuid.uuid4().hex


def email_send(
    *, message: OutgoingEmail, provider: EmailProvider | None = None, channel: EmailChannel | None = None
) -> str:
    """Send one email through the channel's provider (or the given one); returns the provider's message id.

    Raises RecipientBlocked for a blocked address and ProviderError (permanent or not) when sending failed."""
    email = message.to.strip().lower()
    # An address erased while blocked has no state row, only its digest.
    if EmailAddress.objects.filter(email=email, blocked=True).exists() or address_suppressed(email):
        raise RecipientBlocked(message.to)
    if provider is None:
        provider = provider_for(channel or channel_get())
        try:
            return provider.send(message)
        finally:
            provider.close()
    return provider.send(message)
