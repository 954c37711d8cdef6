"""Writes for export destinations, segment exports and schedules — and the export engine.

The engine (`export_run`) claims a waiting export with a conditional update (a duplicated or redelivered task
message finds nothing to claim), streams the segment's members in entity-id order to the destination's loader,
and records after every batch the destination acknowledged a checkpoint (the batch's last entity id, the
loader's state, the counts) and a heartbeat. Before a batch is sent it records the batch as in flight.

A worker that dies mid-export stops the heartbeat; the watchdog (`exports_stale_recover`, run by beat) then
- resumes the export after its last checkpoint when that is safe: the loader is idempotent (re-sending the
  in-flight batch changes nothing at the destination) or no batch was in flight;
- otherwise (a webhook receiver may not be idempotent, and a batch may or may not have arrived) fails it
  cleanly with a message saying so, never sending that batch twice.
An export is never left "running" without a live worker for longer than the stale threshold.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce, Concat, Length
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from cdp.celery import enqueue_with_safety_net
from cdp.models import Attribute
from loaders.base import ConfigError, LoadContext, LoaderError, secret_mask
from loaders.registry import loader_class, loader_for
from notifications.models import Notification
from notifications.services import notification_create
from segments.exports.crypto import SecretsUnreadable, secrets_decrypt, secrets_encrypt
from segments.exports.models import ExportDestination, ExportedMember, ExportSchedule, SegmentExport
from segments.models import Segment
from segments.selectors import segment_condition_sql, segment_members_count, segment_members_sql

logger = logging.getLogger("segments.exports")

MEMBERS_BATCH = 2_000
MAX_ATTEMPTS = 5
LOG_MAX_CHARS = 200_000
TRANSIENT_RETRY_DELAY_S = 60


def stale_after() -> timedelta:
    return timedelta(seconds=getattr(settings, "CDP_EXPORT_STALE_AFTER_S", 600))


# --- destinations ------------------------------------------------------------------------------------------


def _config_split(kind: str, config: dict[str, Any], *, current: ExportDestination | None) -> tuple[dict, dict]:
    """Validate a destination config (ConfigError → ValidationError naming the field) and split off the secrets.

    On update, a secret that is omitted, empty or equal to its masked form keeps its stored value."""
    if not isinstance(config, dict):
        raise ValidationError({"config": "must be an object."})
    try:
        cls = loader_class(kind)
    except ConfigError as exc:
        raise ValidationError({"kind": exc.detail}) from None
    config = dict(config)
    if current is not None and current.kind == kind:
        stored = secrets_decrypt(current.secrets_encrypted)
        moved = _urls_changed(cls, config, current.config)
        for name in cls.secret_fields():
            value = config.get(name)
            if name in stored and (value in (None, "") or value == secret_mask(stored[name])):
                if moved:
                    # A stored token goes only where it was entered for: pointing api_base_url at another host
                    # while keeping it would hand it to that host (a way round "never shown back").
                    raise ValidationError(
                        {"config": f"{name}: enter it again: {moved} changed, and a stored secret is only sent "
                         "where it was entered for."}
                    )  # fmt: skip
                config[name] = stored[name]
    try:
        cleaned = cls.config_validate(config)
    except ConfigError as exc:
        raise ValidationError({"config": f"{exc.field}: {exc.detail}"}) from None
    _config_attributes_check(cls, config, cleaned, current=current)
    secret = {k: v for k, v in cleaned.items() if k in cls.secret_fields() and v not in (None, "")}
    plain = {k: v for k, v in cleaned.items() if k not in cls.secret_fields()}
    return plain, secret


def _urls_changed(cls, config: dict[str, Any], stored: dict[str, Any]) -> str:
    """The first URL setting whose value differs from the stored one ("" when none does)."""
    for field in cls.fields:
        if field.kind != "url":
            continue
        try:
            value = field.clean(config.get(field.name))
        except ConfigError:
            return field.name
        if value != field.clean(stored.get(field.name)):
            return field.name
    return ""


def _config_attributes_check(cls, given: dict[str, Any], cleaned: dict[str, Any], *, current) -> None:
    """The attribute ids a user names in a setting must exist: a typo gave an empty CSV column or a Pinterest export
    that skipped every customer, and a "finished" export. Only values the user chose are checked (not the
    defaults, which a deployment may not define, nor a value kept unchanged from the stored config)."""
    stored = current.config if current is not None and current.kind == cls.kind else {}
    for field in cls.fields:
        if not field.attribute or given.get(field.name) in (None, "", []):
            continue
        value = cleaned[field.name]
        if value == field.default or value == stored.get(field.name):
            continue
        names = value if isinstance(value, list) else [value]
        known = set(Attribute.objects.filter(id__in=names).values_list("id", flat=True))
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValidationError({"config": f"{field.name}: unknown attribute(s): {', '.join(unknown)}"})


def _attributes_clean(attributes: Any) -> list[str]:
    if attributes in (None, ""):
        return []
    if not isinstance(attributes, list) or not all(isinstance(a, str) and a for a in attributes):
        raise ValidationError({"mandatory_attributes": "must be a list of attribute ids."})
    known = set(Attribute.objects.filter(id__in=attributes).values_list("id", flat=True))
    unknown = [a for a in attributes if a not in known]
    if unknown:
        raise ValidationError({"mandatory_attributes": f"unknown attribute(s): {', '.join(unknown)}"})
    return list(dict.fromkeys(attributes))


def destination_validate(
    *, kind: str, config: dict[str, Any], mandatory_attributes: list[str], current: ExportDestination | None = None
) -> None:
    """The checks destination_create / destination_update make, for forms that want them before saving."""
    _config_split(kind, config, current=current)
    _attributes_clean(mandatory_attributes)


@transaction.atomic
def destination_create(
    *, name: str, kind: str, config: dict[str, Any], mandatory_attributes: list[str] | None = None, user=None
) -> ExportDestination:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "is required."})
    if ExportDestination.objects.filter(name=name).exists():
        raise ValidationError({"name": "a destination with this name already exists."})
    plain, secret = _config_split(kind, config, current=None)
    return ExportDestination.objects.create(
        name=name,
        kind=kind,
        config=plain,
        secrets_encrypted=secrets_encrypt(secret),
        mandatory_attributes=_attributes_clean(mandatory_attributes),
        created_by=user,
    )


@transaction.atomic
def destination_update(
    *,
    destination: ExportDestination,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    mandatory_attributes: list[str] | None = None,
    config_partial: bool = False,
) -> ExportDestination:
    """`config_partial` (a PATCH): the settings given change, the others keep their stored values (`null` puts a
    setting back to its default); otherwise `config` is the whole configuration."""
    if name is not None:
        name = name.strip()
        if not name:
            raise ValidationError({"name": "is required."})
        if ExportDestination.objects.filter(name=name).exclude(pk=destination.pk).exists():
            raise ValidationError({"name": "a destination with this name already exists."})
        destination.name = name
    if config is not None:
        if config_partial and isinstance(config, dict):
            config = {**destination.config, **config}
        plain, secret = _config_split(destination.kind, config, current=destination)
        destination.config = plain
        destination.secrets_encrypted = secrets_encrypt(secret)
    if mandatory_attributes is not None:
        destination.mandatory_attributes = _attributes_clean(mandatory_attributes)
    destination.save()
    return destination


@transaction.atomic
def destination_delete(*, destination: ExportDestination) -> None:
    if destination.exports.filter(status__in=[SegmentExport.Status.WAITING, SegmentExport.Status.RUNNING]).exists():
        raise ValidationError({"destination": "an export to this destination is running; wait for it to end."})
    destination.delete()


def destination_config_display(destination: ExportDestination) -> dict[str, Any]:
    """The config as shown back: secrets masked, never in full."""
    try:
        secret = secrets_decrypt(destination.secrets_encrypted)
    except SecretsUnreadable:
        secret = {name: "(unreadable: enter it again)" for name in destination.secret_names()}
    return {**destination.config, **{k: secret_mask(v) for k, v in secret.items()}}


# --- exports ---------------------------------------------------------------------------------------------


def _enqueue(export_id: int, *, countdown: int | None = None) -> None:
    """Run the export in a worker after commit. Without a broker (Redis down) the export stays waiting, which its
    log says, and the watchdog (exports_stale_recover) enqueues it again once the broker is back: the request that
    started it still succeeds."""
    from segments.exports.tasks import segment_export_run

    def send() -> None:
        segment_export_run.apply_async((export_id,), countdown=countdown)

    def enqueue() -> None:
        if not enqueue_with_safety_net(send, what=f"segment export {export_id}"):
            waited = _minutes(stale_after())
            export_log(
                export_id=export_id,
                message="The task queue is unavailable: the export waits for it. The watchdog starts it once the "
                f"queue is back (it takes exports waiting for over {waited}).",
            )

    transaction.on_commit(enqueue)


def _minutes(delay: timedelta) -> str:
    minutes = max(1, round(delay.total_seconds() / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


@transaction.atomic
def export_create(
    *,
    segment: Segment,
    destination: ExportDestination,
    user=None,
    schedule: ExportSchedule | None = None,
    enqueue: bool = True,
) -> SegmentExport:
    """A waiting export, enqueued after commit (unless the caller runs it, as `run_export` does). The destination's
    config is checked now: a bad one is a ValidationError (a 400), nothing is queued."""
    if segment.is_trashed:
        raise ValidationError({"segment": "the segment is in the trash."})
    # One export of a pair at a time (as schedules already did): a double-clicked "Start export" or a client's retry
    # without an Idempotency-Key sent a webhook's batches twice and raced two Pinterest replaces. The segment's
    # row lock makes two requests at the same moment wait for each other.
    Segment.objects.select_for_update().filter(pk=segment.pk).exists()
    busy = (
        SegmentExport.objects.filter(
            segment=segment,
            destination=destination,
            status__in=[SegmentExport.Status.WAITING, SegmentExport.Status.RUNNING],
        )
        .values_list("pk", flat=True)
        .first()
    )
    if busy is not None:
        raise ValidationError(
            {"segment": f"an export of this segment to {destination.name} is already under way (#{busy}); wait for it "
             "to end."}
        )  # fmt: skip
    try:
        loader_for(destination.kind, destination.full_config())
    except ConfigError as exc:
        raise ValidationError({"destination": f"invalid configuration: {exc}"}) from None
    except SecretsUnreadable as exc:
        raise ValidationError({"destination": str(exc)}) from None
    export = SegmentExport.objects.create(
        segment=segment,
        destination=destination,
        segment_name=segment.name,
        destination_name=destination.name,
        destination_kind=destination.kind,
        started_by=user,
        schedule=schedule,
    )
    export_log(export_id=export.pk, message=f"Queued by {user or ('the schedule' if schedule else 'an analyst')}.")
    if enqueue:
        _enqueue(export.pk)
    return export


def export_log_last_message(log: str) -> str:
    """The last message an export's log holds, without the time export_log put before it."""
    return log.rstrip().rsplit("\n", 1)[-1].split(" ", 2)[-1]


