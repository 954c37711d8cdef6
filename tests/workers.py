"""Real Celery workers for tests: `celery -A cdp worker` subprocesses on the test Redis and the test database.

Use the `celery_worker_process` fixture (imported in tests/conftest.py) and mark the test `@pytest.mark.worker`:

    @pytest.mark.worker
    def test_something(celery_worker_process):
        result = some_task.delay(...)
        assert celery_worker_process.result_wait(result) == ...
        second = celery_worker_process.start()          # another worker, e.g. to race the first
        celery_worker_process.kill(second)              # kill -9, as if its machine died

The fixture needs a committed database (it depends on `transactional_db`): the worker is another process with
its own connections, so it cannot see rows inside a test's rolled-back transaction.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from celery.result import AsyncResult
from django.conf import settings
from django.db import connection

from cdp.celery import app

BASE_DIR = Path(__file__).resolve().parent.parent
WORKER_START_TIMEOUT = 30.0
WORKER_STOP_TIMEOUT = 15.0


def database_url_for_tests() -> str:
    """A DATABASE_URL for the database this test session uses (pytest-django's `test_...` database)."""
    db = connection.settings_dict
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{credentials}{host}{port}/{quote(db['NAME'], safe='')}"


@dataclass
class CeleryWorker:
    """One worker subprocess: its own process group, so kill() also takes its pool children down."""

    name: str  # the Celery node name, e.g. "test-worker1-123@myhost"
    process: subprocess.Popen = field(repr=False)
    log_path: Path
    terminating: bool = False

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """kill -9 the worker and its pool processes, as if the machine died: no warm shutdown, no acks."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=WORKER_STOP_TIMEOUT)

    def terminate(self) -> None:
        """Ask for a warm shutdown (SIGTERM, once: a second signal would make it a cold one); do not wait."""
        if self.alive and not self.terminating:
            self.terminating = True
            self.process.terminate()

    def stop(self) -> None:
        """Warm shutdown (SIGTERM: finish the current task), then kill whatever is left."""
        if self.alive:
            self.terminate()
            try:
                self.process.wait(timeout=WORKER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        # Pool children that outlived their parent would keep database connections open.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=WORKER_STOP_TIMEOUT)


@dataclass
class CeleryWorkers:
    """What `celery_worker_process` yields: the first worker, and helpers to start, kill and wait on more."""

    log_dir: Path
    env: dict[str, str] = field(repr=False)  # holds secrets; keep it out of failure reports
    workers: list[CeleryWorker] = field(default_factory=list)

    @property
    def first(self) -> CeleryWorker:
        return self.workers[0]

    @property
    def process(self) -> subprocess.Popen:
        """The first worker's process."""
        return self.first.process

    def start(
        self, *, concurrency: int = 1, queues: str = "celery", pool: str = "prefork", wait: bool = True
    ) -> CeleryWorker:
        """Start one more worker; by default wait until it answers a control ping."""
        index = len(self.workers) + 1
        name = f"test-worker{index}-{os.getpid()}@{socket.gethostname()}"
        log_path = self.log_dir / f"celery-worker{index}.log"
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "cdp",
            "worker",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            "-Q",
            queues,
            "-n",
            name,
            "--loglevel=INFO",
            # Gossip and mingle only slow the start down; remote control (ping) stays on.
            "--without-gossip",
            "--without-mingle",
        ]
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                command,
                cwd=BASE_DIR,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = CeleryWorker(name=name, process=process, log_path=log_path)
        self.workers.append(worker)
        if wait:
            self.wait_ready(worker)
        return worker

    def wait_ready(self, worker: CeleryWorker, timeout: float = WORKER_START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not worker.alive:
                raise RuntimeError(
                    f"Celery worker {worker.name} exited with {worker.process.returncode}:\n{worker.log()}"
                )
            if app.control.ping(destination=[worker.name], timeout=0.5):
                return
        raise RuntimeError(f"Celery worker {worker.name} did not answer a ping within {timeout:.0f}s:\n{worker.log()}")

    def kill(self, worker: CeleryWorker | None = None) -> None:
        """kill -9 a worker (the first by default) with its pool processes."""
        (worker or self.first).kill()

    def result_wait(self, result: AsyncResult, timeout: float = 30.0) -> Any:
        """The task's return value; re-raises its exception; fails with the workers' logs on a timeout."""
        try:
            return result.get(timeout=timeout, propagate=True)
        except TimeoutError as exc:  # celery.exceptions.TimeoutError subclasses the builtin
            raise AssertionError(
                f"task {result.id} gave no result within {timeout:.0f}s (state {result.state}).\n{self.logs()}"
            ) from exc

    def logs(self) -> str:
        return "\n".join(f"----- {w.name} log -----\n{w.log()}" for w in self.workers)

    def stop_all(self) -> None:
        # Signal every worker first so their warm shutdowns (a few seconds each) overlap.
        for worker in self.workers:
            worker.terminate()
        for worker in self.workers:
            worker.stop()


def worker_environment() -> dict[str, str]:
    """The test process's environment, pointed at the test database and the test Redis."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="cdp.settings",
        DATABASE_URL=database_url_for_tests(),
        REDIS_URL=settings.REDIS_URL,
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        CELERY_RESULT_BACKEND=settings.CELERY_RESULT_BACKEND or settings.REDIS_URL,
        PYTHONUNBUFFERED="1",
        CDP_DESTINATIONS_ALLOW_PRIVATE="1",  # the provider fakes listen on loopback
    )
    return env


@pytest.fixture
def celery_worker_process(transactional_db, request, tmp_path) -> Iterator[CeleryWorkers]:
    """A real prefork Celery worker on the `celery` queue; tasks sent with .delay() go to it, not in-process."""
    if not settings.CELERY_BROKER_URL or not settings.CELERY_RESULT_BACKEND:
        pytest.fail("Worker tests need Redis: set REDIS_URL (make test does, see TEST_REDIS_URL).")
    failed_before = request.session.testsfailed
    previous_eager = app.conf.task_always_eager
    harness = CeleryWorkers(log_dir=tmp_path, env=worker_environment())
    app.control.purge()  # tasks left over from an earlier, interrupted run must not run against this test
    app.conf.task_always_eager = False
    try:
        harness.start()
        yield harness
    finally:
        harness.stop_all()
        app.conf.task_always_eager = previous_eager
        if request.session.testsfailed > failed_before:
            # The test failed: show what the workers said, bypassing output capture.
            capture = request.config.pluginmanager.getplugin("capturemanager")
            with capture.global_and_fixture_disabled():
                sys.stderr.write(f"\n{harness.logs()}\n")


@contextlib.contextmanager
def broker_unreachable() -> Iterator[str]:
    """Redis down, for the Celery app of this process: its broker and result store point at a closed port, and tasks
    are sent (not run in-process), so every send fails as in an outage. Yields the closed URL; the app's broker,
    result store, connection pools and the broker back-off are as before afterwards."""
    from cdp.celery import broker_backoff_reset

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"  # nobody listens once the socket is closed
    conf = app.conf
    saved_conf = {name: conf[name] for name in ("broker_url", "result_backend", "task_always_eager")}
    amqp = app.amqp
    saved_pools = (app._pool, amqp._producer_pool, app._backend_cache, getattr(app._local, "backend", None))

    def pools_forget() -> None:
        app._pool = amqp._producer_pool = app._backend_cache = None
        app._local.backend = None

    conf.update(broker_url=closed, result_backend=closed, task_always_eager=False)
    pools_forget()
    broker_backoff_reset()
    try:
        yield closed
    finally:
        pool = app._pool
        conf.update(saved_conf)
        if pool is not None:
            pool.force_close_all()
        pools_forget()
        app._pool, amqp._producer_pool, app._backend_cache, app._local.backend = saved_pools
        broker_backoff_reset()
