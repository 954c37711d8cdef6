"""Tables a full rebuild writes anew, filled on other connections while the rebuild's own goes on.

PostgreSQL runs one transaction's statements in one backend, one core: after the union-find, a first stitch wrote
the customers, the assignments, the attribute queue and the identifiers one after the other while the other core
idled. A table the rebuild replaces whole (or fills from empty) is instead built as a new table by another
connection, in its own transaction: created, filled by binary COPY, indexed, analysed, committed. Nobody reads it
under its temporary name. The rebuild's transaction then swaps it in: DROP TABLE of the old one, RENAME of the new
one and of its indexes (a primary key's constraint follows its index's name), all undone if the rebuild rolls back.
A rolled-back or interrupted rebuild leaves the committed new table behind under its temporary name
(REPLACEMENT_PREFIX): the next rebuild drops it first.

A swap takes the old table's place only where nothing else is tied to it: owned by this role, in the schema new
tables go to (which the role may create tables in), no grants, no triggers on it, no foreign keys to or from it, no
views or other dependent objects, rules, policies (row security on or off), publications (of it, its schema or all
tables: the new table's rows would be replicated), comments, column grants or storage settings, an UNLOGGED or
other-tablespace table, a replica identity, inheritance, owned sequences (an identity column BY DEFAULT with a plain
bigint sequence excepted: the twin's column gets its values from the caller, and the swap makes it an identity
again, its sequence going on where the old one was), extended statistics, and the rebuild runs in READ COMMITTED
(its next statement sees the committed table). Otherwise `shape` returns None and the caller writes the old table
in place.

Sessions waiting on the old table (ingestion's trigger inserting into the assignments) get their lock when the
rebuild commits, find the name now means the new table, and go on there.
"""

from __future__ import annotations

import logging
import queue
import secrets
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from psycopg import sql

logger = logging.getLogger(__name__)

REPLACEMENT_PREFIX = "st_new_"
# Tables built at once (a connection each): one while the rebuild computes, the other when its plan is known.
BUILDERS = 2
# How many tables were committed under a temporary name since the last `leftovers_drop` (the test suite drops what
# its rolled-back rebuilds leave after each test, instead of piling them up for the next rebuild to drop).
committed = 0

# Nothing else may be tied to a table that is swapped (see the module's docstring).
_PLAIN_SQL = """
SELECT c.relkind = 'r' AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
    AND c.relacl IS NULL AND NOT c.relrowsecurity AND NOT c.relhassubclass AND NOT c.relispartition
    AND c.relpersistence = 'p' AND c.relreplident = 'd' AND c.reltablespace = 0
    AND c.relam = (SELECT oid FROM pg_am WHERE amname = 'heap')
    AND obj_description(c.oid, 'pg_class') IS NULL
    AND NOT EXISTS (SELECT 1 FROM pg_class t WHERE t.oid = c.reltoastrelid AND t.reloptions IS NOT NULL)
    AND NOT EXISTS (SELECT 1 FROM pg_policy o WHERE o.polrelid = c.oid)
    AND NOT EXISTS (SELECT 1 FROM pg_publication b WHERE b.puballtables)
    AND NOT EXISTS (SELECT 1 FROM pg_publication_namespace b WHERE b.pnnspid = c.relnamespace)
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.refobjid IN (c.oid, c.reltype) AND d.deptype = 'n')
    AND NOT EXISTS (SELECT 1 FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = c.oid
                    AND (i.reltablespace <> 0 OR x.indisclustered OR obj_description(i.oid, 'pg_class') IS NOT NULL))
    AND (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attidentity <> '') <= 1
    AND c.relhasrules = false AND current_setting('transaction_isolation') = 'read committed'
    AND c.relnamespace = current_schema()::regnamespace AND has_schema_privilege(current_schema(), 'CREATE')
    AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)
    AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal)
    AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE (k.conrelid = c.oid AND k.contype NOT IN ('p', 'u'))
                    OR (k.confrelid = c.oid AND k.contype = 'f'))
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.refobjid = c.oid AND d.classid = 'pg_rewrite'::regclass)
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.refobjid = c.oid AND d.classid = 'pg_class'::regclass
                    AND d.deptype IN ('a', 'i') AND EXISTS (SELECT 1 FROM pg_class s WHERE s.oid = d.objid
                    AND s.relkind = 'S') AND NOT (d.deptype = 'i' AND EXISTS (SELECT 1 FROM pg_sequence q
                    WHERE q.seqrelid = d.objid AND q.seqtypid = 'bigint'::regtype AND q.seqincrement = 1
                    AND (SELECT s.relacl FROM pg_class s WHERE s.oid = d.objid) IS NULL
                    AND q.seqmin = 1 AND q.seqmax = 9223372036854775807 AND q.seqcache = 1 AND NOT q.seqcycle)))
    AND NOT EXISTS (SELECT 1 FROM pg_publication_rel p WHERE p.prrelid = c.oid)
    AND NOT EXISTS (SELECT 1 FROM pg_statistic_ext x WHERE x.stxrelid = c.oid)
    AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                    AND (a.attidentity = 'a' OR a.attgenerated <> '' OR a.attstattarget >= 0 OR a.attacl IS NOT NULL
                         OR a.attcompression <> '' OR col_description(c.oid, a.attnum) IS NOT NULL
                         OR a.attstorage <> (SELECT t.typstorage FROM pg_type t WHERE t.oid = a.atttypid)
                         OR coalesce(array_to_string(a.attoptions, ','), '') ~ 'n_distinct'))
FROM pg_class c WHERE c.oid = %s::regclass
"""