def export_log(*, export_id: int, message: str) -> None:
    """Append a line to the export's log (autocommit: visible at once) and beat the heartbeat."""
    line = f"{timezone.now():%Y-%m-%d %H:%M:%S} {message}\n"
    # A runaway log (thousands of retries) stops growing at LOG_MAX_CHARS; the heartbeat still beats.
    rows = SegmentExport.objects.filter(pk=export_id).annotate(log_length=Length("log"))
    rows.filter(log_length__lt=LOG_MAX_CHARS).update(log=Concat(F("log"), Value(line)), heartbeat_at=timezone.now())
    rows.filter(log_length__gte=LOG_MAX_CHARS).update(heartbeat_at=timezone.now())


def _members(
    segment: Segment,
    *,
    after: str,
    batch: int = MEMBERS_BATCH,
    record_for: int | None = None,
    leavers_of: int | None = None,
    new_since: int | None = None,
) -> Iterator[dict[str, Any]]:
    """The segment's members with their attributes, in entity-id order, after `after` (keyset pages).

    With `leavers_of` (a previous finished export of the same segment and destination), the customers that export
    sent who are no longer members come in the same order, marked `"left": True`. With `record_for`, the members
    are recorded as sent by that export (ExportedMember), page by page, for the next run's leavers. With
    `new_since` (a previous finished export), the members that export did not send are marked `"new": True`."""
    where, params = segment_condition_sql(segment=segment)
    if new_since is None:
        new_sql, new_params = "false", []
    else:
        new_sql = "NOT EXISTS (SELECT 1 FROM segments_exportedmember n WHERE n.export_id = %s AND n.entity_id = e.id)"
        new_params = [new_since]
    if leavers_of is None:
        sql = (
            f"SELECT e.id, e.attributes, true, {new_sql} FROM customer_entities e WHERE ({where}) AND e.id > %s "
            "ORDER BY e.id LIMIT %s"
        )
        page_params = lambda last: [*new_params, *params, last, batch]  # noqa: E731
    else:
        sql = (
            f"SELECT e.id, e.attributes, coalesce(({where}), false), {new_sql} FROM customer_entities e "
            f"WHERE e.id > %s AND "
            f"(({where}) OR e.id IN (SELECT m.entity_id FROM segments_exportedmember m WHERE m.export_id = %s)) "
            "ORDER BY e.id LIMIT %s"
        )
        page_params = lambda last: [*params, *new_params, last, *params, leavers_of, batch]  # noqa: E731
    last = after
    while True:
        with connection.cursor() as cursor:
            cursor.execute(sql, page_params(last))
            rows = cursor.fetchall()
            if record_for is not None:
                members = [entity_id for entity_id, _, member, _ in rows if member]
                if members:
                    cursor.execute(
                        "INSERT INTO segments_exportedmember (export_id, entity_id) SELECT %s, unnest(%s::text[]) "
                        "ON CONFLICT DO NOTHING",
                        [record_for, members],
                    )
        for entity_id, attributes, member, new in rows:
            if isinstance(attributes, str):  # Django's psycopg setup leaves jsonb as text
                attributes = orjson.loads(attributes)
            customer = {"id": entity_id, "attributes": attributes or {}}
            if not member:
                customer["left"] = True
            if new and member:
                customer["new"] = True
            yield customer
        if len(rows) < batch:
            return
        last = rows[-1][0]


