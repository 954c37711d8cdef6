"""The Business Explorer (Django admin): pages render, secrets are shown once, writes go through services,
the events list never counts the table, and role features decide who sees what."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from cdp.features import Feature
from cdp.models import ApiToken, CustomerEntity, CustomerEvent, DataSource, GlobalSettingChange, Role, User
from cdp.services.auth import role_create, token_authenticate, token_create, user_create
from cdp.services.data_sources import data_source_by_write_key, data_source_create
from cdp.services.events import event_record_build, events_ingest
from cdp.services.global_settings import global_setting_get, global_setting_set
from stitching.models import EntityChange
from stitching.services import engine
from stitching.services.defaults import segment_default_rules_ensure
from tests.entities import events_attach
from tests.stitching.helpers import ingest as stitch_ingest

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def ingest(source, type_, when, payload=None, message_id=None) -> CustomerEvent:
    record = event_record_build(
        source_id=source.pk, type=type_, event_time=when, payload=payload or {}, message_id=message_id
    )
    (outcome,) = events_ingest([record])
    return CustomerEvent.objects.get(pk=outcome.id)


@pytest.fixture
def staff_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def app_source(db):
    source, _ = data_source_create(slug="app", name="Mobile app", type="mobile")
    return source


@pytest.fixture
def entity(db):
    return CustomerEntity.objects.create()


@pytest.fixture
def events(web_source, app_source, entity):
    """Three events: two web (one stitched), one app."""
    purchase = ingest(web_source, "purchase", T0, {"order": {"id": "o-1", "total": 42}}, message_id="msg-purchase")
    events_attach([purchase], entity)
    page_view = ingest(web_source, "page_view", T0 - timedelta(days=3), {"url": "/home"}, message_id="msg-page")
    app_open = ingest(app_source, "app_open", T0 - timedelta(hours=1), {"device": "ios"})
    return {"purchase": purchase, "page_view": page_view, "app_open": app_open}


def events_pks(events: dict) -> list[int]:
    return [e.pk for e in events.values()]


def changelist(model: str) -> str:
    return reverse(f"admin:cdp_{model}_changelist")


def change(model: str, pk) -> str:
    return reverse(f"admin:cdp_{model}_change", args=[pk])


def add(model: str) -> str:
    return reverse(f"admin:cdp_{model}_add")


# --- every page renders ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_every_admin_page_renders_for_an_administrator(staff_client, admin_user, events, entity, web_source):
    role = role_create(name="Marketer", features=[Feature.CUSTOMERS_VIEW])
    token, _ = token_create(user=admin_user, name="crm")
    global_setting_set(key="public_rate_limit_per_minute", value=30, user=admin_user)
    urls = [
        reverse("admin:index"),
        *(
            changelist(m)
            for m in [
                "datasource",
                "customerevent",
                "customerentity",
                "user",
                "role",
                "apitoken",
                "globalsetting",
                "globalsettingchange",
            ]
        ),
        *(add(m) for m in ["datasource", "user", "role", "apitoken"]),
        change("datasource", web_source.pk),
        change("customerevent", events["purchase"].pk),
        change("customerentity", entity.pk),
        change("user", admin_user.pk),
        change("role", role.pk),
        change("apitoken", token.pk),
        change("globalsettingchange", GlobalSettingChange.objects.get().pk),
        reverse("admin:cdp_globalsetting_edit", args=["display_timezone"]),
        reverse("admin:cdp_datasource_rotate_write_key", args=[web_source.pk]),
    ]
    for url in urls:
        response = staff_client.get(url)
        assert response.status_code == 200, (url, response.status_code)


# --- data sources and write keys ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_creating_a_data_source_shows_its_write_key_once(staff_client):
    response = staff_client.post(add("datasource"), {"name": "CRM", "slug": "crm", "type": "crm", "description": ""})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    source = DataSource.objects.get(slug="crm")
    key = response.context["secret"]
    assert key.startswith("wk_") and key in response.content.decode()
    assert data_source_by_write_key(key) == source
    # Afterwards only the prefix is shown, never the key or its hash.
    for url in [change("datasource", source.pk), changelist("datasource")]:
        page = staff_client.get(url).content.decode()
        assert f"{source.write_key_prefix}…" in page
        assert key not in page and source.write_key_hash not in page


@pytest.mark.django_db
def test_data_source_form_rejects_a_taken_identifier(staff_client, web_source):
    response = staff_client.post(add("datasource"), {"name": "Web 2", "slug": "web", "type": "web"})

    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert DataSource.objects.filter(slug="web").count() == 1


@pytest.mark.django_db
def test_data_source_form_refuses_the_system_sources_identifier(staff_client):
    response = staff_client.post(add("datasource"), {"name": "Our CDP", "slug": "cdp", "type": "other"})

    assert response.status_code == 200
    assert "reserved for the system source" in response.content.decode()
    assert not DataSource.objects.filter(slug="cdp").exists()


@pytest.mark.django_db
def test_the_system_source_offers_no_write_key_rotation(staff_client, web_source):
    from stitching.services.engine import system_source_get

    system = system_source_get()
    assert "rotate-write-key" not in staff_client.get(change("datasource", system.pk)).content.decode()
    assert "rotate-write-key" in staff_client.get(change("datasource", web_source.pk)).content.decode()


@pytest.mark.django_db
def test_editing_a_data_source_keeps_its_write_key(staff_client, web_source):
    response = staff_client.post(
        change("datasource", web_source.pk), {"name": "Shop website", "slug": "web", "type": "web", "description": ""}
    )

    assert response.status_code == 302
    web_source.refresh_from_db()
    assert web_source.name == "Shop website"
    assert data_source_by_write_key(web_source.plain_write_key) == web_source


@pytest.mark.django_db
def test_rotating_a_write_key_asks_first_then_shows_the_new_key_once(staff_client, web_source):
    url = reverse("admin:cdp_datasource_rotate_write_key", args=[web_source.pk])
    old_key = web_source.plain_write_key

    confirmation = staff_client.get(url)
    assert "stops working" in confirmation.content.decode()
    assert data_source_by_write_key(old_key) == web_source  # nothing changed yet

    response = staff_client.post(url, {"confirm": "yes"})

    assert response.status_code == 200
    new_key = response.context["secret"]
    assert new_key != old_key and new_key in response.content.decode()
    assert data_source_by_write_key(old_key) is None
    assert data_source_by_write_key(new_key) == web_source


# --- customer events ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_events_list_shows_events_newest_first_with_customer_links(staff_client, events, entity):
    response = staff_client.get(changelist("customerevent"))

    assert response.status_code == 200
    assert [e.pk for e in response.context["cl"].result_list] == [
        events["purchase"].pk,
        events["app_open"].pk,
        events["page_view"].pk,
    ]
    assert change("customerentity", entity.pk) in response.content.decode()


@pytest.mark.django_db
def test_events_list_never_counts_the_table(staff_client, events):
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(changelist("customerevent") + "?type=purchase")

    assert response.status_code == 200
    sql = [q["sql"].upper() for q in queries.captured_queries]
    assert not [s for s in sql if "COUNT(" in s and "CUSTOMER_EVENTS" in s], sql
    # Bounded queries too: no query per row (sources are joined, entity links need no query).
    for n in range(30):
        ingest(events["purchase"].source, "purchase", T0 - timedelta(minutes=n + 1), {"n": n})
    with CaptureQueriesContext(connection) as more_queries:
        staff_client.get(changelist("customerevent"))
    assert len(more_queries.captured_queries) <= len(queries.captured_queries) + 1


@pytest.mark.django_db
def test_events_list_filters_by_source_type_time_and_stitching(staff_client, events, app_source):
    def shown(query: str) -> set[int]:
        response = staff_client.get(changelist("customerevent") + query)
        assert response.status_code == 200
        return {e.pk for e in response.context["cl"].result_list}

    assert shown(f"?source__id__exact={app_source.pk}") == {events["app_open"].pk}
    assert shown("?type=page_view") == {events["page_view"].pk}
    assert shown("?type=nonexistent") == set()
    time_range = (
        "?event_time_from_0=2024-05-01&event_time_from_1=00:00&event_time_to_0=2024-05-01&event_time_to_1=11:30"
    )
    assert shown(time_range) == {events["app_open"].pk}
    assert shown("?event_time_from_0=2024-04-28&event_time_to_0=2024-04-28") == {events["page_view"].pk}  # whole day
    assert shown("?event_time_from_0=2024-13-45") == set(events_pks(events))  # a bad bound is ignored
    assert shown("?stitched=yes") == {events["purchase"].pk}
    assert shown("?stitched=no") == {events["page_view"].pk, events["app_open"].pk}


@pytest.mark.django_db
def test_events_search_finds_exact_message_id_or_event_id(staff_client, events):
    def found(term: str) -> set[int]:
        response = staff_client.get(changelist("customerevent"), {"q": term})
        return {e.pk for e in response.context["cl"].result_list}

    assert found("msg-page") == {events["page_view"].pk}
    assert found(str(events["app_open"].pk)) == {events["app_open"].pk}
    assert found("msg") == set()  # exact, not a substring scan
    assert found("99999999999999999999999") == set()  # beyond bigint: no crash


@pytest.mark.django_db
def test_events_search_tells_escaped_looking_message_ids_apart(staff_client, web_source):
    plain = ingest(web_source, "purchase", T0, {}, message_id="h:x")
    escaped = ingest(web_source, "purchase", T0, {}, message_id="m:h:x")
    unsent = ingest(web_source, "purchase", T0, {"n": 1})

    def found(term: str) -> set[int]:
        response = staff_client.get(changelist("customerevent"), {"q": term})
        return {e.pk for e in response.context["cl"].result_list}

    assert found("h:x") == {plain.pk}
    assert found("m:h:x") == {escaped.pk}
    assert found(unsent.idempotency_key) == {unsent.pk}  # the content-hash key itself


@pytest.mark.django_db
def test_event_detail_is_read_only_and_pretty_prints_the_payload(staff_client, events):
    response = staff_client.get(change("customerevent", events["purchase"].pk))
    page = response.content.decode()

    assert '"order": {' in page.replace("&quot;", '"')
    assert "msg-purchase" in page
    assert 'name="_save"' not in page
    assert staff_client.get(add("customerevent")).status_code == 403
    post = staff_client.post(change("customerevent", events["purchase"].pk), {"type": "hacked"})
    assert post.status_code == 403
    assert CustomerEvent.objects.get(pk=events["purchase"].pk).type == "purchase"


@pytest.mark.django_db
def test_entity_detail_lists_its_latest_events(staff_client, events, entity):
    response = staff_client.get(change("customerentity", entity.pk))

    assert response.status_code == 200
    assert [e.pk for e in response.context["latest_events"]] == [events["purchase"].pk]
    assert change("customerevent", events["purchase"].pk) in response.content.decode()
    entity_events = staff_client.get(changelist("customerevent"), {"customer_entity": entity.pk})
    assert [e.pk for e in entity_events.context["cl"].result_list] == [events["purchase"].pk]


def test_erasing_a_customer_merged_away_meanwhile_leads_to_the_customer_it_was_merged_into(staff_client, web_source):
    segment_default_rules_ensure(source=web_source)
    stitch_ingest(web_source, [{"id": "1", "t": 0, "anonymousId": "c1"}])
    engine.stitch_pending()
    stitch_ingest(web_source, [{"id": "2", "t": 1, "traits": {"email": "ann@example.com"}}])
    engine.stitch_pending()
    older, ann = (CustomerEvent.objects.get(idempotency_key=key).customer_entity_id for key in ("1", "2"))
    url = reverse("admin:cdp_customerentity_erase_customer", args=[ann])
    assert "a block is kept as a digest" in staff_client.get(url).content.decode()
    # Received after the confirmation page was shown, not stitched yet: Ann is the older customer.
    stitch_ingest(web_source, [{"id": "3", "t": 2, "anonymousId": "c1", "traits": {"email": "ann@example.com"}}])

    response = staff_client.post(url, {"confirm": "yes"}, follow=True)

    assert response.redirect_chain[-1][0] == reverse("admin:cdp_customerentity_change", args=[older])
    messages = [str(m) for m in response.context["messages"]]
    assert messages == [f"Customer {ann} was merged into this customer meanwhile, so nothing was erased: erase this "
                        "one if it is the same person."]  # fmt: skip
    assert CustomerEntity.objects.filter(pk=older).exists()


def _two_customers_merged(web_source) -> EntityChange:
    """A cookie's customer and an email's, merged by an event carrying both: the merge's record."""
    segment_default_rules_ensure(source=web_source)
    stitch_ingest(web_source, [{"id": "1", "t": 0, "anonymousId": "c1"}])
    stitch_ingest(web_source, [{"id": "2", "t": 1, "traits": {"email": "ann@example.com"}}])
    engine.stitch_pending()
    stitch_ingest(web_source, [{"id": "3", "t": 2, "anonymousId": "c1", "traits": {"email": "ann@example.com"}}])
    engine.stitch_pending()
    return EntityChange.objects.get(kind="merge")


