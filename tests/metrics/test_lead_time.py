"""End-to-end lead time across tools: the downstream walk, the delivery rule, phases, the API and scope.

Times are whole hours after T0 (Monday 2 March 2026, 00:00 UTC); every figure is exact seconds.
"""

import csv
import io
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from metrics.calculators import (
    ChainNode,
    delivery_instant,
    downstream_graph,
    earliest_deliveries,
    merge_copies,
    request_lead_time,
    synced_originals,
    trace_downstream,
    work_item_delivery,
)
from metrics.selectors import DayWindow, request_lead_times
from tests.clients import api_client_for as client_for
from tests.factories import (
    ArtifactLinkFactory,
    PartnerFactory,
    PartnerGrantFactory,
    PartnerMembershipFactory,
    ProductFactory,
    ProductRoleFactory,
    StaffFactory,
    ToolConnectionFactory,
    UserFactory,
    artifact_model,
    flow_item,
)
from vsm.choices import LinkKind

HOUR = 3600.0
T0 = datetime(2026, 3, 2, tzinfo=UTC)
NEW, WAITING, ACTIVE, DONE, CANCELED = "new", "waiting", "active", "done", "canceled"
WINDOW = {"window_start": "2026-03-01", "window_end": "2026-03-31"}
URL = "/api/metrics/lead-time/"


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


# --- pure: the walk -----------------------------------------------------------------------------------------


def test_downstream_follows_each_kind_in_its_direction():
    edges = [
        (2, 1, "derived_from"),  # feature 2 derived from request 1
        (3, 2, "implements"),  # epic 3 implements feature 2
        (4, 3, "child_of"),  # story 4 child of epic 3
        (4, 5, "committed_in"),  # story 4 committed in commit 5
        (5, 6, "built_in"),
        (6, 7, "deployed_in"),
        (5, 8, "released_in"),
        (9, 4, "fixes"),  # pull request 9 fixes story 4
        (1, 10, "relates_to"),  # no direction: not followed
        (11, 1, "synced_with"),  # 11 is the copy an integration made of 1 in another tool
        (1, 12, "child_of"),  # the request is a child of 12: upstream, not followed
        (13, 7, "committed_in"),  # 13 is upstream of the deployment: not reached
    ]
    trace = trace_downstream(1, edges)
    assert trace.start == 1
    assert trace.nodes == (2, 3, 4, 5, 6, 7, 8, 9, 11)
    assert trace.cyclic is False
    assert trace_downstream(4, edges).nodes == (5, 6, 7, 8, 9)
    assert trace_downstream(7, edges).nodes == ()
    # A prebuilt graph gives the same trace.
    assert trace_downstream(1, downstream_graph(edges)) == trace


def test_a_cycle_ends_the_walk_and_is_reported():
    edges = [(2, 1, "derived_from"), (3, 2, "child_of"), (2, 3, "child_of"), (3, 1, "child_of")]
    trace = trace_downstream(1, edges)
    assert trace.nodes == (2, 3)
    assert trace.cyclic is True
    # Two paths to one node (a diamond) are no cycle.
    diamond = [(2, 1, "derived_from"), (3, 1, "derived_from"), (4, 2, "child_of"), (4, 3, "child_of")]
    assert trace_downstream(1, diamond).nodes == (2, 4, 3)
    assert trace_downstream(1, diamond).cyclic is False


def test_a_long_chain_is_walked_without_recursion():
    edges = [(n + 1, n, "child_of") for n in range(1, 20_000)]
    assert len(trace_downstream(1, edges).nodes) == 19_999


# --- pure: deliveries and phases ----------------------------------------------------------------------------


def node(id_, model, created, state=NEW, done=None, **kwargs) -> ChainNode:
    return ChainNode(
        id=id_, key=f"K-{id_}", model=model, created_at=h(created), state=state, done_at=done, **kwargs
    )


def deployment(id_, done_hour, environment="production", result="SUCCESS", state=DONE) -> ChainNode:
    done = h(done_hour) if state == DONE else None
    return node(id_, "deployment", done_hour - 1, state, done, environment=environment, result=result)


def test_what_delivers():
    assert delivery_instant(deployment(1, 10)) == h(10)
    assert delivery_instant(deployment(1, 10, environment={"name": "prod-eu"})) == h(10)
    assert delivery_instant(deployment(1, 10, environment="staging")) is None
    assert delivery_instant(deployment(1, 10, environment="")) is None
    assert delivery_instant(deployment(1, 10, result="FAILURE")) is None
    assert delivery_instant(deployment(1, 10, result=None, state=ACTIVE)) is None
    release = node(1, "release", 5, state=NEW, released_at=h(8))
    assert delivery_instant(release) == h(8)
    assert delivery_instant(node(1, "release", 5, state=DONE, done=h(9))) == h(9)
    assert delivery_instant(node(1, "release", 5)) is None
    assert delivery_instant(node(1, "build", 5, state=DONE, done=h(9))) is None


