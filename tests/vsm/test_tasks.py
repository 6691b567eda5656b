from datetime import timedelta

import pytest

from tests.factories import ArtifactFactory, StateTransitionFactory
from tests.workers import celery_beat, celery_worker, wait_until
from vsm.choices import FlowState
from vsm.models import Artifact
from vsm.services import artifact_refresh_flow_dates
from vsm.tasks import artifact_refresh_flow_dates as refresh_task


def _done_artifact_with_ledger():
    artifact = ArtifactFactory(flow_state=FlowState.DONE, tool_status="Done")
    start = artifact.created_at
    StateTransitionFactory(
        artifact=artifact, at=start + timedelta(hours=2), to_status="In Progress", to_state=FlowState.ACTIVE
    )
    StateTransitionFactory(
        artifact=artifact,
        at=start + timedelta(hours=5),
        from_status="In Progress",
        from_state=FlowState.ACTIVE,
        to_status="Done",
        to_state=FlowState.DONE,
    )
    return artifact, start


@pytest.mark.django_db
def test_refresh_sets_flow_dates_from_the_ledger():
    artifact, start = _done_artifact_with_ledger()
    refreshed = artifact_refresh_flow_dates(artifact)
    assert refreshed.first_started_at == start + timedelta(hours=2)
    assert refreshed.done_at == start + timedelta(hours=5)


@pytest.mark.django_db
def test_task_returns_quietly_when_the_artifact_is_gone():
    artifact, _ = _done_artifact_with_ledger()
    artifact_id = artifact.pk
    artifact.delete()
    refresh_task.apply(args=[artifact_id]).get()
    assert not Artifact.objects.filter(pk=artifact_id).exists()


@pytest.mark.needs_celery_worker
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_real_worker_runs_the_task_end_to_end(tmp_path):
    artifact, start = _done_artifact_with_ledger()
    log_path = tmp_path / "worker.log"
    with celery_worker(log_path) as (process, queue):
        refresh_task.apply_async(args=[artifact.pk], queue=queue)

        def refreshed():
            return Artifact.objects.get(pk=artifact.pk).done_at is not None

        wait_until(refreshed, timeout=60, process=process, log_path=log_path)
    artifact.refresh_from_db()
    assert artifact.first_started_at == start + timedelta(hours=2)
    assert artifact.done_at == start + timedelta(hours=5)
    assert "succeeded" in log_path.read_text()


@pytest.mark.needs_postgres
@pytest.mark.needs_redis
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_beat_starts_with_the_database_scheduler(tmp_path):
    log_path = tmp_path / "beat.log"
    with celery_beat(log_path) as process:
        wait_until(
            lambda: (
                "DatabaseScheduler: Schedule changed" in log_path.read_text(errors="replace")
                or "Writing entries" in log_path.read_text(errors="replace")
            ),
            timeout=90,  # starting takes seconds alone, 20 s and more beside a busy test run
            process=process,
            log_path=log_path,
        )
    assert "django_celery_beat.schedulers.DatabaseScheduler" in log_path.read_text()


class _BrokerDown:
    """A task whose broker cannot be reached."""

    name = "connectors.tasks.scope_sync_task"

    def delay(self, *args):
        raise ConnectionError("the broker is unreachable")


@pytest.mark.django_db(transaction=True)
def test_a_task_that_cannot_be_sent_on_commit_is_logged_and_never_fails_the_caller(caplog):
    from django.db import transaction

    from vsm.celery import enqueue_on_commit

    with transaction.atomic():
        enqueue_on_commit(_BrokerDown(), 7)
    assert "Error calling connectors.tasks.scope_sync_task.delay in on_commit()" in caplog.text
    assert "the broker is unreachable" in caplog.text
