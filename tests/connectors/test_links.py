"""Trace links derived by rules across tools, in any sync order, idempotently, with pending refs."""

import itertools
import random
from datetime import UTC, datetime

import pytest
from django.utils import timezone

from connectors.base import Page, ToolItem, ToolLink
from connectors.ingest import PageStore
from connectors.links import PATTERN_PRESETS, compile_rule, relink_connection, rule_preview
from connectors.models import LinkRule, PendingLink, Scope, SyncRun, ToolConnection
from connectors.selectors import load_mapping_set
from tests.factories import ProductFactory, map_types
from vsm.choices import FlowState, LinkKind, LinkOrigin
from vsm.models import ArtifactLink

pytestmark = pytest.mark.django_db
AT = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
SHA = "9f1c2e7d4b5a69788766554433221100ffeeddcc"
JIRA_KEY, COMMIT_MESSAGE = PATTERN_PRESETS["Jira key (ABC-123)"]
WHOLE_VALUE = PATTERN_PRESETS["The whole value (an id or SHA)"]


def item(key, item_type, raw, links=()):
    return ToolItem(
        native_id=key,
        key=key,
        item_type=item_type,
        url="",
        title=key,
        status="Done",
        created=AT,
        updated=AT,
        links=list(links),
        raw={"id": key, **raw},
    )


class Toolchain:
    """Five tools, their mappings and link rules, and one item each along a request's chain."""

    def __init__(self):
        product = ProductFactory()
        self.connections = {}
        self.scopes = {}
        for tool, types in {
            "salesforce": {"FeatureRequest": "request"},
            "targetprocess": {"Feature": "feature"},
            "jira": {"Epic": "epic", "Story": "story"},
            "github": {"Commit": "commit"},
            "jenkins": {"Build": "build", "Deployment": "deployment"},
        }.items():
            connection = ToolConnection.objects.create(
                kind=tool, name=tool, base_url=f"https://{tool}.example.test"
            )
            map_types(connection, types, {"Done": FlowState.DONE})
            self.connections[tool] = connection
            self.scopes[tool] = Scope.objects.create(
                connection=connection,
                name=tool,
                query="acme/shop" if tool == "github" else tool,
                product=product,
            )
        c = self.connections
        self.rule(
            "salesforce",
            "linked item",
            "Linked_Item__c",
            *WHOLE_VALUE,
            c["targetprocess"],
            LinkKind.DERIVED_FROM,
        )
        self.rule(
            "targetprocess",
            "jira epic",
            "CustomFields.*.Value",
            JIRA_KEY,
            COMMIT_MESSAGE,
            c["jira"],
            LinkKind.IMPLEMENTS,
        )
        self.rule(
            "github",
            "keys in messages",
            "commit.message",
            JIRA_KEY,
            COMMIT_MESSAGE,
            c["jira"],
            LinkKind.COMMITTED_IN,
        )
        self.rule(
            "jenkins",
            "built commits",
            "changeSets.*.items.*.commitId",
            *WHOLE_VALUE,
            c["github"],
            LinkKind.BUILT_IN,
        )
        self.pages = {
            "salesforce": [item("FR-1", "FeatureRequest", {"Linked_Item__c": "TP-310"})],
            "targetprocess": [
                item("TP-310", "Feature", {"CustomFields": [{"Name": "Jira Epic", "Value": "CHK-101"}]})
            ],
            "jira": [
                item("CHK-101", "Epic", {}),
                item("CHK-102", "Story", {}, [ToolLink(kind=LinkKind.CHILD_OF, target_key="CHK-101")]),
            ],
            "github": [
                item(SHA, "Commit", {"commit": {"message": "CHK-102 add the reorder button\n\nfixes #4"}})
            ],
            "jenkins": [
                item("shop #88", "Build", {"changeSets": [{"items": [{"commitId": SHA}]}]}),
                item(
                    "deploy-prod #12",
                    "Deployment",
                    {},
                    [ToolLink(kind=LinkKind.DEPLOYED_IN, target_key="shop #88", incoming=True)],
                ),
            ],
        }

    def rule(self, tool, name, path, pattern, template, target, kind):
        # Every rule here names the item it finds as the link's source: the feature derives from the
        # request, the epic implements the feature, the story is committed in the commit...
        LinkRule.objects.create(
            connection=self.connections[tool],
            name=name,
            source_path=path,
            pattern=pattern,
            key_template=template,
            target_connection=target,
            kind=kind,
            reverse=True,
        )

    def sync(self, tool, items=None):
        scope = self.scopes[tool]
        run = SyncRun.objects.create(scope=scope, started_at=timezone.now())
        PageStore(scope, load_mapping_set(scope.connection), run).save_page(
            Page(items=items or self.pages[tool])
        )


