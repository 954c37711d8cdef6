"""cdp.ratelimit: the per-client-IP limit on public endpoints, exercised through /v1/*."""

import json
import secrets

import pytest
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext

from cdp.models import CustomerEvent
from cdp.ratelimit import client_ip, rate_limit_setting_forget
from cdp.services.global_settings import global_setting_set

pytestmark = pytest.mark.django_db


def send(client: Client, auth: dict, n: int, **extra):
    body = {"userId": "u1", "event": "Clicked", "messageId": f"m-{n}"}
    return client.post("/v1/track", data=json.dumps(body), content_type="application/json", **auth, **extra)


@pytest.fixture
def limit_of_three(db):
    global_setting_set(key="public_rate_limit_per_minute", value=3, user=None)
    rate_limit_setting_forget()


def test_over_the_limit_is_a_429_with_retry_after(segment_client, auth, limit_of_three):
    statuses = [send(segment_client, auth, n).status_code for n in range(4)]

    assert statuses == [200, 200, 200, 429]
    response = send(segment_client, auth, 99)
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response.json()["status"] == "error"
    assert "at most 3 per minute" in response.json()["message"]
    assert response["Access-Control-Allow-Origin"] == "*"  # a browser can read the 429
    assert CustomerEvent.objects.count() == 3


def test_each_client_ip_has_its_own_counter(auth, limit_of_three, client_ip):
    first, second = Client(REMOTE_ADDR=client_ip), Client(REMOTE_ADDR=client_ip + "1")
    for n in range(3):
        send(first, auth, n)

    assert send(first, auth, 3).status_code == 429
    assert send(second, auth, 4).status_code == 200


def test_zero_means_unlimited(segment_client, auth):
    global_setting_set(key="public_rate_limit_per_minute", value=0, user=None)
    rate_limit_setting_forget()

    assert all(send(segment_client, auth, n).status_code == 200 for n in range(20))


def test_preflights_are_not_counted(segment_client, auth, limit_of_three):
    for _ in range(5):
        assert segment_client.options("/v1/track").status_code == 204

    assert send(segment_client, auth, 1).status_code == 200


def test_the_limit_is_read_from_the_setting_at_most_every_few_seconds(segment_client, auth, limit_of_three):
    send(segment_client, auth, 1)  # reads the setting

    with CaptureQueriesContext(connection) as queries:
        send(segment_client, auth, 2)

    assert queries.captured_queries
    assert not [q for q in queries.captured_queries if "globalsetting" in q["sql"].lower()]


def test_forwarded_for_is_ignored_unless_trusted(settings):
    request = RequestFactory().post("/v1/track", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.7, 10.0.0.2")

    settings.TRUST_X_FORWARDED_FOR = False
    assert client_ip(request) == "10.0.0.1"
    settings.TRUST_X_FORWARDED_FOR = True
    assert client_ip(request) == "203.0.113.7"


def test_junk_forwarded_for_falls_back_to_the_peer_address(settings):
    settings.TRUST_X_FORWARDED_FOR = True
    request = RequestFactory().post("/v1/track", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="<script>, 1.2.3.4")

    assert client_ip(request) == "10.0.0.1"


def test_trusted_forwarded_for_is_what_the_limit_counts(settings, auth, limit_of_three, client_ip):
    settings.TRUST_X_FORWARDED_FOR = True
    proxy = Client(REMOTE_ADDR="10.0.0.1")
    for n in range(3):
        send(proxy, auth, n, HTTP_X_FORWARDED_FOR=client_ip)

    assert send(proxy, auth, 3, HTTP_X_FORWARDED_FOR=client_ip).status_code == 429
    # Another visitor behind the same proxy is not limited.
    other_visitor = "2001:db8::" + ":".join(secrets.token_hex(2) for _ in range(4))
    assert send(proxy, auth, 4, HTTP_X_FORWARDED_FOR=other_visitor).status_code == 200


def test_endpoints_need_no_csrf_token(auth, client_ip):
    client = Client(enforce_csrf_checks=True, REMOTE_ADDR=client_ip)

    assert send(client, auth, 1).status_code == 200
