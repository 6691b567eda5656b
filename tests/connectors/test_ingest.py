"""The ingest engine against the fake Jira: idempotent, resumable, fault-tolerant, one sync per scope."""

import logging
import threading
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import ingest
from connectors.ingest import ScopeLease, scope_sync
from connectors.models import PendingLink, RawRecord, Scope, StatusMapping, SyncError, SyncRun, TypeMapping
from tests.connectors.conftest import make_jira_world
from vsm.choices import FlowState, LinkKind
from vsm.models import Artifact, ArtifactLink, StateTransition

pytestmark = pytest.mark.django_db


def sync(world, **kwargs):
    return scope_sync(world.scope.pk, **world.sync_kwargs(), **kwargs)


def story_with_history(world, summary, days_ago=5, updated=None):
    start = world.clock.now - timedelta(days=days_ago)
    return world.fake.add_issue(
        "ABC",
        "Story",
        summary,
        created=start,
        updated=updated,
        histories=[
            (start + timedelta(hours=1), "To Do", "In Progress"),
            (start + timedelta(hours=30), "In Progress", "In Review"),
            (start + timedelta(hours=50), "In Review", "Done"),
        ],
    )


def store_snapshot(connection):
    artifacts = list(Artifact.objects.filter(connection=connection).order_by("pk").values())
    transitions = list(
        StateTransition.objects.filter(artifact__connection=connection).order_by("pk").values()
    )
    raw = list(RawRecord.objects.filter(connection=connection).order_by("pk").values())
    return artifacts, transitions, raw


def test_a_first_sync_stores_items_with_their_ledger_and_a_second_changes_nothing(jira_world):
    world = jira_world
    keys = [story_with_history(world, f"Story {n}") for n in range(10)]
    result = sync(world)
    assert result.outcome == "success"
    assert (result.counts["read"], result.counts["created"], result.counts["failed"]) == (10, 10, 0)
    story = Artifact.objects.get(key=keys[0])
    assert story.flow_state == FlowState.DONE
    assert list(story.transitions.values_list("to_state", flat=True)) == ["active", "waiting", "done"]
    assert (
        story.first_started_at
        and story.done_at
        and story.done_at - story.first_started_at == timedelta(hours=49)
    )
    world.scope.refresh_from_db()
    assert world.scope.cursor == max(Artifact.objects.values_list("updated_at", flat=True))

    before = store_snapshot(world.connection)
    again = sync(world)
    assert (
        again.counts["read"],
        again.counts["unchanged"],
        again.counts["created"],
        again.counts["updated"],
    ) == (
        10,
        10,
        0,
        0,
    )
    assert store_snapshot(world.connection) == before


def test_changes_in_the_tool_flow_in_on_the_next_sync(jira_world):
    world = jira_world
    key = world.story("Moving")
    sync(world)
    world.clock.advance(hours=3)
    world.fake.transition(key, "In Progress")
    world.clock.advance(hours=2)
    world.fake.transition(key, "Done")
    result = sync(world)
    assert result.counts["updated"] == 1
    artifact = Artifact.objects.get(key=key)
    assert artifact.flow_state == FlowState.DONE
    assert artifact.transitions.count() == 2
    assert artifact.done_at - artifact.first_started_at == timedelta(hours=2)


def test_a_crash_at_page_k_resumes_with_no_duplicates_and_no_gaps(jira_world, monkeypatch):
    world = jira_world
    keys = [story_with_history(world, f"Story {n}", days_ago=30 - n) for n in range(30)]
    original = ingest.PageStore.save_page
    calls = {"n": 0}

    def crash_on_third_page(self, page):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("worker died")
        return original(self, page)

    monkeypatch.setattr(ingest.PageStore, "save_page", crash_on_third_page)
    with pytest.raises(RuntimeError):
        sync(world)
    assert Artifact.objects.count() == 14  # two pages of 7 committed
    failed_run = SyncRun.objects.get()
    assert failed_run.outcome == "failed" and "worker died" in failed_run.message
    assert Scope.objects.get(pk=world.scope.pk).lease_token == ""  # released for the next run

    monkeypatch.setattr(ingest.PageStore, "save_page", original)
    assert sync(world).outcome == "success"
    assert sorted(Artifact.objects.values_list("key", flat=True)) == sorted(keys)
    assert StateTransition.objects.count() == 30 * 3


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    items=st.integers(min_value=1, max_value=30),
    instants=st.integers(min_value=1, max_value=4),
    page_size=st.integers(min_value=1, max_value=9),
    crash_pages=st.sets(st.integers(min_value=1, max_value=12), max_size=4),
    server_errors=st.integers(min_value=0, max_value=3),
)
def test_any_paging_with_equal_timestamps_and_failures_ingests_each_item_exactly_once(
    db, items, instants, page_size, crash_pages, server_errors
):
    world = make_jira_world("cloud")
    Scope.objects.filter(pk=world.scope.pk).update(page_size=page_size)
    base = world.clock.now - timedelta(days=2)
    keys = [
        world.fake.add_issue(
            "ABC", "Story", f"Item {n}", created=base, updated=base + timedelta(minutes=n % instants)
        )
        for n in range(items)
    ]
    calls = {"n": 0}
    original = ingest.PageStore.save_page

    def crash_between_pages(self, page):
        calls["n"] += 1
        if calls["n"] in crash_pages:
            raise RuntimeError("crash between pages")
        return original(self, page)

    world.fake.fail(server_errors)  # retried by the client
    ingest.PageStore.save_page = crash_between_pages
    try:
        for _ in range(len(crash_pages) + 1):
            try:
                if sync(world).outcome == "success":
                    break
            except RuntimeError:
                continue
    finally:
        ingest.PageStore.save_page = original
    stored = list(Artifact.objects.filter(connection=world.connection).values_list("key", flat=True))
    assert sorted(stored) == sorted(keys)  # every item, exactly once
    cursor = Scope.objects.get(pk=world.scope.pk).cursor
    assert cursor == max(
        Artifact.objects.filter(connection=world.connection).values_list("updated_at", flat=True)
    )


