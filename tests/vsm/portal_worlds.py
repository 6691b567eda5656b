"""Realistic data for the traceability, customer request and landscape pages (unit and browser tests).

One product, "Checkout", fed by five tools: customer requests in Salesforce, features in Targetprocess,
epics and stories in Jira, commits in GitHub, builds and deployments in Jenkins, releases in GitLab.
A partner, Acme, owns the GitHub connection; a foreign product with its own tool and request stays out
of everyone's reach but the staff's.
"""

from datetime import timedelta
from types import SimpleNamespace

from connectors.models import Integration, IntegrationPair, PendingLink
from tests.factories import (
    BASE_TIME,
    ArtifactLinkFactory,
    LinkRuleFactory,
    PartnerFactory,
    PartnerGrantFactory,
    PartnerMembershipFactory,
    ProductFactory,
    ProductRoleFactory,
    ScopeFactory,
    SyncErrorFactory,
    TeamFactory,
    ToolConnectionFactory,
    TypeMappingFactory,
    artifact_model,
    flow_item,
)
from vsm.choices import FlowState, LinkKind, ProductRoleName

FOREIGN_NAMES = ("Foreign secret product", "Foreign Jira", "FRN-REQ-1", "Foreign request", "Umbrella Corp")
ACCOUNT = "Globex Corporation"
REVENUE = "125000.00"


def day(days: float):
    return BASE_TIME + timedelta(days=days)


def _done(product, model, key, start, end, connection, **kwargs):
    return flow_item(
        product,
        (day(start), FlowState.ACTIVE),
        (day(end), FlowState.DONE),
        created_at=day(start - 1),
        artifact_model=artifact_model(model),
        connection=connection,
        key=key,
        title=kwargs.pop("title", f"{model.capitalize()} {key}"),
        **kwargs,
    )


