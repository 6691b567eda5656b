"""The demo: the portal configured for the demo world's toolchain, and its data loaded the real way.

`demo_configure` makes, through the same models an admin edits, everything the demo needs: the
products, teams, the partner with its grant, the demo users with their roles, a tool connection per
fake tool (encrypted credentials, loopback URL), type/field/status mappings, scopes with their
schedules, and the link rules that join the tools. `demo_load` then runs the real pipeline: a sync of
every scope through `connectors.ingest.scope_sync`, a relink of every connection, and a rebuild of the
metrics rollups. Nothing here writes an artifact: the connectors do.

The world itself (the fake tools' content) is `connectors.fakes.world`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from connectors.fakes.world import (
    DEBT_LABEL,
    ESCALATION_TAG,
    IN_HOUSE,
    PARTNER,
    PARTNER_STATUSES,
    PRODUCTS,
    REQUEST_PRODUCT_FIELD,
    SIZES,
    ZONE_NAME,
    make_fakes,
    products_of,
    tp_project_id,
)
from connectors.fakes.zendesk import JIRA_KEY_FIELD_ID
from connectors.ingest import scope_sync
from connectors.links import PATTERN_PRESETS, relink_connection
from connectors.models import (
    ConflictPolicy,
    FieldFlow,
    FieldMapping,
    FilterOperator,
    Integration,
    IntegrationField,
    IntegrationFilter,
    LinkRule,
    Scope,
    StatusMapping,
    SyncRun,
    SyncTrigger,
    ToolConnection,
    TypeMapping,
)
from connectors.providers.jenkins.items import DEFAULT_DEPLOYMENT_PATTERN, DEFAULT_PRODUCTION_PATTERN
from connectors.services import scope_schedule_save
from connectors.sync import integration_run
from metrics.services import product_rollups_rebuild
from vsm.choices import FlowState, LinkKind, ProductRoleName
from vsm.db import database_analyze
from vsm.models import (
    ArtifactModel,
    Partner,
    PartnerGrant,
    PartnerMembership,
    Product,
    ProductRole,
    Team,
)

SCHEDULE_MINUTES = 1  # the demo's scopes sync every minute (the shortest schedule)
# Where several statuses share a flow state, the one integrations move an item to.
PREFERRED_STATUSES = {"Under Review", "In Development", "Delivered", "solved", "pending"}
WHOLE_VALUE = PATTERN_PRESETS["The whole value (an id or SHA)"]
JIRA_KEY = PATTERN_PRESETS["Jira key (ABC-123)"]

# The portal's connection to each fake of the world, by the fake's name (its path prefix).
CONNECTION_NAMES = {
    "jira": "Jira",
    "jira-acme": "Acme Jira",
    "github": "GitHub",
    "jenkins": "Jenkins",
    "salesforce": "Salesforce",
    "targetprocess": "Targetprocess",
    "zendesk": "Zendesk",
}
CONNECTION_KINDS = {"jira-acme": "jira"}
CONNECTION_OPTIONS = {
    "jira": {"flavour": "cloud"},
    "jira-acme": {"flavour": "datacenter"},
    # Pull requests' history from their dates: one request fewer per pull request.
    "github": {"history": "dates", "first_release": "history"},
    "jenkins": {
        "deployment_job_pattern": DEFAULT_DEPLOYMENT_PATTERN,
        "production_pattern": DEFAULT_PRODUCTION_PATTERN,
    },
    "salesforce": {
        "linked_item_field": "Linked_Item__c",
        "request_extra_fields": f"Priority__c,{REQUEST_PRODUCT_FIELD}",
    },
    "targetprocess": {"entity_types": "Feature,Request", "time_zone": ZONE_NAME},
    "zendesk": {"jira_key_field_id": str(JIRA_KEY_FIELD_ID)},
}


@dataclass(frozen=True)
class DemoLogin:
    role: str
    username: str
    password: str
    sees: str


DEMO_LOGINS = (
    DemoLogin("admin", "admin", "admin-demo-2026", "everything, and Django admin at /admin/"),
    DemoLogin("product owner", "owner", "owner-demo-2026", "Checkout and Mobile App"),
    DemoLogin("leadership", "leader", "leader-demo-2026", "every product, side by side"),
    DemoLogin("field team", "field", "field-demo-2026", "every product's customer requests and revenue"),
    DemoLogin("partner", "partner", "partner-demo-2026", "Checkout, only Acme's part of it"),
)


def _statuses(statuses) -> dict[str, str]:
    """A Jira workflow's statuses as flow states: waiting for someone is Waiting, working is Active."""
    states = {
        statuses.new: FlowState.NEW,
        statuses.active: FlowState.ACTIVE,
        statuses.blocked: FlowState.WAITING,
        statuses.ready: FlowState.WAITING,
        statuses.done: FlowState.DONE,
        statuses.cancelled: FlowState.CANCELED,
    }
    if statuses.review:
        states[statuses.review] = FlowState.ACTIVE
    if statuses.delivering:
        states[statuses.delivering] = FlowState.ACTIVE
    return states


