"""The fake Jira speaks the real API's shapes, paging, JQL subset, writes and faults."""

import csv
import itertools
import json
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from django.core.management import CommandError, call_command

from connectors.fakes.jira import DEMO_EMAIL, DEMO_TOKEN, FakeJira, TransitionRule
from connectors.fakes.world import world_dump, world_load, world_save
from connectors.fakes.wsgi import serve

START = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)  # 18:30 in Asia/Shanghai
JIRA_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{4}")
RECORDED_ISSUES = "devlake-raw/jira/_raw_jira_api_issues.csv"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, instant: datetime):
        self.instant = instant

    def __call__(self) -> datetime:
        return self.instant

    def advance(self, **delta: float) -> None:
        self.instant += timedelta(**delta)


def client_for(fake: FakeJira, email: str = DEMO_EMAIL, token: str = DEMO_TOKEN) -> httpx.Client:
    """A client with the flavour's own credentials: Basic email:token on Cloud, a Bearer PAT on DC."""
    transport = httpx.WSGITransport(app=fake)
    if fake.cloud:
        return httpx.Client(transport=transport, base_url="http://jira.test", auth=(email, token))
    return httpx.Client(
        transport=transport, base_url="http://jira.test", headers={"Authorization": f"Bearer {token}"}
    )


def add_stories(fake: FakeJira, count: int, project: str = "ABC", **options) -> list[str]:
    return [fake.add_issue(project, "Story", f"Story {number}", **options) for number in range(count)]


def search_all(client: httpx.Client, jql: str, page_size: int, **body) -> list[dict]:
    """Follow nextPageToken to the end, checking the page shape on the way."""
    issues, token = [], None
    for _ in range(100):
        payload = {"jql": jql, "maxResults": page_size, **body, **({"nextPageToken": token} if token else {})}
        response = client.post("/rest/api/3/search/jql", json=payload)
        assert response.status_code == 200, response.text
        page = response.json()
        assert "total" not in page and "startAt" not in page
        issues.extend(page["issues"])
        if page["isLast"]:
            assert "nextPageToken" not in page
            return issues
        token = page["nextPageToken"]
    raise AssertionError("paging never ended")


def create_body(summary: str = "Made by the portal", **extra) -> dict:
    """POST /issue's body for a Story in ABC; `extra` goes beside "fields" (e.g. properties)."""
    return {
        "fields": {"project": {"key": "ABC"}, "issuetype": {"name": "Story"}, "summary": summary},
        **extra,
    }


def found_keys(
    fake: FakeJira, client: httpx.Client, jql: str = "project = ABC ORDER BY key ASC"
) -> list[str]:
    """The keys the flavour's search finds, by GET and by POST (which must agree)."""
    path = "/rest/api/3/search/jql" if fake.cloud else "/rest/api/2/search"
    found = []
    for response in (
        client.get(path, params={"jql": jql, "fields": "key"}),
        client.post(path, json={"jql": jql, "fields": ["key"]}),
    ):
        assert response.status_code == 200, response.text
        found.append([issue["key"] for issue in response.json()["issues"]])
    assert found[0] == found[1]
    return found[0]


def search_issues(fake: FakeJira, client: httpx.Client, jql: str) -> list[dict]:
    """The issues the flavour's search finds by POST, with summary, status, updated and the changelog."""
    fields = ["summary", "status", "updated", "issuelinks"]
    if fake.cloud:
        return search_all(client, jql, 50, fields=fields, expand="changelog")
    response = client.post("/rest/api/2/search", json={"jql": jql, "fields": fields, "expand": ["changelog"]})
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["total"] == len(page["issues"])
    return page["issues"]


def jql_instant(fake: FakeJira, instant: datetime) -> str:
    """`instant` as a JQL literal in the demo user's time zone (the site's)."""
    return f"{instant.astimezone(ZoneInfo(fake.time_zone)):%Y/%m/%d %H:%M}"


def assert_jira_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"errorMessages", "errors"}
    assert body["errorMessages"] or body["errors"]
    return body


@pytest.fixture
def clock():
    return Clock(START)


@pytest.fixture
def cloud(clock):
    fake = FakeJira("cloud", time_zone="Asia/Shanghai", now=clock)
    fake.add_project("ABC", name="Alphabet")
    return fake


@pytest.fixture
def client(cloud):
    with client_for(cloud) as client:
        yield client


@pytest.fixture
def datacenter(clock):
    fake = FakeJira("datacenter", time_zone="UTC", now=clock)
    fake.add_project("ABC")
    return fake


@pytest.fixture(params=["cloud", "datacenter"])
def any_fake(request):
    return request.getfixturevalue(request.param)


# Search and paging.


def test_cloud_search_pages_with_a_token_that_is_absent_on_the_last_page(cloud, client):
    keys = add_stories(cloud, 5)

    issues = search_all(client, "project = ABC ORDER BY key ASC", page_size=2, fields=["summary"])

    assert [issue["key"] for issue in issues] == keys
    assert issues[0]["fields"] == {"summary": "Story 0"}
    assert set(issues[0]) == {"expand", "id", "self", "key", "fields"}
    assert cloud.requests["POST search/jql"] == 3
    assert cloud.writes == []  # a search by POST reads


def test_cloud_search_without_fields_returns_only_ids(cloud, client):
    add_stories(cloud, 2)

    page = client.get("/rest/api/3/search/jql", params={"jql": "project = ABC ORDER BY key ASC"}).json()

    assert page == {"issues": [{"id": "10001"}, {"id": "10002"}], "isLast": True}


def test_cloud_search_takes_comma_separated_fields_and_expand_in_a_get(cloud, client):
    add_stories(cloud, 1)

    page = client.get(
        "/rest/api/2/search/jql",
        params={"jql": "project = ABC", "fields": "summary,status", "expand": "changelog,names"},
    ).json()

    issue = page["issues"][0]
    assert set(issue["fields"]) == {"summary", "status"}
    assert issue["changelog"] == {"startAt": 0, "maxResults": 0, "total": 0, "histories": []}


