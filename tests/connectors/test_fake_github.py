"""The fake GitHub speaks the real API's shapes, paging, auth, rate limits, writes and faults."""

import base64
import csv
import json
import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from connectors.fakes.github import DEMO_TOKEN, FakeGitHub, GitHubError
from connectors.fakes.wsgi import serve

START = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
GITHUB_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")
REPO = "acme/shop"


class Clock:
    def __init__(self, instant: datetime):
        self.instant = instant

    def __call__(self) -> datetime:
        return self.instant


@pytest.fixture
def clock():
    return Clock(START)


@pytest.fixture
def fake(clock):
    fake = FakeGitHub(now=clock)
    fake.add_repo(REPO)
    return fake


def client_for(fake, token: str | None = DEMO_TOKEN, scheme: str = "Bearer") -> httpx.Client:
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    if token is not None:
        headers["Authorization"] = f"{scheme} {token}"
    return httpx.Client(
        transport=httpx.WSGITransport(app=fake), base_url="https://api.github.test", headers=headers
    )


@pytest.fixture
def client(fake):
    return client_for(fake)


def follow(client, url, params=None) -> tuple[list, list[httpx.Response]]:
    values, responses = [], []
    while url:
        response = client.get(url, params=params)
        assert response.status_code == 200, response.text
        responses.append(response)
        values += response.json()
        url, params = response.links.get("next", {}).get("url"), None
    return values, responses


def assert_github_error(response, status, message=None):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["documentation_url"].startswith("https://docs.github.com") and body["status"] == str(status)
    if message:
        assert body["message"] == message
    return body


# Shapes ----------------------------------------------------------------------------------------------


def test_issue_pull_commit_and_release_shapes(fake, client, clock):
    sha = fake.add_commit(REPO, "Add cart\n\nDetails")
    issue = fake.add_issue(REPO, "Bug", "Broken", labels=["bug"])
    pull = fake.add_pull(REPO, "Cart", "Fixes #1", head="cart", commits=[sha])
    fake.add_release(REPO, "v1.0", target_commitish=sha)

    listed = client.get(f"/repos/{REPO}/issues", params={"state": "all"}).json()
    by_number = {item["number"]: item for item in listed}
    assert "pull_request" not in by_number[1] and by_number[1]["labels"][0]["name"] == "bug"
    assert by_number[2]["pull_request"]["merged_at"] is None and by_number[2]["draft"] is False
    assert base64.b64decode(by_number[1]["node_id"]).startswith(b"05:Issue")
    single_pull = client.get(f"/repos/{REPO}/pulls/2").json()
    assert single_pull["node_id"] == by_number[2]["node_id"]  # one id for both shapes
    assert base64.b64decode(single_pull["node_id"]).startswith(b"011:PullRequest")
    assert single_pull["id"] != by_number[2]["id"]
    assert (single_pull["head"]["ref"], single_pull["head"]["sha"], single_pull["base"]["ref"]) == (
        "cart",
        sha,
        "main",
    )
    assert single_pull["commits"] == 1 and single_pull["merged"] is False
    for stamp in (by_number[1]["created_at"], by_number[1]["updated_at"], single_pull["created_at"]):
        assert GITHUB_TIME.fullmatch(stamp)
    assert by_number[1]["created_at"] == "2026-03-01T10:30:00Z"

    (commit,) = client.get(f"/repos/{REPO}/pulls/2/commits").json()
    assert commit["sha"] == sha and commit["commit"]["message"] == "Add cart\n\nDetails"
    assert GITHUB_TIME.fullmatch(commit["commit"]["committer"]["date"])
    assert commit["author"]["login"] == "vsm-demo"
    (release,) = client.get(f"/repos/{REPO}/releases").json()
    assert (release["tag_name"], release["target_commitish"], release["draft"]) == ("v1.0", sha, False)
    assert GITHUB_TIME.fullmatch(release["published_at"])
    assert issue.endswith("#1") and pull.endswith("#2")
    assert client.get(f"/repos/{REPO}/pulls/1").status_code == 404  # an issue is not a pull