def _count_members(export_id: int, segment: Segment, sizes: dict[str, int | None]) -> None:
    try:
        sizes["total"] = segment_members_count(segment=segment)
        SegmentExport.objects.filter(pk=export_id, total__isnull=True).update(total=sizes["total"])
    except Exception:  # noqa: BLE001 — only progress depends on it
        logger.warning("segment export %s: counting the members failed", export_id, exc_info=True)
    finally:
        connection.close()  # this thread's own connection


def _sibling_segments(segment: Segment, destination: ExportDestination) -> list[tuple[Segment, str, list]]:
    """The other live segments this destination receives (a finished export or a schedule), with their SQL."""
    ids = set(
        SegmentExport.objects.filter(destination=destination, status=SegmentExport.Status.FINISHED).values_list(
            "segment_id", flat=True
        )
    ) | set(ExportSchedule.objects.filter(destination=destination).values_list("segment_id", flat=True))
    ids.discard(segment.pk)
    ids.discard(None)
    siblings = []
    for other in Segment.objects.filter(pk__in=ids, trashed_at__isnull=True).order_by("pk"):
        try:
            where, params = segment_condition_sql(segment=other)
        except Exception:  # noqa: BLE001 — a broken sibling segment must not stop this export
            logger.warning("segment %s cannot be evaluated for memberships", other.pk)
            continue
        siblings.append((other, where, params))
    return siblings


