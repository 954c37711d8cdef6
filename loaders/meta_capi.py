"""Meta (Facebook) Conversions API destination: the segment's customers' recent events, as server events.

For each batch of customers, their events of the chosen `event_types` from the last 7 days are read from
`customer_events` and sent to `POST {graph}/{api_version}/{pixel_id}/events` in requests of at most 1,000 events:
- `event_name`: the CDP event type, or its mapping in `event_names` (e.g. `{"purchase": "Purchase"}`);
- `event_time`: unix seconds; events older than 7 days are never sent (Meta rejects them — and one invalid event
  rejects the whole request), with a margin so an event does not expire while its request is in flight;
- `event_id`: the event's idempotency key (the client's message id when it sent one, so browser pixel events
  with the same id are deduplicated; otherwise our content hash) — a resent request is deduplicated by Meta;
- `user_data`: `em` / `ph` (the customer's emails and phones, normalised — trimmed, lower-cased, phone digits
  with country code — and SHA256-hashed; already-hashed values are sent as they are) and `external_id` (the
  SHA256 of the customer entity id);
- `client_user_agent`, `client_ip_address` (in `user_data`, not hashed, as Meta asks) and `event_source_url` from
  the event's payload paths — Segment's `context.userAgent`, `context.ip` and `context.page.url` by default. Meta
  requires the user agent and the URL for `website` events and matches customers better with them;
- `custom_data`: `value` and `currency` from the payload paths when present;
- `test_event_code` when configured (events then show only in the Events Manager's Test events tab).

Re-runs (a schedule): Meta deduplicates an `event_id` only within 48 hours, so each run sends the events stored
since the last finished run to the destination read them (`context.previous["events_read_at"]`, less an hour's
overlap that Meta deduplicates) — and, for customers who joined the segment since (`customer["new"]`), all their
events of the last 7 days. A daily run re-sent every event of the week up to 7 times, counted again by Meta after
48 hours.

Counts: `sent` / `failed` count events, `skipped` counts customers without a recent event of those types. If Meta
rejects a request as invalid, it is split in halves until the offending events are isolated; they fail with
Meta's message, the others are sent. Token / permission errors stop the export (permanent). The access token
travels in the query string as the API documents, and is scrubbed from every message.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import F, Q

from cdp.selectors import events_list
from loaders.base import ConfigField, Customer, LoadContext, Loader, LoaderError, LoadResult, batched, first_values
from loaders.hashing import hash_values
from loaders.http import HttpClient, Response

MAX_EVENTS_PER_REQUEST = 1000
MAX_AGE = timedelta(days=7)
AGE_MARGIN = timedelta(minutes=5)
CUSTOMERS_PER_QUERY = 500
# Graph API error codes: throttling (retry later) and authorisation (stop).
THROTTLE_CODES = frozenset({1, 2, 4, 17, 32, 341, 613, 80004})
AUTH_CODES = frozenset({10, 102, 190, 200, 294})
# "Object with ID '...' does not exist, cannot be loaded due to missing permissions" (code 100, subcode 33, or code
# 33): the pixel, not an event, is wrong — every request would fail alike.
NO_OBJECT_SUBCODE = 33
ACTION_SOURCES = (
    "website",
    "app",
    "email",
    "phone_call",
    "chat",
    "physical_store",
    "system_generated",
    "business_messaging",
    "other",
)


def _graph_error(response: Response) -> dict[str, Any]:
    data = response.json()
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return data["error"]
    return {}


def _error_message(response: Response) -> str:
    error = _graph_error(response)
    if error.get("message"):
        detail = error.get("error_user_msg")
        return f"{error['message']}" + (f" ({detail})" if detail else "")
    return response.body[:300].decode("utf-8", "replace").strip() or f"HTTP {response.status}"


def _path_get(payload: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(payload, dict):
            return None
        payload = payload.get(part)
    return payload


class MetaConversionsLoader(Loader):
    kind = "meta_capi"
    label = "Meta Conversions API"
    wants_new_members = True  # the export marks customers the last run did not send: `customer["new"]`
    fields = (
        ConfigField("pixel_id", required=True, pattern=r"[0-9]{1,20}", pattern_message="must be digits only."),
        ConfigField("access_token", required=True, secret=True, max_length=2000),
        ConfigField("test_event_code", max_length=100, help="Send to the Test events tab instead of live."),
        ConfigField("event_types", kind="list", required=True, help="CDP event types to send, e.g. purchase."),
        ConfigField("event_names", kind="dict", default={}, help="CDP type → Meta event name, e.g. Purchase."),
        ConfigField("action_source", kind="choice", choices=ACTION_SOURCES, default="website"),
        ConfigField("email_attribute", default="ps_email_address", max_length=64, attribute=True),
        ConfigField("phone_attribute", default="ps_phone", max_length=64, attribute=True),
        ConfigField("value_path", default="properties.revenue", max_length=255),
        ConfigField("user_agent_path", default="context.userAgent", max_length=255, help="→ client_user_agent."),
        ConfigField("ip_path", default="context.ip", max_length=255, help="→ client_ip_address."),
        ConfigField("url_path", default="context.page.url", max_length=255, help="→ event_source_url."),
        ConfigField("currency_path", default="properties.currency", max_length=255),
        ConfigField("currency", max_length=3, pattern=r"[A-Za-z]{3}", pattern_message="must be an ISO 4217 code."),
        ConfigField("api_version", default="v21.0", pattern=r"v[0-9]+\.[0-9]+", pattern_message="e.g. v21.0"),
        ConfigField(
            "batch_size", kind="int", default=MAX_EVENTS_PER_REQUEST, minimum=1, maximum=MAX_EVENTS_PER_REQUEST
        ),
        ConfigField("api_base_url", kind="url", default="https://graph.facebook.com"),
    )

    def attributes_required(self) -> list[str]:
        return [self.config["email_attribute"], self.config["phone_attribute"]]

    def user_data(self, customer: Customer) -> dict[str, list[str]]:
        values = customer.get("attributes") or {}
        data: dict[str, list[str]] = {}
        emails = list(hash_values(first_values(values, self.config["email_attribute"]), kind="email"))
        phones = list(hash_values(first_values(values, self.config["phone_attribute"]), kind="phone"))
        if emails:
            data["em"] = emails
        if phones:
            data["ph"] = phones
        data["external_id"] = [hashlib.sha256(str(customer["id"]).encode()).hexdigest()]
        return data

    def server_event(self, event: Any, user_data: dict[str, list[str]]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event_name": self.config["event_names"].get(event.type, event.type),
            "event_time": int(event.event_time.timestamp()),
            "event_id": event.idempotency_key,
            "action_source": self.config["action_source"],
            "user_data": user_data,
        }
        # What the browser that made the event sent: required by Meta for website events, and it raises the match.
        client: dict[str, str] = {}
        for key, path in (("client_user_agent", "user_agent_path"), ("client_ip_address", "ip_path")):
            found = _path_get(event.payload, self.config[path])
            if isinstance(found, str) and found.strip():
                client[key] = found.strip()
        if client:
            out["user_data"] = {**user_data, **client}
        url = _path_get(event.payload, self.config["url_path"])
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            out["event_source_url"] = url
        custom: dict[str, Any] = {}
        value = _path_get(event.payload, self.config["value_path"])
        if isinstance(value, int | float) and not isinstance(value, bool):
            custom["value"] = value
        elif isinstance(value, str):
            try:
                custom["value"] = float(value)
            except ValueError:
                pass
        currency = _path_get(event.payload, self.config["currency_path"]) or self.config["currency"]
        if isinstance(currency, str) and len(currency) == 3:
            custom["currency"] = currency.upper()
        if custom:
            out["custom_data"] = custom
        return out

    def _events(self, customers: list[Customer], now: datetime, since: datetime | None = None) -> list[dict[str, Any]]:
        by_id = {customer["id"]: customer for customer in customers}
        users = {}
        rows = (
            events_list()
            .select_related(None)
            .filter(
                entity_link__customer_entity_id__in=list(by_id),
                type__in=self.config["event_types"],
                event_time__gt=now - MAX_AGE + AGE_MARGIN,
                event_time__lte=now + timedelta(minutes=1),
            )
        )
        if since is not None:
            joined = [customer["id"] for customer in customers if customer.get("new")]
            rows = rows.filter(Q(created__gt=since) | Q(entity_link__customer_entity_id__in=joined))
        rows = (
            rows.annotate(entity_id=F("entity_link__customer_entity_id"))
            .order_by("entity_id", "event_time", "id")
            .only("id", "type", "event_time", "payload", "idempotency_key")
        )
        events = []
        for event in rows.iterator(chunk_size=2000):
            entity_id = event.entity_id
            if entity_id not in users:
                users[entity_id] = self.user_data(by_id[entity_id])
            events.append(self.server_event(event, users[entity_id]))
        self._customers_with_events = len(users)
        return events

    def load(self, customers: Iterable[Customer], *, context: LoadContext | None = None) -> LoadResult:
        context = context or LoadContext()
        client = self.http(context, provider="Meta Conversions API", error_message=_error_message)
        base = self.config["api_base_url"].rstrip("/")
        url = f"{base}/{self.config['api_version']}/{self.config['pixel_id']}/events"
        result = LoadResult()
        # A resumed export keeps the time its first attempt started reading at (nothing stored since is lost).
        read_at = context.state.get("events_read_at") or datetime.now(UTC).isoformat()
        handled = int(context.state.get("customers") or 0)  # customers, for the progress (counts are events)
        since = self._since(context)
        if since is not None:
            context.log(f"Sending the events stored since {since:%Y-%m-%d %H:%M} UTC (the last export, less an hour), "
                        "and all recent events of customers who joined the segment since.")  # fmt: skip
        for chunk in batched(customers, CUSTOMERS_PER_QUERY):
            now = datetime.now(UTC)
            events = self._events(chunk, now, since)
            result.skipped += len(chunk) - self._customers_with_events
            context.sending(chunk[-1]["id"])
            for request_events in batched(events, self.config["batch_size"]):
                self._send(client, url, request_events, result, context)
            context.checkpoint(
                last_entity_id=chunk[-1]["id"],
                sent=result.sent,
                skipped=result.skipped,
                failed=result.failed,
                state={"events_read_at": read_at, "customers": handled + len(chunk)},
                customers=handled + len(chunk),
            )
            handled += len(chunk)
        result.details = {
            "events_read_at": read_at,
            "pixel_id": self.config["pixel_id"],
            "test_event_code": self.config["test_event_code"],
        }
        return result

    def _since(self, context: LoadContext) -> datetime | None:
        """Events stored after this were not read by the last finished export (less an hour: an event stored by a
        transaction still open then, with an earlier `created`, is not lost; Meta deduplicates the overlap)."""
        previous = context.previous or {}
        value = previous.get("events_read_at")
        # What went to another pixel, or to the Test events tab only, does not count as sent.
        if not isinstance(value, str) or (previous.get("pixel_id"), previous.get("test_event_code")) != (
            self.config["pixel_id"],
            self.config["test_event_code"],
        ):
            return None
        try:
            return datetime.fromisoformat(value) - timedelta(hours=1)
        except ValueError:
            return None

    def _send(
        self, client: HttpClient, url: str, events: list[dict[str, Any]], result: LoadResult, context: LoadContext
    ) -> None:
        body: dict[str, Any] = {"data": events}
        if self.config["test_event_code"]:
            body["test_event_code"] = self.config["test_event_code"]
        for attempt in range(1, 6):
            response = client.request(
                "POST", f"{url}?access_token={self.config['access_token']}", json=body, accept=(400, 401, 403)
            )
            if response.status < 300:
                received = (response.json() or {}).get("events_received")
                result.sent += received if isinstance(received, int) else len(events)
                return
            error = _graph_error(response)
            code = error.get("code")
            message = self.scrub(_error_message(response))
            if code in THROTTLE_CODES and attempt < 5:
                delay = min(60.0, 2.0**attempt)
                context.log(f"Meta Conversions API is throttling (code {code}); retrying in {delay:.0f}s.")
                (context.sleep or time.sleep)(delay)
                continue
            if code == NO_OBJECT_SUBCODE or error.get("error_subcode") == NO_OBJECT_SUBCODE:
                # Was taken for one invalid event: the request was halved down to single events, thousands of
                # requests that all failed, and the export "finished" with every event failed.
                raise LoaderError(
                    f"Meta Conversions API refused the request (HTTP {response.status}): {message} — check "
                    "pixel_id, and that the access token may send events to that pixel.",
                    permanent=True,
                    status=response.status,
                )
            if code in AUTH_CODES or response.status in (401, 403) or code in THROTTLE_CODES:
                raise LoaderError(
                    f"Meta Conversions API refused the request (HTTP {response.status}): {message}",
                    permanent=code not in THROTTLE_CODES,
                    status=response.status,
                )
            # One invalid event rejects the whole request: isolate it by halving.
            if len(events) == 1:
                result.failed += 1
                result.error(f"event {events[0]['event_id']} ({events[0]['event_name']}): {message}")
                return
            half = len(events) // 2
            self._send(client, url, events[:half], result, context)
            self._send(client, url, events[half:], result, context)
            return
