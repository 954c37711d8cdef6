"""Deterministic event generator for benchmarks and demos.

N events over M people whose identifiers overlap the way real traffic does: each person has one to three
cookie ids (Segment `anonymousId`), maybe an email (sometimes sent with different case or stray whitespace),
maybe a phone (in mixed national / international formats) and maybe a user id once they log in. Events are
shaped like Segment messages (`userId`, `anonymousId`, `traits`, `context.traits`, `properties`), wrapped in
the `load_events` row format: `{"type", "event_time", "message_id", "payload"}`, in time order (as an export
of an event log is) over 90 days ending 2025-06-01, give or take a minute.

The same (size, people, seed) always gives byte-identical files; files are cached under bench/.cache/.

    python bench/generate.py 1000000 --format jsonl      # prints the path of the cached file
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
# A fixed window in the past: generated files never depend on today's date.
WINDOW_END = datetime(2025, 6, 1, tzinfo=UTC)
WINDOW = timedelta(days=90)

FIRST_NAMES = ["jana", "petr", "lucie", "tomas", "eva", "martin", "anna", "jakub", "tereza", "david", "marie", "jan"]
LAST_NAMES = ["novak", "svoboda", "dvorak", "cerny", "prochazka", "kucera", "vesely", "horak", "nemec", "pokorny"]
DOMAINS = ["gmail.com", "seznam.cz", "email.cz", "outlook.com", "example.org", "firma.cz"]
PAGES = ["/", "/men", "/women", "/sale", "/cart", "/checkout", "/blog/summer-style", "/account", "/search"]
PRODUCTS = [(f"SKU-{n:05d}", f"Product {n}", round(5 + (n * 7.31) % 240, 2)) for n in range(1, 400)]
CATEGORIES = ["shoes", "shirts", "jackets", "accessories", "bags"]
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605",
]
# (event type, weight)
EVENT_MIX = [
    ("page_view", 50),
    ("product_view", 25),
    ("add_to_cart", 10),
    ("purchase", 3),
    ("identify", 7),
    ("login", 5),
]


@dataclass(slots=True)
class Person:
    cookies: list[str]
    email: str | None
    phone: str | None
    user_id: str | None
    first_name: str


def _hex(rng: random.Random, bits: int) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def _uuid(rng: random.Random) -> str:
    h = _hex(rng, 128)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def _phone(rng: random.Random) -> str:
    digits = f"{rng.choice('67')}{rng.randrange(10**8):08d}"
    a, b, c = digits[:3], digits[3:6], digits[6:]
    return rng.choice([f"+420 {a} {b} {c}", f"00420{digits}", f"{a}-{b}-{c}", f"({a}) {b} {c}", f"+420{digits}"])


def _email_variant(rng: random.Random, email: str) -> str:
    """The same address as a person types it on different forms: case and whitespace vary."""
    roll = rng.random()
    if roll < 0.8:
        return email
    if roll < 0.9:
        return email.title()
    if roll < 0.95:
        return f" {email} "
    return email.upper()


def people_generate(count: int, rng: random.Random) -> list[Person]:
    people = []
    for n in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email = f"{first}.{last}{n}@{rng.choice(DOMAINS)}" if rng.random() < 0.75 else None
        phone = _phone(rng) if rng.random() < 0.45 else None
        user_id = f"u_{n:07d}" if rng.random() < 0.4 else None
        cookies = [_uuid(rng) for _ in range(rng.choice((1, 1, 1, 2, 2, 3)))]
        people.append(Person(cookies, email, phone, user_id, first))
    return people


def event_rows(events: int, people: int, seed: int):
    """Yield `events` rows as dicts in the load_events format. Deterministic for (events, people, seed)."""
    # Seeded by all three, so files of different sizes are different data sets, not prefixes of each other.
    rng = random.Random(f"{seed}:{events}:{people}")
    cast = people_generate(people, rng)
    types = [t for t, _ in EVENT_MIX]
    weights = [w for _, w in EVENT_MIX]
    start = WINDOW_END - WINDOW
    window_ms = int(WINDOW.total_seconds() * 1000)
    for n in range(events):
        # Skewed activity: a few people make many events, most make a few.
        person = cast[int(people * rng.random() ** 2.2)]
        event_type = rng.choices(types, weights)[0]
        # Files are exports of event logs: in time order, give or take a minute of clock skew and late arrivals.
        when = start + timedelta(milliseconds=window_ms * n // events + rng.randrange(-60_000, 60_000))
        cookie = rng.choice(person.cookies)
        known = person.user_id is not None and event_type in ("login", "purchase", "identify") or rng.random() < 0.1
        payload: dict = {
            "type": "identify" if event_type == "identify" else ("page" if event_type == "page_view" else "track"),
            "anonymousId": cookie,
            "context": {
                "ip": f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                "userAgent": rng.choice(USER_AGENTS),
                "page": {"path": rng.choice(PAGES), "referrer": rng.choice(["", "https://www.google.com/"])},
                "library": {"name": "analytics.js", "version": "5.2.0"},
            },
        }
        if known and person.user_id:
            payload["userId"] = person.user_id
        traits: dict = {}
        if event_type in ("identify", "login") or (event_type == "purchase" and rng.random() < 0.7):
            if person.email:
                traits["email"] = _email_variant(rng, person.email)
            if person.phone and rng.random() < 0.7:
                traits["phone"] = person.phone
            traits["firstName"] = person.first_name.title()
        if event_type == "identify":
            payload["traits"] = traits
        elif traits:
            payload["context"]["traits"] = traits
        if event_type in ("product_view", "add_to_cart", "purchase"):
            sku, name, price = rng.choice(PRODUCTS)
            properties: dict = {"product_id": sku, "name": name, "price": price, "category": rng.choice(CATEGORIES)}
            if event_type == "add_to_cart":
                properties["quantity"] = rng.randint(1, 3)
            if event_type == "purchase":
                quantity = rng.randint(1, 4)
                properties.update(
                    order_id=f"ORD-{_hex(rng, 40)}",
                    quantity=quantity,
                    amount=round(price * quantity, 2),
                    currency=rng.choice(["CZK", "EUR", "EUR", "USD"]),
                )
            payload["properties"] = properties
            payload["event"] = event_type.replace("_", " ").title()
        elif event_type == "page_view":
            payload["properties"] = {"path": payload["context"]["page"]["path"], "title": "Shop"}
        row = {
            "type": event_type,
            "event_time": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "payload": payload,
        }
        # Most clients send a message id; some rows rely on the content hash instead.
        if rng.random() < 0.9:
            row["message_id"] = _uuid(rng)
            payload["messageId"] = row["message_id"]
        yield row


def default_people(events: int) -> int:
    return max(10, events // 20)


def cache_path(events: int, people: int, seed: int, fmt: str) -> Path:
    return CACHE_DIR / f"events-{events}-p{people}-s{seed}.{fmt}"


def events_file(events: int, *, people: int | None = None, seed: int = 42, fmt: str = "jsonl") -> Path:
    """Path of the generated file, creating it (atomically) on first use."""
    people = people or default_people(events)
    path = cache_path(events, people, seed, fmt)
    if path.exists():
        return path
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    rows = event_rows(events, people, seed)
    if fmt == "jsonl":
        with tmp.open("wb", buffering=1 << 20) as out:
            for row in rows:
                out.write(orjson.dumps(row) + b"\n")
    elif fmt == "csv":
        with tmp.open("w", newline="", encoding="utf-8", buffering=1 << 20) as out:
            writer = csv.writer(out)
            writer.writerow(["type", "event_time", "message_id", "payload"])
            for row in rows:
                writer.writerow(
                    [row["type"], row["event_time"], row.get("message_id", ""), orjson.dumps(row["payload"]).decode()]
                )
    else:
        raise ValueError(f"unknown format {fmt!r}")
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=int)
    parser.add_argument("--people", type=int, default=None, help="default: events / 20")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    args = parser.parse_args(argv)
    print(events_file(args.events, people=args.people, seed=args.seed, fmt=args.format))
    return 0


if __name__ == "__main__":
    sys.exit(main())