def _with_memberships(
    customers: Iterator[dict[str, Any]], segment: Segment, siblings: list[tuple[Segment, str, list]], batch: int = 1000
) -> Iterator[dict[str, Any]]:
    """Add `segments`: the exported segment plus the sibling segments each customer is in (Customer.io's
    SegmentMembership lists every segment the destination receives, so one export must not drop the others)."""
    from loaders.base import batched

    for chunk in batched(customers, batch):
        ids = [customer["id"] for customer in chunk]
        member_of: dict[str, list[dict[str, Any]]] = {entity_id: [] for entity_id in ids}
        for other, where, params in siblings:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT e.id FROM customer_entities e WHERE e.id = ANY(%s) AND ({where})", [ids, *params]
                )
                for (entity_id,) in cursor.fetchall():
                    member_of[entity_id].append({"id": other.pk, "name": other.name})
        for customer in chunk:
            memberships = list(member_of[customer["id"]])
            if not customer.get("left"):
                memberships.append({"id": segment.pk, "name": segment.name})
            yield {**customer, "segments": sorted(memberships, key=lambda m: m["id"])}


def _finish(export_id: int, *, status: str, message: str = "", **fields: Any) -> SegmentExport:
    SegmentExport.objects.filter(pk=export_id).update(
        status=status, error_message=message, finished_at=timezone.now(), in_flight_entity_id="", **fields
    )
    export = SegmentExport.objects.select_related("started_by").get(pk=export_id)
    export_log(export_id=export_id, message=message or f"Finished: {export.sent} sent, {export.skipped} skipped, "
               f"{export.failed} failed.")  # fmt: skip
    export_notify(export=export)
    return export


