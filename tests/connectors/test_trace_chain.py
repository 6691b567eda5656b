"""A request's trace, end to end through the real providers and their fakes, in any sync order.

Salesforce request -> Targetprocess feature -> Jira epic -> story -> GitHub commit -> Jenkins build ->
production deployment: five fakes seeded with one chain, a connection, mappings, a scope and link rules
per tool, and `scope_sync` run for each scope over the fake's WSGI app. The links must read the chain
whatever the order of the syncs; syncing again creates no link twice; a typo'd key makes no link and
waits, visibly, as a pending link.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from connectors.fakes.github import FakeGitHub
from connectors.fakes.jenkins import FakeJenkins
from connectors.fakes.jira import FakeJira
from connectors.fakes.salesforce import FakeSalesforce
from connectors.fakes.targetprocess import FakeTargetprocess
from connectors.ingest import scope_sync
from connectors.links import PATTERN_PRESETS
from connectors.models import (
    FieldMapping,
    LinkRule,
    PendingLink,
    RawRecord,
    Scope,
    SyncError,
    SyncRun,
    ToolConnection,
    TypeMapping,
)
from connectors.providers.jenkins.items import DEFAULT_DEPLOYMENT_PATTERN, DEFAULT_PRODUCTION_PATTERN
from tests.factories import ProductFactory, UserFactory, map_types
from vsm.choices import FlowState, LinkKind, LinkOrigin
from vsm.models import Artifact, ArtifactLink

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 4, 6, 12, 0, tzinfo=UTC)
JIRA_KEY = PATTERN_PRESETS["Jira key (ABC-123)"]
WHOLE_VALUE = PATTERN_PRESETS["The whole value (an id or SHA)"]
TOOLS = ("salesforce", "targetprocess", "jira", "github", "jenkins")
REPOSITORY = "acme/shop"
BUILD_JOB = "shop/build"
DEPLOY_JOB = "shop/deploy-prod"


class Clock:
    """One clock for the five fakes, moved by the tests."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


@dataclass
class Keys:
    request: str
    feature: str
    epic: str
    story: str
    commit: str
    build: str
    deployment: str
    typo_commit: str = ""
    typo_key: str = ""

    def chain_keys(self) -> list[str]:
        return [self.request, self.feature, self.epic, self.story, self.commit, self.build, self.deployment]


def days(n: float) -> datetime:
    return T0 - timedelta(days=n)


def mistyped(key: str) -> str:
    """The key with a wrong number: CHK-2 -> CHK-22."""
    project, number = key.rsplit("-", 1)
    return f"{project}-{number}{number}"


