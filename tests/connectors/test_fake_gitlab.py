"""The fake GitLab speaks the real API's shapes, paging headers, filters, auth, writes and faults."""

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from connectors.fakes import gitlab as gitlab_module
from connectors.fakes.gitlab import DEMO_TOKEN, FakeGitLab
from connectors.fakes.wsgi import serve

START = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
PROJECT = "acme/shop"
ENCODED = "acme%2Fshop"
REST_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
GIT_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}")
# Field names of items recorded from gitlab.com (DevLake's GitLab e2e raw tables).
RECORDED_ISSUE_FIELDS = {
    "id", "iid", "project_id", "title", "description", "state", "created_at", "updated_at", "closed_at",
    "closed_by", "labels", "milestone", "assignees", "author", "type", "assignee", "user_notes_count",
    "merge_requests_count", "upvotes", "downvotes", "due_date", "confidential", "discussion_locked",
    "issue_type", "web_url", "time_stats", "task_completion_status", "weight", "blocking_issues_count",
    "has_tasks", "_links", "references", "severity", "moved_to_id", "service_desk_reply_to", "epic_iid",
    "epic", "iteration", "health_status",
}  # fmt: skip
RECORDED_PIPELINE_FIELDS = {
    "id", "iid", "project_id", "sha", "ref", "status", "source", "created_at", "updated_at", "web_url",
}  # fmt: skip
RECORDED_DEPLOYMENT_FIELDS = {
    "id", "iid", "ref", "sha", "created_at", "updated_at", "user", "environment", "deployable", "status",
}  # fmt: skip
RECORDED_DEPLOYABLE_FIELDS = {
    "id", "status", "stage", "name", "ref", "tag", "coverage", "allow_failure", "created_at", "started_at",
    "finished_at", "erased_at", "duration", "queued_duration", "user", "commit", "pipeline", "web_url",
    "project", "artifacts", "runner", "artifacts_expire_at", "tag_list",
}  # fmt: skip


class Clock:
    def __init__(self, instant: datetime):
        self.instant = instant

    def __call__(self) -> datetime:
        return self.instant


@pytest.fixture
def fake() -> FakeGitLab:
    fake = FakeGitLab(now=Clock(START))
    fake.add_project(PROJECT, created=START - timedelta(days=30))
    return fake


def client_for(fake: FakeGitLab, token: str = DEMO_TOKEN, **headers) -> httpx.Client:
    return httpx.Client(
        transport=httpx.WSGITransport(app=fake),
        base_url="https://gitlab.test/api/v4",
        headers={"PRIVATE-TOKEN": token, **headers} if token else headers,
    )


def control_client(fake: FakeGitLab) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=fake), base_url="https://gitlab.test/_fake")


def everything(fake: FakeGitLab):
    start = START - timedelta(days=2)
    issue = fake.add_issue(PROJECT, "Checkout", created=start, labels=["bug"])
    commit = fake.add_commit(
        PROJECT, "Fix checkout\n\nCloses #1", committed=datetime(2026, 2, 28, 8, 0, tzinfo=UTC).astimezone()
    )
    mr = fake.add_merge_request(
        PROJECT, "Fix", "fix", commits=[commit.sha], created=start + timedelta(hours=1)
    )
    pipeline = fake.add_pipeline(
        PROJECT,
        commit.sha,
        "main",
        created=start + timedelta(hours=2),
        started=start + timedelta(hours=2, minutes=1),
    )
    fake.set_pipeline_status(pipeline.id, "success", at=start + timedelta(hours=3))
    deployment = fake.add_deployment(PROJECT, "production", pipeline, created=start + timedelta(hours=4))
    return issue, commit, mr, pipeline, deployment


# Auth ----------------------------------------------------------------------------------------------------