@pytest.mark.parametrize("version", ["2", "3"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_cloud_answers_410_gone_on_the_legacy_search(client, version, method):
    response = client.request(method, f"/rest/api/{version}/search", params={"jql": "project = ABC"})

    body = assert_jira_error(response, 410)
    assert "/rest/api/3/search/jql" in body["errorMessages"][0]


def test_cloud_refuses_an_unbounded_query_and_a_token_from_another_query(cloud, client):
    add_stories(cloud, 3)
    first = client.post("/rest/api/3/search/jql", json={"jql": "project = ABC", "maxResults": 1}).json()

    assert_jira_error(client.post("/rest/api/3/search/jql", json={"jql": ""}), 400)
    other_query = {"jql": "project = ABC ORDER BY key DESC", "nextPageToken": first["nextPageToken"]}
    assert_jira_error(client.post("/rest/api/3/search/jql", json=other_query), 400)


def test_datacenter_search_pages_with_start_at_and_total(datacenter):
    keys = add_stories(datacenter, 5)

    with client_for(datacenter) as client:
        pages = [
            client.get(
                "/rest/api/2/search",
                params={"jql": "project = ABC ORDER BY key ASC", "startAt": start, "maxResults": 2},
            ).json()
            for start in (0, 2, 4)
        ]
        jql_search = client.get("/rest/api/2/search/jql", params={"jql": "project = ABC"})
        version_3 = client.get("/rest/api/3/myself")

    assert [set(page) for page in pages] == [{"expand", "startAt", "maxResults", "total", "issues"}] * 3
    assert [(page["startAt"], page["maxResults"], page["total"]) for page in pages] == [
        (0, 2, 5),
        (2, 2, 5),
        (4, 2, 5),
    ]
    assert [issue["key"] for page in pages for issue in page["issues"]] == keys
    assert "summary" in pages[0]["issues"][0]["fields"]  # all navigable fields when none are named
    assert jql_search.status_code == 404
    assert version_3.status_code == 404


@pytest.mark.parametrize("order", ["ORDER BY updated ASC", "ORDER BY updated ASC, key ASC"])
def test_issues_sharing_one_updated_instant_are_each_returned_once_across_pages(cloud, client, order):
    earlier = add_stories(cloud, 3, created=START - timedelta(hours=1))
    tied = add_stories(cloud, 25, created=START)
    later = add_stories(cloud, 2, created=START + timedelta(hours=1))

    jql = f'project = ABC AND updated >= "2026/03/01 00:00" {order}'
    issues = search_all(client, jql, page_size=7, fields=["updated"])

    assert [issue["key"] for issue in issues] == earlier + tied + later


def test_updated_literals_are_read_in_the_searching_users_time_zone(cloud):
    cloud.add_issue("ABC", "Story", "Updated at 10:30 UTC", created=START)
    cloud.add_user("utc@vsm.example", "utc-token", time_zone="UTC")

    def found(jql: str, email: str = DEMO_EMAIL, token: str = DEMO_TOKEN) -> int:
        with client_for(cloud, email, token) as client:
            response = client.post("/rest/api/3/search/jql", json={"jql": jql})
        assert response.status_code == 200, response.text
        return len(response.json()["issues"])

    assert found('updated >= "2026/03/01 18:30"') == 1
    assert found('updated >= "2026/03/01 18:31"') == 0
    assert found('project = ABC AND updated >= "2026-03-01 18:30"') == 1
    assert found('updated >= "2026/03/01 10:30"', "utc@vsm.example", "utc-token") == 1
    assert found('updated >= "2026/03/01 10:31"', "utc@vsm.example", "utc-token") == 0
    assert found("updated >= 2026-03-02") == 0
    assert found('created < "2026/03/02"') == 1


@pytest.mark.parametrize(
    "jql",
    [
        "status = Done",
        "project = ABC OR project = DEF",
        "project = NOPE",
        "key in (ABC-99)",
        'updated >= "yesterday"',
        "project = ABC ORDER BY priority",
        "project in (ABC",
        "project",
    ],
)
def test_jql_outside_the_supported_subset_answers_400_in_jiras_error_shape(client, jql):
    body = assert_jira_error(client.post("/rest/api/3/search/jql", json={"jql": jql}), 400)

    assert body["errors"] == {}


def test_project_in_and_key_in_select_those_issues(cloud, client):
    cloud.add_project("DEF")
    first, second = add_stories(cloud, 2)
    other = cloud.add_issue("DEF", "Bug", "Elsewhere")

    by_project = search_all(client, "project in (ABC, DEF) ORDER BY key ASC", 10, fields=["key"])
    by_key = search_all(client, f"key in ({second}, {other}) ORDER BY key ASC", 10, fields=["key"])

    assert [issue["key"] for issue in by_project] == [first, second, other]
    assert [issue["key"] for issue in by_key] == [second, other]


# Auth and site information.


def test_wrong_or_missing_credentials_answer_401(cloud, datacenter):
    with client_for(cloud, token="wrong") as wrong_token:
        cloud_wrong = wrong_token.get("/rest/api/3/myself")
    anonymous = httpx.Client(transport=httpx.WSGITransport(app=cloud), base_url="http://jira.test")
    pat_as_password = httpx.Client(
        transport=httpx.WSGITransport(app=datacenter),
        base_url="http://jira.test",
        auth=(DEMO_EMAIL, DEMO_TOKEN),
    )

    for response in (
        cloud_wrong,
        anonymous.get("/rest/api/3/myself"),
        pat_as_password.get("/rest/api/2/myself"),
    ):
        body = assert_jira_error(response, 401)
        assert "not authenticated" in body["errorMessages"][0]
        assert response.headers["X-Seraph-LoginReason"] == "AUTHENTICATED_FAILED"


def test_myself_and_server_info_per_flavour(client, datacenter):
    myself = client.get("/rest/api/2/myself").json()
    server = client.get("/rest/api/2/serverInfo").json()
    with client_for(datacenter) as dc_client:
        dc_myself = dc_client.get("/rest/api/2/myself").json()
        dc_server = dc_client.get("/rest/api/2/serverInfo").json()

    assert (myself["emailAddress"], myself["timeZone"], myself["displayName"]) == (
        DEMO_EMAIL,
        "Asia/Shanghai",
        "VSM Demo",
    )
    assert "accountId" in myself and "name" not in myself
    assert {"name", "key"} <= set(dc_myself) and "accountId" not in dc_myself
    assert (server["deploymentType"], dc_server["deploymentType"]) == ("Cloud", "Server")
    assert server["serverTime"].endswith("+0800") and dc_server["serverTime"].endswith("+0000")


# Writes and the changelog they leave.


def test_create_answers_201_with_id_key_and_self(cloud, client):
    response = client.post(
        "/rest/api/2/issue",
        json={
            "fields": {
                "project": {"key": "ABC"},
                "issuetype": {"name": "Bug"},
                "summary": "Broken",
                "labels": ["x"],
            }
        },
    )

    assert response.status_code == 201
    assert response.json() == {
        "id": "10001",
        "key": "ABC-1",
        "self": "http://jira.test/rest/api/2/issue/10001",
    }
    fields = client.get("/rest/api/2/issue/ABC-1").json()["fields"]
    assert (fields["summary"], fields["status"]["name"], fields["issuetype"]["name"]) == (
        "Broken",
        "To Do",
        "Bug",
    )
    assert fields["created"] == fields["updated"] == "2026-03-01T18:30:00.000+0800"
    assert fields["reporter"]["displayName"] == "VSM Demo" and "emailAddress" not in fields["reporter"]
    assert cloud.writes[0].body["fields"]["summary"] == "Broken"


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"project": {"key": "ABC"}, "issuetype": {"name": "Bug"}}, "summary"),
        ({"project": {"key": "NOPE"}, "issuetype": {"name": "Bug"}, "summary": "x"}, "project"),
        ({"project": {"key": "ABC"}, "issuetype": {"name": "Saga"}, "summary": "x"}, "issuetype"),
        (
            {"project": {"key": "ABC"}, "issuetype": {"name": "Bug"}, "summary": "x", "status": "Done"},
            "status",
        ),
    ],
)
def test_create_answers_400_naming_the_bad_field(cloud, client, fields, bad_field):
    body = assert_jira_error(client.post("/rest/api/2/issue", json={"fields": fields}), 400)

    assert bad_field in body["errors"]
    assert cloud.issues == {} and cloud.writes == []


