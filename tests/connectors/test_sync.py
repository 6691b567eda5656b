"""The propagation engine against the in-process fakes: the seed story, loops, conflicts, faults."""

import pytest

from connectors.ingest import scope_sync
from connectors.models import IntegrationPair, PairState
from connectors.sync import integration_run
from tests.connectors.integration_world import make_integration_world
from vsm.choices import LinkKind
from vsm.models import Artifact, ArtifactLink

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return make_integration_world()


def sync(world, tool):
    result = scope_sync(world.scopes[tool].pk, **world.kwargs())
    assert result.outcome == "success", result
    return result


def run(world, name):
    result = integration_run(world.integrations[name].pk, **world.kwargs())
    assert not result.skipped, result
    return result


def test_a_salesforce_request_becomes_a_targetprocess_request_and_a_jira_epic_and_delivery_flows_back(world):
    key = world.salesforce.add_request("Pay by invoice", status="Under Review", account="ACME", amount=50000)
    sync(world, "salesforce")

    first = run(world, "to_tp")
    assert first.counts["created"] == 1
    pair = IntegrationPair.objects.get(integration=world.integrations["to_tp"])
    tp_request = pair.target
    assert tp_request.title == "Pay by invoice"
    assert tp_request.connection == world.connections["targetprocess"]
    assert tp_request.flow_state == "waiting"  # Under Review -> waiting -> Open, the preferred status
    assert world.salesforce.record(key)["Linked_Item__c"] == tp_request.key
    assert ArtifactLink.objects.filter(
        source=tp_request, target=pair.source, kind=LinkKind.SYNCED_WITH
    ).exists()

    assert run(world, "to_jira").counts["created"] == 1
    epic = IntegrationPair.objects.get(integration=world.integrations["to_jira"]).target
    assert epic.key.startswith("CHK-")
    assert epic.artifact_model.slug == "request"  # read back through the labelled-epic type mapping
    assert "customer-request" in world.jira.issues[epic.key].fields["labels"]

    story = world.jira.add_issue("CHK", "Story", "Invoice PDF", parent=epic.key)
    world.jira.transition(story, "In Progress")
    world.jira.transition(story, "Done")
    world.jira.transition(epic.key, "In Progress")
    world.jira.edit(epic.key, {"fixVersions": [{"name": "2026.3"}]})
    world.jira.transition(epic.key, "Done")
    sync(world, "jira")
    assert run(world, "to_jira").counts["updated"] == 1
    tp_request.refresh_from_db()
    assert tp_request.flow_state == "done"
    assert tp_request.fields["release"] == "2026.3"

    assert run(world, "to_tp").counts["updated"] == 1
    record = world.salesforce.record(key)
    assert (record["Status__c"], record["Release__c"]) == ("Delivered", "2026.3")


def test_a_second_run_changes_nothing(world):
    world.salesforce.add_request("Pay by invoice", status="New")
    sync(world, "salesforce")
    run(world, "to_tp")
    writes = world.writes()
    for tool in ("salesforce", "targetprocess"):
        sync(world, tool)
    again = run(world, "to_tp")
    assert again.counts["created"] == again.counts["updated"] == 0
    assert world.writes() == writes
    assert Artifact.objects.filter(connection=world.connections["targetprocess"]).count() == 1
    assert IntegrationPair.objects.get().state == PairState.OK