def test_private_token_and_bearer_authenticate_and_anything_else_is_401(fake):
    assert client_for(fake).get("/user").json()["username"] == "vsm-demo"
    bearer = client_for(fake, token="", Authorization=f"Bearer {DEMO_TOKEN}")
    assert bearer.get("/user").status_code == 200
    for client in (client_for(fake, token="wrong"), client_for(fake, token="")):
        response = client.get(f"/projects/{ENCODED}/issues")
        assert (response.status_code, response.json()) == (401, {"message": "401 Unauthorized"})


def test_projects_answer_by_encoded_path_or_id_and_unknown_ones_404(fake):
    client = client_for(fake)
    project = client.get(f"/projects/{ENCODED}").json()
    assert project["path_with_namespace"] == PROJECT
    assert project["web_url"] == f"https://gitlab.test/{PROJECT}"
    assert client.get(f"/projects/{project['id']}").json()["id"] == project["id"]
    missing = client.get("/projects/acme%2Fnothing")
    assert (missing.status_code, missing.json()) == (404, {"message": "404 Project Not Found"})


# Shapes --------------------------------------------------------------------------------------------------


def test_items_have_the_recorded_shapes_and_time_formats(fake):
    _, commit, mr, pipeline, _ = everything(fake)
    client = client_for(fake)
    (issue_json,) = client.get(f"/projects/{ENCODED}/issues").json()
    assert set(issue_json) == RECORDED_ISSUE_FIELDS
    assert issue_json["references"]["full"] == f"{PROJECT}#1"
    assert issue_json["web_url"] == f"https://gitlab.test/{PROJECT}/-/issues/1"
    assert all(REST_TIME.fullmatch(issue_json[name]) for name in ("created_at", "updated_at"))
    assert issue_json["labels"] == ["bug"]

    (pipeline_json,) = client.get(f"/projects/{ENCODED}/pipelines").json()
    assert set(pipeline_json) == RECORDED_PIPELINE_FIELDS
    detail = client.get(f"/projects/{ENCODED}/pipelines/{pipeline.id}").json()
    assert (detail["started_at"], detail["finished_at"], detail["duration"]) == (
        "2026-02-27T12:31:00.000Z",
        "2026-02-27T13:30:00.000Z",
        3540,
    )

    (deployment_json,) = client.get(f"/projects/{ENCODED}/deployments").json()
    assert set(deployment_json) == RECORDED_DEPLOYMENT_FIELDS
    assert set(deployment_json["deployable"]) == RECORDED_DEPLOYABLE_FIELDS
    assert deployment_json["deployable"]["pipeline"]["id"] == pipeline.id
    assert deployment_json["environment"]["name"] == "production"

    (commit_json,) = client.get(f"/projects/{ENCODED}/repository/commits").json()
    assert commit_json["id"] == commit.sha and commit_json["short_id"] == commit.sha[:8]
    assert commit_json["title"] == "Fix checkout" and commit_json["message"].endswith("Closes #1")
    assert GIT_TIME.fullmatch(commit_json["committed_date"])

    mr_json = client.get(f"/projects/{ENCODED}/merge_requests/{mr.iid}").json()
    assert (mr_json["source_branch"], mr_json["target_branch"], mr_json["sha"]) == ("fix", "main", commit.sha)
    assert mr_json["references"]["full"] == f"{PROJECT}!1"
    (mr_commit,) = client.get(f"/projects/{ENCODED}/merge_requests/{mr.iid}/commits").json()
    assert mr_commit["id"] == commit.sha