class Toolchain:
    """Five fakes holding one chain, and the portal's connections, mappings, scopes and rules for them."""

    def __init__(self, *, typo: bool = False):
        self.clock = Clock(T0)
        self.fakes = {
            "salesforce": FakeSalesforce(now=self.clock),
            "targetprocess": FakeTargetprocess(now=self.clock),
            "jira": FakeJira(flavour="cloud", now=self.clock),
            "github": FakeGitHub(now=self.clock),
            "jenkins": FakeJenkins(now=self.clock),
        }
        self.keys = self._seed(typo)
        self.product = ProductFactory(name="Shop", slug="shop")
        self.connections: dict[str, ToolConnection] = {}
        self.scopes: dict[str, Scope] = {}
        self._configure()

    # The tools' side -----------------------------------------------------------------------------------

    def _seed(self, typo: bool) -> Keys:
        jira = self.fakes["jira"]
        jira.add_project("CHK", statuses={"To Do": "new", "In Progress": "indeterminate", "Done": "done"})
        epic = jira.add_issue(
            "CHK",
            "Epic",
            "Reorder from the order history",
            created=days(20),
            histories=[(days(19), "To Do", "In Progress")],
        )
        story = jira.add_issue(
            "CHK",
            "Story",
            "A reorder button on past orders",
            parent=epic,
            created=days(18),
            histories=[(days(10), "To Do", "In Progress"), (days(3), "In Progress", "Done")],
        )

        targetprocess = self.fakes["targetprocess"]
        self.tp_project = targetprocess.add_project("Shop", created=days(40))
        feature_id = targetprocess.add_item(
            "Feature",
            "Reorder",
            project=self.tp_project,
            created=days(25),
            history=[(days(21), "In Progress")],
            custom_fields={"Jira Epic": epic},
        )

        salesforce = self.fakes["salesforce"]
        request = salesforce.add_request(
            "Let customers reorder past orders",
            status="In Development",
            created=days(30),
            history=[(days(26), "New", "Planned"), (days(21), "Planned", "In Development")],
            account="Globex",
            amount=120000,
            linked_item=f"TP-{feature_id}",
        )

        github = self.fakes["github"]
        github.add_repo(REPOSITORY)
        github.add_commit(REPOSITORY, "Initial commit", at=days(60))
        commit = github.add_commit(
            REPOSITORY, f"{story} add the reorder button\n\nTested on staging.", at=days(4)
        )
        typo_commit = ""
        if typo:
            typo_commit = github.add_commit(
                REPOSITORY, f"{mistyped(story)} fix the reorder button's label", at=days(3)
            )

        jenkins = self.fakes["jenkins"]
        jenkins.add_folder("shop")
        jenkins.add_job(BUILD_JOB, "pipeline")
        jenkins.add_job(DEPLOY_JOB, "pipeline")
        build = jenkins.add_build(
            BUILD_JOB, started=days(2), duration=timedelta(minutes=7), commits=[commit], revision=commit
        )
        build_number = int(build.rsplit("#", 1)[1])
        deployment = jenkins.add_build(
            DEPLOY_JOB,
            started=days(2) + timedelta(minutes=10),
            duration=timedelta(minutes=3),
            upstream=(BUILD_JOB, build_number),
        )
        return Keys(
            request=request,
            feature=f"TP-{feature_id}",
            epic=epic,
            story=story,
            commit=commit,
            build=build,
            deployment=deployment,
            typo_commit=typo_commit,
            typo_key=mistyped(story) if typo else "",
        )

    # The portal's side ----------------------------------------------------------------------------------

    def _configure(self) -> None:
        targetprocess = self.fakes["targetprocess"]
        setups = {
            "salesforce": (
                "https://acme.my.salesforce.test",
                {"linked_item_field": "Linked_Item__c"},
                {"FeatureRequest": "request"},
                {
                    "New": FlowState.NEW,
                    "Under Review": FlowState.WAITING,
                    "Planned": FlowState.WAITING,
                    "In Development": FlowState.ACTIVE,
                    "Delivered": FlowState.DONE,
                    "Declined": FlowState.CANCELED,
                },
                "requests",
            ),
            "targetprocess": (
                "https://acme.tpondemand.test",
                {"entity_types": "Feature", "time_zone": targetprocess.time_zone},
                {"Feature": "feature"},
                {
                    "New": FlowState.NEW,
                    "Planned": FlowState.NEW,
                    "In Progress": FlowState.ACTIVE,
                    "Done": FlowState.DONE,
                },
                str(self.tp_project),
            ),
            "jira": (
                "https://acme.atlassian.test",
                {"flavour": "cloud"},
                {"Epic": "epic", "Story": "story"},
                {"To Do": FlowState.NEW, "In Progress": FlowState.ACTIVE, "Done": FlowState.DONE},
                "CHK",
            ),
            "github": (
                "https://api.github.test",
                {"history": "events"},
                {"Commit": "commit"},
                {"committed": FlowState.DONE},
                REPOSITORY,
            ),
            "jenkins": (
                "https://jenkins.acme.test",
                {
                    "deployment_job_pattern": DEFAULT_DEPLOYMENT_PATTERN,
                    "production_pattern": DEFAULT_PRODUCTION_PATTERN,
                },
                {"Build": "build", "Deployment": "deployment"},
                {
                    "BUILDING": FlowState.ACTIVE,
                    "SUCCESS": FlowState.DONE,
                    "UNSTABLE": FlowState.DONE,
                    "FAILURE": FlowState.DONE,
                    "ABORTED": FlowState.CANCELED,
                },
                "shop",
            ),
        }
        for tool, (base_url, options, types, statuses, query) in setups.items():
            connection = ToolConnection.objects.create(
                kind=tool,
                name=f"Acme {tool}",
                base_url=base_url,
                options=options,
                credentials=self.fakes[tool].credentials(),
                requests_per_second=0,
            )
            map_types(connection, types, statuses)
            self.connections[tool] = connection
            self.scopes[tool] = Scope.objects.create(
                connection=connection, name=f"Shop in {tool}", query=query, product=self.product
            )
        FieldMapping.objects.create(
            type_mapping=TypeMapping.objects.get(
                connection=self.connections["jenkins"], tool_type="Deployment"
            ),
            tool_path="environment",
            model_field="environment",
            transform="text",
        )

        c = self.connections
        # Each rule names, in an item's payload, the item at the link's source: the feature named by a
        # request derives from it, the epic named by a feature implements it, the story named by a
        # commit is committed in it, the commit named by a build is built in it.
        self.rule(
            "salesforce",
            "Linked item in Targetprocess",
            "FeatureRequest",
            "Linked_Item__c",
            WHOLE_VALUE,
            c["targetprocess"],
            LinkKind.DERIVED_FROM,
        )
        self.rule(
            "targetprocess",
            "Jira epic in a custom field",
            "Feature",
            "CustomFields.*.Value",
            JIRA_KEY,
            c["jira"],
            LinkKind.IMPLEMENTS,
        )
        self.rule(
            "github",
            "Jira keys in commit messages",
            "Commit",
            "commit.message",
            JIRA_KEY,
            c["jira"],
            LinkKind.COMMITTED_IN,
        )
        self.rule(
            "jenkins",
            "Commits in the change sets",
            "Build",
            "changeSets.*.items.*.commitId",
            WHOLE_VALUE,
            c["github"],
            LinkKind.BUILT_IN,
        )

    def rule(self, tool, name, item_types, path, preset, target, kind) -> LinkRule:
        pattern, template = preset
        return LinkRule.objects.create(
            connection=self.connections[tool],
            name=name,
            item_types=item_types,
            source_path=path,
            pattern=pattern,
            key_template=template,
            target_connection=target,
            kind=kind,
            reverse=True,
        )

    # Syncing -------------------------------------------------------------------------------------------

    def sync(self, tool: str):
        result = scope_sync(
            self.scopes[tool].pk,
            transport=httpx.WSGITransport(app=self.fakes[tool]),
            sleep=lambda seconds: None,
        )
        run = SyncRun.objects.get(pk=result.run_id)
        assert result.outcome == "success", f"{tool}: {result.outcome} {run.message}"
        return result

    def sync_all(self, order=TOOLS) -> dict:
        return {tool: self.sync(tool) for tool in order}

    def chain(self) -> set[tuple[str, str, str, str]]:
        k = self.keys
        return {
            (k.feature, k.request, LinkKind.DERIVED_FROM, LinkOrigin.RULE),
            (k.epic, k.feature, LinkKind.IMPLEMENTS, LinkOrigin.RULE),
            (k.story, k.epic, LinkKind.CHILD_OF, LinkOrigin.TOOL),
            (k.story, k.commit, LinkKind.COMMITTED_IN, LinkOrigin.RULE),
            (k.commit, k.build, LinkKind.BUILT_IN, LinkOrigin.RULE),
            (k.build, k.deployment, LinkKind.DEPLOYED_IN, LinkOrigin.TOOL),
        }