def test_shapes_match_the_recorded_payloads(fake, client, fixtures_dir):
    csv.field_size_limit(10**8)

    def recorded(name):
        path = fixtures_dir / "devlake-raw" / "github" / name
        with path.open(newline="", encoding="utf-8") as handle:
            return json.loads(next(csv.DictReader(handle))["data"])

    sha = fake.add_commit(REPO, "Work")
    fake.add_pull(REPO, "Cart", commits=[sha], events=[(START + timedelta(hours=1), "merged")])
    fake.add_issue(REPO, "Bug")
    issues = client.get(f"/repos/{REPO}/issues", params={"state": "all", "sort": "created"}).json()
    recorded_issue = recorded("_raw_github_api_issues.csv")  # a pull request in the issue shape
    assert set(recorded_issue) <= set(issues[1]) | {"closed_by"}
    pulls = client.get(f"/repos/{REPO}/pulls", params={"state": "all"}).json()
    assert set(recorded("_raw_github_api_pull_requests.csv")) == set(pulls[0])
    assert set(recorded("_raw_github_api_pull_request_commits.csv")) == set(
        client.get(f"/repos/{REPO}/commits").json()[0]
    )


def test_merging_records_merged_then_closed_and_a_merge_commit(fake, client):
    pull = fake.add_pull(REPO, "Cart")
    fake.merge(pull, START + timedelta(hours=2))
    events = client.get(f"/repos/{REPO}/issues/1/events").json()
    assert [event["event"] for event in events] == ["merged", "closed"]
    assert events[0]["created_at"] == events[1]["created_at"] == "2026-03-01T12:30:00Z"
    single = client.get(f"/repos/{REPO}/pulls/1").json()
    assert single["merged"] is True and single["merge_commit_sha"] == events[0]["commit_id"]
    assert client.get(f"/repos/{REPO}/commits/{single['merge_commit_sha']}").json()["stats"]
    with pytest.raises(ValueError, match="cannot be reopened"):
        fake.reopen(pull)


# Paging and queries ------------------------------------------------------------------------------------


def test_link_paging_with_equal_timestamps_neither_skips_nor_repeats(fake, client):
    for number in range(23):
        fake.add_issue(REPO, f"Bug {number}")  # all at START
    params = {"state": "all", "sort": "updated", "direction": "asc", "per_page": 5}
    issues, responses = follow(client, f"/repos/{REPO}/issues", params)
    assert [issue["number"] for issue in issues] == list(range(1, 24))
    assert [len(response.json()) for response in responses] == [5, 5, 5, 5, 3]
    first, middle, last = responses[0].links, responses[2].links, responses[-1].links
    assert set(first) == {"next", "last"} and set(middle) == {"prev", "next", "last", "first"}
    assert "next" not in last
    assert "/repositories/" in first["next"]["url"] and "page=5" in first["last"]["url"]


def test_per_page_is_capped_at_100_and_defaults_to_30(fake, client):
    for number in range(105):
        fake.add_issue(REPO, f"Bug {number}")
    assert len(client.get(f"/repos/{REPO}/issues", params={"per_page": 500}).json()) == 100
    assert len(client.get(f"/repos/{REPO}/issues").json()) == 30


def test_since_keeps_updated_at_or_after_and_invalid_since_is_422(fake, client, clock):
    fake.add_issue(REPO, "Old", created=START - timedelta(days=1))
    fake.add_issue(REPO, "Exact")
    fake.add_issue(REPO, "New", created=START + timedelta(seconds=1))
    titles = [
        issue["title"]
        for issue in client.get(
            f"/repos/{REPO}/issues",
            params={"state": "all", "since": "2026-03-01T10:30:00Z", "sort": "updated", "direction": "asc"},
        ).json()
    ]
    assert titles == ["Exact", "New"]
    assert_github_error(
        client.get(f"/repos/{REPO}/issues", params={"since": "yesterday"}), 422, "Validation Failed"
    )


def test_state_filter_defaults_to_open(fake, client):
    fake.add_issue(REPO, "Open")
    closed = fake.add_issue(REPO, "Closed")
    fake.close(closed, START + timedelta(hours=1))
    assert [i["title"] for i in client.get(f"/repos/{REPO}/issues").json()] == ["Open"]
    assert [i["title"] for i in client.get(f"/repos/{REPO}/issues", params={"state": "closed"}).json()] == [
        "Closed"
    ]


def test_commits_are_newest_first_and_filtered_by_since(fake, client):
    shas = [fake.add_commit(REPO, f"Commit {n}", at=START + timedelta(hours=n)) for n in range(5)]
    listed = client.get(f"/repos/{REPO}/commits", params={"since": "2026-03-01T12:30:00Z"}).json()
    assert [commit["sha"] for commit in listed] == shas[:1:-1]
    assert listed[-1]["parents"][0]["sha"] == shas[1]