def test_create_on_api_3_wants_rich_text_as_atlassian_document_format(client):
    fields = {"project": {"key": "ABC"}, "issuetype": {"name": "Bug"}, "summary": "x", "description": "plain"}

    body = assert_jira_error(client.post("/rest/api/3/issue", json={"fields": fields}), 400)

    assert "Atlassian Document" in body["errors"]["description"]


def test_edit_adds_one_history_with_an_item_per_changed_field_and_bumps_updated(cloud, client, clock):
    key = cloud.add_issue("ABC", "Story", "Old title", created=START)
    clock.advance(minutes=5)

    response = client.put(
        f"/rest/api/2/issue/{key}",
        json={
            "fields": {"summary": "New title", "priority": {"name": "High"}},
            "update": {"labels": [{"add": "vsm"}]},
        },
    )

    assert response.status_code == 204
    issue = client.get(f"/rest/api/2/issue/{key}", params={"expand": "changelog"}).json()
    assert issue["fields"]["updated"] == "2026-03-01T18:35:00.000+0800"
    assert issue["fields"]["labels"] == ["vsm"]
    [history] = issue["changelog"]["histories"]
    assert history["created"] == "2026-03-01T18:35:00.000+0800"
    assert {
        item["field"]: (item["from"], item["fromString"], item["to"], item["toString"])
        for item in history["items"]
    } == {
        "summary": (None, "Old title", None, "New title"),
        "priority": ("3", "Medium", "2", "High"),
        "labels": (None, "", None, "vsm"),
    }


def test_edit_cannot_set_the_status(cloud, client):
    key = cloud.add_issue("ABC", "Story", "Title")

    body = assert_jira_error(
        client.put(f"/rest/api/2/issue/{key}", json={"fields": {"status": {"name": "Done"}}}), 400
    )

    assert "status" in body["errors"]
    assert cloud.issues[key].histories == []


def test_transitions_follow_the_workflow_and_record_status_and_resolution(cloud, client, clock):
    cloud.add_project(
        "FLOW",
        statuses={"Open": "new", "Doing": "indeterminate", "Closed": "done"},
        transitions=[
            TransitionRule("Start", "Doing", ("Open",)),
            TransitionRule("Finish", "Closed", ("Doing",)),
            TransitionRule("Reopen", "Open"),
        ],
    )
    key = cloud.add_issue("FLOW", "Task", "Flowing")

    offered = client.get(f"/rest/api/2/issue/{key}/transitions").json()["transitions"]
    assert [(t["id"], t["name"], t["to"]["name"]) for t in offered] == [("11", "Start", "Doing")]
    assert set(offered[0]["to"]["statusCategory"]) >= {"id", "key", "colorName", "name"}

    assert_jira_error(
        client.post(f"/rest/api/2/issue/{key}/transitions", json={"transition": {"id": "21"}}), 400
    )
    clock.advance(hours=1)
    assert (
        client.post(f"/rest/api/2/issue/{key}/transitions", json={"transition": {"id": "11"}}).status_code
        == 204
    )
    clock.advance(hours=1)
    assert (
        client.post(f"/rest/api/2/issue/{key}/transitions", json={"transition": {"id": "21"}}).status_code
        == 204
    )

    issue = client.get(f"/rest/api/2/issue/{key}", params={"expand": "changelog"}).json()
    statuses = {name: cloud.statuses[name].id for name in ("Open", "Doing", "Closed")}
    finished, started = issue["changelog"]["histories"]  # newest first, as Cloud embeds them
    assert started["items"] == [
        {
            "field": "status",
            "fieldtype": "jira",
            "fieldId": "status",
            "from": statuses["Open"],
            "fromString": "Open",
            "to": statuses["Doing"],
            "toString": "Doing",
        }
    ]
    assert [(item["field"], item["to"], item["toString"]) for item in finished["items"]] == [
        ("resolution", "10000", "Done"),
        ("status", statuses["Closed"], "Closed"),
    ]
    assert issue["fields"]["resolutiondate"] == finished["created"] == "2026-03-01T20:30:00.000+0800"
    assert issue["fields"]["status"]["statusCategory"]["key"] == "done"