def chain(*nodes_):
    return {n.id: n for n in nodes_}


def test_the_latest_of_each_work_items_earliest_delivery_delivers():
    request = node(1, "request", 0)
    nodes = chain(
        request,
        node(2, "feature", 10, DONE, h(100)),
        node(3, "story", 14, DONE, h(60)),
        node(4, "story", 16, DONE, h(80)),
        node(5, "commit", 50),
        node(6, "commit", 70),
        deployment(7, 55),  # ships story 3 first
        deployment(8, 110),  # ships story 4 first
        deployment(9, 130),  # ships both again: no one's first
        deployment(10, 74, environment="staging"),
    )
    edges = [
        (2, 1, "derived_from"),
        (3, 2, "child_of"),
        (4, 2, "child_of"),
        (3, 5, "committed_in"),
        (4, 6, "committed_in"),
        (5, 7, "deployed_in"),
        (6, 8, "deployed_in"),
        (5, 9, "deployed_in"),
        (6, 9, "deployed_in"),
        (6, 10, "deployed_in"),
    ]
    figures = request_lead_time(request, nodes, trace_downstream(1, edges), now=h(500))
    assert figures.delivered is True
    assert (figures.delivered_at, figures.delivered_by) == (h(110), 8)
    assert figures.lead_time == 110 * HOUR
    assert figures.age is None and figures.furthest_segment is None
    assert figures.segments == {"ideate": 10 * HOUR, "create": 90 * HOUR, "release": 10 * HOUR}
    assert (figures.work_items, figures.work_items_done) == (3, 3)


def test_work_shipped_across_several_releases_is_delivered_by_the_last():
    """Story 3's first commit ships in the release of h30, its merge commit only in that of h80 (after the
    story was done at h60): the story, and the request with it, are delivered at h80, not h30."""
    request = node(1, "request", 0)
    nodes = chain(
        request,
        node(2, "story", 5, DONE, h(60)),
        node(3, "commit", 10),
        node(4, "commit", 59),
        node(5, "release", 30, DONE, h(30)),
        node(6, "release", 80, DONE, h(80)),
    )
    edges = [
        (2, 1, "derived_from"),
        (2, 3, "committed_in"),
        (2, 4, "committed_in"),
        (3, 5, "released_in"),
        (4, 6, "released_in"),
    ]
    figures = request_lead_time(request, nodes, trace_downstream(1, edges), now=h(500))
    assert (figures.delivered_at, figures.delivered_by, figures.lead_time) == (h(80), 6, 80 * HOUR)
    assert figures.segments == {"ideate": 5 * HOUR, "create": 55 * HOUR, "release": 20 * HOUR}


def test_a_work_item_is_delivered_once_done_and_shipped_whichever_comes_last():
    release = node(9, "release", 30, DONE, h(30))
    trace_edges = [(2, 1, "derived_from"), (2, 3, "committed_in"), (3, 9, "released_in")]
    nodes = chain(node(1, "request", 0), node(2, "story", 5, DONE, h(50)), node(3, "commit", 10), release)
    trace = trace_downstream(1, trace_edges)
    earliest = earliest_deliveries(trace, nodes)
    assert work_item_delivery(nodes[2], trace, nodes, earliest) == (h(50), 9)  # shipped before done
    nodes[2] = node(2, "story", 5, ACTIVE)
    assert work_item_delivery(nodes[2], trace, nodes, earliest) is None  # shipped, not done
    nodes[2] = node(2, "story", 5, DONE, h(20))
    assert work_item_delivery(nodes[2], trace, nodes, earliest) == (h(30), 9)
    # Without commits: its link to a release, or its Done alone.
    released = trace_downstream(1, [(2, 1, "derived_from"), (2, 9, "released_in")])
    assert work_item_delivery(nodes[2], released, nodes, earliest_deliveries(released, nodes)) == (h(30), 9)
    alone = trace_downstream(1, [(2, 1, "derived_from")])
    assert work_item_delivery(nodes[2], alone, nodes, earliest_deliveries(alone, nodes)) == (h(20), None)
    # A commit never shipped: not delivered.
    unshipped = trace_downstream(1, [*trace_edges, (2, 4, "committed_in")])
    nodes[4] = node(4, "commit", 12)
    assert work_item_delivery(nodes[2], unshipped, nodes, earliest_deliveries(unshipped, nodes)) is None