def test_compare_lists_what_head_has_and_base_lacks_oldest_first(fake, client):
    root = fake.add_commit(REPO, "Root", at=START - timedelta(days=5))
    fake.add_release(REPO, "v1", created=START - timedelta(days=4))  # the branch's newest commit then
    ahead = [fake.add_commit(REPO, f"Ahead {n}", at=START - timedelta(days=3 - n)) for n in range(3)]
    fake.add_release(REPO, "v2", target_commitish=ahead[1], created=START - timedelta(days=1))
    response = client.get(f"/repos/{REPO}/compare/v1...v2")
    assert response.status_code == 200 and "link" not in response.headers
    body = response.json()
    assert {
        "url",
        "html_url",
        "permalink_url",
        "diff_url",
        "patch_url",
        "base_commit",
        "merge_base_commit",
        "status",
        "ahead_by",
        "behind_by",
        "total_commits",
        "commits",
        "files",
    } <= set(body)
    assert (body["status"], body["ahead_by"], body["behind_by"], body["total_commits"]) == ("ahead", 2, 0, 2)
    assert [commit["sha"] for commit in body["commits"]] == ahead[:2]
    assert body["base_commit"]["sha"] == body["merge_base_commit"]["sha"] == root
    assert set(body["commits"][0]) == set(client.get(f"/repos/{REPO}/commits").json()[0])
    assert body["url"].endswith(f"/repos/{REPO}/compare/v1...v2")

    behind = client.get(f"/repos/{REPO}/compare/main...{root[:7]}").json()
    assert (behind["status"], behind["ahead_by"], behind["behind_by"], behind["commits"]) == (
        "behind",
        0,
        3,
        [],
    )
    same = client.get(f"/repos/{REPO}/compare/{ahead[1]}...v2").json()
    assert (same["status"], same["total_commits"]) == ("identical", 0)
    # A side branch off the root: diverged, with the root as merge base.
    side = fake.add_commit(REPO, "Side", at=START, parents=[root])
    diverged = client.get(f"/repos/{REPO}/compare/v2...{side}").json()
    assert (diverged["status"], diverged["ahead_by"], diverged["behind_by"]) == ("diverged", 1, 2)
    assert diverged["merge_base_commit"]["sha"] == root


def test_compare_pages_with_link_headers_and_caps_an_unpaged_answer_at_250(fake, client):
    base = fake.add_commit(REPO, "Base", at=START - timedelta(days=1))
    shas = [fake.add_commit(REPO, f"Work {n}", at=START + timedelta(minutes=n)) for n in range(260)]
    unpaged = client.get(f"/repos/{REPO}/compare/{base}...main")
    assert "link" not in unpaged.headers
    body = unpaged.json()
    assert body["total_commits"] == 260 and [c["sha"] for c in body["commits"]] == shas[10:]  # newest last
    listed, pages = [], []
    url, params = f"/repos/{REPO}/compare/{base}...main", {"per_page": 100}
    while url:
        response = client.get(url, params=params)
        assert response.status_code == 200
        pages.append(response)
        listed += [commit["sha"] for commit in response.json()["commits"]]
        url, params = response.links.get("next", {}).get("url"), None
    assert listed == shas and [len(page.json()["commits"]) for page in pages] == [100, 100, 60]
    assert all(page.json()["total_commits"] == 260 for page in pages)
    assert "/repositories/" in pages[0].links["next"]["url"] and "page=3" in pages[0].links["last"]["url"]
    assert len(client.get(f"/repos/{REPO}/compare/{base}...main", params={"page": 2}).json()["commits"]) == 30


def test_compare_and_commit_history_answer_404_for_unknown_refs(fake, client):
    sha = fake.add_commit(REPO, "Work")
    fake.add_release(REPO, "v1", target_commitish=sha)
    fake.add_release(REPO, "v2-draft", target_commitish=sha, draft=True)  # a draft has no tag yet
    for basehead in (f"nope...{sha}", f"{sha}...nope", f"v2-draft...{sha}", f"{sha}..{sha}", "v1"):
        assert_github_error(client.get(f"/repos/{REPO}/compare/{basehead}"), 404, "Not Found")
    assert client.get(f"/repos/{REPO}/compare/v1...main").json()["status"] == "identical"
    assert_github_error(client.get(f"/repos/{REPO}/commits", params={"sha": "nope"}), 404, "Not Found")
    assert client.get(f"/repos/{REPO}/commits/v1").json()["sha"] == sha
    assert client.get(f"/repos/{REPO}/commits/nope").status_code == 422
    unrelated = fake.add_commit(REPO, "Orphan", parents=[])
    assert_github_error(client.get(f"/repos/{REPO}/compare/{sha}...{unrelated}"), 404)


