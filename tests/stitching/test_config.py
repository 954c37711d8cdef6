"""Stitching configuration services: validation with messages that name the problem, normalised blocked values,
hub review decisions, and the re-stitch after commit that makes a block or a rule change take effect."""

import pytest
from django.core.exceptions import ValidationError

from cdp.models import CustomerEvent
from cdp.services.events import event_record_build, events_ingest
from stitching.models import (
    BlockedValue,
    EntityChange,
    EventIdentifier,
    HubReview,
    Identifier,
    StitchingCategory,
    StitchingRule,
)
from stitching.services import config, engine
from stitching.services.defaults import segment_default_rules_ensure
from tests.stitching import helpers
from tests.stitching.graph_builder import GraphBuilder

pytestmark = pytest.mark.django_db


def error_fields(exc: pytest.ExceptionInfo) -> dict:
    return exc.value.message_dict


def test_category_create_validates_id_normalizer_and_limit():
    with pytest.raises(ValidationError) as exc:
        config.category_create(id="work_email", name="Work email", normalizer="email", limit_window_days=7)
    assert error_fields(exc)["limit_window_days"] == ["A window needs a limit per customer to apply to."]
    with pytest.raises(ValidationError) as exc:
        config.category_create(id="Work-Email!", name="Work email", normalizer="email")
    assert "id" in error_fields(exc)
    with pytest.raises(ValidationError) as exc:
        config.category_create(id="work_email", name="Work email", normalizer="soundex")
    assert "soundex" in error_fields(exc)["normalizer"][0]
    with pytest.raises(ValidationError) as exc:
        config.category_create(id="work_email", name="Work email", normalizer="email", max_per_entity=0)
    assert "max_per_entity" in error_fields(exc)

    work = config.category_create(id="work_email", name="Work email", normalizer="email", max_per_entity=2, priority=5)
    assert (work.normalizer, work.max_per_entity, work.priority) == ("email", 2, 5)
    with pytest.raises(ValidationError, match="already exists"):
        config.category_create(id="email", name="Email again", normalizer="email")


def test_category_normalizer_cannot_change_once_identifiers_exist(web_source):
    graph = GraphBuilder(web_source)
    graph.event(graph.entity(), identifiers=[("email", "a@example.com")])
    with pytest.raises(ValidationError) as exc:
        config.category_update(category=graph.categories["email"], normalizer="trim")
    assert "new category" in error_fields(exc)["normalizer"][0]
    # Without identifiers it may change.
    updated = config.category_update(category=graph.categories["cookie"], normalizer="lower", name="Cookie id")
    assert (updated.normalizer, updated.name) == ("lower", "Cookie id")


def test_category_limit_change_schedules_a_restitch(web_source, django_capture_on_commit_callbacks):
    graph = GraphBuilder(web_source)
    entity = graph.entity()
    graph.event(entity, identifiers=[("email", "a@example.com"), ("email", "b@example.com")])
    with django_capture_on_commit_callbacks() as callbacks:
        config.category_update(category=graph.categories["email"], max_per_entity=1)
    assert len(callbacks) == 1
    with django_capture_on_commit_callbacks() as callbacks:
        config.category_update(category=graph.categories["email"], name="E-mail address")
    assert callbacks == []  # a new name changes no link
    with django_capture_on_commit_callbacks() as callbacks:
        config.category_update(category=graph.categories["email"], limit_window_days=30)
    assert len(callbacks) == 1  # a window loosens the limit: refused links may link now


