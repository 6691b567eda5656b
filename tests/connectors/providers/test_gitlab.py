"""The GitLab provider against the fake GitLab, over httpx's WSGI transport, and through the real ingest."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import httpx
import pytest

import connectors.providers.gitlab  # noqa: F401 (registers the provider)
from connectors.base import ItemRef, ScopeSpec, ToolLink
from connectors.exceptions import AuthError, BadRequest, RateLimited
from connectors.fakes.gitlab import FakeGitLab
from connectors.ingest import scope_sync
from connectors.models import Scope, SyncError, SyncRun, ToolConnection
from connectors.providers.gitlab.items import parse_gitlab_time, updated_after_param
from connectors.selectors import connector_instance
from tests.factories import ProductFactory, map_types
from vsm.choices import FlowState, LinkKind
from vsm.models import Artifact, ArtifactLink, StateTransition

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PROJECT = "acme/shop"
TYPE_MAP = {
    "Issue": "story",
    "Incident": "incident",
    "MergeRequest": "pull-request",
    "Commit": "commit",
    "Pipeline": "build",
    "Deployment": "deployment",
}
STATUS_MAP = {
    "opened": FlowState.NEW,
    "To Do": FlowState.NEW,
    "Doing": FlowState.ACTIVE,
    "Review": FlowState.WAITING,
    "closed": FlowState.DONE,
    "merged": FlowState.DONE,
    "locked": FlowState.CANCELED,
    "committed": FlowState.DONE,
    "created": FlowState.NEW,
    "running": FlowState.ACTIVE,
    "success": FlowState.DONE,
    "failed": FlowState.DONE,
    "canceled": FlowState.CANCELED,
}


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Recorder:
    """A WSGI wrapper that records each request's path and query, and may act before passing it on."""

    def __init__(self, app, before=None):
        self.app, self.before, self.calls = app, before, []

    def __call__(self, environ, start_response):
        call = (environ["PATH_INFO"], parse_qs(environ.get("QUERY_STRING", "")))
        self.calls.append(call)
        if self.before is not None:
            response = self.before(*call)
            if response is not None:
                return response(environ, start_response)
        return self.app(environ, start_response)

    def queries(self, suffix: str) -> list[dict]:
        return [query for path, query in self.calls if path.endswith(suffix)]


@dataclass
class GitLabWorld:
    fake: FakeGitLab
    clock: Clock
    connection: ToolConnection
    scope: Scope
    sleeps: list[float] = field(default_factory=list)
    app: object = None

    @property
    def transport(self) -> httpx.WSGITransport:
        return httpx.WSGITransport(app=self.app or self.fake)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def connector(self, **credentials):
        if credentials:
            self.connection.credentials = credentials
        return connector_instance(self.connection, transport=self.transport, sleep=self.sleep)

    def sync(self):
        return scope_sync(self.scope.pk, transport=self.transport, sleep=self.sleep)

    def issue(self, title: str, hours_ago: float = 0, **kwargs):
        return self.fake.add_issue(
            PROJECT, title, created=self.clock.now - timedelta(hours=hours_ago), **kwargs
        )


def make_world(query: str = PROJECT, options: dict | None = None, page_size: int = 7) -> GitLabWorld:
    clock = Clock(T0)
    fake = FakeGitLab(now=clock)
    fake.add_project(PROJECT, created=T0 - timedelta(days=90))
    connection = ToolConnection.objects.create(
        kind="gitlab",
        name=f"GitLab {ToolConnection.objects.count() + 1}",
        base_url="https://gitlab.example.test",
        options=options or {},
        credentials=fake.credentials(),
        requests_per_second=0,
    )
    map_types(connection, TYPE_MAP, STATUS_MAP)
    scope = Scope.objects.create(
        connection=connection, name=PROJECT, query=query, product=ProductFactory(), page_size=page_size
    )
    return GitLabWorld(fake, clock, connection, scope)


