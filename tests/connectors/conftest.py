"""A Jira world for connector tests: the fake site, a connection to it, mappings and a scope."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from connectors.fakes.jira import FakeJira, TransitionRule
from connectors.models import Scope, ToolConnection
from tests.factories import ProductFactory, map_types
from vsm.choices import FlowState

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WORKFLOW = {"To Do": "new", "In Progress": "indeterminate", "In Review": "indeterminate", "Done": "done"}
STATUS_MAP = {
    "To Do": FlowState.NEW,
    "In Progress": FlowState.ACTIVE,
    "In Review": FlowState.WAITING,
    "Done": FlowState.DONE,
}
# The same workflow where nothing goes straight to Done: To Do -> In Progress -> In Review -> Done, and
# back one step at a time.
STEPWISE_TRANSITIONS = [
    TransitionRule("Start", "In Progress", ("To Do",)),
    TransitionRule("Review", "In Review", ("In Progress",)),
    TransitionRule("Approve", "Done", ("In Review",)),
    TransitionRule("Rework", "In Progress", ("In Review", "Done")),
    TransitionRule("Stop", "To Do", ("In Progress",)),
]
TYPE_MAP = {"Epic": "epic", "Story": "story", "Task": "task", "Bug": "defect", "Sub-task": "task"}


class Clock:
    """The fake's clock, moved by tests."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class JiraWorld:
    fake: FakeJira
    clock: Clock
    connection: ToolConnection
    scope: Scope
    sleeps: list[float]

    @property
    def transport(self) -> httpx.WSGITransport:
        return httpx.WSGITransport(app=self.fake)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def sync_kwargs(self) -> dict:
        return {"transport": self.transport, "sleep": self.sleep}

    def story(self, summary: str, *, status: str = "To Do", hours_ago: float = 0, **kwargs) -> str:
        created = self.clock.now - timedelta(hours=hours_ago)
        return self.fake.add_issue("ABC", "Story", summary, status=status, created=created, **kwargs)


def make_jira_world(flavour: str = "cloud", **fake_options) -> JiraWorld:
    clock = Clock(T0)
    fake = FakeJira(flavour=flavour, now=clock, **fake_options)
    fake.add_project("ABC", statuses=WORKFLOW)
    connection = ToolConnection.objects.create(
        kind="jira",
        name=f"Jira {flavour} {ToolConnection.objects.count() + 1}",
        base_url="https://jira.example.test",
        options={"flavour": flavour},
        credentials=fake.credentials(),
        requests_per_second=0,
    )
    map_types(connection, TYPE_MAP, STATUS_MAP)
    scope = Scope.objects.create(
        connection=connection, name="ABC", query="ABC", product=ProductFactory(), page_size=7
    )
    return JiraWorld(fake, clock, connection, scope, [])


@pytest.fixture
def jira_world(db) -> JiraWorld:
    return make_jira_world("cloud")


@pytest.fixture(params=["cloud", "datacenter"])
def any_jira_world(db, request) -> JiraWorld:
    return make_jira_world(request.param)