def test_the_profile_of_a_customer_merged_away_leads_to_the_customer_it_was_merged_into(staff_client, web_source):
    merge = _two_customers_merged(web_source)
    (gone,) = merge.other_entity_ids

    response = staff_client.get(change("customerentity", gone), follow=True)

    assert response.redirect_chain[-1][0] == change("customerentity", merge.customer_entity_id)
    assert [str(m) for m in response.context["messages"]] == [f"Customer {gone} was merged into this customer."]
    # Its merge history names the stitching category that joined them, not its id.
    assert merge.detail["identifier_category"] == "cookie"
    assert "through a shared Cookie / anonymous ID" in response.content.decode()


def test_where_a_merged_customer_went_is_not_told_to_a_role_without_customers_view(client, web_source):
    """The page of a merged-away id redirected to the customer it was merged into (naming it) before checking the
    role: a staff user without customers_view learnt the merge history."""
    merge = _two_customers_merged(web_source)
    (gone,) = merge.other_entity_ids
    staff = user_create(username="staffer", password="Staffer-password-1!")
    staff.is_staff = True
    staff.save()
    client.force_login(staff)

    response = client.get(change("customerentity", gone))

    assert response.status_code == 403


def test_the_merge_history_says_why_a_customer_was_split(
    staff_client, web_source, admin_user, django_capture_on_commit_callbacks
):
    from stitching.services import config

    merge = _two_customers_merged(web_source)
    with django_capture_on_commit_callbacks(execute=True):
        config.blocked_value_add(category=None, value="c1", reason="kiosk", user=admin_user)
    split = EntityChange.objects.get(kind="split")

    page = staff_client.get(change("customerentity", split.customer_entity_id)).content.decode()
    assert "at a shared Cookie / anonymous ID, because a value was blocked" in page
    changes = staff_client.get(reverse("admin:stitching_entitychange_changelist")).content.decode()
    assert "a value was blocked" in changes and "a new event linked them" in changes
    assert merge.detail.get("cause") is None
    # Filtered by why.
    url = reverse("admin:stitching_entitychange_changelist")
    blocked = staff_client.get(url, {"cause": "value_blocked"}).context["cl"].result_list
    assert [c.pk for c in blocked] == [split.pk]
    by_event = staff_client.get(url, {"cause": "event"}).context["cl"].result_list
    assert [c.pk for c in by_event] == [merge.pk]