@pytest.fixture
def world(db) -> GitLabWorld:
    return make_world()


def read_all(gitlab, query=PROJECT, since=None, page_size=7):
    return list(gitlab.read_changes(ScopeSpec(query=query, page_size=page_size), since))


def keys_of(pages) -> list[str]:
    return [item.key for page in pages for item in page.items]


def delivery(world: GitLabWorld):
    """An issue, a merge request with two commits, its pipeline and a deployment, at distinct times."""
    fake, start = world.fake, world.clock.now - timedelta(days=5)
    issue = fake.add_issue(PROJECT, "Checkout", created=start)
    first = fake.add_commit(
        PROJECT, "Pay with cards\n\nCloses #1", committed=start + timedelta(hours=2), ref="pay"
    )
    second = fake.add_commit(PROJECT, "Tests", committed=start + timedelta(hours=3), ref="pay")
    mr = fake.add_merge_request(
        PROJECT,
        "Pay with cards",
        "pay",
        description="Closes #1",
        commits=[first.sha, second.sha],
        created=start + timedelta(hours=4),
        state_events=[(start + timedelta(hours=20), "merged")],
        merge_commit_sha=second.sha,
    )
    pipeline = fake.add_pipeline(
        PROJECT,
        second.sha,
        "main",
        created=start + timedelta(hours=21),
        started=start + timedelta(hours=21, minutes=2),
        finished=start + timedelta(hours=21, minutes=30),
    )
    deployment = fake.add_deployment(
        PROJECT,
        "production",
        pipeline,
        created=start + timedelta(hours=22),
        started=start + timedelta(hours=22, minutes=1),
        finished=start + timedelta(hours=22, minutes=9),
    )
    fake.close(issue.reference, at=start + timedelta(hours=23))
    return issue, (first, second), mr, pipeline, deployment


# Connection and auth -------------------------------------------------------------------------------------


def test_check_connection_names_the_user(world):
    assert world.connector().check_connection() == "VSM Demo"


def test_a_wrong_token_is_an_auth_error(world):
    with pytest.raises(AuthError, match="401"):
        world.connector(token="wrong").check_connection()


def test_a_missing_token_says_what_is_needed(world):
    with pytest.raises(AuthError, match="access token"):
        world.connector(other="x")


def test_a_bad_scope_query_is_a_bad_request(world):
    with pytest.raises(BadRequest, match="project path"):
        read_all(world.connector(), query="not a path")
    with pytest.raises(BadRequest, match="unknown GitLab resource"):
        read_all(world.connector(), query=f"{PROJECT}:issues,wikis")


# Incremental reads ---------------------------------------------------------------------------------------


def test_items_sharing_one_updated_instant_across_pages_are_read_once_each(world):
    same = world.clock.now - timedelta(hours=1)
    issues = [world.issue(f"Issue {n}", updated=same, hours_ago=2) for n in range(25)]
    pages = read_all(world.connector(), query=f"{PROJECT}:issues")
    assert [len(page.items) for page in pages] == [7, 7, 7, 4]
    assert sorted(keys_of(pages)) == sorted(issue.reference for issue in issues)
    assert len(set(keys_of(pages))) == 25


def test_an_item_updated_while_the_list_is_read_is_not_skipped(db):
    """Offset paging alone would skip one: the updated item moves to the end and the rest shift back."""
    world = make_world()
    issues = [world.issue(f"Issue {n}", hours_ago=20 - n) for n in range(12)]
    gitlab = world.connector()
    batches = gitlab.walk_updated(f"projects/{world.fake.projects[PROJECT].id}/issues", {}, None, 5)
    first = next(batches)
    world.clock.now += timedelta(minutes=1)
    world.fake.edit(issues[0].reference, title="Renamed while reading")
    rest = [raw for batch in batches for raw in batch]
    read = [raw["iid"] for raw in first + rest]
    assert sorted(set(read)) == list(range(1, 13))
    assert read.count(1) == 2  # read again after its change, never lost
    assert [raw["title"] for raw in rest if raw["iid"] == 1] == ["Renamed while reading"]


