import os
import socket
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import connection


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _answers(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=1):
            return True
    except OSError:
        return False


CHROMIUM = "/usr/bin/chromium"


def _missing_service(item) -> str | None:
    """Why a test marked as needing a service cannot run here, or None when it can."""
    if item.get_closest_marker("needs_browser") and not os.access(CHROMIUM, os.X_OK):
        return f"needs Chromium at {CHROMIUM}: apt-get install chromium"
    needs_worker = item.get_closest_marker("needs_celery_worker") is not None
    if (item.get_closest_marker("needs_postgres") or needs_worker) and connection.vendor != "postgresql":
        return "needs PostgreSQL: set DATABASE_URL=postgres://..."
    if item.get_closest_marker("needs_redis") or needs_worker:
        broker = os.environ.get("VSM_CELERY_BROKER_URL", "")
        if not broker.startswith("redis"):
            return "needs Redis: set VSM_CELERY_BROKER_URL=redis://..."
        if not _answers(broker, 6379):
            return f"Redis at {broker} does not answer"
    return None


@pytest.fixture(autouse=True)
def _require_services(request):
    """Skip a test whose service is missing; with VSM_REQUIRE_SERVICES=1 (CI) fail it instead."""
    reason = _missing_service(request.node)
    if reason is None:
        return
    if _flag("VSM_REQUIRE_SERVICES"):
        pytest.fail(f"VSM_REQUIRE_SERVICES is set but this test {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def fixtures_dir():
    """../shared/fixtures; skipped when absent, a failure with VSM_REQUIRE_FIXTURES=1 (CI)."""
    path = settings.BASE_DIR.parent / "shared" / "fixtures"
    path = type(path)(os.environ.get("VSM_FIXTURES_DIR", str(path)))
    if not path.is_dir():
        message = f"shared fixtures not found at {path} (set VSM_FIXTURES_DIR)"
        if _flag("VSM_REQUIRE_FIXTURES"):
            pytest.fail(f"VSM_REQUIRE_FIXTURES is set but {message}", pytrace=False)
        pytest.skip(message)
    return path


def pytest_report_header(config):
    database = settings.DATABASES["default"]
    broker = os.environ.get("VSM_CELERY_BROKER_URL") or "none (tasks run in-process)"
    return [
        f"vsm: database {database['ENGINE'].rsplit('.', 1)[-1]} ({database['NAME']}), broker {broker}",
        f"vsm: require services {_flag('VSM_REQUIRE_SERVICES')}, fixtures {_flag('VSM_REQUIRE_FIXTURES')}",
    ]


@pytest.fixture
def eager_tasks():
    """Run Celery tasks in-process for this test, even where a broker is configured (CI)."""
    from vsm.celery import app

    previous = app.conf.task_always_eager, app.conf.task_eager_propagates
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = previous