def test_a_429_is_waited_out_and_500s_are_retried(jira_world):
    world = jira_world
    world.story("One")
    world.fake.rate_limit(1, retry_after=2)
    world.fake.fail(2)
    assert sync(world).outcome == "success"
    assert 2 in world.sleeps and len(world.sleeps) == 3


def test_persistent_500s_fail_the_run_record_health_and_keep_the_cursor(jira_world):
    world = jira_world
    world.story("One")
    world.fake.fail(50)
    result = sync(world)
    assert result.outcome == "failed"
    run = SyncRun.objects.get(pk=result.run_id)
    assert "500" in run.message
    world.connection.refresh_from_db()
    assert world.connection.last_error_at is not None and world.connection.healthy is False
    assert Scope.objects.get(pk=world.scope.pk).cursor is None
    world.fake.clear_faults()
    assert sync(world).outcome == "success"
    world.connection.refresh_from_db()
    assert world.connection.healthy is True


def test_bad_credentials_give_a_clear_auth_error_on_the_connection(jira_world):
    world = jira_world
    world.connection.credentials = {"email": "demo@vsm.example", "api_token": "wrong"}
    world.connection.save()
    result = sync(world)
    assert result.outcome == "failed"
    world.connection.refresh_from_db()
    assert world.connection.last_error.startswith("authentication failed")
    assert "401" in world.connection.last_error


def test_a_malformed_issue_becomes_a_sync_error_while_the_others_land(jira_world):
    world = jira_world
    keys = [world.story(f"Story {n}") for n in range(4)]
    world.fake.malformed(keys[2])
    result = sync(world)
    assert result.outcome == "partial"
    assert sorted(Artifact.objects.values_list("key", flat=True)) == sorted(keys[:2] + keys[3:])
    error = SyncError.objects.get()
    assert (error.stage, error.item_key) == ("read", keys[2])
    assert error.payload["key"] == keys[2]


def test_an_unmapped_status_keeps_the_item_as_unknown_and_is_reported_once(jira_world):
    world = jira_world
    world.fake.add_project("XYZ", statuses={"To Do": "new", "Blocked": "indeterminate", "Done": "done"})
    Scope.objects.filter(pk=world.scope.pk).update(query="project in (ABC, XYZ)")
    keys = [world.fake.add_issue("XYZ", "Story", f"Stuck {n}", status="Blocked") for n in range(3)]
    sync(world)
    assert set(Artifact.objects.filter(key__in=keys).values_list("flow_state", "tool_status")) == {
        ("unknown", "Blocked")
    }
    error = SyncError.objects.get()
    assert error.stage == "mapping"
    assert error.message.startswith("unmapped status “Blocked” in ")
    assert error.fingerprint.startswith("unmapped-status:")


def test_an_item_without_a_type_mapping_is_an_error_not_a_guess(jira_world):
    world = jira_world
    TypeMapping.objects.filter(connection=world.connection, tool_type="Bug").delete()
    bug = world.fake.add_issue("ABC", "Bug", "Crash")
    story = world.story("Fine")
    result = sync(world)
    assert result.outcome == "partial"
    assert list(Artifact.objects.values_list("key", flat=True)) == [story]
    assert SyncError.objects.get().message == f"no type mapping for type “Bug” in {world.connection.name}"
    assert bug not in Artifact.objects.values_list("key", flat=True)


def test_changing_a_mapping_renormalises_items_on_the_next_read(jira_world):
    world = jira_world
    key = world.story("Review me", status="In Review")
    sync(world)
    assert Artifact.objects.get(key=key).flow_state == FlowState.WAITING
    StatusMapping.objects.filter(type_mapping__connection=world.connection, tool_status="In Review").update(
        flow_state=FlowState.ACTIVE
    )
    Scope.objects.filter(pk=world.scope.pk).update(cursor=None)  # a full re-read, as after a mapping change
    assert sync(world).counts["updated"] == 1
    assert Artifact.objects.get(key=key).flow_state == FlowState.ACTIVE


