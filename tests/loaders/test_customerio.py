"""Customer.io loader against a local server speaking the Track API v2 batch shapes."""

import pytest

from loaders.base import LoadContext, LoaderError
from loaders.customerio import MAX_REQUEST_BYTES, segment_membership
from loaders.registry import loader_for


def cio_loader(fake, **config):
    return loader_for(
        "customerio", {"site_id": "site-1", "api_key": "cio-api-key-secret", "api_base_url": fake.url, **config}
    )


def person(i: int, **extra):
    attributes = {"ps_email_address": [f"p{i}@example.com"], "first_name": [f"First{i}"], "last_name": [f"Last{i}"]}
    return {"id": f"{i:032x}", "attributes": attributes, **extra}


def test_segment_membership_format():
    assert segment_membership([11036, "11034"]) == "'11036','11034'"


def test_identify_sets_segment_membership_and_identity(customerio, sleeps):
    context = LoadContext(segment_id=11034, segment_name="Ibiza Dreamers", sleep=sleeps)
    result = cio_loader(customerio).load([person(1), person(2)], context=context)
    assert (result.sent, result.failed) == (2, 0)
    attributes = customerio.people[f"{1:032x}"]
    assert attributes == {
        "SegmentMembership": "'11034'",
        "email": "p1@example.com",
        "first_name": "First1",
        "last_name": "Last1",
    }
    body = customerio.requests[0].json()
    assert body["batch"][0]["type"] == "person" and body["batch"][0]["action"] == "identify"
    assert body["batch"][0]["identifiers"] == {"id": f"{1:032x}"}


def test_memberships_and_one_attribute_per_segment(customerio, sleeps):
    context = LoadContext(segment_id=11034, segment_name="Ibiza Dreamers", sleep=sleeps)
    segments = [{"id": 11036, "name": "Aspiring Athenians"}, {"id": 11034, "name": "Ibiza Dreamers"}]
    leaver = person(3, left=True, segments=[{"id": 11036, "name": "Aspiring Athenians"}])
    cio_loader(customerio, one_attribute_per_segment=True).load([person(1, segments=segments), leaver], context=context)
    member = customerio.people[f"{1:032x}"]
    assert member["SegmentMembership"] == "'11036','11034'"
    assert member["In Ibiza Dreamers"] is True and member["In Aspiring Athenians"] is True
    gone = customerio.people[f"{3:032x}"]
    assert gone["SegmentMembership"] == "'11036'" and gone["In Ibiza Dreamers"] is False


def test_partial_failure_207_counts_each_bad_row(customerio, sleeps):
    bad = {"id": "b" * 32, "attributes": {"ps_email_address": ["not-an-email"]}}
    result = cio_loader(customerio).load([person(1), bad, person(2)], context=LoadContext(segment_id=1, sleep=sleeps))
    assert (result.sent, result.failed) == (2, 1)
    assert "invalid (email)" in result.errors[0]
    assert "b" * 32 not in customerio.people


def test_batches_stay_under_500kb(customerio, sleeps):
    big = [
        {"id": f"{i:032x}", "attributes": {"first_name": ["x" * 900], "ps_email_address": [f"{i}@e.com"]}}
        for i in range(1200)
    ]
    result = cio_loader(customerio, batch_size=10_000).load(big, context=LoadContext(segment_id=1, sleep=sleeps))
    assert result.sent == 1200 and len(customerio.requests) >= 3
    assert all(len(r.body) <= MAX_REQUEST_BYTES for r in customerio.requests)


def test_too_long_value_fails_that_row_only(customerio, sleeps):
    long = {"id": "c" * 32, "attributes": {"first_name": ["y" * 1200]}}
    result = cio_loader(customerio).load([long, person(1)], context=LoadContext(segment_id=1, sleep=sleeps))
    assert (result.sent, result.failed) == (1, 1) and "longer than 1000 bytes" in result.errors[0]


def test_429_and_5xx_are_retried(customerio, sleeps):
    customerio.fail_next(429, {"Retry-After": "2"}, {"meta": {"error": "rate limited"}})
    customerio.fail_next(502, {}, b"<html>bad gateway</html>")
    result = cio_loader(customerio).load([person(1)], context=LoadContext(segment_id=1, sleep=sleeps))
    assert result.sent == 1 and sleeps.waits[0] == 2 and len(customerio.requests) == 3


def test_bad_credentials_stop_with_customerio_message(customerio, sleeps):
    loader = loader_for("customerio", {"site_id": "site-1", "api_key": "wrong-key-123", "api_base_url": customerio.url})
    with pytest.raises(LoaderError) as info:
        loader.load([person(1)], context=LoadContext(segment_id=1, sleep=sleeps))
    assert info.value.permanent and "Unauthorized request" in str(info.value)
    assert "wrong-key-123" not in str(info.value)


def test_region_picks_the_host():
    assert cio_loader_host("US") == "https://track.customer.io"
    assert cio_loader_host("EU") == "https://track-eu.customer.io"


def cio_loader_host(region):
    return loader_for("customerio", {"site_id": "s", "api_key": "k", "region": region})._base()