def links() -> set[tuple[str, str, str, str]]:
    return set(ArtifactLink.objects.values_list("source__key", "target__key", "kind", "origin"))


ORDERS = [
    TOOLS,
    tuple(reversed(TOOLS)),
    ("jira", "jenkins", "salesforce", "github", "targetprocess"),
    ("github", "salesforce", "jenkins", "targetprocess", "jira"),
    ("targetprocess", "github", "jira", "jenkins", "salesforce"),
    ("jenkins", "jira", "targetprocess", "salesforce", "github"),
]


def order_id(order) -> str:
    return "-".join(tool[:2] for tool in order)


@pytest.mark.parametrize("order", ORDERS, ids=[order_id(order) for order in ORDERS])
def test_the_chain_from_request_to_production_deployment_links_in_any_sync_order(order):
    toolchain = Toolchain()

    results = toolchain.sync_all(order)

    assert links() == toolchain.chain()
    assert PendingLink.objects.count() == 0
    assert not SyncError.objects.exists(), list(SyncError.objects.values_list("message", flat=True))
    created = {tool: result.counts["created"] for tool, result in results.items()}
    assert created == {"salesforce": 1, "targetprocess": 1, "jira": 2, "github": 2, "jenkins": 2}
    k = toolchain.keys
    artifacts = {a.key: a for a in Artifact.objects.select_related("artifact_model")}
    assert {key: artifacts[key].artifact_model.slug for key in k.chain_keys()} == {
        k.request: "request",
        k.feature: "feature",
        k.epic: "epic",
        k.story: "story",
        k.commit: "commit",
        k.build: "build",
        k.deployment: "deployment",
    }
    assert artifacts[k.deployment].fields["environment"] == "production"
    assert all(a.product_id == toolchain.product.pk for a in artifacts.values())


