"""Demo data (cdp/services/demo.py and manage.py load_demo_data): realistic, deterministic, idempotent."""

from collections import Counter
from datetime import UTC, datetime

import pytest
from django.core.management import call_command

from cdp.features import ALL_FEATURES
from cdp.models import ApiToken, CustomerEvent, DataSource, Role, User
from cdp.services.data_sources import data_source_by_write_key
from cdp.services.demo import JUNK_EMAIL, demo_data_load, demo_event_records, demo_sources_ensure

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def table_counts() -> dict[str, int]:
    return {
        "events": CustomerEvent.objects.count(),
        "sources": DataSource.objects.count(),
        "roles": Role.objects.count(),
        "users": User.objects.count(),
        "tokens": ApiToken.objects.count(),
    }


def test_load_demo_data_twice_stores_everything_once(db, tmp_path):
    files = ["--admin-password-file", str(tmp_path / "pw"), "--write-key-file", str(tmp_path / "key")]
    call_command("load_demo_data", *files, verbosity=0)
    first = table_counts()
    password, key = (tmp_path / "pw").read_text(), (tmp_path / "key").read_text()

    call_command("load_demo_data", *files, verbosity=0)

    assert table_counts() == first
    assert first["events"] > 2000 and first["sources"] == 4 and first["roles"] == 3 and first["users"] == 3
    # The same admin password and write key across runs, and they work.
    assert (tmp_path / "pw").read_text() == password and (tmp_path / "key").read_text() == key
    assert User.objects.get(username="admin").check_password(password.strip())
    assert data_source_by_write_key(key.strip()).slug == "web"


def test_demo_events_are_the_same_for_the_same_seed_whatever_the_time(db):
    sources, _ = demo_sources_ensure()

    first = demo_event_records(sources=sources, now=NOW)
    later = demo_event_records(sources=sources, now=datetime(2026, 4, 1, tzinfo=UTC))

    assert [r.idempotency_key for r in first] == [r.idempotency_key for r in later]
    assert len({(r.source_id, r.idempotency_key) for r in first}) == len(first)


def test_demo_events_cover_the_last_90_days_with_realistic_types(db):
    sources, _ = demo_sources_ensure()

    records = demo_event_records(sources=sources, now=NOW)

    assert 2000 < len(records) < 10000
    assert all((NOW - r.event_time).days <= 90 and r.event_time < NOW for r in records)
    types = Counter(r.type for r in records)
    for expected in (
        "page",
        "Product Viewed",
        "Order Completed",
        "identify",
        "screen",
        "contact_created",
        "email_delivered",
        "email_opened",
    ):
        assert types[expected] > 0, expected


def test_demo_identifiers_overlap_across_sources(db):
    summary = demo_data_load(now=NOW)

    assert summary.events_created == summary.events_total
    identifies = CustomerEvent.objects.filter(type="identify", source__slug="web")
    assert identifies.filter(payload__userId__isnull=False, payload__anonymousId__isnull=False).exists()
    assert identifies.filter(payload__traits__email=JUNK_EMAIL).count() > 1
    web_users = set(identifies.values_list("payload__userId", flat=True))
    mobile_users = set(
        CustomerEvent.objects.filter(type="identify", source__slug="mobile").values_list("payload__userId", flat=True)
    )
    assert web_users & mobile_users
    purchases = CustomerEvent.objects.filter(type="Order Completed")
    assert purchases.filter(payload__properties__revenue__gt=0).count() == purchases.count() > 10


def test_demo_roles_give_the_marketer_the_marketing_features(db):
    demo_data_load(customers=1, now=NOW)

    assert set(Role.objects.get(name="Marketer").features) == {
        "customers_view",
        "segments_view",
        "segments_edit",
        "exports_run",
        "emails_block",
    }
    assert set(Role.objects.get(name="Administrator").features) == ALL_FEATURES
    assert User.objects.get(username="marketer").has_feature("emails_block")
    assert not User.objects.get(username="marketer").has_usable_password()


@pytest.mark.parametrize("customers", ["0", "-3"])
def test_load_demo_data_refuses_a_customer_count_below_one(db, customers, capsys):
    with pytest.raises(SystemExit):
        call_command("load_demo_data", "--customers", customers, verbosity=0)

    assert "--customers must be at least 1" in capsys.readouterr().err


def test_demo_has_segments_with_members_and_a_csv_destination(db):
    from segments.exports.models import ExportDestination
    from segments.models import Segment
    from segments.selectors import segment_members_count

    first = demo_data_load(customers=40, now=NOW)
    again = demo_data_load(customers=40, now=NOW)

    assert first.segments_created == 4 and again.segments_created == 0
    segments = {s.name: s for s in Segment.objects.all()}
    assert set(segments) == {"Big spenders", "Lapsed buyers", "Leads without an order", "Newsletter audience"}
    assert all(s.owner.username == "marketer" for s in segments.values())
    assert segment_members_count(segment=segments["Big spenders"]) > 0
    # The subscribed customers gave their consent through the email channel (a few unsubscribed again): the
    # newsletter segment has an audience, and the channel's address state agrees with the attribute.
    from emails.models import EmailAddress

    audience = segment_members_count(segment=segments["Newsletter audience"])
    consenting = EmailAddress.objects.filter(consent=True).count()
    assert 0 < audience == consenting < 40
    assert EmailAddress.objects.filter(consent=False).exists()
    assert ExportDestination.objects.filter(name="CSV download", kind="csv").count() == 1
    # Their sizes are recorded at load: the segment list shows them at once, not "—" until the daily snapshot.
    from segments.models import SegmentSizeSnapshot

    sizes = dict(SegmentSizeSnapshot.objects.values_list("segment__name", "size"))
    assert sizes["Newsletter audience"] == audience
    assert sizes["Big spenders"] == segment_members_count(segment=segments["Big spenders"])