def test_issue_links_show_on_both_issues_with_their_changelog(cloud, client):
    blocker, blocked = add_stories(cloud, 2)
    link_types = client.get("/rest/api/2/issueLinkType").json()["issueLinkTypes"]
    assert {"name": "Blocks", "inward": "is blocked by", "outward": "blocks"}.items() <= link_types[0].items()

    response = client.post(
        "/rest/api/2/issueLink",
        json={"type": {"name": "Blocks"}, "inwardIssue": {"key": blocker}, "outwardIssue": {"key": blocked}},
    )

    assert response.status_code == 201
    blocker_json = client.get(f"/rest/api/2/issue/{blocker}", params={"expand": "changelog"}).json()
    blocked_json = client.get(f"/rest/api/2/issue/{blocked}", params={"expand": "changelog"}).json()
    [outward] = blocker_json["fields"]["issuelinks"]
    [inward] = blocked_json["fields"]["issuelinks"]
    assert outward["outwardIssue"]["key"] == blocked and outward["type"]["name"] == "Blocks"
    assert inward["inwardIssue"]["key"] == blocker and set(inward["inwardIssue"]["fields"]) >= {
        "summary",
        "status",
    }
    assert blocker_json["changelog"]["histories"][0]["items"] == [
        {
            "field": "Link",
            "fieldtype": "jira",
            "from": None,
            "fromString": None,
            "to": blocked,
            "toString": f"This issue blocks {blocked}",
        }
    ]
    assert (
        blocked_json["changelog"]["histories"][0]["items"][0]["toString"]
        == f"This issue is blocked by {blocker}"
    )


def test_remote_links_are_idempotent_by_global_id(cloud, client):
    key = cloud.add_issue("ABC", "Story", "Traced")
    link = {
        "globalId": "system=vsm&id=42",
        "application": {"type": "vsm", "name": "VSM"},
        "relationship": "traced in",
        "object": {"url": "http://portal.test/artifacts/42", "title": "Artifact 42"},
    }
    url = f"/rest/api/2/issue/{key}/remotelink"

    created = client.post(url, json=link)
    updated = client.post(url, json={**link, "object": {**link["object"], "title": "Artifact 42 (renamed)"}})

    assert created.status_code == 201 and updated.status_code == 200
    assert (
        created.json()
        == updated.json()
        == {"id": 10001, "self": f"http://jira.test/rest/api/2/issue/{key}/remotelink/10001"}
    )
    [stored] = client.get(url).json()
    assert (stored["globalId"], stored["object"]["title"]) == ("system=vsm&id=42", "Artifact 42 (renamed)")
    histories = client.get(f"/rest/api/2/issue/{key}", params={"expand": "changelog"}).json()["changelog"][
        "histories"
    ]
    assert [(h["items"][0]["field"], h["items"][0]["from"], h["items"][0]["to"]) for h in histories] == [
        ("RemoteIssueLink", "10001", "10001"),
        ("RemoteIssueLink", None, "10001"),
    ]
    assert histories[1]["items"][0]["toString"] == 'This issue links to "Artifact 42 (VSM)"'


def test_delete_answers_204_and_the_issue_is_gone(cloud, client):
    key = cloud.add_issue("ABC", "Story", "Doomed")

    assert client.delete(f"/rest/api/2/issue/{key}").status_code == 204
    assert_jira_error(client.get(f"/rest/api/2/issue/{key}"), 404)


def test_deleting_an_issue_with_sub_tasks_deletes_them_too(cloud, client):
    parent = cloud.add_issue("ABC", "Story", "Parent")
    subtasks = [cloud.add_issue("ABC", "Sub-task", f"Part {n}", parent=parent) for n in range(2)]
    assert client.delete(f"/rest/api/2/issue/{parent}", params={"deleteSubtasks": "true"}).status_code == 204
    for key in (parent, *subtasks):
        assert_jira_error(client.get(f"/rest/api/2/issue/{key}"), 404)


def test_an_embedded_changelog_is_truncated_and_the_changelog_endpoint_pages_all_of_it(clock):
    fake = FakeJira(embedded_changelog_limit=3, now=clock)
    fake.add_project("ABC")
    key = fake.add_issue("ABC", "Story", "Version 0", created=START)
    for version in range(1, 9):
        fake.edit(key, {"summary": f"Version {version}"}, at=START + timedelta(minutes=version))
    all_ids = [history.id for history in fake.issues[key].histories]

    with client_for(fake) as client:
        embedded = client.get(f"/rest/api/3/issue/{key}", params={"expand": "changelog"}).json()["changelog"]
        paged, start = [], 0
        while True:
            page = client.get(
                f"/rest/api/3/issue/{key}/changelog", params={"startAt": start, "maxResults": 3}
            ).json()
            paged.extend(page["values"])
            if page["isLast"]:
                break
            assert page["nextPage"].endswith(f"startAt={start + 3}")
            start += 3

    assert (embedded["total"], embedded["maxResults"]) == (8, 3)
    assert [history["id"] for history in embedded["histories"]] == all_ids[:-4:-1]  # the newest, newest first
    assert [history["id"] for history in paged] == all_ids  # oldest first
    assert page["total"] == 8 and "nextPage" not in page