def test_a_request_of_work_without_commits_is_delivered_when_the_last_is_done():
    request = node(1, "request", 0)
    nodes = chain(request, node(2, "task", 4, DONE, h(40)), node(3, "task", 6, DONE, h(70)))
    edges = [(2, 1, "derived_from"), (3, 1, "derived_from")]
    figures = request_lead_time(request, nodes, trace_downstream(1, edges), now=h(500))
    assert (figures.delivered_at, figures.delivered_by, figures.lead_time) == (h(70), None, 70 * HOUR)
    assert figures.segments == {"ideate": 4 * HOUR, "create": 66 * HOUR, "release": 0.0}


@pytest.mark.parametrize("work_on", ["original", "copy"])
def test_a_synced_copy_is_the_same_request(work_on):
    """Salesforce request 1, its Targetprocess copy 2 (synced_with, copy -> original) and the copy's own
    Jira copy 3: one request, created when 1 was, whose work hangs off either end."""
    edges = [
        (2, 1, "synced_with"),
        (3, 2, "synced_with"),
        (4, 1 if work_on == "original" else 3, "derived_from"),
    ]
    edges += [(4, 5, "committed_in"), (5, 6, "released_in")]
    originals = synced_originals(edges)
    assert originals == {2: 1, 3: 1}
    merged = merge_copies(edges, originals)
    assert merged == [(4, 1, "derived_from"), (4, 5, "committed_in"), (5, 6, "released_in")]
    nodes = chain(
        node(1, "request", 0),
        node(4, "feature", 3, DONE, h(20)),
        node(5, "commit", 10),
        node(6, "release", 30, DONE, h(30)),
    )
    figures = request_lead_time(nodes[1], nodes, trace_downstream(1, merged), now=h(500))
    assert (figures.delivered_at, figures.lead_time) == (h(30), 30 * HOUR)


def test_copies_that_loop_stand_for_the_smallest_id():
    assert synced_originals([(2, 3, "synced_with"), (3, 2, "synced_with"), (4, 2, "synced_with")]) == {
        3: 2,
        4: 2,
    }


def test_a_declined_request_is_closed_not_open():
    declined = node(1, "request", 0, CANCELED, canceled_at=h(90), tool_status="Declined")
    nodes = chain(declined, node(2, "feature", 10, ACTIVE))
    figures = request_lead_time(declined, nodes, trace_downstream(1, [(2, 1, "derived_from")]), now=h(500))
    assert (figures.delivered, figures.canceled, figures.closed_at, figures.closed_as) == (
        False,
        True,
        h(90),
        "Declined",
    )
    assert (figures.age, figures.furthest_segment) == (90 * HOUR, "create")
    assert sum(figures.segments.values()) == 90 * HOUR


def test_a_request_with_no_work_is_delivered_by_a_release_it_reaches_itself():
    request = node(1, "request", 0)
    nodes = chain(request, node(2, "release", 5, DONE, h(25)))
    figures = request_lead_time(request, nodes, trace_downstream(1, [(1, 2, "released_in")]), now=h(99))
    assert (figures.delivered_at, figures.delivered_by) == (h(25), 2)


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(st.data())
def test_the_delivery_never_precedes_the_done_of_any_work_item_with_commits(data):
    """Random requests: work items (some done), commits under them, deliveries (releases, production
    deployments, some failed or staging) reached from commits or items at random times."""
    hours = st.integers(min_value=1, max_value=400)
    work_count = data.draw(st.integers(1, 4), label="work items")
    nodes = {1: node(1, "request", 0)}
    edges = []
    next_id = 2
    for _ in range(work_count):
        item = next_id
        next_id += 1
        done = data.draw(st.booleans(), label="done")
        nodes[item] = node(
            item, "story", data.draw(hours), DONE if done else ACTIVE, h(data.draw(hours)) if done else None
        )
        edges.append((item, 1, "derived_from"))
        for _ in range(data.draw(st.integers(0, 3), label="commits")):
            commit = next_id
            next_id += 1
            nodes[commit] = node(commit, "commit", data.draw(hours))
            edges.append((item, commit, "committed_in"))
            for _ in range(data.draw(st.integers(0, 2), label="deliveries")):
                delivery = next_id
                next_id += 1
                if data.draw(st.booleans(), label="release"):
                    at = data.draw(hours)
                    nodes[delivery] = node(delivery, "release", at, DONE, h(at))
                    edges.append((commit, delivery, "released_in"))
                else:
                    environment = data.draw(st.sampled_from(["production", "staging"]))
                    result = data.draw(st.sampled_from(["SUCCESS", "FAILURE"]))
                    nodes[delivery] = deployment(delivery, data.draw(hours), environment, result)
                    edges.append((commit, delivery, "deployed_in"))
    figures = request_lead_time(nodes[1], nodes, trace_downstream(1, edges), now=h(1000))
    if not figures.delivered:
        return
    for item, commit, kind in edges:
        if kind == "committed_in":
            assert figures.delivered_at >= nodes[item].done_at
            assert figures.delivered_at >= min(_shipping_times(commit, edges, nodes))


