"""Idempotency-Key on the API's POSTs: a retry gets the first response and nothing is done twice."""

from datetime import timedelta

import pytest
from django.utils import timezone

from cdp.models import ApiToken, CustomerEvent, DataSource, IdempotentRequest
from cdp.services import idempotency
from cdp.tasks import idempotent_requests_purge
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

KEY = "0b6c1e3a-1d7e-4a44-9c55-3f1f2f9e0a11"


def post(client, path, body, key=KEY, **extra):
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key, **extra)


def test_a_retried_create_gets_the_first_response_and_creates_nothing_more(analyst_client, analyst):
    first = post(analyst_client, "/api/tokens/", {"name": "ci"})
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first
    again = post(analyst_client, "/api/tokens/", {"name": "ci"})
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again["Content-Type"] == first["Content-Type"]
    # The token shown once is shown again to the retry that lost the first answer: the same token, not a new one.
    assert again.json() == first.json()
    assert ApiToken.objects.filter(user=analyst, name="ci").count() == 1
    # Without the header every POST is a new request, as before.
    assert analyst_client.post("/api/tokens/", {"name": "ci"}, format="json").json()["token"] != first.json()["token"]


def test_the_saved_response_is_encrypted_at_rest(analyst_client):
    token = post(analyst_client, "/api/tokens/", {"name": "ci"}).json()["token"]
    saved = IdempotentRequest.objects.get(key=KEY)
    assert token.encode() not in bytes(saved.content)
    assert b'"name"' not in bytes(saved.content)


def test_the_key_in_quotes_is_the_same_key(analyst_client, analyst):
    post(analyst_client, "/api/tokens/", {"name": "ci"})
    again = post(analyst_client, "/api/tokens/", {"name": "ci"}, key=f'"{KEY}"')
    assert again["Idempotent-Replayed"] == "true"
    assert ApiToken.objects.filter(user=analyst, name="ci").count() == 1


def test_the_same_key_with_another_request_is_refused(analyst_client, analyst):
    post(analyst_client, "/api/tokens/", {"name": "ci"})
    other_body = post(analyst_client, "/api/tokens/", {"name": "deploy"})
    assert other_body.status_code == 422
    assert "already used for another request" in other_body.json()["message"]
    other_path = post(analyst_client, "/api/events/", [])
    assert other_path.status_code == 422
    assert not ApiToken.objects.filter(user=analyst, name="deploy").exists()


def test_keys_belong_to_their_user(analyst_client, admin_client, admin_user, analyst):
    post(analyst_client, "/api/tokens/", {"name": "ci"})
    theirs = post(admin_client, "/api/tokens/", {"name": "ci"})
    assert theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs
    assert ApiToken.objects.filter(user=admin_user, name="ci").count() == 1
    assert ApiToken.objects.filter(user=analyst, name="ci").count() == 1


def test_a_refused_request_is_not_saved_and_runs_again(admin_client):
    bad = post(admin_client, "/api/data_sources/", {"slug": "bad slug!", "name": "x", "type": "web"})
    assert bad.status_code == 400
    again = post(admin_client, "/api/data_sources/", {"slug": "bad slug!", "name": "x", "type": "web"})
    assert again.status_code == 400
    assert "Idempotent-Replayed" not in again
    assert not IdempotentRequest.objects.exists()


def test_a_retried_events_batch_is_replayed(analyst_client, web_source):
    events = [
        {"source_id": "web", "type": "page", "event_time": "2025-01-01T00:00:00Z", "payload": {"n": 1}},
        {"source_id": "nope", "type": "page", "event_time": "2025-01-01T00:00:00Z", "payload": {}},
    ]
    first = post(analyst_client, "/api/events/", events)
    assert first.status_code == 200
    assert len(first.json()["accepted"]) == 1 and len(first.json()["rejected"]) == 1
    again = post(analyst_client, "/api/events/", events)
    assert again.json() == first.json()  # the first answer (accepted), not "duplicate"
    assert CustomerEvent.objects.filter(source=web_source).count() == 1


def test_a_retry_while_the_first_still_runs_is_a_409(analyst_client, analyst):
    body = {"name": "ci"}
    print_ = idempotency.request_fingerprint(method="POST", path="/api/tokens/", query="", data=body)
    running = IdempotentRequest.objects.create(user=analyst, key=KEY, fingerprint=print_, created=timezone.now())
    busy = post(analyst_client, "/api/tokens/", body)
    assert busy.status_code == 409
    assert "still being processed" in busy.json()["message"]
    assert post(analyst_client, "/api/tokens/", {"name": "other"}).status_code == 422
    assert not ApiToken.objects.filter(user=analyst, name="ci").exists()
    # A claim whose process died is taken over once its lease is over.
    IdempotentRequest.objects.filter(pk=running.pk).update(created=timezone.now() - idempotency.LEASE - timedelta(1))
    assert post(analyst_client, "/api/tokens/", body).status_code == 201
    assert post(analyst_client, "/api/tokens/", body)["Idempotent-Replayed"] == "true"
    assert ApiToken.objects.filter(user=analyst, name="ci").count() == 1


