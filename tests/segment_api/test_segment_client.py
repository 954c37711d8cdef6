"""The real `segment-analytics-python` SDK against a live test server: what a customer's backend would do."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import segment.analytics as analytics
from segment.analytics import request as segment_request
from segment.analytics.request import APIError

from cdp.models import CustomerEvent
from cdp.ratelimit import rate_limit_setting_forget
from cdp.services.data_sources import data_source_create
from cdp.services.global_settings import global_setting_set

pytestmark = pytest.mark.django_db(transaction=True)

START = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def write_key(transactional_db) -> str:
    _, key = data_source_create(slug="backend", name="Backend", type="server")
    # Every SDK request comes from 127.0.0.1; this test is about the SDK, not the limiter.
    global_setting_set(key="public_rate_limit_per_minute", value=0, user=None)
    rate_limit_setting_forget()
    return key


@pytest.fixture(autouse=True)
def _sdk_connections_closed():
    """The SDK keeps HTTP connections alive in a module-level session; the live server's thread serving one
    keeps its database connection until the socket closes, which would block dropping the test database."""
    yield
    segment_request._session.close()


def sdk_client(live_server, write_key: str, errors: list, **options) -> analytics.Client:
    return analytics.Client(
        write_key,
        host=live_server.url,
        on_error=lambda error, batch: errors.append(error),
        max_retries=1,
        upload_interval=0.05,
        **options,
    )


def send(client: analytics.Client, n: int) -> None:
    """Message n: a track, an identify or a page, with a stable messageId and timestamp."""
    when = START + timedelta(seconds=n)
    user = f"user-{n % 37}"
    if n % 3 == 0:
        client.track(user, "Order Completed", {"order": n}, timestamp=when, message_id=f"msg-{n}")
    elif n % 3 == 1:
        client.identify(user, {"email": f"{user}@example.com"}, timestamp=when, message_id=f"msg-{n}")
    else:
        client.page(anonymous_id=f"anon-{n}", name="Home", properties={"n": n}, timestamp=when, message_id=f"msg-{n}")


def test_sdk_events_are_stored_exactly_once(live_server, write_key):
    errors: list = []
    client = sdk_client(live_server, write_key, errors, upload_size=100)
    for n in range(300):
        send(client, n)
    client.flush()
    # The same events again, through a second client that gzips, as a retrying backend would.
    resender = sdk_client(live_server, write_key, errors, upload_size=50, gzip=True)
    for n in range(0, 300, 4):
        send(resender, n)
    resender.flush()
    client.join()
    resender.join()

    assert errors == []
    keys = list(CustomerEvent.objects.values_list("idempotency_key", flat=True))
    assert len(keys) == 300
    assert set(keys) == {f"msg-{n}" for n in range(300)}
    assert Counter(CustomerEvent.objects.values_list("type", flat=True)) == {
        "Order Completed": 100,
        "identify": 100,
        "page": 100,
    }
    event = CustomerEvent.objects.get(idempotency_key="msg-4")
    assert event.event_time == START + timedelta(seconds=4)
    assert event.payload["traits"] == {"email": "user-4@example.com"}
    assert event.payload["context"]["library"]["name"] == "analytics-python"
    assert "writeKey" not in event.payload


def test_sdk_in_sync_mode_gets_each_message_stored(live_server, write_key):
    errors: list = []
    client = sdk_client(live_server, write_key, errors, sync_mode=True)

    client.screen("user-1", name="Settings", message_id="s-1")
    client.alias(previous_id="anon-1", user_id="user-1", message_id="a-1")
    client.group("user-1", "acme", {"name": "ACME"}, message_id="g-1")
    client.group("user-1", "acme", {"name": "ACME"}, message_id="g-1")

    assert errors == []
    assert sorted(CustomerEvent.objects.values_list("type", flat=True)) == ["alias", "group", "screen"]


def test_sdk_reports_a_wrong_write_key(live_server, write_key):
    errors: list = []
    client = sdk_client(live_server, "wk_wrong", errors, sync_mode=True)

    with pytest.raises(APIError) as raised:
        client.track("user-1", "Clicked")

    assert raised.value.status == 401
    assert raised.value.code == "unauthorized"
    assert "invalid write key" in raised.value.message
    assert not CustomerEvent.objects.exists()