def _admin_link(view: str, pk: int) -> str:
    """The admin page of an object, for a notification ("" where the admin is not mounted)."""
    try:
        return reverse(view, args=[pk])
    except NoReverseMatch:
        return ""


def export_notify(*, export: SegmentExport) -> None:
    if export.started_by is None:
        return
    link = _admin_link("admin:segments_segmentexport_change", export.pk)
    if export.status == SegmentExport.Status.FINISHED:
        title = f"Export of “{export.segment_name}” to {export.destination_name} finished"
        message = f"{export.sent} sent, {export.skipped} skipped, {export.failed} failed."
        level = Notification.Level.SUCCESS
    else:
        title = f"Export of “{export.segment_name}” to {export.destination_name} failed"
        message = export.error_message
        level = Notification.Level.ERROR
    notification_create(
        user=export.started_by, title=title, message=message, level=level, link=link,
        object_type="segment_export", object_id=str(export.pk),
    )  # fmt: skip


def export_run(
    *, export_id: int, sleep: Callable[[float], None] | None = None, retry_later: bool = True
) -> SegmentExport | None:
    """Run (or resume) one export. Returns None when there was nothing to claim (already running or done).

    A transient failure puts the export back to `waiting`; with `retry_later` a task resumes it in
    TRANSIENT_RETRY_DELAY_S, without it the caller does (`run_export`, which runs it in the foreground)."""
    now = timezone.now()
    claimed = SegmentExport.objects.filter(pk=export_id, status=SegmentExport.Status.WAITING).update(
        status=SegmentExport.Status.RUNNING,
        started_at=Coalesce(F("started_at"), Value(now)),
        heartbeat_at=now,
        attempts=F("attempts") + 1,
    )
    if not claimed:
        return None
    export = SegmentExport.objects.select_related("segment", "destination").get(pk=export_id)
    try:
        return _export_run_claimed(export, sleep=sleep, retry_later=retry_later)
    except Exception as exc:  # noqa: BLE001 — e.g. a segment whose attribute was deleted: an error, never stuck
        logger.exception("segment export %s failed", export_id)
        return _finish(export_id, status=SegmentExport.Status.ERROR, message=f"{type(exc).__name__}: {exc}"[:2000])