def test_a_merged_profile_counts_the_customers_events_and_names_the_merge(staff_client, web_source):
    merge = _two_customers_merged(web_source)
    (gone,) = merge.other_entity_ids
    survivor = merge.customer_entity_id
    merged = CustomerEvent.objects.filter(entity_link__customer_entity_id=survivor, type=engine.MERGED_EVENT_TYPE)
    assert merged.exists()

    page = staff_client.get(change("customerentity", survivor)).content.decode()

    # The header counts the customer's three events, not the platform's record of the merge.
    assert '<dd id="profile-event-count">3</dd>' in page
    # That record reads as what happened in the timeline.
    assert "Customers merged</span>" in page
    # "All changes" finds the merge from either side.
    changes = reverse("admin:stitching_entitychange_changelist")
    for term in (survivor, gone):
        listing = staff_client.get(changes, {"q": term})
        assert list(listing.context["cl"].result_list) == [merge]


# --- users, roles, tokens -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_creating_a_user_validates_the_password_and_makes_staff_with_a_role(staff_client):
    role = role_create(name="Marketer", features=[Feature.CUSTOMERS_VIEW])
    form = {
        "username": "marta",
        "email": "marta@example.com",
        "first_name": "Marta",
        "last_name": "",
        "role": role.pk,
        "usable_password": "true",
        "password1": "123",
        "password2": "123",
    }

    weak = staff_client.post(add("user"), form)
    assert weak.status_code == 200
    assert "too short" in weak.content.decode()
    assert not User.objects.filter(username="marta").exists()

    form["password1"] = form["password2"] = "Corr3ct-Horse-Battery"
    response = staff_client.post(add("user"), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    user = User.objects.get(username="marta")
    assert user.is_staff and user.role == role and user.check_password("Corr3ct-Horse-Battery")


@pytest.mark.django_db
def test_deactivating_a_user_revokes_their_tokens(staff_client, analyst):
    token, _ = token_create(user=analyst, name="sync")
    form = {
        "username": "analyst",
        "first_name": "",
        "last_name": "",
        "email": "",
        "role": analyst.role_id,
        # is_active left out: unchecked
    }

    response = staff_client.post(change("user", analyst.pk), form)

    assert response.status_code == 302, response.content.decode()[:2000]
    analyst.refresh_from_db()
    token.refresh_from_db()
    assert not analyst.is_active and token.revoked is not None


@pytest.mark.django_db
def test_role_features_are_checkboxes_validated_by_the_service(staff_client):
    response = staff_client.post(
        add("role"), {"name": "Segmenter", "description": "", "features": ["segments_view", "segments_edit"]}
    )
    assert response.status_code == 302
    assert Role.objects.get(name="Segmenter").features == ["segments_edit", "segments_view"]

    form_page = staff_client.get(add("role")).content.decode()
    assert 'type="checkbox"' in form_page and "customers_view" in form_page

    bad = staff_client.post(add("role"), {"name": "Bad", "features": ["launch_missiles"]})
    assert bad.status_code == 200
    assert "launch_missiles" in bad.content.decode()
    assert not Role.objects.filter(name="Bad").exists()


@pytest.mark.django_db
def test_creating_a_token_shows_the_key_once(staff_client, analyst):
    response = staff_client.post(
        add("apitoken"), {"user": analyst.pk, "name": "CRM sync", "expires_0": "", "expires_1": ""}
    )

    assert response.status_code == 200, response.content.decode()[:2000]
    key = response.context["secret"]
    assert key in response.content.decode()
    token = ApiToken.objects.get(name="CRM sync")
    assert token_authenticate(key=key) == token
    page = staff_client.get(changelist("apitoken")).content.decode()
    assert f"{token.key_prefix}…" in page
    assert key not in page and token.key_hash not in page


@pytest.mark.django_db
def test_reloading_the_new_token_page_makes_no_second_token(staff_client, analyst):
    """The page showing the key answers the POST: a reload sends the form again. Each add page carries its own id,
    and a form already sent makes nothing and says why."""
    page = staff_client.get(add("apitoken")).content.decode()
    form_id = re.search(r'name="form_id" value="([0-9a-f]{32})"', page).group(1)
    data = {"user": analyst.pk, "name": "CRM sync", "expires_0": "", "expires_1": "", "form_id": form_id}
    assert staff_client.post(add("apitoken"), data).status_code == 200
    again = staff_client.post(add("apitoken"), data, follow=True)
    assert "This form was already sent" in again.content.decode()
    assert ApiToken.objects.filter(name="CRM sync").count() == 1
    # A fresh add page is a new form.
    other = re.search(r'name="form_id" value="([0-9a-f]{32})"', staff_client.get(add("apitoken")).content.decode())
    assert other.group(1) != form_id


@pytest.mark.django_db
def test_signing_in_and_making_a_token_work_while_redis_is_down(client, admin_user, analyst, cache_unreachable):
    """The login throttle and the new-token page's reload guard use the shared cache: with Redis unreachable the
    admin's sign-in answered 500, and a token form made its token, then answered 500 without showing the key."""
    signed_in = client.post("/admin/login/", {"username": "admin", "password": "Adm1n-password!"})
    assert signed_in.status_code == 302 and client.get("/admin/").status_code == 200

    page = client.get(add("apitoken")).content.decode()
    form_id = re.search(r'name="form_id" value="([0-9a-f]{32})"', page).group(1)
    data = {"user": analyst.pk, "name": "CRM sync", "expires_0": "", "expires_1": "", "form_id": form_id}
    response = client.post(add("apitoken"), data)

    assert response.status_code == 200
    assert response.context["secret"] in response.content.decode()  # the key, shown once
    assert ApiToken.objects.filter(name="CRM sync").count() == 1


@pytest.mark.django_db
def test_revoking_tokens_asks_first_and_says_how_many(staff_client, analyst):
    live, _ = token_create(user=analyst, name="a")
    other, _ = token_create(user=analyst, name="b")
    dead, _ = token_create(user=analyst, name="c")
    ApiToken.objects.filter(pk=dead.pk).update(revoked=T0)
    selected = {"action": "revoke_tokens", "_selected_action": [live.pk, other.pk, dead.pk]}

    confirmation = staff_client.post(changelist("apitoken"), selected)
    assert confirmation.status_code == 200
    assert "stop working" in confirmation.content.decode()
    assert ApiToken.objects.filter(revoked__isnull=True).count() >= 2

    response = staff_client.post(changelist("apitoken"), {**selected, "confirm": "yes"}, follow=True)

    assert "2 token(s) revoked." in response.content.decode()
    assert not ApiToken.objects.filter(pk__in=[live.pk, other.pk], revoked__isnull=True).exists()


# --- global settings ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_global_settings_page_lists_every_definition(staff_client):
    from cdp.global_settings import DEFINITIONS

    page = staff_client.get(changelist("globalsetting")).content.decode()

    for key, definition in DEFINITIONS.items():
        assert key in page and definition.description in page


@pytest.mark.django_db
def test_editing_a_global_setting_validates_through_the_service_and_is_audited(staff_client, admin_user):
    url = reverse("admin:cdp_globalsetting_edit", args=["display_timezone"])

    bad = staff_client.post(url, {"value": "Mars/Olympus_Mons"})
    assert bad.status_code == 200
    assert "IANA time zone" in bad.context["form"].errors["value"][0]
    assert global_setting_get("display_timezone") == "UTC"

    good = staff_client.post(url, {"value": "Europe/Prague"})
    assert good.status_code == 302
    assert global_setting_get("display_timezone") == "Europe/Prague"
    change_row = GlobalSettingChange.objects.get(key="display_timezone")
    assert (change_row.old_value, change_row.new_value, change_row.changed_by) == ("UTC", "Europe/Prague", admin_user)

    origins = reverse("admin:cdp_globalsetting_edit", args=["public_cors_origins"])
    staff_client.post(origins, {"value": "https://shop.example.com\n\nhttps://www.example.com\n"})
    assert global_setting_get("public_cors_origins") == ["https://shop.example.com", "https://www.example.com"]


# --- access ---------------------------------------------------------------------------------------------------


ALL_CHANGELISTS = ["datasource", "customerevent", "customerentity", "user", "role", "apitoken", "globalsetting"]


@pytest.mark.django_db
def test_a_staff_user_without_a_role_sees_nothing(client, outsider, events):
    client.force_login(outsider)

    index = client.get(reverse("admin:index"))
    assert index.status_code == 200
    # Only their own notifications (an inbox every user has; it holds nothing of anybody else's).
    assert [app["app_label"] for app in index.context["app_list"]] in ([], ["notifications"])
    for model in ALL_CHANGELISTS:
        assert client.get(changelist(model)).status_code == 403, model
    assert client.get(change("customerevent", events["purchase"].pk)).status_code == 403


@pytest.mark.django_db
def test_features_decide_which_pages_a_role_opens(client, analyst, web_source):
    client.force_login(analyst)  # customers_view, data_sources_view

    for model in ["customerevent", "customerentity", "datasource"]:
        assert client.get(changelist(model)).status_code == 200, model
    for model in ["user", "role", "apitoken", "globalsetting"]:
        assert client.get(changelist(model)).status_code == 403, model
    # Viewing data sources does not allow creating them or rotating keys.
    assert client.get(add("datasource")).status_code == 403
    rotate = reverse("admin:cdp_datasource_rotate_write_key", args=[web_source.pk])
    assert client.post(rotate, {"confirm": "yes"}).status_code == 403
    assert data_source_by_write_key(web_source.plain_write_key) == web_source


@pytest.mark.django_db
def test_a_user_administrator_cannot_change_a_superuser(client, admin_user):
    role = role_create(name="User admin", features=[Feature.USERS_ADMIN])
    user_admin = user_create(username="ua", password="Us3r-admin-pass!", role=role)
    client.force_login(user_admin)

    assert client.get(change("user", admin_user.pk)).status_code == 200  # view only
    response = client.post(change("user", admin_user.pk), {"username": "pwned"})
    assert response.status_code == 403
    assert client.get(reverse("admin:auth_user_password_change", args=[admin_user.pk])).status_code == 403


@pytest.mark.django_db
def test_logging_in_on_the_login_page_lands_on_the_explorer(client, admin_user):
    response = client.post(reverse("admin:login"), {"username": "admin", "password": "Adm1n-password!"})

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")


@pytest.mark.django_db
def test_setting_a_users_password_validates_it(staff_client, analyst):
    url = reverse("admin:auth_user_password_change", args=[analyst.pk])

    weak = staff_client.post(url, {"usable_password": "true", "password1": "analyst", "password2": "analyst"})
    assert weak.status_code == 200
    assert "too similar" in weak.content.decode() or "too short" in weak.content.decode()

    strong = staff_client.post(
        url, {"usable_password": "true", "password1": "N3w-Pass-phrase!", "password2": "N3w-Pass-phrase!"}
    )
    assert strong.status_code == 302
    analyst.refresh_from_db()
    assert analyst.check_password("N3w-Pass-phrase!")


@pytest.mark.django_db
def test_only_staff_users_can_log_in(client):
    user = User.objects.create_user(username="api-only", password="Api-only-pass-1!")  # not staff
    response = client.post(
        reverse("admin:login"), {"username": "api-only", "password": "Api-only-pass-1!", "next": "/admin/"}
    )

    assert response.status_code == 200  # the form again, with an error
    assert "_auth_user_id" not in client.session
    assert not user.is_staff


def test_the_customer_list_names_customers_and_finds_them_by_email_or_name(staff_client, shop_source):
    from cdp.services.attributes import attributes_recompute

    traits = {"email": "Ann@Example.com", "firstName": "Ann", "lastName": "Novak"}
    ingest(shop_source, "identify", datetime(2025, 1, 1, tzinfo=UTC), {"userId": "u-1", "traits": traits})
    ingest(shop_source, "identify", datetime(2025, 1, 2, tzinfo=UTC), {"anonymousId": "c-2"})
    engine.stitch_pending()
    attributes_recompute()
    ann = CustomerEntity.objects.get(attributes__contains={"first_name": ["Ann"]})
    anonymous = CustomerEntity.objects.exclude(pk=ann.pk).get()
    page = staff_client.get(changelist("customerentity")).content.decode()
    assert "Ann Novak" in page and "ann@example.com" in page
    for term in (" ANN@example.com ", "u-1", "Ann", ann.pk.upper()):
        found = staff_client.get(changelist("customerentity"), {"q": term}).content.decode()
        assert change("customerentity", ann.pk) in found, term
        assert change("customerentity", anonymous.pk) not in found, term
    other = staff_client.get(changelist("customerentity"), {"q": "c-2"}).content.decode()
    assert change("customerentity", anonymous.pk) in other and "Ann Novak" not in other
    nobody = staff_client.get(changelist("customerentity"), {"q": "nobody@example.com"}).content.decode()
    assert change("customerentity", ann.pk) not in nobody


def test_a_unit_is_singular_after_one():
    from cdp.admin.profile import unit_for

    assert [unit_for(v, "orders") for v in ("1", "2", "0", "1.00")] == ["order", "orders", "orders", "orders"]
    assert unit_for("1", "EUR") == "EUR" and unit_for("1", "kg") == "kg" and unit_for("1", "pass") == "pass"


@pytest.mark.django_db
def test_a_profile_whose_identifiers_were_all_refused_says_so(staff_client, web_source):
    from tests.stitching.graph_builder import GraphBuilder

    graph = GraphBuilder(web_source)
    customer = graph.entity()
    graph.event(customer, identifiers=[], refused=[("email", "team@example.com", "blocked", "blocked value", None)])
    page = staff_client.get(reverse("admin:cdp_customerentity_change", args=[customer.pk])).content.decode()
    assert "No identifiers linked: the ones its events carried were refused" in page


@pytest.mark.django_db
def test_the_merge_history_names_the_other_customers_that_exist(staff_client):
    ann = CustomerEntity.objects.create(attributes={"first_name": ["Ann"]})
    bob = CustomerEntity.objects.create(attributes={"first_name": ["Bob"], "last_name": ["Novak"]})
    gone = "0f" * 16
    EntityChange.objects.create(kind="split", customer_entity_id=ann.pk, other_entity_ids=[bob.pk])
    EntityChange.objects.create(kind="merge", customer_entity_id=ann.pk, other_entity_ids=[gone])
    page = staff_client.get(reverse("admin:cdp_customerentity_change", args=[ann.pk])).content.decode()
    bob_url = reverse("admin:cdp_customerentity_change", args=[bob.pk])
    assert f'href="{bob_url}" title="{bob.pk}">Bob Novak</a>' in page  # by name, the id on hover
    assert f">{gone}</a>" in page  # merged away: its id, linked to what became of it


@pytest.mark.django_db
def test_the_header_path_shows_a_profile_named_by_its_email_as_written(staff_client, web_source):
    from tests.stitching.graph_builder import GraphBuilder

    graph = GraphBuilder(web_source)
    zoe = graph.entity(ps_email_address=["zoe@example.com"])
    graph.event(zoe, identifiers=[("email", "zoe@example.com")])
    page = staff_client.get(reverse("admin:cdp_customerentity_change", args=[zoe.pk])).content.decode()
    assert "zoe@example.com" in page
    assert "Zoe@example.com" not in page  # (the header's path capitalised it)
    assert "Customer profiles" in page  # the model's label still is


@pytest.mark.django_db
def test_an_event_page_lists_the_identifiers_it_carried_why_one_was_refused_and_who_holds_it(staff_client, web_source):
    """A refused link or a held hub review leads to its events: their page showed the payload only, so which value
    was refused, why, and whose it is had to be pieced together from other screens."""
    from tests.stitching.graph_builder import GraphBuilder

    graph = GraphBuilder(web_source)
    ann, filip = graph.entity(), graph.entity()
    graph.event(filip, identifiers=[("email", "test@test.com")])
    sign_in = graph.event(
        ann,
        identifiers=[("user_id", "u-183")],
        refused=[("email", "test@test.com", "limit", "the customer would have 2 user_id values (limit 1)", filip)],
    )
    page = staff_client.get(reverse("admin:cdp_customerevent_change", args=[sign_in.pk])).content.decode()
    assert "u-183" in page and "Linked" in page
    assert "test@test.com" in page and "Refused: per-customer limit" in page
    assert "the customer would have 2 user_id values (limit 1)" in page
    assert reverse("admin:cdp_customerentity_change", args=[filip.pk]) in page  # who holds the refused address

    # The event's customer and the one holding an identifier read by name, as the profiles list names them (their
    # ids alone meant nothing to a marketer).
    CustomerEntity.objects.filter(pk=ann.pk).update(attributes={"first_name": ["Ann"], "last_name": ["Horak"]})
    CustomerEntity.objects.filter(pk=filip.pk).update(attributes={"ps_email_address": ["test@test.com"]})
    page = staff_client.get(reverse("admin:cdp_customerevent_change", args=[sign_in.pk])).content.decode()
    assert f'title="{ann.pk}">Ann Horak</a>' in page
    assert f'title="{filip.pk}">test@test.com</a>' in page

    bare = graph.event(ann)
    page = staff_client.get(reverse("admin:cdp_customerevent_change", args=[bare.pk])).content.decode()
    assert "no stitching rule read an identifier from this event" in page


def test_segment_calls_read_as_words_on_the_timeline():
    from cdp.admin.profile import segment_call_label

    assert segment_call_label("page", {"properties": {"path": "/sale"}}) == "Page viewed · /sale"
    assert segment_call_label("page", {"context": {"page": {"path": "/"}}}) == "Page viewed · /"
    assert segment_call_label("screen", {"name": "Cart"}) == "Screen viewed · Cart"
    assert segment_call_label("identify", {"traits": {}}) == "Identified"
    assert segment_call_label("page", {"properties": ["odd"]}) == "Page viewed"
    assert segment_call_label("Order Completed", {}) == ""  # a named event stays as it is