def test_backdated_issues_keep_their_history_and_ids_grow_like_jiras(cloud, client):
    key = cloud.add_issue(
        "ABC",
        "Story",
        "Imported",
        created=datetime(2025, 1, 6, 1, 0, tzinfo=UTC),
        histories=[
            (datetime(2025, 1, 7, 2, 0, tzinfo=UTC), "To Do", "In Progress"),
            (datetime(2025, 1, 9, 3, 0, tzinfo=UTC), "In Progress", "Done", DEMO_EMAIL),
        ],
    )

    issue = client.get(f"/rest/api/2/issue/{key}", params={"expand": "changelog"}).json()

    assert (issue["id"], issue["key"]) == ("10001", "ABC-1")
    assert issue["fields"]["created"] == "2025-01-06T09:00:00.000+0800"
    assert issue["fields"]["updated"] == issue["fields"]["resolutiondate"] == "2025-01-09T11:00:00.000+0800"
    assert [h["id"] for h in issue["changelog"]["histories"]] == ["10002", "10001"]
    assert all(JIRA_TIMESTAMP.fullmatch(h["created"]) for h in issue["changelog"]["histories"])


# Entity properties.


def test_create_keeps_entity_properties_that_get_returns_only_when_asked_for(any_fake):
    origin = {"system": "vsm", "artifact": 42, "tags": ["a", "b"]}
    properties = [{"key": "vsm.origin", "value": origin}, {"key": "vsm.note", "value": "made here"}]

    with client_for(any_fake) as client:
        created = client.post("/rest/api/2/issue", json=create_body(properties=properties))
        key = created.json()["key"]
        plain = client.get(f"/rest/api/2/issue/{key}").json()
        asked = client.get(f"/rest/api/2/issue/{key}", params={"properties": "vsm.origin,vsm.other"}).json()
        every = client.get(f"/rest/api/2/issue/{key}", params={"properties": "*all"}).json()
        all_but = client.get(f"/rest/api/2/issue/{key}", params={"properties": "*all,-vsm.note"}).json()

    assert created.status_code == 201
    assert "properties" not in plain  # only when asked, as in Jira
    assert asked["properties"] == all_but["properties"] == {"vsm.origin": origin}
    assert every["properties"] == {"vsm.origin": origin, "vsm.note": "made here"}
    assert any_fake.issues[key].properties == {"vsm.origin": origin, "vsm.note": "made here"}
    assert "properties" not in every["fields"]


def test_the_property_endpoints_set_read_and_list_properties_without_editing_the_issue(any_fake, clock):
    key = any_fake.add_issue("ABC", "Story", "Tracked", created=START)
    clock.advance(minutes=5)
    api = "/rest/api/3" if any_fake.cloud else "/rest/api/2"
    url = f"{api}/issue/{key}/properties/vsm.link"

    with client_for(any_fake) as client:
        missing = client.get(url)
        created = client.put(url, json={"artifact": 1})
        replaced = client.put(url, json={"artifact": 2})
        value = client.get(url).json()
        keys = client.get(f"{api}/issue/{key}/properties").json()
        issue = client.get(
            f"{api}/issue/{key}", params={"expand": "changelog", "properties": "vsm.link"}
        ).json()
        since = jql_instant(any_fake, START + timedelta(minutes=1))
        edited_since = found_keys(any_fake, client, f'project = ABC AND updated >= "{since}"')

    body = assert_jira_error(missing, 404)
    assert body["errorMessages"] == ["The property with key 'vsm.link' does not exist."]
    assert (created.status_code, replaced.status_code) == (201, 200)
    assert value == {"key": "vsm.link", "value": {"artifact": 2}}
    assert keys == {
        "keys": [{"self": f"http://jira.test{api}/issue/{key}/properties/vsm.link", "key": "vsm.link"}]
    }
    assert issue["properties"] == {"vsm.link": {"artifact": 2}}
    # Entity properties are no edit: neither `updated` nor the changelog moves.
    assert issue["fields"]["updated"] == issue["fields"]["created"]
    assert issue["changelog"]["total"] == 0 and any_fake.issues[key].histories == []
    assert any_fake.issues[key].updated == START and edited_since == []


@pytest.mark.parametrize(
    "properties",
    [
        {"vsm.link": 1},  # an object, where Jira takes a list
        ["vsm.link"],
        [{"key": "vsm.link"}],  # no value
        [{"value": 1}],  # no key
        [{"key": 7, "value": 1}],
        [{"key": "", "value": 1}],
        [{"key": "k" * 256, "value": 1}],
    ],
)
def test_create_answers_400_on_badly_shaped_properties(cloud, client, properties):
    body = assert_jira_error(client.post("/rest/api/2/issue", json=create_body(properties=properties)), 400)

    assert body["errorMessages"]
    assert cloud.issues == {} and cloud.writes == []


def test_a_property_key_may_be_255_characters_and_a_value_is_needed(cloud, client):
    key = cloud.add_issue("ABC", "Story", "Tracked", properties={"k" * 255: True})
    url = f"/rest/api/3/issue/{key}/properties"

    assert client.get(f"{url}/{'k' * 255}").json() == {"key": "k" * 255, "value": True}
    assert_jira_error(client.put(f"{url}/{'k' * 256}", json=1), 400)
    assert_jira_error(client.put(f"{url}/empty", content=b""), 400)
    assert_jira_error(client.put("/rest/api/3/issue/ABC-99/properties/x", json=1), 404)
    assert cloud.set_issue_property(key, "vsm.flag", False) is True
    assert cloud.set_issue_property(key, "vsm.flag", True) is False
    assert cloud.issues[key].properties == {"k" * 255: True, "vsm.flag": True}


# Faults.