def _export_run_claimed(
    export: SegmentExport, *, sleep: Callable[[float], None] | None, retry_later: bool
) -> SegmentExport:
    export_id = export.pk
    if export.segment is None or export.destination is None:
        return _finish(export_id, status=SegmentExport.Status.ERROR, message="The segment or destination was deleted.")
    segment, destination = export.segment, export.destination
    try:
        loader = loader_for(destination.kind, destination.full_config())
    except (ConfigError, SecretsUnreadable) as exc:
        return _finish(export_id, status=SegmentExport.Status.ERROR, message=f"Invalid destination: {exc}")

    restart = loader.produces_file or not export.checkpoint_entity_id
    if restart:
        base = {"sent": 0, "skipped": 0, "failed": 0}
        after, state = "", {}
    else:
        base = {"sent": export.sent, "skipped": export.skipped, "failed": export.failed}
        after, state = export.checkpoint_entity_id, dict(export.checkpoint_state)
    sizes: dict[str, int | None] = {"total": export.total}
    counter: threading.Thread | None = None
    if export.total is None and loader.produces_file and not connection.in_atomic_block:
        # A file export is one COPY: count the members alongside it (own thread, own connection) rather than first.
        # (Inside a transaction — tests — another connection would not see its rows: count first.)
        counter = threading.Thread(target=_count_members, args=(export_id, segment, sizes), daemon=True)
        counter.start()
    elif export.total is None:
        sizes["total"] = segment_members_count(segment=segment)
        SegmentExport.objects.filter(pk=export_id).update(total=sizes["total"])
    total = sizes["total"]
    if restart:
        SegmentExport.objects.filter(pk=export_id).update(sent=0, skipped=0, failed=0, progress=0.0)
        members = f"{total} members" if total is not None else "the members"
        export_log(export_id=export_id, message=f"Started: {members} to {destination.name} ({loader.label}).")
    else:
        export_log(export_id=export_id, message=f"Resumed after entity {after} ({base['sent']} already sent).")

    def sending(last_entity_id: str) -> None:
        SegmentExport.objects.filter(pk=export_id).update(
            in_flight_entity_id=last_entity_id, heartbeat_at=timezone.now()
        )

    def checkpoint(
        *,
        last_entity_id: str | None,
        sent: int,
        skipped: int,
        failed: int,
        state: dict | None = None,
        customers: int | None = None,
    ):
        counts = {key: base[key] + value for key, value in (("sent", sent), ("skipped", skipped), ("failed", failed))}
        # `customers`: how many members the export has handled, from a loader whose counts are not customers (Meta
        # counts events: 13 events "sent" of 175 members showed 100 % when one customer had many events).
        done = customers if customers is not None else counts["sent"] + counts["skipped"] + counts["failed"]
        fields: dict[str, Any] = {
            **counts,
            "progress": min(1.0, done / sizes["total"]) if sizes["total"] else 0.0,
            "heartbeat_at": timezone.now(),
            "in_flight_entity_id": "",
        }
        if last_entity_id:
            fields["checkpoint_entity_id"] = last_entity_id
        if state is not None:
            fields["checkpoint_state"] = state
        SegmentExport.objects.filter(pk=export_id).update(**fields)

    # The last finished run of this segment to this destination: its details (a loader's own notes) and its id.
    last_finished, previous = (
        SegmentExport.objects.filter(segment=segment, destination=destination, status=SegmentExport.Status.FINISHED)
        .exclude(pk=export_id)
        .order_by("-finished_at", "-pk")
        .values_list("pk", "details")
        .first()
    ) or (None, None)
    members_sql = segment_members_sql(segment=segment) if loader.produces_file else None
    members_condition = segment_condition_sql(segment=segment) if loader.produces_file else None
    context = LoadContext(
        segment_id=segment.pk,
        segment_name=segment.name,
        attributes=list(destination.mandatory_attributes),
        members_sql=members_sql,
        members_condition=members_condition,
        state=state,
        previous=previous or {},
        export_id=export_id,
        log=lambda message: export_log(export_id=export_id, message=loader.scrub(message)),
        sending=sending,
        checkpoint=checkpoint,
        sleep=sleep,
    )
    leavers_of = record_for = new_since = None
    if getattr(loader, "wants_leavers", False):
        # Who left since the last finished run to this destination hears it (Customer.io: `In <name>` = false).
        record_for, leavers_of = export_id, last_finished
    if getattr(loader, "wants_new_members", False):
        # Who joined since the last finished run (Meta: their recent events are sent, not only the new ones).
        record_for, new_since = export_id, last_finished
    customers = _members(segment, after=after, record_for=record_for, leavers_of=leavers_of, new_since=new_since)
    if getattr(loader, "wants_memberships", False):
        customers = _with_memberships(customers, segment, _sibling_segments(segment, destination))
    try:
        result = loader.load(customers, context=context)
    except LoaderError as exc:
        message = loader.scrub(str(exc))
        in_flight = SegmentExport.objects.filter(pk=export_id).values_list("in_flight_entity_id", flat=True).first()
        # A transient failure may be retried later from the last checkpoint — unless a batch to a destination
        # that does not deduplicate may have arrived (e.g. a timeout after the receiver got it). A receiver that
        # refused every attempt (down for a deploy, 429 / 503) did not get it: that export is retried too, rather
        # than failed (a new export would send every earlier batch again).
        if (
            not exc.permanent
            and export.attempts < MAX_ATTEMPTS
            and (loader.idempotent or not in_flight or exc.undelivered)
        ):
            SegmentExport.objects.filter(pk=export_id).update(
                status=SegmentExport.Status.WAITING, in_flight_entity_id=""
            )
            export_log(export_id=export_id, message=f"{message}. Retrying in {TRANSIENT_RETRY_DELAY_S}s from the "
                       "last acknowledged batch.")  # fmt: skip
            if retry_later:
                _enqueue(export_id, countdown=TRANSIENT_RETRY_DELAY_S)
            return SegmentExport.objects.get(pk=export_id)
        return _finish(export_id, status=SegmentExport.Status.ERROR, message=message)
    except Exception as exc:  # noqa: BLE001 — any failure must end as a visible error, not a stuck export
        logger.exception("segment export %s failed", export_id)
        message = loader.scrub(f"Unexpected error: {type(exc).__name__}: {exc}")[:2000]
        return _finish(export_id, status=SegmentExport.Status.ERROR, message=message)
    fields: dict[str, Any] = {"progress": 1.0, "details": result.details}
    if counter is not None:
        counter.join(timeout=60)
    if loader.produces_file:
        fields.update(
            total=result.sent,
            sent=result.sent,
            skipped=result.skipped,
            failed=result.failed,
            file_name=result.details["file"],
        )
    for reason in result.errors[:20]:
        export_log(export_id=export_id, message=f"Rejected: {reason}")
    if record_for is not None:
        # Only this run's members matter for the next run's leavers.
        ExportedMember.objects.filter(
            export__segment=segment, export__destination=destination, export_id__lt=export_id
        ).delete()
    return _finish(export_id, status=SegmentExport.Status.FINISHED, **fields)


