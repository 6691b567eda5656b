"""Celery queues: each task is routed to its queue, and a worker runs only the queues it consumes."""

import time

import pytest
import yaml
from django.conf import settings
from django.utils import timezone

from connectors import tasks
from connectors.models import SyncRun, WebhookDelivery
from metrics import tasks as metrics_tasks
from tests.factories import ScopeFactory, ToolConnectionFactory
from tests.workers import celery_worker, wait_until
from vsm import tasks as vsm_tasks
from vsm.celery import app


def routed_queue(task_name: str) -> str:
    return app.amqp.router.route({}, task_name)["queue"].name


@pytest.mark.parametrize(
    ("task_name", "queue"),
    [
        (tasks.scope_sync_task.name, "ingest"),
        (tasks.scope_full_scan_task.name, "ingest"),
        (tasks.sync_error_retry_task.name, "ingest"),
        (tasks.connection_relink_task.name, "ingest"),
        (metrics_tasks.rollups_refresh_task.name, "ingest"),
        (metrics_tasks.product_rollups_rebuild_task.name, "ingest"),
        (tasks.scopes_full_scan_sweep_task.name, "ingest"),
        (tasks.integration_run_task.name, "propagation"),
        (tasks.integrations_sweep_task.name, "propagation"),
        (tasks.integration_pair_resolve_task.name, "propagation"),
        (tasks.webhook_delivery_task.name, "webhooks"),
        (vsm_tasks.artifact_refresh_flow_dates.name, "celery"),
    ],
)
def test_each_task_is_routed_to_its_queue(task_name, queue):
    assert routed_queue(task_name) == settings.TASK_QUEUE_PREFIX + queue


def test_an_explicit_queue_still_overrides_the_route():
    assert (
        app.amqp.router.route({"queue": "elsewhere"}, tasks.scope_sync_task.name)["queue"].name == "elsewhere"
    )


@pytest.mark.needs_celery_worker
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_webhooks_worker_runs_webhook_deliveries_and_leaves_ingest_alone(tmp_path):
    connection = ToolConnectionFactory()  # no scope: the delivery is processed without reading the tool
    delivery = WebhookDelivery.objects.create(
        connection=connection,
        delivery_id="d-1",
        event="jira:issue_updated",
        item_keys=["ABC-1"],
        received_at=timezone.now(),
    )
    scope = ScopeFactory()
    log_path = tmp_path / "worker.log"
    with celery_worker(log_path, queues="webhooks") as (process, _):
        ingest_queue = routed_queue(tasks.scope_sync_task.name)
        assert ingest_queue.endswith("-ingest")
        tasks.scope_sync_task.delay(scope.pk)
        tasks.webhook_delivery_task.delay(delivery.pk)

        def processed():
            return WebhookDelivery.objects.get(pk=delivery.pk).processed_at is not None

        wait_until(processed, timeout=60, process=process, log_path=log_path)
        time.sleep(2)  # time enough to take the ingest task too, were it listening
        with app.connection_for_write() as broker:
            waiting = broker.default_channel.client.llen(ingest_queue)
    assert waiting == 1
    assert not SyncRun.objects.filter(scope=scope).exists()
    assert "no enabled scope" in WebhookDelivery.objects.get(pk=delivery.pk).message
    log = log_path.read_text()
    assert f"{tasks.webhook_delivery_task.name}[" in log and "succeeded" in log
    assert f"{tasks.scope_sync_task.name}[" not in log


def test_the_compose_workers_consume_every_queue():
    compose = yaml.safe_load((settings.BASE_DIR / "docker" / "compose.yaml").read_text())
    consumed = set()
    for service in compose["services"].values():
        command = service.get("command") or []
        if command[:4] == ["celery", "-A", "vsm", "worker"]:
            consumed.update(command[command.index("-Q") + 1].split(","))
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert consumed == routed | {settings.CELERY_TASK_DEFAULT_QUEUE}


@pytest.mark.needs_celery_worker
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_worker_started_inside_another_shares_its_queues(tmp_path):
    connection = ToolConnectionFactory()
    with celery_worker(tmp_path / "webhooks.log", queues="webhooks") as (webhooks_worker, default_queue):
        with celery_worker(tmp_path / "ingest.log", queues="ingest") as (ingest_worker, inner_default_queue):
            assert inner_default_queue == default_queue
            tasks.connection_relink_task.delay(connection.pk)
            wait_until(
                lambda: "succeeded" in (tmp_path / "ingest.log").read_text(),
                timeout=60,
                process=ingest_worker,
                log_path=tmp_path / "ingest.log",
            )
        assert routed_queue(tasks.scope_sync_task.name) == default_queue.removesuffix("celery") + "ingest"
    assert f"{tasks.connection_relink_task.name}[" in (tmp_path / "ingest.log").read_text()
    assert routed_queue(tasks.scope_sync_task.name) == settings.TASK_QUEUE_PREFIX + "ingest"
    assert webhooks_worker.returncode is not None
