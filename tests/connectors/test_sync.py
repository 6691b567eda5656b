"""The propagation engine against the in-process fakes: the seed story, loops, conflicts, faults."""

from datetime import UTC, datetime

import pytest

from connectors.ingest import scope_sync
from connectors.models import IntegrationPair, PairState
from connectors.sync import integration_run
from tests.connectors.conftest import Clock
from tests.connectors.integration_world import make_integration_world
from vsm.choices import LinkKind
from vsm.models import Artifact, ArtifactLink

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    # The fakes' clock runs from the real now: the engine finds a half-made item by when it was made.
    return make_integration_world(now=Clock(datetime.now(UTC)))


def sync(world, tool):
    world.clock.advance(minutes=2)  # Zendesk's export leaves out the last minute's changes
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


def test_an_escalated_zendesk_ticket_becomes_a_jira_bug_and_its_resolution_shows_on_the_ticket(world):
    ticket = world.zendesk.add_ticket("Card payments fail", tags=["engineering"], status="open")
    world.zendesk.add_ticket("How do I reset my password?", status="open")  # a plain case: not escalated
    sync(world, "zendesk")
    assert run(world, "escalations").counts["created"] == 1
    bug = IntegrationPair.objects.get(integration=world.integrations["escalations"]).target
    assert (bug.artifact_model.slug, world.jira.issues[bug.key].issue_type.name) == ("defect", "Bug")
    stored = world.zendesk.tickets[ticket]
    assert stored.custom_fields[int(world.connections["zendesk"].options["jira_key_field_id"])] == bug.key
    assert any(bug.url in comment.body and not comment.public for comment in stored.comments)

    world.jira.transition(bug.key, "In Progress")
    world.jira.transition(bug.key, "Done")
    sync(world, "jira")
    assert run(world, "escalations").counts["updated"] == 1
    assert world.zendesk.tickets[ticket].status == "solved"


def test_what_the_engine_wrote_is_not_echoed_and_two_way_edits_converge(world):
    world.salesforce.add_request("Pay by invoice", status="New")
    sync(world, "salesforce")
    run(world, "to_tp")
    run(world, "to_jira")
    epic = IntegrationPair.objects.get(integration=world.integrations["to_jira"]).target
    tp_id = int(IntegrationPair.objects.get(integration=world.integrations["to_jira"]).source.external_id)

    before = world.writes()
    world.jira.edit(epic.key, {"summary": "Pay by invoice (EU)"})
    sync(world, "jira")
    run(world, "to_jira")
    assert world.writes()["targetprocess"] == before["targetprocess"] + 1  # one write, to the other side
    assert world.writes()["jira"] == before["jira"]  # nothing echoed back (the edit was not over HTTP)
    world.targetprocess.edit(tp_id, {"Name": "Pay by invoice (EU and UK)"})
    for tool in ("targetprocess", "jira"):
        sync(world, tool)
    run(world, "to_jira")
    assert world.jira.issues[epic.key].fields["summary"] == "Pay by invoice (EU and UK)"

    settled = world.writes()
    for _ in range(2):  # the engine's own writes, read back by polls, change nothing
        for tool in ("salesforce", "targetprocess", "jira"):
            sync(world, tool)
        assert run(world, "to_jira").counts["updated"] == 0
        assert run(world, "to_tp").counts["updated"] == 0
    assert world.writes() == settled


def _chain(world, policy):
    """A Salesforce request, its Targetprocess request and that one's Jira epic, all in step."""
    from connectors.models import Integration

    Integration.objects.filter(pk=world.integrations["to_jira"].pk).update(conflict_policy=policy)
    world.salesforce.add_request("Pay by invoice", status="New")
    sync(world, "salesforce")
    run(world, "to_tp")
    run(world, "to_jira")
    pair = IntegrationPair.objects.get(integration=world.integrations["to_jira"])
    return pair, int(pair.source.external_id), pair.target.key


def _titles(world, tp_id, epic):
    return world.targetprocess.entities[tp_id].name, world.jira.issues[epic].fields["summary"]


def _conflicting_titles(world, policy):
    pair, tp_id, epic = _chain(world, policy)
    world.targetprocess.edit(tp_id, {"Name": "Title from Targetprocess"})
    world.clock.advance(minutes=1)
    world.jira.edit(epic, {"summary": "Title from Jira"})
    for tool in ("targetprocess", "jira"):
        sync(world, tool)
    run(world, "to_jira")
    return pair, tp_id


