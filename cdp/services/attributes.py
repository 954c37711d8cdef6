"""Computed customer attributes: definitions (create / update / delete) and their computation.

Storage: `customer_entities.attributes` is one jsonb object per customer, {"<attribute id>": [values...]}, with a
GIN (jsonb_path_ops) index. An attribute without a value is absent (so "is not set" is `NOT attributes ? id`),
except counts, which are always set (0 is a value a marketer filters on). Values are typed JSON: numbers as JSON
numbers, booleans as true / false, dates as "YYYY-MM-DD", date-times as UTC "YYYY-MM-DDTHH:MM:SS.ffffffZ"
(fixed width, so they sort lexicographically, and segment conditions can compare strings).

Computation: customers queued in `customer_entities_stale` (the stitching engine queues what it touched) are
claimed in bounded batches with `FOR UPDATE SKIP LOCKED`, so several workers share the queue without waiting on
each other.
Each batch is one UPDATE statement (after the claim): every definition is compiled into an aggregate over the
batch's events (jsonb path extraction, filters on source and type, safe casts that turn a bad payload value into
"no value" instead of an error) plus the identifiers stitched to the entity, the stored object assembled as JSON
text; the UPDATE ... FROM writes (and moves `modified` of) only the customers whose object really changed.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from django.core.exceptions import ValidationError
from django.db import DatabaseError, OperationalError, connection, transaction
from psycopg import sql

from cdp.models import Attribute, DataSource, StaleEntity
from cdp.services.global_settings import global_setting_get
from cdp.values import DATETIME_FORMAT

logger = logging.getLogger(__name__)

C = Attribute.Computation
T = Attribute.DataType

# Entities per statement: large enough that per-statement overhead is small, small enough that a batch's row
# locks and memory stay modest and other workers find unclaimed work. (A full recompute of the benchmark's 350k
# customers in two workers: ~6 % faster at 10,000 than at 5,000, interleaved; no better at 20,000 or 50,000.)
BATCH_SIZE = 10_000
# unique_values keeps at most this many values (in sort order): a list a profile can show and a segment can use.
UNIQUE_VALUES_MAX = 200
MAX_PATH_DEPTH = 10

ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")  # (\Z: "$" would let a trailing line break through)
ID_MESSAGE = "Use lower-case letters, digits and _, starting with a letter (max 64)."

# Which data types each computation may produce.
ALLOWED_TYPES: dict[str, set[str]] = {
    C.IDENTIFIER_VALUES: {T.STRING},
    C.COUNT: {T.INT},
    C.FIRST_EVENT_TIME: {T.DATETIME, T.DATE},
    C.LAST_EVENT_TIME: {T.DATETIME, T.DATE},
    C.SUM: {T.INT, T.FLOAT},
    C.AVERAGE: {T.FLOAT, T.INT},
    C.MIN: {T.INT, T.FLOAT, T.DATE, T.DATETIME, T.STRING},
    C.MAX: {T.INT, T.FLOAT, T.DATE, T.DATETIME, T.STRING},
    C.FIRST_VALUE: set(T.values),
    C.LAST_VALUE: set(T.values),
    C.UNIQUE_VALUES: set(T.values),
}
# A compound attribute's fields: at most this many, each of a scalar data type.
MAX_FIELDS = 20
FIELD_TYPES = [t for t in T.values if t != T.COMPOUND]
DEFAULT_TYPES: dict[str, str] = {
    C.COUNT: T.INT,
    C.FIRST_EVENT_TIME: T.DATETIME,
    C.LAST_EVENT_TIME: T.DATETIME,
    C.SUM: T.FLOAT,
    C.AVERAGE: T.FLOAT,
    C.MIN: T.FLOAT,
    C.MAX: T.FLOAT,
}
PATHLESS = {C.IDENTIFIER_VALUES, C.COUNT, C.FIRST_EVENT_TIME, C.LAST_EVENT_TIME}
# Fields whose change changes values (name, description and unit do not).
COMPUTATION_FIELDS = ("data_type", "computation", "category", "sources", "event_types", "path", "fields")


# --- definitions ---------------------------------------------------------------------------------------------


def attribute_validate(
    *,
    computation: str,
    data_type: str,
    category: str = "",
    path: str = "",
    event_types: Sequence[str] = (),
    sources: Sequence[DataSource] = (),
    fields: Any = (),
) -> None:
    """Raise ValidationError ({field: message}) unless the declared computation makes sense."""
    errors: dict[str, str] = {}
    if computation not in C.values:
        errors["computation"] = f"Unknown computation {computation!r}; one of: {', '.join(C.values)}."
    if data_type not in T.values:
        errors["data_type"] = f"Unknown data type {data_type!r}; one of: {', '.join(T.values)}."
    if errors:
        raise ValidationError(errors)
    allowed = ALLOWED_TYPES[computation]
    if data_type not in allowed:

        def named(code: str) -> str:
            label = T(code).label.lower()
            return label if label.startswith(code) else f"{code} ({label})"

        errors["data_type"] = (
            f"An attribute computing {C(computation).label.lower()} ({computation}) has the data type "
            f"{' or '.join(named(code) for code in sorted(allowed))}, not {named(data_type)}."
        )
    if data_type == T.COMPOUND:
        if path:
            errors["path"] = "A compound attribute reads its fields' paths; leave its own path empty."
        if (problem := fields_problem(fields)) is not None:
            errors["fields"] = problem
    elif fields:
        errors["fields"] = "Only a compound attribute has fields."
    elif computation in PATHLESS:
        if path:
            errors["path"] = f"A {computation} attribute does not read a payload path; leave it empty."
    elif not path:
        errors["path"] = f"A {computation} attribute needs the payload path of the value, e.g. properties.revenue."
    elif (message := path_problem(path)) is not None:
        errors["path"] = message
    if computation == C.IDENTIFIER_VALUES:
        if not category:
            errors["category"] = "Identifier values need a stitching category, e.g. email."
        elif not _category_exists(category):
            errors["category"] = f"Unknown stitching category {category!r}."
        if event_types or sources:
            errors["event_types"] = "Identifier values come from stitching; they cannot be limited to some events."
    elif category:
        errors["category"] = "Only identifier_values attributes name a stitching category."
    for event_type in event_types:
        if not isinstance(event_type, str) or not event_type.strip() or len(event_type) > 128:
            errors["event_types"] = f"Event types are non-empty texts of at most 128 characters; got {event_type!r}."
            break
        if event_type != event_type.strip() or any(ord(c) < 32 or ord(c) == 127 for c in event_type):
            errors["event_types"] = (
                f"The event type {event_type!r} has spaces around it or a control character (a line break?): "
                "no event has that type. Give each type as its own item."
            )
            break
    if errors:
        raise ValidationError(errors)


def fields_problem(fields: Any) -> str | None:
    """Why a compound attribute's fields are unusable, or None. Fields: a list of {"id", "name" (optional),
    "data_type", "path"}."""
    if not isinstance(fields, list) or not fields:
        return 'A compound attribute needs a list of fields, e.g. [{"id": "total", "data_type": "float", "path": ' \
            '"properties.revenue"}].'  # fmt: skip
    if len(fields) > MAX_FIELDS:
        return f"At most {MAX_FIELDS} fields."
    seen = set()
    for n, item in enumerate(fields, 1):
        if not isinstance(item, dict):
            return f"Field {n} is not an object with id, data_type and path."
        unknown = set(item) - {"id", "name", "data_type", "path"}
        if unknown:
            return f"Field {n} has unknown keys: {', '.join(sorted(map(str, unknown)))}."
        field_id = item.get("id")
        if not isinstance(field_id, str) or not ID_RE.match(field_id):
            return f"The id of field {n}: {ID_MESSAGE}"
        if field_id in seen:
            return f"Two fields have the id {field_id!r}."
        seen.add(field_id)
        if not isinstance(item.get("name", ""), str) or len(item.get("name", "")) > 200:
            return f"The name of field {field_id!r} is a text of at most 200 characters."
        if item.get("data_type") not in FIELD_TYPES:
            return f"The data_type of field {field_id!r} is one of: {', '.join(FIELD_TYPES)}."
        path = item.get("path")
        if not isinstance(path, str) or not path.strip():
            return f"Field {field_id!r} needs the payload path of its value, e.g. properties.revenue."
        if (problem := path_problem(path.strip())) is not None:
            return f"Field {field_id!r}: {problem}"
    return None


def fields_clean(fields: list[dict]) -> list[dict]:
    """Valid fields (see fields_problem) as stored: every key present, paths trimmed, names defaulting to the id."""
    return [
        {"id": f["id"], "name": (f.get("name") or "").strip() or f["id"], "data_type": f["data_type"],
         "path": f["path"].strip()}
        for f in fields
    ]  # fmt: skip


def jsonpath_problem(path: str) -> str | None:
    """A JSONPath habit ("$.traits.email") in a dotted payload path: what to write instead, or None. ("$email"
    alone is a key of its own, as some trackers name them.)"""
    if path.startswith("$."):
        return f"Write the path without JSONPath's '$.', e.g. {path[2:80]!r}: it is read from the payload's top."
    return None


def path_problem(path: str) -> str | None:
    """Why a dotted payload path is unusable, or None."""
    if (problem := jsonpath_problem(path)) is not None:
        return problem
    parts = path.split(".")
    if len(parts) > MAX_PATH_DEPTH:
        return f"At most {MAX_PATH_DEPTH} levels in a path."
    if any(part.strip() == "" for part in parts):
        return f"{path!r} is not a dotted path such as properties.revenue (empty part)."
    if "\x00" in path:
        return "A path cannot contain NUL characters."
    return None


def _category_exists(category: str) -> bool:
    # Lazy: the stitching app builds on cdp; categories live there.
    from stitching.models import StitchingCategory

    return StitchingCategory.objects.filter(pk=category).exists()


@transaction.atomic
def attribute_create(
    *,
    id: str,
    name: str,
    computation: str,
    data_type: str | None = None,
    description: str = "",
    unit: str = "",
    category: str = "",
    path: str = "",
    event_types: Sequence[str] = (),
    sources: Iterable[DataSource] = (),
    fields: Any = (),
) -> Attribute:
    """Create a definition and queue every customer for recomputation (the task runs after commit).

    Without `data_type`, the computation's natural one: int for a count, datetime for event times, float for
    sum / average, string otherwise."""
    sources = list(sources)
    if data_type is None:
        data_type = DEFAULT_TYPES.get(computation, T.STRING)
    if not ID_RE.match(id or ""):
        raise ValidationError({"id": ID_MESSAGE})
    if Attribute.objects.filter(pk=id).exists():
        raise ValidationError({"id": f"An attribute with the id {id!r} exists already."})
    if not (name or "").strip():
        raise ValidationError({"name": "A name is required."})
    path = (path or "").strip()
    event_types = [t.strip() for t in event_types]
    fields = list(fields) if isinstance(fields, list | tuple) else fields
    attribute_validate(
        computation=computation, data_type=data_type, category=category, path=path, event_types=event_types,
        sources=sources, fields=fields,
    )  # fmt: skip
    attribute = Attribute.objects.create(
        id=id, name=name.strip(), description=description, data_type=data_type, unit=unit, computation=computation,
        category=category, path=path, event_types=event_types, fields=fields_clean(fields) if fields else [],
    )  # fmt: skip
    attribute.sources.set(sources)
    entities_mark_stale()
    return attribute


@transaction.atomic
def attribute_update(*, attribute: Attribute, **fields) -> Attribute:
    """Change a definition. When what it computes changes, every customer is queued for recomputation."""
    unknown = set(fields) - {"name", "description", "unit", *COMPUTATION_FIELDS}
    if unknown:
        raise ValidationError({sorted(unknown)[0]: "This field cannot be changed (the id is permanent)."})
    before = _computation_of(attribute)
    sources = list(fields.pop("sources")) if "sources" in fields else list(attribute.sources.all())
    if "path" in fields:
        fields["path"] = (fields["path"] or "").strip()
    if "event_types" in fields:
        fields["event_types"] = [t.strip() if isinstance(t, str) else t for t in fields["event_types"]]
    if "name" in fields and not (fields["name"] or "").strip():
        raise ValidationError({"name": "A name is required."})
    data_type, old_fields = attribute.data_type, attribute.fields
    if fields.get("data_type", T.COMPOUND) != T.COMPOUND and "fields" not in fields:
        fields["fields"] = []  # a compound attribute that becomes another type leaves its fields
    for key, value in fields.items():
        setattr(attribute, key, value)
    attribute_validate(
        computation=attribute.computation, data_type=attribute.data_type, category=attribute.category,
        path=attribute.path, event_types=attribute.event_types, sources=sources, fields=attribute.fields,
    )  # fmt: skip
    attribute.fields = fields_clean(attribute.fields) if attribute.fields else []
    if attribute.data_type != data_type or attribute.fields != old_fields:
        attribute_data_type_check(attribute=attribute, data_type=attribute.data_type, fields=attribute.fields)
    attribute.save()
    attribute.sources.set(sources)
    if _computation_of(attribute) != before:
        entities_mark_stale()
    return attribute


@transaction.atomic
def attribute_delete(*, attribute: Attribute) -> None:
    """Delete a definition and its stored values (customers holding one count as modified). Refused (ValidationError
    naming them) while segments, export destinations or the Audience API setting use it: they would break."""
    dependents = attribute_dependents(attribute=attribute)
    if dependents:
        raise ValidationError(
            f"“{attribute.name}” ({attribute.pk}) cannot be deleted: it is used by {_and(dependents)}. "
            "Remove it from them first."
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE customer_entities SET attributes = attributes - %s, modified = statement_timestamp() "
            "WHERE attributes ? %s",
            [attribute.pk, attribute.pk],
        )
    attribute.delete()


# A refusal names this many dependents of each kind, then says how many more there are.
DEPENDENTS_NAMED = 5


def attribute_dependents(
    *, attribute: Attribute, data_type: str | None = None, fields: list[dict] | None = None
) -> list[str]:
    """What uses the attribute, one phrase per kind (e.g. `2 segments (“Adults”, “Teens” in the trash)`); empty
    when nothing does. Trashed segments count: restoring one must not bring back a segment that cannot be evaluated.

    With `data_type`: what changing the attribute to that type would break, i.e. the segments whose conditions
    would no longer fit it (destinations and the Audience API pass values of any type on)."""
    # Lazy: the segments app builds on cdp.
    from segments.audience import RETURNED_ATTRIBUTES_SETTING
    from segments.exports.selectors import destinations_using_attribute
    from segments.selectors import segments_using_attribute

    segments = [
        f"“{segment.name}”" + (" in the trash" if segment.is_trashed else "")
        for segment in segments_using_attribute(attribute_id=attribute.pk, data_type=data_type, fields=fields)
    ]
    found = [_dependents_named("segment", segments)]
    if data_type is None:
        destinations = destinations_using_attribute(attribute_id=attribute.pk).values_list("name", flat=True)
        found.append(_dependents_named("export destination", [f"“{name}”" for name in destinations]))
        if attribute.pk in global_setting_get(RETURNED_ATTRIBUTES_SETTING):
            found.append(f"the Audience API's returned attributes (global setting {RETURNED_ATTRIBUTES_SETTING})")
    return [phrase for phrase in found if phrase]


def _dependents_named(kind: str, names: Sequence[str]) -> str:
    if not names:
        return ""
    shown = ", ".join(names[:DEPENDENTS_NAMED])
    if len(names) > DEPENDENTS_NAMED:
        shown += f" and {len(names) - DEPENDENTS_NAMED} more"
    return f"{len(names)} {kind}{'' if len(names) == 1 else 's'} ({shown})"


def _and(phrases: Sequence[str]) -> str:
    return phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} and {phrases[-1]}"


def attribute_data_type_check(*, attribute: Attribute, data_type: str, fields: list[dict] | None = None) -> None:
    """Raise ValidationError ({"data_type": message}) when changing the attribute to `data_type` (a compound one's
    to these `fields`) would leave segments that cannot be evaluated (their conditions were written for the current
    type or fields)."""
    broken = attribute_dependents(attribute=attribute, data_type=data_type, fields=fields)
    if broken and data_type == T.COMPOUND and Attribute.objects.filter(pk=attribute.pk, data_type=T.COMPOUND).exists():
        raise ValidationError(
            {
                "fields": f"The conditions of {_and(broken)} use fields of “{attribute.name}” these fields leave out. "
                "Keep them, or change the conditions first."
            }
        )
    if broken:
        raise ValidationError(
            {
                "data_type": f"“{attribute.name}” cannot become {T(data_type).label.lower()}: the conditions of "
                f"{_and(broken)} would no longer fit. Change them first."
            }
        )


def _computation_of(attribute: Attribute) -> tuple:
    sources = tuple(sorted(attribute.sources.values_list("pk", flat=True))) if attribute.pk else ()
    # (A compound attribute's field names and order change no value.)
    fields = tuple(sorted((f["id"], f["data_type"], f["path"]) for f in attribute.fields or []))
    return (attribute.data_type, attribute.computation, attribute.category, sources,
            tuple(attribute.event_types), attribute.path, fields)  # fmt: skip


def entities_mark_stale(*, entity_ids: Iterable[str] | None = None, enqueue: bool = True) -> int:
    """Queue customers (all, or the given ones) for recomputation; the task is enqueued after commit unless
    `enqueue` is False (the caller works the queue off itself). Returns how many were not queued yet."""
    # In id order, as stitching queues customers (entities_queue_sql, once per transaction): two inserting the
    # same ids in different orders wait for each other's uncommitted ids, a deadlock PostgreSQL breaks by failing
    # one of them (an attribute definition saved while workers stitch).
    with connection.cursor() as cursor:
        if entity_ids is None:
            cursor.execute(
                "INSERT INTO customer_entities_stale (entity_id) SELECT id FROM customer_entities ORDER BY id "
                "ON CONFLICT DO NOTHING"
            )
        else:
            cursor.execute(entities_queue_sql(), [sorted(set(entity_ids))])
        marked = cursor.rowcount
    if enqueue:
        transaction.on_commit(_enqueue_recompute)
    return marked


def entities_queue_sql(ids_param: str = "%s") -> str:
    """SQL that queues the customers in the varchar array parameter that exist, in id order (see
    entities_mark_stale): for the stitching engine's own cursor, once per transaction."""
    return (
        "INSERT INTO customer_entities_stale (entity_id) SELECT c.id FROM customer_entities c "
        f"WHERE c.id = ANY({ids_param}::varchar[]) ORDER BY c.id ON CONFLICT DO NOTHING"
    )


