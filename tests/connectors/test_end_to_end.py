"""End to end: celery beat schedules a scope sync, a real worker on Redis runs it against the fake
Jira served by `run_fake_tools` over a real socket, and the items land in the store."""

import json
import socket
import subprocess
import sys
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from django.conf import settings
from django_celery_beat.models import IntervalSchedule

from connectors.fakes.jira import DEMO_EMAIL, DEMO_TOKEN
from connectors.models import Scope, SyncRun, ToolConnection
from connectors.services import scope_schedule_save
from tests.connectors.conftest import STATUS_MAP, TYPE_MAP, WORKFLOW
from tests.factories import ProductFactory, map_types
from tests.workers import celery_beat, celery_worker, wait_until
from vsm.models import Artifact


def free_port() -> int:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def fake_tools(log_path):
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "run_fake_tools", "--port", str(port)],
            cwd=settings.BASE_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until(lambda: _answers(base), timeout=60, process=process, log_path=log_path)
            yield base
        finally:
            process.terminate()
            process.wait(timeout=10)


def _answers(base: str) -> bool:
    try:
        return httpx.get(base, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.needs_celery_worker
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_scheduled_sync_runs_on_a_real_worker_against_the_fake_tools(tmp_path):
    with fake_tools(tmp_path / "fakes.log") as base:
        jira = f"{base}/jira"
        control = httpx.Client(base_url=f"{jira}/_fake", timeout=10)
        assert control.post("/projects", json={"key": "ABC", "statuses": WORKFLOW}).status_code == 201
        start = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
        keys = []
        for n in range(5):
            body = {
                "project": "ABC",
                "issue_type": "Story",
                "summary": f"Story {n}",
                "created": start.isoformat(),
                "histories": [
                    {"at": (start + timedelta(hours=2)).isoformat(), "from": "To Do", "to": "In Progress"},
                    {"at": (start + timedelta(hours=9 + n)).isoformat(), "from": "In Progress", "to": "Done"},
                ],
            }
            response = control.post("/issues", json=body)
            assert response.status_code == 201, response.text
            keys.append(response.json()["key"])

        connection = ToolConnection.objects.create(
            kind="jira",
            name="Fake Jira over a socket",
            base_url=jira,
            options={"flavour": "cloud"},
            credentials={"email": DEMO_EMAIL, "api_token": DEMO_TOKEN},
        )
        map_types(connection, TYPE_MAP, STATUS_MAP)
        scope = Scope.objects.create(connection=connection, name="ABC", query="ABC", product=ProductFactory())
        task = scope_schedule_save(scope)
        with celery_worker(tmp_path / "worker.log") as (worker, queue):
            # The scope's own schedule, made fast and sent to this test's worker.
            task.interval = IntervalSchedule.objects.create(every=2, period=IntervalSchedule.SECONDS)
            task.queue = queue
            task.save()
            with celery_beat(tmp_path / "beat.log") as beat:
                wait_until(
                    lambda: SyncRun.objects.filter(scope=scope, outcome="success").exists(),
                    timeout=90,
                    process=worker,
                    log_path=tmp_path / "worker.log",
                )
                assert beat.poll() is None
    run = SyncRun.objects.filter(scope=scope, outcome="success").first()
    assert run.trigger == "schedule" and run.created == 5
    stored = Artifact.objects.filter(connection=connection)
    assert sorted(stored.values_list("key", flat=True)) == sorted(keys)
    assert all(artifact.transitions.count() == 2 for artifact in stored)
    assert json.loads(task.args) == [scope.pk]
