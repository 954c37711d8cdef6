"""The Business Explorer's segment pages: list, add / change through services, notes inline, ACL, actions."""

import json

import pytest

from segments.models import Segment, SegmentNote
from segments.services import segment_grant_set
from tests.segments.conftest import EXCLUSION_TREE

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_cast(cast):
    for user in cast.values():
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    return cast


def login(client, user):
    client.force_login(user)
    return client


def _form(**overrides):
    data = {
        "name": "Adults",
        "description": "",
        "conditions": json.dumps({"operator": "and", "children": [{"attribute": "age", "operator": "gte",
                                                                    "value": 18}]}),
        "notes-TOTAL_FORMS": "0", "notes-INITIAL_FORMS": "0", "notes-MIN_NUM_FORMS": "0", "notes-MAX_NUM_FORMS": "1000",
        "grants-TOTAL_FORMS": "0", "grants-INITIAL_FORMS": "0", "grants-MIN_NUM_FORMS": "0",
        "grants-MAX_NUM_FORMS": "1000",
    }  # fmt: skip
    data.update(overrides)
    return data


def test_a_marketer_adds_a_segment_and_a_note(client, staff_cast, customers):
    login(client, staff_cast["owner"])
    response = client.post("/admin/segments/segment/add/", _form(**{
        "notes-TOTAL_FORMS": "1", "notes-0-text": "first draft",
    }))  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:3000]
    segment = Segment.objects.get(name="Adults")
    assert segment.owner == staff_cast["owner"]
    assert SegmentNote.objects.get(segment=segment).author == staff_cast["owner"]
    page = client.get(f"/admin/segments/segment/{segment.pk}/change/")
    assert page.status_code == 200
    assert "Customers now" in page.content.decode()


def test_the_segment_form_uses_the_admin_s_styled_widgets(client, staff_cast, exclusion_segment):
    # Django's bare widgets render without a border: the description looked like plain text and the tags were an
    # unstyled multiple-select list (ctrl-click to pick several); tags are checkboxes, as a role's features are.
    login(client, staff_cast["owner"])
    form = client.get(f"/admin/segments/segment/{exclusion_segment.pk}/change/").context["adminform"].form
    assert "border" in str(form["description"])
    assert 'type="checkbox" name="tags"' in str(form["tags"])


def test_a_bad_tree_says_what_to_fix_under_the_field(client, staff_cast, example_attributes):
    login(client, staff_cast["owner"])
    bad = {"operator": "and", "children": [{"attribute": "age", "operator": "between", "value": [1]}]}
    response = client.post("/admin/segments/segment/add/", _form(conditions=json.dumps(bad)))
    assert response.status_code == 200
    # The builder outlines the node (its path goes to the builder: test_a_bad_saved_tree_is_shown_on_its_node);
    # under the field the marketer reads what to do, not the validator's "conditions.children[0].value: ...".
    errors = response.context["adminform"].form.errors["conditions"]
    assert errors == ["Fix the condition outlined in red: 'between' needs two values [low, high]"]
    assert not Segment.objects.exists()


def test_a_too_long_description_is_a_form_error(client, staff_cast, example_attributes):
    login(client, staff_cast["owner"])
    response = client.post("/admin/segments/segment/add/", _form(description="x" * 5001))
    assert response.status_code == 200
    assert "Ensure this value has at most 5000 characters" in response.content.decode()
    assert not Segment.objects.exists()


def test_list_shows_only_visible_segments_and_the_trash_filter(client, staff_cast, exclusion_segment):
    login(client, staff_cast["outsider"])
    assert "Exclusion" not in client.get("/admin/segments/segment/").content.decode()
    login(client, staff_cast["owner"])
    page = client.get("/admin/segments/segment/").content.decode()
    assert "Exclusion" in page and "campaign" in page
    response = client.post(
        "/admin/segments/segment/", {"action": "trash_segments", "_selected_action": [exclusion_segment.pk]}
    )
    assert response.status_code == 302
    exclusion_segment.refresh_from_db()
    assert exclusion_segment.trashed_at is not None
    assert "Exclusion" not in client.get("/admin/segments/segment/").content.decode()
    assert "Exclusion" in client.get("/admin/segments/segment/?trash=trashed").content.decode()
    client.post("/admin/segments/segment/?trash=trashed",
                {"action": "restore_segments", "_selected_action": [exclusion_segment.pk]})  # fmt: skip
    exclusion_segment.refresh_from_db()
    assert exclusion_segment.trashed_at is None


def test_a_viewer_sees_but_cannot_change(client, staff_cast, exclusion_segment):
    segment_grant_set(segment=exclusion_segment, user=staff_cast["viewer"], permission="view")
    login(client, staff_cast["viewer"])
    assert client.get(f"/admin/segments/segment/{exclusion_segment.pk}/change/").status_code == 200
    response = client.post(
        f"/admin/segments/segment/{exclusion_segment.pk}/change/",
        _form(name="Hijacked", conditions=json.dumps(EXCLUSION_TREE)),
    )
    assert response.status_code == 403
    exclusion_segment.refresh_from_db()
    assert exclusion_segment.name == "Exclusion"


def test_the_list_actions_need_segments_edit(client, staff_cast, exclusion_segment, viewer_role):
    """A role with segments_view only was offered Duplicate (and Trash / Restore) in the list and duplicating made
    it a segment it owned, which it could then trash."""
    from cdp.services.auth import user_create

    reader = user_create(username="reader", password="Reader-password-1!", role=viewer_role)
    segment_grant_set(segment=exclusion_segment, user=reader, permission="view")
    login(client, reader)
    page = client.get("/admin/segments/segment/").content.decode()
    assert "Exclusion" in page and "duplicate_segments" not in page and "trash_segments" not in page
    for action in ("duplicate_segments", "trash_segments"):
        client.post("/admin/segments/segment/", {"action": action, "_selected_action": [exclusion_segment.pk]})
    assert list(Segment.objects.values_list("name", "trashed_at")) == [("Exclusion", None)]
    login(client, staff_cast["owner"])
    assert "duplicate_segments" in client.get("/admin/segments/segment/").content.decode()
    selected = {"_selected_action": [exclusion_segment.pk]}
    client.post("/admin/segments/segment/", {"action": "duplicate_segments", **selected})
    assert Segment.objects.filter(name="Copy of Exclusion", owner=staff_cast["owner"]).exists()


def test_tag_pages(client, staff_cast, exclusion_segment):
    login(client, staff_cast["owner"])
    assert "campaign" in client.get("/admin/segments/tag/").content.decode()
    response = client.post("/admin/segments/tag/add/", {"name": "VIP", "color": "#00ff00"})
    assert response.status_code == 302


def test_the_owner_grants_access_inline_and_bad_grants_are_form_errors(client, staff_cast, exclusion_segment):
    login(client, staff_cast["owner"])
    url = f"/admin/segments/segment/{exclusion_segment.pk}/change/"
    base = _form(name="Exclusion", conditions=json.dumps(EXCLUSION_TREE), tags=[exclusion_segment.tags.get().pk])
    bad = {**base, "grants-TOTAL_FORMS": "1", "grants-0-permission": "edit"}
    response = client.post(url, bad)
    assert response.status_code == 200 and "exactly one of a user or a role" in response.content.decode()
    good = {**base, "grants-TOTAL_FORMS": "1", "grants-0-permission": "edit", "grants-0-user": staff_cast["editor"].pk}
    assert client.post(url, good).status_code == 302
    assert exclusion_segment.grants.get().user == staff_cast["editor"]
