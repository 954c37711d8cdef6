"""Bad input to the Business Explorer's customer and stitching pages is a 4xx or a page saying what is wrong,
never a 500 (found by fuzzing the admin as an administrator)."""

import pytest

from cdp.services import global_settings
from cdp.services.attributes import attribute_create, attributes_recompute
from cdp.services.global_settings import global_setting_set
from tests.stitching.graph_builder import GraphBuilder

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, admin_user):
    client.force_login(admin_user)
    client.raise_request_exception = False
    return client


@pytest.mark.parametrize(
    "url",
    [
        "/admin/cdp/customerentity/%00/change/",
        "/admin/cdp/customerentity/%00/erase/",
        "/admin/cdp/attribute/%00/change/",
        "/admin/stitching/stitchingcategory/%00/history/",
    ],
)
def test_a_nul_in_an_object_id_in_the_url_is_a_400(staff, url):
    response = staff.get(url)
    assert response.status_code == 400
    assert "NUL" in response.json()["message"]


@pytest.mark.parametrize("verb", ["approve", "block"])
def test_a_hub_review_decision_for_an_id_that_is_no_number_is_a_404(staff, verb):
    assert staff.get(f"/admin/stitching/hubreview/abc/{verb}/").status_code == 404
    assert staff.post(f"/admin/stitching/hubreview/1.5/{verb}/", {"confirm": "yes"}).status_code == 404


@pytest.mark.parametrize(
    "changelist, action, selected",
    [
        ("/admin/stitching/blockedvalue/", "values_unblock", "abc"),
        ("/admin/stitching/stitchingrule/", "rules_delete", "1.5"),
        ("/admin/stitching/hubreview/", "reviews_approve", " "),
        ("/admin/cdp/attribute/", "attributes_delete", "\x00"),
    ],
)
def test_an_action_on_a_selection_that_is_no_id_does_nothing_and_says_so(staff, changelist, action, selected):
    response = staff.post(changelist, {"action": action, "_selected_action": [selected], "confirm": "yes"})
    assert response.status_code == 302
    page = staff.get(response["Location"])
    assert "not an id of these rows" in page.content.decode()


def test_an_attribute_id_the_service_refuses_is_an_error_on_the_form(staff):
    data = {"id": "Total", "name": "Total", "description": "", "data_type": "string", "unit": "",
            "computation": "last_value", "category": "", "event_types": "[]", "path": "traits.total"}  # fmt: skip
    response = staff.post("/admin/cdp/attribute/add/", data)
    assert response.status_code == 200
    assert "Use lower-case letters" in response.content.decode()


def test_a_category_id_the_service_refuses_is_an_error_on_the_form(staff):
    data = {"id": "ABC", "name": "N", "normalizer": "trim", "max_per_entity": "", "priority": 0}
    response = staff.post("/admin/stitching/stitchingcategory/add/", data)
    assert response.status_code == 200
    assert "lower-case letters" in response.content.decode()


def test_an_unknown_normaliser_is_one_message(staff):
    data = {"id": "fax", "name": "Fax", "normalizer": "nope", "max_per_entity": "", "priority": 0}
    response = staff.post("/admin/stitching/stitchingcategory/add/", data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["normalizer"] == [
        "Select a valid choice. nope is not one of the available choices."
    ]


@pytest.mark.parametrize(
    "data_type, raw, zone",
    [
        ("datetime", "0001-01-01T00:00:00Z", "America/New_York"),  # before year 1 in the display time zone
        ("datetime", "9999-12-31T23:59:59Z", "Europe/Prague"),  # after year 9999
        ("float", "1e999", "UTC"),  # stored as a 1000-digit number, too large for a float
        ("int", "1e999", "UTC"),
    ],
)
def test_the_profile_shows_an_attribute_value_at_the_edge_of_the_range_as_stored(
    staff, web_source, data_type, raw, zone
):
    global_setting_set(key="display_timezone", value=zone, user=None)
    graph = GraphBuilder(web_source)
    entity = graph.entity()
    graph.event(entity, identifiers=[("cookie", "c1")], payload={"traits": {"v": raw}})
    attribute_create(id="edge_value", name="Edge value", computation="last_value", data_type=data_type, path="traits.v")
    attributes_recompute(entity_ids=[entity.pk])
    global_settings._cache.clear()

    response = staff.get(f"/admin/cdp/customerentity/{entity.pk}/change/")

    assert response.status_code == 200
    assert "Edge value" in response.content.decode()


def test_two_categories_cannot_have_one_name(staff, default_categories):
    data = {"id": "work_email", "name": " email ", "normalizer": "email", "max_per_entity": "", "priority": 0}
    response = staff.post("/admin/stitching/stitchingcategory/add/", data)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["name"] == ["The category 'email' is named 'Email' already."]
    response = staff.post("/admin/stitching/stitchingcategory/add/", {**data, "name": "Work email"})
    assert response.status_code == 302
