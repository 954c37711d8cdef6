"""The loader contract: config validation up front, the registry, secrets kept out of reprs and messages."""

import logging

import pytest

from loaders.base import ConfigError, LoadContext, LoaderError, config_redact, secret_mask
from loaders.http import HttpClient, retry_after_seconds
from loaders.registry import LOADERS, loader_class, loader_for
from tests.loaders.fakes import Answer, FakeServer


class Echo(FakeServer):
    def handle(self, request):
        return Answer(200, {"ok": True})


@pytest.fixture
def echo():
    fake = Echo().start()
    yield fake
    fake.stop()


def test_registry_has_every_destination_kind():
    assert set(LOADERS) == {"csv", "pinterest", "customerio", "meta_capi", "webhook"}
    assert loader_class("csv").label == "CSV file"


def test_unknown_kind_is_a_config_error_naming_kind():
    with pytest.raises(ConfigError) as info:
        loader_class("fax")
    assert info.value.field == "kind" and info.value.permanent


@pytest.mark.parametrize(
    ("kind", "config", "field"),
    [
        ("pinterest", {"ad_account_id": "1"}, "access_token"),
        ("pinterest", {"access_token": "t", "ad_account_id": "12a"}, "ad_account_id"),
        ("pinterest", {"access_token": "t", "ad_account_id": "1" * 19, "audience_name": "x"}, "ad_account_id"),
        ("pinterest", {"access_token": "t", "ad_account_id": "123"}, "audience_name"),
        ("pinterest", {"access_token": "t", "ad_account_id": "123", "audience_id": "55"}, "audience_operation"),
        (
            "pinterest",
            {"access_token": "t", "ad_account_id": "123", "audience_id": "55", "audience_operation": "merge"},
            "audience_operation",
        ),
        (
            "pinterest",
            {"access_token": "t", "ad_account_id": "1", "audience_name": "a", "hash_algorithm": "crc"},
            "hash_algorithm",
        ),
        ("customerio", {"api_key": "k"}, "site_id"),
        ("customerio", {"site_id": "s", "api_key": "k", "region": "APAC"}, "region"),
        (
            "customerio",
            {"site_id": "s", "api_key": "k", "one_attribute_per_segment": "maybe"},
            "one_attribute_per_segment",
        ),
        ("meta_capi", {"pixel_id": "12", "access_token": "t"}, "event_types"),
        ("meta_capi", {"pixel_id": "pix", "access_token": "t", "event_types": ["purchase"]}, "pixel_id"),
        ("meta_capi", {"pixel_id": "1", "access_token": "t", "event_types": ["p"], "batch_size": 5000}, "batch_size"),
        ("webhook", {"url": "ftp://x", "secret": "s"}, "url"),
        ("webhook", {"url": "https://example.com/hook"}, "secret"),
        ("csv", {"file_name": "../etc/passwd"}, "file_name"),
        ("csv", {"colour": "red"}, "colour"),
    ],
)
def test_bad_config_names_the_field(kind, config, field):
    with pytest.raises(ConfigError) as info:
        loader_for(kind, config)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_config_is_cleaned_with_defaults():
    loader = loader_for("pinterest", {"access_token": "t", "ad_account_id": " 123 ", "audience_name": "VIP"})
    assert loader.config["ad_account_id"] == "123"
    assert loader.config["hash"] is True and loader.config["hash_algorithm"] == "SHA256"
    assert loader_for("customerio", {"site_id": "s", "api_key": "k", "region": "eu"}).config["region"] == "EU"


def test_secrets_never_in_repr_or_redacted_config():
    loader = loader_for("customerio", {"site_id": "site", "api_key": "super-secret-api-key-1234"})
    assert "super-secret" not in repr(loader)
    redacted = config_redact(type(loader), loader.config)
    assert redacted["api_key"] == "••••1234" and redacted["site_id"] == "site"
    assert secret_mask("short") == "••••"


def test_retry_after_parses_seconds_and_dates():
    assert retry_after_seconds("7") == 7
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470) == 10
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_client_retries_429_honouring_retry_after_then_succeeds(echo, sleeps):
    echo.fail_next(429, {"Retry-After": "7"}, {"message": "slow down"})
    echo.fail_next(503, {}, {"message": "maintenance"})
    client = HttpClient(provider="Echo", sleep=sleeps)
    response = client.request("GET", f"{echo.url}/x")
    assert response.status == 200 and len(echo.requests) == 3
    assert sleeps.waits[0] == 7
    assert 1.0 <= sleeps.waits[1] <= 2.0  # exponential backoff (2nd retry: 2s) with jitter


def test_client_caps_retry_after(echo, sleeps):
    echo.fail_next(429, {"Retry-After": "86400"})
    HttpClient(provider="Echo", sleep=sleeps, retry_after_cap=120).request("GET", echo.url)
    assert sleeps.waits == [120]


def test_client_gives_up_with_a_transient_error(echo, sleeps):
    for _ in range(3):
        echo.fail_next(502, {}, {"message": "bad gateway"})
    with pytest.raises(LoaderError) as info:
        HttpClient(provider="Echo", sleep=sleeps, attempts=3).request("GET", echo.url)
    assert not info.value.permanent and "gave up after 3 attempts" in str(info.value)


def test_client_permanent_4xx_carries_the_provider_message_without_secrets(echo, sleeps, caplog):
    echo.fail_next(403, {}, {"message": "token tok-SECRET-value is not allowed"})
    client = HttpClient(provider="Echo", sleep=sleeps, secrets=["tok-SECRET-value"])
    with caplog.at_level(logging.DEBUG), pytest.raises(LoaderError) as info:
        client.request("GET", echo.url)
    assert info.value.permanent and info.value.status == 403
    assert "is not allowed" in str(info.value) and "SECRET" not in str(info.value)
    assert sleeps.waits == []


def test_client_retries_connection_errors(sleeps):
    client = HttpClient(provider="Nowhere", sleep=sleeps, attempts=2, timeout=1)
    with pytest.raises(LoaderError) as info:
        client.request("GET", "http://127.0.0.1:9/")  # discard port: refused
    assert not info.value.permanent and "could not be reached" in str(info.value)
    assert len(sleeps.waits) == 1
    assert info.value.undelivered  # refused: nothing reached the destination


def test_client_says_whether_a_failed_request_may_have_arrived(echo, sleeps):
    for status in (429, 503):
        echo.fail_next(status, {}, {"message": "not now"})
    with pytest.raises(LoaderError) as info:
        HttpClient(provider="Echo", sleep=sleeps, attempts=2).request("POST", echo.url)
    assert info.value.undelivered
    for status in (429, 500):
        echo.fail_next(status, {}, {"message": "crashed"})
    with pytest.raises(LoaderError) as info:
        HttpClient(provider="Echo", sleep=sleeps, attempts=2).request("POST", echo.url)
    assert not info.value.undelivered  # a 500 may come after the work was done


def test_retry_notes_go_to_the_export_log_scrubbed(echo, sleeps):
    echo.fail_next(500, {}, {"message": "oops key-ABCDEFGH"})
    notes = []
    HttpClient(provider="Echo", sleep=sleeps, secrets=["key-ABCDEFGH"], log=notes.append).request("GET", echo.url)
    assert notes and "key-ABCDEFGH" not in notes[0] and "[redacted]" in notes[0]


def test_default_context_is_usable():
    context = LoadContext()
    context.log("x")
    context.sending("e1")
    context.checkpoint(last_entity_id="e1", sent=1, skipped=0, failed=0)
