"""Meta Conversions API loader against a local Graph API server."""

from datetime import UTC, datetime, timedelta

import pytest

from cdp.models import CustomerEntity, CustomerEvent
from cdp.services.data_sources import data_source_create
from loaders.base import LoadContext, LoaderError
from loaders.registry import loader_for
from tests.entities import events_attach
from tests.loaders.fakes import sha256


@pytest.fixture
def shop(db):
    source, _ = data_source_create(slug="shop", name="Shop", with_write_key=False)
    now = datetime.now(UTC)
    jane = CustomerEntity.objects.create(
        attributes={"ps_email_address": [" Jane@Example.com"], "ps_phone": ["+420 602 123 456"]}
    )
    bob = CustomerEntity.objects.create(attributes={"ps_email_address": ["bob@example.com"]})
    quiet = CustomerEntity.objects.create(attributes={"ps_email_address": ["quiet@example.com"]})

    def event(entity, type, age, key, payload=None):
        created = CustomerEvent.objects.create(
            source=source, type=type, event_time=now - age, payload=payload or {}, idempotency_key=key
        )
        events_attach([created], entity)
        return created

    event(jane, "purchase", timedelta(days=1), "order-1", {"properties": {"revenue": 42.5, "currency": "eur"}})
    event(jane, "purchase", timedelta(days=8), "order-old")  # too old: never sent
    event(jane, "page_view", timedelta(hours=1), "pv-1")  # not a chosen type
    event(bob, "lead", timedelta(hours=2), "lead-1")
    return {"jane": jane, "bob": bob, "quiet": quiet}


def customers_of(shop):
    return [{"id": e.id, "attributes": e.attributes} for e in sorted(shop.values(), key=lambda e: e.id)]


def capi_loader(fake, **config):
    return loader_for(
        "meta_capi",
        {
            "pixel_id": "1234567890",
            "access_token": fake.token,
            "event_types": ["purchase", "lead"],
            "event_names": {"purchase": "Purchase", "lead": "Lead"},
            "api_base_url": fake.url,
            **config,
        },
    )


def test_recent_events_are_sent_with_hashed_user_data(shop, meta_graph, sleeps):
    result = capi_loader(meta_graph, test_event_code="TEST123").load(
        customers_of(shop), context=LoadContext(sleep=sleeps)
    )
    assert (result.sent, result.failed, result.skipped) == (2, 0, 1)
    purchase = meta_graph.events[("Purchase", "order-1")]
    assert purchase["user_data"]["em"] == [sha256("jane@example.com")]
    assert purchase["user_data"]["ph"] == [sha256("420602123456")]
    assert purchase["user_data"]["external_id"] == [sha256(shop["jane"].id)]
    assert purchase["custom_data"] == {"value": 42.5, "currency": "EUR"}
    assert purchase["action_source"] == "website" and purchase["test_event_code"] == "TEST123"
    assert ("Lead", "lead-1") in meta_graph.events
    assert not any(key[1] == "order-old" for key in meta_graph.events)
    request = meta_graph.requests[0]
    assert request.path == "/v21.0/1234567890/events"


def test_resending_is_deduplicated_by_event_id(shop, meta_graph, sleeps):
    for _ in range(2):
        capi_loader(meta_graph).load(customers_of(shop), context=LoadContext(sleep=sleeps))
    assert len(meta_graph.events) == 2


def test_requests_hold_at_most_batch_size_events(shop, meta_graph, sleeps):
    capi_loader(meta_graph, batch_size=1).load(customers_of(shop), context=LoadContext(sleep=sleeps))
    assert [len(r.json()["data"]) for r in meta_graph.requests] == [1, 1]


def test_an_invalid_event_fails_alone(shop, meta_graph, sleeps):
    source = CustomerEvent.objects.first().source
    bad = CustomerEvent.objects.create(
        source=source,
        type="purchase",
        event_time=datetime.now(UTC) - timedelta(hours=3),
        payload={"properties": {"revenue": -1}},
        idempotency_key="order-bad",
    )
    events_attach([bad], shop["bob"])
    result = capi_loader(meta_graph).load(customers_of(shop), context=LoadContext(sleep=sleeps))
    assert (result.sent, result.failed) == (2, 1)
    assert "order-bad" in result.errors[0] and "must not be negative" in result.errors[0]