def _enqueue_recompute() -> None:
    from cdp.tasks import attributes_recompute_enqueue

    attributes_recompute_enqueue()


def stale_entities_exist() -> bool:
    return StaleEntity.objects.exists()


# --- computation ---------------------------------------------------------------------------------------------


def attributes_recompute(
    *,
    entity_ids: Iterable[str] | None = None,
    limit: int | None = None,
    progress: Callable[[int], object] | None = None,
) -> int:
    """Recompute attribute values; returns how many customers were recomputed (taken from the queue, or the given
    ones that exist). Only those whose values changed are written.

    Without `entity_ids`: the stale customers (the queue), in batches of BATCH_SIZE, each batch its own
    transaction claimed with SKIP LOCKED, until the queue is empty or `limit` customers were done. With
    `entity_ids`: exactly those (stale or not; unknown ids are ignored). Safe to run in several processes at once.
    `progress` is called with each batch's number of customers (a progress bar's update).
    """
    program = compile_attributes(list(Attribute.objects.prefetch_related("sources")))
    written = 0
    if entity_ids is not None:
        ids = sorted({str(i).lower() for i in entity_ids})
        done = 0
        for start in range(0, len(ids), BATCH_SIZE):
            claimed, changed, _ = _batch_run(program, ids=ids[start : start + BATCH_SIZE])
            done += claimed
            written += changed
            if progress is not None:
                progress(claimed)
        if written:
            gin_pending_list_clean()
        return done
    claimed_total = 0
    # The queue is claimed in id order from where this run's last batch ended: claimed rows stay in the index as
    # dead entries until vacuum, and a claim from the start would step over all of them (a run of 70 batches
    # spent a tenth of its time there). What was queued behind the position is found by one more pass from the
    # start once the end is reached.
    after, wrapped = "", False
    while limit is None or claimed_total < limit:
        size = BATCH_SIZE if limit is None else min(BATCH_SIZE, limit - claimed_total)
        claimed, changed, last = _batch_run(program, stale=size, after=after)
        claimed_total += claimed
        written += changed
        if progress is not None and claimed:
            progress(claimed)
        if claimed:
            after = last
        elif after and not wrapped:
            after, wrapped = "", True
        else:
            break
    if written:
        gin_pending_list_clean()
    return claimed_total