def test_a_window_added_to_a_limit_links_what_the_limit_refused(shop_source, django_capture_on_commit_callbacks):
    from tests.stitching.helpers import ingest as stitch_ingest

    email = StitchingCategory.objects.get(pk="email")
    config.category_update(category=email, max_per_entity=1)
    day = 24 * 60
    with django_capture_on_commit_callbacks(execute=True):
        stitch_ingest(
            shop_source,
            [
                {"id": "1", "t": 0, "userId": "u1", "traits": {"email": "old@example.com"}},
                {"id": "2", "t": 400 * day, "userId": "u1", "traits": {"email": "new@example.com"}},
            ],
        )
    assert _statuses("email", "new@example.com") == {"limit"}

    with django_capture_on_commit_callbacks(execute=True):
        config.category_update(category=email, limit_window_days=365)
    assert _statuses("email", "new@example.com") == {"linked"}
    assert customers_count() == 1


@pytest.mark.parametrize(
    "path",
    ["", "   ", "traits..email", ".traits", "traits.", "traits email", "traits.email!", "a" * 256, "x." * 20 + "y"],
)
def test_rule_path_must_be_a_dotted_payload_path(web_source, path):
    category = StitchingCategory.objects.get(pk="email")
    with pytest.raises(ValidationError) as exc:
        config.rule_create(source=web_source, category=category, path=path)
    assert "path" in error_fields(exc)


def test_rule_create_update_delete(web_source, django_capture_on_commit_callbacks):
    category = StitchingCategory.objects.get(pk="email")
    rule = config.rule_create(source=web_source, category=category, path=" context.traits.email ", event_type="")
    assert (rule.path, rule.event_type) == ("context.traits.email", StitchingRule.ANY_TYPE)
    with pytest.raises(ValidationError, match="already reads context.traits.email"):
        config.rule_create(source=web_source, category=category, path="context.traits.email")
    with pytest.raises(ValidationError) as exc:
        config.rule_update(rule=rule, event_type="x" * 129)
    assert "event_type" in error_fields(exc)

    rule = config.rule_update(rule=rule, event_type="identify", priority=5)
    assert (rule.event_type, rule.priority) == ("identify", 5)
    config.rule_delete(rule=rule)
    assert not StitchingRule.objects.exists()


def test_blocked_value_is_stored_normalised_with_who_and_why(web_source, admin_user):
    graph = GraphBuilder(web_source)
    email, phone = graph.categories["email"], graph.categories["phone"]
    blocked = config.blocked_value_add(category=email, value=" Team@Example.COM ", reason="shared", user=admin_user)
    assert (blocked.value, blocked.reason, blocked.created_by) == ("team@example.com", "shared", admin_user)
    with pytest.raises(ValidationError, match="already blocked"):
        config.blocked_value_add(category=email, value="team@example.com", reason="", user=admin_user)
    with pytest.raises(ValidationError) as exc:
        config.blocked_value_add(category=phone, value="call me maybe", reason="", user=admin_user)
    assert "not a valid Phone value" in error_fields(exc)["value"][0]
    everywhere = config.blocked_value_add(category=None, value=" test ", reason="", user=None)
    assert (everywhere.category, everywhere.value) == (None, "test")
    # For every category only trimmed: each category normalises it its own way when matching.
    mixed = config.blocked_value_add(category=None, value=" Team@Example.COM ", reason="", user=None)
    assert mixed.value == "Team@Example.COM"

    config.blocked_value_remove(blocked_value=blocked, user=admin_user)
    assert set(BlockedValue.objects.values_list("value", flat=True)) == {"test", "Team@Example.COM"}


def test_blocking_a_value_of_a_stitched_customer_schedules_a_restitch(web_source, django_capture_on_commit_callbacks):
    graph = GraphBuilder(web_source)
    graph.event(graph.entity(), identifiers=[("email", "team@example.com")])
    with django_capture_on_commit_callbacks() as callbacks:
        config.blocked_value_add(category=graph.categories["email"], value="TEAM@example.com", reason="", user=None)
    assert len(callbacks) == 1
    with django_capture_on_commit_callbacks() as callbacks:
        config.blocked_value_add(category=graph.categories["email"], value="nobody@example.com", reason="", user=None)
    assert callbacks == []  # no identifier carries it: nothing to re-stitch
    with django_capture_on_commit_callbacks() as callbacks:
        config.blocked_value_add(category=None, value=" Team@Example.com", reason="", user=None)
    assert len(callbacks) == 1  # blocked for every category: the e-mail address matches lower-cased