def test_syncing_again_creates_no_duplicate_links():
    toolchain = Toolchain()
    toolchain.sync_all()
    chain, count = links(), ArtifactLink.objects.count()
    assert chain == toolchain.chain() and count == len(chain)

    # Nothing changed in the tools: whatever the overlap re-reads is unchanged.
    toolchain.clock.advance(minutes=15)
    again = toolchain.sync_all(tuple(reversed(TOOLS)))
    assert {tool: (r.counts["created"], r.counts["updated"]) for tool, r in again.items()} == {
        tool: (0, 0) for tool in TOOLS
    }
    assert ArtifactLink.objects.count() == count
    assert links() == chain

    # Items that carry links change in their tools and are read again, with their links and rules.
    toolchain.clock.advance(hours=1)
    k = toolchain.keys
    toolchain.fakes["jira"].edit(k.story, {"summary": "A reorder button on every past order"})
    toolchain.fakes["jira"].edit(k.epic, {"summary": "Reorder, from anywhere"})
    toolchain.fakes["targetprocess"].edit(int(k.feature.removeprefix("TP-")), {"Name": "Reorder v2"})
    toolchain.fakes["salesforce"].edit(k.request, {"Title__c": "Reorder past orders, in one click"})
    third = toolchain.sync_all(("github", "jenkins", "jira", "salesforce", "targetprocess"))
    updated = {tool: result.counts["updated"] for tool, result in third.items()}
    assert updated == {"salesforce": 1, "targetprocess": 1, "jira": 2, "github": 0, "jenkins": 0}
    assert {tool: result.counts["created"] for tool, result in third.items()} == dict.fromkeys(TOOLS, 0)
    assert RawRecord.objects.get(key=k.story).payload["fields"]["summary"] == (
        "A reorder button on every past order"
    )
    assert ArtifactLink.objects.count() == count
    assert links() == chain
    assert PendingLink.objects.count() == 0


@pytest.mark.parametrize("order", ORDERS[:3], ids=[order_id(order) for order in ORDERS[:3]])
def test_a_mistyped_key_makes_no_link_and_shows_as_unresolved(order, client):
    toolchain = Toolchain(typo=True)
    k = toolchain.keys
    assert not Artifact.objects.filter(key=k.typo_key).exists()

    toolchain.sync_all(order)

    assert links() == toolchain.chain()
    assert not ArtifactLink.objects.filter(source__key=k.typo_commit).exists()
    assert not ArtifactLink.objects.filter(target__key=k.typo_commit).exists()
    pending = PendingLink.objects.select_related("source", "target_connection").get()
    assert (
        pending.source.key,
        pending.target_connection,
        pending.target_key,
        pending.kind,
        pending.reverse,
        pending.origin,
    ) == (
        k.typo_commit,
        toolchain.connections["jira"],
        k.typo_key,
        LinkKind.COMMITTED_IN,
        True,
        LinkOrigin.RULE,
    )

    # Syncing again leaves it as it is: one pending link, no link.
    toolchain.clock.advance(minutes=30)
    toolchain.sync_all(order)
    assert PendingLink.objects.get().pk == pending.pk
    assert links() == toolchain.chain()

    # Visible in admin to a staff user who may view pending links.
    staff = UserFactory(username="link-keeper", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_pendinglink"))
    client.force_login(staff)
    response = client.get(reverse("admin:connectors_pendinglink_changelist"))
    assert response.status_code == 200
    page = response.content.decode()
    assert k.typo_key in page