@pytest.mark.parametrize(
    ("policy", "title"),
    [
        ("source_wins", "Title from Targetprocess"),
        ("target_wins", "Title from Jira"),
        ("latest_wins", "Title from Jira"),  # Jira's edit came after Targetprocess's
    ],
)
def test_a_field_changed_on_both_sides_is_settled_by_the_policy(world, policy, title):
    pair, tp_id = _conflicting_titles(world, policy)
    assert world.targetprocess.entities[tp_id].name == title
    assert world.jira.issues[pair.target.key].fields["summary"] == title
    pair.refresh_from_db()
    assert (pair.state, pair.conflicts) == (PairState.OK, {})


def test_flag_stops_the_field_until_a_person_picks_a_side_and_other_fields_still_flow(world):
    from connectors.sync import pair_conflict_resolve

    pair, tp_id = _conflicting_titles(world, "flag")
    pair.refresh_from_db()
    assert pair.state == PairState.CONFLICT
    assert pair.conflicts == {"title": {"source": "Title from Targetprocess", "target": "Title from Jira"}}
    assert world.targetprocess.entities[tp_id].name == "Title from Targetprocess"  # nothing overwritten

    world.jira.transition(pair.target.key, "In Progress")
    sync(world, "jira")
    run(world, "to_jira")
    assert (
        world.targetprocess.states[world.targetprocess.entities[tp_id].state_id].name == "In Progress"
    )  # the status still flows
    pair.refresh_from_db()
    assert pair.state == PairState.CONFLICT

    pair_conflict_resolve(pair, take="target", **world.kwargs())
    pair.refresh_from_db()
    assert (pair.state, pair.conflicts) == (PairState.OK, {})
    assert world.targetprocess.entities[tp_id].name == "Title from Jira"
    sync(world, "targetprocess")
    assert run(world, "to_jira").counts["updated"] == 0


def _requests(world, count):
    keys = [world.salesforce.add_request(f"Request {n}", status="New") for n in range(count)]
    sync(world, "salesforce")
    return keys


def _tp_requests(world):
    return sorted(e.name for e in world.targetprocess.entities.values() if e.entity_type == "Request")


def test_a_target_failing_mid_batch_loses_nothing_duplicates_nothing_and_the_rest_goes_on(world, settings):
    settings.SYNC_RETRY_SECONDS = 0
    _requests(world, 6)
    calls = {"n": 0}
    from connectors.providers.targetprocess.provider import TargetprocessConnector

    create = TargetprocessConnector.create_item

    def third_create_fails(self, scope, item_type, fields, **options):
        calls["n"] += 1
        if calls["n"] == 3:
            world.targetprocess.fail(1, status=500)
        return create(self, scope, item_type, fields, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TargetprocessConnector, "create_item", third_create_fails)
        first = run(world, "to_tp")
    assert (first.counts["created"], first.counts["failed"]) == (5, 1)
    failed = IntegrationPair.objects.get(state=PairState.RETRYING)
    assert "500" in failed.last_error
    assert failed.source.key in [e.item_key for e in failed.integration.target_scope.errors.all()]

    second = run(world, "to_tp")
    assert (second.counts["created"], second.counts["failed"]) == (1, 0)
    assert _tp_requests(world) == [f"Request {n}" for n in range(6)]
    assert not IntegrationPair.objects.exclude(state=PairState.OK).exists()
    assert not failed.integration.target_scope.errors.filter(resolved_at__isnull=True).exists()


def test_rate_limits_are_waited_out_within_the_run(world):
    _requests(world, 3)
    world.targetprocess.rate_limit(2, retry_after=7)
    assert run(world, "to_tp").counts["created"] == 3
    assert 7 in world.sleeps
    assert len(_tp_requests(world)) == 3


