"""Every real issue recorded from a live Jira Cloud (localised statuses) goes through the ingest."""

import csv
import json
from datetime import datetime

import pytest
from django.utils import timezone

from connectors.base import Page
from connectors.ingest import PageStore
from connectors.models import PendingLink, SyncRun
from connectors.providers.jira.items import issue_to_item, parse_jira_time
from connectors.selectors import load_mapping_set
from tests.factories import ScopeFactory, ToolConnectionFactory, map_types
from vsm.choices import FlowState, LinkKind
from vsm.models import Artifact, ArtifactLink

TYPES = {
    "故事": "story",
    "Story": "story",
    "任务": "task",
    "子任务": "task",
    "缺陷": "defect",
    "Epic": "epic",
    "Test Execution": "task",
}
STATUSES = {
    "To Do": FlowState.NEW,
    "Open": FlowState.NEW,
    "Inbox": FlowState.NEW,
    "Ready for Dev": FlowState.WAITING,
    "In Development": FlowState.ACTIVE,
    "In Progress": FlowState.ACTIVE,
    "Resolved": FlowState.DONE,
    "Closed": FlowState.DONE,
    "已完成": FlowState.DONE,
}


@pytest.fixture
def real_issues(fixtures_dir):
    csv.field_size_limit(10**8)
    path = fixtures_dir / "devlake-raw" / "jira" / "_raw_jira_api_issues.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        issues = [json.loads(row["data"]) for row in csv.DictReader(handle)]
    assert len(issues) == 33
    return issues


def status_items(issue) -> int:
    return sum(
        1
        for history in issue["changelog"]["histories"]
        for item in history["items"]
        if item["field"] == "status"
    )


def test_every_real_issue_reads_with_all_its_status_changes(real_issues):
    for issue in real_issues:
        item = issue_to_item(issue, "https://merico.atlassian.net")
        assert item.key == issue["key"]
        assert len(item.changelog) == status_items(issue), issue["key"]
        assert all(change.at.tzinfo is not None for change in item.changelog)
        assert item.created <= item.updated


def test_every_real_issue_tells_when_each_changed_field_last_changed(real_issues):
    """The latest history naming each field, by its id (a system change such as a workflow migration may
    come after the issue's `updated`, which Jira does not move for it)."""
    for issue in real_issues:
        item = issue_to_item(issue, "https://merico.atlassian.net")
        latest: dict[str, datetime] = {}
        for history in issue["changelog"]["histories"]:
            at = parse_jira_time(history["created"])
            for change in history["items"]:
                name = change.get("fieldId") or change["field"]
                latest[name] = max(latest.get(name, at), at)
        expected = {**latest, **({"title": latest["summary"]} if "summary" in latest else {})}
        assert item.field_times == expected, issue["key"]


@pytest.mark.django_db
def test_real_issues_land_with_their_ledger_and_links(real_issues):
    connection = ToolConnectionFactory(base_url="https://merico.atlassian.net")
    map_types(connection, TYPES, STATUSES)
    scope = ScopeFactory(connection=connection, query="EE")
    run = SyncRun.objects.create(scope=scope, started_at=timezone.now())
    store = PageStore(scope, load_mapping_set(connection), run)
    items = [issue_to_item(issue, connection.base_url) for issue in real_issues]
    for start in range(0, len(items), 10):
        store.save_page(Page(items=items[start : start + 10]))

    run.refresh_from_db()
    assert (run.read, run.created, run.failed) == (33, 33, 0)
    artifacts = {artifact.key: artifact for artifact in Artifact.objects.filter(connection=connection)}
    assert len(artifacts) == 33
    for issue in real_issues:
        artifact = artifacts[issue["key"]]
        assert artifact.transitions.count() == status_items(issue), issue["key"]
        assert artifact.flow_state != FlowState.UNKNOWN
    parents = {
        (issue["key"], issue["fields"]["parent"]["key"])
        for issue in real_issues
        if issue["fields"].get("parent")
    }
    links = set(ArtifactLink.objects.filter(kind=LinkKind.CHILD_OF).values_list("source__key", "target__key"))
    present = {parent for parent in parents if parent[1] in artifacts}
    assert links == present
    assert len(parents) == 15
    # A parent outside the recorded set waits as a pending link, visible, not dropped.
    pending = set(PendingLink.objects.values_list("source__key", "target_key"))
    assert pending == parents - present
    assert pending, "the recording holds at least one issue whose parent it does not include"
    done = artifacts["EE-1"]
    assert done.flow_state == FlowState.DONE and done.done_at is not None


@pytest.mark.django_db
def test_reingesting_real_issues_changes_nothing(real_issues):
    connection = ToolConnectionFactory()
    map_types(connection, TYPES, STATUSES)
    scope = ScopeFactory(connection=connection, query="EE")
    items = [issue_to_item(issue, connection.base_url) for issue in real_issues]
    first = SyncRun.objects.create(scope=scope, started_at=timezone.now())
    PageStore(scope, load_mapping_set(connection), first).save_page(Page(items=items))
    before = list(Artifact.objects.order_by("pk").values())
    second = SyncRun.objects.create(scope=scope, started_at=timezone.now())
    PageStore(scope, load_mapping_set(connection), second).save_page(Page(items=items))
    second.refresh_from_db()
    assert (second.unchanged, second.created, second.updated) == (33, 0, 0)
    assert list(Artifact.objects.order_by("pk").values()) == before