def exports_stale_recover(*, older_than: timedelta | None = None) -> dict[str, int]:
    """The watchdog: running exports without a heartbeat are resumed or cleanly failed; waiting exports whose
    task message was lost are enqueued again. Safe to run concurrently (rows are claimed SKIP LOCKED)."""
    cutoff = timezone.now() - (older_than if older_than is not None else stale_after())
    resumed = failed = requeued = 0
    with transaction.atomic():
        stale = list(
            SegmentExport.objects.select_for_update(skip_locked=True).filter(
                status=SegmentExport.Status.RUNNING, heartbeat_at__lt=cutoff
            )
        )
        for export in stale:
            idempotent = loader_class(export.destination_kind).idempotent
            if export.attempts >= MAX_ATTEMPTS:
                reason = f"The export stopped {export.attempts} times without finishing; giving up."
            elif export.in_flight_entity_id and not idempotent:
                reason = (
                    "The worker running this export stopped while a batch was being delivered. It may or may not "
                    "have arrived, and this destination does not deduplicate, so it was not sent again. "
                    f"{export.sent} customers were delivered before it; start a new export to send the segment again."
                )
            else:
                reason = ""
            if reason:
                export.status = SegmentExport.Status.ERROR
                export.error_message = reason
                export.finished_at = timezone.now()
                export.save(update_fields=["status", "error_message", "finished_at"])
                transaction.on_commit(lambda pk=export.pk, why=reason: _after_stale_failure(pk, why))
                failed += 1
            else:
                export.status = SegmentExport.Status.WAITING
                export.in_flight_entity_id = ""
                export.save(update_fields=["status", "in_flight_entity_id"])
                transaction.on_commit(
                    lambda pk=export.pk: export_log(export_id=pk, message="The worker stopped; resuming.")
                )
                _enqueue(export.pk)
                resumed += 1
        lost = (
            SegmentExport.objects.select_for_update(skip_locked=True)
            .filter(status=SegmentExport.Status.WAITING, created__lt=cutoff)
            .filter(Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=cutoff))
        )
        for export in lost:
            SegmentExport.objects.filter(pk=export.pk).update(heartbeat_at=timezone.now())
            _enqueue(export.pk)
            requeued += 1
    return {"resumed": resumed, "failed": failed, "requeued": requeued}


def _after_stale_failure(export_id: int, reason: str) -> None:
    export_log(export_id=export_id, message=reason)
    export_notify(export=SegmentExport.objects.select_related("started_by").get(pk=export_id))


# --- schedules ---------------------------------------------------------------------------------------------

FREQUENCY_PERIOD = {
    ExportSchedule.Frequency.HOURLY: timedelta(hours=1),
    ExportSchedule.Frequency.DAILY: timedelta(days=1),
}