def _shipping_times(commit, edges, nodes) -> list[datetime]:
    """When each release or succeeded production deployment the commit is linked to delivered."""
    found = (delivery_instant(nodes[target]) for source, target, _kind in edges if source == commit)
    return [at for at in found if at is not None]


def test_a_canceled_work_item_neither_blocks_nor_delivers():
    request = node(1, "request", 0)
    nodes = chain(
        request,
        node(2, "story", 2, DONE, h(20)),
        node(3, "story", 1, CANCELED),
        node(4, "commit", 10),
        deployment(5, 30),
    )
    edges = [(2, 1, "derived_from"), (3, 1, "derived_from"), (2, 4, "committed_in"), (4, 5, "deployed_in")]
    figures = request_lead_time(request, nodes, trace_downstream(1, edges), now=h(500))
    assert (figures.delivered, figures.delivered_at, figures.lead_time) == (True, h(30), 30 * HOUR)
    assert figures.segments == {"ideate": 2 * HOUR, "create": 18 * HOUR, "release": 10 * HOUR}
    assert (figures.work_items, figures.work_items_done) == (1, 1)


def test_a_request_not_delivered_has_an_age_and_its_furthest_segment():
    request = node(1, "request", 0)
    now = h(200)
    # No work item yet: ideating.
    figures = request_lead_time(request, chain(request), trace_downstream(1, []), now=now)
    assert (figures.delivered, figures.delivered_at, figures.lead_time) == (False, None, None)
    assert (figures.age, figures.furthest_segment) == (200 * HOUR, "ideate")
    assert figures.segments == {"ideate": 200 * HOUR, "create": 0.0, "release": 0.0}

    # A work item open (even with a deployment reached through a done one): creating.
    nodes = chain(
        request,
        node(2, "feature", 8, ACTIVE),
        node(3, "story", 9, DONE, h(20)),
        node(4, "commit", 15),
        deployment(5, 30),
    )
    edges = [(2, 1, "derived_from"), (3, 2, "child_of"), (3, 4, "committed_in"), (4, 5, "deployed_in")]
    figures = request_lead_time(request, nodes, trace_downstream(1, edges), now=now)
    assert (figures.delivered, figures.delivered_at, figures.delivered_by) == (False, None, None)
    assert (figures.age, figures.furthest_segment) == (200 * HOUR, "create")
    assert figures.segments == {"ideate": 8 * HOUR, "create": 192 * HOUR, "release": 0.0}
    assert (figures.work_items, figures.work_items_done) == (2, 1)

    # Every work item done, a commit not shipped yet: releasing.
    nodes = chain(
        request, node(2, "feature", 8, DONE, h(50)), node(3, "story", 9, DONE, h(40)), node(4, "commit", 15)
    )
    figures = request_lead_time(request, nodes, trace_downstream(1, edges[:3]), now=now)
    assert (figures.age, figures.furthest_segment) == (200 * HOUR, "release")
    assert figures.segments == {"ideate": 8 * HOUR, "create": 42 * HOUR, "release": 150 * HOUR}


def test_phase_boundaries_are_clamped_so_they_sum_to_the_lead_time():
    # The feature predates the request (linked later), and was done after its commit was deployed: it is
    # delivered when done.
    request = node(1, "request", 10)
    nodes = chain(request, node(2, "feature", 0, DONE, h(40)), node(3, "commit", 5), deployment(4, 30))
    edges = [(2, 1, "derived_from"), (2, 3, "committed_in"), (3, 4, "deployed_in")]
    figures = request_lead_time(request, nodes, trace_downstream(1, edges), now=h(99))
    assert (figures.delivered_at, figures.delivered_by, figures.lead_time) == (h(40), 4, 30 * HOUR)
    assert figures.segments == {"ideate": 0.0, "create": 30 * HOUR, "release": 0.0}


# --- the database: a world ----------------------------------------------------------------------------------