def test_rate_limit_answers_429_with_retry_after_then_recovers(cloud, client):
    cloud.rate_limit(2, retry_after=7)

    responses = [client.get("/rest/api/3/myself") for _ in range(3)]

    assert [response.status_code for response in responses] == [429, 429, 200]
    limited = responses[0].headers
    assert limited["Retry-After"] == "7"
    assert limited["X-RateLimit-Remaining"] == "0"
    assert limited["RateLimit-Reason"] == "jira-burst-based"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}Z", limited["X-RateLimit-Reset"])
    assert cloud.requests["GET myself"] == 3


def test_fail_answers_the_status_then_recovers(cloud, client):
    cloud.fail(1, status=503)

    assert assert_jira_error(client.get("/rest/api/3/myself"), 503)
    assert client.get("/rest/api/3/myself").status_code == 200


def test_slow_delays_the_next_requests_only(cloud, client):
    cloud.slow(1, seconds=0.2)

    started = time.monotonic()
    assert client.get("/rest/api/3/myself").status_code == 200
    slow_elapsed = time.monotonic() - started
    started = time.monotonic()
    client.get("/rest/api/3/myself")

    assert slow_elapsed >= 0.2
    assert time.monotonic() - started < 0.2


def test_a_malformed_issue_is_rendered_broken_in_search_and_get(cloud, client):
    broken, fine = add_stories(cloud, 2)
    cloud.malformed(broken)

    searched = search_all(client, "project = ABC ORDER BY key ASC", 10, fields=["*all"])
    fetched = client.get(f"/rest/api/2/issue/{broken}").json()

    for issue in (searched[0], fetched):
        assert issue["fields"]["created"] == "not-a-date"
        assert "status" not in issue["fields"]
    assert searched[1]["key"] == fine and "status" in searched[1]["fields"]


# Eventually consistent search: a settable lag.


def test_with_a_search_lag_a_new_issue_is_missing_from_search_until_the_lag_has_passed(any_fake, clock):
    any_fake.set_search_lag(60)

    with client_for(any_fake) as client:
        key = client.post("/rest/api/2/issue", json=create_body()).json()["key"]
        fetched = client.get(f"/rest/api/2/issue/{key}")
        at_once = found_keys(any_fake, client)
        clock.advance(seconds=59)
        just_before = found_keys(any_fake, client)
        clock.advance(seconds=1)
        after = found_keys(any_fake, client)

    assert any_fake.search_lag == timedelta(seconds=60)
    assert fetched.status_code == 200  # GET by key is current at once
    assert at_once == just_before == []
    assert after == [key]


def test_with_a_search_lag_search_sees_an_edit_only_once_the_lag_has_passed(any_fake, clock):
    older = any_fake.add_issue("ABC", "Story", "Old title", created=START - timedelta(hours=2))
    newer = any_fake.add_issue("ABC", "Story", "Untouched", created=START - timedelta(hours=1))
    any_fake.set_search_lag(60)  # issues already there count as indexed
    clock.advance(minutes=5)
    edited_at = START + timedelta(minutes=5)
    by_updated = "project = ABC ORDER BY updated ASC"
    since_edit = f'project = ABC AND updated >= "{jql_instant(any_fake, edited_at)}"'

    with client_for(any_fake) as client:
        edited = client.put(f"/rest/api/2/issue/{older}", json={"fields": {"summary": "New title"}})
        fetched = client.get(f"/rest/api/2/issue/{older}", params={"expand": "changelog"}).json()
        stale = search_issues(any_fake, client, by_updated)
        stale_since = found_keys(any_fake, client, since_edit)
        clock.advance(seconds=60)
        fresh = search_issues(any_fake, client, by_updated)
        fresh_since = found_keys(any_fake, client, since_edit)

    assert edited.status_code == 204
    assert fetched["fields"]["summary"] == "New title" and fetched["changelog"]["total"] == 1
    assert [(issue["key"], issue["fields"]["summary"]) for issue in stale] == [
        (older, "Old title"),
        (newer, "Untouched"),
    ]
    assert stale[0]["fields"]["updated"] != fetched["fields"]["updated"]
    assert stale[0]["changelog"]["total"] == 0
    assert stale_since == []  # `updated >=` filters on what search sees
    assert [(issue["key"], issue["fields"]["summary"]) for issue in fresh] == [
        (newer, "Untouched"),
        (older, "New title"),
    ]
    assert fresh[1]["fields"]["updated"] == fetched["fields"]["updated"]
    assert fresh[1]["changelog"]["total"] == 1
    assert fresh_since == [older]


def test_with_a_search_lag_transitions_and_links_reach_search_late(cloud, client, clock):
    blocker, blocked = add_stories(cloud, 2, created=START - timedelta(hours=1))
    cloud.set_search_lag(60)
    clock.advance(minutes=1)

    done = next(
        t["id"]
        for t in client.get(f"/rest/api/3/issue/{blocker}/transitions").json()["transitions"]
        if t["to"]["name"] == "Done"
    )
    moved = client.post(f"/rest/api/3/issue/{blocker}/transitions", json={"transition": {"id": done}})
    link = {"type": {"name": "Blocks"}, "inwardIssue": {"key": blocker}, "outwardIssue": {"key": blocked}}
    linked = client.post("/rest/api/3/issueLink", json=link)
    fetched = client.get(f"/rest/api/3/issue/{blocker}").json()["fields"]
    stale = search_issues(cloud, client, "project = ABC ORDER BY key ASC")
    clock.advance(seconds=60)
    fresh = search_issues(cloud, client, "project = ABC ORDER BY key ASC")

    assert (moved.status_code, linked.status_code) == (204, 201)
    assert (fetched["status"]["name"], len(fetched["issuelinks"])) == ("Done", 1)
    assert [(i["fields"]["status"]["name"], i["fields"]["issuelinks"]) for i in stale] == [("To Do", [])] * 2
    assert [i["fields"]["status"]["name"] for i in fresh] == ["Done", "To Do"]
    assert fresh[0]["fields"]["issuelinks"][0]["outwardIssue"]["key"] == blocked
    assert fresh[1]["fields"]["issuelinks"][0]["inwardIssue"]["key"] == blocker
    assert [len(i["changelog"]["histories"]) for i in fresh] == [2, 1]