def test_state_and_label_events_are_recorded_with_their_shapes(fake):
    issue = fake.add_issue(PROJECT, "Flow", created=START - timedelta(days=1), labels=["workflow::To Do"])
    fake.add_label(issue.reference, "workflow::Doing", at=START - timedelta(hours=5))
    fake.close(issue.reference, at=START - timedelta(hours=2))
    fake.reopen(issue.reference, at=START - timedelta(hours=1))
    client = client_for(fake)
    states = client.get(f"/projects/{ENCODED}/issues/1/resource_state_events").json()
    assert [(event["state"], event["created_at"], event["resource_type"]) for event in states] == [
        ("closed", "2026-03-01T08:30:00.000Z", "Issue"),
        ("reopened", "2026-03-01T09:30:00.000Z", "Issue"),
    ]
    assert states[0]["user"]["username"] == "vsm-demo" and states[0]["resource_id"] == issue.id
    labels = client.get(f"/projects/{ENCODED}/issues/1/resource_label_events").json()
    assert [(event["action"], event["label"]["name"]) for event in labels] == [
        ("add", "workflow::To Do"),
        ("remove", "workflow::To Do"),  # a scoped label replaces its scope's other label
        ("add", "workflow::Doing"),
    ]
    issue_json = client.get(f"/projects/{ENCODED}/issues/1").json()
    assert (issue_json["state"], issue_json["labels"], issue_json["closed_at"]) == (
        "opened",
        ["workflow::Doing"],
        None,
    )
    assert issue_json["updated_at"] == "2026-03-01T09:30:00.000Z"


def test_issue_links_show_on_both_issues_and_touch_them(fake):
    a = fake.add_issue(PROJECT, "A", created=START - timedelta(days=1))
    b = fake.add_issue(PROJECT, "B", created=START - timedelta(days=1))
    fake.link_issues(a.reference, b.reference, "blocks")
    client = client_for(fake)
    (from_a,) = client.get(f"/projects/{ENCODED}/issues/1/links").json()
    (from_b,) = client.get(f"/projects/{ENCODED}/issues/2/links").json()
    assert (from_a["iid"], from_a["link_type"]) == (2, "blocks")
    assert (from_b["iid"], from_b["link_type"]) == (1, "is_blocked_by")
    assert from_a["issue_link_id"] == from_b["issue_link_id"]
    assert a.updated == b.updated == START


# Paging and filters --------------------------------------------------------------------------------------


def test_offset_paging_headers_and_links(fake):
    for number in range(5):
        fake.add_issue(PROJECT, f"Issue {number}", created=START - timedelta(hours=5 - number))
    client = client_for(fake)
    first = client.get(f"/projects/{ENCODED}/issues", params={"per_page": 2, "order_by": "updated_at"})
    headers = first.headers
    assert (headers["x-page"], headers["x-per-page"], headers["x-next-page"], headers["x-prev-page"]) == (
        "1",
        "2",
        "2",
        "",
    )
    assert (headers["x-total"], headers["x-total-pages"]) == ("5", "3")
    assert set(first.links) == {"next", "first", "last"}
    next_url = first.links["next"]["url"]
    assert f"/projects/{ENCODED}/issues?" in next_url
    assert parse_qs(urlsplit(next_url).query)["order_by"] == ["updated_at"]
    last = client.get(first.links["last"]["url"])
    assert [issue["iid"] for issue in last.json()] == [1]  # newest first by default
    assert last.headers["x-next-page"] == "" and "next" not in last.links


def test_totals_are_left_out_for_huge_lists_and_always_for_commits(fake, monkeypatch):
    monkeypatch.setattr(gitlab_module, "TOTAL_HEADERS_LIMIT", 2)
    for number in range(3):
        fake.add_issue(PROJECT, f"Issue {number}")
        fake.add_commit(PROJECT, f"Commit {number}", committed=START - timedelta(hours=number))
    client = client_for(fake)
    for path in ("issues", "repository/commits"):
        response = client.get(f"/projects/{ENCODED}/{path}", params={"per_page": 2})
        assert "x-total" not in response.headers and "x-total-pages" not in response.headers
        assert "last" not in response.links and response.headers["x-next-page"] == "2"
    monkeypatch.setattr(gitlab_module, "TOTAL_HEADERS_LIMIT", 10_000)
    assert "x-total" not in client.get(f"/projects/{ENCODED}/repository/commits").headers


