"""Segments REST API: CRUD with tree validation, counts, members, duplicate, trash, notes, tags, ACL, insights."""

import pytest
import yaml
from django.db import connection
from django.test.utils import CaptureQueriesContext

from segments.models import Segment, SegmentGrant, SegmentSizeSnapshot
from segments.services import segment_grant_set
from tests.conftest import client_for
from tests.segments.conftest import EXCLUSION_TREE

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner_client(cast):
    return client_for(cast["owner"])


def test_create_validates_the_tree_and_points_at_the_bad_node(owner_client, example_attributes):
    tree = {"operator": "and", "children": [
        {"attribute": "consent", "operator": "is_true"},
        {"attribute": "age", "operator": "gte", "value": 18},
        {"attribute": "age", "operator": "between", "value": [18]},
    ]}  # fmt: skip
    response = owner_client.post("/api/segments", {"name": "Adults", "conditions": tree}, format="json")
    assert response.status_code == 400
    assert response.json()["message"] == "conditions.children[2].value: 'between' needs two values [low, high]"
    assert not Segment.objects.exists()


def test_create_read_update_and_count(owner_client, customers, cast):
    response = owner_client.post(
        "/api/segments",
        {
            "name": " Exclusion ",
            "description": "seed case",
            "conditions": EXCLUSION_TREE,
            "tags": ["Q3", "q3", "email"],
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "Exclusion" and body["owner"] == cast["owner"].pk and body["can_edit"] is True
    assert sorted(body["tags"]) == ["Q3", "email"]
    segment_id = body["id"]
    count = owner_client.get(f"/api/segments/{segment_id}/customers_count").json()
    assert count == {"segment_id": segment_id, "customers_count": 2}
    assert SegmentSizeSnapshot.objects.get(segment_id=segment_id).size == 2

    response = owner_client.patch(
        f"/api/segments/{segment_id}", {"conditions": {"operator": "and", "children": EXCLUSION_TREE["children"][:2]}},
        format="json",
    )  # fmt: skip
    assert response.status_code == 200
    assert owner_client.get(f"/api/segments/{segment_id}/customers_count").json()["customers_count"] == 3
    listed = owner_client.get("/api/segments?tag=email").json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == segment_id
    assert owner_client.get("/api/segments?tag=nope").json()["count"] == 0
    full = owner_client.get(f"/api/segments/{segment_id}?load_full_structure=1").json()
    assert full["owner"]["username"] == "owner"


def test_member_list_is_paginated(owner_client, exclusion_segment, customers):
    page = owner_client.get(f"/api/segments/{exclusion_segment.pk}/customers?limit=1").json()
    assert page["count"] == 2 and len(page["results"]) == 1 and page["next"]
    ids = {page["results"][0]["id"]}
    ids.add(
        owner_client.get(f"/api/segments/{exclusion_segment.pk}/customers?limit=1&offset=1").json()["results"][0]["id"]
    )
    assert ids == {customers["alice"].pk, customers["carol"].pk}
    assert owner_client.get(f"/api/segments/{exclusion_segment.pk}/customers?limit=x").status_code == 400


def test_duplicate_trash_restore_and_delete(owner_client, exclusion_segment, cast):
    copy = owner_client.post(f"/api/segments/{exclusion_segment.pk}/duplicate", {}, format="json").json()
    assert copy["name"] == "Copy of Exclusion" and copy["tags"] == ["campaign"]
    assert copy["conditions"] == exclusion_segment.conditions

    assert owner_client.delete(f"/api/segments/{exclusion_segment.pk}").status_code == 204
    assert owner_client.get(f"/api/segments/{exclusion_segment.pk}").status_code == 404
    trash = owner_client.get("/api/trash/segments").json()
    assert [row["id"] for row in trash["results"]] == [exclusion_segment.pk]
    restored = owner_client.post(f"/api/trash/segments/{exclusion_segment.pk}/restore")
    assert restored.status_code == 200 and restored.json()["trashed_at"] is None
    assert owner_client.get(f"/api/segments/{exclusion_segment.pk}").status_code == 200
    # Only from the trash can it be deleted for good.
    assert owner_client.delete(f"/api/trash/segments/{exclusion_segment.pk}").status_code == 404
    owner_client.delete(f"/api/segments/{exclusion_segment.pk}")
    assert owner_client.delete(f"/api/trash/segments/{exclusion_segment.pk}").status_code == 204
    assert not Segment.objects.filter(pk=exclusion_segment.pk).exists()


def test_notes(owner_client, exclusion_segment, cast):
    url = f"/api/segments/{exclusion_segment.pk}/notes"
    assert owner_client.post(url, {"text": "  "}, format="json").status_code == 400
    note = owner_client.post(url, {"text": "For the autumn campaign"}, format="json").json()
    assert note["author"]["username"] == "owner"
    assert owner_client.patch(f"{url}/{note['id']}", {"text": "Autumn"}, format="json").json()["text"] == "Autumn"
    segment_grant_set(segment=exclusion_segment, user=cast["viewer"], permission="view")
    viewer = client_for(cast["viewer"])
    assert viewer.get(url).json()["count"] == 1
    assert viewer.post(url, {"text": "me too"}, format="json").status_code == 403
    assert viewer.delete(f"{url}/{note['id']}").status_code == 403
    assert client_for(cast["outsider"]).get(url).status_code == 404
    assert owner_client.delete(f"{url}/{note['id']}").status_code == 204


def test_tags_api(owner_client, exclusion_segment, viewer_role):
    tags = owner_client.get("/api/tags").json()["results"]
    assert [(t["name"], t["segments_count"]) for t in tags] == [("campaign", 1)]
    created = owner_client.post("/api/tags", {"name": "VIP", "color": "#ff0000"}, format="json")
    assert created.status_code == 201
    assert owner_client.post("/api/tags", {"name": "vip"}, format="json").json()["message"].startswith("name: A tag")
    assert owner_client.post("/api/tags", {"name": "x", "color": "red"}, format="json").status_code == 400
    tag_id = created.json()["id"]
    assert owner_client.patch(f"/api/tags/{tag_id}", {"name": "VIPs"}, format="json").json()["name"] == "VIPs"
    assert owner_client.delete(f"/api/tags/{tag_id}").status_code == 204


def test_tag_names_are_unique_ignoring_case_in_the_database_too(owner_client):
    """The services matched tags ignoring case, but two requests at once could make "VIP" and "vip": a unique
    index on the lower-case name makes that impossible, and the services take the other request's tag."""
    from django.db import IntegrityError, transaction

    from segments.models import Tag
    from segments.services import tags_resolve

    vip = Tag.objects.create(name="VIP")
    with pytest.raises(IntegrityError), transaction.atomic():
        Tag.objects.create(name="vip")
    assert tags_resolve(names=["vIp", "New"]) == [vip, Tag.objects.get(name="New")]
    created = owner_client.post("/api/segments", {"name": "S", "tags": ["vip"]}, format="json")
    assert created.status_code == 201 and created.json()["tags"] == ["VIP"]


def test_tag_counts_only_the_segments_you_may_see(exclusion_segment, cast):
    """An outsider's tag list said 'campaign: 1 segment' about a segment they may not see."""
    counts = client_for(cast["outsider"]).get("/api/tags").json()["results"]
    assert [(t["name"], t["segments_count"]) for t in counts] == [("campaign", 0)]
    segment_grant_set(segment=exclusion_segment, role=cast["outsider"].role, permission="view")
    assert client_for(cast["outsider"]).get("/api/tags").json()["results"][0]["segments_count"] == 1
    assert client_for(cast["admin"]).get("/api/tags").json()["results"][0]["segments_count"] == 1


def test_acl_matrix(exclusion_segment, cast):
    segment_grant_set(segment=exclusion_segment, user=cast["viewer"], permission=SegmentGrant.Permission.VIEW)
    segment_grant_set(segment=exclusion_segment, user=cast["editor"], permission=SegmentGrant.Permission.EDIT)
    segment_grant_set(segment=exclusion_segment, role=cast["role_member"].role, permission="view")
    url = f"/api/segments/{exclusion_segment.pk}"
    expected = {
        # name: (list/read/count, edit status, acl change status)
        "owner": (200, 200, 201),
        "viewer": (200, 403, 403),
        "editor": (200, 200, 403),
        "role_member": (200, 403, 403),
        "outsider": (404, 404, 404),
        "admin": (200, 200, 201),
    }
    new_user = cast["outsider"].pk
    for name, (read, edit, acl) in expected.items():
        client = client_for(cast[name])
        listed = [row["id"] for row in client.get("/api/segments").json()["results"]]
        assert listed == ([exclusion_segment.pk] if read == 200 else []), name
        assert client.get(url).status_code == read, name
        assert client.get(f"{url}/customers_count").status_code == read, name
        assert client.get(f"{url}/insights").status_code == read, name
        assert client.get(f"{url}/acl").status_code == read, name
        assert client.patch(url, {"description": name}, format="json").status_code == edit, name
        grant = client.post(f"{url}/acl", {"user": new_user, "permission": "view"}, format="json")
        assert grant.status_code == acl, (name, grant.json())
        if acl == 201:
            SegmentGrant.objects.filter(user_id=new_user).delete()
    # Probing ids: a segment that does not exist and one you may not see look the same.
    outsider = client_for(cast["outsider"])
    assert outsider.get("/api/segments/999999").json() == outsider.get(url).json()


def test_role_features_gate_the_endpoints(exclusion_segment, cast, viewer_role, outsider_client):
    from cdp.services.auth import user_create

    reader = user_create(username="reader", password="Reader-password-1!", role=viewer_role)
    segment_grant_set(segment=exclusion_segment, user=reader, permission="edit")
    client = client_for(reader)
    assert client.get(f"/api/segments/{exclusion_segment.pk}").status_code == 200
    # An edit grant does not replace the role's segments_edit feature.
    response = client.patch(f"/api/segments/{exclusion_segment.pk}", {"name": "x"}, format="json")
    assert response.status_code == 403 and "segments_edit" in response.json()["message"]
    assert client.post("/api/segments", {"name": "x"}, format="json").status_code == 403
    assert outsider_client.get("/api/segments").status_code == 403


def test_acl_grant_to_a_role_and_replacing_it(exclusion_segment, cast, owner_client):
    url = f"/api/segments/{exclusion_segment.pk}/acl"
    role = cast["role_member"].role
    first = owner_client.post(url, {"role": role.pk, "permission": "view"}, format="json").json()
    second = owner_client.post(url, {"role": role.pk, "permission": "edit"}, format="json").json()
    assert first["id"] == second["id"] and second["permission"] == "edit"
    member = client_for(cast["role_member"])
    assert member.patch(f"/api/segments/{exclusion_segment.pk}", {"name": "Renamed"}, format="json").status_code == 200
    assert owner_client.post(url, {"user": cast["viewer"].pk, "role": role.pk}, format="json").status_code == 400
    assert owner_client.post(url, {"permission": "own"}, format="json").status_code == 400
    # A fractional id is not the id it truncates to.
    fractional = owner_client.post(url, {"role": role.pk + 0.5, "permission": "view"}, format="json")
    assert fractional.status_code == 400 and "is not an id" in fractional.json()["message"]
    assert owner_client.delete(f"{url}/{first['id']}").status_code == 204
    assert member.get(f"/api/segments/{exclusion_segment.pk}").status_code == 404


def test_insights_and_value_counts(owner_client, exclusion_segment):
    url = f"/api/segments/{exclusion_segment.pk}"
    body = owner_client.get(f"{url}/insights?attributes=age,gender").json()
    assert body["customers_count"] == 2
    assert [row["day"] for row in body["size_history"]] and body["size_history"][-1]["size"] == 2
    ages = body["top_values"][0]
    assert ages["attribute"] == "age" and sorted(v["value"] for v in ages["values"]) == [18, 30]
    gender = body["top_values"][1]
    assert gender["entities_with_value"] == 1 and gender["values"] == [{"value": "female", "count": 1}]
    assert body["email_consent"] == {"attribute": "email_consent", "customers": 2, "with_consent": 1, "share": 0.5}
    assert owner_client.get(f"{url}/insights?attributes=nope").status_code == 400
    counts = owner_client.get(f"{url}/attribute_value_counts?attribute=age&limit=1").json()
    assert counts["customers"] == 2 and len(counts["values"]) == 1
    assert owner_client.get(f"{url}/attribute_value_counts").status_code == 400
    assert owner_client.post(f"{url}/size_snapshot").status_code == 201


def test_members_values_need_customers_view(exclusion_segment, cast):
    """A role with the segments features but not customers_view saw the members' emails through the top values
    (the attribute value counts API and the member list need customers_view)."""
    segment_grant_set(segment=exclusion_segment, role=cast["role_member"].role, permission="edit")
    member = client_for(cast["role_member"])  # segments_view + segments_edit, no customers_view
    url = f"/api/segments/{exclusion_segment.pk}"
    counts = member.get(f"{url}/attribute_value_counts?attribute=ps_email_address")
    assert counts.status_code == 403 and "customers_view" in counts.json()["message"]
    insights = member.get(f"{url}/insights?attributes=ps_email_address")
    assert insights.status_code == 403 and "customers_view" in insights.json()["message"]
    assert "alice@example.com" not in insights.content.decode()
    # The aggregates stay: size, history, consent share.
    body = member.get(f"{url}/insights").json()
    assert body["customers_count"] == 2 and body["top_values"] == [] and body["email_consent"]["with_consent"] == 1


def test_compare_two_segments(owner_client, exclusion_segment, cast):
    """An analyst compares audiences: in each, in both, in only one (counts only; both segments under the ACL)."""
    from segments.services import segment_create

    adults = segment_create(
        owner=cast["owner"], name="Adults", conditions={"attribute": "age", "operator": "gte", "value": 18}
    )  # alice, bob, carol, dave; the exclusion segment: alice, carol
    response = owner_client.get(f"/api/segments/{exclusion_segment.pk}/overlap", {"with": adults.pk})
    assert response.status_code == 200
    assert response.json() == {
        "segment": exclusion_segment.pk, "other": adults.pk, "segment_count": 2, "other_count": 4, "both": 2,
        "only_segment": 0, "only_other": 2,
    }  # fmt: skip
    for bad in ("", "abc", "1.5", "9" * 30):
        response = owner_client.get(f"/api/segments/{exclusion_segment.pk}/overlap", {"with": bad})
        assert response.status_code == 400 and response.json()["message"].startswith("with:"), bad
    # The other segment must be visible too: not visible and not existing look the same.
    private = segment_create(owner=cast["outsider"], name="Private")
    hidden = owner_client.get(f"/api/segments/{exclusion_segment.pk}/overlap", {"with": private.pk})
    missing = owner_client.get(f"/api/segments/{exclusion_segment.pk}/overlap", {"with": private.pk + 1000})
    assert hidden.status_code == missing.status_code == 404 and hidden.json() == missing.json()


def test_bad_fields_are_refused_rather_than_ignored(owner_client, exclusion_segment, cast):
    """A description without bounds, an owner change answered 200 with the owner kept, `days=0` read as 90: each a
    400 naming the field now."""
    url = f"/api/segments/{exclusion_segment.pk}"
    long = owner_client.patch(url, {"description": "x" * 5001}, format="json")
    assert long.status_code == 400 and long.json()["message"].startswith("description: At most 5,000 characters")
    assert owner_client.patch(url, {"description": "x" * 5000}, format="json").status_code == 200
    created = owner_client.post("/api/segments", {"name": "Long", "description": "y" * 6000}, format="json")
    assert created.status_code == 400 and not Segment.objects.filter(name="Long").exists()

    moved = owner_client.patch(url, {"owner": cast["outsider"].pk}, format="json")
    assert moved.status_code == 400 and moved.json()["message"].startswith("owner: The owner cannot be changed")
    exclusion_segment.refresh_from_db()
    assert exclusion_segment.owner_id == cast["owner"].pk
    # The segment as fetched, sent back: its own owner is no change.
    fetched = owner_client.get(url).json()
    again = owner_client.put(url, {k: fetched[k] for k in ("name", "description", "owner", "conditions", "tags")},
                             format="json")  # fmt: skip
    assert again.status_code == 200, again.json()

    days = owner_client.get(f"{url}/insights?days=0")
    assert days.status_code == 400 and days.json()["message"].startswith("days: must be at least 1")
    assert owner_client.get(f"{url}/insights?days=1").status_code == 200


def test_insights_omit_email_consent_without_the_attribute(owner_client, exclusion_segment):
    from cdp.models import Attribute

    Attribute.objects.filter(pk="email_consent").delete()
    assert "email_consent" not in owner_client.get(f"/api/segments/{exclusion_segment.pk}/insights").json()


def test_a_segment_whose_attribute_was_deleted_answers_400(owner_client, exclusion_segment):
    from cdp.models import Attribute

    Attribute.objects.filter(pk="age").delete()
    response = owner_client.get(f"/api/segments/{exclusion_segment.pk}/customers_count")
    assert response.status_code == 400
    assert "conditions.children[1].attribute: unknown attribute 'age'" in response.json()["message"]


def test_openapi_lists_the_segment_endpoints(client):
    paths = {p.rstrip("/?") for p in yaml.safe_load(client.get("/api/schema/").content)["paths"]}
    for expected in [
        "/api/segments", "/api/segments/{id}", "/api/segments/{id}/customers_count", "/api/segments/{id}/customers",
        "/api/segments/{id}/duplicate", "/api/segments/{id}/insights", "/api/segments/{id}/attribute_value_counts",
        "/api/segments/{id}/size_snapshot", "/api/segments/{segment_pk}/notes", "/api/segments/{segment_pk}/acl",
        "/api/trash/segments", "/api/trash/segments/{id}/restore", "/api/tags", "/api/tags/{id}",
        "/api/segments/operators", "/api/segments/preview_count",
    ]:  # fmt: skip
        assert expected in paths, expected


def test_the_email_consent_attribute_is_configurable(owner_client, exclusion_segment, settings):
    settings.SEGMENTS_EMAIL_CONSENT_ATTRIBUTE = "consent"
    body = owner_client.get(f"/api/segments/{exclusion_segment.pk}/insights").json()
    assert body["email_consent"] == {"attribute": "consent", "customers": 2, "with_consent": 2, "share": 1.0}


def test_builder_support_operators_and_live_count(customers, viewer_role, outsider_client):
    from cdp.services.auth import user_create

    reader = client_for(user_create(username="reader", password="Reader-password-1!", role=viewer_role))
    operators = reader.get("/api/segments/operators").json()
    assert {"operator": "between", "label": "is between", "value": "range"} in operators["int"]
    assert [o["operator"] for o in operators["bool"]] == ["is_true", "is_false", "is_set", "is_not_set"]
    response = reader.post("/api/segments/preview_count", {"conditions": EXCLUSION_TREE}, format="json")
    assert response.status_code == 200 and response.json() == {"customers_count": 2}
    bad = {"operator": "or", "children": [{"attribute": "age", "operator": "gte"}]}
    response = reader.post("/api/segments/preview_count", {"conditions": bad}, format="json")
    assert response.status_code == 400
    assert response.json()["message"] == "conditions.children[0].value: 'gte' needs a value"
    assert (
        outsider_client.post("/api/segments/preview_count", {"conditions": EXCLUSION_TREE}, format="json").status_code
        == 403
    )


def test_listing_segments_costs_the_same_queries_for_one_or_many(cast, customers):
    from segments.services import segment_create

    viewer = client_for(cast["viewer"])  # sees them through grants, so may-edit is not just "owner"

    def grant_new(n: int) -> None:
        for i in range(n):
            segment = segment_create(owner=cast["owner"], name=f"Granted {n}-{i}", conditions=EXCLUSION_TREE)
            SegmentGrant.objects.create(segment=segment, user=cast["viewer"], permission="edit" if i % 2 else "view")

    grant_new(1)
    with CaptureQueriesContext(connection) as one:
        assert viewer.get("/api/segments").status_code == 200
    grant_new(6)
    with CaptureQueriesContext(connection) as many:
        body = viewer.get("/api/segments").json()
    assert len(many.captured_queries) <= len(one.captured_queries)  # (the first request also stamps the token)
    can_edit = {row["name"]: row["can_edit"] for row in body["results"]}
    assert can_edit["Granted 6-1"] is True and can_edit["Granted 6-0"] is False