def test_commit_history_of_a_ref_and_release_tags_fixed_when_made(fake, client, clock):
    first = fake.add_commit(REPO, "First", at=START - timedelta(hours=3))
    second = fake.add_commit(REPO, "Second", at=START - timedelta(hours=2))
    fake.add_release(REPO, "v1", created=START - timedelta(hours=2))
    fake.add_commit(REPO, "Third", at=START - timedelta(hours=1))
    history = client.get(f"/repos/{REPO}/commits", params={"sha": "v1"}).json()
    assert [commit["sha"] for commit in history] == [second, first]  # the tag did not move
    assert len(client.get(f"/repos/{REPO}/commits", params={"sha": "main"}).json()) == 3
    with pytest.raises(GitHubError, match="Validation Failed"):
        fake.add_release(REPO, "v2", target_commitish="no-such-branch")


# Auth and rate limits --------------------------------------------------------------------------------


def test_auth_bad_credentials_anonymous_and_the_token_scheme(fake):
    assert_github_error(client_for(fake, "wrong").get(f"/repos/{REPO}/issues"), 401, "Bad credentials")
    anonymous = client_for(fake, None)
    assert_github_error(anonymous.get("/user"), 401, "Requires authentication")
    assert_github_error(anonymous.get(f"/repos/{REPO}/issues"), 404, "Not Found")  # private
    assert client_for(fake, DEMO_TOKEN, scheme="token").get("/user").json()["login"] == "vsm-demo"
    assert client_for(fake).get("/repos/acme/other/issues").status_code == 404


def test_every_answer_carries_the_rate_limit_headers(client):
    response = client.get("/user")
    assert response.headers["x-ratelimit-limit"] == "5000"
    assert int(response.headers["x-ratelimit-remaining"]) > 0
    assert int(response.headers["x-ratelimit-reset"]) > time.time()
    assert response.headers["x-ratelimit-resource"] == "core"


def test_rate_limit_faults_answer_403_or_429_with_githubs_headers(fake, client):
    fake.rate_limit(1, retry_after=30)
    response = client.get("/user")
    assert_github_error(response, 403)
    assert "rate limit exceeded" in response.json()["message"]
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert 29 <= int(response.headers["x-ratelimit-reset"]) - time.time() <= 31
    assert "retry-after" not in response.headers
    fake.rate_limit(1, retry_after=7, status=429)
    secondary = client.get("/user")
    assert secondary.status_code == 429 and secondary.headers["retry-after"] == "7"
    assert client.get("/user").status_code == 200


def test_fail_slow_and_malformed_faults(fake, client):
    key = fake.add_issue(REPO, "Bug")
    fake.fail(1, 502)
    assert client.get("/user").status_code == 502
    fake.slow(1, 0.01)
    assert client.get("/user").status_code == 200
    fake.malformed(key)
    (issue,) = client.get(f"/repos/{REPO}/issues").json()
    assert issue["created_at"] == "not-a-date" and "state" not in issue
    fake.clear_faults()
    assert client.get(f"/repos/{REPO}/issues").json()[0]["state"] == "open"


def test_a_missing_user_agent_or_unknown_api_version_is_refused(fake):
    client = client_for(fake)
    assert client.get("/user", headers={"X-GitHub-Api-Version": "1999-01-01"}).status_code == 400
    bare = httpx.Client(transport=httpx.WSGITransport(app=fake), base_url="https://api.github.test")
    request = bare.build_request("GET", "/user", headers={"Authorization": f"Bearer {DEMO_TOKEN}"})
    del request.headers["user-agent"]
    assert bare.send(request).status_code == 403


# Writes ----------------------------------------------------------------------------------------------