def test_hub_review_block_blocks_the_value_and_cannot_be_decided_twice(web_source, admin_user):
    graph = GraphBuilder(web_source)
    graph.event(graph.entity(), identifiers=[("cookie", "shared-tablet")])
    identifier = graph.identifier("cookie", "shared-tablet", None)
    review = HubReview.objects.create(identifier=identifier, entity_count=40)

    decided = config.hub_review_decide(review=review, approve=False, user=admin_user)
    assert (decided.status, decided.decided_by) == (HubReview.Status.BLOCKED, admin_user)
    assert decided.decided is not None
    blocked = BlockedValue.objects.get()
    assert (blocked.category_id, blocked.value, blocked.created_by) == ("cookie", "shared-tablet", admin_user)
    assert "40 customers" in blocked.reason
    with pytest.raises(ValidationError, match="already decided"):
        config.hub_review_decide(review=review, approve=True, user=admin_user)


def test_hub_review_approve_does_not_block(web_source, admin_user):
    graph = GraphBuilder(web_source)
    review = HubReview.objects.create(identifier=graph.identifier("cookie", "family-pc", None), entity_count=3)
    assert config.hub_review_decide(review=review, approve=True, user=admin_user).status == HubReview.Status.APPROVED
    assert not BlockedValue.objects.exists()


# --- end to end with the engine ---------------------------------------------------------------------------------


def ingest(source, *events: tuple[str, dict]) -> None:
    records = [
        event_record_build(source_id=source.pk, type=kind, event_time=f"2024-05-01T12:00:0{i}Z", payload=payload)
        for i, (kind, payload) in enumerate(events)
    ]
    events_ingest(records)


def customers_count() -> int:
    return CustomerEvent.objects.values("entity_link__customer_entity_id").distinct().count()


@pytest.fixture
def shared_address(web_source, django_capture_on_commit_callbacks) -> StitchingCategory:
    """Email and cookie rules, and two cookies joined only by a shared address (one customer); returns the email
    category."""
    from stitching.services import engine

    graph = GraphBuilder(web_source)
    email, cookie = graph.categories["email"], graph.categories["cookie"]
    config.rule_create(source=web_source, category=email, path="traits.email")
    config.rule_create(source=web_source, category=cookie, path="anonymousId")
    with django_capture_on_commit_callbacks(execute=True):
        ingest(
            web_source,
            ("identify", {"anonymousId": "c1", "traits": {"email": "team@example.com"}}),
            ("identify", {"anonymousId": "c2", "traits": {"email": "team@example.com"}}),
        )
        engine.stitch_pending()
    assert customers_count() == 1
    return email


def test_blocking_the_only_link_splits_the_customer_and_unblocking_joins_it_again(
    shared_address, admin_user, django_capture_on_commit_callbacks
):
    email = shared_address

    with django_capture_on_commit_callbacks(execute=True):
        blocked = config.blocked_value_add(category=email, value="Team@Example.com", reason="shared", user=admin_user)
    assert customers_count() == 2

    with django_capture_on_commit_callbacks(execute=True):
        config.blocked_value_remove(blocked_value=blocked, user=admin_user)
    assert customers_count() == 1


