"""Infobip Email API (no django-anymail backend exists): POST {base}/email/3/send, multipart form, header
`Authorization: App <key>`; answers {"bulkId", "messages": [{"to", "messageId", "status": {...}}]}."""

from __future__ import annotations

import json

import requests

from emails.providers.base import ChannelNotConfigured, EmailProvider, OutgoingEmail, ProviderError, register

TIMEOUT_SECONDS = 20


@register
class InfobipProvider(EmailProvider):
    kind = "infobip"

    def __init__(self, channel, secret):
        super().__init__(channel, secret)
        if not secret:
            raise ChannelNotConfigured("the email channel has no Infobip API key")
        if not channel.api_base_url:
            raise ChannelNotConfigured("Infobip needs the account's API base URL")
        self.url = channel.api_base_url.rstrip("/") + "/email/3/send"
        self.session = requests.Session()
        self.session.headers.update({"Authorization": f"App {secret}", "Accept": "application/json"})

    def send(self, message: OutgoingEmail) -> str:
        fields: list[tuple[str, tuple[None, str]]] = [
            ("from", (None, self.from_header)),
            ("to", (None, message.to)),
            ("subject", (None, message.subject)),
        ]
        if message.text:
            fields.append(("text", (None, message.text)))
        if message.html:
            fields.append(("html", (None, message.html)))
        if message.message_id:
            fields.append(("callbackData", (None, message.message_id)))
        unsubscribe = {name: value for name, value in message.headers.items()
                       if name.lower() in {"list-unsubscribe", "list-unsubscribe-post"}}  # fmt: skip
        if unsubscribe:
            fields.append(("headers", (None, json.dumps(unsubscribe))))
        try:
            response = self.session.post(self.url, files=fields, timeout=TIMEOUT_SECONDS)
        except requests.RequestException as exc:
            raise ProviderError(f"Infobip unreachable: {exc.__class__.__name__}", permanent=False) from None
        if response.status_code == 429 or response.status_code >= 500:
            retry = response.headers.get("Retry-After")
            raise ProviderError(
                f"Infobip API error {response.status_code}",
                permanent=False,
                retry_after=float(retry) if retry and retry.isdigit() else None,
            )
        if response.status_code >= 400:
            raise ProviderError(f"Infobip API error {response.status_code}: {response.text[:200]}", permanent=True,
                                channel=response.status_code in (401, 403))  # fmt: skip
        try:
            messages = response.json()["messages"]
            return str(messages[0]["messageId"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise ProviderError("Infobip answered without a message id", permanent=False) from None

    def close(self) -> None:
        self.session.close()