@pytest.fixture
def world():
    """Product "shop" (granted to partner A) and "other" (partner B only).

    REQ-1 (from partner A's CRM) -> FEAT-1 -> EPIC-1 -> STORY-1, STORY-2 -> COMMIT-1, COMMIT-2 ->
    BUILD-1, BUILD-2 -> DEPLOY-1 (h55, ships STORY-1), DEPLOY-2 (h110, ships STORY-2), DEPLOY-3 (h130,
    redeploys both), STAGING (h74). REQ-2: a feature still active. REQ-3: nothing linked. REQ-4: a
    cycle between its story and its feature. REQ-OLD: delivered before March. REQ-X: canceled.
    """
    w = SimpleNamespace()
    w.shop = ProductFactory(name="Shop", slug="shop")
    w.other = ProductFactory(name="Other", slug="other")
    w.partner = PartnerFactory(name="Partner A")
    w.other_partner = PartnerFactory(name="Partner B")
    PartnerGrantFactory(partner=w.partner, product=w.shop)
    PartnerGrantFactory(partner=w.other_partner, product=w.other)
    crm = ToolConnectionFactory(kind="salesforce", name="A CRM", partner=w.partner)
    plan = ToolConnectionFactory(kind="targetprocess", name="Plan")
    jira = ToolConnectionFactory(kind="jira", name="Jira")
    git = ToolConnectionFactory(kind="github", name="GitHub")
    ci = ToolConnectionFactory(kind="jenkins", name="Jenkins")
    w.a = {}

    def art(key, model, connection, *moves, created, flow_type=None, product=None, **kwargs):
        w.a[key] = flow_item(
            product or w.shop,
            *moves,
            created_at=h(created),
            flow_type=flow_type,
            connection=connection,
            artifact_model=artifact_model(model),
            key=key,
            title=f"{key} title",
            **kwargs,
        )
        return w.a[key]

    def deploy(key, done_hour, environment="production"):
        fields = {"environment": environment, "result": "SUCCESS"}
        return art(key, "deployment", ci, (h(done_hour), DONE), created=done_hour - 1, fields=fields)

    def link(source, target, kind):
        ArtifactLinkFactory(source=w.a[source], target=w.a[target], kind=kind)

    art("REQ-1", "request", crm, created=0)
    art("FEAT-1", "feature", plan, (h(20), ACTIVE), (h(100), DONE), created=10, flow_type="feature")
    art("EPIC-1", "epic", jira, (h(30), ACTIVE), (h(90), DONE), created=12, flow_type="feature")
    art("STORY-1", "story", jira, (h(40), ACTIVE), (h(60), DONE), created=14, flow_type="feature")
    art("STORY-2", "story", jira, (h(45), ACTIVE), (h(80), DONE), created=16, flow_type="feature")
    art("COMMIT-1", "commit", git, created=50)
    art("COMMIT-2", "commit", git, created=70)
    art("BUILD-1", "build", ci, (h(53), DONE), created=52)
    art("BUILD-2", "build", ci, (h(73), DONE), created=72)
    deploy("DEPLOY-1", 55)
    deploy("STAGING", 74, environment="staging")
    deploy("DEPLOY-2", 110)
    deploy("DEPLOY-3", 130)
    link("FEAT-1", "REQ-1", LinkKind.DERIVED_FROM)
    link("EPIC-1", "FEAT-1", LinkKind.IMPLEMENTS)
    link("STORY-1", "EPIC-1", LinkKind.CHILD_OF)
    link("STORY-2", "EPIC-1", LinkKind.CHILD_OF)
    link("STORY-1", "COMMIT-1", LinkKind.COMMITTED_IN)
    link("STORY-2", "COMMIT-2", LinkKind.COMMITTED_IN)
    link("COMMIT-1", "BUILD-1", LinkKind.BUILT_IN)
    link("COMMIT-2", "BUILD-2", LinkKind.BUILT_IN)
    link("BUILD-1", "DEPLOY-1", LinkKind.DEPLOYED_IN)
    link("BUILD-2", "STAGING", LinkKind.DEPLOYED_IN)
    link("BUILD-2", "DEPLOY-2", LinkKind.DEPLOYED_IN)
    link("BUILD-1", "DEPLOY-3", LinkKind.DEPLOYED_IN)
    link("BUILD-2", "DEPLOY-3", LinkKind.DEPLOYED_IN)
    link("REQ-1", "EPIC-1", LinkKind.RELATES_TO)  # not followed

    art("REQ-2", "request", plan, created=5)
    art("FEAT-2", "feature", plan, (h(20), ACTIVE), created=8, flow_type="feature")
    link("FEAT-2", "REQ-2", LinkKind.DERIVED_FROM)

    art("REQ-3", "request", plan, created=30)

    art("REQ-4", "request", plan, created=1)
    art("FEAT-4", "feature", plan, (h(3), ACTIVE), created=2, flow_type="feature")
    art("STORY-4", "story", jira, created=4, flow_type="feature")
    link("FEAT-4", "REQ-4", LinkKind.DERIVED_FROM)
    link("STORY-4", "FEAT-4", LinkKind.CHILD_OF)
    link("FEAT-4", "STORY-4", LinkKind.CHILD_OF)

    art("REQ-OLD", "request", plan, created=-500)
    art("FEAT-OLD", "feature", plan, (h(-400), DONE), created=-450, flow_type="feature")
    art("COMMIT-OLD", "commit", git, created=-420)
    deploy("DEPLOY-OLD", -300)
    link("FEAT-OLD", "REQ-OLD", LinkKind.DERIVED_FROM)
    link("FEAT-OLD", "COMMIT-OLD", LinkKind.COMMITTED_IN)
    link("COMMIT-OLD", "DEPLOY-OLD", LinkKind.DEPLOYED_IN)

    art("REQ-X", "request", plan, (h(3), CANCELED), created=2)
    art("REQ-LATER", "request", plan, created=24 * 40)  # created after the window
    art("REQ-ELSEWHERE", "request", plan, created=0, product=w.other)

    w.staff = StaffFactory(username="staff")
    w.owner = ProductRoleFactory(product=w.shop, user__username="owner").user
    w.partner_user = PartnerMembershipFactory(partner=w.partner, user__username="partner-a").user
    w.other_partner_user = PartnerMembershipFactory(partner=w.other_partner, user__username="partner-b").user
    w.outsider = UserFactory(username="outsider")
    return w


