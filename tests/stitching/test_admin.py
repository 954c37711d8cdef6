"""Stitching admin pages: lists open, forms show the services' validation, actions ask before acting."""

import re

import pytest

from stitching.models import BlockedValue, EventIdentifier, HubReview, Identifier
from stitching.services import engine
from tests.stitching.graph_builder import GraphBuilder

pytestmark = pytest.mark.django_db


def test_stitching_admin_pages_forms_and_confirmed_actions(client, admin_user, web_source):
    client.force_login(admin_user)
    g = GraphBuilder(web_source)
    e = g.entity()
    g.event(e, identifiers=[("cookie", "k")], refused=[("email", "null", "blocked", "junk", None)])
    review = HubReview.objects.create(identifier=Identifier.objects.get(value="k"), entity_count=9)
    for url in ["stitchingcategory", "stitchingrule", "blockedvalue", "refusedlink", "hubreview", "entitychange"]:
        r = client.get(f"/admin/stitching/{url}/")
        assert r.status_code == 200, (url, r.status_code)
    for url in [
        "stitchingcategory/add/",
        "stitchingrule/add/",
        "blockedvalue/add/",
        "stitchingcategory/email/change/",
        f"hubreview/{review.pk}/change/",
    ]:
        r = client.get(f"/admin/stitching/{url}")
        assert r.status_code == 200, (url, r.status_code)
    r = client.post("/admin/stitching/blockedvalue/add/", {"category": "email", "value": " X@Y.com ", "reason": "r"})
    assert r.status_code == 302, r.content.decode()[:3000]
    assert r["Location"] == "/admin/stitching/blockedvalue/"
    messages = [str(m) for m in client.get(r["Location"]).context["messages"]]
    assert messages == ["“x@y.com” is blocked; customers it joined are re-stitched."]
    assert BlockedValue.objects.get().value == "x@y.com" and BlockedValue.objects.get().created_by == admin_user
    r = client.post("/admin/stitching/blockedvalue/add/", {"category": "phone", "value": "abc", "reason": ""})
    assert r.status_code == 200 and "not a valid Phone value" in r.content.decode()
    r = client.post(
        "/admin/stitching/stitchingrule/add/",
        {"source": web_source.pk, "event_type": "*", "category": "email", "path": "a..b", "priority": 0},
    )
    assert r.status_code == 200 and "dotted payload path" in r.content.decode()
    system = engine.system_source_get()
    r = client.post(
        "/admin/stitching/stitchingrule/add/",
        {"source": system.pk, "event_type": "*", "category": "email", "path": "traits.email", "priority": 0},
    )
    assert r.status_code == 200 and "never stitched" in r.content.decode()
    r = client.post(
        "/admin/stitching/stitchingrule/add/",
        {"source": web_source.pk, "event_type": "*", "category": "email", "path": "traits.email", "priority": 0},
    )
    assert r.status_code == 302
    r = client.post(
        "/admin/stitching/stitchingcategory/email/change/",
        {"name": "Email", "normalizer": "email", "max_per_entity": 3, "priority": 80},
    )
    assert r.status_code == 302, r.content.decode()[:2000]
    page = client.get(f"/admin/stitching/hubreview/{review.pk}/change/").content.decode()
    assert f"/hubreview/{review.pk}/approve/" in page and f"/hubreview/{review.pk}/block/" in page  # pending
    r = client.get(f"/admin/stitching/hubreview/{review.pk}/block/")
    assert r.status_code == 200 and "will be blocked" in r.content.decode()
    r = client.post(f"/admin/stitching/hubreview/{review.pk}/block/", {"confirm": "yes"}, follow=True)
    assert "Decided: blocked." in r.content.decode()
    review.refresh_from_db()
    assert review.status == "blocked"
    page = client.get(f"/admin/stitching/hubreview/{review.pk}/change/").content.decode()
    assert "cookie: k (blocked the value)" in page  # named by its identifier, not an internal id
    assert "/admin/stitching/refusedlink/?q=k" in page  # the held events
    assert 'name="_save"' not in page  # nothing to save: the decision is an action
    assert f"/hubreview/{review.pk}/approve/" not in page  # decided: no buttons left to decide with
    # A page left open meanwhile: its button says it was decided (not a 403).
    r = client.post(f"/admin/stitching/hubreview/{review.pk}/approve/", {"confirm": "yes"}, follow=True)
    assert r.status_code == 200 and "already decided" in r.content.decode()
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \w+", page)  # decided, to the second with the zone
    r = client.post(
        "/admin/stitching/blockedvalue/",
        {"action": "values_unblock", "_selected_action": [b.pk for b in BlockedValue.objects.all()]},
    )
    assert r.status_code == 200 and "Unblock" in r.content.decode()
    r = client.post(
        "/admin/stitching/blockedvalue/",
        {"action": "values_unblock", "confirm": "yes", "_selected_action": [b.pk for b in BlockedValue.objects.all()]},
    )
    assert r.status_code == 302 and not BlockedValue.objects.exists()
    from django.contrib.admin.models import DELETION, LogEntry

    assert LogEntry.objects.filter(action_flag=DELETION, user=admin_user, object_repr__contains="x@y.com").exists()
    r = client.get(f"/admin/cdp/customerentity/{e.pk}/change/")
    assert r.status_code == 200


