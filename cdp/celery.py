"""Celery application. Tasks run in-process (eager) when no broker is configured."""

import os

from celery import Celery, Task

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
