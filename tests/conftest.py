"""Shared fixtures: the cast of users for access tests, API clients, data sources."""

import pytest
from rest_framework.test import APIClient

from cdp.celery import app as celery_app
from cdp.celery import broker_backoff_reset
from cdp.features import Feature
from cdp.ratelimit import rate_limits_reset
from cdp.services.auth import role_create, token_create, user_create
from cdp.services.data_sources import data_source_create
from emails.tasks import FEEDBACK_QUEUED as feedback_queued
from stitching.tasks import QUEUED as stitching_queued
from tests.workers import celery_worker_process  # noqa: F401


@pytest.fixture(autouse=True)
def _celery_eager():
    """Tasks run in-process unless a test starts a real worker (see tests/workers.py)."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture(autouse=True)
def _destinations_on_loopback(settings):
    """The provider fakes listen on 127.0.0.1, which production refuses as a destination (see loaders/http.py);
    the tests of that refusal turn it back off."""
    settings.CDP_DESTINATIONS_ALLOW_PRIVATE = True


@pytest.fixture(autouse=True)
def _rate_limits_fresh():
    """Public endpoints count requests per client IP (Redis and per-process batches): every test starts at zero,
    whatever the tests before it sent from 127.0.0.1 in the same minute."""
    rate_limits_reset()
    broker_backoff_reset()  # a broker failure an earlier test provoked must not hold back this one's task messages
    stitching_queued.forget()  # a run queued (and never run) by an earlier test must not hold back this one's
    feedback_queued.forget()
    yield


@pytest.fixture
def cache_unreachable(settings):
    """Redis down, for the shared cache (rate limits, the login throttle, task coalescing): Django's Redis cache on a
    closed port, with the production settings' quick timeouts. (tests.workers.broker_unreachable does it for Celery.)"""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"  # nobody listens once the socket is closed
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": closed,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
    return closed


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """A full rebuild builds tables on other connections and commits them under temporary names; a test's rolled-back
    transaction undoes their swap (and the drop of earlier ones), so they would pile up for every later rebuild to
    drop again. After each test that made some, once its fixtures (and its transaction) are gone, they are dropped on
    a connection of their own (never waiting long for a lock: whatever is left goes at the next test)."""
    yield
    from stitching.services import replace

    if not replace.committed:
        return
    import psycopg
    from django.db import connection

    params = {k: v for k, v in connection.get_connection_params().items() if k != "cursor_factory"}
    try:
        with psycopg.connect(**params, autocommit=True) as raw, raw.cursor() as cursor:
            cursor.execute("SET lock_timeout = '2s'")
            replace.leftovers_drop(cursor)
    except psycopg.Error:
        pass


@pytest.fixture
def admin_user(db):
    return user_create(username="admin", password="Adm1n-password!", email="admin@example.com", is_superuser=True)


@pytest.fixture
def analyst_role(db):
    return role_create(
        name="Analyst",
        features=[Feature.CUSTOMERS_VIEW, Feature.DATA_SOURCES_VIEW, Feature.SEGMENTS_VIEW, Feature.EVENTS_CREATE],
    )


@pytest.fixture
def analyst(analyst_role):
    return user_create(username="analyst", password="Analyst-password!", role=analyst_role)


@pytest.fixture
def outsider(db):
    """A user with no role: authenticated, but no features."""
    return user_create(username="outsider", password="Outsider-password!")


def client_for(user) -> APIClient:
    _, key = token_create(user=user, name="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def admin_client(admin_user):
    return client_for(admin_user)


@pytest.fixture
def analyst_client(analyst):
    return client_for(analyst)


@pytest.fixture
def outsider_client(outsider):
    return client_for(outsider)


@pytest.fixture
def web_source(db):
    source, key = data_source_create(slug="web", name="Website", type="web")
    source.plain_write_key = key
    return source


@pytest.fixture
def shop_source(db):
    """A web source without a write key, with Segment's default stitching rules (userId, anonymousId, traits.email,
    traits.phone): what stitching tests ingest into."""
    from stitching.services.defaults import segment_default_rules_ensure

    source, _ = data_source_create(slug="shop", name="Shop", type="web", with_write_key=False)
    segment_default_rules_ensure(source=source)
    return source


@pytest.fixture
def default_attributes(db):
    """The default attribute definitions of the data migration. A `transactional_db` test flushes tables, data
    migrations' rows included, so a test that needs them after such a test asks for them here."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("cdp.migrations.0003_default_attributes")
    migration.attributes_create(apps, None)


@pytest.fixture
def default_categories(db):
    """The default stitching categories (email, phone, cookie, user id), for a test that runs after a
    `transactional_db` test flushed the data migrations' rows."""
    from stitching.services.defaults import default_categories_ensure

    return default_categories_ensure()