def lead_times(client, **params):
    response = client.get(URL, {"product": "shop", **WINDOW, **params})
    assert response.status_code == 200, response.content
    return response.json()


def by_key(payload) -> dict[str, dict]:
    return {row["key"]: row for row in payload["results"]}


pytestmark = pytest.mark.django_db


# --- the selector at a fixed now ----------------------------------------------------------------------------


def test_lead_times_of_the_requests_at_a_fixed_now(world):
    result = request_lead_times(
        world.owner, world.shop, DayWindow(date(2026, 3, 1), date(2026, 3, 31)), now=h(200)
    )
    rows = {row["key"]: row for row in result["requests"]}
    # Delivered before the window (REQ-OLD), created after it, another product's: out.
    assert list(rows) == ["REQ-1", "REQ-4", "REQ-X", "REQ-2", "REQ-3"]  # by created_at

    delivered = rows["REQ-1"]
    assert delivered["delivered"] is True
    assert delivered["delivered_at"] == h(110)
    assert delivered["delivered_by"] == {"artifact": world.a["DEPLOY-2"].pk, "key": "DEPLOY-2"}
    assert delivered["lead_time"] == 110 * HOUR
    assert delivered["segments"] == {"ideate": 10 * HOUR, "create": 90 * HOUR, "release": 10 * HOUR}
    assert (delivered["age"], delivered["furthest_segment"]) == (None, None)
    assert (delivered["work_items"], delivered["work_items_done"]) == (4, 4)
    assert delivered["chain"] == [
        "FEAT-1",
        "EPIC-1",
        "STORY-1",
        "COMMIT-1",
        "BUILD-1",
        "DEPLOY-1",
        "DEPLOY-3",
        "STORY-2",
        "COMMIT-2",
        "BUILD-2",
        "STAGING",
        "DEPLOY-2",
    ]
    assert delivered["cyclic"] is False

    creating = rows["REQ-2"]
    assert (creating["delivered"], creating["delivered_at"], creating["lead_time"]) == (False, None, None)
    assert (creating["age"], creating["furthest_segment"]) == (195 * HOUR, "create")
    assert creating["segments"] == {"ideate": 3 * HOUR, "create": 192 * HOUR, "release": 0.0}
    assert creating["chain"] == ["FEAT-2"]

    assert (rows["REQ-3"]["age"], rows["REQ-3"]["furthest_segment"], rows["REQ-3"]["chain"]) == (
        170 * HOUR,
        "ideate",
        [],
    )

    cycle = rows["REQ-4"]  # the cycle between FEAT-4 and STORY-4 ends the walk
    assert (cycle["chain"], cycle["cyclic"], cycle["furthest_segment"]) == (
        ["FEAT-4", "STORY-4"],
        True,
        "create",
    )
    assert cycle["age"] == 199 * HOUR
    assert cycle["segments"] == {"ideate": 1 * HOUR, "create": 198 * HOUR, "release": 0.0}

    declined = rows["REQ-X"]  # canceled 1 hour after it was made: closed, not open
    assert (declined["status"], declined["delivered"], declined["closed_at"], declined["closed_as"]) == (
        "canceled",
        False,
        h(3),
        "Won't Do",
    )
    assert (declined["age"], declined["furthest_segment"]) == (1 * HOUR, "ideate")

    summary = result["summary"]
    assert (summary["requests"], summary["delivered"], summary["canceled"], summary["open"]) == (5, 1, 1, 3)
    assert summary["lead_time"]["p50"] == 110 * HOUR
    assert summary["segments_mean"] == {"ideate": 10 * HOUR, "create": 90 * HOUR, "release": 10 * HOUR}


def test_a_window_lists_what_was_delivered_inside_it(world):
    march_7_on = DayWindow(date(2026, 3, 7), date(2026, 3, 31))
    keys = [
        row["key"] for row in request_lead_times(world.owner, world.shop, march_7_on, now=h(200))["requests"]
    ]
    assert keys == ["REQ-4", "REQ-2", "REQ-3"]  # REQ-1 was delivered on 6 March
    february = DayWindow(date(2026, 2, 1), date(2026, 2, 28))
    rows = request_lead_times(world.owner, world.shop, february, now=h(200), status="delivered")["requests"]
    assert [(row["key"], row["lead_time"], row["delivered_by"]["key"]) for row in rows] == [
        ("REQ-OLD", 200 * HOUR, "DEPLOY-OLD")
    ]


