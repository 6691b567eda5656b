"""The fake Targetprocess on its own: shapes, paging, where, auth, writes, faults, control endpoints."""

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from connectors.fakes.targetprocess import (
    DEMO_LOGIN,
    DEMO_PASSWORD,
    DEMO_TOKEN,
    FakeTargetprocess,
    format_tp_date,
    parse_include,
    parse_where,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TP_DATE = re.compile(r"/Date\(\d+[+-]\d{4}\)/")


@pytest.fixture
def fake():
    tool = FakeTargetprocess(now=lambda: T0)
    tool.project = tool.add_project("Web shop")
    return tool


@pytest.fixture
def client(fake):
    with httpx.Client(transport=httpx.WSGITransport(app=fake), base_url="https://tp.example.test") as http:
        yield http


def get(client, path, token=DEMO_TOKEN, **params):
    return client.get(path, params={"format": "json", **({"access_token": token} if token else {}), **params})


def post(client, path, body, **params):
    return client.post(path, params={"format": "json", "access_token": DEMO_TOKEN, **params}, json=body)


def test_items_have_the_v1_shape_with_references_and_microsoft_dates(fake, client):
    feature = fake.add_item("Feature", "Checkout", custom_fields={"Jira Key": "ABC-1"})
    fake.add_item("UserStory", "Pay", parent=feature, created=T0 - timedelta(days=1))
    response = get(client, "/api/v1/UserStories")
    assert response.headers["content-type"].startswith("application/json")
    assert '"\\/Date(' in response.text  # escaped on the wire, as Targetprocess sends them
    (story,) = response.json()["Items"]
    assert "Next" not in response.json()
    assert story["ResourceType"] == "UserStory" and isinstance(story["Id"], int)
    assert story["EntityState"] == {
        "ResourceType": "EntityState",
        "Id": fake.states_of("UserStory")[0].id,
        "Name": "Open",
        "NumericPriority": 1.0,
    }
    assert story["Feature"] == {"ResourceType": "Feature", "Id": feature, "Name": "Checkout"}
    assert story["Project"]["Process"] == {"ResourceType": "Process", "Id": 1, "Name": "Scrum"}
    assert story["EntityType"] == {"ResourceType": "EntityType", "Id": 4, "Name": "UserStory"}
    assert TP_DATE.fullmatch(story["CreateDate"]) and story["CreateDate"].endswith("+0100)/")
    (feature_json,) = get(client, "/api/v1/Features").json()["Items"]
    assert feature_json["CustomFields"] == [{"Name": "Jira Key", "Type": "Text", "Value": "ABC-1"}]


def test_dates_carry_the_server_offset_at_that_instant():
    zone = FakeTargetprocess(time_zone="Europe/Berlin").zone
    assert format_tp_date(datetime(2026, 1, 1, tzinfo=UTC), zone) == "/Date(1767225600000+0100)/"
    assert format_tp_date(datetime(2026, 7, 1, tzinfo=UTC), zone).endswith("+0200)/")


def test_take_skip_and_next_links_page_through_everything_with_ties_by_id(fake, client):
    ids = [fake.add_item("Bug", f"Bug {n}") for n in range(7)]
    seen, url = [], "/api/v1/Bugs"
    params = {"format": "json", "access_token": DEMO_TOKEN, "take": 3, "orderBy": "ModifyDate"}
    while url:
        body = client.get(url, params=params).json()
        seen += [item["Id"] for item in body["Items"]]
        url, params = body.get("Next"), None
        if url:
            assert "skip=" in url and "take=3" in url and "orderBy=ModifyDate" in url
    assert seen == ids
    page = get(client, "/api/v1/Bugs", take=3, skip=3).json()
    assert "Prev" in page and "skip=0" in page["Prev"]
    assert len(get(client, "/api/v1/Bugs").json()["Items"]) == 7  # default take 25
    fake.add_item("Bug", "More")
    assert len(get(client, "/api/v1/Bugs", take=5000).json()["Items"]) == 8  # clamped to 1000, not refused


def test_where_on_modify_date_reads_literals_in_the_server_zone_and_gt_is_strict(fake, client):
    at = datetime(2026, 3, 2, 8, 0, 0, tzinfo=UTC)  # 09:00:00 in Berlin
    exact = fake.add_item("UserStory", "Exact", created=at)
    later = fake.add_item("UserStory", "Later", created=at + timedelta(milliseconds=1))

    def ids(where):
        response = get(client, "/api/v1/UserStories", where=where)
        assert response.status_code == 200, response.text
        return [item["Id"] for item in response.json()["Items"]]

    assert ids("ModifyDate gt '2026-03-02 09:00:00'") == [later]
    assert ids("(ModifyDate gte '2026-03-02 09:00:00')") == [exact, later]
    assert ids(f"(ModifyDate gte '2026-03-02') and (Id eq {exact})") == [exact]
    assert ids(f"(Project.Id in ({fake.project}, 9999)) and (ModifyDate lt '2026-03-02 09:00:00.001')") == [
        exact
    ]


@pytest.mark.parametrize(
    "where, message",
    [
        ("(Id eq 1) or (Id eq 2)", "'or' is not supported"),
        ("Colour eq 'red'", "Could not find 'Colour'"),
        ("ModifyDate gt 'yesterday'", "not a valid date"),
        ("Name contains 'x'", "does not support the operator"),
        ("(Id eq 1", "expected ')'"),
    ],
)
def test_unsupported_where_is_a_400_in_the_tool_error_shape(client, where, message):
    response = get(client, "/api/v1/UserStories", where=where)
    assert response.status_code == 400
    body = response.json()
    assert body["Status"] == "BadRequest" and message in body["Message"] and "ErrorId" in body


def test_parsers():
    assert [c.field for c in parse_where("(A.Id in (1,2)) and (B gte '2026-01-01 10:00')")] == ["A.Id", "B"]
    assert parse_include("[Id,Master[Id,EntityType],Name]") == [
        ("Id", None),
        ("Master", [("Id", None), ("EntityType", None)]),
        ("Name", None),
    ]
    with pytest.raises(ValueError):
        parse_include("Id,Name")


def test_include_selects_fields_and_expands_references(fake, client):
    request = fake.add_item("Request", "Ask")
    feature = fake.add_item("Feature", "Answer")
    fake.relate(request, feature)
    (relation,) = get(
        client,
        "/api/v1/Relations",
        where=f"Master.Id eq {request}",
        include="[Master[Id,Name,EntityType],RelationType]",
    ).json()["Items"]
    assert relation["Master"]["EntityType"]["Name"] == "Request"
    assert set(relation) == {"ResourceType", "Id", "Master", "RelationType"}
    (only_id,) = get(client, "/api/v1/Requests", include="[Id]").json()["Items"]
    assert only_id == {"ResourceType": "Request", "Id": request}
    assert get(client, "/api/v1/Requests", include="[Nope]").status_code == 400


def test_auth_by_token_or_basic_and_401_otherwise(client):
    assert get(client, "/api/v1/Users/LoggedUser").json()["Login"] == DEMO_LOGIN
    basic = client.get(
        "/api/v1/Users/LoggedUser", params={"format": "json"}, auth=(DEMO_LOGIN, DEMO_PASSWORD)
    )
    assert basic.status_code == 200
    for response in (
        get(client, "/api/v1/Users/LoggedUser", token=None),
        get(client, "/api/v1/Users/LoggedUser", token="wrong"),
        client.get("/api/v1/Users/LoggedUser", params={"format": "json"}, auth=(DEMO_LOGIN, "wrong")),
    ):
        assert response.status_code == 401 and response.json()["Status"] == "Unauthorized"


def test_without_format_json_the_answer_is_xml(client):
    response = client.get(
        "/api/v1/UserStories", params={"access_token": DEMO_TOKEN}, headers={"Accept": "application/xml"}
    )
    assert response.headers["content-type"].startswith("text/xml")


def test_history_records_state_and_effort_changes(fake, client):
    story = fake.add_item(
        "UserStory",
        "Story",
        created=T0 - timedelta(days=2),
        history=[(T0 - timedelta(days=1), "In Progress")],
    )
    fake.edit(story, {"Effort": 3})
    fake.edit(
        story, {"Name": "Renamed"}
    )  # no record: simple history tracks state, effort, release, iteration
    records = get(client, f"/api/v1/UserStories/{story}/History").json()["Items"]
    assert [(r["EntityState"]["Name"], r["Effort"]) for r in records] == [
        ("Open", 0.0),
        ("In Progress", 0.0),
        ("In Progress", 3.0),
    ]
    assert records[0]["ResourceType"] == "UserStorySimpleHistory"
    assert records[0]["UserStory"] == {"ResourceType": "UserStory", "Id": story, "Name": "Renamed"}
    assert records[0]["Modifier"]["Login"] == DEMO_LOGIN
    batch = get(
        client, "/api/v1/UserStorySimpleHistories", where=f"UserStory.Id in ({story})", orderBy="Date"
    )
    assert [r["Id"] for r in batch.json()["Items"]] == [r["Id"] for r in records]


def test_entity_states_generals_and_projects(fake, client):
    states = get(
        client, "/api/v1/EntityStates", where="(EntityType.Name eq 'Bug') and (Process.Id eq 1)"
    ).json()
    assert [s["Name"] for s in states["Items"]] == ["Open", "In Progress", "Fixed", "Done"]
    assert states["Items"][0]["IsInitial"] is True and states["Items"][-1]["IsFinal"] is True
    bug = fake.add_item("Bug", "Bug")
    general = get(client, f"/api/v1/Generals/{bug}").json()
    assert (general["ResourceType"], general["EntityType"]["Name"]) == ("General", "Bug")
    assert get(client, f"/api/v1/Projects/{fake.project}").json()["Process"]["Name"] == "Scrum"
    missing = get(client, "/api/v1/Bugs/99999")
    assert missing.status_code == 404 and missing.json()["Status"] == "NotFound"


def test_create_update_delete_and_relations_over_http(fake, client):
    created = post(client, "/api/v1/Features", {"Name": "New", "Project": {"Id": fake.project}, "Tags": "a"})
    assert created.status_code == 201
    feature = created.json()["Id"]
    done = next(s for s in fake.states.values() if s.entity_type == "Feature" and s.name == "Done")
    assert post(client, f"/api/v1/Features/{feature}", {"EntityState": {"Id": done.id}}).status_code == 200
    assert (
        post(client, "/api/v1/Features", {"Id": feature, "Name": "Via collection"}).json()["Name"]
        == "Via collection"
    )
    assert [fake.states[r.state_id].name for r in fake.entities[feature].history] == ["New", "Done"]
    bug_state = next(s for s in fake.states.values() if s.entity_type == "Bug")
    wrong_state = post(client, f"/api/v1/Features/{feature}", {"EntityState": {"Id": bug_state.id}})
    assert wrong_state.status_code == 400
    unknown_field = post(client, f"/api/v1/Features/{feature}", {"Colour": "red"})
    assert unknown_field.status_code == 400 and "Could not find 'Colour'" in unknown_field.json()["Message"]
    assert post(client, "/api/v1/Features", {"Name": "No project"}).status_code == 400

    request = fake.add_item("Request", "Ask")
    relation = post(client, "/api/v1/Relations", {"Master": {"Id": request}, "Slave": {"Id": feature}})
    assert relation.status_code == 201 and relation.json()["RelationType"]["Name"] == "Relation"
    assert (
        post(client, "/api/v1/Relations", {"Master": {"Id": request}, "Slave": {"Id": feature}}).status_code
        == 400
    )
    deleted = client.delete(
        f"/api/v1/Features/{feature}", params={"format": "json", "access_token": DEMO_TOKEN}
    )
    assert deleted.status_code == 200 and feature not in fake.entities and not fake.relations
    assert [write.method for write in fake.writes] == ["POST", "POST", "POST", "POST", "DELETE"]


def test_faults_rate_limit_fail_and_malformed(fake, client):
    story = fake.add_item("UserStory", "Story")
    fake.rate_limit(1, retry_after=7)
    limited = get(client, "/api/v1/UserStories")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
    assert limited.json()["Status"] == "TooManyRequests"
    fake.fail(1, 503)
    assert get(client, "/api/v1/UserStories").status_code == 503
    fake.malformed(story)
    (broken,) = get(client, "/api/v1/UserStories").json()["Items"]
    assert broken["CreateDate"] == "not-a-date" and "EntityState" not in broken
    fake.clear_faults()
    assert "EntityState" in get(client, "/api/v1/UserStories").json()["Items"][0]


def test_a_lost_answer_makes_the_change_and_answers_an_error(fake, client):
    """Reads are untouched; the next write is made, but the client only sees a gateway timeout."""
    fake.lose_answers(1)
    assert get(client, "/api/v1/UserStories").status_code == 200
    lost = post(client, "/api/v1/UserStories", {"Name": "Made anyway", "Project": {"Id": fake.project}})
    assert lost.status_code == 504
    assert [e.name for e in fake.entities.values()] == ["Made anyway"]
    answered = post(client, "/api/v1/UserStories", {"Name": "Answered", "Project": {"Id": fake.project}})
    assert answered.status_code == 201
    assert client.post("/_fake/faults", json={"lose_answers": {"count": 1, "status": 502}}).status_code == 200
    assert (
        post(client, "/api/v1/UserStories", {"Name": "Third", "Project": {"Id": fake.project}}).status_code
        == 502
    )
    assert len(fake.entities) == 3


def test_control_endpoints_seed_and_inspect_the_fake(fake, client):
    assert client.post("/_fake/clock", json={"now": "2026-04-01T12:00:00+00:00"}).status_code == 200
    project = client.post("/_fake/projects", json={"name": "Mobile"}).json()["Id"]
    user = client.post("/_fake/users", json={"login": "ann", "token": "ann-token", "first_name": "Ann"})
    assert user.status_code == 201
    item = client.post(
        "/_fake/items",
        json={
            "entity_type": "UserStory",
            "name": "Seeded",
            "project": project,
            "created": "2026-03-01T10:00:00+00:00",
            "history": [{"at": "2026-03-02T10:00:00+00:00", "to": "In Progress", "author": "ann"}],
            "custom_fields": {"Jira Key": "ABC-7"},
        },
    )
    assert item.status_code == 201
    story = item.json()["Id"]
    assert client.post(f"/_fake/items/{story}/transition", json={"to": "Done"}).status_code == 204
    assert client.post(f"/_fake/items/{story}/edit", json={"fields": {"Effort": 2}}).status_code == 204
    other = client.post(
        "/_fake/items", json={"entity_type": "Request", "name": "Ask", "project": project}
    ).json()["Id"]
    assert client.post("/_fake/relations", json={"master": other, "slave": story}).status_code == 201
    entity = fake.entities[story]
    assert [fake.states[r.state_id].name for r in entity.history] == ["Open", "In Progress", "Done", "Done"]
    assert entity.history[1].modifier.login == "ann"
    assert entity.modified == datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
    assert (
        client.post("/_fake/faults", json={"malformed": [story], "rate_limit": {"count": 1}}).status_code
        == 200
    )
    stats = client.get("/_fake/stats").json()
    assert (stats["entities"], stats["relations"], stats["malformed"]) == (2, 1, [story])
    assert stats["faults"]["rate_limit_count"] == 1
    assert client.post("/_fake/items", json={"entity_type": "UserStory"}).status_code == 400
    assert client.post("/_fake/reset", json={"time_zone": "UTC"}).status_code == 200
    assert (fake.entities, fake.projects, fake.time_zone) == ({}, {}, "UTC")
    assert get(client, "/api/v1/Users/LoggedUser").status_code == 200  # the demo user survives a reset


def test_the_programmatic_api_refuses_impossible_histories(fake):
    with pytest.raises(ValueError, match="time order"):
        fake.add_item("UserStory", "Back", created=T0, history=[(T0 - timedelta(hours=1), "Done")])
    with pytest.raises(Exception, match="no state 'Shipped'"):
        fake.add_item("UserStory", "Odd", history=[(T0, "Shipped")])
    story = fake.add_item("UserStory", "Story")
    with pytest.raises(Exception, match="already in state"):
        fake.transition(story, "Open")
    assert fake.state_names("Request") == ["New", "Open", "In Progress", "Done", "Rejected"]
    assert fake.credentials() == {"access_token": DEMO_TOKEN} and fake.label == "Targetprocess"