BUILD_STATUSES = {
    "BUILDING": FlowState.ACTIVE,
    "SUCCESS": FlowState.DONE,
    "UNSTABLE": FlowState.DONE,
    "FAILURE": FlowState.DONE,
    "ABORTED": FlowState.CANCELED,
}
SEVERITY_FROM_PRIORITY = {"Highest": "Critical", "High": "Major", "Medium": "Minor", "Low": "Trivial"}

# connection -> [(tool type, model slug, condition (path, value) or None, statuses, [(path, field, transform,
# value map)])]
MAPPINGS = {
    "jira": [
        ("Epic", "epic", None, _statuses(IN_HOUSE), [("priority.name", "priority", "text", {})]),
        ("Story", "story", None, _statuses(IN_HOUSE), [("assignee", "assignee", "person", {})]),
        (
            "Story",
            "debt",
            ("labels", DEBT_LABEL),
            _statuses(IN_HOUSE),
            [("assignee", "assignee", "person", {})],
        ),
        (
            "Bug",
            "defect",
            None,
            _statuses(IN_HOUSE),
            [("priority.name", "severity", "text", SEVERITY_FROM_PRIORITY)],
        ),
        ("Risk", "risk", None, _statuses(IN_HOUSE), []),
    ],
    "jira-acme": [
        ("Story", "story", None, _statuses(PARTNER_STATUSES), [("assignee", "assignee", "person", {})]),
        (
            "Bug",
            "defect",
            None,
            _statuses(PARTNER_STATUSES),
            [("priority.name", "severity", "text", SEVERITY_FROM_PRIORITY)],
        ),
    ],
    "github": [
        (
            "Commit",
            "commit",
            None,
            {"committed": FlowState.DONE},
            [
                ("sha", "sha", "text", {}),
                ("repository", "repository", "text", {}),
                ("author", "author", "text", {}),
            ],
        ),
        (
            "PullRequest",
            "pull-request",
            None,
            {"open": FlowState.ACTIVE, "merged": FlowState.DONE, "closed": FlowState.CANCELED},
            [("number", "number", "number", {}), ("merged_at", "merged_at", "datetime", {})],
        ),
        (
            "Release",
            "release",
            None,
            {"published": FlowState.DONE, "prerelease": FlowState.DONE, "draft": FlowState.NEW},
            [("tag_name", "version", "text", {}), ("published_at", "released_at", "datetime", {})],
        ),
    ],
    "jenkins": [
        (
            "Build",
            "build",
            None,
            BUILD_STATUSES,
            [
                ("job", "job", "text", {}),
                ("number", "number", "number", {}),
                ("result", "result", "text", {}),
            ],
        ),
        (
            "Deployment",
            "deployment",
            None,
            BUILD_STATUSES,
            [("environment", "environment", "text", {}), ("result", "result", "text", {})],
        ),
    ],
    "salesforce": [
        (
            "FeatureRequest",
            "request",
            None,
            {
                "New": FlowState.NEW,
                "Under Review": FlowState.WAITING,
                "Planned": FlowState.WAITING,
                "In Development": FlowState.ACTIVE,
                "Delivered": FlowState.DONE,
                "Declined": FlowState.CANCELED,
            },
            [
                ("revenue", "revenue", "number", {}),
                ("customer_account", "customer_account", "text", {}),
                ("deal_breaker", "deal_breaker", "none", {}),
                ("Priority__c", "priority", "text", {}),
            ],
        ),
    ],
    "targetprocess": [
        (
            "Feature",
            "feature",
            None,
            {
                "New": FlowState.NEW,
                "Planned": FlowState.NEW,
                "In Progress": FlowState.ACTIVE,
                "Done": FlowState.DONE,
            },
            [],
        ),
        (
            "Request",
            "request",
            None,
            {
                "New": FlowState.NEW,
                "Open": FlowState.WAITING,
                "In Progress": FlowState.ACTIVE,
                "Done": FlowState.DONE,
                "Rejected": FlowState.CANCELED,
            },
            [],
        ),
    ],
    "zendesk": [
        (
            "Ticket",
            "defect",
            ("tags", ESCALATION_TAG),
            {
                "new": FlowState.NEW,
                "open": FlowState.ACTIVE,
                "pending": FlowState.WAITING,
                "hold": FlowState.WAITING,
                "solved": FlowState.DONE,
                "closed": FlowState.DONE,
            },
            [],
        ),
        (
            "Ticket",
            "case",
            None,
            {
                "new": FlowState.NEW,
                "open": FlowState.ACTIVE,
                "pending": FlowState.WAITING,
                "hold": FlowState.WAITING,
                "solved": FlowState.DONE,
                "closed": FlowState.DONE,
            },
            [
                ("organization.name", "customer_account", "text", {}),
                ("requester", "requester", "person", {}),
                (
                    "priority",
                    "priority",
                    "text",
                    {"urgent": "Highest", "high": "High", "normal": "Medium", "low": "Low"},
                ),
            ],
        ),
    ],
}