def test_since_is_sent_as_updated_after_with_milliseconds_and_honoured(world):
    since = world.clock.now - timedelta(hours=1, microseconds=1500)  # 07:59:59.9985
    old = world.issue("Old", hours_ago=48)
    same_millisecond = world.fake.add_issue(PROJECT, "In since's millisecond", created=since)
    new = world.issue("New")
    old_commit = world.fake.add_commit(PROJECT, "Old", committed=world.clock.now - timedelta(days=3))
    new_commit = world.fake.add_commit(PROJECT, "New", committed=world.clock.now - timedelta(minutes=5))
    recorder = Recorder(world.fake)
    world.app = recorder
    pages = read_all(world.connector(), query=f"{PROJECT}:issues,commits", since=since)
    assert keys_of(pages) == [same_millisecond.reference, new_commit.sha, new.reference]
    assert old.reference not in keys_of(pages) and old_commit.sha not in keys_of(pages)
    (issues_query,) = recorder.queries("/issues")
    assert issues_query["updated_after"] == [updated_after_param(since)] == ["2026-03-02T07:59:59.997Z"]
    assert (issues_query["order_by"], issues_query["sort"]) == (["updated_at"], ["asc"])
    (commits_query,) = recorder.queries("/repository/commits")
    assert commits_query["since"] == ["2026-03-02T07:59:59Z"] and commits_query["all"] == ["true"]


def test_all_five_lists_are_merged_oldest_change_first(world):
    delivery(world)
    pages = read_all(world.connector(), page_size=2)
    assert [len(page.items) for page in pages] == [2, 2, 2]
    items = [item for page in pages for item in page.items]
    assert [item.item_type for item in items] == [
        "Commit",
        "Commit",
        "MergeRequest",
        "Pipeline",
        "Deployment",
        "Issue",
    ]
    assert [item.updated for item in items] == sorted(item.updated for item in items)


def test_a_commit_dated_in_the_future_does_not_carry_the_cursor_past_later_changes(world):
    future = world.fake.add_commit(PROJECT, "Wrong clock", committed=datetime(2031, 1, 1, tzinfo=UTC))
    gitlab = world.connector()
    gitlab.now = world.clock
    (item,) = keys_of_items(read_all(gitlab, query=f"{PROJECT}:commits"))
    assert (item.key, item.updated) == (future.sha, world.clock.now)
    assert item.fields["committed_date"] == "2031-01-01T00:00:00.000+00:00"


def keys_of_items(pages) -> list:
    return [item for page in pages for item in page.items]


def test_the_scope_chooses_the_lists(world):
    delivery(world)
    recorder = Recorder(world.fake)
    world.app = recorder
    pages = read_all(world.connector(), query=f"{PROJECT}:pipelines,deployments")
    assert [item.item_type for page in pages for item in page.items] == ["Pipeline", "Deployment"]
    assert not recorder.queries("/issues") and not recorder.queries("/repository/commits")


# History, fields and links -------------------------------------------------------------------------------


def test_state_events_become_the_changelog(world):
    start = world.clock.now - timedelta(days=4)
    issue = world.fake.add_issue(
        PROJECT,
        "Flaky",
        created=start,
        state_events=[
            (start + timedelta(hours=5), "closed", "vsm-demo"),
            (start + timedelta(hours=8), "reopened"),
            (start + timedelta(hours=30), "closed"),
        ],
    )
    item = keys_and_items(world)[issue.reference]
    assert (item.item_type, item.status, item.url) == (
        "Issue",
        "closed",
        f"https://gitlab.example.test/{PROJECT}/-/issues/1",
    )
    assert [(c.from_status, c.to_status, c.at, c.author) for c in item.changelog] == [
        ("opened", "closed", start + timedelta(hours=5), "VSM Demo"),
        ("closed", "opened", start + timedelta(hours=8), "VSM Demo"),
        ("opened", "closed", start + timedelta(hours=30), "VSM Demo"),
    ]


