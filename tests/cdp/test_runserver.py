"""`manage.py runserver` (what `make demo` serves) closes its database connections after each request."""

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
from django.db import connection

from tests.emails.servers import free_port

BASE_DIR = Path(__file__).resolve().parents[2]


def backends(dsn: str, database: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [database]).fetchone()[0]


def get(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_development_server_keeps_no_connection_per_request(db):
    # Each request comes on a new thread: a connection kept for reuse (DB_CONN_MAX_AGE's default elsewhere) would
    # stay open, one per request, until the admin ran out of PostgreSQL's connection slots.
    params = connection.settings_dict
    database = params["NAME"]
    host, port, user = params["HOST"] or "127.0.0.1", params["PORT"] or 5432, params["USER"] or "postgres"
    admin_dsn = f"host={host} port={port} user={user} dbname=postgres"
    server_port = free_port()
    env = {
        **os.environ,
        "DEBUG": "1",
        "DATABASE_URL": f"postgres://{user}@{host}:{port}/{database}",
        "REDIS_URL": "",
        "CELERY_BROKER_URL": "",
    }
    env.pop("DB_CONN_MAX_AGE", None)
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{server_port}", "--noreload"],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{server_port}/api/users/me"
        for _ in range(100):
            try:
                get(url, "not-a-token")
                break
            except OSError:
                time.sleep(0.1)
        before = backends(admin_dsn, database)

        statuses = {get(url, f"not-a-token-{n}") for n in range(10)}  # each looks its token up: one query

        assert statuses == {401}
        deadline = time.monotonic() + 5
        while backends(admin_dsn, database) > before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert backends(admin_dsn, database) <= before
    finally:
        server.terminate()
        server.wait(timeout=10)
