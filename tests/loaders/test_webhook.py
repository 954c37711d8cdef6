"""Webhook loader: signed JSON batches."""

import time

import pytest

from loaders.base import LoadContext, LoaderError
from loaders.registry import loader_for
from loaders.webhook import signature, signature_verify


def test_batches_are_signed_and_verifiable(webhook_receiver, sleeps):
    loader = loader_for(
        "webhook", {"url": f"{webhook_receiver.url}/hook", "secret": webhook_receiver.secret, "batch_size": 2}
    )
    people = [{"id": f"{i:032x}", "attributes": {"email": [f"{i}@x.io"], "other": [1]}} for i in range(5)]
    context = LoadContext(segment_id=7, segment_name="VIP", export_id=42, attributes=["email"], sleep=sleeps)
    result = loader.load(people, context=context)
    assert result.sent == 5 and len(webhook_receiver.batches) == 3
    first = webhook_receiver.batches[0]
    assert first["segment"] == {"id": 7, "name": "VIP"} and first["batch_id"] == "42-1"
    assert first["customers"][0] == {"id": f"{0:032x}", "attributes": {"email": ["0@x.io"]}}
    request = webhook_receiver.requests[0]
    assert request.headers["x-cdp-batch-id"] == "42-1"
    assert request.headers["x-cdp-signature"].startswith("sha256=")


def test_signature_rejects_tampering_and_old_timestamps():
    now = str(int(time.time()))
    header = signature("s3cret", now, b"{}")
    assert signature_verify("s3cret", now, b"{}", header)
    assert not signature_verify("s3cret", now, b'{"x":1}', header)
    old = str(int(time.time()) - 3600)
    assert not signature_verify("s3cret", old, b"{}", signature("s3cret", old, b"{}"))


def test_wrong_secret_is_a_permanent_error(webhook_receiver, sleeps):
    loader = loader_for("webhook", {"url": webhook_receiver.url, "secret": "not-the-secret"})
    with pytest.raises(LoaderError) as info:
        loader.load([{"id": "a" * 32, "attributes": {}}], context=LoadContext(sleep=sleeps))
    assert info.value.permanent and "bad signature" in str(info.value) and "not-the-secret" not in str(info.value)


def test_5xx_then_success(webhook_receiver, sleeps):
    webhook_receiver.fail_next(503, {"Retry-After": "1"})
    loader = loader_for("webhook", {"url": webhook_receiver.url, "secret": webhook_receiver.secret})
    result = loader.load([{"id": "a" * 32, "attributes": {}}], context=LoadContext(sleep=sleeps))
    assert result.sent == 1 and sleeps.waits == [1]


def test_webhook_is_not_idempotent():
    assert loader_for("webhook", {"url": "https://x.io", "secret": "s"}).idempotent is False


def test_a_retry_is_signed_again_with_a_fresh_timestamp(webhook_receiver):
    # Retries can span minutes (backoff, Retry-After); a retry carrying the first attempt's timestamp is refused by a
    # receiver that rejects old timestamps, and the export failed as if the secret were wrong.
    webhook_receiver.fail_next(503, {"Retry-After": "1.2"}, {"message": "busy"})
    loader = loader_for("webhook", {"url": webhook_receiver.url, "secret": webhook_receiver.secret})
    result = loader.load([{"id": "a" * 32, "attributes": {}}], context=LoadContext(sleep=time.sleep))
    assert result.sent == 1 and len(webhook_receiver.batches) == 1
    first, retry = webhook_receiver.requests
    assert int(retry.headers["x-cdp-timestamp"]) > int(first.headers["x-cdp-timestamp"])
    assert retry.body == first.body and retry.headers["x-cdp-batch-id"] == first.headers["x-cdp-batch-id"]
    assert signature_verify(
        webhook_receiver.secret, retry.headers["x-cdp-timestamp"], retry.body, retry.headers["x-cdp-signature"]
    )


@pytest.mark.parametrize(
    "url, address",
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),  # the cloud metadata service
        ("http://localhost:6379/", "127.0.0.1"),
        ("http://10.0.0.7/hook", "10.0.0.7"),
        ("http://[::ffff:192.168.1.1]/hook", "192.168.1.1"),
    ],
)
def test_a_destination_on_a_non_public_address_is_refused(settings, sleeps, url, address):
    # Anyone who may edit destinations could point a webhook (or a provider's api_base_url) at the server's own
    # network and read the answer in the export's error.
    settings.CDP_DESTINATIONS_ALLOW_PRIVATE = False
    loader = loader_for("webhook", {"url": url, "secret": "s"})

    with pytest.raises(LoaderError) as info:
        loader.load([{"id": "a" * 32, "attributes": {}}], context=LoadContext(sleep=sleeps))

    assert info.value.permanent and f"non-public address ({address})" in str(info.value)
    assert "CDP_DESTINATIONS_ALLOW_PRIVATE" in str(info.value) and sleeps.waits == []


def test_a_receiver_inside_the_network_is_reached_when_allowed(settings, webhook_receiver, sleeps):
    settings.CDP_DESTINATIONS_ALLOW_PRIVATE = False
    loader = loader_for("webhook", {"url": webhook_receiver.url, "secret": webhook_receiver.secret})
    with pytest.raises(LoaderError):
        loader.load([{"id": "a" * 32, "attributes": {}}], context=LoadContext(sleep=sleeps))
    assert webhook_receiver.requests == []  # refused before any connection

    settings.CDP_DESTINATIONS_ALLOW_PRIVATE = True
    result = loader.load([{"id": "a" * 32, "attributes": {}}], context=LoadContext(sleep=sleeps))

    assert result.sent == 1