def keys_and_items(world, query=PROJECT) -> dict:
    return {item.key: item for page in read_all(world.connector(), query=query) for item in page.items}


def test_workflow_labels_give_open_issues_their_status_when_the_connection_names_a_scope(db):
    world = make_world(options={"workflow_label_scope": "workflow"})
    start = world.clock.now - timedelta(days=4)
    issue = world.fake.add_issue(
        PROJECT,
        "Labelled",
        created=start,
        labels=["workflow::To Do", "backend"],
        label_events=[
            (start + timedelta(hours=2), "add", "workflow::Doing"),
            (start + timedelta(hours=9), "add", "workflow::Review"),
            (start + timedelta(hours=9, minutes=5), "add", "frontend"),
        ],
        state_events=[(start + timedelta(hours=12), "closed")],
    )
    world.fake.reopen(issue.reference, at=start + timedelta(hours=13))
    item = keys_and_items(world)[issue.reference]
    assert item.status == "Review"
    assert [(c.from_status, c.to_status, c.at) for c in item.changelog] == [
        ("opened", "To Do", start),
        ("To Do", "Doing", start + timedelta(hours=2)),
        ("Doing", "Review", start + timedelta(hours=9)),
        ("Review", "closed", start + timedelta(hours=12)),
        ("closed", "Review", start + timedelta(hours=13)),
    ]


def test_merge_requests_pipelines_and_deployments_carry_fields_history_and_links(world):
    _, (first, second), mr, pipeline, deployment = delivery(world)
    start = world.clock.now - timedelta(days=5)
    items = keys_and_items(world)
    merge_request = items[mr.reference]
    assert (merge_request.item_type, merge_request.status) == ("MergeRequest", "merged")
    assert merge_request.fields["source_branch"] == "pay"
    assert merge_request.fields["merge_commit_sha"] == second.sha
    assert merge_request.fields["description"] == "Closes #1"
    assert merge_request.fields["commit_shas"] == [second.sha, first.sha]
    assert [(link.kind, link.target_key) for link in merge_request.links] == [
        ("committed_in", second.sha),
        ("committed_in", first.sha),
    ]
    assert [(c.from_status, c.to_status, c.at) for c in merge_request.changelog] == [
        ("opened", "merged", start + timedelta(hours=20))
    ]

    commit = items[first.sha]
    assert (commit.item_type, commit.status, commit.title) == ("Commit", "committed", "Pay with cards")
    assert commit.fields["message"] == "Pay with cards\n\nCloses #1"

    build = items[f"{PROJECT} pipeline {pipeline.id}"]
    assert (build.item_type, build.status, build.fields["sha"], build.fields["ref"]) == (
        "Pipeline",
        "success",
        second.sha,
        "main",
    )
    assert [(c.from_status, c.to_status, c.at) for c in build.changelog] == [
        ("created", "running", start + timedelta(hours=21, minutes=2)),
        ("running", "success", start + timedelta(hours=21, minutes=30)),
    ]

    deploy = items[f"{PROJECT} deployment {deployment.id}"]
    assert deploy.fields["environment"]["name"] == "production"
    assert deploy.fields["deployable"]["pipeline"]["id"] == pipeline.id
    assert (deploy.fields["sha"], deploy.status) == (second.sha, "success")
    assert deploy.links == [
        ToolLink(kind="deployed_in", target_key=build.key, description="pipeline", incoming=True)
    ]
    assert deploy.changelog[-1].to_status == "success"
    assert deploy.changelog[-1].at == start + timedelta(hours=22, minutes=9)


