"""The Targetprocess provider against the fake Targetprocess, over httpx's WSGI transport."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

import connectors.providers.targetprocess  # noqa: F401 (registers the provider)
from connectors.base import ItemRef, ScopeSpec, ToolLink
from connectors.exceptions import AuthError, BadRequest, RateLimited
from connectors.fakes.targetprocess import DEMO_LOGIN, DEMO_PASSWORD, DEMO_TOKEN, FakeTargetprocess
from connectors.ingest import scope_sync
from connectors.models import Scope, SyncError, ToolConnection
from connectors.providers.targetprocess.items import parse_tp_date
from connectors.selectors import connector_instance
from tests.factories import ProductFactory, map_types
from vsm.choices import FlowState, LinkKind
from vsm.models import Artifact, ArtifactLink, StateTransition

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TYPE_MAP = {"Epic": "epic", "Feature": "feature", "UserStory": "story", "Request": "request", "Bug": "defect"}
STATUS_MAP = {
    "New": FlowState.NEW,
    "Open": FlowState.NEW,
    "Planned": FlowState.WAITING,
    "In Progress": FlowState.ACTIVE,
    "In Testing": FlowState.WAITING,
    "Fixed": FlowState.WAITING,
    "Done": FlowState.DONE,
    "Rejected": FlowState.CANCELED,
}


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class TpWorld:
    fake: FakeTargetprocess
    clock: Clock
    connection: ToolConnection
    scope: Scope
    project: int
    sleeps: list[float] = field(default_factory=list)

    @property
    def transport(self) -> httpx.WSGITransport:
        return httpx.WSGITransport(app=self.fake)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def connector(self, **credentials):
        if credentials:
            self.connection.credentials = credentials
        return connector_instance(self.connection, transport=self.transport, sleep=self.sleep)

    def sync(self):
        return scope_sync(self.scope.pk, transport=self.transport, sleep=self.sleep)

    def story(self, name: str, **kwargs) -> int:
        return self.fake.add_item("UserStory", name, project=self.project, **kwargs)


def make_world(options=None, time_zone="Europe/Berlin") -> TpWorld:
    clock = Clock(T0)
    fake = FakeTargetprocess(time_zone=time_zone, now=clock)
    project = fake.add_project("Web shop", created=T0 - timedelta(days=60))
    connection = ToolConnection.objects.create(
        kind="targetprocess",
        name=f"Targetprocess {ToolConnection.objects.count() + 1}",
        base_url="https://tp.example.test",
        options={"time_zone": "Europe/Berlin"} if options is None else options,
        credentials=fake.credentials(),
        requests_per_second=0,
    )
    map_types(connection, TYPE_MAP, STATUS_MAP)
    scope = Scope.objects.create(
        connection=connection, name="Web shop", query=str(project), product=ProductFactory(), page_size=7
    )
    return TpWorld(fake, clock, connection, scope, project)


@pytest.fixture
def world(db) -> TpWorld:
    return make_world()


def read_all(connector, query, since=None, page_size=7):
    return list(connector.read_changes(ScopeSpec(query=query, page_size=page_size), since))


def keys_of(pages):
    return [item.key for page in pages for item in page.items]


# Dates and auth -------------------------------------------------------------------------------------


def test_microsoft_json_dates_are_parsed_exactly_with_their_offset():
    at = parse_tp_date("/Date(1717000000123+0200)/")
    assert at == datetime(2024, 5, 29, 16, 26, 40, 123000, tzinfo=UTC)
    assert at.utcoffset() == timedelta(hours=2)
    assert parse_tp_date("/Date(1374757420000-0500)/").utcoffset() == timedelta(hours=-5)
    assert parse_tp_date("/Date(0)/") == datetime(1970, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_tp_date("2024-05-29T16:26:40")


def test_check_connection_names_the_user_with_a_token_or_basic_auth(world):
    assert world.connector().check_connection() == "VSM Demo"
    assert world.connector(login=DEMO_LOGIN, password=DEMO_PASSWORD).check_connection() == "VSM Demo"
    assert "access_token" not in world.fake.queries[-1][1]  # Basic auth sends no token


def test_bad_credentials_are_an_auth_error_that_never_shows_the_token(world):
    with pytest.raises(AuthError) as caught:
        world.connector(access_token="wrong-secret-token").check_connection()
    assert "401" in str(caught.value)
    assert "wrong-secret-token" not in str(caught.value)


def test_missing_credentials_say_what_is_needed(world):
    with pytest.raises(AuthError, match="access token, or a login and password"):
        world.connector(login="someone")


def test_a_token_echoed_by_the_tool_is_scrubbed_from_errors(world):
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"Status": "BadRequest", "message": f"bad request {request.url}"})

    world.connection.credentials = {"access_token": "s3cr3t/token+x"}
    connector = connector_instance(world.connection, transport=httpx.MockTransport(echo))
    with pytest.raises(BadRequest) as caught:
        connector.check_connection()
    assert "s3cr3t" not in str(caught.value)
    assert "access_token=***" in str(caught.value)


# Reading ---------------------------------------------------------------------------------------------


def test_paging_with_one_modify_date_across_page_boundaries_skips_and_repeats_nothing(world):
    same = T0 - timedelta(hours=1)
    ids = [world.story(f"Story {n}", created=same - timedelta(days=1), modified=same) for n in range(25)]
    pages = read_all(world.connector(), str(world.project))
    assert [len(page.items) for page in pages] == [7, 7, 7, 4]
    assert sorted(keys_of(pages)) == sorted(f"TP-{entity_id}" for entity_id in ids)
    assert len(set(keys_of(pages))) == 25
    assert world.fake.requests["GET entities"] == 4 + 3  # four story pages, one each for the other types


def test_types_are_merged_oldest_change_first_across_pages(world):
    fake, base = world.fake, T0 - timedelta(days=10)
    for n in range(12):
        entity_type = ("Feature", "UserStory", "Request", "Bug")[n % 4]
        fake.add_item(entity_type, f"Item {n}", project=world.project, created=base + timedelta(hours=n))
    pages = read_all(world.connector(), str(world.project), page_size=5)
    updated = [item.updated for page in pages for item in page.items]
    assert len(updated) == 12 and updated == sorted(updated)
    assert {item.item_type for page in pages for item in page.items} == {
        "Feature",
        "UserStory",
        "Request",
        "Bug",
    }


def test_since_is_written_in_the_server_zone_floored_to_the_second(world):
    connector = world.connector()
    summer = datetime(2026, 7, 1, 10, 0, 5, 900000, tzinfo=UTC)
    assert connector.since_literal(summer) == "2026-07-01 12:00:05"  # Berlin is +02:00 in July
    assert connector.since_literal(T0) == "2026-03-02 10:00:00"  # and +01:00 in March

    since = T0 - timedelta(minutes=30)
    old = world.story("Old", created=T0 - timedelta(days=3), modified=since - timedelta(seconds=1))
    boundary = world.story(
        "Boundary", created=T0 - timedelta(days=3), modified=since + timedelta(milliseconds=400)
    )
    new = world.story("New", created=T0 - timedelta(minutes=5))
    assert keys_of(read_all(connector, str(world.project), since)) == [f"TP-{boundary}", f"TP-{new}"]
    where = [query["where"] for path, query in world.fake.queries if path == "/api/v1/UserStories"][-1]
    assert where == f"(Project.Id in ({world.project})) and (ModifyDate gte '2026-03-02 09:30:00')"
    assert f"TP-{old}" in keys_of(read_all(connector, str(world.project)))


def test_without_a_time_zone_option_the_offset_is_learnt_with_an_hour_of_margin(db):
    world = make_world(options={}, time_zone="America/Chicago")
    connector = world.connector()
    # The fake's user was created in March before US daylight saving: -06:00, less an hour of margin.
    assert connector.since_literal(T0) == "2026-03-02 02:00:00"
    since = T0 - timedelta(minutes=30)
    recent = world.story("Recent", created=since - timedelta(minutes=20))
    assert keys_of(read_all(connector, str(world.project), since)) == [f"TP-{recent}"]


def test_a_scope_names_project_ids_or_every_project(world):
    other = world.fake.add_project("Mobile")
    mine = world.story("Mine")
    theirs = world.fake.add_item("UserStory", "Theirs", project=other)
    connector = world.connector()
    assert keys_of(read_all(connector, str(world.project))) == [f"TP-{mine}"]
    assert sorted(keys_of(read_all(connector, "*"))) == sorted([f"TP-{mine}", f"TP-{theirs}"])
    assert sorted(keys_of(read_all(connector, f"{world.project}, {other}"))) == sorted(
        [f"TP-{mine}", f"TP-{theirs}"]
    )
    with pytest.raises(BadRequest, match="project ids"):
        read_all(connector, "Web shop")


def test_history_becomes_status_changes_at_exact_times_ignoring_effort_records(world):
    start = T0 - timedelta(days=5)
    story = world.story(
        "Busy",
        created=start,
        history=[
            (start + timedelta(hours=1), "In Progress"),
            (start + timedelta(hours=30, milliseconds=250), "Done"),
        ],
    )
    world.fake.edit(story, {"Effort": 5}, at=start + timedelta(hours=31), author=DEMO_LOGIN)
    assert len(world.fake.entities[story].history) == 4
    (item,) = [item for page in read_all(world.connector(), str(world.project)) for item in page.items]
    assert [(c.from_status, c.to_status) for c in item.changelog] == [
        ("Open", "In Progress"),
        ("In Progress", "Done"),
    ]
    assert [c.at for c in item.changelog] == [
        start + timedelta(hours=1),
        start + timedelta(hours=30, milliseconds=250),
    ]
    assert item.changelog[0].author == "VSM Demo"
    assert item.changelog[0].at.utcoffset() == timedelta(hours=1)  # the server's offset, kept
    assert world.fake.requests["GET SimpleHistories"] == 1  # one per type on the page, not one per item


def test_fields_keep_custom_fields_and_parents_and_relations_become_links(world):
    fake, project = world.fake, world.project
    epic = fake.add_item("Epic", "Payments", project=project)
    feature = fake.add_item("Feature", "Checkout", project=project, parent=epic)
    story = world.story("Pay", parent=feature, custom_fields={"Jira Key": "ABC-12"})
    bug = fake.add_item("Bug", "Crash", project=project, parent=story)
    request = fake.add_item(
        "Request", "Pay by invoice", project=project, custom_fields={"Salesforce Id": "500Dn000001"}
    )
    fake.relate(request, feature)  # master: the request
    fake.relate(story, bug, "Blocker")
    connection = world.connection
    connection.options = {**connection.options, "entity_types": "Epic,Feature,UserStory,Request,Bug"}
    items = {item.key: item for page in read_all(world.connector(), str(project)) for item in page.items}

    def links(entity_id):
        return [(link.kind, link.target_key, link.incoming) for link in items[f"TP-{entity_id}"].links]

    assert links(feature) == [("child_of", f"TP-{epic}", False), ("derived_from", f"TP-{request}", False)]
    assert links(request) == [("derived_from", f"TP-{feature}", True)]
    assert links(story) == [("child_of", f"TP-{feature}", False), ("relates_to", f"TP-{bug}", False)]
    assert links(bug) == [("child_of", f"TP-{story}", False), ("relates_to", f"TP-{story}", True)]
    assert items[f"TP-{story}"].fields["CustomFieldValues"] == {"Jira Key": "ABC-12"}
    assert items[f"TP-{request}"].fields["CustomFieldValues"]["Salesforce Id"] == "500Dn000001"
    assert items[f"TP-{story}"].url == f"https://tp.example.test/entity/{story}"


def test_a_malformed_item_is_a_failure_and_the_rest_of_the_page_reads(world):
    ids = [world.story(f"Story {n}") for n in range(3)]
    world.fake.malformed(ids[1])
    (page,) = read_all(world.connector(), str(world.project))
    assert keys_of([page]) == [f"TP-{ids[0]}", f"TP-{ids[2]}"]
    assert [failure.key for failure in page.failures] == [f"TP-{ids[1]}"]
    assert "cannot read UserStory" in page.failures[0].message


def test_429_is_waited_out_and_a_long_one_raised(world):
    world.story("One")
    world.fake.rate_limit(2, retry_after=3)
    assert len(read_all(world.connector(), str(world.project))[0].items) == 1
    assert world.sleeps[:2] == [3, 3]
    world.sleeps.clear()
    world.fake.rate_limit(1, retry_after=3600)
    with pytest.raises(RateLimited):
        read_all(world.connector(), str(world.project))
    assert world.sleeps == []


def test_list_ids_covers_every_item_of_the_scope(world):
    ids = [world.story(f"Story {n}") for n in range(5)]
    ids.append(world.fake.add_item("Bug", "Bug", project=world.project))
    world.fake.add_item("Bug", "Elsewhere", project=world.fake.add_project("Other"))
    assert set(world.connector().list_ids(ScopeSpec(str(world.project)))) == {str(i) for i in ids}


def test_read_item_by_key(world):
    story = world.story("Alone", history=[(T0 + timedelta(minutes=1), "In Progress")])
    item = world.connector().read_item(f"TP-{story}", ScopeSpec(str(world.project)))
    assert (item.key, item.item_type, item.status, len(item.changelog)) == (
        f"TP-{story}",
        "UserStory",
        "In Progress",
        1,
    )


# Through the ingest -------------------------------------------------------------------------------


def test_history_lands_as_state_transitions_and_links_through_the_ingest(world):
    start = T0 - timedelta(days=4)
    feature = world.fake.add_item("Feature", "Checkout", project=world.project, created=start)
    story = world.story(
        "Pay",
        created=start,
        parent=feature,
        history=[
            (start + timedelta(hours=2), "In Progress"),
            (start + timedelta(hours=20), "In Testing"),
            (start + timedelta(hours=26), "Done"),
        ],
    )
    request = world.fake.add_item("Request", "Invoice", project=world.project, created=start)
    world.fake.relate(request, feature, at=start + timedelta(hours=1))
    result = world.sync()
    assert result.outcome == "success", result
    assert (result.counts["read"], result.counts["created"]) == (3, 3)
    artifact = Artifact.objects.get(key=f"TP-{story}")
    assert artifact.flow_state == FlowState.DONE
    assert list(artifact.transitions.order_by("at").values_list("to_state", flat=True)) == [
        "active",
        "waiting",
        "done",
    ]
    assert artifact.done_at - artifact.first_started_at == timedelta(hours=24)
    assert StateTransition.objects.filter(artifact=artifact).first().at == start + timedelta(hours=2)
    assert set(ArtifactLink.objects.values_list("source__key", "target__key", "kind")) == {
        (f"TP-{story}", f"TP-{feature}", LinkKind.CHILD_OF),
        (f"TP-{feature}", f"TP-{request}", LinkKind.DERIVED_FROM),
    }
    again = world.sync()
    assert (again.counts["created"], again.counts["updated"]) == (0, 0)


def test_bad_credentials_fail_the_run_with_authentication_failed_on_the_connection(world):
    world.connection.credentials = {"access_token": "not-the-token"}
    world.connection.save()
    result = world.sync()
    assert result.outcome == "failed"
    world.connection.refresh_from_db()
    assert world.connection.last_error.startswith("authentication failed")
    assert "not-the-token" not in world.connection.last_error


def test_a_malformed_item_becomes_a_sync_error_while_the_others_land(world):
    ids = [world.story(f"Story {n}") for n in range(4)]
    world.fake.malformed(ids[2])
    result = world.sync()
    assert result.outcome == "partial"
    assert sorted(Artifact.objects.values_list("key", flat=True)) == sorted(
        f"TP-{i}" for i in ids[:2] + ids[3:]
    )
    error = SyncError.objects.get()
    assert (error.stage, error.item_key, error.payload["Id"]) == ("read", f"TP-{ids[2]}", ids[2])


# Writing ---------------------------------------------------------------------------------------------


def test_create_update_and_transition_write_to_the_tool(world):
    connector = world.connector()
    scope = ScopeSpec(str(world.project))
    item = connector.create_item(scope, "UserStory", {"Name": "From the portal", "Description": "Hi"})
    entity = world.fake.entities[int(item.native_id)]
    assert (item.title, item.status, entity.project_id, entity.description) == (
        "From the portal",
        "Open",
        world.project,
        "Hi",
    )
    assert world.fake.writes[-1].method == "POST" and world.fake.writes[-1].path == "/api/v1/UserStories"
    ref = ItemRef(item.native_id, item.key)

    world.clock.advance(minutes=5)
    connector.update_item(ref, {"Name": "Renamed", "CustomFields": [{"Name": "Jira Key", "Value": "ABC-9"}]})
    world.clock.advance(minutes=5)
    connector.transition_item(ref, "in progress")  # state names match without regard to case
    assert (entity.name, world.fake.states[entity.state_id].name, entity.custom_fields) == (
        "Renamed",
        "In Progress",
        {"Jira Key": "ABC-9"},
    )
    assert [world.fake.states[record.state_id].name for record in entity.history] == ["Open", "In Progress"]
    assert entity.history[-1].date == world.clock.now
    assert [(write.method, write.path) for write in world.fake.writes[-2:]] == [
        ("POST", f"/api/v1/UserStories/{entity.id}"),
        ("POST", f"/api/v1/UserStories/{entity.id}"),
    ]
    assert world.fake.writes[-1].body == {"EntityState": {"Id": entity.state_id}}
    connector.transition_item(ref, "In Progress")  # already there: nothing is written
    assert len(world.fake.writes) == 3


def test_writes_answer_201_on_create_and_200_on_update(world):
    client = httpx.Client(transport=world.transport, base_url="https://tp.example.test")
    params = {"format": "json", "access_token": DEMO_TOKEN}
    created = client.post(
        "/api/v1/Bugs", params=params, json={"Name": "Bug", "Project": {"Id": world.project}}
    )
    assert created.status_code == 201 and created.json()["ResourceType"] == "Bug"
    updated = client.post(f"/api/v1/Bugs/{created.json()['Id']}", params=params, json={"Name": "Bug 2"})
    assert updated.status_code == 200 and updated.json()["Name"] == "Bug 2"


def test_an_unknown_state_names_the_reachable_ones(world):
    story = world.story("Story")
    with pytest.raises(
        BadRequest,
        match="cannot move to “Shipped” from “Open”; reachable: Done, In Progress, In Testing, Planned",
    ):
        world.connector().transition_item(ItemRef(str(story), f"TP-{story}"), "Shipped")


def test_a_write_the_tool_refuses_is_a_bad_request(world):
    story = world.story("Story")
    with pytest.raises(BadRequest, match="400"):
        world.connector().update_item(ItemRef(str(story), f"TP-{story}"), {"NoSuchField": 1})


def test_add_link_creates_one_relation(world):
    request = world.fake.add_item("Request", "Ask", project=world.project)
    feature = world.fake.add_item("Feature", "Answer", project=world.project)
    connector = world.connector()
    for _ in range(2):
        connector.add_link(ItemRef(str(feature), f"TP-{feature}"), ToolLink("derived_from", f"TP-{request}"))
    assert [(r.master, r.slave) for r in world.fake.relations.values()] == [(feature, request)]
    item = connector.read_item(f"TP-{feature}", ScopeSpec("*"))
    assert [(link.kind, link.target_key) for link in item.links] == [("derived_from", f"TP-{request}")]


def test_the_server_offset_is_kept_on_item_dates(world):
    story = world.story("Summer", created=datetime(2026, 7, 1, 8, 0, tzinfo=UTC))
    item = world.connector().read_item(f"TP-{story}", ScopeSpec("*"))
    assert item.created == datetime(2026, 7, 1, 8, 0, tzinfo=UTC)
    assert item.created.tzinfo == timezone(timedelta(hours=2))
