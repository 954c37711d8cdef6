"""Demo data: roles, users, four data sources and a few thousand realistic events, through the real services.

Deterministic: the same seed gives the same people, events and message ids, so loading twice stores nothing
twice (events are idempotent on their message id; roles, users and sources are looked up by name first).
Event times are spread over the 90 days before `now`; a later run re-sends the same message ids with shifted
times, and the idempotent insert keeps the first copy.

The people overlap on purpose, the way real tracking data does: a browser cookie (`anonymousId`) that later
identifies with a `userId` and `traits.email`, the same user on the mobile app with another device id, the CRM
knowing them by email and phone (written differently), a shared family computer, and a junk test address
typed into sign-up forms by several people. Stitching has something to do.
"""

from __future__ import annotations

import random
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction

from cdp.features import ALL_FEATURES, Feature
from cdp.models import DataSource, Role, User
from cdp.services.attributes import attributes_recompute
from cdp.services.auth import role_create, user_create
from cdp.services.data_sources import data_source_create, data_source_rotate_write_key
from cdp.services.events import EventRecord, event_record_build, events_ingest
from cdp.services.secrets import secret_digest
from stitching.services import engine
from stitching.services.defaults import demo_rules_ensure

DEMO_SEED = 20_240_601
DEMO_CUSTOMERS = 200
DEMO_DAYS = 90
INGEST_BATCH = 1000

DEMO_ROLES: dict[str, tuple[str, list[str]]] = {
    "Marketer": (
        "Browses customers, builds and exports segments, blocks email addresses.",
        [
            Feature.CUSTOMERS_VIEW,
            Feature.SEGMENTS_VIEW,
            Feature.SEGMENTS_EDIT,
            Feature.EXPORTS_RUN,
            Feature.EMAILS_BLOCK,
        ],
    ),
    "Analyst": (
        "Loads events, defines stitching rules and attributes, builds segments.",
        [
            Feature.CUSTOMERS_VIEW,
            Feature.EVENTS_CREATE,
            Feature.DATA_SOURCES_VIEW,
            Feature.STITCHING_EDIT,
            Feature.ATTRIBUTES_EDIT,
            Feature.SEGMENTS_VIEW,
            Feature.SEGMENTS_EDIT,
            Feature.EXPORTS_RUN,
        ],
    ),
    "Administrator": ("Everything, including users, roles and settings.", sorted(ALL_FEATURES)),
}

# (username, first name, last name, role)
DEMO_USERS = [
    ("marketer", "Marta", "Novak", "Marketer"),
    ("analyst", "Adam", "Horvat", "Analyst"),
]

# (slug, name, type, description)
DEMO_SOURCES = [
    ("web", "Website", DataSource.Type.WEB, "analytics.js on the shop website (Segment-compatible /v1/ API)."),
    ("mobile", "Mobile app", DataSource.Type.MOBILE, "The iOS and Android shop app (Segment mobile SDKs)."),
    ("crm", "CRM", DataSource.Type.CRM, "Contacts synchronised from the CRM every night."),
    ("emails", "Email provider", DataSource.Type.EMAIL, "Delivery and engagement webhooks of the email provider."),
]