def test_an_item_created_whose_answer_was_lost_is_found_again_not_made_twice(world, settings):
    settings.SYNC_RETRY_SECONDS = 0
    _requests(world, 2)
    from connectors.exceptions import Unavailable
    from connectors.providers.targetprocess.provider import TargetprocessConnector

    create = TargetprocessConnector.create_item

    def answer_lost(self, scope, item_type, fields, **options):
        create(self, scope, item_type, fields, **options)
        raise Unavailable("the connection dropped before the answer came")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TargetprocessConnector, "create_item", answer_lost)
        assert run(world, "to_tp").counts["failed"] == 2
    assert len(_tp_requests(world)) == 2
    again = run(world, "to_tp")
    assert again.counts["created"] == 2
    assert _tp_requests(world) == ["Request 0", "Request 1"]  # adopted, not made again
    assert IntegrationPair.objects.filter(state=PairState.OK, target__isnull=False).count() == 2


def test_after_the_configured_attempts_a_pair_waits_for_a_person_and_retry_sets_it_going(world, settings):
    from connectors.models import Integration
    from connectors.sync import pairs_retry

    settings.SYNC_RETRY_SECONDS = 0
    Integration.objects.filter(pk=world.integrations["to_tp"].pk).update(max_attempts=2)
    _requests(world, 1)
    world.targetprocess.fail(2, status=400)
    run(world, "to_tp")
    run(world, "to_tp")
    pair = IntegrationPair.objects.get()
    assert (pair.state, pair.attempts) == (PairState.WAITING, 2)
    assert run(world, "to_tp").counts["failed"] == 0  # waiting: left alone
    assert "retry in admin" in world.integrations["to_tp"].target_scope.errors.get().message

    assert pairs_retry(world.integrations["to_tp"]) == 1
    assert run(world, "to_tp").counts["created"] == 1


def test_assignees_flow_through_people_matched_across_tools_with_the_default_person_standing_in(world):
    from connectors.models import FieldMapping, IntegrationField, Person, PersonAccount

    escalations = world.integrations["escalations"]
    for mapping in (escalations.source_type_mapping, escalations.target_type_mapping):
        FieldMapping.objects.create(
            type_mapping=mapping, tool_path="assignee", model_field="assignee", transform="person"
        )
    IntegrationField.objects.create(integration=escalations, model_field="assignee", flow="to_target")
    ann_agent = world.zendesk.add_user("Ann Agent", "ann@corp.test", role="agent")
    bob_agent = world.zendesk.add_user("Bob Agent", "bob@corp.test", role="agent")
    ann_engineer = world.jira.add_user("ann@corp.test", "token-a", display_name="Ann Engineer")
    triage = world.jira.add_user("triage@corp.test", "token-t", display_name="Triage")
    ann = Person.objects.create(name="Ann", email="ann@corp.test")
    PersonAccount.objects.create(
        person=ann,
        connection=world.connections["zendesk"],
        account_id=str(ann_agent.id),
        display_name="Ann Agent",
    )
    PersonAccount.objects.create(
        person=ann,
        connection=world.connections["jira"],
        account_id=ann_engineer.account_id,
        email="ann@corp.test",
    )
    default = Person.objects.create(name="Triage", is_default=True)
    PersonAccount.objects.create(
        person=default, connection=world.connections["jira"], account_id=triage.account_id
    )

    first = world.zendesk.add_ticket(
        "Card payments fail", tags=["engineering"], status="open", assignee=ann_agent.id
    )
    second = world.zendesk.add_ticket(
        "Refunds fail", tags=["engineering"], status="open", assignee=bob_agent.id
    )
    sync(world, "zendesk")
    run(world, "escalations")
    assignees = {}
    for pair in IntegrationPair.objects.filter(integration=escalations).select_related("source", "target"):
        assignees[int(pair.source.external_id)] = world.jira.issues[pair.target.key].fields["assignee"]
    assert assignees[first].display_name == "Ann Engineer"
    assert assignees[second].display_name == "Triage"  # Bob has no Jira account: the default person


def test_routes_send_new_items_to_their_container_and_the_filter_picks_the_items(world):
    from connectors.models import IntegrationFilter, IntegrationRoute

    to_tp = world.integrations["to_tp"]
    priority = world.targetprocess.add_project("Priority deals")
    IntegrationRoute.objects.create(
        integration=to_tp, model_field="deal_breaker", value="true", container=str(priority)
    )
    IntegrationFilter.objects.create(
        integration=to_tp, model_field="status", operator="one_of", value="new, waiting"
    )
    world.salesforce.add_request("Must have", status="New", deal_breaker=True)
    world.salesforce.add_request("Nice to have", status="Under Review")
    world.salesforce.add_request("Declined already", status="Declined")
    sync(world, "salesforce")
    assert run(world, "to_tp").counts["created"] == 2
    projects = {
        e.name: e.project_id for e in world.targetprocess.entities.values() if e.entity_type == "Request"
    }
    assert projects == {"Must have": priority, "Nice to have": world.tp_project}