def gin_pending_list_clean() -> None:
    """Merge the attributes GIN index's pending list into the index: batches append their new entries there (cheap
    to write, merged in bulk), and every lookup scans the whole list until it is merged."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT gin_clean_pending_list('customer_entities_attributes'::regclass)")
    except DatabaseError:  # not the index's owner (a deployment with a separate migration role): vacuum merges it
        logger.debug("could not merge the attributes index's pending list", exc_info=True)


DEADLOCK_DETECTED = "40P01"  # SQLSTATE
MAX_DEADLOCK_RETRIES = 5


def is_deadlock(error: BaseException) -> bool:
    """Whether PostgreSQL aborted the transaction to break a deadlock (the other one went through)."""
    return isinstance(error, OperationalError) and getattr(error.__cause__, "sqlstate", None) == DEADLOCK_DETECTED


def _batch_run(program: Program, **claim) -> tuple[int, int, str]:
    """_batch_transaction, run again when PostgreSQL aborted it to break a deadlock (stitching queues customers
    while batches claim them; nothing of an aborted batch stays)."""
    for attempt in range(MAX_DEADLOCK_RETRIES + 1):
        try:
            return _batch_transaction(program, **claim)
        except OperationalError as error:
            if not is_deadlock(error) or attempt == MAX_DEADLOCK_RETRIES:
                raise
            logger.info("attributes: deadlock broken by PostgreSQL, retrying the batch")
            time.sleep(0.01 * (attempt + 1) * (0.5 + random.random()))
    raise AssertionError("unreachable")


@transaction.atomic
def _batch_transaction(
    program: Program, *, ids: list[str] | None = None, stale: int = 0, after: str = ""
) -> tuple[int, int, str]:
    """One batch in one transaction: (customers claimed, customers whose values changed and were written, the
    greatest id claimed). A stale batch claims ids greater than `after`; given ids claim those that exist."""
    with connection.cursor() as cursor:
        if ids is not None:
            # Given ids: wait for a concurrent batch holding them (ordered locking: no deadlock between workers).
            cursor.execute(
                "SELECT array_agg(id) FROM (SELECT id FROM customer_entities WHERE id = ANY(%s::varchar[]) "
                "ORDER BY id FOR UPDATE) claimed",
                [ids],
            )
            claimed = cursor.fetchone()[0] or []
            cursor.execute("DELETE FROM customer_entities_stale WHERE entity_id = ANY(%s::varchar[])", [ids])
        else:
            # Claimed by deleting from the queue: a worker that dies rolls back and the rows are queued again. The
            # locked rows are deleted by their ctid (a TID scan): `entity_id IN (...)` was planned as a hash semi
            # join over the whole queue, ten times the cost of the claim itself.
            cursor.execute(
                "DELETE FROM customer_entities_stale WHERE ctid = ANY(ARRAY(SELECT ctid FROM customer_entities_stale "
                "WHERE entity_id > %s ORDER BY entity_id LIMIT %s FOR UPDATE SKIP LOCKED)) RETURNING entity_id",
                [after, stale],
            )
            claimed = [row[0] for row in cursor.fetchall()]
        if not claimed:
            return 0, 0, after
        # Sorting a batch's events fits in memory; a parallel plan would gain nothing on a batch and could feed
        # the aggregates out of the newest-first order first / last values rely on.
        # JIT compiling the statement's expressions costs more than it saves on a batch of a few thousand rows.
        cursor.execute(
            "SELECT set_config('work_mem', '64MB', true), set_config('max_parallel_workers_per_gather', '0', true), "
            "set_config('jit', 'off', true)"
        )
        claimed.sort()  # (by code point: the C collation of the id columns)
        return len(claimed), _update_execute(program, claimed, dense=_is_dense(cursor, claimed)), claimed[-1]


# A batch of at least this many customers that are all (or nearly all: at most a quarter more) the customers from
# its first id to its last is computed by the range form of the statement (Program.update_range_sql).
RANGE_MIN = 100


def _is_dense(cursor, ids: list[str]) -> bool:
    """Whether the customers from ids[0] to ids[-1] are at most a quarter more than `ids` (sorted): then one range
    scan of each entity index reads the batch's events and identifiers at less cost than a search per customer
    (the queue holds every customer after a full stitch or a definition change; batches are claimed in id order).
    Counted by the primary key, never past the limit."""
    if len(ids) < RANGE_MIN:
        return False
    limit = len(ids) + len(ids) // 4 + 1
    cursor.execute(
        "SELECT count(*) FROM (SELECT FROM customer_entities WHERE id BETWEEN %s AND %s LIMIT %s) z",
        [ids[0], ids[-1], limit],
    )
    return cursor.fetchone()[0] < limit


def _update_execute(program: Program, ids: list[str], *, dense: bool = False) -> int:
    """Run a batch's UPDATE (one statement); returns how many rows it wrote. With server-side binding: the ids go
    once, as one array parameter. Django's cursor binds client-side, quoting the 5,000 ids into the statement at
    each of their three mentions (~670 kB of SQL to build and parse: a fifth of a batch's time)."""
    with psycopg.Cursor(connection.connection) as cursor:
        if dense:
            cursor.execute(program.update_range_sql, {"ids": ids, "lo": ids[0], "hi": ids[-1]})
        else:
            cursor.execute(program.update_sql, {"ids": ids})
        return cursor.rowcount


# --- the SQL compiler ----------------------------------------------------------------------------------------

NUMBER_RE = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d{1,3})?\s*$"
DATETIME_RE = r"^\s*\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?\s*(Z|z|[+-]\d{2}(:?\d{2})?)?\s*$"
TRUE_TEXTS = ("true", "yes", "1")
FALSE_TEXTS = ("false", "no", "0")