FIRST_NAMES = [
    "Anna", "Jan", "Eva", "Petr", "Lucie", "Tomas", "Klara", "Martin", "Tereza", "Jakub", "Sofia", "David",
    "Ema", "Lukas", "Nela", "Filip", "Julie", "Ondrej", "Marie", "Vojtech", "Laura", "Matej", "Adela", "Samuel",
]  # fmt: skip
LAST_NAMES = [
    "Novak", "Svoboda", "Dvorak", "Cerny", "Prochazka", "Kucera", "Vesely", "Horak", "Nemec", "Pokorny",
    "Marek", "Pospisil", "Hajek", "Jelinek", "Kral", "Ruzicka", "Benes", "Fiala", "Sedlacek", "Dolezal",
]  # fmt: skip
EMAIL_DOMAINS = ["gmail.com", "seznam.cz", "outlook.com", "example.com", "email.cz", "icloud.com"]
# A junk address people type into sign-up forms; stitching must not merge everyone who used it.
JUNK_EMAIL = "test@test.com"
PRODUCTS = [
    ("SKU-1001", "Trail running shoes", "Shoes", 129.0),
    ("SKU-1002", "Rain jacket", "Outerwear", 159.0),
    ("SKU-1003", "Merino base layer", "Clothing", 69.0),
    ("SKU-1004", "Hiking backpack 30 l", "Bags", 99.0),
    ("SKU-1005", "Insulated bottle", "Accessories", 24.5),
    ("SKU-1006", "Trekking poles", "Accessories", 79.0),
    ("SKU-1007", "Down vest", "Outerwear", 139.0),
    ("SKU-1008", "Wool socks (3 pack)", "Clothing", 19.9),
]
PAGES = [
    ("/", "Home"),
    ("/men", "Men"),
    ("/women", "Women"),
    ("/sale", "Sale"),
    ("/blog/how-to-layer", "How to layer for the mountains"),
    ("/stores", "Our stores"),
    ("/help/shipping", "Shipping and returns"),
]
REFERRERS = ["https://www.google.com/", "https://www.facebook.com/", "https://www.instagram.com/", "", ""]
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
]
CAMPAIGNS = [
    ("cmp-spring-sale", "Spring sale"),
    ("cmp-new-arrivals", "New arrivals"),
    ("cmp-hiking-guide", "The hiking guide"),
    ("cmp-loyalty", "Loyalty programme"),
]


@dataclass(frozen=True)
class DemoPerson:
    """One demo customer and every identifier they show up with."""

    number: int
    first_name: str
    last_name: str
    email: str
    phone: str
    user_id: str | None  # registered on the website
    web_cookies: tuple[str, ...]  # anonymousId per browser
    mobile_device: str | None  # anonymousId of the app install
    crm_id: str | None
    subscribed: bool