def _key_pattern(projects: list[str]) -> str:
    """Jira keys of these projects only (another site's keys are another rule's)."""
    alternatives = "|".join(sorted(projects))
    return rf"(?<![A-Za-z0-9_])(?P<key>(?:{alternatives})-\d+)(?![A-Za-z0-9])"


def _scope_queries(size_name: str) -> list[tuple[str, str, str, str, str | None]]:
    """(fake, scope name, query, product slug, team name) for each product: what each scope reads."""
    queries = []
    for product, teams in products_of(SIZES[size_name]):
        for team in teams:
            connection = "jira-acme" if team.partner else "jira"
            queries.append(
                (connection, f"{product.name}: {team.name}", team.project, product.slug, team.name)
            )
        queries += [
            ("github", f"{product.name} repository", product.repo, product.slug, None),
            ("jenkins", f"{product.name} pipelines", product.slug, product.slug, None),
            (
                "salesforce",
                f"{product.name} requests",
                f"requests WHERE {REQUEST_PRODUCT_FIELD} = '{product.name}'",
                product.slug,
                None,
            ),
            ("targetprocess", f"{product.name} portfolio", str(tp_project_id(product)), product.slug, None),
            ("zendesk", f"{product.name} support", f"tag:{product.slug}", product.slug, None),
        ]
    return queries