def _lit(value) -> str:
    """An SQL literal (psycopg quoting: safe for any text an administrator typed)."""
    # Doubled %: statements run with pyformat parameters (%(ids)s), so a literal % must be escaped.
    return sql.Literal(value).as_string(None).replace("%", "%%")


def typed_value(j: str, data_type: str) -> str:
    """SQL turning the jsonb expression `j` (a column: cheap to repeat) into a typed SQL value or NULL.

    Never raises: a value of the wrong shape (an object, "abc" for a number, "2024-02-30" for a date) is NULL.
    """
    text = f"({j} #>> '{{}}')"
    if data_type == T.STRING:
        return (
            f"(CASE jsonb_typeof({j}) WHEN 'string' THEN NULLIF(btrim({text}), '') "
            f"WHEN 'number' THEN {text} WHEN 'boolean' THEN {text} END)"
        )
    if data_type in (T.INT, T.FLOAT):
        number = (
            f"(CASE jsonb_typeof({j}) WHEN 'number' THEN ({j})::numeric "
            f"WHEN 'string' THEN CASE WHEN {text} ~ {_lit(NUMBER_RE)} THEN btrim({text})::numeric END END)"
        )
        return f"round({number})" if data_type == T.INT else number
    if data_type == T.BOOL:
        return (
            f"(CASE jsonb_typeof({j}) WHEN 'boolean' THEN ({j})::boolean "
            f"WHEN 'string' THEN CASE WHEN lower(btrim({text})) IN {TRUE_TEXTS} THEN true "
            f"WHEN lower(btrim({text})) IN {FALSE_TEXTS} THEN false END "
            f"WHEN 'number' THEN CASE {text} WHEN '1' THEN true WHEN '0' THEN false END END)"
        )
    if data_type == T.DATE:
        return (
            f"(CASE WHEN jsonb_typeof({j}) = 'string' AND {text} ~ {_lit(DATETIME_RE)} "
            f"THEN cdp_try_date(left(btrim({text}), 10)) END)"
        )
    if data_type == T.DATETIME:
        return (
            f"(CASE WHEN jsonb_typeof({j}) = 'string' AND {text} ~ {_lit(DATETIME_RE)} "
            f"THEN cdp_try_timestamptz(btrim({text})) END)"
        )
    raise ValueError(f"unknown data type {data_type!r}")


