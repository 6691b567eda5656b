"""The demo end to end on the small world: configured like an admin would, loaded by the real connectors.

Every item the generator made becomes exactly one artifact, every chain it made is linked, the stories it
planted show in the metrics, and live mode (ticks, then syncs over a real socket) moves the store and the
metrics. The same tests run on SQLite and PostgreSQL (DATABASE_URL).
"""

import random
from datetime import timedelta

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from connectors.fakes.world import (
    BOTTLENECK_PRODUCT,
    DEFAULT_NOW,
    PARTNER,
    fakes_use_clock,
    tick,
    world_generate,
    world_keys,
)
from connectors.fakes.wsgi import PrefixDispatcher, serve
from connectors.fakes.zendesk import JIRA_KEY_FIELD_ID
from connectors.ingest import scope_sync
from connectors.models import (
    IntegrationPair,
    LinkRule,
    PairState,
    PendingLink,
    Scope,
    SyncError,
    ToolConnection,
)
from metrics.selectors import DayWindow, bottlenecks, flow_metrics
from vsm.choices import LinkKind
from vsm.demo import (
    CONNECTION_NAMES,
    DEMO_LOGINS,
    demo_configure,
    demo_load,
    demo_scopes_due,
)
from vsm.models import Artifact, ArtifactLink, Partner, Product, StateTransition, Team

pytestmark = pytest.mark.django_db

LOAD_CLOCK = DEFAULT_NOW + timedelta(minutes=5)  # Zendesk exports nothing younger than a minute
TODAY = DEFAULT_NOW.date()


def load_small_world(base_url: str = "http://127.0.0.1:8800"):
    world = world_generate(size="small")
    fakes_use_clock(world.fakes, lambda: LOAD_CLOCK)
    demo_configure(base_url, size="small")
    report = demo_load(transport=httpx.WSGITransport(app=dispatcher(world.fakes)))
    assert report.failures == []
    return world, report


def dispatcher(fakes) -> PrefixDispatcher:
    return PrefixDispatcher({f"/{name}": fake for name, fake in fakes.items()})


def stored_keys() -> dict[str, set[str]]:
    names = {name: fake for fake, name in CONNECTION_NAMES.items()}
    found = {fake: set() for fake in CONNECTION_NAMES}
    for connection, key in Artifact.objects.values_list("connection__name", "key"):
        found[names[connection]].add(key)
    return found


def linked(source: str, target: str, kind: str) -> bool:
    return ArtifactLink.objects.filter(source__key=source, target__key=target, kind=kind).exists()


def planner_statistics_rows(table: str) -> int:
    from django.db import connection

    query = {
        "sqlite": "SELECT count(*) FROM sqlite_stat1 WHERE tbl = %s",
        "postgresql": "SELECT count(*) FROM pg_stats WHERE tablename = %s",
    }[connection.vendor]
    with connection.cursor() as cursor:
        cursor.execute(query, [table])
        return cursor.fetchone()[0]


def admin():
    return get_user_model().objects.get(username="admin")


def test_every_item_becomes_one_artifact_and_every_chain_is_linked(client):
    world, report = load_small_world()

    assert stored_keys() == world_keys(world.fakes)
    assert Artifact.objects.count() == sum(len(keys) for keys in world_keys(world.fakes).values())
    assert not SyncError.objects.exists(), list(SyncError.objects.values_list("message", flat=True)[:5])
    assert not PendingLink.objects.exists(), list(
        PendingLink.objects.values_list("target_key", flat=True)[:5]
    )
    assert set(report.ingest) == set(CONNECTION_NAMES.values())

    assert len(world.chains) >= 5
    for chain in world.chains:
        assert linked(chain.feature, chain.request, LinkKind.DERIVED_FROM), chain
        assert linked(chain.epic, chain.feature, LinkKind.IMPLEMENTS), chain
        assert linked(chain.story, chain.epic, LinkKind.CHILD_OF), chain
        assert linked(chain.story, chain.commit, LinkKind.COMMITTED_IN), chain
        assert linked(chain.commit, chain.build, LinkKind.BUILT_IN), chain
        assert linked(chain.build, chain.deployment, LinkKind.DEPLOYED_IN), chain
    # The partner's stories hang under the client's epics, across the two Jira sites.
    partner_story = Artifact.objects.filter(connection__partner__isnull=False, artifact_model__slug="story")
    assert ArtifactLink.objects.filter(source__in=partner_story, kind=LinkKind.CHILD_OF).exists()

    # The planner has statistics for the loaded world (without them a link walk ran for minutes).
    assert planner_statistics_rows("vsm_artifactlink") > 0

    # Every demo login reaches the portal and sees products with data; the partner only its own.
    for login in DEMO_LOGINS:
        assert client.login(username=login.username, password=login.password), login
        page = client.get(reverse("portal:home"))
        assert page.status_code == 200, login
        text = page.content.decode()
        assert "Checkout" in text, login
        assert ("Mobile App" in text) == (login.username != "partner"), login
        client.logout()