def test_refused_links_are_found_as_the_category_stores_the_value_and_merges_read_as_words(
    client, admin_user, web_source
):
    from stitching.models import EntityChange

    client.force_login(admin_user)
    g = GraphBuilder(web_source)
    e = g.entity()
    event = g.event(e, identifiers=[("cookie", "k")], refused=[("email", "test@test.com", "blocked", "shared", None)])
    found = client.get("/admin/stitching/refusedlink/", {"q": " Test@TEST.com "}).content.decode()
    assert f"/admin/cdp/customerevent/{event.pk}/change/" in found
    # Each refused link opens (its page titled as the list is).
    (link,) = EventIdentifier.objects.filter(status="blocked")
    detail = client.get(f"/admin/stitching/refusedlink/{link.pk}/change/")
    assert detail.status_code == 200 and "Refused links" in detail.content.decode()
    others = [f"{n:032x}" for n in range(1, 8)]
    change = EntityChange.objects.create(
        kind="merge", customer_entity_id=e.pk, other_entity_ids=others, event=event,
        identifier=Identifier.objects.get(value="k"), detail={"identifier": "cookie"},
    )  # fmt: skip
    listed = client.get("/admin/stitching/entitychange/").content.decode()
    assert "and 4 more" in listed and others[3] not in listed
    assert f"/admin/cdp/customerevent/{event.pk}/change/" in listed
    detail = client.get(f"/admin/stitching/entitychange/{change.pk}/change/").content.decode()
    assert "Cookie" in detail and ": k" in detail


def test_pending_hub_reviews_come_first(client, admin_user, web_source):
    from datetime import timedelta

    from django.utils import timezone

    client.force_login(admin_user)
    g = GraphBuilder(web_source)
    e = g.entity()
    g.event(e, identifiers=[("cookie", "old-pending"), ("user_id", "new-blocked")])
    pending = HubReview.objects.create(identifier=Identifier.objects.get(value="old-pending"), entity_count=30)
    HubReview.objects.filter(pk=pending.pk).update(created=timezone.now() - timedelta(days=3))
    HubReview.objects.create(identifier=Identifier.objects.get(value="new-blocked"), entity_count=40, status="blocked")
    page = client.get("/admin/stitching/hubreview/").content.decode()
    assert page.index("old-pending") < page.index("new-blocked")


def test_categories_are_deleted_by_an_action_that_keeps_one_in_use(client, admin_user, web_source, default_categories):
    from stitching.models import StitchingCategory
    from stitching.services import config

    client.force_login(admin_user)
    StitchingCategory.objects.create(id="fax", name="Fax", normalizer="trim")
    config.rule_create(source=web_source, category=StitchingCategory.objects.get(pk="email"), path="traits.email")
    selected = {"action": "categories_delete", "_selected_action": ["fax", "email"]}
    r = client.post("/admin/stitching/stitchingcategory/", selected)
    assert r.status_code == 200 and "Delete categories" in r.content.decode()  # asks first
    assert StitchingCategory.objects.filter(pk="fax").exists()

    r = client.post("/admin/stitching/stitchingcategory/", {**selected, "confirm": "yes"}, follow=True)
    page = r.content.decode()
    assert "1 category deleted" in page and "used by the stitching rules web/*: traits.email → email" in page
    assert not StitchingCategory.objects.filter(pk="fax").exists()
    assert StitchingCategory.objects.filter(pk="email").exists()