def json_text(value: str, data_type: str) -> str:
    """SQL turning a typed SQL value (see typed_value) into the JSON text of the stored scalar (NULL for NULL).

    The stored object is assembled as text and parsed once: building it from jsonb pieces (jsonb_build_object of
    jsonb_build_array of to_jsonb, then jsonb_strip_nulls) cost twice the rest of a batch's computation."""
    if data_type == T.FLOAT:
        return f"trim_scale({value})::text"
    if data_type == T.INT:
        return f"round({value})::text"
    if data_type == T.DATE:
        return f"('\"' || to_char({value}, 'YYYY-MM-DD') || '\"')"
    if data_type == T.DATETIME:
        return f"('\"' || to_char(({value}) AT TIME ZONE 'UTC', {_lit(DATETIME_FORMAT)}) || '\"')"
    if data_type == T.BOOL:
        return f"({value})::text"
    return f"to_json({value})::text"


def json_value(value: str, data_type: str) -> str:
    """SQL turning a typed SQL value (see typed_value) into the stored jsonb scalar: built directly where its text
    is jsonb's own output (no text to parse), else parsed from json_text."""
    if data_type == T.FLOAT:
        return f"to_jsonb(trim_scale({value}))"
    if data_type == T.INT:
        return f"to_jsonb(round({value}))"
    if data_type in (T.BOOL, T.STRING):
        return f"to_jsonb({value})"
    return f"({json_text(value, data_type)})::jsonb"