def test_issue_links_are_recorded_once_per_pair(world):
    a, b, c = (world.issue(name, hours_ago=5) for name in "ABC")
    world.fake.link_issues(a.reference, b.reference, "relates_to")
    world.fake.link_issues(c.reference, a.reference, "blocks")
    items = keys_and_items(world, query=f"{PROJECT}:issues")
    assert [(link.kind, link.target_key) for link in items[a.reference].links] == [
        ("relates_to", b.reference)
    ]
    assert items[b.reference].links == []  # the same pair, from the other side
    assert [(link.kind, link.target_key, link.description) for link in items[c.reference].links] == [
        ("relates_to", a.reference, "blocks")
    ]


def test_read_item_reads_each_kind_by_key(world):
    issue, (first, _), mr, pipeline, deployment = delivery(world)
    gitlab, scope = world.connector(), ScopeSpec(PROJECT)
    for key, item_type in (
        (issue.reference, "Issue"),
        (mr.reference, "MergeRequest"),
        (first.sha, "Commit"),
        (f"{PROJECT} pipeline {pipeline.id}", "Pipeline"),
        (f"{PROJECT} deployment {deployment.id}", "Deployment"),
    ):
        item = gitlab.read_item(key, scope)
        assert (item.key, item.item_type) == (key, item_type)
    with pytest.raises(BadRequest):
        gitlab.read_item("no such key", scope)


def test_list_ids_covers_every_kind(world):
    issue, (first, second), mr, pipeline, deployment = delivery(world)
    assert set(world.connector().list_ids(ScopeSpec(PROJECT))) == {
        f"issue:{issue.id}",
        f"merge_request:{mr.id}",
        first.sha,
        second.sha,
        f"pipeline:{pipeline.id}",
        f"deployment:{deployment.id}",
    }


def test_a_malformed_item_is_a_failure_and_the_rest_of_the_page_reads(world):
    issues = [world.issue(f"Issue {n}", hours_ago=3 - n) for n in range(3)]
    world.fake.malformed(issues[1].reference)
    (page,) = read_all(world.connector(), query=f"{PROJECT}:issues")
    assert keys_of([page]) == [issues[0].reference, issues[2].reference]
    (failure,) = page.failures
    assert (failure.key, failure.native_id) == (issues[1].reference, f"issue:{issues[1].id}")
    assert "cannot read issue" in failure.message


def test_timestamps_are_read_in_every_form_gitlab_writes():
    assert parse_gitlab_time("2016-01-07T12:44:33.959Z") == datetime(
        2016, 1, 7, 12, 44, 33, 959000, tzinfo=UTC
    )
    assert parse_gitlab_time("2011-12-12T14:27:31+02:00") == datetime(2011, 12, 12, 12, 27, 31, tzinfo=UTC)
    assert parse_gitlab_time("2017-09-15 16:50:55 UTC") == datetime(2017, 9, 15, 16, 50, 55, tzinfo=UTC)
    for bad in ("2017-09-15T16:50:55", "not-a-date", None):
        with pytest.raises(ValueError):
            parse_gitlab_time(bad)


# Rate limits ---------------------------------------------------------------------------------------------


def test_429_is_waited_out_as_retry_after_asks(world):
    world.issue("One")
    world.fake.rate_limit(2, retry_after=3)
    assert len(read_all(world.connector(), query=f"{PROJECT}:issues")[0].items) == 1
    assert world.sleeps[:2] == [3, 3]


def test_a_429_without_headers_backs_off(world):
    world.issue("One")
    world.fake.rate_limit(1, headers=False)
    assert len(read_all(world.connector(), query=f"{PROJECT}:issues")[0].items) == 1
    assert len(world.sleeps) == 1 and 0 <= world.sleeps[0] <= 0.5


def test_a_long_rate_limit_is_raised_not_slept(world):
    world.fake.rate_limit(1, retry_after=3600)
    with pytest.raises(RateLimited):
        world.connector().check_connection()
    assert world.sleeps == []


