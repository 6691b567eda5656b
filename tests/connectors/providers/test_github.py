"""The GitHub provider against the fake GitHub over httpx's WSGI transport, and the recorded payloads."""

import csv
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest

import connectors.providers.github  # noqa: F401  (registers the provider)
from connectors.base import ItemRef, ScopeSpec
from connectors.exceptions import AuthError, BadRequest, RateLimited
from connectors.fakes.github import FakeGitHub
from connectors.ingest import scope_sync
from connectors.models import Scope, SyncError, SyncRun, ToolConnection
from connectors.providers.github.items import (
    commit_to_item,
    format_github_time,
    issue_to_item,
    parse_scope,
    pull_to_item,
)
from connectors.selectors import connector_instance
from tests.factories import ProductFactory, map_types
from vsm.choices import FlowState, LinkKind
from vsm.models import Artifact, ArtifactLink, StateTransition

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REPO = "acme/shop"
TYPES = {"Issue": "defect", "PullRequest": "pull-request", "Commit": "commit", "Release": "release"}
STATUSES = {
    "open": FlowState.ACTIVE,
    "closed": FlowState.DONE,
    "merged": FlowState.DONE,
    "committed": FlowState.DONE,
    "draft": FlowState.NEW,
    "prerelease": FlowState.DONE,
    "published": FlowState.DONE,
}


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class RecordingTransport(httpx.WSGITransport):
    """The fake in-process, remembering each exchange as (method, URL, status)."""

    def __init__(self, app):
        super().__init__(app=app)
        self.exchanges: list[tuple[str, httpx.URL, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.exchanges.append((request.method, request.url, response.status_code))
        return response

    def params(self, path_end: str) -> list[dict[str, str]]:
        return [dict(url.params) for _, url, _ in self.exchanges if url.path.endswith(path_end)]


@dataclass
class GitHubWorld:
    fake: FakeGitHub
    clock: Clock
    connection: ToolConnection
    scope: Scope
    transport: RecordingTransport
    sleeps: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def connector(self, **credentials):
        if credentials:
            self.connection.credentials = credentials
        return connector_instance(self.connection, transport=self.transport, sleep=self.sleep)

    def sync(self):
        return scope_sync(self.scope.pk, transport=self.transport, sleep=self.sleep)

    def ago(self, **delta) -> datetime:
        return self.clock.now - timedelta(**delta)


def make_world(query: str = REPO, **options) -> GitHubWorld:
    clock = Clock(T0)
    fake = FakeGitHub(now=clock)
    fake.add_repo(REPO)
    connection = ToolConnection.objects.create(
        kind="github",
        name=f"GitHub {ToolConnection.objects.count() + 1}",
        base_url="https://api.github.example.test",
        options=options,
        credentials=fake.credentials(),
        requests_per_second=0,
    )
    map_types(connection, TYPES, STATUSES)
    scope = Scope.objects.create(
        connection=connection, name=query, query=query, product=ProductFactory(), page_size=7
    )
    return GitHubWorld(fake, clock, connection, scope, RecordingTransport(fake))


@pytest.fixture
def world(db) -> GitHubWorld:
    return make_world()


def read_all(connector, query=REPO, since=None, page_size=7):
    return list(connector.read_changes(ScopeSpec(query=query, page_size=page_size), since))


def items_of(pages):
    return [item for page in pages for item in page.items]


# Reading ---------------------------------------------------------------------------------------------


def test_check_connection_names_the_user(world):
    assert world.connector().check_connection() == "vsm-demo"
    method, _, status = world.transport.exchanges[0]
    assert (method, status) == ("GET", 200)


def test_the_provider_sends_githubs_headers(world):
    seen = []

    def capture(request):
        seen.append(request.headers)
        return httpx.Response(200, json={"login": "someone"})

    world.transport = httpx.MockTransport(capture)
    world.connector().check_connection()
    headers = seen[0]
    assert headers["authorization"] == "Bearer fake-github-token"
    assert headers["accept"] == "application/vnd.github+json"
    assert headers["x-github-api-version"] == "2022-11-28"
    assert headers["user-agent"]


def test_a_wrong_token_is_an_auth_error(world):
    with pytest.raises(AuthError, match="Bad credentials"):
        world.connector(token="wrong").check_connection()


def test_a_missing_token_says_what_is_needed(world):
    with pytest.raises(AuthError, match="access token"):
        world.connector(token="")


def test_a_wrong_token_fails_the_run_with_authentication_failed(world):
    world.fake.add_issue(REPO, "Bug")
    world.connection.credentials = {"token": "wrong"}
    world.connection.save()
    result = world.sync()
    assert result.outcome == "failed"
    world.connection.refresh_from_db()
    assert world.connection.last_error.startswith("authentication failed")
    assert "authentication failed" in SyncRun.objects.get(pk=result.run_id).message
    assert Artifact.objects.count() == 0


def test_paging_through_items_sharing_one_updated_second_skips_and_repeats_nothing(world):
    same = world.ago(hours=1)
    keys = [world.fake.add_issue(REPO, f"Bug {n}", created=same) for n in range(25)]
    pages = read_all(world.connector(), query=f"{REPO}:issues")
    assert [len(page.items) for page in pages] == [7, 7, 7, 4]
    read = [item.key for item in items_of(pages)]
    assert sorted(read) == sorted(keys) and len(set(read)) == 25
    # Each page is a GitHub page, the next one followed verbatim from the Link header.
    urls = [url for _, url, _ in world.transport.exchanges if "issues" in url.path]
    assert urls[0].path == "/repos/acme/shop/issues" and urls[1].path.startswith("/repositories/")
    assert {url.params["per_page"] for url in urls} == {"7"}


def test_since_is_sent_to_the_second_and_includes_that_second(world):
    old = world.fake.add_issue(REPO, "Old", created=world.ago(days=2))
    boundary = world.fake.add_issue(
        REPO, "At the boundary", created=datetime(2026, 3, 2, 8, 58, 30, tzinfo=UTC)
    )
    new = world.fake.add_issue(REPO, "New", created=world.ago(seconds=10))
    since = datetime(2026, 3, 2, 8, 58, 30, 750000, tzinfo=UTC)  # GitHub has no sub-second precision
    pages = read_all(world.connector(), query=f"{REPO}:issues", since=since)
    assert [item.key for item in items_of(pages)] == [boundary, new]
    (params,) = world.transport.params("/issues")
    assert params == {
        "state": "all",
        "sort": "updated",
        "direction": "asc",
        "per_page": "7",
        "since": "2026-03-02T08:58:30Z",
    }
    assert [item.key for item in items_of(read_all(world.connector(), query=f"{REPO}:issues"))] == [
        old,
        boundary,
        new,
    ]


def test_commits_are_read_with_a_look_back_and_releases_filtered_by_publication(world):
    old_sha = world.fake.add_commit(REPO, "Old work", at=world.ago(days=10))
    late_sha = world.fake.add_commit(REPO, "Made yesterday, pushed now", at=world.ago(hours=30))
    world.fake.add_release(REPO, "v0.9", created=world.ago(days=9))
    world.fake.add_release(REPO, "v1.0", target_commitish=late_sha, created=world.ago(hours=1))
    since = world.ago(hours=2)
    items = items_of(read_all(world.connector(), query=f"{REPO}:commits,releases", since=since))
    assert [item.key for item in items] == [late_sha, "v1.0"]
    assert world.transport.params("/commits")[0]["since"] == format_github_time(since - timedelta(hours=72))
    assert old_sha not in {item.key for item in items}
    release = items[1]
    assert (release.item_type, release.status, release.fields["tag_name"]) == ("Release", "published", "v1.0")
    assert [(link.kind, link.target_key, link.incoming) for link in release.links] == [
        ("released_in", late_sha, True)
    ]


def test_every_page_is_in_time_order_across_issues_commits_and_releases(world):
    for hours in range(20, 0, -1):
        world.fake.add_commit(REPO, f"Commit {hours}", at=world.ago(hours=hours, minutes=30))
        if hours % 3 == 0:
            world.fake.add_issue(REPO, f"Issue {hours}", created=world.ago(hours=hours))
        if hours % 7 == 0:
            world.fake.add_release(REPO, f"v{hours}", created=world.ago(hours=hours, minutes=10))
    pages = read_all(world.connector(), page_size=4)
    items = items_of(pages)
    assert Counter(item.item_type for item in items) == {"Commit": 20, "Issue": 6, "Release": 2}
    times = [item.updated for item in items]
    assert times == sorted(times)
    # Whatever a page's newest change, nothing still to come is older: the cursor is always safe.
    seen = 0
    for page in pages:
        seen += len(page.items)
        if page.items:
            assert all(item.updated >= max(i.updated for i in page.items) for item in items[seen:])


def test_a_commit_made_long_before_its_push_is_read_on_a_later_sync(world):
    world.fake.add_issue(REPO, "Bug", created=world.ago(minutes=5))
    assert world.sync().outcome == "success"
    sha = world.fake.add_commit(REPO, "Committed a day ago, pushed now", at=world.ago(days=1))
    world.clock.now += timedelta(minutes=10)
    assert world.sync().outcome == "success"
    assert Artifact.objects.filter(key=sha).exists()


def test_pull_requests_carry_branch_commits_and_links(world):
    first = world.fake.add_commit(REPO, "Add cart\n\nFor SHOP-12", at=world.ago(days=2))
    second = world.fake.add_commit(REPO, "Fix totals", at=world.ago(days=1))
    issue = world.fake.add_issue(REPO, "Totals are wrong", created=world.ago(days=3))
    pull = world.fake.add_pull(
        REPO,
        "SHOP-12 cart",
        f"Fixes #{issue.rsplit('#')[1]}",
        head="feature/SHOP-12-cart",
        commits=[first, second],
        created=world.ago(days=2),
        events=[(world.ago(hours=2), "merged")],
    )
    item = world.connector().read_item(pull, ScopeSpec(REPO))
    merge_sha = world.fake.repos[REPO].issues[2].merge_commit_sha
    assert (item.item_type, item.status, item.key) == ("PullRequest", "merged", pull)
    assert item.fields["source_branch"] == "feature/SHOP-12-cart" and item.fields["target_branch"] == "main"
    assert item.fields["commit_shas"] == [first, second]
    assert item.fields["merge_commit_sha"] == merge_sha
    assert item.fields["closes"] == [issue]
    assert [(link.kind, link.target_key) for link in item.links] == [
        ("committed_in", first),
        ("committed_in", second),
        ("committed_in", merge_sha),
        ("fixes", issue),
    ]
    assert [(c.from_status, c.to_status, c.at) for c in item.changelog] == [
        ("open", "merged", world.ago(hours=2))
    ]

    assert world.sync().outcome == "success"
    links = set(ArtifactLink.objects.filter(source__key=pull).values_list("kind", "target__key"))
    assert links == {
        (LinkKind.COMMITTED_IN, first),
        (LinkKind.COMMITTED_IN, second),
        (LinkKind.COMMITTED_IN, merge_sha),
        (LinkKind.FIXES, issue),
    }


def test_history_becomes_state_transitions_through_the_ingest(world):
    start = world.ago(days=10)
    bug = world.fake.add_issue(
        REPO,
        "Flaky checkout",
        created=start,
        events=[
            (start + timedelta(days=1), "closed"),
            (start + timedelta(days=2), "reopened", "vsm-demo"),
            (start + timedelta(days=4), "closed"),
        ],
    )
    pull = world.fake.add_pull(
        REPO, "Fix checkout", created=start, events=[(start + timedelta(days=3, hours=4), "merged")]
    )
    still_open = world.fake.add_issue(REPO, "Open", created=start)
    result = world.sync()
    assert result.outcome == "success" and result.counts["created"] == 4  # with the merge commit
    ledger = list(
        StateTransition.objects.filter(artifact__key=bug).values_list(
            "at", "from_status", "to_status", "author"
        )
    )
    assert ledger == [
        (start + timedelta(days=1), "open", "closed", "vsm-demo"),
        (start + timedelta(days=2), "closed", "open", "vsm-demo"),
        (start + timedelta(days=4), "open", "closed", "vsm-demo"),
    ]
    artifact = Artifact.objects.get(key=bug)
    assert artifact.flow_state == FlowState.DONE and artifact.done_at == start + timedelta(days=4)
    merged = Artifact.objects.get(key=pull)
    assert list(merged.transitions.values_list("to_status", "at")) == [
        ("merged", start + timedelta(days=3, hours=4))
    ]
    assert not Artifact.objects.get(key=still_open).transitions.exists()
    assert world.fake.requests["GET issue/events"] == 2  # only closed or reopened items ask for events


def test_history_from_dates_needs_no_event_requests(db):
    world = make_world(history="dates")
    start = world.ago(days=10)
    bug = world.fake.add_issue(
        REPO,
        "Bug",
        created=start,
        events=[
            (start + timedelta(days=1), "closed"),
            (start + timedelta(days=2), "reopened"),
            (start + timedelta(days=3), "closed"),
        ],
    )
    (item,) = items_of(read_all(world.connector(), query=f"{REPO}:issues"))
    assert item.key == bug
    assert [(c.from_status, c.to_status, c.at) for c in item.changelog] == [
        ("open", "closed", start + timedelta(days=3))
    ]
    assert world.fake.requests["GET issue/events"] == 0


def test_a_malformed_item_is_a_failure_and_the_others_land(world):
    keys = [world.fake.add_issue(REPO, f"Bug {n}", created=world.ago(hours=3 - n)) for n in range(3)]
    world.fake.malformed(keys[1])
    (page,) = read_all(world.connector(), query=f"{REPO}:issues")
    assert [item.key for item in page.items] == [keys[0], keys[2]]
    assert [failure.key for failure in page.failures] == [keys[1]]
    assert "cannot read" in page.failures[0].message

    result = world.sync()
    assert (result.outcome, result.counts["created"], result.counts["failed"]) == ("partial", 2, 1)
    assert list(SyncError.objects.values_list("item_key", flat=True)) == [keys[1]]
    assert set(Artifact.objects.values_list("key", flat=True)) == {keys[0], keys[2]}


def test_a_malformed_commit_is_a_failure_too(world):
    good = world.fake.add_commit(REPO, "Good", at=world.ago(hours=2))
    bad = world.fake.add_commit(REPO, "Bad", at=world.ago(hours=1))
    world.fake.malformed(bad)
    pages = read_all(world.connector(), query=f"{REPO}:commits")
    assert [item.key for item in items_of(pages)] == [good]
    assert [failure.key for page in pages for failure in page.failures] == [bad]


@pytest.mark.parametrize("status", [403, 429])
def test_a_rate_limit_is_waited_out(world, status):
    world.fake.add_issue(REPO, "Bug")
    world.fake.rate_limit(2, retry_after=3, status=status)
    assert len(items_of(read_all(world.connector(), query=f"{REPO}:issues"))) == 1
    assert len(world.sleeps) == 2
    # 429 names its wait (retry-after); 403 names the reset epoch second, up to a second more.
    assert all(3 <= seconds <= 4 for seconds in world.sleeps)
    assert [code for _, _, code in world.transport.exchanges] == [status, status, 200]


def test_a_rate_limit_through_the_ingest_is_waited_out(world):
    world.fake.add_issue(REPO, "Bug", created=world.ago(days=1), events=[(world.ago(hours=1), "closed")])
    world.fake.rate_limit(1, retry_after=5)
    assert world.sync().outcome == "success"
    assert len(world.sleeps) == 1 and 5 <= world.sleeps[0] <= 6


def test_a_long_rate_limit_is_raised_not_slept(world):
    world.fake.rate_limit(1, retry_after=3600)
    with pytest.raises(RateLimited):
        read_all(world.connector())
    assert world.sleeps == []


def test_list_ids_covers_the_scope(world):
    issue = world.fake.add_issue(REPO, "Bug")
    sha = world.fake.add_commit(REPO, "Work")
    pull = world.fake.add_pull(REPO, "Change", commits=[sha])
    connector = world.connector()
    by_key = {item.key: item.native_id for item in items_of(read_all(connector))}
    assert set(by_key) == {issue, sha, pull}
    assert set(connector.list_ids(ScopeSpec(f"{REPO}:issues,pulls,commits"))) == set(by_key.values())
    assert set(connector.list_ids(ScopeSpec(f"{REPO}:issues"))) == {by_key[issue]}
    assert set(connector.list_ids(ScopeSpec(f"{REPO}:pulls"))) == {by_key[pull]}


def test_read_item_reads_issues_commits_and_releases(world):
    sha = world.fake.add_commit(REPO, "First line\n\nMore")
    world.fake.add_release(REPO, "v 2.0", target_commitish="main")
    key = world.fake.add_issue(REPO, "Bug", "Body")
    connector = world.connector()
    issue = connector.read_item(key, ScopeSpec(REPO))
    assert (issue.item_type, issue.title, issue.status, issue.url) == (
        "Issue",
        "Bug",
        "open",
        f"https://api.github.example.test/{REPO}/issues/1",
    )
    commit = connector.read_item(sha, ScopeSpec(REPO))
    assert (commit.item_type, commit.title, commit.fields["message"]) == (
        "Commit",
        "First line",
        "First line\n\nMore",
    )
    assert commit.fields["author"] == "vsm-demo" and commit.fields["parents"] == []
    release = connector.read_item("v 2.0", ScopeSpec(REPO))
    assert (release.item_type, release.key, release.fields["target_commitish"]) == (
        "Release",
        "v 2.0",
        "main",
    )


def test_a_bad_scope_query_is_a_bad_request(world):
    for query in ("acme", "acme/shop:wiki", "a b/c"):
        with pytest.raises(BadRequest):
            read_all(world.connector(), query=query)
    assert parse_scope("acme/shop").kinds == {"issues", "pulls", "commits", "releases"}
    assert parse_scope("acme/shop: pulls ,commits").kinds == {"pulls", "commits"}


# Writing ---------------------------------------------------------------------------------------------


def test_create_update_and_transition_write_to_the_tool(world):
    connector = world.connector()
    item = connector.create_item(ScopeSpec(REPO), "Issue", {"summary": "From the portal", "labels": ["bug"]})
    assert (item.key, item.title, item.status, item.item_type) == (
        f"{REPO}#1",
        "From the portal",
        "open",
        "Issue",
    )
    assert world.transport.exchanges[-1][0::2] == ("POST", 201)
    ref = ItemRef(item.native_id, item.key)
    stored = world.fake.repos[REPO].issues[1]
    assert stored.labels == ["bug"]

    connector.update_item(ref, {"title": "Renamed", "description": "Details"})
    assert world.transport.exchanges[-1][0::2] == ("PATCH", 200)
    assert (stored.title, stored.body) == ("Renamed", "Details")

    world.clock.now += timedelta(minutes=5)
    connector.transition_item(ref, "Closed")
    assert (stored.state, stored.state_reason, stored.closed_at) == ("closed", "completed", world.clock.now)
    world.clock.now += timedelta(minutes=5)
    connector.transition_item(ref, "open")
    assert (stored.state, stored.state_reason, stored.closed_at) == ("open", "reopened", None)
    connector.transition_item(ref, "not_planned")
    assert (stored.state, stored.state_reason) == ("closed", "not_planned")
    assert [event.event for event in stored.events] == ["labeled", "renamed", "closed", "reopened", "closed"]
    assert [write.method for write in world.fake.writes] == ["POST", "PATCH", "PATCH", "PATCH", "PATCH"]

    reread = connector.read_item(item.key, ScopeSpec(REPO))
    assert [(c.from_status, c.to_status) for c in reread.changelog] == [
        ("open", "closed"),
        ("closed", "open"),
        ("open", "closed"),
    ]


def test_writes_refuse_what_github_cannot_do(world):
    connector = world.connector()
    key = world.fake.add_issue(REPO, "Bug")
    ref = ItemRef("", key)
    with pytest.raises(BadRequest, match="merged"):
        connector.transition_item(ref, "merged")
    with pytest.raises(BadRequest, match="priority"):
        connector.update_item(ref, {"priority": "High"})
    with pytest.raises(BadRequest, match="only issues"):
        connector.create_item(ScopeSpec(REPO), "PullRequest", {"title": "No"})
    with pytest.raises(BadRequest, match="owner/repo#number"):
        connector.update_item(ItemRef("", "not-a-key"), {"title": "x"})
    with pytest.raises(BadRequest, match="Validation Failed"):
        connector.update_item(ref, {"title": ""})
    assert world.fake.writes == []


def test_a_merged_pull_request_cannot_be_reopened(world):
    pull = world.fake.add_pull(REPO, "Change", events=[(world.ago(hours=1), "merged")])
    with pytest.raises(BadRequest, match="cannot be reopened"):
        world.connector().transition_item(ItemRef("", pull), "open")


# Recorded payloads (DevLake raw tables from github.com, panjf2000/ants) --------------------------------

RECORDED_REPO = "panjf2000/ants"


def recorded_rows(fixtures_dir, name):
    csv.field_size_limit(10**8)
    with (fixtures_dir / "devlake-raw" / "github" / name).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_every_recorded_issue_normalises_with_the_right_type(fixtures_dir):
    payloads = [json.loads(row["data"]) for row in recorded_rows(fixtures_dir, "_raw_github_api_issues.csv")]
    expected = Counter("PullRequest" if "pull_request" in payload else "Issue" for payload in payloads)
    items = [issue_to_item(payload, RECORDED_REPO) for payload in payloads]
    assert Counter(item.item_type for item in items) == expected
    assert expected == {"Issue": 26, "PullRequest": 16} and len(items) == 42
    for payload, item in zip(payloads, items, strict=True):
        assert item.key == f"{RECORDED_REPO}#{payload['number']}"
        assert item.native_id == payload["node_id"] and item.url == payload["html_url"]
        assert item.created <= item.updated and item.created.tzinfo is not None
        merged = (payload.get("pull_request") or {}).get("merged_at")
        assert item.status == ("merged" if merged else payload["state"])
        if payload["closed_at"]:
            assert item.changelog[-1].to_status == item.status
            assert item.changelog[-1].at.isoformat().replace("+00:00", "Z") == (
                merged or payload["closed_at"]
            )


def commits_by_pull(fixtures_dir):
    """Recorded PR commits grouped per PR: `input` names the PR ({"Number", "GithubId"}), `params` the
    connection and repository it was collected for."""
    groups = defaultdict(list)
    for row in recorded_rows(fixtures_dir, "_raw_github_api_pull_request_commits.csv"):
        groups[(row["params"], json.loads(row["input"])["Number"])].append(json.loads(row["data"]))
    return groups


def test_every_recorded_pull_request_and_commit_normalises(fixtures_dir):
    pulls = [
        json.loads(row["data"]) for row in recorded_rows(fixtures_dir, "_raw_github_api_pull_requests.csv")
    ]
    assert len(pulls) == 50
    items = [pull_to_item(pull, RECORDED_REPO) for pull in pulls]
    assert all(item.item_type == "PullRequest" for item in items)
    assert Counter(item.status for item in items) == Counter(
        "merged" if pull["merged_at"] else pull["state"] for pull in pulls
    )
    for pull, item in zip(pulls, items, strict=True):
        assert item.fields["source_branch"] == pull["head"]["ref"]
        assert item.fields["merge_commit_sha"] == pull["merge_commit_sha"]
        assert item.native_id == pull["node_id"]

    commit_rows = recorded_rows(fixtures_dir, "_raw_github_api_pull_request_commits.csv")
    for row in commit_rows:
        payload = json.loads(row["data"])
        commit = commit_to_item(payload, RECORDED_REPO)
        assert commit.key == payload["sha"] and commit.item_type == "Commit"
        assert commit.title == payload["commit"]["message"].split("\n")[0].strip()
        assert commit.fields["parents"] == [parent["sha"] for parent in payload["parents"]]


def test_each_recorded_pull_request_references_exactly_its_recorded_commits(fixtures_dir):
    pulls = {}
    for row in recorded_rows(fixtures_dir, "_raw_github_api_pull_requests.csv"):
        pull = json.loads(row["data"])
        pulls[pull["number"]] = pull
    groups = commits_by_pull(fixtures_dir)
    total = 0
    for (_, number), commits in groups.items():
        pull = pulls[number]
        item = pull_to_item(pull, RECORDED_REPO, commits=commits)
        committed = [link.target_key for link in item.links if link.kind == "committed_in"]
        shas = [commit["sha"] for commit in commits]
        # A merged pull request also names its merge commit, unless it is one of its own (rebased).
        merge = (
            [pull["merge_commit_sha"]] if pull["merged_at"] and pull["merge_commit_sha"] not in shas else []
        )
        assert len(item.fields["commit_shas"]) == len(commits), number
        assert committed == shas + merge, number
        total += len(shas)
    assert total == len(recorded_rows(fixtures_dir, "_raw_github_api_pull_request_commits.csv")) == 91


def test_recorded_issue_and_pull_shapes_of_one_pull_request_agree(fixtures_dir):
    issues = {
        json.loads(row["data"])["number"]: json.loads(row["data"])
        for row in recorded_rows(fixtures_dir, "_raw_github_api_issues.csv")
    }
    for row in recorded_rows(fixtures_dir, "_raw_github_api_pull_requests.csv"):
        pull = json.loads(row["data"])
        if pull["number"] in issues:
            from_issue = issue_to_item(issues[pull["number"]], RECORDED_REPO)
            both = issue_to_item(issues[pull["number"]], RECORDED_REPO, pull=pull)
            assert from_issue.native_id == both.native_id == pull_to_item(pull, RECORDED_REPO).native_id
            assert (from_issue.status, from_issue.updated) == (both.status, both.updated)


# Merge commits and release ranges --------------------------------------------------------------------


def pull_payload(**changes):
    payload = {
        "number": 7,
        "node_id": "PR_7",
        "html_url": f"https://github.example/{REPO}/pull/7",
        "state": "closed",
        "created_at": "2026-03-01T10:00:00Z",
        "updated_at": "2026-03-01T12:00:00Z",
        "merged_at": "2026-03-01T12:00:00Z",
        "head": {"ref": "feature", "sha": "a" * 40},
        "base": {"ref": "main", "sha": "b" * 40},
        "merge_commit_sha": "c" * 40,
    }
    return {**payload, **changes}


def committed(item):
    return [(link.target_key, link.description) for link in item.links if link.kind == "committed_in"]


def test_a_merged_pull_request_links_its_merge_commit_once():
    commits = [{"sha": "a" * 40, "commit": {"message": "Work"}}]
    merged = pull_to_item(pull_payload(), REPO, commits=commits)
    assert committed(merged) == [
        ("a" * 40, "commit of the pull request"),
        ("c" * 40, "merge commit of the pull request"),
    ]
    # Rebased or fast-forwarded: the merge commit is one of its own commits, linked once.
    rebased = pull_to_item(pull_payload(merge_commit_sha="a" * 40), REPO, commits=commits)
    assert committed(rebased) == [("a" * 40, "commit of the pull request")]
    # An open pull request's merge_commit_sha is GitHub's test merge: not linked.
    still_open = pull_to_item(pull_payload(state="open", merged_at=None), REPO, commits=commits)
    assert committed(still_open) == [("a" * 40, "commit of the pull request")]
    closed_unmerged = pull_to_item(pull_payload(merged_at=None), REPO, commits=commits)
    assert committed(closed_unmerged) == [("a" * 40, "commit of the pull request")]


def released(item):
    return [link.target_key for link in item.links if link.kind == "released_in" and link.incoming]


def releases_by_tag(world, **read):
    items = items_of(read_all(world.connector(), query=f"{REPO}:releases", **read))
    return {item.key: item for item in items}


def test_the_second_release_links_exactly_the_commits_after_the_first_tag(world):
    first = [world.fake.add_commit(REPO, f"Early {n}", at=world.ago(days=10, hours=n)) for n in (2, 1)]
    world.fake.add_release(REPO, "v1.0", created=world.ago(days=9))
    later = [world.fake.add_commit(REPO, f"Later {n}", at=world.ago(days=5, hours=n)) for n in (3, 2, 1)]
    world.fake.add_release(REPO, "v1.1", created=world.ago(days=4))
    world.fake.add_commit(REPO, "Not released yet", at=world.ago(days=1))

    releases = releases_by_tag(world)
    assert released(releases["v1.1"]) == later  # oldest first, neither v1.0's commits nor unreleased ones
    assert releases["v1.1"].fields["previous_tag"] == "v1.0"
    assert {link.description for link in releases["v1.1"].links} == {"released since v1.0"}
    assert released(releases["v1.0"]) == first[::-1]  # the first release: its tag's whole history
    assert releases["v1.0"].fields["previous_tag"] is None
    (compare,) = [url for _, url, _ in world.transport.exchanges if "/compare/" in url.path]
    assert compare.path == f"/repos/{REPO}/compare/v1.0...v1.1" and compare.params["per_page"] == "100"

    assert world.sync().outcome == "success"
    shipped = ArtifactLink.objects.filter(kind=LinkKind.RELEASED_IN, target__key="v1.1")
    assert set(shipped.values_list("source__key", flat=True)) == set(later)


def test_releases_are_ordered_by_created_at_not_by_listing_and_drafts_are_skipped(world):
    base = world.fake.add_commit(REPO, "Base", at=world.ago(days=10))
    world.fake.add_release(REPO, "v1", created=world.ago(days=9))
    middle = world.fake.add_commit(REPO, "Middle", at=world.ago(days=8))
    world.fake.add_release(REPO, "v2-rc1", created=world.ago(days=7), prerelease=True)
    world.fake.add_release(REPO, "v2-draft", target_commitish=middle, created=world.ago(days=6), draft=True)
    top = world.fake.add_commit(REPO, "Top", at=world.ago(days=5))
    world.fake.add_release(REPO, "v2", target_commitish=top, created=world.ago(days=4))
    releases = releases_by_tag(world)
    assert released(releases["v1"]) == [base]
    assert released(releases["v2-rc1"]) == [middle]  # a prerelease is a previous release too
    assert released(releases["v2"]) == [top]  # the target link, not repeated by the range
    assert releases["v2"].fields["previous_tag"] == "v2-rc1"
    assert released(releases["v2-draft"]) == [middle]  # a draft: only its full-SHA target, as before
    assert "previous_tag" not in releases["v2-draft"].fields


def test_a_first_release_links_only_its_target_with_the_target_option(db):
    world = make_world(first_release="target")
    world.fake.add_commit(REPO, "Old", at=world.ago(days=3))
    tagged = world.fake.add_commit(REPO, "Tagged", at=world.ago(days=2))
    world.fake.add_release(REPO, "v1", created=world.ago(days=1))
    (release,) = releases_by_tag(world).values()
    assert released(release) == [tagged] and release.fields["previous_tag"] is None
    assert [url.path for _, url, _ in world.transport.exchanges][-1] == f"/repos/{REPO}/commits/v1"


def test_an_unknown_first_release_option_is_a_bad_request(db):
    world = make_world(first_release="everything")
    with pytest.raises(BadRequest, match="first_release"):
        world.connector()


def test_only_releases_changed_since_read_their_range_against_any_earlier_release(world):
    world.fake.add_commit(REPO, "Old", at=world.ago(days=10))
    world.fake.add_release(REPO, "v1", created=world.ago(days=9))
    new = world.fake.add_commit(REPO, "New", at=world.ago(hours=3))
    world.fake.add_release(REPO, "v2", created=world.ago(hours=2))
    releases = releases_by_tag(world, since=world.ago(hours=2))
    assert list(releases) == ["v2"] and released(releases["v2"]) == [new]
    assert world.fake.requests["GET compare"] == 1 and world.fake.requests["GET commits"] == 0


def test_compare_pages_are_followed_and_every_commit_is_linked(world):
    world.fake.add_commit(REPO, "Base", at=world.ago(days=10))
    world.fake.add_release(REPO, "v1", created=world.ago(days=9))
    shas = [world.fake.add_commit(REPO, f"Work {n}", at=world.ago(days=8, minutes=-n)) for n in range(260)]
    world.fake.add_release(REPO, "v2", created=world.ago(days=1))
    release = world.connector().read_item("v2", ScopeSpec(REPO))
    assert released(release) == shas and release.fields["released_commit_shas"] == shas
    pages = [url for _, url, _ in world.transport.exchanges if "/compare/" in url.path]
    assert [url.params.get("page", "1") for url in pages] == ["1", "2", "3"]
    assert pages[1].path.startswith("/repositories/")  # the Link header, followed verbatim


class ShortCompare(httpx.BaseTransport):
    """The fake, but comparisons claim one more commit than they list and offer no next page."""

    def __init__(self, inner):
        self.inner = inner

    def handle_request(self, request):
        response = self.inner.handle_request(request)
        if "/compare/" not in request.url.path:
            return response
        response.read()
        body = response.json()
        body["total_commits"] += 1
        return httpx.Response(response.status_code, json=body, request=request)


def test_a_comparison_listing_fewer_than_its_total_is_a_failure_not_a_silent_cut(world):
    world.fake.add_commit(REPO, "Base", at=world.ago(days=10))
    world.fake.add_release(REPO, "v1", created=world.ago(days=9))
    world.fake.add_commit(REPO, "Work", at=world.ago(days=8))
    world.fake.add_release(REPO, "v2", created=world.ago(days=7))
    world.transport = ShortCompare(world.transport)
    pages = read_all(world.connector(), query=f"{REPO}:releases")
    assert [item.key for item in items_of(pages)] == ["v1"]
    (failure,) = [failure for page in pages for failure in page.failures]
    assert failure.key == "v2" and "listed 1 of 2 commits" in failure.message


def test_a_release_whose_tags_cannot_be_resolved_is_a_failure_and_the_others_land(world):
    world.fake.add_release(REPO, "v0", created=world.ago(days=20))  # made before any commit: no tag
    world.fake.add_commit(REPO, "Work", at=world.ago(days=10))
    world.fake.add_release(REPO, "v1", created=world.ago(days=9))
    world.fake.add_issue(REPO, "Bug", created=world.ago(days=1))
    pages = read_all(world.connector(), query=f"{REPO}:issues,releases")
    assert sorted(item.key for item in items_of(pages)) == [f"{REPO}#1"]
    failures = {failure.key: failure.message for page in pages for failure in page.failures}
    assert set(failures) == {"v0", "v1"} and all("404" in message for message in failures.values())