@dataclass(frozen=True)
class Program:
    """The compiled statement for the current definitions. `update_sql` takes the parameter `ids` (entity ids)."""

    update_sql: str
    select_sql: str  # the same computation as SELECT id, attributes (for tests and the benchmark baseline)
    attribute_ids: tuple[str, ...]
    # The same UPDATE for a batch that is (nearly) every entity from `lo` to `hi` (see _compile_form).
    update_range_sql: str = ""


def compile_attributes(attributes: Sequence[Attribute], *, all_entities: bool = False) -> Program:
    """Compile the definitions into one statement computing every attribute for a batch of entities.

    `all_entities=True` compiles the unbatched form (no id parameter): every entity in one pass, used as the
    benchmark's baseline.

    The system events stitching records on a customer (merged, split) are bookkeeping, not the customer's
    activity: an attribute reads them only when it names the system source among its sources (else a merge would
    count as an event and make a dormant customer "last seen" at the merge).

    Per event, each distinct condition (sources, event types) is evaluated once, as a flag, and each payload path
    is typed once per data type, before the sort: the aggregates then read columns (several attributes share a
    condition or a typed value: total, largest and average order value read one).
    """
    from stitching.services.engine import system_source_id

    system = system_source_id()
    reads_system = bool(system) and any(system in {s.pk for s in a.sources.all()} for a in attributes)
    parts = _Parts()
    for attribute in attributes:
        computation, data_type = attribute.computation, attribute.data_type
        conditions = []
        source_ids = sorted(s.pk for s in attribute.sources.all())
        if source_ids:
            conditions.append(f"e.source_id = ANY({_lit(source_ids)}::bigint[])")
        elif reads_system:  # (else the events subquery leaves the system events out for every attribute)
            conditions.append(f"e.source_id <> {int(system)}")
        if attribute.event_types:
            conditions.append(f"e.type = ANY({_lit(list(attribute.event_types))}::text[])")
        name = f"a{len(parts.event_aggs)}"
        if computation == C.IDENTIFIER_VALUES:
            iname = f"i{len(parts.ident_aggs)}"
            parts.ident_aggs.append(
                f"string_agg(to_json(i.value)::text, ',') "
                f"FILTER (WHERE i.category_id = {_lit(attribute.category)}) AS {iname}"
            )
            parts.finals.append((attribute.id, "[", f"idents.{iname}", "]"))
            continue
        flag = parts.flag(" AND ".join(conditions))  # (None: every event)
        where = f" FILTER (WHERE {flag})" if flag else ""
        if computation == C.COUNT:
            parts.event_aggs.append(f"count(*){where} AS {name}")
            parts.finals.append((attribute.id, "[", f"coalesce(ev.{name}, 0)::text", "]"))
            continue
        if computation in (C.FIRST_EVENT_TIME, C.LAST_EVENT_TIME):
            aggregate = "min" if computation == C.FIRST_EVENT_TIME else "max"
            parts.event_aggs.append(f"{aggregate}(x.event_time){where} AS {name}")
            time = f"ev.{name}" if data_type == T.DATETIME else f"(ev.{name} AT TIME ZONE 'UTC')::date"
            parts.finals.append((attribute.id, *_single(time, data_type)))
            continue
        if data_type == T.COMPOUND:
            # Per event, an object of its fields' typed values (fields without a value left out; no object when
            # none has one).
            members = ", ".join(
                f"{_lit(f['id'])}, {parts.typed(f['path'], f['data_type'], attribute.event_types, as_json=True)}"
                for f in attribute.fields
            )
            value = f"NULLIF(jsonb_strip_nulls(jsonb_build_object({members})), '{{}}'::jsonb)"
        else:
            value = parts.typed(attribute.path, data_type, attribute.event_types)
        present = f"{flag} AND {value} IS NOT NULL" if flag else f"{value} IS NOT NULL"
        if computation in (C.FIRST_VALUE, C.LAST_VALUE):
            # Events arrive newest first (see `events`): element 1 is the last value, the final one the first.
            # An ORDER BY inside the aggregate would start a sort per customer and attribute, ten times slower.
            parts.event_aggs.append(f"array_agg({value}) FILTER (WHERE {present}) AS {name}")
            index = "1" if computation == C.LAST_VALUE else f"array_upper(ev.{name}, 1)"
            element = f"ev.{name}[{index}]"
            if data_type == T.COMPOUND:
                parts.finals.append((attribute.id, "[", f"({element})::text", "]"))
            else:
                parts.finals.append((attribute.id, *_single(element, data_type)))
        elif computation == C.UNIQUE_VALUES:
            # A jsonb object keyed by the value's text de-duplicates without a per-customer sort; its values in key
            # order (jsonb's: shorter keys first, then bytewise) are the stored list, at most UNIQUE_VALUES_MAX.
            as_json = (
                value
                if data_type == T.COMPOUND
                else parts.typed(attribute.path, data_type, attribute.event_types, as_json=True)
            )
            parts.event_aggs.append(
                f"jsonb_object_agg({as_json} #>> '{{}}', {as_json}) FILTER (WHERE {present}) AS {name}"
            )
            parts.finals.append(
                (
                    attribute.id,
                    "",
                    f"jsonb_path_query_array(jsonb_path_query_array(ev.{name}, '$.*'), "
                    f"'$[0 to {UNIQUE_VALUES_MAX - 1}]')::text",
                    "",
                )
            )
        elif computation in (C.SUM, C.MIN, C.MAX, C.AVERAGE):
            aggregate = {C.SUM: "sum", C.MIN: "min", C.MAX: "max", C.AVERAGE: "avg"}[computation]
            parts.event_aggs.append(f"{aggregate}({value}){where} AS {name}")
            # The sum over no values is 0: "total revenue 0" is what a marketer filters on.
            result = f"coalesce(ev.{name}, 0)" if computation == C.SUM else f"ev.{name}"
            parts.finals.append((attribute.id, *_single(result, data_type)))
        else:  # pragma: no cover - ALLOWED_TYPES covers every computation
            raise ValueError(f"unknown computation {computation!r}")

    excluded = 0 if reads_system else system
    categories = sorted({a.category for a in attributes if a.computation == C.IDENTIFIER_VALUES})
    attribute_ids = tuple(a.id for a in attributes)
    if all_entities:
        update, computed = _compile_form("all", parts, categories, excluded)
        return Program(update_sql=update, select_sql=computed, attribute_ids=attribute_ids)
    update, computed = _compile_form("ids", parts, categories, excluded)
    range_update, _ = _compile_form("range", parts, categories, excluded)
    return Program(update_sql=update, select_sql=computed, attribute_ids=attribute_ids, update_range_sql=range_update)