def test_two_requests_at_once_do_the_work_once(analyst, transactional_db):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    def send(_):
        try:
            return post(client_for_user, "/api/tokens/", {"name": "ci"}).status_code
        finally:
            connections.close_all()

    client_for_user = client_for(analyst)
    with ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(send, range(8)))
    assert ApiToken.objects.filter(user=analyst, name="ci").count() == 1
    assert set(codes) <= {201, 409} and 201 in codes


def test_a_refused_request_leaves_no_claim(analyst_client, analyst):
    post(analyst_client, "/api/tokens/", {"name": "ci", "user": 10**9})  # refused: someone else's / unknown user
    post(analyst_client, "/api/tokens/", {"name": "x" * 1000})
    assert not IdempotentRequest.objects.exists()


def test_the_same_request_in_other_words_is_the_same_request(analyst_client, analyst):
    first = analyst_client.post("/api/tokens/", '{"name": "ci", "expires": "2030-01-01T00:00:00Z"}',
                                content_type="application/json", HTTP_IDEMPOTENCY_KEY=KEY)  # fmt: skip
    assert first.status_code == 201, first.content
    again = analyst_client.post("/api/tokens", '{"expires":"2030-01-01T00:00:00Z","name":"ci"}',
                                content_type="application/json", HTTP_IDEMPOTENCY_KEY=KEY)  # fmt: skip
    assert (again.status_code, again.get("Idempotent-Replayed")) == (201, "true")
    assert ApiToken.objects.filter(user=analyst, name="ci").count() == 1


def test_the_fingerprint_is_keyed(analyst_client):
    import hashlib

    post(analyst_client, "/api/tokens/", {"name": "Summer-2024!x"})
    saved = IdempotentRequest.objects.get()
    assert "Summer-2024!x" not in saved.fingerprint
    assert saved.fingerprint != hashlib.sha256(b'{"name":"Summer-2024!x"}').hexdigest()
    assert saved.fingerprint == idempotency.request_fingerprint(
        method="POST", path="/api/tokens", query="", data={"name": "Summer-2024!x"}
    )


@pytest.mark.parametrize(
    ("key", "fragment"),
    [("", "empty"), ("x" * 256, "At most 255 characters"), ("caf\u00e9", "printable ASCII"), (" a", "printable")],
)
def test_a_bad_key_is_named(analyst_client, analyst, key, fragment):
    response = post(analyst_client, "/api/tokens/", {"name": "ci"}, key=key)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["message"] and fragment in response.json()["message"]
    assert not ApiToken.objects.filter(user=analyst, name="ci").exists()


def test_the_header_is_ignored_without_a_user_and_on_other_methods(client, analyst_client, web_source):
    assert post(client, "/api/tokens/", {"name": "ci"}).status_code == 401
    renamed = analyst_client.patch("/api/users/me", {"first_name": "Ann"}, format="json", HTTP_IDEMPOTENCY_KEY=KEY)
    assert "Idempotent-Replayed" not in renamed
    assert not IdempotentRequest.objects.exists()


def test_saved_responses_expire(analyst_client, analyst, settings):
    post(analyst_client, "/api/tokens/", {"name": "ci"})
    kept = timedelta(hours=settings.CDP_IDEMPOTENCY_TTL_HOURS)
    IdempotentRequest.objects.update(completed=timezone.now() - kept - timedelta(minutes=1))
    again = post(analyst_client, "/api/tokens/", {"name": "ci"})
    assert again.status_code == 201 and "Idempotent-Replayed" not in again
    assert ApiToken.objects.filter(user=analyst, name="ci").count() == 2
    two_days_ago = timezone.now() - timedelta(days=2)
    IdempotentRequest.objects.update(created=two_days_ago, completed=two_days_ago)
    died = timezone.now() - idempotency.LEASE - timedelta(minutes=1)
    IdempotentRequest.objects.create(user=analyst, key="died", fingerprint="x", created=died)
    IdempotentRequest.objects.create(user=analyst, key="running", fingerprint="x", created=timezone.now())
    assert idempotent_requests_purge() == 2
    assert idempotent_requests_purge() == 0
    assert list(IdempotentRequest.objects.values_list("key", flat=True)) == ["running"]


def test_a_response_saved_under_another_secret_key_is_not_replayed_nor_redone(analyst_client, analyst, settings):
    post(analyst_client, "/api/tokens/", {"name": "ci"})
    settings.SECRET_KEY = "another-secret-key"
    response = post(analyst_client, "/api/tokens/", {"name": "ci"})
    assert response.status_code == 409
    assert "can no longer be read" in response.json()["message"]
    assert ApiToken.objects.filter(user=analyst, name="ci").count() == 1


def test_a_retried_source_create_shows_the_same_write_key(admin_client):
    first = post(admin_client, "/api/data_sources/", {"slug": "app", "name": "App", "type": "mobile"})
    again = post(admin_client, "/api/data_sources/", {"slug": "app", "name": "App", "type": "mobile"})
    assert (again.status_code, again.json()) == (201, first.json())
    assert "write_key_plain" in again.json()
    assert DataSource.objects.filter(slug="app").count() == 1


def test_the_schema_documents_the_header_on_posts(admin_client):
    schema = admin_client.get("/api/schema/?format=json").json()
    create = schema["paths"]["/api/tokens/"]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in create["parameters"])
    listing = schema["paths"]["/api/tokens/"]["get"]
    assert all(p["name"] != "Idempotency-Key" for p in listing.get("parameters", []))
