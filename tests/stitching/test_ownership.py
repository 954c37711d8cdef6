"""An identifier belongs to a customer only while an event links it: a blocked value or a deleted rule takes it
away, incrementally and in a full rebuild, and the customer's identifier attributes and search follow."""

import pytest

from cdp.models import CustomerEntity, StaleEntity
from cdp.selectors import customers_search
from cdp.services import attributes as attribute_services
from cdp.services.events import event_record_build, events_ingest
from stitching.models import BlockedValue, Identifier, StitchingCategory
from stitching.services import config, engine

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(web_source):
    """Email and cookie rules on the web source, and an attribute listing the customer's emails."""
    email, cookie = StitchingCategory.objects.get(pk="email"), StitchingCategory.objects.get(pk="cookie")
    rule = config.rule_create(source=web_source, category=email, path="traits.email")
    config.rule_create(source=web_source, category=cookie, path="anonymousId")
    attribute_services.attribute_create(
        id="emails", name="Emails", computation="identifier_values", category="email", data_type="string"
    )
    return rule


def ingest(source, *payloads: dict) -> None:
    events_ingest(
        [
            event_record_build(source_id=source.pk, type="identify", event_time=f"2024-05-01T12:00:0{i}Z", payload=p)
            for i, p in enumerate(payloads)
        ]
    )
    engine.stitch_pending()
    attribute_services.attributes_recompute()


def owner(value: str) -> str | None:
    return Identifier.objects.get(category_id="email", value=value).customer_entity_id


def emails() -> list[list[str] | None]:
    return sorted(str(c.attributes.get("emails")) for c in CustomerEntity.objects.all())


def test_a_blocked_value_stops_belonging_to_its_customer(web_source, shop, django_capture_on_commit_callbacks):
    ingest(
        web_source,
        {"anonymousId": "c1", "traits": {"email": "team@example.com"}},
        {"anonymousId": "c2", "traits": {"email": "team@example.com"}},
        {"anonymousId": "c3", "traits": {"email": "solo@example.com"}},
    )
    assert CustomerEntity.objects.count() == 2 and owner("solo@example.com")
    with django_capture_on_commit_callbacks(execute=True):
        config.blocked_value_add(category=StitchingCategory.objects.get(pk="email"), value="team@example.com")
        config.blocked_value_add(category=StitchingCategory.objects.get(pk="email"), value="solo@example.com")
    # The shared address split its customer in two; the other customer kept its events and lost its address.
    assert CustomerEntity.objects.count() == 3
    assert owner("team@example.com") is None and owner("solo@example.com") is None
    assert emails() == ["None", "None", "None"]
    assert not customers_search(q="team@example.com").exists()
    assert not customers_search(q="solo@example.com").exists()


def test_a_deleted_rule_takes_its_identifiers_away(web_source, shop, django_capture_on_commit_callbacks):
    ingest(web_source, {"anonymousId": "c1", "traits": {"email": "jana@example.com"}})
    customer = CustomerEntity.objects.get()
    assert customer.attributes["emails"] == ["jana@example.com"]
    with django_capture_on_commit_callbacks(execute=True):
        config.rule_delete(rule=shop)
    customer.refresh_from_db()
    assert owner("jana@example.com") is None and "emails" not in customer.attributes
    assert not customers_search(q="jana@example.com").exists()


def test_a_full_rebuild_queues_the_customer_that_lost_an_identifier(web_source, shop):
    ingest(web_source, {"anonymousId": "c1", "traits": {"email": "jana@example.com"}})
    customer = CustomerEntity.objects.get()
    # Blocked behind the services' back: only the rebuild sees it; no event of the customer moves.
    BlockedValue.objects.create(category_id="email", value="jana@example.com")
    engine.restitch()
    assert owner("jana@example.com") is None
    assert StaleEntity.objects.filter(entity_id=customer.pk).exists()
    attribute_services.attributes_recompute()
    customer.refresh_from_db()
    assert "emails" not in customer.attributes


def test_a_deleted_rule_recomputes_the_events_that_still_carry_its_identifiers(
    web_source, django_capture_on_commit_callbacks
):
    """The CRM event's address was refused (a second user id) because of the web event; once the web rule is gone,
    the address belongs to the CRM customer, as a full rebuild makes it."""
    from cdp.services.data_sources import data_source_create
    from stitching.models import EventIdentifier
    from tests.stitching.helpers import ingest as ingest_rows
    from tests.stitching.helpers import partition

    crm, _ = data_source_create(slug="crm", name="CRM", type="other")
    email, user = StitchingCategory.objects.get(pk="email"), StitchingCategory.objects.get(pk="user_id")
    web_email = config.rule_create(source=web_source, category=email, path="traits.email")
    config.rule_create(source=web_source, category=user, path="userId")
    config.rule_create(source=crm, category=email, path="email")
    config.rule_create(source=crm, category=user, path="userId")
    for source, row in [
        (web_source, {"id": "e1", "t": 0, "userId": "u1", "traits": {"email": "x@example.com"}}),
        (crm, {"id": "e3", "t": 1, "userId": "u2"}),
        (crm, {"id": "e2", "t": 2, "userId": "u2", "email": "x@example.com"}),
    ]:
        ingest_rows(source, [row])
        engine.stitch_pending()
    assert EventIdentifier.objects.filter(identifier__value="x@example.com", status="limit").exists()

    def state():
        links = set(EventIdentifier.objects.values_list("event__idempotency_key", "identifier__value", "status"))
        return owner("x@example.com"), links, partition(by="key")

    with django_capture_on_commit_callbacks(execute=True):
        config.rule_delete(rule=web_email)
    incremental = state()
    engine.restitch()
    assert incremental == state()
    assert incremental[0] is not None  # the CRM customer's now
