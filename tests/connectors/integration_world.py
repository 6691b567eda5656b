"""The seed story's toolchain for integration tests and bench-sync: Salesforce, Targetprocess, Jira and
Zendesk fakes, connected, mapped and integrated the way an admin would set them up in admin.

- "Requests to Targetprocess": a Salesforce feature request -> a Targetprocess request (model Request);
  status and release flow back; the Targetprocess URL is written back into the request's Linked_Item__c.
- "Requests to Jira": a Targetprocess request -> a Jira epic labelled customer-request (model Request);
  the title flows both ways, status and release flow back (Targetprocess keeps no links to URLs).
- "Escalations to Jira": a Zendesk ticket tagged engineering -> a Jira bug (model Defect); the bug's
  key goes into the ticket's Jira key field, its URL into a private note; status flows back.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from connectors.fakes.jira import FakeJira
from connectors.fakes.salesforce import FakeSalesforce
from connectors.fakes.targetprocess import FakeTargetprocess
from connectors.fakes.wsgi import FakeApp, PrefixDispatcher, serve
from connectors.fakes.zendesk import JIRA_KEY_FIELD_ID, FakeZendesk
from connectors.models import (
    ConflictPolicy,
    FieldFlow,
    FieldMapping,
    FilterOperator,
    Integration,
    IntegrationField,
    IntegrationFilter,
    Scope,
    StatusMapping,
    ToolConnection,
    TypeMapping,
)
from tests.factories import ProductFactory, artifact_model, flow_item_type
from vsm.choices import FlowState

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TOOLS_URL = "http://tools.test"

JIRA_WORKFLOW = {"To Do": "new", "In Progress": "indeterminate", "In Review": "indeterminate", "Done": "done"}
JIRA_STATES = [
    ("To Do", FlowState.NEW),
    ("In Progress", FlowState.ACTIVE),
    ("In Review", FlowState.WAITING),
    ("Done", FlowState.DONE),
]
SALESFORCE_STATES = [
    ("New", FlowState.NEW),
    ("Under Review", FlowState.WAITING),
    ("Planned", FlowState.WAITING),
    ("In Development", FlowState.ACTIVE),
    ("Delivered", FlowState.DONE),
    ("Declined", FlowState.CANCELED),
]
TARGETPROCESS_STATES = [
    ("New", FlowState.NEW),
    ("Open", FlowState.WAITING),
    ("In Progress", FlowState.ACTIVE),
    ("Done", FlowState.DONE),
    ("Rejected", FlowState.CANCELED),
]
ZENDESK_STATES = [
    ("new", FlowState.NEW),
    ("open", FlowState.ACTIVE),
    ("pending", FlowState.WAITING),
    ("hold", FlowState.WAITING),
    ("solved", FlowState.DONE),
    ("closed", FlowState.DONE),
]
PREFERRED = {"Planned", "In Development", "Delivered", "Open", "solved"}


@dataclass
class IntegrationWorld:
    salesforce: FakeSalesforce
    targetprocess: FakeTargetprocess
    jira: FakeJira
    zendesk: FakeZendesk
    tp_project: int
    connections: dict[str, ToolConnection]
    scopes: dict[str, Scope]
    integrations: dict[str, Integration]
    clock: Any = None
    sleeps: list[float] = field(default_factory=list)

    @property
    def fakes(self) -> dict[str, FakeApp]:
        return {
            "/salesforce": self.salesforce,
            "/targetprocess": self.targetprocess,
            "/jira": self.jira,
            "/zendesk": self.zendesk,
        }

    @property
    def transport(self) -> httpx.WSGITransport:
        return httpx.WSGITransport(app=PrefixDispatcher(self.fakes))

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def kwargs(self) -> dict:
        return {"transport": self.transport, "sleep": self.sleep}

    def writes(self) -> dict[str, int]:
        """Calls that changed each tool, as the fakes count them."""
        return {prefix.strip("/"): len(fake.writes) for prefix, fake in self.fakes.items()}


def _type(
    connection, tool_type, model, states, *, condition=("", ""), flow_type=None, priority=100, fields=()
):
    mapping = TypeMapping.objects.create(
        connection=connection,
        tool_type=tool_type,
        artifact_model=artifact_model(model),
        flow_item_type=flow_item_type(flow_type) if flow_type else None,
        condition_path=condition[0],
        condition_value=condition[1],
        priority=priority,
    )
    StatusMapping.objects.bulk_create(
        StatusMapping(
            type_mapping=mapping, tool_status=status, flow_state=state, preferred=status in PREFERRED
        )
        for status, state in states
    )
    FieldMapping.objects.bulk_create(
        FieldMapping(type_mapping=mapping, tool_path=path, model_field=name, transform=transform)
        for path, name, transform in fields
    )
    return mapping


def _connection(kind: str, name: str, fake: FakeApp, options: dict | None = None) -> ToolConnection:
    return ToolConnection.objects.create(
        kind=kind,
        name=name,
        base_url=f"{TOOLS_URL}/{kind}",
        credentials=fake.credentials(),
        options=options or {},
        requests_per_second=0,
    )


def make_integration_world(base_url: str = TOOLS_URL, now=None) -> IntegrationWorld:
    """The four fakes, empty but for their projects, and the admin's configuration of the integrations."""
    salesforce, targetprocess = FakeSalesforce(now=now), FakeTargetprocess(now=now)
    jira, zendesk = FakeJira(now=now), FakeZendesk(now=now)
    salesforce.add_field("Feature_Request__c", "Release__c")
    tp_project = targetprocess.add_project("Checkout", created=T0)
    jira.add_project("CHK", statuses=JIRA_WORKFLOW)

    product = ProductFactory(name="Checkout", slug="checkout")
    sf = _connection("salesforce", "Salesforce", salesforce)
    tp = _connection("targetprocess", "Targetprocess", targetprocess, {"time_zone": "UTC"})
    ji = _connection("jira", "Jira", jira)
    zd = _connection("zendesk", "Zendesk", zendesk, {"jira_key_field_id": str(JIRA_KEY_FIELD_ID)})
    for connection in (sf, tp, ji, zd):
        connection.base_url = f"{base_url}/{connection.kind}"
        connection.save(update_fields=["base_url"])

    sf_request = _type(
        sf,
        "FeatureRequest",
        "request",
        SALESFORCE_STATES,
        fields=[("Release__c", "release", "text"), ("Deal_Breaker__c", "deal_breaker", "none")],
    )
    tp_request = _type(
        tp,
        "Request",
        "request",
        TARGETPROCESS_STATES,
        fields=[("CustomFieldValues.Release", "release", "text")],
    )
    _type(tp, "Feature", "feature", TARGETPROCESS_STATES)
    jira_request = _type(
        ji,
        "Epic",
        "request",
        JIRA_STATES,
        condition=("labels", "customer-request"),
        flow_type="feature",
        priority=10,
        fields=[("fixVersions.0.name", "release", "text")],
    )
    _type(ji, "Epic", "epic", JIRA_STATES)
    _type(ji, "Story", "story", JIRA_STATES)
    jira_bug = _type(ji, "Bug", "defect", JIRA_STATES, fields=[("fixVersions.0.name", "release", "text")])
    zendesk_escalation = _type(
        zd, "Ticket", "defect", ZENDESK_STATES, condition=("tags", "engineering"), priority=10
    )
    _type(zd, "Ticket", "case", ZENDESK_STATES)

    scopes = {
        "salesforce": Scope.objects.create(connection=sf, name="Requests", query="requests", product=product),
        "targetprocess": Scope.objects.create(
            connection=tp, name="Checkout", query=str(tp_project), product=product
        ),
        "jira": Scope.objects.create(connection=ji, name="CHK", query="CHK", product=product),
        "zendesk": Scope.objects.create(connection=zd, name="Tickets", query="*", product=product),
    }
    request = artifact_model("request")
    to_tp = Integration.objects.create(
        name="Requests to Targetprocess",
        artifact_model=request,
        source_scope=scopes["salesforce"],
        source_type_mapping=sf_request,
        target_scope=scopes["targetprocess"],
        target_type_mapping=tp_request,
        conflict_policy=ConflictPolicy.SOURCE_WINS,
        write_back_link=False,
        write_back_path="Linked_Item__c",
    )
    IntegrationField.objects.create(integration=to_tp, model_field="title", flow=FieldFlow.TO_TARGET)
    IntegrationField.objects.create(integration=to_tp, model_field="release", flow=FieldFlow.TO_SOURCE)
    to_jira = Integration.objects.create(
        name="Requests to Jira",
        artifact_model=request,
        source_scope=scopes["targetprocess"],
        source_type_mapping=tp_request,
        target_scope=scopes["jira"],
        target_type_mapping=jira_request,
        conflict_policy=ConflictPolicy.TARGET_WINS,
        write_back_link=False,
    )
    IntegrationField.objects.create(integration=to_jira, model_field="title", flow=FieldFlow.BOTH)
    IntegrationField.objects.create(integration=to_jira, model_field="release", flow=FieldFlow.TO_SOURCE)
    escalations = Integration.objects.create(
        name="Escalations to Jira",
        artifact_model=artifact_model("defect"),
        source_scope=scopes["zendesk"],
        source_type_mapping=zendesk_escalation,
        target_scope=scopes["jira"],
        target_type_mapping=jira_bug,
        status_flow=FieldFlow.TO_SOURCE,
        conflict_policy=ConflictPolicy.FLAG,
        write_back_path="jira_key",
    )
    IntegrationField.objects.create(integration=escalations, model_field="title", flow=FieldFlow.TO_TARGET)
    IntegrationFilter.objects.create(
        integration=escalations, model_field="status", operator=FilterOperator.NOT_EQUALS, value="done"
    )
    return IntegrationWorld(
        salesforce,
        targetprocess,
        jira,
        zendesk,
        tp_project,
        {"salesforce": sf, "targetprocess": tp, "jira": ji, "zendesk": zd},
        scopes,
        {"to_tp": to_tp, "to_jira": to_jira, "escalations": escalations},
        clock=now,
    )


@contextmanager
def served(world: IntegrationWorld):
    """The world's fakes on a loopback socket, its connections pointing there, for the length of the block."""
    with serve(world.fakes) as server:
        for connection in world.connections.values():
            ToolConnection.objects.filter(pk=connection.pk).update(base_url=server.url(connection.kind))
        yield server
