"""A real Celery worker in a subprocess, on the test database, stopped by its own pid."""

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from urllib.parse import quote

from django.conf import settings
from django.db import connection


def database_url_of_test_db() -> str:
    db = connection.settings_dict
    credentials = quote(db["USER"] or "postgres")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"])
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@contextmanager
def celery_worker(log_path, queues: str | None = None):
    """Yield (process, queue name) of a solo-pool worker consuming a queue of its own."""
    queue = queues or f"test-{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url_of_test_db(),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
    }
    with open(log_path, "wb") as log:
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
                queue,
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
            yield process, queue
        finally:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


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
    """Yield a `celery beat -S django` process on the test database, stopped by its own pid."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url_of_test_db(),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
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
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
