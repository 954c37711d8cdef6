"""The rate limiter adds a busy client's requests to the shared Redis counter in batches of 1% of the limit."""

import secrets
import time

import pytest
from django.core.cache import cache
from django.test import RequestFactory

from cdp import ratelimit
from cdp.services.global_settings import global_setting_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def limit_of(request):
    def set_limit(value: int) -> None:
        global_setting_set(key="public_rate_limit_per_minute", value=value, user=None)
        ratelimit.rate_limit_setting_forget()

    yield set_limit
    ratelimit.rate_limit_setting_forget()


def _request(ip: str):
    return RequestFactory().get("/wbs", REMOTE_ADDR=ip)


def _key(ip: str) -> str:
    return f"ratelimit:batching:{ip}:{int(time.time() // ratelimit.WINDOW_SECONDS)}"


def test_requests_reach_the_shared_counter_in_batches(limit_of):
    limit_of(1000)  # batches of 10
    ip = f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"
    for _ in range(9):
        assert ratelimit.rate_limit_response(_request(ip), scope="batching") is None
    assert cache.get(_key(ip)) is None
    assert ratelimit.rate_limit_response(_request(ip), scope="batching") is None
    assert cache.get(_key(ip)) == 10


def test_near_the_limit_every_request_is_checked(limit_of):
    limit_of(1000)
    ip = f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"
    cache.set(_key(ip), 985, timeout=65)  # other processes already counted 985
    answers = [ratelimit.rate_limit_response(_request(ip), scope="batching") for _ in range(20)]
    statuses = [200 if answer is None else answer.status_code for answer in answers]
    # The first batch of 10 brings the shared count to 995; this process then knows the count and sends the
    # requests that would pass the limit at once, so the client gets exactly the limit.
    assert statuses == [200] * 15 + [429] * 5
    assert cache.get(_key(ip)) == 1005


def test_small_limits_are_exact(limit_of):
    limit_of(150)  # batches of 1
    ip = f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"
    statuses = [ratelimit.rate_limit_response(_request(ip), scope="batching") for _ in range(151)]
    assert statuses[:150] == [None] * 150 and statuses[150].status_code == 429