# --- the API ------------------------------------------------------------------------------------------------


def test_the_api_lists_each_request_with_its_figures(world):
    payload = lead_times(client_for(world.owner))
    assert payload["product"] == {"id": world.shop.pk, "slug": "shop", "name": "Shop"}
    assert payload["window"]["start"] == "2026-03-01T00:00:00Z"
    assert payload["count"] == 5
    row = by_key(payload)["REQ-1"]
    assert row == {
        "artifact": world.a["REQ-1"].pk,
        "key": "REQ-1",
        "title": "REQ-1 title",
        "url": world.a["REQ-1"].url,
        "created_at": "2026-03-02T00:00:00Z",
        "status": "delivered",
        "delivered": True,
        "delivered_at": "2026-03-06T14:00:00Z",
        "delivered_by": {"artifact": world.a["DEPLOY-2"].pk, "key": "DEPLOY-2"},
        "closed_at": None,
        "closed_as": "",
        "lead_time": 110 * HOUR,
        "age": None,
        "furthest_segment": None,
        "segments": {"ideate": 10 * HOUR, "create": 90 * HOUR, "release": 10 * HOUR},
        "work_items": 4,
        "work_items_done": 4,
        "chain": row["chain"],
        "cyclic": False,
    }
    assert len(row["chain"]) == 12
    open_row = by_key(payload)["REQ-2"]
    assert open_row["furthest_segment"] == "create"
    assert open_row["age"] >= (datetime(2026, 11, 1, tzinfo=UTC) - h(5)).total_seconds()
    assert sum(open_row["segments"].values()) == pytest.approx(open_row["age"], abs=1e-6)


def test_status_ordering_and_pages(world):
    client = client_for(world.owner)
    assert [r["key"] for r in lead_times(client, status="delivered")["results"]] == ["REQ-1"]
    assert [r["key"] for r in lead_times(client, status="open")["results"]] == ["REQ-4", "REQ-2", "REQ-3"]
    assert [r["key"] for r in lead_times(client, status="canceled")["results"]] == ["REQ-X"]
    assert [r["key"] for r in lead_times(client, ordering="-age")["results"]] == [
        "REQ-4",
        "REQ-2",
        "REQ-3",
        "REQ-X",
        "REQ-1",  # no age: last
    ]
    assert lead_times(client, ordering="-created_at")["results"][0]["key"] == "REQ-3"
    page = lead_times(client, page_size=3, page=2)
    assert (page["count"], [r["key"] for r in page["results"]]) == (5, ["REQ-2", "REQ-3"])
    assert page["previous"] is not None and page["next"] is None


def test_lead_times_export_as_csv(world):
    response = client_for(world.owner).get(URL, {"product": "shop", **WINDOW, "format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["key"] for row in rows] == ["REQ-1", "REQ-4", "REQ-X", "REQ-2", "REQ-3"]
    assert (rows[2]["status"], rows[2]["closed_at"], rows[2]["closed_as"]) == (
        "canceled",
        "2026-03-02T03:00:00Z",
        "Won't Do",
    )
    first = rows[0]
    assert (first["delivered_at"], first["delivered_by"]) == ("2026-03-06T14:00:00Z", "DEPLOY-2")
    assert (first["lead_time"], first["ideate"], first["create"], first["release"]) == (
        str(110 * HOUR),
        str(10 * HOUR),
        str(90 * HOUR),
        str(10 * HOUR),
    )
    assert first["chain"].startswith("FEAT-1; EPIC-1; STORY-1")


def test_a_partner_sees_the_part_of_the_chain_in_its_scope(world):
    """Partner A owns the CRM: it sees REQ-1 and what is linked to it (FEAT-1, and EPIC-1 through the
    relates_to link), so the walk goes REQ-1 -> FEAT-1 -> EPIC-1 and no further: the stories, commits,
    builds and deployments are outside its scope. What it sees is work without commits, delivered when
    done (the last at h100)."""
    payload = lead_times(client_for(world.partner_user))
    assert list(by_key(payload)) == ["REQ-1"]
    row = by_key(payload)["REQ-1"]
    assert row["chain"] == ["FEAT-1", "EPIC-1"]
    assert (row["delivered"], row["delivered_by"], row["furthest_segment"]) == (True, None, None)
    assert (row["work_items"], row["work_items_done"]) == (2, 2)
    assert row["segments"]["create"] == 90 * HOUR  # created h10, done h100

    staff_row = by_key(lead_times(client_for(world.staff)))["REQ-1"]
    assert (staff_row["delivered"], len(staff_row["chain"])) == (True, 12)


def test_products_out_of_reach_answer_404(world):
    assert client_for(world.partner_user).get(URL, {"product": "other"}).status_code == 404
    response = client_for(world.other_partner_user).get(URL, {"product": world.shop.pk})
    assert response.status_code == 404
    assert "no product" in response.json()["detail"]
    assert client_for(world.outsider).get(URL, {"product": "shop"}).status_code == 404
    assert APIClient().get(URL, {"product": "shop"}).status_code == 401


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"product": ""}, "product", "may not be blank"),
        ({"window_start": "2026-04-20"}, "window_end", "is before window_start"),
        ({"window_start": "2020-03-15"}, "window_end", "longer than 3 years"),
        ({"window_end": "2026-02-30"}, "window_end", "wrong format"),
        ({"status": "late"}, "status", "unknown status 'late'"),
        ({"ordering": "title"}, "ordering", "unknown ordering 'title'"),
        ({"page_size": "0"}, "page_size", "greater than or equal to 1"),
    ],
)
def test_bad_input_is_a_400_with_a_message(world, params, field, message):
    response = client_for(world.owner).get(URL, {"product": "shop", **WINDOW, **params})
    assert response.status_code == 400, response.content
    assert message in str(response.json()[field])