@dataclass
class DemoDataSummary:
    """What a load created; `write_keys` holds plain keys of sources created now (shown once)."""

    customers: int = 0
    roles_created: int = 0
    users_created: int = 0
    sources_created: int = 0
    events_total: int = 0
    events_created: int = 0
    events_duplicate: int = 0
    segments_created: int = 0
    write_keys: dict[str, str] = field(default_factory=dict)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def demo_people(*, count: int = DEMO_CUSTOMERS, seed: int = DEMO_SEED) -> list[DemoPerson]:
    """The demo customers, the same for the same seed."""
    rng = random.Random(seed)
    people = []
    shared_family_cookie = _uuid(rng)
    for number in range(1, count + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email = f"{first}.{last}{number}@{rng.choice(EMAIL_DOMAINS)}".lower()
        phone = f"+420 7{rng.randint(10, 99)} {rng.randint(100, 999)} {rng.randint(100, 999)}"
        cookies = [_uuid(rng) for _ in range(rng.choice((1, 1, 1, 2, 2, 3)))]
        if number % 50 == 7:  # a computer the whole family uses
            cookies.append(shared_family_cookie)
        people.append(
            DemoPerson(
                number=number,
                first_name=first,
                last_name=last,
                email=email,
                phone=phone,
                user_id=f"u-{number:05d}" if rng.random() < 0.6 else None,
                web_cookies=tuple(cookies),
                mobile_device=_uuid(rng).upper() if rng.random() < 0.35 else None,
                crm_id=f"CRM-{100000 + number * 7}" if rng.random() < 0.4 else None,
                subscribed=rng.random() < 0.5,
            )
        )
    return people


class _EventWriter:
    """Builds the records of one source with deterministic message ids."""

    def __init__(self, *, source: DataSource, prefix: str, now: datetime) -> None:
        self.source = source
        self.prefix = prefix
        self.now = now
        self.counter = 0
        self.records: list[EventRecord] = []

    def add(self, *, type: str, at: datetime, payload: dict[str, Any], message_id: str | None = None) -> str:
        self.counter += 1
        message_id = message_id or f"demo-{self.prefix}-{self.counter:06d}"
        self.records.append(
            event_record_build(
                source_id=self.source.pk, type=type, event_time=at, payload=payload, message_id=message_id, now=self.now
            )
        )
        return message_id


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _segment_send(
    writer: _EventWriter, *, kind: str, when: datetime, ids: dict, extra: dict, library: dict, context: dict
) -> None:
    """Add a Segment message as the SDKs send it (and as /v1/ stores it: the whole message is the payload).

    The stored type is the event name for `track`, the message type otherwise, as the /v1/ endpoints do.
    """
    message_id = f"demo-{writer.prefix}-{writer.counter + 1:06d}"
    message = {
        "type": kind,
        "messageId": message_id,
        "timestamp": _iso(when),
        "sentAt": _iso(when + timedelta(milliseconds=350)),
        "context": {"library": library, **context},
        **ids,
        **extra,
    }
    writer.add(type=extra.get("event", kind), at=when, payload=message, message_id=message_id)


WEB_LIBRARY = {"name": "analytics.js", "version": "next-1.70.0"}


def _web_events(person: DemoPerson, writer: _EventWriter, rng: random.Random) -> None:
    """Browsing sessions: page views, product views, a login (identify) and sometimes an order."""
    logged_in = False
    for _ in range(rng.randint(1, 5)):
        at = writer.now - timedelta(seconds=rng.randint(3600, DEMO_DAYS * 86400))
        referrer = rng.choice(REFERRERS)
        device = {"ip": f"203.0.113.{rng.randint(1, 254)}", "userAgent": rng.choice(USER_AGENTS), "locale": "cs-CZ"}
        cookie = rng.choice(person.web_cookies)

        def session_send(kind: str, extra: dict, page: tuple[str, str], *, when: datetime, user: bool) -> None:
            path, title = page
            url = f"https://shop.example.com{path}"
            context = {**device, "page": {"path": path, "title": title, "url": url, "referrer": referrer}}  # noqa: B023
            ids = {"anonymousId": cookie, **({"userId": person.user_id} if user else {})}  # noqa: B023
            _segment_send(writer, kind=kind, when=when, ids=ids, extra=extra, library=WEB_LIBRARY, context=context)

        user = logged_in and person.user_id is not None
        for _ in range(rng.randint(1, 4)):
            path, title = rng.choice(PAGES)
            extra = {"name": title, "properties": {"path": path, "title": title, "referrer": referrer}}
            session_send("page", extra, (path, title), when=at, user=user)
            at += timedelta(seconds=rng.randint(5, 240))
        viewed = rng.sample(PRODUCTS, rng.randint(0, 3))
        for sku, name, category, price in viewed:
            properties = {"product_id": sku, "name": name, "category": category, "price": price, "currency": "EUR"}
            extra = {"event": "Product Viewed", "properties": properties}
            session_send("track", extra, (f"/p/{sku.lower()}", name), when=at, user=user)
            at += timedelta(seconds=rng.randint(10, 300))
        if person.user_id and not logged_in and rng.random() < 0.7:
            logged_in = user = True
            # A few people typed a junk address into the newsletter box before they logged in properly.
            email = JUNK_EMAIL if person.number % 15 == 3 else person.email
            traits = {"email": email, "firstName": person.first_name, "lastName": person.last_name}
            if rng.random() < 0.5:
                traits["phone"] = person.phone
            session_send("identify", {"traits": traits}, ("/account", "My account"), when=at, user=True)
            at += timedelta(seconds=rng.randint(5, 60))
        if viewed and rng.random() < 0.45:
            products = [
                {"product_id": sku, "name": name, "category": category, "price": price, "quantity": rng.randint(1, 2)}
                for sku, name, category, price in viewed
            ]
            revenue = round(sum(p["price"] * p["quantity"] for p in products), 2)
            order = {
                "order_id": f"WEB-{person.number:04d}-{writer.counter:06d}",
                "revenue": revenue,
                "shipping": 4.9 if revenue < 100 else 0.0,
                "currency": "EUR",
                "products": products,
            }
            if not user:
                order["email"] = person.email  # a guest checkout still asks for the address
            extra = {"event": "Order Completed", "properties": order}
            session_send("track", extra, ("/checkout/done", "Thank you"), when=at, user=user)


def _mobile_events(person: DemoPerson, writer: _EventWriter, rng: random.Random) -> None:
    """App sessions on one device: opens, screens, an identify after login, sometimes an order."""
    if person.mobile_device is None:
        return
    ios = rng.random() < 0.5
    library = (
        {"name": "analytics-ios", "version": "4.1.8"} if ios else {"name": "analytics-android", "version": "4.11.3"}
    )
    context = {
        "app": {"name": "Shop", "version": "3.4.1", "build": "341"},
        "device": {"id": person.mobile_device, "manufacturer": "Apple" if ios else "Samsung"},
        "os": {"name": "iOS", "version": "17.5"} if ios else {"name": "Android", "version": "14"},
        "locale": "cs-CZ",
    }
    identified = False
    for _ in range(rng.randint(1, 4)):
        at = writer.now - timedelta(seconds=rng.randint(3600, DEMO_DAYS * 86400))
        ids = {"anonymousId": person.mobile_device}
        if identified and person.user_id:
            ids["userId"] = person.user_id
        send = {"library": library, "context": context}
        extra = {"event": "Application Opened", "properties": {"from_background": rng.random() < 0.5}}
        _segment_send(writer, kind="track", when=at, ids=ids, extra=extra, **send)
        for screen in rng.sample(["Home", "Catalogue", "Product", "Basket", "Stores"], rng.randint(1, 3)):
            at += timedelta(seconds=rng.randint(5, 120))
            _segment_send(writer, kind="screen", when=at, ids=ids, extra={"name": screen}, **send)
        if person.user_id and not identified:
            identified = True
            ids = {**ids, "userId": person.user_id}
            at += timedelta(seconds=rng.randint(5, 60))
            email = person.email.upper() if rng.random() < 0.2 else person.email  # an old app version upper-cased it
            _segment_send(writer, kind="identify", when=at, ids=ids, extra={"traits": {"email": email}}, **send)
        if rng.random() < 0.3:
            sku, name, category, price = rng.choice(PRODUCTS)
            at += timedelta(seconds=rng.randint(30, 600))
            order = {
                "order_id": f"APP-{person.number:04d}-{writer.counter:06d}",
                "revenue": price,
                "currency": "EUR",
                "products": [{"product_id": sku, "name": name, "category": category, "price": price, "quantity": 1}],
            }
            extra = {"event": "Order Completed", "properties": order}
            _segment_send(writer, kind="track", when=at, ids=ids, extra=extra, **send)


def _crm_events(person: DemoPerson, writer: _EventWriter, rng: random.Random) -> None:
    if person.crm_id is None:
        return
    at = writer.now - timedelta(seconds=rng.randint(30 * 86400, DEMO_DAYS * 86400))
    contact = {
        "crm_id": person.crm_id,
        "email": f"  {person.email.title()} " if rng.random() < 0.2 else person.email,  # as typed by sales
        "phone": person.phone.replace(" ", "") if rng.random() < 0.5 else f"00420{person.phone[4:]}",
        "first_name": person.first_name,
        "last_name": person.last_name,
        "lifecycle_stage": "lead",
    }
    writer.add(type="contact_created", at=at, payload=contact)
    for stage in ("customer", "loyal customer")[: rng.randint(0, 2)]:
        at += timedelta(days=rng.randint(1, 20))
        if at >= writer.now:
            break
        writer.add(type="contact_updated", at=at, payload={**contact, "lifecycle_stage": stage})


def _email_events(person: DemoPerson, writer: _EventWriter, rng: random.Random) -> None:
    if not person.subscribed:
        return
    for campaign_id, campaign_name in rng.sample(CAMPAIGNS, rng.randint(1, len(CAMPAIGNS))):
        # At least a day ago: opens and clicks follow within hours and must not land in the future.
        at = writer.now - timedelta(seconds=rng.randint(86400, DEMO_DAYS * 86400))
        base = {
            "email": person.email,
            "campaign": {"id": campaign_id, "name": campaign_name},
            "message_id": f"<{campaign_id}.{person.number}@mail.shop.example.com>",
        }
        if rng.random() < 0.03:
            writer.add(type="email_bounced", at=at, payload={**base, "bounce_type": rng.choice(["soft", "hard"])})
            continue
        writer.add(type="email_delivered", at=at, payload=base)
        if rng.random() < 0.55:
            at += timedelta(minutes=rng.randint(1, 600))
            writer.add(type="email_opened", at=at, payload=base)
            if rng.random() < 0.35:
                at += timedelta(seconds=rng.randint(5, 300))
                writer.add(type="email_clicked", at=at, payload={**base, "url": "https://shop.example.com/sale"})


def _consents_record(*, customers: int, seed: int, now: datetime) -> None:
    """The subscribed customers' newsletter consent (a tenth unsubscribed again later), through the email channel's
    service, so its address state agrees with the events and the demo's newsletter segment has an audience. Safe to
    run again (each event has its key)."""
    from emails.services.state import email_consent_change  # lazy: emails builds on cdp

    for person in demo_people(count=customers, seed=seed):
        if not person.subscribed:
            continue
        rng = random.Random(f"{seed}-consent-{person.number}")
        # Before the campaigns they received (all within DEMO_DAYS).
        at = now - timedelta(seconds=rng.randint(DEMO_DAYS * 86400, (DEMO_DAYS + 60) * 86400))
        email_consent_change(
            email=person.email, consent=True, type="subscription_confirmed", event_time=at,
            key=f"demo-consent-{person.number}", source="the shop's newsletter form",
        )  # fmt: skip
        if rng.random() < 0.1:
            at = now - timedelta(seconds=rng.randint(3600, DEMO_DAYS * 86400 // 2))
            email_consent_change(
                email=person.email, consent=False, type="unsubscribe", event_time=at,
                key=f"demo-unsubscribe-{person.number}", source="the unsubscribe link",
            )  # fmt: skip


def demo_event_records(
    *, sources: dict[str, DataSource], now: datetime, customers: int = DEMO_CUSTOMERS, seed: int = DEMO_SEED
) -> list[EventRecord]:
    """Every demo event as a validated record, in a deterministic order (message ids do not depend on `now`)."""
    writers = {
        slug: _EventWriter(source=sources[slug], prefix=slug, now=now) for slug in ("web", "mobile", "crm", "emails")
    }
    builders: list[tuple[str, Callable[[DemoPerson, _EventWriter, random.Random], None]]] = [
        ("web", _web_events),
        ("mobile", _mobile_events),
        ("crm", _crm_events),
        ("emails", _email_events),
    ]
    for person in demo_people(count=customers, seed=seed):
        for slug, build in builders:
            # One generator per person and source: changing one source's events does not reshuffle the others.
            build(person, writers[slug], random.Random(f"{seed}-{slug}-{person.number}"))
    return [record for writer in writers.values() for record in writer.records]


@transaction.atomic
def demo_roles_ensure() -> tuple[dict[str, Role], int]:
    """The demo roles, created when missing (an existing role of that name is left as an admin edited it)."""
    roles, created = {}, 0
    for name, (description, features) in DEMO_ROLES.items():
        role = Role.objects.filter(name=name).first()
        if role is None:
            role = role_create(name=name, features=list(features), description=description)
            created += 1
        roles[name] = role
    return roles, created


@transaction.atomic
def demo_users_ensure(*, roles: dict[str, Role]) -> int:
    """Demo colleagues with narrower roles; no usable password (an administrator can set one)."""
    created = 0
    for username, first_name, last_name, role_name in DEMO_USERS:
        if not User.objects.filter(username=username).exists():
            user_create(
                username=username,
                password=None,
                email=f"{username}@shop.example.com",
                role=roles[role_name],
                first_name=first_name,
                last_name=last_name,
            )
            created += 1
    return created


@transaction.atomic
def demo_sources_ensure() -> tuple[dict[str, DataSource], dict[str, str]]:
    """The demo data sources by slug, and the plain write keys of those created now."""
    sources, new_keys = {}, {}
    for slug, name, type_, description in DEMO_SOURCES:
        source = DataSource.objects.filter(slug=slug).first()
        if source is None:
            source, key = data_source_create(slug=slug, name=name, type=type_, description=description)
            new_keys[slug] = key
        sources[slug] = source
    return sources, new_keys


def demo_data_load(
    *,
    customers: int = DEMO_CUSTOMERS,
    now: datetime | None = None,
    seed: int = DEMO_SEED,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> DemoDataSummary:
    """Create the demo roles, users, sources and events; safe to run again (nothing is stored twice).

    `on_total(n)` is called once with the number of events, then `progress(k)` after each stored batch of k.
    """
    now = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    summary = DemoDataSummary(customers=customers)
    roles, summary.roles_created = demo_roles_ensure()
    summary.users_created = demo_users_ensure(roles=roles)
    sources, summary.write_keys = demo_sources_ensure()
    demo_rules_ensure(sources=sources)
    summary.sources_created = len(summary.write_keys)
    records = demo_event_records(sources=sources, now=now, customers=customers, seed=seed)
    summary.events_total = len(records)
    if on_total:
        on_total(len(records))
    for start in range(0, len(records), INGEST_BATCH):
        batch = records[start : start + INGEST_BATCH]
        created = sum(outcome.created for outcome in events_ingest(batch))
        summary.events_created += created
        summary.events_duplicate += len(batch) - created
        if progress:
            progress(len(batch))
    _consents_record(customers=customers, seed=seed, now=now)
    # Stitch now rather than wait for a worker: the demo is small, and there may be no broker.
    while engine.stitch_pending().remaining:
        pass
    # Likewise the attributes of the customers stitching touched, so profiles show values at once.
    attributes_recompute()
    summary.segments_created = demo_segments_ensure()
    # Their sizes today, from the values just computed: the segment list shows them at once instead of "—" until
    # the daily snapshot (a marketer's first look at the demo).
    from segments.services import segments_size_record_all

    segments_size_record_all()
    return summary


# Segments a marketer finds in the demo (name, description, tags, conditions); the last one is the exclusion
# marketing case of the Audience API seed, over the email channel's consent and block attributes.
DEMO_SEGMENTS: list[tuple[str, str, list[str], dict]] = [
    ("Big spenders", "Customers whose completed orders add up to 300 or more.", ["value"],
     {"operator": "and", "children": [{"attribute": "total_revenue", "operator": "gte", "value": 300}]}),
    ("Lapsed buyers", "Ordered before, but not in the last 60 days: a win-back campaign.", ["retention"],
     {"operator": "and", "children": [
         {"attribute": "orders_count", "operator": "gte", "value": 1},
         {"attribute": "last_order_time", "operator": "within_last_days", "value": 60, "negate": True},
     ]}),
    ("Leads without an order", "CRM leads who never completed an order.", ["crm"],
     {"operator": "and", "children": [
         {"attribute": "lifecycle_stage", "operator": "equals", "value": "lead"},
         {"attribute": "total_revenue", "operator": "equals", "value": 0},
     ]}),
    ("Newsletter audience", "Consent given and not blocked: who an email campaign may reach.", ["email"],
     {"operator": "and", "children": [
         {"attribute": "email_consent", "operator": "is_true"},
         {"attribute": "email_blocked", "operator": "is_true", "negate": True},
     ]}),
]  # fmt: skip


def demo_segments_ensure() -> int:
    """The demo segments (owned by the demo marketer; administrators see every segment) and a CSV export
    destination; returns how many segments were created. Skips a segment whose attributes are not defined (the
    definitions may have been edited)."""
    from django.core.exceptions import ValidationError

    from cdp.models import Attribute
    from segments.exports.models import ExportDestination
    from segments.exports.services import destination_create
    from segments.models import Segment
    from segments.services import segment_create

    owner = User.objects.filter(username="marketer").first()
    defined = set(Attribute.objects.values_list("pk", flat=True))
    created = 0
    for name, description, tags, conditions in DEMO_SEGMENTS:
        used = {c["attribute"] for c in conditions["children"]}
        if Segment.objects.filter(name=name).exists() or not used <= defined:
            continue
        try:
            segment_create(owner=owner, name=name, description=description, conditions=conditions, tags=tags)
        except ValidationError:
            continue
        created += 1
    if not ExportDestination.objects.filter(name="CSV download").exists():
        destination_create(name="CSV download", kind="csv", config={}, mandatory_attributes=["ps_email_address"])
    return created


def demo_write_key_ensure(*, slug: str, known_key: str | None) -> str:
    """The source's plain write key: `known_key` when it is still the current one, else a freshly rotated key.

    Keys are stored hashed, so the demo keeps the plain key in a file; if that file was lost, rotate.
    """
    source = DataSource.objects.get(slug=slug)
    if known_key and source.write_key_hash == secret_digest(known_key):
        return known_key
    return data_source_rotate_write_key(source=source)


def demo_password_generate() -> str:
    return secrets.token_urlsafe(12)


@transaction.atomic
def demo_admin_ensure(*, username: str, password: str) -> tuple[User, bool]:
    """A superuser with this password: created, or reset (re-activated, password set). Returns (user, created)."""
    user = User.objects.filter(username=username).first()
    if user is None:
        return user_create(
            username=username, password=password, email=f"{username}@example.com", is_superuser=True
        ), True
    user.set_password(password)
    user.is_superuser = user.is_staff = user.is_active = True
    user.save(update_fields=["password", "is_superuser", "is_staff", "is_active"])
    return user, False