# Writes --------------------------------------------------------------------------------------------------


def test_create_update_and_transition_write_issues(world):
    gitlab = world.connector()
    item = gitlab.create_item(
        ScopeSpec(PROJECT), "Issue", {"summary": "From the portal", "labels": ["customer", "vsm"]}
    )
    assert (item.key, item.title, item.status) == (f"{PROJECT}#1", "From the portal", "opened")
    ((method, _, body),) = world.fake.writes
    assert (method, body["title"], body["labels"], body["issue_type"]) == (
        "POST",
        "From the portal",
        "customer,vsm",
        "issue",
    )
    stored = world.fake.issues[int(item.native_id.split(":")[1])]
    assert stored.labels == ["customer", "vsm"]

    ref = ItemRef(item.native_id, item.key)
    gitlab.update_item(ref, {"title": "Renamed", "description": "Details"})
    assert (stored.title, stored.description) == ("Renamed", "Details")

    world.clock.now += timedelta(hours=1)
    gitlab.transition_item(ref, "Closed")
    assert stored.state == "closed"
    world.clock.now += timedelta(hours=1)
    gitlab.transition_item(ref, "opened")
    assert stored.state == "opened"
    assert [event.state for event in stored.state_events] == ["closed", "reopened"]
    assert [(w.method, w.body) for w in world.fake.writes[-2:]] == [
        ("PUT", {"state_event": "close"}),
        ("PUT", {"state_event": "reopen"}),
    ]
    with pytest.raises(BadRequest, match="opened or closed"):
        gitlab.transition_item(ref, "Doing")


def test_an_incident_is_created_with_its_type(world):
    item = world.connector().create_item(ScopeSpec(PROJECT), "Incident", {"title": "Checkout down"})
    assert item.item_type == "Incident"
    with pytest.raises(BadRequest, match="creates issues only"):
        world.connector().create_item(ScopeSpec(PROJECT), "MergeRequest", {"title": "No"})


def test_a_workflow_status_is_written_as_a_scoped_label(db):
    world = make_world(options={"workflow_label_scope": "workflow"})
    issue = world.issue("Labelled", labels=["workflow::To Do"])
    gitlab = world.connector()
    ref = ItemRef(f"issue:{issue.id}", issue.reference)
    gitlab.transition_item(ref, "Doing")
    assert issue.labels == ["workflow::Doing"]
    gitlab.transition_item(ref, "closed")
    gitlab.transition_item(ref, "Review")
    assert (issue.state, issue.labels) == ("opened", ["workflow::Review"])
    assert gitlab.read_item(issue.reference, ScopeSpec(PROJECT)).status == "Review"


def test_add_link_links_issues_once(world):
    a, b = world.issue("A"), world.issue("B")
    gitlab = world.connector()
    for _ in range(2):  # the second answers 409, which is success
        gitlab.add_link(ItemRef("", a.reference), ToolLink(kind="relates_to", target_key=b.reference))
    assert len(world.fake.issue_links) == 1
    assert [
        (link.kind, link.target_key) for link in gitlab.read_item(a.reference, ScopeSpec(PROJECT)).links
    ] == [("relates_to", b.reference)]
    with pytest.raises(BadRequest, match="no remote links"):
        gitlab.add_link(ItemRef("", a.reference), url="https://vsm.example.test/a/1", title="In the portal")
    with pytest.raises(BadRequest, match="writes issues only"):
        gitlab.update_item(ItemRef("", f"{PROJECT}!1"), {"title": "x"})


# Through the real ingest ---------------------------------------------------------------------------------