@transaction.atomic
def demo_configure(base_url: str, size: str = "default") -> list[DemoLogin]:
    """Configure the portal for the demo world served at `base_url` (the fake tools' loopback server).

    Idempotent: what exists already is kept, and connections are pointed at `base_url` again.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, not {size!r}")
    base_url = base_url.rstrip("/")
    products = {
        plan.slug: Product.objects.get_or_create(
            slug=plan.slug,
            defaults={"name": plan.name, "description": plan.description, "time_zone": ZONE_NAME},
        )[0]
        for plan, _ in products_of(SIZES[size])
    }
    partner, _ = Partner.objects.get_or_create(slug=PARTNER.slug, defaults={"name": PARTNER.name})
    PartnerGrant.objects.get_or_create(partner=partner, product=products[PARTNER.product])
    teams = {}
    for plan, team_plans in products_of(SIZES[size]):
        for team_plan in team_plans:
            teams[team_plan.name], _ = Team.objects.get_or_create(
                product=products[plan.slug],
                name=team_plan.name,
                defaults={"partner": partner if team_plan.partner else None},
            )
    connections = _configure_connections(base_url, partner)
    for fake, name, query, product_slug, team_name in _scope_queries(size):
        scope, _ = Scope.objects.get_or_create(
            connection=connections[fake],
            name=name,
            defaults={
                "query": query,
                "product": products[product_slug],
                "team": teams.get(team_name),
                "interval_minutes": SCHEDULE_MINUTES,
            },
        )
        scope_schedule_save(scope)
    _configure_link_rules(connections, size)
    _configure_integrations(connections, size)
    _configure_users(products, partner)
    return list(DEMO_LOGINS)


def _configure_connections(base_url: str, partner: Partner) -> dict[str, ToolConnection]:
    fakes = make_fakes()
    models = {model.slug: model for model in ArtifactModel.objects.all()}
    connections = {}
    for fake_name, connection_name in CONNECTION_NAMES.items():
        connection, created = ToolConnection.objects.get_or_create(
            name=connection_name,
            defaults={
                "kind": CONNECTION_KINDS.get(fake_name, fake_name),
                "base_url": f"{base_url}/{fake_name}",
                "options": CONNECTION_OPTIONS[fake_name],
                "credentials": fakes[fake_name].credentials(),
                "requests_per_second": 0,  # loopback: no rate limit to respect
                "partner": partner if fake_name == "jira-acme" else None,
            },
        )
        if not created and connection.base_url != f"{base_url}/{fake_name}":
            connection.base_url = f"{base_url}/{fake_name}"
            connection.save(update_fields=["base_url"])
        connections[fake_name] = connection
        if created:
            _configure_mappings(connection, MAPPINGS[fake_name], models)
    return connections


def _configure_mappings(connection: ToolConnection, mappings, models) -> None:
    for tool_type, model_slug, condition, statuses, field_rules in mappings:
        mapping = TypeMapping.objects.create(
            connection=connection,
            tool_type=tool_type,
            artifact_model=models[model_slug],
            condition_path=condition[0] if condition else "",
            condition_value=condition[1] if condition else "",
            priority=10 if condition else 100,
        )
        StatusMapping.objects.bulk_create(
            StatusMapping(
                type_mapping=mapping,
                tool_status=status,
                flow_state=state,
                preferred=status in PREFERRED_STATUSES,
            )
            for status, state in statuses.items()
        )
        FieldMapping.objects.bulk_create(
            FieldMapping(
                type_mapping=mapping, tool_path=path, model_field=name, transform=transform, value_map=values
            )
            for path, name, transform, values in field_rules
        )


def _configure_link_rules(connections: dict[str, ToolConnection], size: str) -> None:
    in_house = [team.project for product in PRODUCTS for team in product.teams]
    # (connection, name, item types, path, (pattern, template), target, kind, reverse): each rule names, in
    # an item's payload, the item at the other end.
    rules = [
        (
            "salesforce",
            "Linked item in Targetprocess",
            "FeatureRequest",
            "Linked_Item__c",
            WHOLE_VALUE,
            "targetprocess",
            LinkKind.DERIVED_FROM,
            True,
        ),
        (
            "targetprocess",
            "Jira epic in a custom field",
            "Feature",
            "CustomFields.*.Value",
            JIRA_KEY,
            "jira",
            LinkKind.IMPLEMENTS,
            True,
        ),
        (
            "github",
            "Jira keys in commit messages",
            "Commit",
            "commit.message",
            (_key_pattern(in_house), "{key}"),
            "jira",
            LinkKind.COMMITTED_IN,
            True,
        ),
        (
            "github",
            "Acme Jira keys in commit messages",
            "Commit",
            "commit.message",
            (_key_pattern([PARTNER.team.project]), "{key}"),
            "jira-acme",
            LinkKind.COMMITTED_IN,
            True,
        ),
        (
            "jenkins",
            "Commits in the change sets",
            "Build",
            "changeSets.*.items.*.commitId",
            WHOLE_VALUE,
            "github",
            LinkKind.BUILT_IN,
            True,
        ),
        (
            "zendesk",
            "Jira bug of an escalated ticket",
            "Ticket",
            "custom_fields.*.value",
            (_key_pattern(in_house), "{key}"),
            "jira",
            LinkKind.DERIVED_FROM,
            True,
        ),
        (
            "jira-acme",
            "Client epic in the labels",
            "Story",
            "fields.labels",
            (_key_pattern(in_house), "{key}"),
            "jira",
            LinkKind.CHILD_OF,
            False,
        ),
    ]
    for connection, name, item_types, path, (pattern, template), target, kind, reverse in rules:
        LinkRule.objects.get_or_create(
            connection=connections[connection],
            name=name,
            defaults={
                "item_types": item_types,
                "source_path": path,
                "pattern": pattern,
                "key_template": template,
                "target_connection": connections[target],
                "kind": kind,
                "reverse": reverse,
            },
        )


def _configure_integrations(connections: dict[str, ToolConnection], size: str) -> None:
    """Per product: new customer requests go from Salesforce to Targetprocess as requests, and their
    progress comes back; support tickets tagged for engineering become Jira bugs, which solve them."""
    for plan, teams in products_of(SIZES[size]):
        scopes = {
            scope.connection_id: scope
            for scope in Scope.objects.filter(product__slug=plan.slug).exclude(
                connection__partner__isnull=False
            )
        }
        in_house = next(team for team in teams if not team.partner)
        jira = Scope.objects.get(connection=connections["jira"], name=f"{plan.name}: {in_house.name}")
        _integration(
            f"{plan.name}: customer requests to Targetprocess",
            model="request",
            source=(scopes[connections["salesforce"].pk], "FeatureRequest"),
            target=(scopes[connections["targetprocess"].pk], "Request"),
            fields=[("title", FieldFlow.TO_TARGET)],
            status_flow=FieldFlow.TO_SOURCE,
            conflict_policy=ConflictPolicy.TARGET_WINS,
            # The requests the sales team has not handed over yet; the older ones went by hand.
            filters=[("status", FilterOperator.EQUALS, FlowState.NEW)],
            write_back_link=False,
        )
        _integration(
            f"{plan.name}: escalations to Jira",
            model="defect",
            source=(scopes[connections["zendesk"].pk], "Ticket"),
            target=(jira, "Bug"),
            fields=[("title", FieldFlow.TO_TARGET)],
            status_flow=FieldFlow.TO_SOURCE,
            conflict_policy=ConflictPolicy.FLAG,
            filters=[("status", FilterOperator.NOT_EQUALS, FlowState.DONE)],
            write_back_link=True,
            write_back_path="jira_key",
        )


def _integration(name, *, model, source, target, fields, filters, **options) -> Integration:
    (source_scope, source_type), (target_scope, target_type) = source, target
    artifact_model = ArtifactModel.objects.get(slug=model)
    integration, created = Integration.objects.get_or_create(
        name=name,
        defaults={
            "artifact_model": artifact_model,
            "source_scope": source_scope,
            "source_type_mapping": TypeMapping.objects.get(
                connection=source_scope.connection, tool_type=source_type, artifact_model=artifact_model
            ),
            "target_scope": target_scope,
            "target_type_mapping": TypeMapping.objects.get(
                connection=target_scope.connection, tool_type=target_type, artifact_model=artifact_model
            ),
            **options,
        },
    )
    if created:
        for model_field, flow in fields:
            IntegrationField.objects.create(integration=integration, model_field=model_field, flow=flow)
        for model_field, operator, value in filters:
            IntegrationFilter.objects.create(
                integration=integration, model_field=model_field, operator=operator, value=value
            )
    return integration


def _configure_users(products: dict[str, Product], partner: Partner) -> None:
    users = get_user_model().objects
    logins = {login.username: login for login in DEMO_LOGINS}
    if users.filter(username__in=list(logins)).exists():
        return
    users.create_superuser("admin", "admin@brightcart.example", logins["admin"].password)
    owner = users.create_user("owner", "owner@brightcart.example", logins["owner"].password)
    for slug in ("checkout", "mobile-app"):
        if slug in products:
            ProductRole.objects.create(user=owner, product=products[slug], role=ProductRoleName.OWNER)
    leader = users.create_user("leader", "leader@brightcart.example", logins["leader"].password)
    leader.user_permissions.add(
        Permission.objects.get(codename="view_all_products", content_type__app_label="vsm")
    )
    field_user = users.create_user("field", "field@brightcart.example", logins["field"].password)
    for product in products.values():
        ProductRole.objects.create(user=field_user, product=product, role=ProductRoleName.VIEWER)
    partner_user = users.create_user(
        "partner", "partner@acme-outsourcing.example", logins["partner"].password
    )
    PartnerMembership.objects.create(user=partner_user, partner=partner)


# Loading -----------------------------------------------------------------------------------------------


@dataclass
class LoadReport:
    """Seconds spent per step of `demo_load`, and what the syncs read."""

    ingest: dict[str, float] = field(default_factory=dict)  # by connection name
    linking: float = 0.0
    propagation: float = 0.0  # integrations
    metrics: float = 0.0
    statistics: float = 0.0  # the planner's, for the loaded world
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # by connection name
    failures: list[str] = field(default_factory=list)


def demo_load(transport: httpx.BaseTransport | None = None) -> LoadReport:
    """The real pipeline over every enabled scope: sync, relink, propagate, metrics rebuild, and the
    database's planner statistics refreshed for what was loaded.

    `transport` reaches the fakes in-process (a WSGI transport over the world's fakes) instead of over
    the network; the URLs stay those of the connections. The integrations are held back while the
    history loads (each page would start them) and run once after it, each over all its items.
    """
    report = LoadReport()
    integrations = list(Integration.objects.filter(enabled=True).values_list("pk", flat=True))
    Integration.objects.filter(pk__in=integrations).update(enabled=False)
    scopes = (
        Scope.objects.filter(enabled=True).select_related("connection").order_by("connection__name", "pk")
    )
    for scope in scopes:
        started = time.perf_counter()
        result = scope_sync(scope.pk, trigger=SyncTrigger.MANUAL, transport=transport, sleep=_no_sleep)
        name = scope.connection.name
        report.ingest[name] = report.ingest.get(name, 0.0) + time.perf_counter() - started
        counts = report.counts.setdefault(name, {})
        for key, value in result.counts.items():
            counts[key] = counts.get(key, 0) + value
        if result.outcome != "success":
            message = SyncRun.objects.filter(pk=result.run_id).values_list("message", flat=True).first()
            report.failures.append(f"{scope}: {result.outcome or result.skipped} {message or ''}".strip())
    started = time.perf_counter()
    for connection in ToolConnection.objects.filter(link_rules__isnull=False).distinct():
        relink_connection(connection)
    report.linking = time.perf_counter() - started
    started = time.perf_counter()
    Integration.objects.filter(pk__in=integrations).update(enabled=True)
    for integration_id in integrations:
        result = integration_run(
            integration_id, trigger=SyncTrigger.MANUAL, transport=transport, sleep=_no_sleep
        )
        if result.skipped or result.counts.get("failed"):
            report.failures.append(f"integration {integration_id}: {result.skipped or result.counts}")
    report.propagation = time.perf_counter() - started
    started = time.perf_counter()
    for product in Product.objects.all():
        product_rollups_rebuild(product)
    report.metrics = time.perf_counter() - started
    started = time.perf_counter()
    database_analyze()
    report.statistics = time.perf_counter() - started
    return report


def _no_sleep(seconds: float) -> None:
    """Loopback fakes need no back-off."""


def demo_scopes_due(now: datetime | None = None) -> list[int]:
    """The enabled scopes whose schedule is due: never synced, or last started an interval ago."""
    now = now or timezone.now()
    last_runs = dict(
        SyncRun.objects.values("scope_id").annotate(last=Max("started_at")).values_list("scope_id", "last")
    )
    due = []
    for scope_id, minutes in (
        Scope.objects.filter(enabled=True).order_by("pk").values_list("pk", "interval_minutes")
    ):
        last = last_runs.get(scope_id)
        if last is None or last + timedelta(minutes=minutes) <= now:
            due.append(scope_id)
    return due


def demo_run_due_scopes(now: datetime | None = None, on_result: Callable | None = None) -> int:
    """Sync every due scope in-process (the embedded mode's stand-in for beat); how many ran."""
    ran = 0
    for scope_id in demo_scopes_due(now):
        result = scope_sync(scope_id, trigger=SyncTrigger.SCHEDULE, sleep=_no_sleep)
        ran += 1
        if on_result is not None:
            on_result(result)
    return ran
