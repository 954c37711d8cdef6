"""Email channel fixtures: a real SMTP server, fake provider APIs, a configured channel."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from emails.services.channel import channel_update, webhook_secret_rotate
from tests.emails.servers import FakeProviderApi, SmtpServer

WEBHOOK_SECRET = "whs_test-webhook-secret-0123456789"


@pytest.fixture
def smtp_server():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def provider_api():
    api = FakeProviderApi(api_key="test-api-key-123456").start()
    yield api
    api.stop()


@pytest.fixture
def channel(db, smtp_server):
    """The channel sending through the loopback SMTP server, webhook secret WEBHOOK_SECRET."""
    channel = channel_update(
        provider="smtp", sender_email="news@shop.example.com", sender_name="Shop", smtp_host="127.0.0.1",
        smtp_port=smtp_server.port, smtp_security="none", public_base_url="http://shop.example.com",
    )  # fmt: skip
    webhook_secret_rotate(channel=channel, secret=WEBHOOK_SECRET)
    return channel


@pytest.fixture
def public_client() -> APIClient:
    return APIClient()
