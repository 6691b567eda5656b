"""A small hand-made sample world for `make demo`: one value stream traced from request to release.

Idempotent: running it again finds what it made and changes nothing.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction

from connectors.models import ToolConnection
from vsm.choices import FlowState, LinkKind, LinkOrigin, ProductRoleName
from vsm.models import (
    Artifact,
    ArtifactLink,
    ArtifactModel,
    FlowItemType,
    Partner,
    PartnerGrant,
    PartnerMembership,
    Product,
    ProductRole,
    StateTransition,
    Team,
)
from vsm.services import artifact_refresh_flow_dates


@dataclass(frozen=True)
class DemoLogin:
    role: str
    username: str
    password: str
    sees: str


DEMO_LOGINS = [
    DemoLogin("admin", "admin", "admin-demo-2026", "everything, and Django admin"),
    DemoLogin("product owner", "owner", "owner-demo-2026", "Checkout and Mobile App"),
    DemoLogin("partner", "partner", "partner-demo-2026", "Checkout, only Acme's part of it"),
]

START = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)

# key, model, flow item type, tool, title, created day, [(day offset, status, flow state)], extra
CHECKOUT_ITEMS = [
    (
        "SF-00042",
        "request",
        None,
        "salesforce",
        "One-click reorder for B2B customers",
        0,
        [
            (0, "New", "new"),
            (3, "Under Review", "waiting"),
            (9, "Approved", "active"),
            (40, "Delivered", "done"),
        ],
        {"customer_account": "Northwind Traders", "deal_breaker": True},
        Decimal("180000"),
    ),
    (
        "TP-310",
        "feature",
        "feature",
        "targetprocess",
        "Reorder from order history",
        4,
        [(4, "Open", "new"), (10, "In Progress", "active"), (38, "Done", "done")],
        {},
        None,
    ),
    (
        "CHK-101",
        "epic",
        "feature",
        "jira",
        "Reorder flow",
        9,
        [(9, "To Do", "new"), (12, "In Progress", "active"), (37, "Done", "done")],
        {},
        None,
    ),
    (
        "CHK-102",
        "story",
        "feature",
        "jira",
        "Reorder button on past orders",
        12,
        [
            (12, "To Do", "new"),
            (14, "In Progress", "active"),
            (18, "In Review", "waiting"),
            (20, "Done", "done"),
        ],
        {},
        None,
    ),
    (
        "CHK-103",
        "story",
        "feature",
        "jira",
        "Price refresh when reordering",
        12,
        [
            (12, "To Do", "new"),
            (19, "In Progress", "active"),
            (24, "Blocked", "waiting"),
            (29, "In Progress", "active"),
            (33, "Done", "done"),
        ],
        {},
        None,
    ),
    (
        "ACME-7",
        "story",
        "feature",
        "jira-acme",
        "Reorder API for the partner storefront",
        13,
        [
            (13, "Open", "new"),
            (16, "In Progress", "active"),
            (30, "Review", "waiting"),
            (35, "Closed", "done"),
        ],
        {},
        None,
    ),
    (
        "ACME-9",
        "defect",
        "defect",
        "jira-acme",
        "Reorder total ignores voucher",
        36,
        [(36, "Open", "new"), (37, "In Progress", "active")],
        {"severity": "Major"},
        None,
    ),
    (
        "CHK-120",
        "debt",
        "debt",
        "jira",
        "Remove legacy cart service",
        20,
        [(20, "To Do", "new"), (25, "In Progress", "active")],
        {},
        None,
    ),
    ("a1b2c3d", "commit", None, "github", "CHK-102 add reorder button", 19, [], {"sha": "a1b2c3d"}, None),
    (
        "e4f5a6b",
        "commit",
        None,
        "github",
        "CHK-103 refresh prices on reorder",
        32,
        [],
        {"sha": "e4f5a6b"},
        None,
    ),
    (
        "checkout-deploy #88",
        "deployment",
        None,
        "jenkins",
        "Deploy checkout to production",
        39,
        [],
        {"environment": "production", "result": "SUCCESS"},
        None,
    ),
]

CHECKOUT_LINKS = [
    ("TP-310", "SF-00042", LinkKind.DERIVED_FROM),
    ("CHK-101", "TP-310", LinkKind.IMPLEMENTS),
    ("CHK-102", "CHK-101", LinkKind.CHILD_OF),
    ("CHK-103", "CHK-101", LinkKind.CHILD_OF),
    ("ACME-7", "CHK-101", LinkKind.CHILD_OF),
    ("ACME-9", "ACME-7", LinkKind.RELATES_TO),
    ("CHK-102", "a1b2c3d", LinkKind.COMMITTED_IN),
    ("CHK-103", "e4f5a6b", LinkKind.COMMITTED_IN),
    ("a1b2c3d", "checkout-deploy #88", LinkKind.DEPLOYED_IN),
    ("e4f5a6b", "checkout-deploy #88", LinkKind.DEPLOYED_IN),
]

MOBILE_ITEMS = [
    (
        "MOB-1",
        "story",
        "feature",
        "jira",
        "Dark mode",
        5,
        [(5, "To Do", "new"), (8, "In Progress", "active"), (15, "Done", "done")],
        {},
        None,
    ),
    (
        "MOB-2",
        "defect",
        "defect",
        "jira",
        "Crash on login with SSO",
        10,
        [
            (10, "To Do", "new"),
            (11, "In Progress", "active"),
            (12, "Done", "done"),
            (14, "Reopened", "active"),
        ],
        {},
        None,
    ),
    (
        "MOB-3",
        "risk",
        "risk",
        "jira",
        "Update TLS pinning certificates",
        21,
        [(21, "To Do", "new")],
        {},
        None,
    ),
]


@transaction.atomic
def sample_world_create() -> list[DemoLogin]:
    if Product.objects.filter(slug="checkout").exists():
        return DEMO_LOGINS
    checkout = Product.objects.create(
        name="Checkout", slug="checkout", description="Web shop checkout and orders."
    )
    mobile = Product.objects.create(
        name="Mobile App", slug="mobile-app", description="The customer mobile app."
    )
    acme = Partner.objects.create(name="Acme Outsourcing", slug="acme")
    PartnerGrant.objects.create(partner=acme, product=checkout)
    acme_team = Team.objects.create(product=checkout, partner=acme, name="Acme storefront squad")
    Team.objects.create(product=checkout, name="Checkout core")
    connections = {
        "salesforce": ToolConnection.objects.create(
            kind="salesforce", name="Salesforce", base_url="https://example.my.salesforce.com"
        ),
        "targetprocess": ToolConnection.objects.create(
            kind="targetprocess", name="Targetprocess", base_url="https://example.tpondemand.com"
        ),
        "jira": ToolConnection.objects.create(
            kind="jira", name="Jira", base_url="https://example.atlassian.net"
        ),
        "jira-acme": ToolConnection.objects.create(
            kind="jira", name="Acme Jira", base_url="https://acme.atlassian.net", partner=acme
        ),
        "github": ToolConnection.objects.create(
            kind="github", name="GitHub", base_url="https://github.com/example"
        ),
        "jenkins": ToolConnection.objects.create(
            kind="jenkins", name="Jenkins", base_url="https://jenkins.example.com"
        ),
    }
    by_key = _create_items(checkout, CHECKOUT_ITEMS, connections, team_for={"jira-acme": acme_team})
    _create_items(mobile, MOBILE_ITEMS, connections, team_for={})
    for source, target, kind in CHECKOUT_LINKS:
        ArtifactLink.objects.create(
            source=by_key[source], target=by_key[target], kind=kind, origin=LinkOrigin.TOOL
        )
    _create_users(checkout, mobile, acme)
    return DEMO_LOGINS


def _create_items(product, items, connections, team_for) -> dict[str, Artifact]:
    models = {model.slug: model for model in ArtifactModel.objects.all()}
    types = {flow_type.slug: flow_type for flow_type in FlowItemType.objects.all()}
    created = {}
    for key, model, flow_type, tool, title, day, history, fields, value in items:
        connection = connections[tool]
        last_status, last_state = (history[-1][1], history[-1][2]) if history else ("", FlowState.DONE)
        created_at = START + timedelta(days=day)
        artifact = Artifact.objects.create(
            product=product,
            artifact_model=models[model],
            flow_item_type=types.get(flow_type),
            connection=connection,
            team=team_for.get(tool),
            external_id=key,
            key=key,
            title=title,
            url=f"{connection.base_url}/{key}",
            tool_status=last_status,
            flow_state=last_state,
            created_at=created_at,
            updated_at=START + timedelta(days=history[-1][0] if history else day, hours=1),
            fields=fields,
            value=value,
        )
        previous_status, previous_state = "", ""
        for offset, status, state in history:
            StateTransition.objects.create(
                artifact=artifact,
                at=START + timedelta(days=offset, hours=offset % 7),
                from_status=previous_status,
                to_status=status,
                from_state=previous_state,
                to_state=state,
                author="sample",
            )
            previous_status, previous_state = status, state
        created[key] = artifact_refresh_flow_dates(artifact)
    return created


def _create_users(checkout, mobile, acme) -> None:
    users = get_user_model().objects
    users.create_superuser("admin", "admin@example.test", DEMO_LOGINS[0].password)
    owner = users.create_user("owner", "owner@example.test", DEMO_LOGINS[1].password)
    partner_user = users.create_user("partner", "partner@example.test", DEMO_LOGINS[2].password)
    ProductRole.objects.create(user=owner, product=checkout, role=ProductRoleName.OWNER)
    ProductRole.objects.create(user=owner, product=mobile, role=ProductRoleName.OWNER)
    PartnerMembership.objects.create(user=partner_user, partner=acme)