def test_a_fixed_number_of_queries_whatever_the_number_of_chains(world, django_assert_max_num_queries):
    plan, ci = world.a["REQ-2"].connection, world.a["DEPLOY-1"].connection
    for n in range(15):
        request = flow_item(
            world.shop,
            created_at=h(n),
            flow_type=None,
            connection=plan,
            key=f"R-{n}",
            artifact_model=artifact_model("request"),
        )
        story = flow_item(world.shop, (h(n + 5), DONE), created_at=h(n + 1), connection=plan, key=f"S-{n}")
        deploy = flow_item(
            world.shop,
            (h(n + 9), DONE),
            created_at=h(n + 8),
            flow_type=None,
            connection=ci,
            key=f"D-{n}",
            artifact_model=artifact_model("deployment"),
            fields={"environment": "prod"},
        )
        ArtifactLinkFactory(source=story, target=request, kind=LinkKind.CHILD_OF)
        ArtifactLinkFactory(source=story, target=deploy, kind=LinkKind.DEPLOYED_IN)
    for user in (world.owner, world.partner_user, world.staff):
        client = client_for(user)
        with django_assert_max_num_queries(16):
            lead_times(client)
    assert lead_times(client_for(world.owner), status="delivered")["count"] == 16


def test_the_schema_documents_the_endpoints(world):
    response = client_for(world.owner).get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    params = {p["name"] for p in paths[URL]["get"]["parameters"]}
    assert {"product", "window_start", "window_end", "status", "ordering", "page", "page_size"} <= params
    assert "/api/metrics/bottlenecks/" in paths


@pytest.mark.parametrize("work_on", ["original", "copy"])
def test_a_request_synced_into_another_tool_is_one_request(work_on):
    """A Salesforce request and the Targetprocess copy an integration made of it (synced_with, copy ->
    original): one row, created when the original was, delivered by the work hanging off either."""
    shop = ProductFactory(slug="synced")
    staff = StaffFactory()
    crm, plan = ToolConnectionFactory(kind="salesforce"), ToolConnectionFactory(kind="targetprocess")

    def art(key, model, connection, *moves, created, **kwargs):
        return flow_item(
            shop,
            *moves,
            created_at=h(created),
            artifact_model=artifact_model(model),
            connection=connection,
            key=key,
            flow_type=kwargs.pop("flow_type", None),
            **kwargs,
        )

    original = art("FR-1", "request", crm, created=0)
    copy = art("TP-9", "request", plan, created=2)
    ArtifactLinkFactory(source=copy, target=original, kind=LinkKind.SYNCED_WITH)
    feature = art("FEAT-9", "feature", plan, (h(10), ACTIVE), (h(50), DONE), created=5, flow_type="feature")
    commit = art("C-9", "commit", plan, created=30)
    release = art("R-9", "release", plan, (h(70), DONE), created=70)
    ArtifactLinkFactory(
        source=feature, target=copy if work_on == "copy" else original, kind=LinkKind.DERIVED_FROM
    )
    ArtifactLinkFactory(source=feature, target=commit, kind=LinkKind.COMMITTED_IN)
    ArtifactLinkFactory(source=commit, target=release, kind=LinkKind.RELEASED_IN)

    payload = client_for(staff).get(URL, {"product": "synced", **WINDOW}).json()
    assert [(row["key"], row["status"], row["lead_time"]) for row in payload["results"]] == [
        ("FR-1", "delivered", 70 * HOUR)
    ]
    assert (payload["summary"]["requests"], payload["summary"]["open"]) == (1, 0)