def test_with_a_search_lag_a_deleted_issue_lingers_in_search_while_get_answers_404(any_fake, clock):
    kept, doomed = add_stories(any_fake, 2)
    any_fake.set_search_lag(60)

    with client_for(any_fake) as client:
        assert client.delete(f"/rest/api/2/issue/{doomed}").status_code == 204
        fetched = client.get(f"/rest/api/2/issue/{doomed}")
        lingering = found_keys(any_fake, client)
        clock.advance(seconds=60)
        after = found_keys(any_fake, client)

    assert_jira_error(fetched, 404)
    assert lingering == [kept, doomed]
    assert after == [kept]


def test_with_a_search_lag_cloud_pages_through_what_search_sees_then(cloud, client, clock):
    cloud.set_search_lag(60)
    first = add_stories(cloud, 3)
    clock.advance(seconds=30)
    second = add_stories(cloud, 2)
    clock.advance(seconds=30)

    seen = search_all(client, "project = ABC ORDER BY key ASC", page_size=2, fields=["key"])
    clock.advance(seconds=30)
    seen_later = search_all(client, "project = ABC ORDER BY key ASC", page_size=2, fields=["key"])

    assert [issue["key"] for issue in seen] == first
    assert [issue["key"] for issue in seen_later] == first + second


def test_a_zero_search_lag_is_search_as_before_and_keeps_nothing(cloud, client):
    assert cloud.search_lag == timedelta(0)
    cloud.set_search_lag(60)
    cloud.search_lag = timedelta(0)

    key = client.post("/rest/api/3/issue", json=create_body("Fresh")).json()["key"]
    client.put(f"/rest/api/3/issue/{key}", json={"fields": {"labels": ["now"]}})

    assert found_keys(cloud, client) == [key]
    [issue] = search_issues(cloud, client, "project = ABC")
    assert issue["changelog"]["total"] == 1
    assert cloud._search_snapshots == {}  # nothing kept for search without a lag


def test_the_search_lag_is_a_fault_setting_of_the_control_api(cloud, client):
    control = httpx.Client(transport=httpx.WSGITransport(app=cloud), base_url="http://jira.test/_fake")

    answer = control.post("/faults", json={"search_lag": 60})
    key = cloud.add_issue("ABC", "Story", "Fresh")

    assert answer.status_code == 200 and answer.json()["search_lag"] == 60.0
    assert control.get("/stats").json()["faults"]["search_lag"] == 60.0
    assert found_keys(cloud, client) == []
    assert control.post("/faults", json={"search_lag": -1}).status_code == 400
    assert control.post("/faults", json={"search_lag": "soon"}).status_code == 400
    assert control.post("/faults", json={"clear": True}).json()["search_lag"] == 0.0
    assert found_keys(cloud, client) == [key]


def test_properties_search_lag_and_snapshots_survive_a_save_and_load(cloud, clock, tmp_path):
    key = cloud.add_issue("ABC", "Story", "Kept", properties={"vsm.link": {"artifact": 7}})
    cloud.set_search_lag(60)
    cloud.edit(key, {"summary": "Renamed"})
    fresh = cloud.add_issue("ABC", "Story", "Fresh")
    path = tmp_path / "world.pickle"
    world_save({"jira": cloud}, path)

    loaded = world_load(path, now=clock)["jira"]

    assert world_dump({"jira": loaded}) == world_dump({"jira": cloud})
    assert loaded.issues[key].properties == {"vsm.link": {"artifact": 7}}
    assert loaded.search_lag == timedelta(seconds=60)
    with client_for(loaded) as client:
        before = search_issues(loaded, client, "project = ABC ORDER BY key ASC")
        clock.advance(seconds=60)
        after = search_issues(loaded, client, "project = ABC ORDER BY key ASC")
        got = client.get(f"/rest/api/3/issue/{key}", params={"properties": "*all"}).json()
    assert [(i["key"], i["fields"]["summary"]) for i in before] == [(key, "Kept")]
    assert [(i["key"], i["fields"]["summary"]) for i in after] == [(key, "Renamed"), (fresh, "Fresh")]
    assert got["properties"] == {"vsm.link": {"artifact": 7}}


# Control endpoints (fake-only), and the fake over a real socket.


def test_control_endpoints_seed_drive_and_inspect_the_fake(cloud):
    control = httpx.Client(transport=httpx.WSGITransport(app=cloud), base_url="http://jira.test/_fake")

    assert control.post("/reset", json={"flavour": "datacenter", "time_zone": "UTC"}).status_code == 200
    assert control.post("/users", json={"email": "ops@vsm.example", "token": "ops-pat"}).status_code == 201
    assert (
        control.post(
            "/projects", json={"key": "OPS", "statuses": {"New": "new", "Fixed": "done"}}
        ).status_code
        == 201
    )
    created = control.post(
        "/issues",
        json={
            "project": "OPS",
            "issue_type": "Bug",
            "summary": "Outage",
            "created": "2026-02-01T08:00:00+00:00",
            "histories": [
                {"at": "2026-02-02T09:00:00Z", "from": "New", "to": "Fixed", "author": "ops@vsm.example"}
            ],
        },
    )
    assert created.status_code == 201 and created.json()["key"] == "OPS-1"
    assert control.post("/clock", json={"now": "2026-02-03T10:00:00+00:00"}).status_code == 200
    assert control.post("/issues/OPS-1/transition", json={"to": "New"}).status_code == 204
    assert control.post("/issues/OPS-1/edit", json={"fields": {"labels": ["sev1"]}}).status_code == 204
    assert (
        control.post(
            "/faults", json={"rate_limit": {"count": 1, "retry_after": 0}, "malformed": ["OPS-1"]}
        ).status_code
        == 200
    )

    with client_for(cloud, token="ops-pat") as ops:
        assert ops.get("/rest/api/2/issue/OPS-1").status_code == 429
        issue = ops.get("/rest/api/2/issue/OPS-1", params={"expand": "changelog"}).json()
    stats = control.get("/stats").json()

    assert [h["author"]["name"] for h in issue["changelog"]["histories"]] == [
        "ops",
        "demo",
        "demo",
    ]  # oldest first on DC
    assert issue["changelog"]["histories"][-1]["created"] == "2026-02-03T10:00:00.000+0000"
    assert issue["fields"]["created"] == "not-a-date"
    assert stats["requests"] == {"GET issue": 2} and stats["issues"] == 1 and stats["flavour"] == "datacenter"
    assert control.post("/faults", json={"fail": {"count": "many"}}).status_code == 400
    assert control.post("/reset", json={"colour": "blue"}).status_code == 400