def test_a_split_and_a_merge_record_why_and_at_which_identifier(
    shared_address, web_source, admin_user, django_capture_on_commit_callbacks
):
    email = Identifier.objects.get(category=shared_address, value="team@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        blocked = config.blocked_value_add(category=shared_address, value="team@example.com", user=admin_user)
    split = EntityChange.objects.get(kind="split")
    # The value blocked, though no event links it any more, and why: the history answers "why two customers?".
    assert split.identifier_id == email.pk
    assert split.detail == {"identifier_category": "email", "cause": "value_blocked"}
    event = CustomerEvent.objects.get(type=engine.SPLIT_EVENT_TYPE)
    assert event.payload["cause"] == "value_blocked" and event.payload["identifier_category"] == "email"

    with django_capture_on_commit_callbacks(execute=True):
        config.blocked_value_remove(blocked_value=blocked, user=admin_user)
    merge = EntityChange.objects.get(kind="merge")
    assert merge.identifier_id == email.pk and merge.detail["cause"] == "value_unblocked"

    # Without the rule reading the address, the customer splits again: a rule change, at no identifier.
    with django_capture_on_commit_callbacks(execute=True):
        config.rule_delete(rule=StitchingRule.objects.get(source=web_source, category=shared_address))
    assert customers_count() == 2
    split = EntityChange.objects.filter(kind="split").order_by("-id").first()
    assert split.detail == {"cause": "rule_changed"} and split.identifier_id is None


def test_a_merge_through_another_identifier_still_says_why(web_source, admin_user, django_capture_on_commit_callbacks):
    from stitching.services import engine

    graph = GraphBuilder(web_source)
    email, cookie = graph.categories["email"], graph.categories["cookie"]
    config.rule_create(source=web_source, category=email, path="traits.email")
    config.rule_create(source=web_source, category=cookie, path="anonymousId")
    blocked = config.blocked_value_add(category=email, value="x@example.com", user=admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        ingest(
            web_source,
            ("identify", {"anonymousId": "c1"}),
            ("identify", {"anonymousId": "c2"}),
            ("identify", {"anonymousId": "c1", "traits": {"email": "x@example.com"}}),
            ("identify", {"anonymousId": "c2", "traits": {"email": "x@example.com"}}),
        )
        engine.stitch_pending()
    assert customers_count() == 2

    with django_capture_on_commit_callbacks(execute=True):
        config.blocked_value_remove(blocked_value=blocked, user=admin_user)
    assert customers_count() == 1
    # The merging event carries the unblocked address: the merge names it (not the other customer's cookie,
    # which the partition absorbed), and why.
    merge = EntityChange.objects.get(kind="merge")
    assert merge.detail == {"identifier_category": "email", "cause": "value_unblocked"}
    assert merge.identifier.value == "x@example.com"


def test_a_merge_a_restitch_restores_names_the_event_that_links_again(
    web_source, admin_user, django_capture_on_commit_callbacks
):
    """Two visitors, each a page view after signing in with a shared address: blocked, then unblocked. The merge
    names the second visitor's sign-in (which carries the address), not the customer's last page view (which does
    not): the profile's "Event #... through a shared Email" must lead to an event that has it."""
    graph = GraphBuilder(web_source)
    email, cookie = graph.categories["email"], graph.categories["cookie"]
    config.rule_create(source=web_source, category=email, path="traits.email")
    config.rule_create(source=web_source, category=cookie, path="anonymousId")
    blocked = config.blocked_value_add(category=email, value="office@example.com", user=admin_user)
    with django_capture_on_commit_callbacks(execute=True):
        ingest(
            web_source,
            ("identify", {"anonymousId": "c1", "traits": {"email": "office@example.com"}}),
            ("page", {"anonymousId": "c1"}),
            ("identify", {"anonymousId": "c2", "traits": {"email": "office@example.com"}}),
            ("page", {"anonymousId": "c2"}),
        )
        engine.stitch_pending()
    assert customers_count() == 2

    with django_capture_on_commit_callbacks(execute=True):
        config.blocked_value_remove(blocked_value=blocked, user=admin_user)
    assert customers_count() == 1
    merge = EntityChange.objects.get(kind="merge")
    second_sign_in = CustomerEvent.objects.get(payload__anonymousId="c2", type="identify")
    assert merge.event_id == second_sign_in.pk
    assert merge.identifier.value == "office@example.com"
    assert EventIdentifier.objects.filter(event_id=merge.event_id, identifier_id=merge.identifier_id).exists()


def test_an_approved_hub_is_what_the_merge_names(web_source, admin_user, settings, django_capture_on_commit_callbacks):
    settings.STITCHING_HUB_LIMIT = 2
    segment_default_rules_ensure(source=web_source)
    helpers.ingest(web_source, _kiosk_rows("p", 3, 0))
    engine.stitch_pending()
    with django_capture_on_commit_callbacks(execute=True):
        config.hub_review_decide(review=HubReview.objects.get(), approve=True, user=admin_user)
    assert len(helpers.partition()) == 1
    merge = EntityChange.objects.get(kind="merge")
    # Each merging event carries a customer's address and the kiosk: the kiosk is what they share.
    assert merge.identifier.value == "kiosk"
    assert merge.detail == {"identifier_category": "cookie", "cause": "hub_approved"}


def test_a_tighter_limit_splits_at_the_identifier_it_refuses(shop_source, django_capture_on_commit_callbacks):
    from tests.stitching.helpers import ingest as stitch_ingest

    with django_capture_on_commit_callbacks(execute=True):
        stitch_ingest(
            shop_source,
            [
                {"id": "1", "t": 0, "anonymousId": "c1", "traits": {"email": "a@example.com"}},
                {"id": "2", "t": 1, "anonymousId": "c1", "traits": {"email": "b@example.com"}},
            ],
        )
    assert customers_count() == 1
    with django_capture_on_commit_callbacks(execute=True):
        config.category_update(category=StitchingCategory.objects.get(pk="email"), max_per_entity=1)
    assert customers_count() == 2
    split = EntityChange.objects.get(kind="split")
    # The limit drops the second event's cookie (less trusted than its address): the split is at the cookie.
    assert split.identifier.value == "c1"
    assert split.detail == {"identifier_category": "cookie", "cause": "category_changed"}


def test_a_looser_limit_links_what_it_refused_in_another_category(shop_source, django_capture_on_commit_callbacks):
    from stitching.services import engine
    from tests.stitching.helpers import ingest as stitch_ingest
    from tests.stitching.helpers import partition

    email = StitchingCategory.objects.get(pk="email")
    config.category_update(category=email, max_per_entity=1)
    with django_capture_on_commit_callbacks(execute=True):
        stitch_ingest(
            shop_source,
            [
                {"id": "1", "t": 0, "anonymousId": "c1", "traits": {"email": "a@example.com"}},
                {"id": "2", "t": 2 * 24 * 60, "anonymousId": "c1", "traits": {"email": "b@example.com"}},
            ],
        )
    # The email limit refused the event's cookie (less trusted than its address): two customers.
    assert _statuses("cookie", "c1") == {"linked", "limit"} and customers_count() == 2

    with django_capture_on_commit_callbacks(execute=True):
        config.category_update(category=email, limit_window_days=1)
    assert customers_count() == 1 and _statuses("cookie", "c1") == {"linked"}
    # The merge names the cookie the limit had refused (what joins them now), not the address it absorbed.
    merge = EntityChange.objects.get(kind="merge")
    assert merge.identifier.value == "c1" and merge.detail["cause"] == "category_changed"
    incremental = partition()
    engine.restitch()
    assert partition() == incremental


def test_a_block_with_the_longest_reason_splits_too(shared_address, admin_user, django_capture_on_commit_callbacks):
    reason = "r" * 300  # the refusal's reason is "blocked value: " + this, cut to the column's 300 characters
    with django_capture_on_commit_callbacks(execute=True):
        config.blocked_value_add(category=shared_address, value="team@example.com", reason=reason, user=admin_user)
    assert customers_count() == 2
    refused = EventIdentifier.objects.filter(status="blocked").values_list("reason", flat=True)
    assert refused and all(r == ("blocked value: " + reason)[:300] for r in refused)


def _statuses(category: str, value: str) -> set[str]:
    links = EventIdentifier.objects.filter(identifier__category_id=category, identifier__value=value)
    return set(links.values_list("status", flat=True))


def _kiosk_rows(prefix: str, count: int, t: int, *, trait: str = "email") -> list[dict]:
    """`count` customers (an address or a phone number each), then a shared kiosk cookie seen with each of them."""
    traits = [
        {"email": f"{prefix}{n}@example.com"} if trait == "email" else {"phone": f"+4206012340{n}"}
        for n in range(count)
    ]
    rows = [{"id": f"{prefix}{n}", "t": t + n, "traits": traits[n]} for n in range(count)]
    return rows + [
        {"id": f"{prefix}k{n}", "t": t + 50 + n, "traits": traits[n], "anonymousId": "kiosk"} for n in range(count)
    ]


@pytest.mark.parametrize("rebuild", [False, True], ids=["incremental", "full rebuild"])
def test_a_hub_blocked_in_review_then_unblocked_is_pending_again_and_can_be_approved(
    web_source, admin_user, settings, django_capture_on_commit_callbacks, rebuild
):
    settings.STITCHING_HUB_LIMIT = 2
    segment_default_rules_ensure(source=web_source)
    helpers.ingest(web_source, _kiosk_rows("p", 3, 0))
    engine.stitch_pending()
    review = HubReview.objects.get()
    assert (review.identifier.value, review.status, review.entity_count) == ("kiosk", "pending", 3)

    with django_capture_on_commit_callbacks(execute=True):
        config.hub_review_decide(review=review, approve=False, user=admin_user)
    assert _statuses("cookie", "kiosk") == {"blocked"}
    # Two more customers on the kiosk while it is blocked.
    helpers.ingest(web_source, _kiosk_rows("q", 2, 100))
    engine.stitch_pending()
    assert len(helpers.partition()) == 5

    # Unblocked (the re-stitch done by the service, or by a full rebuild), the kiosk is held again: its review is
    # a question again, with the new count.
    with django_capture_on_commit_callbacks(execute=not rebuild):
        config.blocked_value_remove(blocked_value=BlockedValue.objects.get(), user=admin_user)
    if rebuild:
        engine.restitch()
    assert _statuses("cookie", "kiosk") == {"held"}
    review.refresh_from_db()
    assert (review.status, review.entity_count, review.decided_by, review.decided) == ("pending", 5, None, None)

    with django_capture_on_commit_callbacks(execute=True):
        config.hub_review_decide(review=review, approve=True, user=admin_user)
    assert _statuses("cookie", "kiosk") == {"linked"}
    assert len(helpers.partition()) == 1
    # Approved, it links whoever comes with it next, and is never held again.
    helpers.ingest(web_source, _kiosk_rows("r", 4, 200, trait="phone"))  # (the customer has 5 addresses, the limit)
    engine.stitch_pending()
    assert len(helpers.partition()) == 1
    assert HubReview.objects.get().status == HubReview.Status.APPROVED
    engine.restitch()
    assert len(helpers.partition()) == 1
    assert _statuses("cookie", "kiosk") == {"linked"}


def test_a_value_blocked_for_every_category_is_matched_as_each_category_normalises_it(
    web_source, django_capture_on_commit_callbacks
):
    segment_default_rules_ensure(source=web_source)
    rows = [
        {"id": "1", "t": 0, "anonymousId": "c1", "traits": {"email": "office@shop.com"}},
        {"id": "2", "t": 1, "anonymousId": "c2", "traits": {"email": " Office@SHOP.com"}},
        {"id": "3", "t": 2, "anonymousId": "c3", "traits": {"phone": "+420601234567"}},
        {"id": "4", "t": 3, "anonymousId": "c4", "traits": {"phone": "601 234 567"}},
        # A cookie (trimmed, case kept) that reads like the address.
        {"id": "5", "t": 4, "anonymousId": "Office@Shop.com"},
        {"id": "6", "t": 5, "anonymousId": "Office@Shop.com"},
        {"id": "7", "t": 6, "anonymousId": "office@shop.com"},
        {"id": "8", "t": 7, "anonymousId": "office@shop.com"},
    ]
    ids = helpers.ingest(web_source, rows)
    engine.stitch_pending()
    assert len(helpers.partition()) == 4

    with django_capture_on_commit_callbacks(execute=True):
        email = config.blocked_value_add(category=None, value="Office@Shop.com", reason="shared", user=None)
        phone = config.blocked_value_add(category=None, value="+420 601 234 567", reason="", user=None)
    apart = {frozenset([i]) for i in ids[:6]} | {frozenset(ids[6:])}
    assert helpers.partition() == apart
    assert _statuses("email", "office@shop.com") == _statuses("phone", "+420601234567") == {"blocked"}
    assert _statuses("cookie", "Office@Shop.com") == {"blocked"}
    assert _statuses("cookie", "office@shop.com") == {"linked"}  # a cookie keeps its case
    reasons = set(EventIdentifier.objects.filter(status="blocked").values_list("reason", flat=True))
    assert reasons == {"blocked value: shared", "blocked value"}
    # New events carrying the values are refused at once, in any spelling.
    new = helpers.ingest(
        web_source,
        [
            {
                "id": "9",
                "t": 10,
                "anonymousId": "c1",
                "traits": {"email": "OFFICE@shop.com ", "phone": "00420601234567"},
            },
            {"id": "10", "t": 11, "anonymousId": "c3", "traits": {"email": "office@shop.com"}},
        ],
    )
    engine.stitch_pending()
    # Each joins the customer of its cookie only.
    apart -= {frozenset([ids[0]]), frozenset([ids[2]])}
    apart |= {frozenset([ids[0], new[0]]), frozenset([ids[2], new[1]])}
    assert helpers.partition() == apart

    # A full rebuild refuses the same links.
    links = set(EventIdentifier.objects.values_list("event_id", "identifier_id", "status", "reason"))
    engine.restitch()
    assert helpers.partition() == apart
    assert set(EventIdentifier.objects.values_list("event_id", "identifier_id", "status", "reason")) == links

    # Unblocked, they link again: incrementally, and in a full rebuild.
    with django_capture_on_commit_callbacks(execute=True):
        config.blocked_value_remove(blocked_value=email, user=None)
        config.blocked_value_remove(blocked_value=phone, user=None)
    joined = {frozenset([*ids[0:4], *new]), frozenset(ids[4:6]), frozenset(ids[6:])}
    assert helpers.partition() == joined
    engine.restitch()
    assert helpers.partition() == joined


def test_the_restitch_a_change_causes_is_queued_with_it_and_survives_a_failed_run(
    shared_address, admin_user, django_capture_on_commit_callbacks, monkeypatch
):
    from stitching.models import RestitchRequest
    from stitching.services import engine

    email = shared_address
    assert not RestitchRequest.objects.exists()  # (what the rule changes queued was worked off)

    # The block commits with its re-stitch queued; the run after commit fails (a worker killed, a bug): the
    # request stays, its attempt counted, and the customer stays joined until a later run.
    def broken(*args, **kwargs):
        raise RuntimeError("worker died")

    monkeypatch.setattr(engine, "_restitch_once", broken)
    with django_capture_on_commit_callbacks(execute=True):  # (the change itself succeeds)
        config.blocked_value_add(category=email, value="team@example.com", reason="shared", user=admin_user)
    request = RestitchRequest.objects.get()
    assert request.attempts == 1 and request.identifier_id is not None
    assert customers_count() == 1

    # The beat's run (the task) works it off: the split happens, the queue is empty.
    monkeypatch.undo()
    from stitching.tasks import restitch_requested

    assert restitch_requested() == 1
    assert not RestitchRequest.objects.exists()
    assert customers_count() == 2


def test_a_queued_restitch_of_a_customer_merged_away_meanwhile_is_done_on_the_customer_it_joined(web_source):
    from cdp.services.data_sources import data_source_create
    from stitching.models import RestitchRequest
    from stitching.services import engine
    from tests.stitching.helpers import ingest as ingest_rows
    from tests.stitching.helpers import partition

    crm, _ = data_source_create(slug="crm", name="CRM", type="other")
    email, user, cookie = (StitchingCategory.objects.get(pk=slug) for slug in ("email", "user_id", "cookie"))
    config.rule_create(source=web_source, category=cookie, path="anonymousId")
    config.rule_create(source=web_source, category=user, path="userId")
    config.rule_create(source=crm, category=user, path="userId")
    config.rule_create(source=crm, category=email, path="email")
    ingest_rows(crm, [{"id": "s1", "t": 0, "userId": "u1"}])
    engine.stitch_pending()
    ingest_rows(web_source, [{"id": "e1", "t": 1, "anonymousId": "c1", "traits": {"email": "x@example.com"}}])
    ingest_rows(crm, [{"id": "z1", "t": 2, "userId": "u9", "email": "x@example.com"}])
    engine.stitch_pending()
    engine.restitch_requested()
    # A new rule queues e1's customer (no worker has run yet); meanwhile e2 merges that customer into s1's.
    config.rule_create(source=web_source, category=email, path="traits.email")
    assert RestitchRequest.objects.exists()
    ingest_rows(web_source, [{"id": "e2", "t": 3, "anonymousId": "c1", "userId": "u1"}])
    engine.stitch_pending()

    engine.restitch_requested()
    incremental = partition(by="key")
    engine.restitch()
    assert incremental == partition(by="key")


def test_a_failing_queued_restitch_does_not_hold_back_the_others(shared_address, monkeypatch):
    from stitching.models import Identifier, RestitchRequest
    from stitching.services import engine

    team = Identifier.objects.get(category_id="email", value="team@example.com")
    BlockedValue.objects.create(category=shared_address, value="team@example.com")  # behind the services' back
    bad = RestitchRequest.objects.create(identifier_id=10**12)
    RestitchRequest.objects.create(identifier_id=team.pk)
    real = engine._restitch_once

    def failing_on_bad(identifier_ids, entity_ids, **kwargs):
        if bad.identifier_id in identifier_ids:
            raise RuntimeError("cannot re-stitch this one")
        return real(identifier_ids, entity_ids, **kwargs)

    monkeypatch.setattr(engine, "_restitch_once", failing_on_bad)
    with pytest.raises(engine.RestitchFailed, match=str(bad.pk)):
        engine.restitch_requested()
    # The good request was done (the block split the customer); only the bad one stays, its attempt counted.
    assert customers_count() == 2
    assert list(RestitchRequest.objects.values_list("pk", "attempts")) == [(bad.pk, 1)]


def test_a_stale_stitching_run_does_not_reopen_a_hub_blocked_in_review(web_source, admin_user):
    from django.db import connection

    from stitching.services.engine import HUB_REVIEWS_OPEN_SQL

    graph = GraphBuilder(web_source)
    review = HubReview.objects.create(identifier=graph.identifier("cookie", "kiosk", None), entity_count=5)
    config.hub_review_decide(review=review, approve=False, user=admin_user)
    # What a run that loaded the configuration before the decision writes when it finds the value a hub again.
    with connection.cursor() as cursor:
        cursor.execute(HUB_REVIEWS_OPEN_SQL, [[review.identifier_id], [6]])
    review.refresh_from_db()
    assert review.status == HubReview.Status.BLOCKED and review.decided_by == admin_user


def test_a_jsonpath_style_path_is_refused_with_the_path_to_write():
    with pytest.raises(ValidationError, match="without JSONPath's '\\$.', e.g. 'traits.email'"):
        config.path_validate("$.traits.email")
    assert config.path_validate("$email") == "$email"  # (a key of its own, as some trackers name them)