def test_ties_on_updated_at_are_broken_by_id_across_pages(fake):
    instant = START - timedelta(hours=1)
    for number in range(7):
        fake.add_issue(PROJECT, f"Issue {number}", created=instant)
    client = client_for(fake)
    seen = []
    for page in (1, 2, 3):
        response = client.get(
            f"/projects/{ENCODED}/issues",
            params={"order_by": "updated_at", "sort": "asc", "per_page": 3, "page": page},
        )
        seen += [issue["iid"] for issue in response.json()]
    assert seen == list(range(1, 8))


def test_updated_after_is_inclusive_for_issues_and_strict_for_pipelines(fake):
    instant = START - timedelta(hours=1)
    fake.add_issue(PROJECT, "At the instant", created=instant)
    commit = fake.add_commit(PROJECT, "C", committed=instant)
    fake.add_pipeline(PROJECT, commit.sha, "main", created=instant)
    client = client_for(fake)
    text = "2026-03-01T09:30:00.000Z"
    assert len(client.get(f"/projects/{ENCODED}/issues", params={"updated_after": text}).json()) == 1
    assert client.get(f"/projects/{ENCODED}/pipelines", params={"updated_after": text}).json() == []
    earlier = "2026-03-01T09:29:59.999Z"
    assert len(client.get(f"/projects/{ENCODED}/pipelines", params={"updated_after": earlier}).json()) == 1
    assert (
        len(
            client.get(
                f"/projects/{ENCODED}/issues", params={"updated_after": "2026-03-01T10:29:59+01:00"}
            ).json()
        )
        == 1
    )
    bad = client.get(f"/projects/{ENCODED}/issues", params={"updated_after": "yesterday"})
    assert (bad.status_code, bad.json()) == (400, {"error": "updated_after is invalid"})


def test_deployments_need_updated_at_order_with_an_updated_filter(fake):
    everything(fake)
    client = client_for(fake)
    refused = client.get(f"/projects/{ENCODED}/deployments", params={"updated_after": "2026-01-01T00:00:00Z"})
    assert refused.status_code == 400
    allowed = client.get(
        f"/projects/{ENCODED}/deployments",
        params={"updated_after": "2026-01-01T00:00:00Z", "order_by": "updated_at", "sort": "asc"},
    )
    assert len(allowed.json()) == 1


def test_commits_follow_since_and_branches(fake):
    fake.add_commit(PROJECT, "Old", committed=START - timedelta(days=3))
    on_main = fake.add_commit(PROJECT, "On main", committed=START - timedelta(hours=2))
    on_branch = fake.add_commit(PROJECT, "On branch", committed=START - timedelta(hours=1), ref="feature")
    client = client_for(fake)
    since = {"since": "2026-03-01T00:00:00Z"}
    listed = client.get(f"/projects/{ENCODED}/repository/commits", params=since).json()
    assert [commit["id"] for commit in listed] == [on_main.sha]
    every = client.get(f"/projects/{ENCODED}/repository/commits", params={**since, "all": "true"}).json()
    assert [commit["id"] for commit in every] == [on_branch.sha, on_main.sha]  # newest first
    branch = client.get(f"/projects/{ENCODED}/repository/commits", params={"ref_name": "feature"}).json()
    assert [commit["id"] for commit in branch] == [on_branch.sha]


# Writes --------------------------------------------------------------------------------------------------