def test_create_and_update_issues(fake, client, clock):
    created = client.post(f"/repos/{REPO}/issues", json={"title": "New", "body": "Text", "labels": ["bug"]})
    assert created.status_code == 201
    assert created.headers["location"].endswith(f"/repos/{REPO}/issues/1")
    assert (created.json()["number"], created.json()["state"], created.json()["labels"][0]["name"]) == (
        1,
        "open",
        "bug",
    )
    assert_github_error(
        client.post(f"/repos/{REPO}/issues", json={"body": "no title"}), 422, "Validation Failed"
    )

    clock.instant += timedelta(hours=1)
    closed = client.patch(f"/repos/{REPO}/issues/1", json={"state": "closed", "state_reason": "not_planned"})
    assert closed.status_code == 200
    assert (closed.json()["state"], closed.json()["state_reason"], closed.json()["closed_at"]) == (
        "closed",
        "not_planned",
        "2026-03-01T11:30:00Z",
    )
    assert closed.json()["closed_by"]["login"] == "vsm-demo"
    clock.instant += timedelta(hours=1)
    reopened = client.patch(f"/repos/{REPO}/issues/1", json={"state": "open", "title": "Renamed"}).json()
    assert (reopened["state"], reopened["state_reason"], reopened["closed_at"], reopened["title"]) == (
        "open",
        "reopened",
        None,
        "Renamed",
    )
    assert reopened["updated_at"] == "2026-03-01T12:30:00Z"
    events = [event["event"] for event in client.get(f"/repos/{REPO}/issues/1/events").json()]
    assert events == ["labeled", "closed", "reopened", "renamed"]
    assert [write.method for write in fake.writes] == ["POST", "PATCH", "PATCH"]
    assert client.patch(f"/repos/{REPO}/issues/1", json={"state": "shut"}).status_code == 422


# Control endpoints -----------------------------------------------------------------------------------


def test_control_endpoints_seed_and_inspect_the_fake(fake, client):
    control = httpx.Client(transport=httpx.WSGITransport(app=fake), base_url="http://fake.test")
    assert control.post("/_fake/reset").json() == {"reset": True}
    assert (
        control.post("/_fake/repos", json={"full_name": "acme/api", "default_branch": "trunk"}).status_code
        == 201
    )
    assert control.post("/_fake/users", json={"login": "dev", "token": "dev-token"}).status_code == 201
    sha = control.post(
        "/_fake/commits",
        json={"repo": "acme/api", "message": "Work", "author": "dev", "at": "2026-02-01T10:00:00Z"},
    ).json()["sha"]
    issue = control.post(
        "/_fake/issues",
        json={
            "repo": "acme/api",
            "title": "Bug",
            "created": "2026-02-01T09:00:00+00:00",
            "events": [{"at": "2026-02-02T09:00:00+00:00", "event": "closed", "actor": "dev"}],
        },
    ).json()
    assert issue == {"number": 1, "key": "acme/api#1"}
    pull = control.post(
        "/_fake/pulls", json={"repo": "acme/api", "title": "Fix", "commits": [sha], "head": "fix"}
    ).json()
    assert control.post("/_fake/events", json={"key": pull["key"], "event": "merged"}).status_code == 201
    assert (
        control.post(
            "/_fake/releases", json={"repo": "acme/api", "tag_name": "v1", "target_commitish": sha}
        ).status_code
        == 201
    )
    assert (
        control.post("/_fake/clock", json={"now": "2026-03-05T00:00:00+00:00"})
        .json()["now"]
        .startswith("2026-03-05")
    )
    faults = control.post(
        "/_fake/faults", json={"rate_limit": {"count": 1, "status": 429}, "malformed": ["acme/api#1"]}
    )
    assert faults.json()["rate_limit_count"] == 1
    stats = control.get("/_fake/stats").json()
    assert (stats["repos"], stats["issues"], stats["pulls"], stats["commits"], stats["releases"]) == (
        1,
        1,
        1,
        2,
        1,
    )
    assert stats["malformed"] == ["acme/api#1"]
    dev = client_for(fake, "dev-token")
    assert dev.get("/repos/acme/api/issues").status_code == 429
    issue_json = dev.get("/repos/acme/api/issues/1").json()
    assert issue_json["created_at"] == "not-a-date"
    assert control.post("/_fake/issues", json={"repo": "acme/api"}).status_code == 400
    assert control.post("/_fake/events", json={"key": "acme/api#1", "event": "exploded"}).status_code == 400
    assert control.post("/_fake/reset", json={"flavour": "enterprise"}).status_code == 400
    control.post("/_fake/reset")
    assert control.get("/_fake/stats").json()["repos"] == 0


def test_the_fake_serves_over_a_loopback_socket_under_a_prefix(fake):
    fake.add_issue(REPO, "Bug")
    with serve({"/github": fake}) as server:
        response = httpx.get(
            server.url("/github") + f"/repos/{REPO}/issues",
            headers={"Authorization": f"Bearer {DEMO_TOKEN}"},
        )
    assert response.status_code == 200
    assert response.json()[0]["url"] == server.url("/github") + f"/repos/{REPO}/issues/1"
    assert fake.label == "GitHub" and fake.credentials() == {"token": DEMO_TOKEN}