def test_bad_token_stops_without_leaking_it(shop, meta_graph, sleeps):
    loader = loader_for(
        "meta_capi",
        {
            "pixel_id": "1",
            "access_token": "EAAB-wrong-token",
            "event_types": ["purchase"],
            "api_base_url": meta_graph.url,
        },
    )
    with pytest.raises(LoaderError) as info:
        loader.load(customers_of(shop), context=LoadContext(sleep=sleeps))
    assert info.value.permanent and "Invalid OAuth access token" in str(info.value)
    assert "EAAB-wrong-token" not in str(info.value)


def test_throttling_and_5xx_are_retried(shop, meta_graph, sleeps):
    meta_graph.fail_next(429, {"Retry-After": "4"}, {"error": {"message": "busy", "code": 4}})
    meta_graph.fail_next(400, {}, {"error": {"message": "Application request limit reached", "code": 4}})
    meta_graph.fail_next(500, {}, {"error": {"message": "unknown", "code": 2}})
    result = capi_loader(meta_graph).load(customers_of(shop), context=LoadContext(sleep=sleeps))
    assert result.sent == 2 and sleeps.waits[0] == 4 and len(sleeps.waits) == 3


def test_website_events_carry_the_browser_user_agent_ip_and_page_url(db, meta_graph, sleeps):
    # Meta requires client_user_agent and event_source_url for website events; Segment's payloads carry them.
    source, _ = data_source_create(slug="web", name="Web", with_write_key=False)
    entity = CustomerEntity.objects.create(attributes={"ps_email_address": ["jane@example.com"]})
    payload = {
        "context": {
            "ip": "198.51.100.7",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64)",
            "page": {"url": "https://shop.example.com/checkout/done"},
        },
        "properties": {"revenue": 10, "currency": "EUR"},
    }
    created = CustomerEvent.objects.create(
        source=source, type="purchase", event_time=datetime.now(UTC), payload=payload, idempotency_key="web-1"
    )
    bare = CustomerEvent.objects.create(
        source=source, type="purchase", event_time=datetime.now(UTC), payload={}, idempotency_key="server-1"
    )
    events_attach([created, bare], entity)

    result = capi_loader(meta_graph).load(
        [{"id": entity.id, "attributes": entity.attributes}], context=LoadContext(sleep=sleeps)
    )

    assert result.sent == 2
    sent = meta_graph.events[("Purchase", "web-1")]
    assert sent["event_source_url"] == "https://shop.example.com/checkout/done"
    assert sent["user_data"]["client_user_agent"] == "Mozilla/5.0 (X11; Linux x86_64)"
    assert sent["user_data"]["client_ip_address"] == "198.51.100.7"  # not hashed, as Meta asks
    assert sent["user_data"]["em"] == [sha256("jane@example.com")]
    other = meta_graph.events[("Purchase", "server-1")]
    assert "event_source_url" not in other and "client_user_agent" not in other["user_data"]


def test_an_unknown_pixel_stops_the_export_at_once(shop, sleeps):
    from tests.loaders.fakes import FakeMetaGraph

    graph = FakeMetaGraph(pixels=("1111",)).start()
    try:
        with pytest.raises(LoaderError) as info:
            capi_loader(graph).load(customers_of(shop), context=LoadContext(sleep=sleeps))
    finally:
        graph.stop()
    assert info.value.permanent and "check pixel_id" in str(info.value)
    assert "Object with ID '1234567890' does not exist" in str(info.value)
    assert len(graph.requests) == 1  # not halved down to one request per event


def test_checkpoints_measure_the_progress_in_customers_not_events(shop, meta_graph, sleeps):
    # Counts are events: the progress (sent + skipped / members) reached 100 % while customers were still to come.
    event = CustomerEvent.objects.get(idempotency_key="order-1")
    for n in range(5):  # Jane buys a lot
        more = CustomerEvent.objects.create(
            source=event.source, type="purchase", event_time=event.event_time, payload={}, idempotency_key=f"more-{n}"
        )
        events_attach([more], shop["jane"])
    checkpoints = []
    context = LoadContext(sleep=sleeps, checkpoint=lambda **kw: checkpoints.append(kw))
    result = capi_loader(meta_graph).load(customers_of(shop), context=context)
    assert result.sent == 7 and result.skipped == 1
    assert checkpoints[-1]["customers"] == 3 and checkpoints[-1]["state"]["customers"] == 3
