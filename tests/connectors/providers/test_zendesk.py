"""The Zendesk provider against the fake Zendesk, over httpx's WSGI transport, and through the ingest."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest

import connectors.providers.zendesk  # noqa: F401 (registers the provider)
from connectors.base import ItemRef, ScopeSpec, ToolLink
from connectors.exceptions import AuthError, BadRequest, ConnectorError, RateLimited
from connectors.fakes.zendesk import JIRA_KEY_FIELD_ID, FakeZendesk
from connectors.ingest import scope_sync
from connectors.models import Scope, SyncError, SyncRun, ToolConnection
from connectors.selectors import connector_instance
from tests.factories import ProductFactory, map_types
from vsm.choices import FlowState
from vsm.models import Artifact, ArtifactLink

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
STATUS_MAP = {
    "new": FlowState.NEW,
    "open": FlowState.ACTIVE,
    "pending": FlowState.WAITING,
    "hold": FlowState.WAITING,
    "solved": FlowState.DONE,
    "closed": FlowState.DONE,
}


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> datetime:
        self.now += timedelta(**delta)
        return self.now


class RecordingTransport(httpx.BaseTransport):
    """The fake in-process, remembering (method, path, status) of every exchange."""

    def __init__(self, app):
        self.inner = httpx.WSGITransport(app=app)
        self.exchanges: list[tuple[str, str, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self.exchanges.append((request.method, request.url.path, response.status_code))
        return response


@dataclass
class ZendeskWorld:
    fake: FakeZendesk
    clock: Clock
    connection: ToolConnection
    scope: Scope
    sleeps: list[float] = field(default_factory=list)
    transport: RecordingTransport | None = None

    def __post_init__(self):
        self.transport = RecordingTransport(self.fake)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def connector(self, **credentials):
        if credentials:
            self.connection.credentials = credentials
        return connector_instance(self.connection, transport=self.transport, sleep=self.sleep)

    def sync(self, **kwargs):
        return scope_sync(self.scope.pk, transport=self.transport, sleep=self.sleep, **kwargs)

    def ticket(self, subject: str, *, hours_ago: float = 1, **kwargs) -> int:
        return self.fake.add_ticket(subject, created=self.clock.now - timedelta(hours=hours_ago), **kwargs)


def make_world(query: str = "*", page_size: int = 7) -> ZendeskWorld:
    clock = Clock(T0)
    fake = FakeZendesk(now=clock)
    connection = ToolConnection.objects.create(
        kind="zendesk",
        name=f"Zendesk {ToolConnection.objects.count() + 1}",
        base_url="https://acme.zendesk.test",
        options={"jira_key_field_id": str(JIRA_KEY_FIELD_ID)},
        credentials=fake.credentials(),
        requests_per_second=0,
    )
    map_types(connection, {"Ticket": "case"}, STATUS_MAP)
    scope = Scope.objects.create(
        connection=connection, name="Support", query=query, product=ProductFactory(), page_size=page_size
    )
    return ZendeskWorld(fake, clock, connection, scope)


@pytest.fixture
def world() -> ZendeskWorld:
    return make_world()


def read_all(zendesk, query="*", since=None, page_size=7):
    return list(zendesk.read_changes(ScopeSpec(query=query, page_size=page_size), since))


def keys_of(pages):
    return [item.key for page in pages for item in page.items]


# Connection ------------------------------------------------------------------------------------------


def test_check_connection_names_the_agent(world):
    assert world.connector().check_connection() == "VSM Demo Agent"


def test_bad_credentials_are_an_auth_error(world):
    with pytest.raises(AuthError, match="Couldn't authenticate you"):
        world.connector(email="agent@vsm.example", api_token="wrong").check_connection()


def test_missing_credentials_say_what_is_needed(world):
    with pytest.raises(AuthError, match="email and an API token"):
        world.connector(email="agent@vsm.example")


def test_bad_credentials_fail_the_sync_with_a_clear_message(world):
    world.ticket("Printer on fire")
    world.connection.credentials = {"email": "agent@vsm.example", "api_token": "wrong"}
    world.connection.save()
    result = world.sync()
    assert result.outcome == "failed"
    world.connection.refresh_from_db()
    assert world.connection.last_error.startswith("authentication failed")
    assert Artifact.objects.count() == 0


# Incremental reads -----------------------------------------------------------------------------------


def test_paging_through_tickets_sharing_one_timestamp_skips_and_repeats_none(world):
    same = world.clock.now - timedelta(hours=2)
    ids = [world.fake.add_ticket(f"Ticket {n}", created=same) for n in range(25)]
    pages = read_all(world.connector())
    assert [len(page.items) for page in pages] == [7, 7, 7, 4]
    assert keys_of(pages) == [f"#{ticket_id}" for ticket_id in ids]  # (timestamp, id) order
    exports = [path for method, path, _ in world.transport.exchanges if "incremental" in path]
    assert len(exports) == 4


def test_since_is_a_start_time_in_epoch_seconds_floored(world):
    old = world.ticket("Old", hours_ago=48)
    boundary = world.ticket("At the boundary", hours_ago=3)
    new = world.ticket("New", hours_ago=1)
    zendesk = world.connector()
    boundary_at = world.fake.tickets[boundary].updated_at
    # Half a second after the boundary ticket's change still reads it (seconds precision, floored).
    assert keys_of(read_all(zendesk, since=boundary_at + timedelta(milliseconds=500))) == [
        f"#{boundary}",
        f"#{new}",
    ]
    assert keys_of(read_all(zendesk, since=boundary_at + timedelta(seconds=1))) == [f"#{new}"]
    assert keys_of(read_all(zendesk)) == [f"#{old}", f"#{boundary}", f"#{new}"]  # oldest change first


def test_a_since_within_the_last_minute_reads_nothing_yet(world):
    world.ticket("Recent", hours_ago=0)  # changed now: Zendesk leaves out the last minute
    zendesk = world.connector()
    assert read_all(zendesk, since=world.clock.now - timedelta(seconds=20)) == []
    assert keys_of(read_all(zendesk)) == []
    world.clock.advance(minutes=2)
    assert len(keys_of(read_all(zendesk))) == 1


def test_fields_carry_what_mappings_and_linking_rules_need(world):
    acme = world.fake.add_organization("Acme Corp")
    requester = world.fake.add_user("Ada Customer", "ada@acme.test", organization=acme.id)
    problem = world.ticket("Checkout is down", type="problem", requester=requester.id)
    incident = world.ticket(
        "Cannot pay",
        type="incident",
        priority="urgent",
        requester=requester.id,
        tags=["checkout", "vip"],
        external_id="SF-500123",
        jira_key="PAY-42",
        problem_id=problem,
    )
    items = {item.key: item for page in read_all(world.connector()) for item in page.items}
    item = items[f"#{incident}"]
    assert (item.item_type, item.native_id, item.title, item.status) == (
        "Ticket",
        str(incident),
        "Cannot pay",
        "new",
    )
    assert item.url == f"https://acme.zendesk.test/agent/tickets/{incident}"
    assert item.created == world.clock.now - timedelta(hours=1) and item.created.tzinfo is not None
    fields = item.fields
    assert (fields["type"], fields["priority"], fields["external_id"]) == ("incident", "urgent", "SF-500123")
    assert fields["tags"] == ["checkout", "vip"]
    assert fields["jira_key"] == "PAY-42"
    assert fields["custom"][str(JIRA_KEY_FIELD_ID)] == "PAY-42"
    assert fields["requester"] == {"id": requester.id, "name": "Ada Customer", "email": "ada@acme.test"}
    assert fields["organization"] == {"id": acme.id, "name": "Acme Corp"}
    assert item.raw["id"] == incident and "requester" not in item.raw
    assert [(link.kind, link.target_key) for link in item.links] == [("child_of", f"#{problem}")]


def test_status_history_comes_from_audits_and_only_where_the_status_changed(world):
    start = world.clock.now - timedelta(days=3)
    agent = world.fake.add_user("Grace Agent", "grace@vsm.example", role="agent")
    moved = world.fake.add_ticket(
        "Moved",
        created=start,
        history=[
            (start + timedelta(hours=1), "new", "open", agent.id),
            (start + timedelta(hours=5), "open", "pending", agent.id),
            (start + timedelta(hours=9), "pending", "solved"),
        ],
    )
    untouched = [world.ticket(f"Untouched {n}", status="open") for n in range(3)]
    items = {item.key: item for page in read_all(world.connector()) for item in page.items}
    changes = items[f"#{moved}"].changelog
    assert [(c.at, c.from_status, c.to_status, c.author) for c in changes] == [
        (start + timedelta(hours=1), "new", "open", "Grace Agent"),
        (start + timedelta(hours=5), "open", "pending", "Grace Agent"),
        (start + timedelta(hours=9), "pending", "solved", "VSM Demo Agent"),
    ]
    assert all(items[f"#{ticket_id}"].changelog == [] for ticket_id in untouched)
    assert world.fake.requests["GET ticket/audits"] == 1  # the untouched ones needed no audits


def test_more_than_a_page_of_audits_is_read_to_the_end(world):
    start = world.clock.now - timedelta(days=30)
    history, status = [], "new"
    for step in range(130):
        target = "open" if status != "open" else "pending"
        history.append((start + timedelta(hours=step + 1), status, target))
        status = target
    ticket_id = world.fake.add_ticket("Busy", created=start, history=history)
    (item,) = [item for page in read_all(world.connector()) for item in page.items]
    assert item.key == f"#{ticket_id}"
    assert [(c.from_status, c.to_status) for c in item.changelog] == [(h[1], h[2]) for h in history]
    assert world.fake.requests["GET ticket/audits"] == 2


def test_history_becomes_state_transitions_through_the_ingest(world):
    start = world.clock.now - timedelta(days=5)
    ticket_id = world.fake.add_ticket(
        "Refund please",
        created=start,
        history=[
            (start + timedelta(hours=1), "new", "open"),
            (start + timedelta(hours=30), "open", "pending"),
            (start + timedelta(hours=50), "pending", "solved"),
        ],
    )
    result = world.sync()
    assert result.outcome == "success" and result.counts["created"] == 1
    artifact = Artifact.objects.get(connection=world.connection, external_id=str(ticket_id))
    assert (artifact.key, artifact.tool_status, artifact.flow_state) == (f"#{ticket_id}", "solved", "done")
    assert list(artifact.transitions.order_by("at").values_list("at", "from_status", "to_state")) == [
        (start + timedelta(hours=1), "new", FlowState.ACTIVE),
        (start + timedelta(hours=30), "open", FlowState.WAITING),
        (start + timedelta(hours=50), "pending", FlowState.DONE),
    ]
    assert artifact.done_at - artifact.first_started_at == timedelta(hours=49)

    # A later change flows in on the next sync, the ledger growing by one transition.
    world.clock.advance(hours=1)
    world.fake.change_status(ticket_id, "open")
    world.clock.advance(minutes=2)
    again = world.sync()
    assert again.counts["updated"] == 1
    artifact.refresh_from_db()
    assert (artifact.tool_status, artifact.transitions.count()) == ("open", 4)


def test_deleted_tickets_are_marked_deleted(world):
    kept = world.ticket("Kept")
    gone = world.ticket("Gone")
    world.sync()
    world.clock.advance(minutes=5)
    world.fake.delete(gone)
    world.clock.advance(minutes=2)
    items = [item for page in read_all(world.connector()) for item in page.items]
    deleted = [item for item in items if item.deleted]
    assert [(item.key, item.status) for item in deleted] == [(f"#{gone}", "deleted")]
    assert world.sync().outcome == "success"
    assert Artifact.objects.get(external_id=str(gone)).deleted_at is not None
    assert Artifact.objects.get(external_id=str(kept)).deleted_at is None
    assert list(world.connector().list_ids(ScopeSpec("*"))) == [str(kept)]


def test_incident_and_problem_become_a_tool_link_through_the_ingest(world):
    problem = world.ticket("Outage", type="problem")
    incident = world.ticket("Cannot log in", type="incident", problem_id=problem)
    world.sync()
    link = ArtifactLink.objects.get()
    assert (link.source.key, link.target.key, link.kind) == (f"#{incident}", f"#{problem}", "child_of")


def test_scope_terms_filter_the_export(world):
    acme = world.fake.add_organization("Acme Corp")
    ada = world.fake.add_user("Ada", "ada@acme.test", organization=acme.id)
    mine = world.ticket("Acme VIP", requester=ada.id, tags=["vip"])
    world.ticket("Acme other", requester=ada.id)
    world.ticket("Someone else", tags=["vip"])
    zendesk = world.connector()
    assert keys_of(read_all(zendesk, query="organization:other")) == []
    assert len(keys_of(read_all(zendesk, query="tag:vip"))) == 2
    assert keys_of(read_all(zendesk, query=f"organization:{acme.id} tag:vip")) == [f"#{mine}"]
    assert list(zendesk.list_ids(ScopeSpec(f"organization:{acme.id} tag:VIP"))) == [str(mine)]
    with pytest.raises(BadRequest, match="cannot read the scope term"):
        read_all(zendesk, query="project = ABC")


def test_a_malformed_ticket_is_a_failure_and_the_rest_of_the_page_reads(world):
    ids = [world.ticket(f"Ticket {n}") for n in range(3)]
    world.fake.malformed(ids[1])
    (page,) = read_all(world.connector())
    assert [item.key for item in page.items] == [f"#{ids[0]}", f"#{ids[2]}"]
    assert [failure.key for failure in page.failures] == [f"#{ids[1]}"]
    assert "cannot read ticket" in page.failures[0].message

    result = world.sync()
    assert result.outcome == "partial" and result.counts["failed"] == 1
    assert Artifact.objects.filter(connection=world.connection).count() == 2
    error = SyncError.objects.get()
    assert (error.item_key, error.external_id, error.stage) == (f"#{ids[1]}", str(ids[1]), "read")


def test_429_is_waited_out(world):
    world.ticket("One")
    world.fake.rate_limit(2, retry_after=7)
    assert len(read_all(world.connector())[0].items) == 1
    assert world.sleeps[:2] == [7, 7]


def test_429_during_a_sync_is_waited_out_too(world):
    world.ticket("One", status="open")
    world.fake.rate_limit(1, retry_after=4)
    assert world.sync().outcome == "success"
    assert world.sleeps == [4]
    assert SyncRun.objects.get().read == 1


def test_a_long_rate_limit_is_raised_not_slept(world):
    world.fake.rate_limit(1, retry_after=3600)
    with pytest.raises(RateLimited):
        read_all(world.connector())
    assert world.sleeps == []


def test_read_item_by_key(world):
    ticket_id = world.ticket("One", history=[(world.clock.now - timedelta(minutes=30), "new", "open")])
    item = world.connector().read_item(f"#{ticket_id}", ScopeSpec("*"))
    assert (item.key, item.status, len(item.changelog)) == (f"#{ticket_id}", "open", 1)
    with pytest.raises(BadRequest):
        world.connector().read_item("ABC-1", ScopeSpec("*"))


# Writes ----------------------------------------------------------------------------------------------


def test_update_item_writes_fields_and_the_jira_key(world):
    ticket_id = world.ticket("Old subject")
    zendesk = world.connector()
    zendesk.update_item(
        ItemRef(str(ticket_id), f"#{ticket_id}"), {"title": "New subject", "jira_key": "ABC-7", "tags": ["x"]}
    )
    assert world.transport.exchanges[-1] == ("PUT", f"/api/v2/tickets/{ticket_id}.json", 200)
    ticket = world.fake.tickets[ticket_id]
    assert (ticket.subject, ticket.tags, world.fake.jira_key(ticket_id)) == ("New subject", ["x"], "ABC-7")


def test_transition_item_sets_the_status(world):
    ticket_id = world.ticket("Moving")
    zendesk = world.connector()
    ref = ItemRef(str(ticket_id), f"#{ticket_id}")
    zendesk.transition_item(ref, "Pending")  # case does not matter
    assert world.transport.exchanges[-1] == ("PUT", f"/api/v2/tickets/{ticket_id}.json", 200)
    assert world.fake.tickets[ticket_id].status == "pending"
    audit = world.fake.tickets[ticket_id].audits[-1]
    assert [(e["field_name"], e["previous_value"], e["value"]) for e in audit.events] == [
        ("status", "new", "pending")
    ]
    with pytest.raises(BadRequest, match="no ticket status “Shipped”"):
        zendesk.transition_item(ref, "Shipped")
    zendesk.transition_item(ref, "closed")
    with pytest.raises(BadRequest, match="422"):
        zendesk.transition_item(ref, "open")  # a closed ticket takes no more updates


def test_add_link_writes_one_private_note(world):
    ticket_id = world.ticket("Escalated")
    zendesk = world.connector()
    ref = ItemRef(str(ticket_id), f"#{ticket_id}")
    for _ in range(2):
        zendesk.add_link(ref, url="https://vsm.example.test/artifacts/9/", title="In the portal")
    notes = [comment for comment in world.fake.tickets[ticket_id].comments if not comment.public]
    assert [note.body for note in notes] == ["In the portal: https://vsm.example.test/artifacts/9/"]
    puts = [exchange for exchange in world.transport.exchanges if exchange[0] == "PUT"]
    assert puts == [("PUT", f"/api/v2/tickets/{ticket_id}.json", 200)]
    assert world.fake.requests["GET ticket/comments"] == 2
    with pytest.raises(ConnectorError, match="pass a url"):
        zendesk.add_link(ref, ToolLink(kind="relates_to", target_key="#1"))


def test_create_item_makes_a_ticket(world):
    zendesk = world.connector()
    item = zendesk.create_item(
        ScopeSpec("*"),
        "incident",
        {"subject": "From the portal", "description": "Details", "priority": "high"},
    )
    assert ("POST", "/api/v2/tickets.json", 201) in world.transport.exchanges
    ticket = world.fake.tickets[int(item.native_id)]
    assert (ticket.subject, ticket.type, ticket.priority, ticket.description) == (
        "From the portal",
        "incident",
        "high",
        "Details",
    )
    assert (item.key, item.status) == (f"#{ticket.id}", "new")
