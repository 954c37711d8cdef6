from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from cdp.models import ApiToken
from cdp.services.auth import LOGIN_FAILURES_MAX, token_create
from cdp.services.secrets import secret_digest

pytestmark = pytest.mark.django_db


def test_login_returns_a_token_that_authenticates(analyst):
    client = APIClient()
    response = client.post("/api/users/login", {"username": "analyst", "password": "Analyst-password!"}, format="json")
    assert response.status_code == 200
    token = response.json()["token"]
    assert response.json()["user"]["username"] == "analyst"
    assert "customers_view" in response.json()["user"]["features"]

    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/users/me").json()["username"] == "analyst"


def test_login_works_while_redis_is_down(analyst, cache_unreachable):
    """The failed-login throttle counts in the shared cache: with Redis unreachable every login (right password or
    wrong) answered 500, so nobody could sign in to see what was wrong. It fails open now, as the rate limits do."""
    client = APIClient()

    wrong = client.post("/api/users/login", {"username": "analyst", "password": "wrong"}, format="json")
    right = client.post("/api/users/login", {"username": "analyst", "password": "Analyst-password!"}, format="json")

    assert wrong.status_code == 401
    assert right.status_code == 200 and right.json()["token"]


def test_login_records_the_last_login_as_the_admin_login_does(analyst):
    """An account used only through the API showed "last login: never" in the admin's Users list."""
    before = timezone.now()

    response = APIClient().post(
        "/api/users/login", {"username": "analyst", "password": "Analyst-password!"}, format="json"
    )

    analyst.refresh_from_db()
    assert analyst.last_login is not None and analyst.last_login >= before
    assert response.json()["user"]["last_login"] is not None
    failed = APIClient().post("/api/users/login", {"username": "analyst", "password": "wrong"}, format="json")
    assert failed.status_code == 401
    last = analyst.last_login
    analyst.refresh_from_db()
    assert analyst.last_login == last


def test_a_login_token_expires_after_the_configured_time(analyst, settings):
    """A login's token used to work until revoked (a session left on some laptop for ever); now for
    CDP_LOGIN_TOKEN_TTL_HOURS (30 days by default, 0: until revoked), and the answer says until when."""
    login = {"username": "analyst", "password": "Analyst-password!"}
    before = timezone.now()
    body = APIClient().post("/api/users/login", login, format="json").json()
    token = ApiToken.objects.get(key_hash=secret_digest(body["token"]))
    assert timedelta(days=30) <= token.expires - before < timedelta(days=30, minutes=1)
    assert body["expires"] == token.expires.isoformat()
    settings.CDP_LOGIN_TOKEN_TTL_HOURS = 0
    body = APIClient().post("/api/users/login", login, format="json").json()
    assert body["expires"] is None and ApiToken.objects.get(key_hash=secret_digest(body["token"])).expires is None


def test_token_is_stored_only_as_a_digest(analyst):
    _, key = token_create(user=analyst, name="crm")
    stored = ApiToken.objects.get(name="crm")
    assert stored.key_hash == secret_digest(key)
    assert key not in {stored.key_hash, stored.key_prefix}


def test_wrong_password_is_401_with_a_message(analyst):
    response = APIClient().post("/api/users/login", {"username": "analyst", "password": "nope"}, format="json")
    assert response.status_code == 401
    assert response.json() == {"status": "error", "message": "Wrong username or password."}


def test_repeated_failed_logins_are_throttled_per_user_name(analyst):
    client = APIClient()
    login = {"username": "analyst", "password": "guess"}
    for _ in range(LOGIN_FAILURES_MAX):
        assert client.post("/api/users/login", login, format="json").status_code == 401

    # Now even the right password is not tried until the window ends; another name is not affected.
    right = {"username": "Analyst", "password": "Analyst-password!"}
    response = client.post("/api/users/login", right, format="json")
    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 15 * 60
    assert response.json() == {"status": "error", "message": response.json()["message"]}
    assert "Too many failed logins" in response.json()["message"]
    assert client.post("/api/users/login", {"username": "other", "password": "x"}, format="json").status_code == 401


def test_the_admin_login_shares_the_throttle(analyst, client):
    """The admin's login form counts failures per user name as the API does: password guessing through the
    admin page stops at the same limit, and past it the right password is not tried there either."""
    analyst.is_staff = True
    analyst.save(update_fields=["is_staff"])
    for _ in range(LOGIN_FAILURES_MAX):
        page = client.post("/admin/login/", {"username": "analyst", "password": "guess"})
        assert page.status_code == 200 and "_auth_user_id" not in client.session
    right = client.post("/admin/login/", {"username": "analyst", "password": "Analyst-password!"})
    assert right.status_code == 200 and "_auth_user_id" not in client.session
    assert (
        APIClient()
        .post("/api/users/login", {"username": "analyst", "password": "Analyst-password!"}, format="json")
        .status_code
        == 429
    )