def _quoted(name: str) -> str:
    """An identifier as SQL (quoted as needed)."""
    return sql.Identifier(name).as_string(None)


@dataclass(slots=True)
class Shape:
    """How to build an empty twin of `table` named `name`: `create` (the table), `after` (its primary key, unique
    constraints and indexes, under temporary names, to build once it is filled) and `renames` (temporary name ->
    the old table's name, for the swap)."""

    table: str
    name: str
    create: str
    after: list[str]
    renames: list[tuple[str, str]]
    autovacuum: str  # the old table's autovacuum_enabled setting, for the swap ("" when it has none)
    identity: tuple[str, str] | None = None  # (column, its sequence) of an identity column
    carry_over: bool = False  # rows added to the old table meanwhile go into the new one at the swap


def shape(cur, table: str, name: str) -> Shape | None:
    """The twin of `table` as `name`, or None when `table` cannot be swapped (the caller writes it in place)."""
    cur.execute(_PLAIN_SQL, [table])
    if not cur.fetchone()[0]:
        return None
    cur.execute(
        "SELECT quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod) "
        "|| CASE WHEN a.attcollation <> t.typcollation THEN ' COLLATE ' || quote_ident(n.nspname) || '.' "
        "|| quote_ident(co.collname) ELSE '' END || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END "
        "|| coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '') "
        "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "LEFT JOIN pg_collation co ON co.oid = a.attcollation LEFT JOIN pg_namespace n ON n.oid = co.collnamespace "
        "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        [table],
    )
    columns = [row[0] for row in cur.fetchall()]
    cur.execute(
        "SELECT quote_ident(attname), pg_get_serial_sequence(%s, attname) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attidentity = 'd' AND NOT attisdropped",
        [table, table],
    )
    identity = cur.fetchone()
    cur.execute(
        "SELECT coalesce(reloptions, '{}'), "
        "quote_ident(n.nspname) || '.' || quote_ident(c.relname) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s::regclass",
        [table],
    )
    options, qualified = cur.fetchone()
    new = _quoted(name)
    # No autovacuum while it is built and not swapped in yet: a vacuum of the new rows could hold up the swap's DROP
    # and RENAME for up to deadlock_timeout (then cancelled). The swap gives the table the old one's setting.
    autovacuum = next((o.split("=", 1)[1] for o in options if o.startswith("autovacuum_enabled=")), "")
    options = [o for o in options if not o.startswith("autovacuum_enabled=")] + ["autovacuum_enabled=false"]
    create = f"CREATE TABLE {new} ({', '.join(columns)}) WITH ({', '.join(options)})"
    after: list[str] = []
    renames: list[tuple[str, str]] = []
    # Constraints (with their index) first, then the other indexes; each under a temporary name.
    cur.execute(
        "SELECT k.conname, pg_get_constraintdef(k.oid), NULL, NULL FROM pg_constraint k "
        "WHERE k.conrelid = %s::regclass AND k.contype IN ('p', 'u') UNION ALL "
        "SELECT i.relname, NULL, pg_get_indexdef(x.indexrelid), quote_ident(i.relname) FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = %s::regclass "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid) "
        "ORDER BY 3 NULLS FIRST, 1",
        [table, table],
    )
    for k, (index, constraint, definition, quoted_index) in enumerate(cur.fetchall()):
        temporary = f"{name}_{k}"
        quoted = _quoted(temporary)
        if constraint is not None:
            after.append(f"ALTER TABLE {new} ADD CONSTRAINT {quoted} {constraint}")
        else:
            head = f"INDEX {quoted_index} ON {qualified} "
            if head not in definition:  # (pg_get_indexdef's form, schema-qualified: always so far)
                return None
            after.append(definition.replace(head, f"INDEX {quoted} ON {new} ", 1))
        renames.append((temporary, index))
    return Shape(table, name, create, after, renames, autovacuum, identity)


