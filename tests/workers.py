"""Real Celery workers and beat in subprocesses, on the test database, stopped by their own pids."""

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from urllib.parse import quote

from django.conf import settings
from django.db import connection


def database_url_of_test_db() -> str:
    db = connection.settings_dict
    credentials = quote(db["USER"] or "postgres")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"])
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


PROJECT_QUEUES = ("ingest", "propagation", "webhooks", "celery")
# The queue prefix of the celery_worker block this code runs in ("" outside any).
_active_prefix: ContextVar[str] = ContextVar("active_prefix", default="")


@contextmanager
def celery_worker(log_path, queues: str | None = None):
    """Yield (process, default queue) of a solo-pool worker on a private copy of the project's queues.

    The worker consumes `queues` (comma-separated, among PROJECT_QUEUES; all of them by default) under
    a prefix of its own, and while it runs this process routes tasks to the same prefixed queues: a
    plain `.delay()` reaches it, and test runs sharing one Redis never take each other's tasks. A
    worker started inside another's `with` block shares its queues (two workers on the same work, or
    a worker taking over from a killed one).
    """
    outer_prefix = _active_prefix.get()
    prefix = outer_prefix or f"{settings.TASK_QUEUE_PREFIX}test-{uuid.uuid4().hex[:12]}-"
    names = [name.strip() for name in (queues or ",".join(PROJECT_QUEUES)).split(",")]
    unknown = set(names) - set(PROJECT_QUEUES)
    if unknown:
        raise ValueError(f"not a queue of the project: {', '.join(sorted(unknown))}")
    env = {
        **os.environ,
        "DATABASE_URL": database_url_of_test_db(),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "VSM_TASK_QUEUE_PREFIX": prefix,
    }
    with open(log_path, "wb") as log, nullcontext() if outer_prefix else _routed_to(prefix):
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "vsm",
                "worker",
                "--pool",
                "solo",
                "-Q",
                ",".join(prefix + name for name in names),
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel",
                "INFO",
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process, f"{prefix}celery"
        finally:
            _stop(process)


@contextmanager
def _routed_to(prefix: str):
    """Send this process's tasks to the queues named with `prefix`; delete those queues afterwards."""
    from vsm.celery import app

    def prefixed(queue: str) -> str:
        return prefix + queue.removeprefix(settings.TASK_QUEUE_PREFIX)

    previous = {"task_routes": app.conf.task_routes, "task_default_queue": app.conf.task_default_queue}
    app.conf.update(
        task_routes={
            task: {**route, "queue": prefixed(route["queue"])}
            for task, route in settings.CELERY_TASK_ROUTES.items()
        },
        task_default_queue=prefixed(settings.CELERY_TASK_DEFAULT_QUEUE),
    )
    token = _active_prefix.set(prefix)
    try:
        yield
    finally:
        _active_prefix.reset(token)
        app.conf.update(previous)
        with app.connection_for_write() as broker:
            for name in PROJECT_QUEUES:
                queue = app.amqp.queues[prefix + name](broker.default_channel)
                queue.declare()  # binds it on this channel, so that delete() removes the binding too
                queue.delete()


def wait_until(condition, timeout: float, process=None, log_path=None, interval: float = 0.2):
    """Poll `condition` until true; fail early with the worker's log if the worker died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            log = log_path.read_text(errors="replace")[-3000:] if log_path else ""
            raise AssertionError(f"the Celery worker exited with {process.returncode}:\n{log}")
        time.sleep(interval)
    log = log_path.read_text(errors="replace")[-3000:] if log_path else ""
    raise AssertionError(f"condition not met within {timeout} s; worker log:\n{log}")


@contextmanager
def celery_beat(log_path):
    """Yield a `celery beat -S django` process on the test database, stopped by its own pid; started
    inside a `celery_worker` block, it sends to that worker's queues."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url_of_test_db(),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "VSM_TASK_QUEUE_PREFIX": _active_prefix.get() or settings.TASK_QUEUE_PREFIX,
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "vsm",
                "beat",
                "-S",
                "django",
                "--loglevel",
                "DEBUG",
                "--schedule",
                str(log_path.with_suffix(".schedule")),
                "--pidfile",
                "",
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it lingers; a process a test has already killed is left alone."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