def test_a_successful_login_clears_the_failures(analyst):
    client = APIClient()
    for _ in range(LOGIN_FAILURES_MAX - 1):
        client.post("/api/users/login", {"username": "analyst", "password": "guess"}, format="json")
    right = {"username": "analyst", "password": "Analyst-password!"}
    assert client.post("/api/users/login", right, format="json").status_code == 200
    assert client.post("/api/users/login", {"username": "analyst", "password": "x"}, format="json").status_code == 401
    assert client.post("/api/users/login", right, format="json").status_code == 200


def test_login_without_fields_names_them():
    response = APIClient().post("/api/users/login", {}, format="json")
    assert response.status_code == 400
    assert response.json()["message"].startswith("username:")


def test_logout_revokes_the_token(analyst):
    _, key = token_create(user=analyst)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.delete("/api/users/logout").status_code == 204
    response = client.get("/api/users/me")
    assert response.status_code == 401
    assert "revoked" in response.json()["message"]


def test_x_access_token_header_and_bearer_are_accepted(analyst):
    _, key = token_create(user=analyst)
    assert APIClient().get("/api/users/me", HTTP_X_ACCESS_TOKEN=key).status_code == 200
    assert APIClient().get("/api/users/me", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200


def test_expired_token_is_refused(analyst):
    _, key = token_create(user=analyst, expires=timezone.now() - timedelta(seconds=1))
    assert APIClient().get("/api/users/me", HTTP_X_ACCESS_TOKEN=key).status_code == 401


def test_no_token_is_401():
    response = APIClient().get("/api/events/")
    assert response.status_code == 401
    assert response.json()["status"] == "error"


@pytest.mark.parametrize(("method", "path"), [("get", "/api/users/me"), ("delete", "/api/users/logout")])
def test_me_and_logout_without_a_token_are_401(method, path):
    # A client checking its token with /users/me must not read an empty user as "valid".
    response = getattr(APIClient(), method)(path)
    assert response.status_code == 401
    assert response.json()["status"] == "error"


def test_last_used_is_recorded(analyst_client, analyst):
    analyst_client.get("/api/users/me")
    assert ApiToken.objects.get(user=analyst).last_used is not None


def test_token_created_through_the_api_is_shown_once(analyst_client):
    response = analyst_client.post("/api/tokens/", {"name": "ci"}, format="json")
    assert response.status_code == 201
    key = response.json()["token"]
    assert key.startswith("cdp_")
    listed = analyst_client.get("/api/tokens/").json()["results"]
    assert all("token" not in row for row in listed)
    assert any(row["prefix"] == key[:10] + "…" for row in listed)


def test_a_token_that_would_be_expired_when_created_is_a_400(analyst_client):
    response = analyst_client.post("/api/tokens/", {"name": "ci", "expires": "2020-01-01T00:00:00Z"}, format="json")
    assert response.status_code == 400
    assert response.json()["message"].startswith("expires: 2020-01-01T00:00:00+00:00 is in the past")
    assert not ApiToken.objects.filter(name="ci").exists()
    later = (timezone.now() + timedelta(days=30)).isoformat()
    assert analyst_client.post("/api/tokens/", {"name": "ci", "expires": later}, format="json").status_code == 201


def test_revoking_a_token_through_the_api(analyst_client):
    created = analyst_client.post("/api/tokens/", {"name": "temp"}, format="json").json()
    assert analyst_client.delete(f"/api/tokens/{created['id']}/").status_code == 204
    assert APIClient().get("/api/users/me", HTTP_X_ACCESS_TOKEN=created["token"]).status_code == 401


def test_users_see_only_their_own_tokens(analyst_client, admin_user):
    token_create(user=admin_user, name="admins")
    names = {row["name"] for row in analyst_client.get("/api/tokens/").json()["results"]}
    assert "admins" not in names


def test_creating_a_token_for_someone_else_needs_users_admin(analyst_client, admin_user):
    response = analyst_client.post("/api/tokens/", {"name": "x", "user": admin_user.id}, format="json")
    assert response.status_code == 403
    assert "users_admin" in response.json()["message"]


def test_missing_feature_is_403_naming_it(outsider_client):
    response = outsider_client.get("/api/events/")
    assert response.status_code == 403
    assert response.json() == {
        "status": "error",
        "message": "Your role does not have the feature 'customers_view' needed for this request.",
    }


@pytest.mark.parametrize(
    ("method", "path", "feature"),
    [
        ("get", "/api/users/", "users_admin"),
        ("get", "/api/user_roles/", "users_admin"),
        ("get", "/api/data_sources/", "data_sources_view"),
        ("post", "/api/data_sources/", "data_sources_edit"),
        ("get", "/api/global_settings/", "settings_edit"),
        ("get", "/api/events/", "customers_view"),
        ("post", "/api/events/", "events_create"),
        ("get", "/api/customer_entities/", "customers_view"),
    ],
)
def test_every_endpoint_checks_its_feature(outsider_client, method, path, feature):
    response = getattr(outsider_client, method)(path, {}, format="json")
    assert response.status_code == 403
    assert feature in response.json()["message"]


def test_deactivated_users_tokens_stop_working(admin_client, analyst, analyst_client):
    assert admin_client.delete(f"/api/users/{analyst.id}/").status_code == 204
    assert analyst_client.get("/api/users/me").status_code == 401
