"""Email providers behind one contract (`base.EmailProvider.send`), one module each, and the registry from the
channel's provider kind to its class. Adding a provider: copy a module, change it, register it."""

# Importing the modules registers them.
from emails.providers import brevo, infobip, smtp  # noqa: E402, F401, I001
from emails.providers.base import (
    PROVIDERS,
    ChannelNotConfigured,
    EmailProvider,
    OutgoingEmail,
    ProviderError,
    provider_for,
)

__all__ = ["PROVIDERS", "ChannelNotConfigured", "EmailProvider", "OutgoingEmail", "ProviderError", "provider_for"]
