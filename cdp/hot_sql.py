"""One statement on a public hot path (the Audience API, delivery webhooks): prepared once per connection, run with
its generic plan, no per-request health check.

Django runs SQL with client-side binding, so every statement is parsed and planned again. On the hot paths that
is most of PostgreSQL's work: a `/wbs` lookup executes in ~0.1 ms but was planned in ~0.3 ms per request, and left
to itself PostgreSQL keeps planning it per execution (a jsonb `@>` parameter makes the generic plan's estimate look
worse than the custom ones, though the plan is the same GIN bitmap scan). So `fetch_one_prepared` runs the
statement as a server-side prepared statement with `plan_cache_mode = force_generic_plan` on that connection
(Django's own statements are not prepared, so the setting only concerns these). Django's per-request health
check (a `SELECT 1` round trip before the first query of each request) is skipped: a connection found dead is
reopened and the statement run once more, which is safe for reads and for the idempotent writes that use this
(`INSERT ... ON CONFLICT DO NOTHING`). Inside a transaction (tests, callers' atomic blocks) the plain Django cursor
is used. Behind PgBouncer in transaction mode, prepared statements need PgBouncer 1.21+ with
`max_prepared_statements` set.
"""

from __future__ import annotations

import weakref

import psycopg
from django.db import connection

# raw connection -> its cursor for these statements (set to generic plans when made)
_cursors: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def fetch_one_prepared(sql: str, params) -> tuple | None:
    """The first row of `sql` (psycopg placeholders), or None."""
    if connection.connection is not None and connection.get_autocommit():
        connection.health_check_done = True
        raw = connection.connection
        try:
            cursor = _cursors.get(raw)
            if cursor is None:
                cursor = psycopg.Cursor(raw)
                cursor.execute("SET plan_cache_mode = force_generic_plan")
                _cursors[raw] = cursor
            cursor.execute(sql, params, prepare=True)
            return cursor.fetchone()
        except (psycopg.OperationalError, psycopg.InterfaceError):
            _cursors.pop(raw, None)
            connection.close()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()