def test_serve_mounts_fakes_on_a_real_loopback_socket(cloud):
    cloud.add_issue("ABC", "Story", "Over the wire")

    with serve({"/jira": cloud}) as server:
        base = server.url("/jira")
        response = httpx.get(f"{base}/rest/api/3/issue/ABC-1", auth=(DEMO_EMAIL, DEMO_TOKEN))
        unmounted = httpx.get(f"{server.base_url}/github/user")

    assert base.startswith("http://127.0.0.1:") and server.port > 0
    assert response.status_code == 200
    assert response.json()["self"] == f"{base}/rest/api/3/issue/10001"
    assert unmounted.status_code == 404
    with pytest.raises(ValueError, match="loopback"):
        serve({"/jira": cloud}, host="0.0.0.0")  # noqa: S104 (the refusal is the point)


def test_run_fake_tools_refuses_a_host_that_is_not_loopback():
    with pytest.raises(CommandError, match="loopback"):
        call_command("run_fake_tools", "--host", "0.0.0.0", "--port", "0")  # noqa: S104 (the refusal is the point)


# Shapes against recorded Jira Cloud payloads.


def recorded_issues(fixtures_dir, count: int) -> list[dict]:
    csv.field_size_limit(sys.maxsize)  # each row holds a whole issue with its changelog
    with (fixtures_dir / RECORDED_ISSUES).open(newline="", encoding="utf-8") as handle:
        return [json.loads(row["data"]) for row in itertools.islice(csv.DictReader(handle), count)]


def parse_jira_timestamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")


def status_changes(recorded: dict) -> list[tuple[datetime, str, str]]:
    """The recorded status changes, oldest first (Cloud embeds histories newest first)."""
    return [
        (parse_jira_timestamp(history["created"]), item["fromString"], item["toString"])
        for history in reversed(recorded["changelog"]["histories"])
        for item in history["items"]
        if item["field"] == "status"
    ]


def key_sets(dicts) -> set[frozenset]:
    return {frozenset(each) for each in dicts}


@pytest.mark.needs_fixtures
def test_a_rendered_issue_has_the_shape_of_recorded_jira_cloud_issues(fixtures_dir):
    recorded = recorded_issues(fixtures_dir, 5)
    fake = FakeJira("cloud", time_zone="Asia/Shanghai")
    categories = {}
    for issue in recorded:
        categories.setdefault(
            issue["fields"]["status"]["name"], issue["fields"]["status"]["statusCategory"]["key"]
        )
        for _, from_status, to_status in status_changes(issue):
            categories.setdefault(from_status, "indeterminate")
            categories.setdefault(to_status, "indeterminate")
    issue_types = sorted({issue["fields"]["issuetype"]["name"] for issue in recorded})
    fake.add_project(recorded[0]["fields"]["project"]["key"], statuses=categories, issue_types=issue_types)

    with client_for(fake) as client:
        for real in recorded:
            fields = real["fields"]
            key = fake.add_issue(
                fields["project"]["key"],
                fields["issuetype"]["name"],
                fields["summary"],
                status=fields["status"]["name"],
                created=parse_jira_timestamp(fields["created"]),
                updated=parse_jira_timestamp(fields["updated"]),
                histories=status_changes(real),
            )
            rendered = client.get(f"/rest/api/2/issue/{key}", params={"expand": "changelog"}).json()

            assert set(rendered) == set(real)
            assert rendered["fields"]["created"] == fields["created"]
            assert set(rendered["fields"]) <= set(fields)
            for name, value in rendered["fields"].items():
                if isinstance(value, dict) and isinstance(fields[name], dict):
                    assert set(value) <= set(fields[name]), name
            assert set(rendered["fields"]["status"]) == set(fields["status"])
            assert set(rendered["fields"]["status"]["statusCategory"]) == set(
                fields["status"]["statusCategory"]
            )
            assert set(rendered["changelog"]) == set(real["changelog"])
            real_histories, fake_histories = (
                real["changelog"]["histories"],
                rendered["changelog"]["histories"],
            )
            assert key_sets(fake_histories) <= key_sets(real_histories)
            assert key_sets(h["author"] for h in fake_histories) <= key_sets(
                h["author"] for h in real_histories
            )
            real_status_items = [i for h in real_histories for i in h["items"] if i["field"] == "status"]
            fake_status_items = [i for h in fake_histories for i in h["items"] if i["field"] == "status"]
            assert len(fake_status_items) == len(real_status_items)
            assert key_sets(fake_status_items) == key_sets(real_status_items)


def test_serve_opens_the_fakes_beyond_loopback_only_when_told_the_network_is_private(cloud):
    with serve({"/jira": cloud}, host="0.0.0.0", private_network=True) as server:  # noqa: S104 (asked for)
        response = httpx.get(f"http://127.0.0.1:{server.port}/jira/rest/api/3/serverInfo")
    assert response.status_code == 200