@transaction.atomic
def schedule_set(
    *,
    segment: Segment,
    destination: ExportDestination,
    frequency: str | None = None,
    enabled: bool | None = None,
    user=None,
) -> ExportSchedule:
    """Create the pair's schedule, or change the one it has: only what is given changes (a new one is daily and
    enabled unless told otherwise), so re-sending a pair to change its frequency does not re-enable it."""
    if frequency is not None and frequency not in ExportSchedule.Frequency.values:
        raise ValidationError({"frequency": f"must be one of {', '.join(ExportSchedule.Frequency.values)}."})
    given = {name: value for name, value in (("frequency", frequency), ("enabled", enabled)) if value is not None}
    schedule, _ = ExportSchedule.objects.update_or_create(
        segment=segment,
        destination=destination,
        defaults=given,
        create_defaults={"frequency": ExportSchedule.Frequency.DAILY, "enabled": True, **given, "created_by": user},
    )
    return schedule


@transaction.atomic
def schedule_update(
    *, schedule: ExportSchedule, segment: Segment, destination: ExportDestination, frequency: str, enabled: bool
) -> ExportSchedule:
    """Change a schedule in place (the admin's change form). Another segment or destination makes it a schedule
    of a pair never exported on it: it runs at the next beat tick."""
    if frequency not in ExportSchedule.Frequency.values:
        raise ValidationError({"frequency": f"must be one of {', '.join(ExportSchedule.Frequency.values)}."})
    stored = ExportSchedule.objects.select_for_update().get(pk=schedule.pk)
    if ExportSchedule.objects.filter(segment=segment, destination=destination).exclude(pk=stored.pk).exists():
        raise ValidationError({"segment": "this segment already has a schedule to this destination."})
    if (stored.segment_id, stored.destination_id) != (segment.pk, destination.pk):
        stored.last_run_at = None
    stored.segment, stored.destination, stored.frequency, stored.enabled = segment, destination, frequency, enabled
    stored.save(update_fields=["segment", "destination", "frequency", "enabled", "last_run_at"])
    return stored


NEXT_TRY = {ExportSchedule.Frequency.HOURLY: "in an hour", ExportSchedule.Frequency.DAILY: "in a day"}


def schedule_failure_notify(*, schedule: ExportSchedule, error: ValidationError) -> None:
    if schedule.created_by is None:
        return
    link = _admin_link("admin:segments_exportschedule_change", schedule.pk)
    reasons = "; ".join(
        f"{field}: {' '.join(messages)}" for field, messages in error.message_dict.items()
    ) if hasattr(error, "error_dict") else " ".join(error.messages)  # fmt: skip
    notification_create(
        user=schedule.created_by,
        title=f"Scheduled export of “{schedule.segment.name}” to {schedule.destination.name} not started",
        message=f"{reasons} It is tried again {NEXT_TRY[schedule.frequency]}.",
        level=Notification.Level.ERROR, link=link, object_type="export_schedule", object_id=str(schedule.pk),
    )  # fmt: skip


def schedules_run_due(*, now=None) -> int:
    """Start the exports whose schedule is due (a schedule never runs twice at once). Returns how many started."""
    now = now or timezone.now()
    started = 0
    with transaction.atomic():
        for schedule in (
            ExportSchedule.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("segment", "destination", "created_by")
            .filter(enabled=True, segment__trashed_at__isnull=True)
        ):
            period = FREQUENCY_PERIOD[schedule.frequency]
            # A little slack so an hourly beat tick that runs a few seconds early still starts the export.
            if schedule.last_run_at and schedule.last_run_at > now - period + timedelta(minutes=1):
                continue
            busy = SegmentExport.objects.filter(
                segment=schedule.segment,
                destination=schedule.destination,
                status__in=[SegmentExport.Status.WAITING, SegmentExport.Status.RUNNING],
            ).exists()
            if busy:
                continue
            try:
                with transaction.atomic():
                    export_create(
                        segment=schedule.segment,
                        destination=schedule.destination,
                        user=schedule.created_by,
                        schedule=schedule,
                    )
            except ValidationError as exc:
                # Was a warning in the worker's log every 5 minutes, nothing the schedule's owner could see (a
                # destination whose key became unreadable, a changed config): now tried again next period, and
                # the owner is told each time.
                logger.warning("scheduled export %s not started: %s", schedule.pk, exc)
                schedule.last_run_at = now
                schedule.save(update_fields=["last_run_at"])
                schedule_failure_notify(schedule=schedule, error=exc)
                continue
            schedule.last_run_at = now
            schedule.save(update_fields=["last_run_at"])
            started += 1
    return started