def test_create_update_close_reopen_and_link_issues(fake):
    client = client_for(fake)
    created = client.post(f"/projects/{ENCODED}/issues", json={"title": "New", "labels": "a,b"})
    assert created.status_code == 201
    assert (created.json()["iid"], created.json()["labels"], created.json()["state"]) == (
        1,
        ["a", "b"],
        "opened",
    )
    missing = client.post(f"/projects/{ENCODED}/issues", json={"description": "no title"})
    assert (missing.status_code, missing.json()) == (400, {"error": "title is missing"})

    fake.now = lambda: START + timedelta(hours=1)
    updated = client.put(
        f"/projects/{ENCODED}/issues/1", json={"title": "Renamed", "add_labels": "c", "remove_labels": "a"}
    )
    assert (updated.status_code, updated.json()["title"], updated.json()["labels"]) == (
        200,
        "Renamed",
        ["b", "c"],
    )
    assert updated.json()["updated_at"] == "2026-03-01T11:30:00.000Z"
    closed = client.put(f"/projects/{ENCODED}/issues/1", json={"state_event": "close"}).json()
    assert (closed["state"], closed["closed_by"]["username"]) == ("closed", "vsm-demo")
    assert (
        client.put(f"/projects/{ENCODED}/issues/1", json={"state_event": "reopen"}).json()["state"]
        == "opened"
    )
    assert client.put(f"/projects/{ENCODED}/issues/1", json={"state_event": "nap"}).status_code == 400
    assert client.put(f"/projects/{ENCODED}/issues/1", json={}).status_code == 400
    assert client.put(f"/projects/{ENCODED}/issues/9", json={"title": "x"}).status_code == 404

    client.post(f"/projects/{ENCODED}/issues", json={"title": "Other"})
    body = {"target_project_id": PROJECT, "target_issue_iid": 2}
    linked = client.post(f"/projects/{ENCODED}/issues/1/links", json=body)
    assert (linked.status_code, linked.json()["link_type"]) == (201, "relates_to")
    again = client.post(f"/projects/{ENCODED}/issues/1/links", json=body)
    assert (again.status_code, again.json()) == (409, {"message": "Issue(s) already assigned"})
    assert [write.method for write in fake.writes] == ["POST", "PUT", "PUT", "PUT", "POST", "POST"]


# Faults --------------------------------------------------------------------------------------------------


def test_rate_limits_send_gitlab_headers_or_none(fake):
    client = client_for(fake)
    fake.rate_limit(1, retry_after=7)
    limited = client.get("/user")
    assert (limited.status_code, limited.text) == (429, "Retry later\n")
    assert limited.headers["retry-after"] == "7" and limited.headers["ratelimit-remaining"] == "0"
    assert int(limited.headers["ratelimit-reset"]) == int(START.timestamp()) + 7
    assert limited.headers["ratelimit-resettime"] == "Sun, 01 Mar 2026 10:30:07 GMT"
    fake.rate_limit(1, headers=False)
    bare = client.get("/user")
    assert (
        bare.status_code == 429
        and "retry-after" not in bare.headers
        and "ratelimit-reset" not in bare.headers
    )
    assert client.get("/user").status_code == 200


def test_failures_and_malformed_items(fake):
    issue = fake.add_issue(PROJECT, "Broken")
    client = client_for(fake)
    fake.fail(1, status=502)
    assert client.get("/user").status_code == 502
    fake.malformed(issue.reference)
    (rendered,) = client.get(f"/projects/{ENCODED}/issues").json()
    assert rendered["created_at"] == "not-a-date" and "state" not in rendered
    fake.clear_faults()
    assert client.get(f"/projects/{ENCODED}/issues").json()[0]["state"] == "opened"


# Control endpoints ---------------------------------------------------------------------------------------


