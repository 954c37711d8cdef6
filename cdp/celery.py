"""Celery application. Tasks run in-process (eager) when no broker is configured."""

import logging
import os
import time
from collections.abc import Callable

from celery import Celery, Task
from celery.signals import before_task_publish, task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cdp.settings")

app = Celery("cdp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class PersonalDataTask(Task):
    """A task whose arguments hold personal data (an email address). Celery logs a task's arguments when a worker
    receives it and when it succeeds, retries or fails; this one's are logged as `argsrepr` instead, the
    positions in `personal_args` shown as '<redacted>'. Set on every send, retries included (they go through
    apply_async too)."""

    abstract = True
    personal_args: tuple[int, ...] = (0,)

    def apply_async(self, args=None, kwargs=None, **options):
        if args is not None:
            shown = ["'<redacted>'" if i in self.personal_args else repr(a) for i, a in enumerate(args)]
            options.setdefault("argsrepr", f"({', '.join(shown)}{',' if len(shown) == 1 else ''})")
        if kwargs:
            options.setdefault("kwargsrepr", repr({name: "<redacted>" for name in kwargs}))
        return super().apply_async(args, kwargs, **options)


logger = logging.getLogger(__name__)
# After a failed send, this process does not try the broker again for this long: during an outage every request
# would otherwise pay the connection attempts again.
BROKER_BACKOFF_SECONDS = 10.0
_broker_down_until = 0.0


def _broker_send(send: Callable[[], object], *, what: str, consequence: str) -> bool:
    """Send a task message; False when the broker is unavailable (logged with `consequence`, not raised), and,
    without trying, for BROKER_BACKOFF_SECONDS after such a failure."""
    global _broker_down_until
    if app.conf.task_always_eager:
        send()  # no broker in between: the task runs here, and its own errors are not an outage
        return True
    if time.monotonic() < _broker_down_until:
        return False  # (not logged again: during an outage ingestion would log every request)
    try:
        send()
    except Exception:  # noqa: BLE001 - kombu / redis / the result store's RuntimeError: the broker is not there
        _broker_down_until = time.monotonic() + BROKER_BACKOFF_SECONDS
        logger.warning("%s: the broker is unavailable; %s", what, consequence, exc_info=True)
        return False
    return True


def enqueue_with_safety_net(send: Callable[[], object], *, what: str) -> bool:
    """Send a task message whose work a beat task also picks up (the safety nets and watchdogs in
    CELERY_BEAT_SCHEDULE); False when the broker is unavailable: logged, not raised. It runs after a commit, inside
    the request that stored the work (events, webhook payloads, a waiting export, a queued import or campaign): a
    Redis outage made each such request wait ~20 s for the result store's reconnects and then answer 500 although
    its data was stored, so clients retried and the web workers all hung (and a 500 from an on-commit callback
    skips the callbacks after it). The work stays durable in PostgreSQL; the beat's next run after the broker is
    back does it."""
    return _broker_send(send, what=what, consequence="the beat's safety net will do it")


class TaskQueueUnavailable(Exception):
    """The broker is unavailable and the request's work needs a task message now: nothing in PostgreSQL would make
    a beat task do it later. Callers answer 503 with Retry-After; the client's retry does it (the work is
    idempotent: a retry finds what the first attempt stored)."""

    message = "The task queue is unavailable; try again in a minute."
    retry_after = 60


def enqueue_or_unavailable(send: Callable[[], object], *, what: str) -> None:
    """Send a task message that nothing sends later; TaskQueueUnavailable when the broker is unavailable."""
    if not _broker_send(send, what=what, consequence="the request is answered 503"):
        raise TaskQueueUnavailable(TaskQueueUnavailable.message)


def broker_backoff_reset() -> None:
    """Forget an earlier failure (tests)."""
    global _broker_down_until
    _broker_down_until = 0.0


# Request ids in task logs: a task sent while a request is served carries the request's id (a message header), and
# the worker's log lines inside the task show it (else the task's own id), so a request's background work can be
# found by the id the client saw in X-Request-ID.
REQUEST_ID_HEADER = "cdp_request_id"
_task_request_ids: dict[str, object] = {}


@before_task_publish.connect
def _request_id_to_message(headers=None, **kwargs) -> None:
    from cdp.observability import current_request_id

    request_id = current_request_id()
    if headers is not None and request_id != "-":
        headers.setdefault(REQUEST_ID_HEADER, request_id)


@task_prerun.connect
def _request_id_in_task(task_id=None, task=None, **kwargs) -> None:
    from cdp.observability import request_id_var

    current = request_id_var.get()
    sent_by = getattr(task.request, REQUEST_ID_HEADER, None) if task is not None else None
    # (in-process, eager tasks keep the request's id: they run inside it)
    _task_request_ids[task_id] = request_id_var.set(sent_by or (current if current != "-" else task_id))


@task_postrun.connect
def _request_id_after_task(task_id=None, **kwargs) -> None:
    from cdp.observability import request_id_var

    token = _task_request_ids.pop(task_id, None)
    if token is not None:
        request_id_var.reset(token)