def test_the_safety_nets_sweep_every_integration_and_scan_scopes_not_scanned_for_a_day(
    eager_tasks, monkeypatch
):
    from datetime import timedelta

    from django.utils import timezone

    from connectors import tasks
    from connectors.models import Scope

    world = make_integration_world()
    Scope.objects.filter(pk=world.scopes["jira"].pk).update(last_full_scan_at=timezone.now())
    Scope.objects.filter(pk=world.scopes["zendesk"].pk).update(
        last_full_scan_at=timezone.now() - timedelta(days=2)
    )
    scanned, ran = [], []
    monkeypatch.setattr(tasks.scope_full_scan_task, "delay", scanned.append)
    monkeypatch.setattr(tasks.integration_run_task, "delay", ran.append)
    assert tasks.scopes_full_scan_sweep_task() == 3
    assert sorted(scanned) == sorted(world.scopes[t].pk for t in ("salesforce", "targetprocess", "zendesk"))
    assert tasks.integrations_sweep_task() == 3
    assert sorted(ran) == sorted(i.pk for i in world.integrations.values())


def test_items_changed_during_a_run_wait_in_its_backlog_and_that_run_takes_them(world):
    from connectors.models import IntegrationBacklog, IntegrationRun
    from connectors.sync import Engine

    first, second = (world.salesforce.add_request(title, status="New") for title in ("First", "Second"))
    sync(world, "salesforce")
    ids = {a.key: a.pk for a in Artifact.objects.filter(key__in=[first, second])}
    propagate = Engine.propagate
    concurrent = []

    def propagate_while_another_change_arrives(engine, artifact_ids, lease):
        if not concurrent:  # another worker's run for the second item, while this one holds the lease
            concurrent.append(
                integration_run(world.integrations["to_tp"].pk, artifact_ids=[ids[second]], **world.kwargs())
            )
            assert IntegrationBacklog.objects.filter(artifact_id=ids[second]).exists()
        propagate(engine, artifact_ids, lease)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Engine, "propagate", propagate_while_another_change_arrives)
        result = integration_run(world.integrations["to_tp"].pk, artifact_ids=[ids[first]], **world.kwargs())
    assert concurrent[0].skipped.startswith("another run")
    assert result.counts["created"] == 2
    assert IntegrationRun.objects.count() == 2  # its own pass, then one for the backlog
    assert not IntegrationBacklog.objects.exists()


# --- edits are never lost: order of syncs, per-field recency, writes recorded one by one, deletions -----


@pytest.mark.parametrize("synced", ["targetprocess", "jira"])
@pytest.mark.parametrize(
    ("policy", "titles", "state"),
    [
        ("flag", ("Title from Targetprocess", "Title from Jira"), PairState.CONFLICT),
        ("target_wins", ("Title from Jira", "Title from Jira"), PairState.OK),
        ("source_wins", ("Title from Targetprocess", "Title from Targetprocess"), PairState.OK),
    ],
)
def test_a_field_changed_on_both_sides_goes_to_the_policy_whichever_side_is_synced_first(
    world, synced, policy, titles, state
):
    """Only one side's edit is in the store when the engine runs: it reads the side it would write to
    again, so the other edit counts and the policy decides, instead of being overwritten."""
    pair, tp_id, epic = _chain(world, policy)
    world.targetprocess.edit(tp_id, {"Name": "Title from Targetprocess"})
    world.clock.advance(minutes=1)
    world.jira.edit(epic, {"summary": "Title from Jira"})
    sync(world, synced)
    run(world, "to_jira")
    assert _titles(world, tp_id, epic) == titles
    pair.refresh_from_db()
    assert pair.state == state
    if state == PairState.CONFLICT:
        assert pair.conflicts == {
            "title": {"source": "Title from Targetprocess", "target": "Title from Jira"}
        }


