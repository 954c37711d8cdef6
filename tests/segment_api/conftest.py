"""Fixtures for the Segment-compatible endpoints: an HTTP client per test with its own client IP."""

import base64
import secrets

import pytest
from django.test import Client

from cdp.ratelimit import rate_limit_setting_forget


def basic_auth(write_key: str) -> str:
    """The Authorization header value Segment SDKs send: basic auth with the write key and no password."""
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


@pytest.fixture(autouse=True)
def _rate_limit_setting_fresh():
    """The limit is cached per process; a test that changes the setting must not leak it into the next one."""
    rate_limit_setting_forget()
    yield
    rate_limit_setting_forget()


@pytest.fixture
def client_ip() -> str:
    # A fresh address per test (and per run): rate-limit counters live in Redis and outlive the test database.
    groups = ":".join(secrets.token_hex(2) for _ in range(4))
    return f"2001:db8::{groups}"


@pytest.fixture
def segment_client(client_ip) -> Client:
    return Client(REMOTE_ADDR=client_ip)


@pytest.fixture
def auth(web_source) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": basic_auth(web_source.plain_write_key)}
