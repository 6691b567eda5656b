import os

from celery import Celery
from django.db import transaction

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vsm.settings")

app = Celery("vsm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def enqueue_on_commit(task, *args) -> None:
    """Send `task` with `args` once the current transaction commits (at once outside of one).

    Robust: a broker that is down, or an in-process task that fails, is logged and never fails the
    caller's work (a sync records its own failed runs; the schedules catch up). A named function, not a
    partial: Django's log line names the callback, and a partial has no name to give.
    """

    def send() -> None:
        task.delay(*args)

    send.__qualname__ = f"{task.name}.delay"
    transaction.on_commit(send, robust=True)