def test_latest_wins_takes_the_latest_edit_of_the_field_not_of_the_item(world):
    """Targetprocess's title edit comes first, Jira's second; then Targetprocess changes its release
    (which makes its item the most recently updated): Jira's title, the latest title, stands."""
    _pair, tp_id, epic = _chain(world, "latest_wins")
    world.targetprocess.edit(tp_id, {"Name": "Title from Targetprocess"})
    sync(world, "targetprocess")  # the title's change is seen at its own time
    world.clock.advance(minutes=5)
    world.jira.edit(epic, {"summary": "Title from Jira"})
    world.clock.advance(minutes=5)
    world.targetprocess.edit(tp_id, {"CustomFields": [{"Name": "Release", "Value": "2026.4"}]})
    for tool in ("targetprocess", "jira"):
        sync(world, tool)
    run(world, "to_jira")
    assert _titles(world, tp_id, epic) == ("Title from Jira", "Title from Jira")


def test_latest_wins_reads_the_field_times_from_the_tools_history(world):
    """Jira's changelog dates its summary edit before Targetprocess's title edit, though Jira's issue
    was updated last (its release): Targetprocess's title stands."""
    _pair, tp_id, epic = _chain(world, "latest_wins")
    world.jira.edit(epic, {"summary": "Title from Jira"})
    world.clock.advance(minutes=5)
    world.targetprocess.edit(tp_id, {"Name": "Title from Targetprocess"})
    world.clock.advance(minutes=5)
    world.jira.edit(epic, {"fixVersions": [{"name": "2026.4"}]})
    for tool in ("targetprocess", "jira"):
        sync(world, tool)
    run(world, "to_jira")
    assert _titles(world, tp_id, epic) == ("Title from Targetprocess", "Title from Targetprocess")


def test_a_failed_status_change_is_retried_alone_never_with_the_fields_again(world, settings):
    from connectors.exceptions import BadRequest
    from connectors.providers.targetprocess.provider import TargetprocessConnector

    settings.SYNC_RETRY_SECONDS = 0
    pair, tp_id, epic = _chain(world, "target_wins")
    world.jira.edit(epic, {"fixVersions": [{"name": "2026.4"}]})
    world.jira.transition(epic, "In Progress")
    sync(world, "jira")
    before = world.writes()["targetprocess"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            TargetprocessConnector,
            "transition_item",
            lambda self, ref, status: (_ for _ in ()).throw(BadRequest("the workflow refused")),
        )
        assert run(world, "to_jira").counts["failed"] == 1
    assert world.writes()["targetprocess"] == before + 1  # the release was written
    assert world.targetprocess.entities[tp_id].custom_fields["Release"] == "2026.4"
    again = run(world, "to_jira")
    assert (again.counts["updated"], again.counts["failed"]) == (1, 0)
    assert world.writes()["targetprocess"] == before + 2  # only the status change, once
    assert world.targetprocess.states[world.targetprocess.entities[tp_id].state_id].name == "In Progress"
    pair.refresh_from_db()
    assert pair.state == PairState.OK


def test_an_edit_after_the_target_was_deleted_is_said_and_the_pair_can_be_made_again_or_unlinked(world):
    from connectors.models import IntegrationRun
    from connectors.sync import pair_recreate, pair_unlink

    pair, tp_id, epic = _chain(world, "target_wins")
    world.jira.delete(epic)
    world.targetprocess.edit(tp_id, {"Name": "Pay by invoice, in euros"})
    sync(world, "targetprocess")
    result = run(world, "to_jira")
    assert (result.counts["gone"], result.counts["unchanged"], result.counts["updated"]) == (1, 0, 0)
    pair.refresh_from_db()
    assert pair.state == PairState.TARGET_GONE
    assert f"{epic} was deleted in Jira" in IntegrationRun.objects.get(pk=result.run_id).message
    assert Artifact.objects.get(key=epic).deleted_at is not None
    assert run(world, "to_jira").counts["gone"] == 0  # said once; the pair waits for a person

    pair_recreate(pair)
    assert run(world, "to_jira").counts["created"] == 1
    pair.refresh_from_db()
    assert pair.state == PairState.OK and pair.target.key != epic
    assert world.jira.issues[pair.target.key].fields["summary"] == "Pay by invoice, in euros"

    world.jira.delete(pair.target.key)
    world.targetprocess.edit(tp_id, {"Name": "Pay by invoice, in pounds"})
    sync(world, "targetprocess")
    run(world, "to_jira")
    pair.refresh_from_db()
    pair_unlink(pair)
    for _ in range(2):
        assert run(world, "to_jira").counts["created"] == 0
    pair.refresh_from_db()
    assert pair.state == PairState.UNLINKED


