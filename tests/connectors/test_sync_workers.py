"""Integrations on real Celery workers on Redis, against the fakes over a real socket: the seed story,
a worker killed mid-batch, and two workers on the same integration."""

import os
import signal
from datetime import UTC, datetime

import pytest

from connectors.models import Integration, IntegrationPair, PairState
from connectors.tasks import integration_run_task, scope_sync_task
from tests.connectors.conftest import Clock
from tests.connectors.integration_world import make_integration_world, served
from tests.workers import celery_worker, wait_until

pytestmark = [
    pytest.mark.needs_celery_worker,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


@pytest.fixture
def world():
    return make_integration_world(now=Clock(datetime.now(UTC)))


def poll(world, tool):
    world.clock.advance(minutes=2)  # past Zendesk's one-minute export delay
    scope_sync_task.delay(world.scopes[tool].pk)


def pair_of(world, name):
    return IntegrationPair.objects.filter(integration=world.integrations[name], state=PairState.OK).first()


def test_the_seed_story_runs_end_to_end_on_a_real_worker(world, tmp_path):
    log = tmp_path / "worker.log"
    with served(world), celery_worker(log) as (worker, _):
        key = world.salesforce.add_request(
            "Pay by invoice", status="Under Review", account="ACME", amount=5e4
        )
        poll(world, "salesforce")
        # Salesforce -> Targetprocess -> Jira: each write's page commit starts the next integration.
        wait_until(lambda: pair_of(world, "to_jira") is not None, timeout=60, process=worker, log_path=log)
        epic = pair_of(world, "to_jira").target.key
        tp_key = pair_of(world, "to_tp").target.key
        assert world.salesforce.record(key)["Linked_Item__c"] == tp_key

        story = world.jira.add_issue("CHK", "Story", "Invoice PDF", parent=epic)
        for status in ("In Progress", "Done"):
            world.jira.transition(story, status)
        world.jira.transition(epic, "In Progress")
        world.jira.edit(epic, {"fixVersions": [{"name": "2026.3"}]})
        world.jira.transition(epic, "Done")
        poll(world, "jira")
        wait_until(
            lambda: world.salesforce.record(key)["Status__c"] == "Delivered",
            timeout=60,
            process=worker,
            log_path=log,
        )
        assert world.salesforce.record(key)["Release__c"] == "2026.3"
        tp_request = world.targetprocess.entities[int(tp_key.removeprefix("TP-"))]
        assert world.targetprocess.states[tp_request.state_id].name == "Done"
        assert tp_request.custom_fields["Release"] == "2026.3"

        ticket = world.zendesk.add_ticket("Card payments fail", tags=["engineering"], status="open")
        poll(world, "zendesk")
        wait_until(
            lambda: pair_of(world, "escalations") is not None, timeout=60, process=worker, log_path=log
        )
        bug = pair_of(world, "escalations").target.key
        world.jira.transition(bug, "In Progress")
        world.jira.transition(bug, "Done")
        poll(world, "jira")
        wait_until(
            lambda: world.zendesk.tickets[ticket].status == "solved", timeout=60, process=worker, log_path=log
        )
    # No echo: after everything settled, the engine wrote each tool only what the story needed.
    assert world.writes() == {"salesforce": 3, "targetprocess": 4, "jira": 3, "zendesk": 3}


def _requests(world, count):
    return [world.salesforce.add_request(f"Request {n:03d}", status="New") for n in range(count)]


def _tp_request_names(world):
    return sorted(e.name for e in world.targetprocess.entities.values() if e.entity_type == "Request")


def test_a_worker_killed_mid_batch_leaves_a_job_the_next_worker_finishes_without_duplicates(world, tmp_path):
    count = 40
    _requests(world, count)
    integration = world.integrations["to_tp"]
    Integration.objects.filter(pk=integration.pk).update(enabled=False)  # fill the store first
    with served(world):
        with celery_worker(tmp_path / "first.log") as (first, _):
            poll(world, "salesforce")
            wait_until(
                lambda: world.scopes["salesforce"].runs.filter(outcome="success").exists(),
                timeout=60,
                process=first,
                log_path=tmp_path / "first.log",
            )
            Integration.objects.filter(pk=integration.pk).update(enabled=True)
            world.targetprocess.slow(10_000, 0.25)  # every call takes a while: the batch is under way
            integration_run_task.delay(integration.pk)
            # Pairs are recorded before their tool call, so wait for items made in the tool itself.
            wait_until(
                lambda: len(_tp_request_names(world)) >= 4,
                timeout=60,
                process=first,
                log_path=tmp_path / "first.log",
            )
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)
        made_before_the_kill = len(_tp_request_names(world))
        assert 0 < made_before_the_kill < count
        # The dead worker's lease would expire after LEASE_SECONDS; move it to now instead of waiting.
        Integration.objects.filter(pk=integration.pk).update(lease_expires_at=datetime.now(UTC))
        world.targetprocess.clear_faults()
        with celery_worker(tmp_path / "second.log") as (second, _):
            integration_run_task.delay(integration.pk)
            wait_until(
                lambda: (
                    IntegrationPair.objects.filter(integration=integration, state=PairState.OK).count()
                    == count
                ),
                timeout=90,
                process=second,
                log_path=tmp_path / "second.log",
            )
    assert _tp_request_names(world) == [f"Request {n:03d}" for n in range(count)]


def test_two_workers_on_the_same_integration_make_one_target_item_per_source_item(world, tmp_path):
    count = 30
    _requests(world, count)
    integration = world.integrations["to_tp"]
    Integration.objects.filter(pk=integration.pk).update(enabled=False)
    with (
        served(world),
        celery_worker(tmp_path / "one.log") as (one, _),
        celery_worker(tmp_path / "two.log") as (two, _),
    ):
        poll(world, "salesforce")
        wait_until(
            lambda: world.scopes["salesforce"].runs.filter(outcome="success").exists(),
            timeout=60,
            process=one,
            log_path=tmp_path / "one.log",
        )
        Integration.objects.filter(pk=integration.pk).update(enabled=True)
        world.targetprocess.slow(10_000, 0.02)
        for _ in range(6):  # both workers take runs of it at once
            integration_run_task.delay(integration.pk)
        wait_until(
            lambda: (
                IntegrationPair.objects.filter(integration=integration, state=PairState.OK).count() == count
            ),
            timeout=90,
            process=two,
            log_path=tmp_path / "two.log",
        )
        wait_until(
            lambda: not Integration.objects.filter(pk=integration.pk, lease_token__gt="").exists(),
            timeout=60,
        )
    assert _tp_request_names(world) == [f"Request {n:03d}" for n in range(count)]
