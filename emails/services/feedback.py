"""Provider webhooks → canonical email events (`email_delivered`, `email_bounced`, `spam_complaint`,
`unsubscribe`, `email_address_blocked`) and the state changes they cause.

- A hard bounce blocks the address (an `email_bounced` event, then `email_address_blocked` with
  `blocked_by: hard_bounce_webhook`). For Infobip, five soft bounces in a row (no delivery between) count as a
  hard bounce. A provider's own block (Brevo `blocked`) is `email_address_blocked` with `block_webhook`.
- A spam complaint or an unsubscribe sets consent false.
- Idempotent: every canonical event's idempotency key is derived from the provider's message id, the event and
  its time (Brevo has no event id), so a replayed payload records nothing new and changes no state.
- Events we do not act on (opens, clicks, requests, deferrals, pending reports) are acknowledged and ignored.

Parsing raises FeedbackInvalid with the reason; the view stores such payloads for inspection and answers 400.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Max

from cdp.services.events import EARLIEST_EVENT_TIME
from cdp.text import storable_json
from emails.models import EmailAddress, FeedbackInbox, FeedbackRejection
from emails.services.state import (
    EmailInvalid,
    _address_locked,
    email_block_change,
    email_consent_change,
    email_event_record,
    email_normalize,
)

logger = logging.getLogger(__name__)

PROVIDERS = ("brevo", "infobip")
INFOBIP_SOFT_BOUNCES_TO_BLOCK = 5
MAX_KEPT_BODY = 64 * 1024
MAX_RESULTS = 1000


class FeedbackInvalid(ValueError):
    """A payload we cannot use; the message says why."""


@dataclass
class Canonical:
    """One provider event in the seed's canonical shape."""

    type: str  # email_delivered | email_bounced | spam_complaint | unsubscribe | email_address_blocked
    email: str
    key: str
    event_time: datetime | None
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class FeedbackResult:
    received: int = 0
    queued: int = 0


def _key(provider: str, *parts: object) -> str:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8", "surrogatepass")).hexdigest()
    return f"fb:{provider}:{digest[:40]}"