CHAIN = {
    ("TP-310", "FR-1", LinkKind.DERIVED_FROM),
    ("CHK-101", "TP-310", LinkKind.IMPLEMENTS),
    ("CHK-102", "CHK-101", LinkKind.CHILD_OF),
    ("CHK-102", SHA, LinkKind.COMMITTED_IN),
    (SHA, "shop #88", LinkKind.BUILT_IN),
    ("shop #88", "deploy-prod #12", LinkKind.DEPLOYED_IN),
}


def links() -> set[tuple[str, str, str]]:
    return set(ArtifactLink.objects.values_list("source__key", "target__key", "kind"))


ORDERS = [
    ("salesforce", "targetprocess", "jira", "github", "jenkins"),
    ("jenkins", "github", "jira", "targetprocess", "salesforce"),
    *random.Random(7).sample(
        list(itertools.permutations(["salesforce", "targetprocess", "jira", "github", "jenkins"])), 4
    ),
]


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(tool[:2] for tool in order) for order in ORDERS])
def test_the_chain_from_request_to_deployment_links_in_any_sync_order(order):
    toolchain = Toolchain()
    for tool in order:
        toolchain.sync(tool)
    assert links() == CHAIN
    assert PendingLink.objects.count() == 0
    assert set(ArtifactLink.objects.values_list("origin", flat=True)) == {LinkOrigin.RULE, LinkOrigin.TOOL}


def test_relinking_and_resyncing_create_no_duplicates():
    toolchain = Toolchain()
    for tool in toolchain.pages:
        toolchain.sync(tool)
    count = ArtifactLink.objects.count()
    for connection in toolchain.connections.values():
        relink_connection(connection)
    for tool, items in toolchain.pages.items():
        toolchain.sync(tool, [item(i.key, i.item_type, {**i.raw, "v": 2}, i.links) for i in items])
    assert ArtifactLink.objects.count() == count
    assert links() == CHAIN


def test_a_typoed_key_makes_no_link_and_stays_visible_as_pending():
    toolchain = Toolchain()
    toolchain.sync("jira")
    toolchain.sync(
        "github",
        [item(SHA, "Commit", {"commit": {"message": "CHK-1020 reorder button (a typo of the key)"}})],
    )
    assert links() == {("CHK-102", "CHK-101", LinkKind.CHILD_OF)}
    pending = PendingLink.objects.get()
    assert (pending.source.key, pending.target_key, pending.kind, pending.reverse) == (
        SHA,
        "CHK-1020",
        LinkKind.COMMITTED_IN,
        True,
    )
    assert pending.origin == LinkOrigin.RULE


def test_relink_applies_a_new_rule_to_stored_items():
    toolchain = Toolchain()
    for tool in toolchain.pages:
        toolchain.sync(tool)
    LinkRule.objects.filter(connection=toolchain.connections["github"]).delete()
    ArtifactLink.objects.filter(kind=LinkKind.COMMITTED_IN).delete()
    toolchain.rule(
        "github",
        "again",
        "commit.message",
        JIRA_KEY,
        COMMIT_MESSAGE,
        toolchain.connections["jira"],
        LinkKind.COMMITTED_IN,
    )
    stats = relink_connection(toolchain.connections["github"])
    assert (stats.references, stats.linked, stats.pending) == (1, 1, 0)
    assert ("CHK-102", SHA, LinkKind.COMMITTED_IN) in links()


@pytest.mark.parametrize(
    ("preset", "text", "expected"),
    [
        ("Jira key (ABC-123)", "CHK-12 and ABC_2-7, not xCHK-9 or CHK-10x", {"CHK-12", "ABC_2-7"}),
        ("GitHub #12 in the same repository", "see #12 and owner/repo#13, not a#14", {"acme/shop#12"}),
        ("GitHub owner/repo#12", "see other/lib#5", {"other/lib#5"}),
        (
            "GitHub closing keywords (fixes #12)",
            "Fixes #3, resolved: #4, mentions #5",
            {"acme/shop#3", "acme/shop#4"},
        ),
        ("The whole value (an id or SHA)", SHA, {SHA}),
    ],
)
def test_pattern_presets(preset, text, expected):
    pattern, template = PATTERN_PRESETS[preset]
    rule = LinkRule(
        pk=1,
        source_path="text",
        pattern=pattern,
        key_template=template,
        target_connection_id=1,
        kind="relates_to",
    )
    assert compile_rule(rule).keys_in({"text": text}, "acme/shop") == expected


def test_rule_preview_shows_what_a_rule_finds_and_whether_it_is_stored():
    toolchain = Toolchain()
    toolchain.sync("jira")
    toolchain.sync("github", [item(SHA, "Commit", {"commit": {"message": "CHK-102 and CHK-777"}})])
    (row,) = rule_preview(LinkRule.objects.get(connection=toolchain.connections["github"]))
    assert row.key == SHA and row.found == [("CHK-102", True), ("CHK-777", False)]