def test_a_status_the_target_reaches_only_through_other_statuses_is_walked_to(world):
    from tests.connectors.conftest import STEPWISE_TRANSITIONS

    pair, tp_id, epic = _chain(world, "target_wins")
    world.jira.projects["CHK"].transitions = [
        (str(11 + 10 * number), rule) for number, rule in enumerate(STEPWISE_TRANSITIONS)
    ]
    world.targetprocess.transition(tp_id, "Done")
    sync(world, "targetprocess")
    result = run(world, "to_jira")
    assert (result.counts["updated"], result.counts["failed"]) == (1, 0)
    assert world.jira.issues[epic].status == "Done"
    pair.refresh_from_db()
    assert pair.state == PairState.OK


def test_a_lost_create_answer_never_makes_a_second_item_whatever_the_search_lag(world, settings):
    """Jira made the epic but the answer was lost; its search shows new issues only five minutes later.
    The retry, at once, finds the epic by reading keys (Jira's search would not show it), not making a
    second one."""
    settings.SYNC_RETRY_SECONDS = 0
    world.jira.set_search_lag(300)
    world.salesforce.add_request("Pay by invoice", status="New")
    sync(world, "salesforce")
    run(world, "to_tp")
    world.jira.lose_answers(1)
    assert run(world, "to_jira").counts["failed"] == 1
    epics = [issue.key for issue in world.jira.issues.values() if issue.issue_type.name == "Epic"]
    assert len(epics) == 1
    again = run(world, "to_jira")
    assert (again.counts["created"], again.counts["failed"]) == (1, 0)
    assert [issue.key for issue in world.jira.issues.values() if issue.issue_type.name == "Epic"] == epics
    pair = IntegrationPair.objects.get(integration=world.integrations["to_jira"])
    assert (pair.state, pair.target.key) == (PairState.OK, epics[0])
    assert world.jira.issues[epics[0]].properties["vsm.created-for"] == {"marker": pair.create_marker}


def test_rich_text_crosses_tools_in_each_tools_own_form_and_settles(world):
    """A Targetprocess description (HTML) reaches Jira as wiki markup, paragraphs, emphasis, lists and
    links kept; Jira's edit comes back as HTML; nothing echoes once the two agree."""
    from connectors.models import FieldMapping, IntegrationField

    to_jira = world.integrations["to_jira"]
    for mapping, path in (
        (to_jira.source_type_mapping, "Description"),
        (to_jira.target_type_mapping, "description"),
    ):
        FieldMapping.objects.create(
            type_mapping=mapping, tool_path=path, model_field="description", transform="rich_text"
        )
    IntegrationField.objects.create(integration=to_jira, model_field="description", flow="both")
    _pair, tp_id, epic = _chain(world, "target_wins")
    description = (
        "<div><p>Customers want <strong>invoice</strong> payment.</p><ul><li>EU</li><li>UK</li></ul>"
        '<p>See <a href="https://example.com/spec">the spec</a>.</p></div>'
    )
    world.targetprocess.edit(tp_id, {"Description": description})
    sync(world, "targetprocess")
    run(world, "to_jira")
    assert world.jira.issues[epic].fields["description"] == (
        "Customers want *invoice* payment.\n\n* EU\n* UK\n\nSee [the spec|https://example.com/spec]."
    )
    assert Artifact.objects.get(key=epic).fields["description"] == (
        "Customers want **invoice** payment.\n\n- EU\n- UK\n\nSee [the spec](https://example.com/spec)."
    )

    world.jira.edit(epic, {"description": "Customers want *invoice* payment, _in euros_.\n\n* EU"})
    sync(world, "jira")
    run(world, "to_jira")
    assert world.targetprocess.entities[tp_id].description == (
        "<p>Customers want <strong>invoice</strong> payment, <em>in euros</em>.</p>\n<ul>\n<li>EU</li>\n</ul>"
    )
    settled = world.writes()
    for _ in range(2):
        for tool in ("targetprocess", "jira"):
            sync(world, tool)
        assert run(world, "to_jira").counts["updated"] == 0
    assert world.writes() == settled