def _text(item: dict, name: str, *, required: bool = False, where: str = "") -> str | None:
    value = item.get(name)
    if value is None or value == "":
        if required:
            raise FeedbackInvalid(f"{where}{name} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise FeedbackInvalid(f"{where}{name} must be a string")
    return str(value)[:1000]


def _email(value: object, where: str) -> str:
    try:
        return email_normalize(value)
    except EmailInvalid:
        raise FeedbackInvalid(f"{where}email is missing or not a valid address") from None


def _epoch_ms(value: object) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _iso(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit() and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]  # Infobip's +0000
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    try:
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00: before year 1 in UTC
        return None


def _not_future(when: datetime | None) -> datetime | None:
    # cdp refuses events more than a day ahead or before 1970; a provider time that far off is replaced by our time
    # (a time before 1970 was kept: the webhook was answered 200, then its event failed to apply and was set aside).
    if when is None or when < EARLIEST_EVENT_TIME or when.timestamp() > datetime.now(UTC).timestamp() + 3600:
        return None
    return when


# --- Brevo ----------------------------------------------------------------------------------------------------

BREVO_BOUNCES = {"hard_bounce": "hard", "invalid_email": "hard", "soft_bounce": "soft"}


def brevo_parse(body: Any) -> list[Canonical]:
    """One Brevo webhook object (or a list of them, as Brevo's batched webhooks send)."""
    items = body if isinstance(body, list) else [body]
    if not items or len(items) > MAX_RESULTS:
        raise FeedbackInvalid(f"expected a JSON object or a list of 1 to {MAX_RESULTS} objects")
    events = []
    for index, item in enumerate(items):
        where = f"[{index}]." if isinstance(body, list) else ""
        if not isinstance(item, dict):
            raise FeedbackInvalid(f"{where or 'the body '}must be a JSON object")
        kind = _text(item, "event", required=True, where=where)
        email = _email(item.get("email"), where)
        message_id = _text(item, "message-id", where=where) or _text(item, "message_id", where=where)
        subject = _text(item, "subject", where=where)
        stamp = item.get("ts_epoch") or item.get("ts_event") or item.get("ts")
        when = _not_future(_epoch_ms(stamp))
        key = _key("brevo", message_id or email, kind, stamp)
        base = {"message_id": message_id, "subject": subject, "provider": "brevo"}
        tags = item.get("tags")
        if isinstance(tags, list) and all(isinstance(t, str) for t in tags):
            base["tags"] = tags[:20]
        if kind == "delivered":
            if not message_id:
                raise FeedbackInvalid(f"{where}message-id is required for a delivered event")
            events.append(Canonical("email_delivered", email, key, when, base))
        elif kind in BREVO_BOUNCES:
            reason = (_text(item, "reason", where=where) or kind.replace("_", " ")).strip()
            events.append(Canonical("email_bounced", email, key, when,
                                    {**base, "bounce_type": BREVO_BOUNCES[kind], "reason": reason}))  # fmt: skip
        elif kind in {"spam", "complaint"}:
            events.append(Canonical("spam_complaint", email, key, when, base))
        elif kind in {"unsubscribed", "unsubscribe"}:
            events.append(Canonical("unsubscribe", email, key, when, {**base, "unsubscribe_source": "brevo"}))
        elif kind == "blocked":
            reason = _text(item, "reason", where=where) or "blocked by Brevo"
            events.append(Canonical("email_address_blocked", email, key, when,
                                    {**base, "reason": reason, "blocked_by": "block_webhook"}))  # fmt: skip
        # Anything else (request, deferred, opened, click, ...) is acknowledged and not recorded.
    return events


# --- Infobip --------------------------------------------------------------------------------------------------

INFOBIP_TRACKING = {"COMPLAINED": "spam_complaint", "UNSUBSCRIBED": "unsubscribe"}


def infobip_parse(body: Any) -> list[Canonical]:
    """An Infobip delivery report {"results": [...]} or a tracking event {"notificationType": ...}."""
    if not isinstance(body, dict):
        raise FeedbackInvalid("expected a JSON object with results or notificationType")
    if "notificationType" in body:
        kind = _text(body, "notificationType", required=True)
        email = _email(body.get("recipient"), "recipient: ")
        message_id = _text(body, "messageId")
        when = _not_future(_epoch_ms(body.get("sendDateTime")))
        canonical = INFOBIP_TRACKING.get(kind.upper())
        if canonical is None:
            return []
        key = _key("infobip", message_id or email, kind, body.get("sendDateTime"))
        payload = {"message_id": message_id, "provider": "infobip"}
        if canonical == "unsubscribe":
            payload["unsubscribe_source"] = "infobip"
        return [Canonical(canonical, email, key, when, payload)]
    results = body.get("results")
    if not isinstance(results, list) or not results:
        raise FeedbackInvalid("results must be a non-empty list of delivery reports")
    if len(results) > MAX_RESULTS:
        raise FeedbackInvalid(f"at most {MAX_RESULTS} results in one payload")
    events = []
    for index, item in enumerate(results):
        where = f"results[{index}]."
        if not isinstance(item, dict):
            raise FeedbackInvalid(f"{where[:-1]} must be an object")
        email = _email(item.get("to"), where)
        message_id = _text(item, "messageId", required=True, where=where)
        status = item.get("status")
        if not isinstance(status, dict):
            raise FeedbackInvalid(f"{where}status must be an object")
        group = str(status.get("groupName") or "").upper()
        error = item.get("error") if isinstance(item.get("error"), dict) else {}
        when = _not_future(_iso(item.get("doneAt")) or _iso(item.get("sentAt")))
        key = _key("infobip", message_id, group, status.get("name"), item.get("doneAt"))
        base = {"message_id": message_id, "provider": "infobip"}
        if isinstance(item.get("callbackData"), str):
            base["callback_data"] = item["callbackData"][:500]
        if group == "DELIVERED":
            events.append(Canonical("email_delivered", email, key, when, base))
        elif group in {"UNDELIVERABLE", "REJECTED", "EXPIRED"}:
            hard = error.get("permanent") is True
            reason = str(error.get("description") or error.get("name") or status.get("description") or group)
            code = {"basic": str(error["id"])} if error.get("id") not in (None, "") else None
            events.append(Canonical("email_bounced", email, key, when,
                                    {**base, "bounce_type": "hard" if hard else "soft", "reason": reason[:500],
                                     "code": code}))  # fmt: skip
        elif not group:
            raise FeedbackInvalid(f"{where}status.groupName is required")
        # PENDING and other interim states: nothing to record.
    return events


PARSERS = {"brevo": brevo_parse, "infobip": infobip_parse}


# --- applying -------------------------------------------------------------------------------------------------


@transaction.atomic
def _apply(event: Canonical, provider: str) -> bool:
    """Record one canonical event other than a delivery (those go through _deliveries_record, in runs) and its
    consequences; False when it was recorded before."""
    payload = {k: v for k, v in event.payload.items() if v is not None}
    if event.type in {"spam_complaint", "unsubscribe"}:
        return email_consent_change(
            email=event.email, consent=False, type=event.type, payload=payload, event_time=event.event_time,
            key=event.key, source=f"{provider} {event.type}",
        )  # fmt: skip
    if event.type == "email_address_blocked":
        return email_block_change(email=event.email, blocked=True, type="email_address_blocked",
                                  by=payload.pop("blocked_by"), reason=payload.pop("reason", ""), payload=payload,
                                  event_time=event.event_time, key=event.key)  # fmt: skip
    address = _address_locked(event.email)
    if not email_event_record(type=event.type, email=event.email, payload=payload, event_time=event.event_time,
                              key=event.key):  # fmt: skip
        return False
    # email_bounced
    block_reason = None
    if payload.get("bounce_type") == "hard":
        block_reason = f"hard bounce: {payload.get('reason', '')}".strip()
    elif provider == "infobip":
        last = address.soft_bounce_last_at
        if event.event_time is not None and (last is None or event.event_time > last):
            last = event.event_time
        EmailAddress.objects.filter(pk=address.pk).update(soft_bounces_in_row=F("soft_bounces_in_row") + 1,
                                                          soft_bounce_last_at=last)  # fmt: skip
        address.refresh_from_db(fields=["soft_bounces_in_row"])
        if address.soft_bounces_in_row >= INFOBIP_SOFT_BOUNCES_TO_BLOCK:
            block_reason = f"{address.soft_bounces_in_row} soft bounces in a row"
    if block_reason and not address.blocked:
        email_block_change(
            email=event.email, blocked=True, type="email_address_blocked", by="hard_bounce_webhook",
            reason=block_reason, payload={"message_id": payload.get("message_id")},
            event_time=event.event_time, key=event.key + ":blocked",
        )  # fmt: skip
    return True


def feedback_process(*, provider: str, body: Any) -> FeedbackResult:
    """Parse a webhook body and accept its events: one row in the inbox, applied in order after commit by
    `feedback_apply` (in-process without a broker, else a Celery task). Raises FeedbackInvalid (nothing kept)."""
    if provider not in PARSERS:
        raise FeedbackInvalid(f"unknown provider {provider!r}")
    if not storable_json(body):
        raise FeedbackInvalid("the payload holds a NUL character or a lone surrogate, which cannot be stored")
    events = PARSERS[provider](body)
    result = FeedbackResult(received=len(events))
    if events:
        _inbox_add(provider, events)
        result.queued = len(events)
        transaction.on_commit(_apply_enqueue)
    return result


# A delivery report is telemetry the provider keeps sending: acknowledging it before its commit is on disk risks
# losing the last few hundred milliseconds of them if PostgreSQL itself crashes, and saves an fsync per webhook,
# so a payload of deliveries only is written with synchronous_commit off (for that statement alone). Bounces,
# complaints, unsubscribes and blocks keep synchronous commits.
_INBOX_SQL = (
    "INSERT INTO emails_feedback_inbox (provider, events, received) VALUES (%s, %s::jsonb, statement_timestamp())"
)
_INBOX_ASYNC_SQL = (
    "WITH async_commit AS (SELECT set_config('synchronous_commit', 'off', true)), "
    f"inserted AS ({_INBOX_SQL} RETURNING 1) "
    "SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM async_commit)"
)


def _inbox_add(provider: str, events: list[Canonical]) -> None:
    from cdp.hot_sql import fetch_one_prepared

    received = datetime.now(UTC).isoformat()  # the event's time when the provider sent none
    rows = [
        {"type": e.type, "email": e.email, "key": e.key, "payload": e.payload,
         "event_time": e.event_time.isoformat() if e.event_time else received}
        for e in events
    ]  # fmt: skip
    data = orjson.dumps(rows).decode()
    if all(e.type == "email_delivered" for e in events):
        fetch_one_prepared(_INBOX_ASYNC_SQL, [provider, data])
    else:
        fetch_one_prepared(_INBOX_SQL + " RETURNING id", [provider, data])


def _apply_enqueue() -> None:
    from emails.tasks import feedback_apply_enqueue

    feedback_apply_enqueue()


# The inbox is applied by one process at a time (a transaction-scoped advisory lock), in the order the webhooks
# were accepted: a delivery between soft bounces must reset the run before the next bounce counts.
APPLY_LOCK = (7_311_002, 1)
APPLY_BATCH = 500


def feedback_apply(*, limit: int | None = None) -> int:
    """Apply accepted webhook payloads in order, in batches of APPLY_BATCH rows, each batch one transaction;
    returns how many canonical events were applied (recorded or found recorded before).

    A payload that cannot be applied (a bug, data PostgreSQL refuses) must not hold the inbox up: when a batch
    fails, its rows are applied one by one and a failing one is moved to the rejected webhooks with the reason.
    Connection errors are not such a failure: they propagate, and the batch waits for the next run."""
    applied = rows_done = 0
    while limit is None or rows_done < limit:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", list(APPLY_LOCK))
            cursor.execute(
                "DELETE FROM emails_feedback_inbox WHERE id IN (SELECT id FROM emails_feedback_inbox ORDER BY id "
                "LIMIT %s FOR UPDATE) RETURNING id, provider, events",
                [APPLY_BATCH if limit is None else min(APPLY_BATCH, limit - rows_done)],
            )
            rows = sorted(cursor.fetchall())
            if not rows:
                break
            try:
                with transaction.atomic():
                    applied += _rows_apply(rows)
            except (OperationalError, InterfaceError):
                raise
            except Exception:  # noqa: BLE001 - find the payload at fault, keep the others
                logger.warning("feedback apply: a batch failed; applying its %d payloads one by one", len(rows))
                for row in rows:
                    try:
                        with transaction.atomic():
                            applied += _rows_apply([row])
                    except (OperationalError, InterfaceError):
                        raise
                    except Exception as exc:  # noqa: BLE001
                        logger.exception("feedback apply: payload %s could not be applied", row[0])
                        events = row[2] if isinstance(row[2], str) else orjson.dumps(row[2]).decode()
                        feedback_reject(provider=row[1], reason=f"could not apply: {type(exc).__name__}: {exc}"[:2000],
                                        body=events.encode(), content_type="application/json")  # fmt: skip
            rows_done += len(rows)
    return applied


def feedback_apply_received(deadline: float) -> bool:
    """Apply every payload accepted until now: a GDPR erase must see their events (cdp.hooks.on_erase_preparing).
    False when some are left at `deadline` (`time.monotonic()`)."""
    last = FeedbackInbox.objects.aggregate(last=Max("id"))["last"]
    while last is not None and FeedbackInbox.objects.filter(id__lte=last).exists():
        if time.monotonic() >= deadline:
            return False
        feedback_apply(limit=APPLY_BATCH)
    return True


def _rows_apply(rows: list[tuple]) -> int:
    """Apply inbox rows (id, provider, events) in order; returns how many events."""
    applied = 0
    deliveries: list[Canonical] = []
    for _, provider, events in rows:
        for item in events if isinstance(events, list) else orjson.loads(events):
            event = Canonical(item["type"], item["email"], item["key"],
                              datetime.fromisoformat(item["event_time"]) if item.get("event_time") else None,
                              item.get("payload") or {})  # fmt: skip
            if event.type == "email_delivered":
                deliveries.append(event)
                continue
            applied += _deliveries_record(deliveries)
            deliveries = []
            _apply(event, provider)
            applied += 1
    return applied + _deliveries_record(deliveries)


# Deliveries are most of a provider's feedback: a run of them (no other event between) is recorded with one
# statement, which also ends the run of soft bounces of the addresses that got a new delivery — one not older than
# the run's latest soft bounce (a report of an earlier message arriving late ends nothing). An address without a
# state row keeps none: a delivery changes neither consent nor blocking.
_DELIVERIES_SQL = """
WITH rows AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(type text, event_time timestamptz, payload jsonb, key text)
),
inserted AS (
    INSERT INTO customer_events (source_id, type, event_time, payload, idempotency_key)
    SELECT %(source)s, type, event_time, payload, key FROM rows
    ON CONFLICT (source_id, idempotency_key) DO NOTHING
    RETURNING payload ->> 'email' AS email, event_time
),
reset AS (
    UPDATE emails_emailaddress a SET soft_bounces_in_row = 0, modified = statement_timestamp()
    FROM (SELECT email, max(event_time) AS delivered FROM inserted GROUP BY email) d
    WHERE a.email = d.email AND a.soft_bounces_in_row > 0
      AND (a.soft_bounce_last_at IS NULL OR d.delivered >= a.soft_bounce_last_at)
    RETURNING a.id
)
SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM reset)
"""


def _deliveries_record(events: list[Canonical]) -> int:
    """Record these email_delivered events (idempotently); returns how many were given."""
    if not events:
        return 0
    from cdp.services.events import event_record_build, events_ingested_notify
    from emails.services.setup import emails_source_id

    rows = []
    for event in events:
        payload = {k: v for k, v in {**event.payload, "email": event.email, "type": event.type}.items()
                   if v is not None}  # fmt: skip
        record = event_record_build(source_id=0, type=event.type, event_time=event.event_time or datetime.now(UTC),
                                    payload=payload, message_id=event.key)  # fmt: skip
        rows.append({"type": record.type, "event_time": record.event_time.isoformat(),
                     "payload": orjson.Fragment(record.payload_json), "key": record.idempotency_key})  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(_DELIVERIES_SQL, {"rows": orjson.dumps(rows).decode(), "source": emails_source_id()})
        inserted = cursor.fetchone()[0]
    if inserted:
        transaction.on_commit(lambda: events_ingested_notify(inserted))
    return len(events)


def feedback_reject(*, provider: str, reason: str, body: bytes, content_type: str = "") -> FeedbackRejection:
    """Keep a payload we could not use, for someone to look at in the admin."""
    text = body[:MAX_KEPT_BODY].decode("utf-8", errors="replace").replace("\x00", "\\u0000")
    # (The provider and content type come from the URL and headers: a NUL there is dropped, not stored.)
    return FeedbackRejection.objects.create(provider=provider.replace("\x00", "")[:20],
                                            reason=reason.replace("\x00", "\\x00")[:2000], body=text,
                                            content_type=content_type.replace("\x00", "")[:100])  # fmt: skip