class Replacements:
    """Tables built on other connections (up to BUILDERS at once, a connection each), each committed on its own;
    `swap` puts them in place of the old ones in the caller's transaction (on Django's connection), in the order
    they were asked for. A context manager: leaving it with an error cancels what is being built.

    The connections are Django's own (`connections.create_connection`: the same settings, role and pool as the
    rebuild's), opened up front: where they cannot be had (no connection slot left), `shape` answers None and the
    rebuild writes its tables in place."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=BUILDERS, thread_name_prefix="restitch-tables")
        self._free: queue.SimpleQueue = queue.SimpleQueue()  # the builders' connections not in use
        self._wrappers: list = []
        self._token = secrets.token_hex(4)
        self._pending: list[tuple[Shape, Future]] = []
        self._names = 0
        self._cancelled = False
        self._opened: bool | None = None

    def __enter__(self) -> Replacements:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.close(cancel=error is not None)

    def _open(self) -> bool:
        """Open the builders' connections (once); whether they could be."""
        if self._opened is None:
            try:
                for _ in range(BUILDERS):
                    wrapper = connections.create_connection(DEFAULT_DB_ALIAS)
                    self._wrappers.append(wrapper)
                    wrapper.ensure_connection()
                    self._free.put(wrapper.connection)
                self._opened = True
            except DatabaseError as error:
                logger.warning("restitch: tables are written in place, no connection to build them on: %s", error)
                self._opened = False
        return self._opened

    def shape(self, cur, table: str, *, carry_over: bool = False) -> Shape | None:
        """The twin of `table` (module function `shape`), or None. `carry_over`: rows that reach the old table
        meanwhile are added to the new one at the swap (a queue)."""
        if not self._open():
            return None
        self._names += 1
        twin = shape(cur, table, f"{REPLACEMENT_PREFIX}{self._token}_{self._names}")
        if twin is not None:
            twin.carry_over = carry_over
        return twin

    def build(self, twin: Shape, fill: Callable[[object, str], None]) -> None:
        """Create `twin`, `fill(cursor, name)` it, build its indexes, analyse it and commit, on a free connection."""

        def run() -> None:
            raw = self._free.get()
            name = _quoted(twin.name)
            try:
                with raw.transaction(), raw.cursor() as cur:
                    statements = [
                        lambda: cur.execute("SET LOCAL maintenance_work_mem = '512MB'"),
                        lambda: cur.execute(twin.create),
                        lambda: fill(cur, name),
                    ]
                    statements += [lambda statement=statement: cur.execute(statement) for statement in twin.after]
                    statements.append(lambda: cur.execute(f"ANALYZE {name}"))
                    for statement in statements:
                        if self._cancelled:  # (close: the rebuild failed)
                            raise RuntimeError("cancelled: the rebuild failed")
                        statement()
                global committed
                committed += 1
            finally:
                self._free.put(raw)

        self._pending.append((twin, self._pool.submit(run)))

    def swap(self, cur) -> set[str]:
        """Wait for every table built, and swap each in for its old table; returns the tables swapped (analysed)."""
        swapped = set()
        for twin, done in self._pending:
            done.result()
            table, new = _quoted(twin.table), _quoted(twin.name)
            if twin.carry_over:
                cur.execute(f"INSERT INTO {new} SELECT * FROM {table} ON CONFLICT DO NOTHING")
            if twin.identity is not None:  # where the old table's sequence is: the new one goes on from there
                cur.execute(
                    f"SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM {twin.identity[1]}"
                )
                (following,) = cur.fetchone()
            cur.execute(f"DROP TABLE {table}")
            cur.execute(f"ALTER TABLE {new} RENAME TO {table}")
            for temporary, final in twin.renames:
                cur.execute(f"ALTER INDEX {_quoted(temporary)} RENAME TO {_quoted(final)}")
            if twin.identity is not None:
                column, sequence = twin.identity
                cur.execute(
                    f"ALTER TABLE {table} ALTER COLUMN {column} ADD GENERATED BY DEFAULT AS IDENTITY "
                    f"(SEQUENCE NAME {sequence} START WITH {int(following)})"
                )
            if twin.autovacuum:
                cur.execute(
                    f"ALTER TABLE {table} SET (autovacuum_enabled = {sql.Literal(twin.autovacuum).as_string(None)})"
                )
            else:
                cur.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")
            swapped.add(twin.table)
        self._pending = []
        return swapped

    def close(self, *, cancel: bool = False) -> None:
        """Stop the builders and close their connections; `cancel`: stop what they build (the rebuild failed), by
        cancelling the running statement until each build has ended."""
        if cancel:
            self._cancelled = True
            while not all(done.done() for _, done in self._pending):
                for wrapper in self._wrappers:
                    if wrapper.connection is not None:
                        wrapper.connection.cancel_safe()
                time.sleep(0.05)
        self._pool.shutdown(wait=True, cancel_futures=cancel)
        for wrapper in self._wrappers:
            wrapper.close()
        self._wrappers = []


def leftovers_drop(cur) -> None:
    """Drop the tables an earlier rebuild built but did not swap in (it rolled back or was interrupted)."""
    global committed
    committed = 0
    cur.execute(
        "SELECT quote_ident(relname) FROM pg_class WHERE relkind = 'r' AND relname LIKE %s "
        "AND relnamespace = current_schema()::regnamespace",
        [REPLACEMENT_PREFIX.replace("_", "\\_") + "%"],
    )
    for (name,) in cur.fetchall():
        cur.execute(f"DROP TABLE {name}")