def test_a_sync_stores_every_kind_with_its_ledger_and_links(world):
    issue, (first, second), mr, pipeline, deployment = delivery(world)
    result = world.sync()
    assert result.outcome == "success", SyncRun.objects.get(pk=result.run_id).message
    assert (result.counts["read"], result.counts["created"], result.counts["failed"]) == (6, 6, 0)

    story = Artifact.objects.get(key=issue.reference)
    assert (story.flow_state, story.done_at) == (
        FlowState.DONE,
        world.clock.now - timedelta(days=5, hours=-23),
    )
    assert list(StateTransition.objects.filter(artifact=story).values_list("from_status", "to_status")) == [
        ("opened", "closed")
    ]
    build = Artifact.objects.get(key=f"{PROJECT} pipeline {pipeline.id}")
    assert build.first_started_at == world.clock.now - timedelta(days=5) + timedelta(hours=21, minutes=2)
    links = set(ArtifactLink.objects.values_list("source__key", "kind", "target__key"))
    assert links == {
        (mr.reference, LinkKind.COMMITTED_IN, first.sha),
        (mr.reference, LinkKind.COMMITTED_IN, second.sha),
        (build.key, LinkKind.DEPLOYED_IN, f"{PROJECT} deployment {deployment.id}"),
    }
    again = world.sync()  # re-reads the overlap before the cursor, and changes nothing
    assert again.counts["read"] >= 1
    assert (again.counts["unchanged"], again.counts["created"], again.counts["updated"]) == (
        again.counts["read"],
        0,
        0,
    )


def test_a_run_that_stops_half_way_resumes_without_gaps(world):
    """The lists are merged in update order, so the cursor never passes a deployment not read yet."""
    issue, _, _, pipeline, first = delivery(world)
    later = world.fake.add_deployment(
        PROJECT, "production", pipeline, created=world.clock.now - timedelta(hours=2)
    )
    late_issue = world.fake.add_issue(PROJECT, "Later", created=world.clock.now - timedelta(hours=1))
    down = [True]

    def deployments_fail_after_their_first_page(path, query):
        if path.endswith("/deployments") and "updated_after" in query and down:
            return world.fake.error_response(500, "Internal Server Error")
        return None

    world.app = Recorder(world.fake, before=deployments_fail_after_their_first_page)
    world.scope.page_size = 1
    world.scope.save()
    assert world.sync().outcome == "failed"
    world.scope.refresh_from_db()
    assert world.scope.cursor == world.fake.deployments[first.id].updated
    stored = set(Artifact.objects.values_list("key", flat=True))
    assert f"{PROJECT} deployment {first.id}" in stored and issue.reference not in stored

    down.clear()
    assert world.sync().outcome == "success"
    assert {issue.reference, late_issue.reference, f"{PROJECT} deployment {later.id}"} <= set(
        Artifact.objects.values_list("key", flat=True)
    )


def test_bad_credentials_fail_the_run_with_authentication_failed(world):
    world.issue("One")
    world.connection.credentials = {"token": "wrong"}
    world.connection.save()
    result = world.sync()
    assert result.outcome == "failed"
    world.connection.refresh_from_db()
    assert world.connection.last_error.startswith("authentication failed")
    assert "401" in world.connection.last_error


def test_a_malformed_item_becomes_a_sync_error_while_the_others_land(world):
    issues = [world.issue(f"Issue {n}", hours_ago=4 - n) for n in range(4)]
    world.fake.malformed(issues[2].reference)
    result = world.sync()
    assert result.outcome == "partial"
    expected = [issue.reference for index, issue in enumerate(issues) if index != 2]
    assert sorted(Artifact.objects.values_list("key", flat=True)) == sorted(expected)
    error = SyncError.objects.get()
    assert (error.stage, error.item_key, error.external_id) == (
        "read",
        issues[2].reference,
        f"issue:{issues[2].id}",
    )
    assert error.payload["created_at"] == "not-a-date"


def test_a_429_during_a_sync_is_waited_out(world):
    world.issue("One")
    world.fake.rate_limit(1, retry_after=2)
    assert world.sync().outcome == "success"
    assert world.sleeps == [2]
