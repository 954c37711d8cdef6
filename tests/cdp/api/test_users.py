import pytest
from rest_framework.test import APIClient

from cdp.models import ApiToken, User
from cdp.services.auth import token_create

pytestmark = pytest.mark.django_db


def test_admin_creates_a_user_with_a_role(admin_client, analyst_role):
    response = admin_client.post(
        "/api/users/",
        {"username": "maria", "email": "maria@example.com", "password": "Long-enough-pass-1", "role": analyst_role.id},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert "password" not in response.json()
    user = User.objects.get(username="maria")
    assert user.check_password("Long-enough-pass-1")
    assert user.has_feature("customers_view") and not user.has_feature("users_admin")


def test_weak_password_is_refused_with_the_reason(admin_client):
    response = admin_client.post("/api/users/", {"username": "weak", "password": "123"}, format="json")
    assert response.status_code == 400
    assert response.json()["message"].startswith("password:")


def test_duplicate_username_is_400(admin_client, analyst):
    response = admin_client.post(
        "/api/users/", {"username": "analyst", "password": "Long-enough-pass-1"}, format="json"
    )
    assert response.status_code == 400
    assert "username" in response.json()["message"]


def test_user_list_embeds_roles_with_load_full_structure(admin_client, analyst):
    plain = admin_client.get("/api/users/").json()["results"]
    full = admin_client.get("/api/users/?load_full_structure=1").json()["results"]
    plain_row = next(row for row in plain if row["username"] == "analyst")
    full_row = next(row for row in full if row["username"] == "analyst")
    assert plain_row["role"] == analyst.role_id
    assert full_row["role"]["name"] == "Analyst"


def test_role_with_unknown_feature_is_refused(admin_client):
    response = admin_client.post("/api/user_roles/", {"name": "Odd", "features": ["fly"]}, format="json")
    assert response.status_code == 400
    assert "fly" in response.json()["message"]


def test_role_crud(admin_client):
    created = admin_client.post(
        "/api/user_roles/", {"name": "Marketer", "features": ["segments_view", "segments_edit"]}, format="json"
    )
    assert created.status_code == 201
    role_id = created.json()["id"]
    patched = admin_client.patch(f"/api/user_roles/{role_id}/", {"features": ["segments_view"]}, format="json")
    assert patched.json()["features"] == ["segments_view"]
    assert admin_client.delete(f"/api/user_roles/{role_id}/").status_code == 204


def test_role_in_use_cannot_be_deleted(admin_client, analyst):
    response = admin_client.delete(f"/api/user_roles/{analyst.role_id}/")
    assert response.status_code == 400
    assert "assigned" in response.json()["message"]


def test_deactivating_through_an_update_revokes_the_tokens_as_deleting_does(admin_client, analyst):
    _, key = token_create(user=analyst, name="crm sync")

    response = admin_client.patch(f"/api/users/{analyst.pk}/", {"is_active": False}, format="json")
    assert response.status_code == 200
    # Made active again (a mistake undone, someone back), the old token must not come back to life with them.
    assert admin_client.patch(f"/api/users/{analyst.pk}/", {"is_active": True}, format="json").status_code == 200

    assert APIClient().get("/api/users/me", HTTP_X_ACCESS_TOKEN=key).status_code == 401
    assert ApiToken.objects.get(user=analyst).revoked is not None


def test_an_administrator_cannot_deactivate_themselves_by_an_update_either(admin_client, admin_user):
    response = admin_client.patch(f"/api/users/{admin_user.pk}/", {"is_active": False}, format="json")
    assert response.status_code == 400
    assert response.json()["message"] == "is_active: You cannot deactivate yourself."
    admin_user.refresh_from_db()
    assert admin_user.is_active


@pytest.fixture
def user_administrator(db):
    from cdp.features import Feature
    from cdp.services.auth import role_create, user_create

    role = role_create(name="User admins", features=[Feature.USERS_ADMIN])
    return user_create(username="useradmin", password="Us3r-admin-pass!", role=role)


def test_a_user_administrator_cannot_take_over_a_superuser(user_administrator, admin_user, analyst):
    """The admin refused it ("only a superuser may change a superuser"), the API did not: a users_admin role set a
    superuser's password, deactivated them, or made a token acting as them (and so had what no role gives)."""
    from tests.conftest import client_for

    client = client_for(user_administrator)

    password = client.patch(f"/api/users/{admin_user.pk}", {"password": "Taken-over-pass-1"}, format="json")
    deactivate = client.delete(f"/api/users/{admin_user.pk}")
    token = client.post("/api/tokens/", {"user": admin_user.pk, "name": "backdoor"}, format="json")

    assert password.status_code == deactivate.status_code == token.status_code == 403
    assert "superuser" in token.json()["message"]
    admin_user.refresh_from_db()
    assert admin_user.check_password("Adm1n-password!") and admin_user.is_active
    assert not ApiToken.objects.filter(user=admin_user, name="backdoor").exists()
    # Other users stay theirs to manage; superusers still manage superusers.
    assert client.patch(f"/api/users/{analyst.pk}", {"first_name": "Ann"}, format="json").status_code == 200
    assert client.post("/api/tokens/", {"user": analyst.pk}, format="json").status_code == 201
    assert client.get(f"/api/users/{admin_user.pk}").status_code == 200
    other = User.objects.create(username="root2", is_superuser=True)
    assert client_for(admin_user).post("/api/tokens/", {"user": other.pk}, format="json").status_code == 201


def test_the_admin_token_form_offers_no_superuser_to_a_user_administrator(user_administrator, admin_user, client):
    client.force_login(user_administrator)

    page = client.get("/admin/cdp/apitoken/add/")
    posted = client.post("/admin/cdp/apitoken/add/", {"user": admin_user.pk, "name": "backdoor"})

    assert page.status_code == 200
    assert f'value="{admin_user.pk}"' not in page.content.decode()
    assert posted.status_code == 200 and not ApiToken.objects.filter(name="backdoor").exists()  # the form's error