def test_the_planted_stories_are_what_the_metrics_report():
    load_small_world()
    mobile = Product.objects.get(slug=BOTTLENECK_PRODUCT)

    last_quarter = bottlenecks(admin(), mobile, DayWindow(TODAY - timedelta(days=90), TODAY), now=DEFAULT_NOW)
    before = bottlenecks(
        admin(), mobile, DayWindow(TODAY - timedelta(days=181), TODAY - timedelta(days=91)), now=DEFAULT_NOW
    )

    top = last_quarter["statuses"][0]
    assert (top["tool"], top["status"]) == ("jira", "Ready for Review")
    assert (before["statuses"][0]["tool"], before["statuses"][0]["status"]) != ("jira", "Ready for Review")

    checkout = Product.objects.get(slug=PARTNER.product)
    year = DayWindow(TODAY - timedelta(days=364), TODAY)

    def p50(**segment) -> float:
        return flow_metrics(admin(), checkout, year, "month", now=DEFAULT_NOW, **segment)["flow_time"]["p50"]

    partner_team = Team.objects.get(product=checkout, partner__isnull=False)
    in_house = [p50(team=team) for team in Team.objects.filter(product=checkout, partner__isnull=True)]
    assert in_house and p50(team=partner_team) > max(in_house)
    assert p50(partner=Partner.objects.get(slug=PARTNER.slug)) > max(in_house)


def test_live_mode_moves_the_store_and_the_metrics_over_a_real_socket(
    django_capture_on_commit_callbacks, eager_tasks
):
    world = world_generate(size="small")
    fakes = world.fakes
    with serve({f"/{name}": fake for name, fake in fakes.items()}) as server:
        fakes_use_clock(fakes, lambda: LOAD_CLOCK)
        demo_configure(server.base_url, size="small")
        assert demo_load(transport=httpx.WSGITransport(app=dispatcher(fakes))).failures == []
        mobile = Product.objects.get(slug=BOTTLENECK_PRODUCT)
        monday = DEFAULT_NOW + timedelta(days=3)  # after a quiet weekend
        day = DayWindow(monday.date(), monday.date())
        assert flow_metrics(admin(), mobile, day, "day", now=monday)["velocity"]["total"] == 0

        rng = random.Random(8)
        for step in range(40):
            tick(rng, fakes, monday + timedelta(minutes=5 * step))
        fakes_use_clock(fakes, lambda: monday + timedelta(hours=4))
        with django_capture_on_commit_callbacks(execute=True):
            for scope in Scope.objects.order_by("pk"):  # over the socket, as the schedule does
                assert scope_sync(scope.pk, sleep=lambda seconds: None).outcome == "success", scope

    assert stored_keys() == world_keys(fakes)
    moved = {}
    for name in ("jira", "jira-acme"):
        for issue in fakes[name].issues.values():
            if issue.histories and issue.histories[-1].created >= monday:
                moved[issue.key] = issue.status
    assert moved
    artifacts = {a.key: a for a in Artifact.objects.filter(key__in=moved)}
    assert {key: artifact.tool_status for key, artifact in artifacts.items()} == moved
    for key, status in moved.items():
        last = StateTransition.objects.filter(artifact=artifacts[key]).order_by("at", "id").last()
        assert (last.to_status, last.at >= monday) == (status, True), key
    # The integrations carried the new requests into Targetprocess and the escalated tickets into Jira.
    new_requests = [
        record
        for record in fakes["salesforce"].records.values()
        if record.get("_type") == "Feature_Request__c" and record["CreatedDate"] >= monday
    ]
    request_pairs = IntegrationPair.objects.filter(integration__name__contains="customer requests")
    assert new_requests and request_pairs.filter(state=PairState.OK).count() >= len(new_requests)
    tp_requests = {e.name for e in fakes["targetprocess"].entities.values() if e.entity_type == "Request"}
    assert {record["Title__c"] for record in new_requests} <= tp_requests
    escalated = [t for t in fakes["zendesk"].tickets.values() if "engineering" in t.tags]
    bugs = IntegrationPair.objects.filter(integration__name__contains="escalations", state=PairState.OK)
    assert escalated and bugs.count() == len(escalated)
    bug_of = {
        int(pair.source.external_id): pair.target.key for pair in bugs.select_related("source", "target")
    }
    assert {t.id: t.custom_fields.get(JIRA_KEY_FIELD_ID) for t in escalated} == bug_of
    done = {key for key, status in moved.items() if status in ("Done", "Closed")}
    done_in_mobile = Artifact.objects.filter(
        key__in=done, product=mobile, flow_item_type__isnull=False
    ).count()
    assert flow_metrics(admin(), mobile, day, "day", now=monday + timedelta(hours=5))["velocity"][
        "total"
    ] == (done_in_mobile)


def test_configuring_twice_changes_nothing_but_the_address_of_the_fakes():
    demo_configure("http://127.0.0.1:8800", size="small")
    counts = {model: model.objects.count() for model in (ToolConnection, Scope, LinkRule, Team, Product)}

    demo_configure("http://127.0.0.1:9911/", size="small")

    assert {model: model.objects.count() for model in counts} == counts
    assert set(ToolConnection.objects.values_list("base_url", flat=True)) == {
        f"http://127.0.0.1:9911/{fake}" for fake in CONNECTION_NAMES
    }
    partner_connection = ToolConnection.objects.get(partner__isnull=False)
    assert partner_connection.name == CONNECTION_NAMES["jira-acme"]
    assert dict(partner_connection.credentials)  # stored, encrypted at rest
    assert all(scope.periodic_task_id for scope in Scope.objects.all())


def test_every_scope_is_due_until_it_syncs():
    demo_configure("http://127.0.0.1:8800", size="small")
    scopes = list(Scope.objects.order_by("pk").values_list("pk", flat=True))
    assert demo_scopes_due() == scopes