@dataclass
class _Parts:
    """What the definitions compile to, shared by the statement's forms. Column names: jN (a payload path, in the
    events subquery), fN (a condition's flag), vN (a path's typed value), uN (a typed value as jsonb), aN (an
    aggregate over the batch's events), iN (an aggregate over its identifiers)."""

    paths: dict[str, str] = field(default_factory=dict)  # dotted path -> jN
    path_types: dict[str, set[str] | None] = field(default_factory=dict)  # the event types reading it (None: all)
    flags: dict[str, str] = field(default_factory=dict)  # condition over e.* -> fN
    columns: dict[tuple, tuple[str, str]] = field(default_factory=dict)  # (path, data type, json) -> (name, SQL)
    event_aggs: list[str] = field(default_factory=list)
    ident_aggs: list[str] = field(default_factory=list)
    # (attribute id, open, SQL, close): the list's JSON text is open || SQL || close (literals around the SQL's
    # text), not set when the SQL is NULL.
    finals: list[tuple[str, str, str, str]] = field(default_factory=list)

    def flag(self, condition: str) -> str | None:
        """The flag column (as x.fN) of a condition; None for no condition (every event)."""
        if not condition:
            return None
        if condition not in self.flags:
            self.flags[condition] = f"f{len(self.flags)}"
        return f"x.{self.flags[condition]}"

    def typed(self, path: str, data_type: str, event_types, *, as_json: bool = False) -> str:
        """The column (as x.vN or x.uN) of a payload path's typed value (see typed_value), or of its jsonb."""
        if path not in self.paths:
            self.paths[path] = f"j{len(self.paths)}"
            self.path_types[path] = set()
        # The event types whose payloads need this path (None: every event's).
        types = self.path_types[path]
        if types is not None:
            self.path_types[path] = types | set(event_types) if event_types else None
        key = (path, data_type, as_json)
        if key not in self.columns:
            value = typed_value(f"e.{self.paths[path]}", data_type)
            expression = json_value(value, data_type) if as_json else value
            self.columns[key] = (f"{'u' if as_json else 'v'}{len(self.columns)}", expression)
        return f"x.{self.columns[key][0]}"


# How the batched forms find their customers' rows by an entity id column.
_BATCH_ENTITIES = {"ids": "= ANY(%(ids)s::varchar[])", "range": "BETWEEN %(lo)s AND %(hi)s"}