def build_portal_world(stories: int = 3, requests: int = 3):
    """The chain REQ-1 -> FEAT-1 -> EPIC-1 -> stories -> commits -> build -> deployment and release,
    plus more requests at every delivery status, a pending link, mappings, rules and sync errors."""
    w = SimpleNamespace()
    w.product = ProductFactory(name="Checkout", slug="checkout", time_zone="UTC")
    w.foreign = ProductFactory(name="Foreign secret product", slug="foreign")
    w.partner = PartnerFactory(name="Acme", slug="acme")
    PartnerGrantFactory(partner=w.partner, product=w.product)
    w.partner_team = TeamFactory(product=w.product, name="Acme team", partner=w.partner)

    w.salesforce = ToolConnectionFactory(kind="salesforce", name="Sales Salesforce")
    w.targetprocess = ToolConnectionFactory(kind="targetprocess", name="Product Targetprocess")
    w.jira = ToolConnectionFactory(kind="jira", name="Delivery Jira", last_success_at=day(40))
    w.github = ToolConnectionFactory(kind="github", name="Acme GitHub", partner=w.partner)
    w.jenkins = ToolConnectionFactory(kind="jenkins", name="Build Jenkins", last_error_at=day(41))
    w.gitlab = ToolConnectionFactory(kind="gitlab", name="Release GitLab")
    w.foreign_jira = ToolConnectionFactory(kind="jira", name="Foreign Jira")
    w.connections = [w.salesforce, w.targetprocess, w.jira, w.github, w.jenkins, w.gitlab]
    scopes, mappings = {}, {}
    for connection, model in [
        (w.salesforce, "request"),
        (w.targetprocess, "feature"),
        (w.jira, "epic"),
        (w.jira, "story"),
        (w.github, "commit"),
        (w.jenkins, "build"),
        (w.jenkins, "deployment"),
        (w.gitlab, "release"),
        (w.foreign_jira, "story"),
    ]:
        scopes[model] = ScopeFactory(
            connection=connection, product=w.foreign if connection == w.foreign_jira else w.product
        )
        mappings[model] = TypeMappingFactory(
            connection=connection, tool_type=model.capitalize(), artifact_model=artifact_model(model)
        )

    request_fields = {"customer_account": ACCOUNT, "revenue": 125000, "deal_breaker": True}
    w.request = flow_item(
        w.product,
        created_at=day(0),
        flow_type=None,
        artifact_model=artifact_model("request"),
        connection=w.salesforce,
        key="REQ-1",
        title="Pay by invoice",
        fields=request_fields,
        value=REVENUE,
    )
    w.feature = _done(w.product, "feature", "FEAT-1", 2, 20, w.targetprocess)
    w.epic = _done(w.product, "epic", "EPIC-1", 3, 19, w.jira)
    ArtifactLinkFactory(source=w.feature, target=w.request, kind=LinkKind.DERIVED_FROM)
    ArtifactLinkFactory(source=w.epic, target=w.feature, kind=LinkKind.IMPLEMENTS)
    w.build = flow_item(
        w.product,
        created_at=day(18),
        flow_type=None,
        artifact_model=artifact_model("build"),
        connection=w.jenkins,
        key="build-42",
        fields={"result": "SUCCESS"},
        flow_state=FlowState.DONE,
    )
    w.deployment = flow_item(
        w.product,
        created_at=day(21),
        flow_type=None,
        artifact_model=artifact_model("deployment"),
        connection=w.jenkins,
        key="deploy-7",
        fields={"environment": "production", "result": "SUCCESS"},
        flow_state=FlowState.DONE,
    )
    w.release = flow_item(
        w.product,
        created_at=day(22),
        flow_type=None,
        artifact_model=artifact_model("release"),
        connection=w.gitlab,
        key="v1.4.0",
        fields={"released_at": day(22).isoformat()},
        flow_state=FlowState.DONE,
    )
    ArtifactLinkFactory(source=w.build, target=w.deployment, kind=LinkKind.DEPLOYED_IN)
    w.stories, w.commits = [], []
    for number in range(1, stories + 1):
        story = _done(w.product, "story", f"SHOP-{number}", 4 + number, 10 + number, w.jira)
        commit = flow_item(
            w.product,
            created_at=day(9 + number),
            flow_type=None,
            artifact_model=artifact_model("commit"),
            connection=w.github,
            key=f"c0ffee{number:02d}",
            title=f"SHOP-{number} implement part {number}",
            flow_state=FlowState.DONE,
        )
        ArtifactLinkFactory(source=story, target=w.epic, kind=LinkKind.CHILD_OF)
        ArtifactLinkFactory(source=story, target=commit, kind=LinkKind.COMMITTED_IN)
        ArtifactLinkFactory(source=commit, target=w.build, kind=LinkKind.BUILT_IN)
        ArtifactLinkFactory(source=story, target=w.release, kind=LinkKind.RELEASED_IN)
        w.stories.append(story)
        w.commits.append(commit)
    w.pending = PendingLink.objects.create(
        source=w.commits[0],
        target_connection=w.jira,
        target_key="SHOP-404",
        kind=LinkKind.COMMITTED_IN,
        reverse=True,
        first_seen_at=day(12),
    )

    # More requests: one in progress (its feature on Acme's team, so Acme sees it), one not started,
    # and (in the foreign product) one nobody else sees.
    w.open_request = flow_item(
        w.product,
        created_at=day(25),
        flow_type=None,
        artifact_model=artifact_model("request"),
        connection=w.salesforce,
        key="REQ-2",
        title="Refunds in one click",
        fields={"customer_account": "Initech", "revenue": 5000, "deal_breaker": False},
        value="5000.00",
    )
    w.open_story = flow_item(
        w.product,
        (day(27), FlowState.ACTIVE),
        created_at=day(26),
        artifact_model=artifact_model("feature"),
        connection=w.targetprocess,
        key="FEAT-2",
        title="Feature FEAT-2",
        team=w.partner_team,
    )
    ArtifactLinkFactory(source=w.open_story, target=w.open_request, kind=LinkKind.DERIVED_FROM)
    w.new_request = flow_item(
        w.product,
        created_at=day(30),
        flow_type=None,
        artifact_model=artifact_model("request"),
        connection=w.salesforce,
        key="REQ-3",
        title="Export to the ledger",
        fields={"customer_account": "Initech", "deal_breaker": False},
    )
    for number in range(4, requests + 1):
        flow_item(
            w.product,
            created_at=day(30 + number),
            flow_type=None,
            artifact_model=artifact_model("request"),
            connection=w.salesforce,
            key=f"REQ-{number}",
            title=f"Request {number}",
            fields={"customer_account": f"Account {number}", "deal_breaker": number % 2 == 0},
        )
    w.foreign_request = flow_item(
        w.foreign,
        created_at=day(1),
        flow_type=None,
        artifact_model=artifact_model("request"),
        connection=w.foreign_jira,
        key="FRN-REQ-1",
        title="Foreign request",
        fields={"customer_account": "Umbrella Corp"},
        value="999.00",
    )

    w.integration = Integration.objects.create(
        name="Requests to Targetprocess",
        artifact_model=artifact_model("request"),
        source_scope=scopes["request"],
        source_type_mapping=mappings["request"],
        target_scope=scopes["feature"],
        target_type_mapping=mappings["feature"],
        last_run_at=day(40),
    )
    IntegrationPair.objects.create(integration=w.integration, source=w.request, target=w.feature, state="ok")
    IntegrationPair.objects.create(integration=w.integration, source=w.open_request, state="conflict")
    LinkRuleFactory(connection=w.github, target_connection=w.jira, name="Jira keys in commits")
    SyncErrorFactory(scope=w.jenkins.scopes.first(), connection=w.jenkins)
    SyncErrorFactory(scope=w.foreign_jira.scopes.first(), connection=w.foreign_jira)

    w.owner = ProductRoleFactory(product=w.product, role=ProductRoleName.OWNER, user__username="po").user
    w.partner_user = PartnerMembershipFactory(partner=w.partner, user__username="acme").user
    return w


def add_synced_copy(w, key: str = "TP-REQ-1"):
    """The Targetprocess copy an integration made of REQ-1 (synced_with, copy -> original)."""
    copy = flow_item(
        w.product,
        created_at=day(1),
        flow_type=None,
        artifact_model=artifact_model("request"),
        connection=w.targetprocess,
        key=key,
        title=f"{w.request.title} (copy)",
    )
    ArtifactLinkFactory(source=copy, target=w.request, kind=LinkKind.SYNCED_WITH)
    return copy


def add_declined_request(w, *, created: float, declined: float, key: str = "REQ-DECLINED"):
    """A Salesforce request declined (canceled, as "Declined") before any work began."""
    return flow_item(
        w.product,
        (day(declined), FlowState.CANCELED),
        created_at=day(created),
        flow_type=None,
        artifact_model=artifact_model("request"),
        connection=w.salesforce,
        key=key,
        title="Pay in kind",
        tool_status="Declined",
    )