def test_control_endpoints_seed_a_world_without_credentials(fake):
    control = control_client(fake)
    assert control.post("/projects", json={"path": "acme/api"}).status_code == 201
    issue = control.post(
        "/issues",
        json={
            "project": "acme/api",
            "title": "Seeded",
            "created": "2026-02-01T09:00:00+00:00",
            "state_events": [{"at": "2026-02-03T09:00:00+00:00", "state": "closed"}],
            "label_events": [
                {"at": "2026-02-02T09:00:00+00:00", "action": "add", "label": "workflow::Doing"}
            ],
        },
    )
    assert (issue.status_code, issue.json()["reference"]) == (201, "acme/api#1")
    sha = control.post(
        "/commits", json={"project": "acme/api", "message": "Work", "committed": "2026-02-02T10:00:00+02:00"}
    ).json()["id"]
    mr = control.post(
        "/merge_requests",
        json={
            "project": "acme/api",
            "title": "Work",
            "source_branch": "work",
            "commits": [sha],
            "created": "2026-02-02T11:00:00+00:00",
            "state_events": [{"at": "2026-02-02T12:00:00+00:00", "state": "merged"}],
        },
    ).json()
    pipeline = control.post(
        "/pipelines",
        json={"project": "acme/api", "sha": sha, "ref": "main", "created": "2026-02-02T12:01:00+00:00"},
    ).json()
    deployment = control.post(
        "/deployments",
        json={
            "project": "acme/api",
            "environment": "staging",
            "pipeline": pipeline["id"],
            "created": "2026-02-02T12:30:00+00:00",
        },
    )
    assert deployment.status_code == 201
    other = control.post("/issues", json={"project": "acme/api", "title": "Other"}).json()
    assert (
        control.post("/issue_links", json={"source": "acme/api#1", "target": other["reference"]}).status_code
        == 201
    )
    assert (
        control.post("/state_events", json={"reference": mr["reference"], "state": "closed"}).status_code
        == 405
    )
    assert control.post(
        "/label_events", json={"reference": "acme/api#2", "action": "add", "label": "x"}
    ).json() == {"labels": ["x"]}

    client = client_for(fake)
    seeded = client.get("/projects/acme%2Fapi/issues/1").json()
    assert (seeded["state"], seeded["labels"], seeded["created_at"]) == (
        "closed",
        ["workflow::Doing"],
        "2026-02-01T09:00:00.000Z",
    )
    assert client.get("/projects/acme%2Fapi/repository/commits").json()[0]["committed_date"] == (
        "2026-02-02T10:00:00.000+02:00"
    )
    assert client.get("/projects/acme%2Fapi/merge_requests/1").json()["state"] == "merged"

    stats = control.get("/stats").json()
    assert (stats["projects"], stats["issues"], stats["merge_requests"], stats["deployments"]) == (2, 2, 1, 1)
    assert stats["requests"]["GET issue"] == 1

    assert control.post("/faults", json={"rate_limit": {"count": 1, "headers": False}}).status_code == 200
    assert client.get("/user").status_code == 429 and fake.rate_limit_headers is False
    assert control.post("/faults", json={"malformed": ["acme/api#1"]}).status_code == 200
    assert client.get("/projects/acme%2Fapi/issues/1").json()["created_at"] == "not-a-date"
    assert control.post("/clock", json={"now": "2026-04-01T00:00:00+00:00"}).status_code == 200
    created = client.post("/projects/acme%2Fapi/issues", json={"title": "Dated"}).json()
    assert created["created_at"] == "2026-04-01T00:00:00.000Z"
    assert control.post("/issues", json={"project": "acme/api"}).status_code == 400
    assert control.post("/faults", json={"fail": {"count": "many"}}).status_code == 400

    assert control.post("/reset").json() == {"reset": True}
    assert control.get("/stats").json()["issues"] == 0 and fake.projects == {}
    assert client_for(fake).get("/user").status_code == 200  # the demo user survives a reset


def test_serve_mounts_the_fake_on_a_real_loopback_socket(fake):
    fake.add_issue(PROJECT, "Over the wire")
    with serve({"/gitlab": fake}) as server:
        base = server.url("/gitlab")
        response = httpx.get(
            f"{base}/api/v4/projects/{ENCODED}/issues/1", headers={"PRIVATE-TOKEN": DEMO_TOKEN}
        )
        listed = httpx.get(
            f"{base}/api/v4/projects/{ENCODED}/issues",
            params={"per_page": 1},
            headers={"PRIVATE-TOKEN": DEMO_TOKEN},
        )
    assert response.status_code == 200
    assert response.json()["web_url"] == f"{base}/{PROJECT}/-/issues/1"
    assert listed.links["first"]["url"].startswith(f"{base}/api/v4/projects/{ENCODED}/issues?")
    assert fake.label == "GitLab" and fake.credentials() == {"token": DEMO_TOKEN}