def _compile_form(form: str, parts: _Parts, categories: list[str], excluded: int) -> tuple[str, str]:
    """(UPDATE, SELECT) of one form: "all" (every entity, no parameter), "ids" (the entities in the array
    parameter `ids`) or "range" (the entities in `ids`, which are all of those from `lo` to `hi` or nearly: their
    events and identifiers are read by one range scan of each entity index instead of one index search per
    entity: a full recompute of the benchmark's customers ran ~5 % faster). Events of the source `excluded`
    (0: none) are left out."""
    all_entities = form == "all"
    # A path is extracted only from the payloads of the event types that read it (most events are of a type no
    # attribute of that path reads).
    path_columns = ""
    for p, c in parts.paths.items():
        extract = f"e.payload #> {_lit(_path_array(p))}::text[]"
        if parts.path_types[p] is not None:
            extract = f"CASE WHEN e.type = ANY({_lit(sorted(parts.path_types[p]))}::text[]) THEN {extract} END"
        path_columns += f", {extract} AS {c}"
    if all_entities:
        source = (
            "customer_event_entities a JOIN customer_events e ON e.id = a.event_id "
            "WHERE a.customer_entity_id IS NOT NULL"
        )
    else:
        # The batch's events through the entity index, then each event by primary key: a LATERAL subquery kept
        # apart by OFFSET 0 is a nested loop whatever the estimates (a hash join would scan the whole events
        # table for a few thousand rows).
        source = (
            "customer_event_entities a CROSS JOIN LATERAL "
            "(SELECT * FROM customer_events x WHERE x.id = a.event_id OFFSET 0) e "
            f"WHERE a.customer_entity_id {_BATCH_ENTITIES[form]}"
        )
    if excluded:
        source += f" AND e.source_id <> {int(excluded)}"
    read = f"SELECT a.customer_entity_id AS eid, e.id, e.source_id, e.type, e.event_time{path_columns} FROM {source}"
    # The flags and typed values of each event, from the paths read just before (OFFSET 0 keeps that subquery
    # whole: flattened, each use of a path would extract it again).
    computed_columns = "".join(f", {condition} AS {name}" for condition, name in parts.flags.items())
    computed_columns += "".join(f", {expression} AS {name}" for name, expression in parts.columns.values())
    events = (
        # Newest first, so first / last values need no per-customer sort; OFFSET 0 keeps the subquery (and its
        # order) from being flattened into the aggregate.
        f"SELECT e.eid, e.event_time{computed_columns} FROM ({read} OFFSET 0) e "
        "ORDER BY e.eid, e.event_time DESC, e.id DESC OFFSET 0"
    )
    ev = f"SELECT x.eid, {', '.join(parts.event_aggs) or 'NULL AS none'} FROM ({events}) x GROUP BY x.eid"
    # The batch's identifiers by the entity index (LATERAL again: the estimates favour a scan of every identifier).
    if all_entities:
        identifiers = "stitching_identifiers i WHERE i.customer_entity_id IS NOT NULL"
    elif form == "range":
        identifiers = f"stitching_identifiers i WHERE i.customer_entity_id {_BATCH_ENTITIES[form]}"
    else:
        identifiers = (
            "unnest(%(ids)s::varchar[]) AS b(id) CROSS JOIN LATERAL (SELECT * FROM stitching_identifiers x "
            "WHERE x.customer_entity_id = b.id OFFSET 0) i WHERE true"
        )
    # Sorted once by (customer, value) in a subquery kept whole by OFFSET 0: the aggregates read the values in order
    # (an ORDER BY inside each aggregate would sort per customer and category).
    idents = (
        f"SELECT i.eid, {', '.join(parts.ident_aggs)} FROM (SELECT i.customer_entity_id AS eid, i.category_id, "
        f"i.value FROM {identifiers} AND i.category_id = ANY({_lit(categories)}::text[]) ORDER BY 1, 3 OFFSET 0) i "
        "GROUP BY i.eid"
        if parts.ident_aggs
        else "SELECT NULL::varchar AS eid WHERE false"
    )
    value = _object(parts.finals)
    batch = "SELECT ce.id FROM customer_entities ce" if all_entities else "SELECT unnest(%(ids)s::varchar[]) AS id"
    computed = (
        f"WITH batch AS ({batch}), ev AS ({ev}), idents AS ({idents}) "
        f"SELECT batch.id, {value} AS attributes FROM batch "
        f"LEFT JOIN ev ON ev.eid = batch.id LEFT JOIN idents ON idents.eid = batch.id"
    )
    update = (
        "UPDATE customer_entities c SET attributes = computed.attributes, modified = statement_timestamp() "
        f"FROM ({computed}) computed WHERE c.id = computed.id "
        # A customer whose values did not change is not written at all: no new row version, index entries or WAL.
        "AND c.attributes IS DISTINCT FROM computed.attributes"
        # Restating the ids lets the planner fetch the batch's rows by primary key instead of hashing the table.
        + ("" if all_entities else f" AND c.id {_BATCH_ENTITIES[form]}")
    )
    return update, computed


def _single(value: str, data_type: str) -> tuple[str, str, str]:
    """(open, SQL, close) of a one-value list of a typed SQL value (see json_text), not set when the value is NULL.
    A date's or date-time's quotes are literals, joined with the member's key and brackets in the statement."""
    if data_type == T.DATE:
        return '["', f"to_char({value}, 'YYYY-MM-DD')", '"]'
    if data_type == T.DATETIME:
        return '["', f"to_char(({value}) AT TIME ZONE 'UTC', {_lit(DATETIME_FORMAT)})", '"]'
    return "[", json_text(value, data_type), "]"


def _object(finals: list[tuple[str, str, str, str]]) -> str:
    """jsonb object of the attributes whose SQL is not NULL: the members' text joined by concat_ws (which skips
    NULLs), parsed once. Attribute ids are [a-z0-9_], so a key needs no escaping. A function takes at most 100
    arguments: concat_ws of chunks of 90, each NULL when empty.

    Each member is `'"id":open' || SQL || 'close'`: the literals around the value are joined at compile time (each
    `||` copies the text so far). The members are in jsonb's key order (shorter keys first, then bytewise), so the
    parser's sort of the keys finds them sorted: a tenth less time parsing."""
    if not finals:
        return "'{}'::jsonb"
    members = [
        f"{_lit(chr(34) + key + chr(34) + ':' + open_)} || {expr}" + (f" || {_lit(close)}" if close else "")
        for key, open_, expr, close in sorted(finals, key=lambda member: (len(member[0]), member[0]))
    ]
    chunks = [
        f"NULLIF(concat_ws(',', {', '.join(members[start : start + 90])}), '')" for start in range(0, len(members), 90)
    ]
    joined = chunks[0] if len(chunks) == 1 else f"concat_ws(',', {', '.join(chunks)})"
    return f"('{{' || coalesce({joined}, '') || '}}')::jsonb"


def _path_array(path: str) -> list[str]:
    return path.split(".")