def test_parent_links_resolve_in_either_order(jira_world):
    world = jira_world
    child = world.story("Child first")
    sync(world)
    epic = world.fake.add_issue("ABC", "Epic", "Epic later")
    world.fake.edit(child, {"parent": {"key": epic}})
    assert PendingLink.objects.count() == 0
    sync(world)
    link = ArtifactLink.objects.get()
    assert (link.source.key, link.target.key, link.kind) == (child, epic, LinkKind.CHILD_OF)
    assert PendingLink.objects.count() == 0


def test_a_deleted_item_is_marked_deleted_by_the_full_scan_never_removed(jira_world):
    world = jira_world
    keys = [world.story(f"Story {n}") for n in range(3)]
    sync(world)
    world.fake.delete(keys[1])
    result = sync(world, full_scan=True)
    assert result.counts["deleted"] == 1
    deleted = Artifact.objects.get(key=keys[1])
    assert deleted.deleted_at is not None
    assert Artifact.objects.filter(deleted_at__isnull=True).count() == 2


def test_secrets_stay_out_of_logs_and_sync_errors(jira_world, caplog):
    world = jira_world
    token = world.fake.credentials()["api_token"]
    keys = [world.story(f"Story {n}") for n in range(2)]
    world.fake.malformed(keys[0])
    world.fake.fail(1)
    with caplog.at_level(logging.DEBUG):
        sync(world)
        world.connection.credentials = {"email": "demo@vsm.example", "api_token": token + "-wrong"}
        world.connection.save()
        sync(world)
    assert token not in caplog.text
    for error in SyncError.objects.all():
        assert token not in str(error.payload) and token not in error.message
    for run in SyncRun.objects.all():
        assert token not in run.message
    world.connection.refresh_from_db()
    assert token not in world.connection.last_error


def test_a_held_lease_skips_and_an_expired_lease_is_taken_over(jira_world):
    world = jira_world
    world.story("One")
    holder = ScopeLease(world.scope.pk)
    assert holder.acquire()
    skipped = sync(world)
    assert skipped.skipped == "another sync of this scope is running" and skipped.run_id is None
    Scope.objects.filter(pk=world.scope.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert sync(world).outcome == "success"


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_workers_syncing_one_scope_make_exactly_one_run():
    world = make_jira_world("cloud")
    for n in range(20):
        world.story(f"Story {n}")
    world.fake.slow(3, 0.3)  # the winner holds the lease while the other arrives
    barrier = threading.Barrier(2)
    results = []

    def worker():
        try:
            barrier.wait()
            results.append(scope_sync(world.scope.pk, transport=world.transport, sleep=world.sleep))
        finally:
            db_connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(bool(result.skipped) for result in results) == [False, True]
    assert SyncRun.objects.filter(scope=world.scope).count() == 1
    assert Artifact.objects.filter(connection=world.connection).count() == 20


def test_incoming_links_are_added_in_either_order_and_never_removed_by_the_other_end(jira_world):
    """A deployment names the build it deployed: the build is deployed_in the deployment."""
    from connectors.base import Page, ToolItem, ToolLink
    from connectors.ingest import PageStore
    from connectors.selectors import load_mapping_set

    world = jira_world
    now = world.clock.now

    def item(key, links=(), version=1):
        return ToolItem(
            native_id=key,
            key=key,
            item_type="Task",
            url="",
            title=key,
            status="Done",
            created=now,
            updated=now,
            links=list(links),
            raw={"key": key, "version": version},
        )

    store = PageStore(
        world.scope,
        load_mapping_set(world.connection),
        SyncRun.objects.create(scope=world.scope, started_at=now),
    )
    deployed = ToolLink(kind=LinkKind.DEPLOYED_IN, target_key="build-7", incoming=True)
    store.save_page(Page(items=[item("deploy-1", [deployed])]))  # the build is not stored yet
    assert PendingLink.objects.get().reverse is True
    store.save_page(Page(items=[item("build-7")]))
    link = ArtifactLink.objects.get()
    assert (link.source.key, link.target.key, link.kind) == ("build-7", "deploy-1", LinkKind.DEPLOYED_IN)
    assert PendingLink.objects.count() == 0
    store.save_page(Page(items=[item("build-7", version=2), item("deploy-1", [deployed], version=2)]))
    assert ArtifactLink.objects.count() == 1


@pytest.mark.usefixtures("eager_tasks")
def test_a_sync_refreshes_the_metrics_rollups_of_what_it_touched(
    jira_world, django_capture_on_commit_callbacks
):
    from metrics.models import ItemFlowRollup

    world = jira_world
    keys = [story_with_history(world, f"Story {n}") for n in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        sync(world)
    rollups = ItemFlowRollup.objects.filter(artifact__key__in=keys)
    assert rollups.count() == 3
    assert {rollup.flow_time for rollup in rollups} == {49 * 3600}
