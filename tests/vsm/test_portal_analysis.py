"""The portal's analysis pages (bottlenecks, item analyzer, DORA, forecast) and the flow dashboard's scatter
and histogram drill-down: figures, scoping, bad input and query counts on realistic data."""

import csv
import io
import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse

from metrics.services import product_rollups_rebuild
from tests.clients import portal_client_for as client_for
from tests.factories import (
    BASE_TIME,
    ArtifactFactory,
    ArtifactLinkFactory,
    ProductFactory,
    ProductTargetFactory,
    ToolConnectionFactory,
    artifact_model,
    build_scope_world,
    flow_item,
)
from vsm.choices import FlowState, LinkKind

pytestmark = pytest.mark.django_db

WINDOW = {"window_start": "2026-01-01", "window_end": "2026-03-31"}
HISTORY = {"history_start": "2026-01-05", "history_end": "2026-03-05"}
ITEMS = 200  # in the granted product; every fifth on partner A's connection
CROWD_PRODUCTS = 24  # more products, each with its own items, transitions and links
PAGES = ("bottlenecks", "analyzer", "dora", "forecast")
# build_scope_world's flow items in "granted": all seven, and the four in partner A's scope.
SCOPE_WORLD_ITEMS, SCOPE_WORLD_PARTNER_ITEMS = 7, 4


def _supporting(product, model, key, created_at, connection, **kwargs):
    return ArtifactFactory(
        product=product,
        artifact_model=artifact_model(model),
        flow_item_type=None,
        connection=connection,
        key=key,
        title=f"{key} title",
        created_at=created_at,
        **kwargs,
    )


def build_analysis_world(crowd_products: int = CROWD_PRODUCTS):
    """build_scope_world, plus ITEMS flow items in "granted" (every fifth on partner A's connection),
    weekly commits, builds and production deployments there (every third failing; an incident follows
    every fourth; A's connection deploys on odd weeks), 20 items in "other", and `crowd_products` more
    products with items, transitions and links. Rollups rebuilt."""
    w = build_scope_world()
    for index in range(ITEMS):
        start = BASE_TIME + timedelta(days=index % 60, hours=index % 7)
        moves = [(start, FlowState.ACTIVE), (start + timedelta(days=1 + index % 9), FlowState.WAITING)]
        if index % 4:
            tail = 20 if index % 50 == 7 else 0  # a few items far above the others: outliers
            moves.append((start + timedelta(days=3 + index % 11 + tail), FlowState.DONE))
        partner_item = index % 5 == 0
        flow_item(
            w.product,
            *moves,
            flow_type=["feature", "defect", "risk", "debt"][index % 4 if index % 3 else 0],
            connection=w.partner_conn if partner_item else w.internal_conn,
            key=f"G-{index}",
            title=f"{'Partner' if partner_item else 'Internal'} item {index}",
        )
    github = ToolConnectionFactory(name="GitHub", kind="github")
    jenkins = ToolConnectionFactory(name="Jenkins", kind="jenkins")
    jira = ToolConnectionFactory(name="Incidents Jira")
    for week in range(12):
        monday = BASE_TIME + timedelta(days=7 * week)
        deployer = w.partner_conn if week % 2 else jenkins
        commit = _supporting(w.product, "commit", f"CMT-{week}", monday, github)
        build = _supporting(w.product, "build", f"BLD-{week}", monday + timedelta(hours=2), jenkins)
        failed = week % 3 == 2
        deployment = _supporting(
            w.product,
            "deployment",
            f"DEP-{week}",
            monday + timedelta(hours=5),
            deployer,
            fields={"environment": "production", "result": "FAILURE" if failed else "SUCCESS"},
            flow_state=FlowState.CANCELED if failed else FlowState.DONE,
            done_at=None if failed else monday + timedelta(hours=6),
        )
        ArtifactLinkFactory(source=commit, target=build, kind=LinkKind.BUILT_IN)
        ArtifactLinkFactory(source=build, target=deployment, kind=LinkKind.DEPLOYED_IN)
        if week % 4 == 1:
            incident = _supporting(
                w.product,
                "incident",
                f"INC-{week}",
                monday + timedelta(days=1),
                jira,
                flow_state=FlowState.DONE,
                done_at=monday + timedelta(days=1, hours=3),
            )
            ArtifactLinkFactory(source=incident, target=deployment, kind=LinkKind.RELATES_TO)
    for index in range(20):
        start = BASE_TIME + timedelta(days=index)
        flow_item(
            w.other_product,
            (start, FlowState.ACTIVE),
            (start + timedelta(days=2), FlowState.DONE),
            connection=w.other_product_conn,
            key=f"SECRET-{index}",
        )
    for number in range(crowd_products):
        product = ProductFactory(name=f"Crowd product {number}", slug=f"crowd-{number}")
        previous = None
        for index in range(10):
            start = BASE_TIME + timedelta(days=index * 3)
            item = flow_item(
                product,
                (start, FlowState.ACTIVE),
                (start + timedelta(days=1), FlowState.WAITING),
                (start + timedelta(days=2 + index), FlowState.DONE),
                connection=w.internal_conn,
                key=f"CROWD-{number}-{index}",
            )
            if previous is not None:
                ArtifactLinkFactory(source=previous, target=item, kind=LinkKind.RELATES_TO)
            previous = item
    ProductTargetFactory(product=w.product)
    now = BASE_TIME + timedelta(days=120)
    for product in [w.product, w.other_product]:
        product_rollups_rebuild(product, now=now)
    return w


@pytest.fixture
def world():
    return build_analysis_world(crowd_products=0)


@pytest.fixture
def crowded_world():
    return build_analysis_world()


def page_url(name, slug="granted", **params):
    url = reverse(f"portal:{name}", args=[slug])
    return f"{url}?{'&'.join(f'{key}={value}' for key, value in params.items())}" if params else url


def read_csv(response) -> list[list[str]]:
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.content.decode())))


def _artifact_id(key: str) -> int:
    from vsm.models import Artifact

    return Artifact.objects.get(key=key).pk


def keys_in(html: str, prefix: str = "G") -> set[int]:
    return {int(number) for number in re.findall(rf"\b{prefix}-(\d+)\b", html)}


# --- flow dashboard: scatter and histogram drill-down ------------------------------------------------


def test_the_scatter_draws_every_done_item_with_outliers_marked(world):
    client = client_for(world.owner)
    response = client.get(page_url("flow", **WINDOW))
    assert response.status_code == 200
    metrics = response.context["metrics"]
    points = response.context["charts"]["scatter"]["points"]
    assert len(points) == metrics["flow_time"]["count"] == 150
    outliers = {point["key"] for point in points if point["outlier"]}
    assert outliers == {outlier["key"] for outlier in metrics["flow_time"]["outliers"]}
    assert outliers  # the data has a tail above p95
    first = points[0]
    first_cell = response.context["tables"]["scatter"]["rows"][0]["cells"][0]
    assert first_cell.text == first["key"]
    assert first["url"] == first_cell.url == reverse("portal:trace", args=[_artifact_id(first["key"])])
    html = response.content.decode()
    assert 'id="chart-scatter"' in html and 'id="table-scatter"' in html
    assert f'href="{first["url"]}"' in html
    lines = read_csv(client.get(reverse("portal:flow-csv", args=["granted", "scatter"]), WINDOW))
    assert lines[0] == ["Item", "Done (UTC)", "Flow time (days)", "Above p95"]
    assert len(lines) == 151
    assert {line[0] for line in lines[1:] if line[3] == "yes"} == outliers


def test_the_scatter_draws_the_latest_items_when_there_are_many(world, monkeypatch):
    monkeypatch.setattr("vsm.portal.views.SCATTER_MAX_POINTS", 10)
    response = client_for(world.owner).get(page_url("flow", **WINDOW))
    points = response.context["charts"]["scatter"]["points"]
    assert len(points) == 10
    assert [point["x"] for point in points] == sorted((point["x"] for point in points), reverse=True)
    assert "The latest 10 of 150 items are drawn" in response.content.decode()
    csv_response = client_for(world.owner).get(
        reverse("portal:flow-csv", args=["granted", "scatter"]), WINDOW
    )
    assert len(read_csv(csv_response)) == 151


def test_a_histogram_bar_lists_exactly_its_items(world):
    client = client_for(world.owner)
    dashboard = client.get(page_url("flow", type="defect", **WINDOW))
    rows = dashboard.context["tables"]["flow_time"]["rows"]
    assert dashboard.context["charts"]["flow_time"]["urls"] == [row["url"] for row in rows]
    listed = 0
    for row in rows:
        query = parse_qs(urlsplit(row["url"]).query)
        assert query["type"] == ["defect"]
        items = client.get(row["url"])
        assert items.status_code == 200
        assert items.context["page"].paginator.count == row["cells"][2]
        assert items.context["csv_url"] is None  # the API's CSV cannot narrow by flow time
        listed += row["cells"][2]
        for item in items.context["rows"]:
            assert (
                float(query["flow_time_from"][0])
                <= item["rollup"].flow_time
                < float(query["flow_time_below"][0])
            )
    assert listed == dashboard.context["metrics"]["velocity"]["total"] > 0


@pytest.mark.parametrize(
    "params",
    [{"flow_time_from": "-1"}, {"flow_time_from": "abc"}, {"flow_time_from": "5", "flow_time_below": "2"}],
)
def test_bad_flow_time_filters_show_a_message(world, params):
    response = client_for(world.owner).get(reverse("portal:items", args=["granted"]), params)
    assert response.status_code == 200
    assert 'class="message error"' in response.content.decode()


def test_a_partners_scatter_has_only_its_items(world):
    response = client_for(world.partner_user).get(page_url("flow", **WINDOW))
    keys = {point["key"] for point in response.context["charts"]["scatter"]["points"]}
    assert len(keys) == 30 and all(int(key.split("-")[1]) % 5 == 0 for key in keys)
    assert all(number % 5 == 0 for number in keys_in(response.content.decode()))


# --- bottleneck finder ---------------------------------------------------------------------------------


def test_the_bottleneck_finder_ranks_states_by_time_with_items_linking_to_their_trace(world):
    client = client_for(world.owner)
    response = client.get(page_url("bottlenecks", **WINDOW))
    assert response.status_code == 200
    states = response.context["tables"]["states"]["rows"]
    totals = [row["cells"][1] for row in states]
    assert totals == sorted(totals, reverse=True) and totals[0] > 0
    assert {row["cells"][0] for row in states} >= {"Active", "Waiting"}
    assert sum(row["cells"][2] for row in states) == pytest.approx(100, abs=0.5)
    chart = response.context["charts"]["states"]
    assert chart["labels"] == [row["cells"][0] for row in states]
    assert chart["datasets"][0]["data"] == totals
    top = states[0]["items"]["links"][0]
    assert top.url == reverse("portal:trace", args=[_artifact_id(top.text.split(" ")[0])])
    html = response.content.decode()
    assert f'href="{top.url}"' in html
    statuses = response.context["tables"]["statuses"]["rows"]
    assert {row["cells"][0] for row in statuses} >= {"In Progress (jira)", "Blocked (jira)"}
    lines = read_csv(client.get(reverse("portal:bottlenecks-csv", args=["granted", "states"]), WINDOW))
    assert lines[0][0] == "Flow state" and lines[0][-1] == "Items with the most time there"
    assert [line[0] for line in lines[1:]] == [row["cells"][0] for row in states]
    assert client.get(reverse("portal:bottlenecks-csv", args=["granted", "nope"])).status_code == 404


def test_a_partners_bottlenecks_come_from_its_scope(world):
    owner = client_for(world.owner).get(page_url("bottlenecks", **WINDOW))
    partner = client_for(world.partner_user).get(page_url("bottlenecks", **WINDOW))
    assert partner.status_code == 200
    owner_visits = sum(row["cells"][3] for row in owner.context["tables"]["states"]["rows"])
    partner_visits = sum(row["cells"][3] for row in partner.context["tables"]["states"]["rows"])
    assert 0 < partner_visits < owner_visits
    html = partner.content.decode()
    assert keys_in(html) and all(number % 5 == 0 for number in keys_in(html))
    assert "your organisation&#x27;s scope" in html or "your organisation's scope" in html


def test_the_bottlenecks_are_computed_once_per_reach_and_data_version(world, monkeypatch):
    from django.core.cache import cache

    from metrics import selectors as metrics_selectors
    from metrics.services import rollups_refresh_after_sync

    cache.clear()
    computed, compute = [], metrics_selectors.bottlenecks
    monkeypatch.setattr(
        metrics_selectors,
        "bottlenecks",
        lambda user, *args, **kwargs: computed.append(user) or compute(user, *args, **kwargs),
    )
    first = client_for(world.owner).get(page_url("bottlenecks", **WINDOW))
    again = client_for(world.owner).get(page_url("bottlenecks", **WINDOW))
    csv_lines = read_csv(
        client_for(world.owner).get(reverse("portal:bottlenecks-csv", args=["granted", "states"]), WINDOW)
    )
    assert computed == [world.owner]
    assert again.context["tables"] == first.context["tables"]
    assert [line[0] for line in csv_lines[1:]] == [
        row["cells"][0] for row in first.context["tables"]["states"]["rows"]
    ]
    client_for(world.partner_user).get(page_url("bottlenecks", **WINDOW))
    assert computed == [world.owner, world.partner_user]  # a partner's scope: an entry of its own
    start = BASE_TIME + timedelta(days=10)
    item = flow_item(world.product, (start, FlowState.WAITING), connection=world.internal_conn, key="G-NEW")
    rollups_refresh_after_sync([item.pk], now=BASE_TIME + timedelta(days=120))
    client_for(world.owner).get(page_url("bottlenecks", **WINDOW))
    assert computed == [world.owner, world.partner_user, world.owner]
    cache.clear()


# --- item flow analyzer --------------------------------------------------------------------------------


def analyzer_keys(response) -> list[str]:
    return [row["rollup"].artifact.key for row in response.context["rows"]]


def test_the_analyzer_filters_sorts_and_links_each_item_to_its_trace(world):
    client = client_for(world.owner)
    everything = client.get(page_url("analyzer"))
    assert everything.status_code == 200
    assert everything.context["page"].paginator.count == ITEMS + SCOPE_WORLD_ITEMS
    done = client.get(page_url("analyzer", state="done", type="defect", sort="-flow_time"))
    rows = done.context["rows"]
    assert rows and all(row["state"] == "Done" for row in rows)
    assert {row["rollup"].flow_item_type.slug for row in rows} == {"defect"}
    flow_times = [row["flow_time"] for row in rows]
    assert flow_times == sorted(flow_times, reverse=True)
    html = done.content.decode()
    assert f'href="{reverse("portal:trace", args=[rows[0]["rollup"].artifact_id])}"' in html
    assert 'aria-sort="descending"' in html
    open_items = client.get(page_url("analyzer", state="open", sort="-age"))
    ages = [row["age"] for row in open_items.context["rows"]]
    assert len(ages) == 50 and all(age is not None for age in ages) and ages == sorted(ages, reverse=True)
    assert all(row["flow_time"] is None for row in open_items.context["rows"])
    search = client.get(page_url("analyzer", q="item 17"))
    assert set(analyzer_keys(search)) == {
        "G-17",
        "G-170",
        "G-171",
        "G-172",
        "G-173",
        "G-174",
        "G-175",
        "G-176",
        "G-177",
        "G-178",
        "G-179",
    }
    assert search.context["csv_url"] is None
    efficiency = client.get(page_url("analyzer", state="done", sort="efficiency"))
    values = [row["efficiency"] for row in efficiency.context["rows"]]
    assert values == sorted(values)


def test_the_analyzer_csv_link_keeps_the_filters(world):
    response = client_for(world.owner).get(page_url("analyzer", state="open", type="feature"))
    query = parse_qs(urlsplit(response.context["csv_url"]).query)
    assert query["state"] == ["new", "waiting", "active", "unknown"]
    assert query["type"] == ["feature"] and query["format"] == ["csv"]


def test_a_partners_analyzer_lists_only_its_items(world):
    response = client_for(world.partner_user).get(page_url("analyzer"))
    assert response.context["page"].paginator.count == ITEMS // 5 + SCOPE_WORLD_PARTNER_ITEMS
    assert all(number % 5 == 0 for number in keys_in(response.content.decode()))


# --- DORA ----------------------------------------------------------------------------------------------


def test_the_dora_page_has_the_four_metrics_with_tables_and_csv(world):
    client = client_for(world.owner)
    response = client.get(page_url("dora", bucket="month", **WINDOW))
    assert response.status_code == 200
    metrics = response.context["metrics"]
    # Weeks 0-11 from 5 January: 12 production deployments until 23 March, every third failed.
    assert metrics["change_failure_rate"]["deployments"] == 12
    assert metrics["deployment_frequency"]["total"] == 8
    frequency = response.context["tables"]["frequency"]["rows"]
    assert [row["cells"] for row in frequency] == [["2026-01-01", 3], ["2026-02-01", 3], ["2026-03-01", 2]]
    assert response.context["charts"]["frequency"]["datasets"][0]["data"] == [3, 3, 2]
    assert response.context["summary"]["lead_time_p50"] == 6.0
    deployments = response.context["tables"]["deployments"]["rows"]
    assert len(deployments) == 12
    html = response.content.decode()
    for name in ("frequency", "lead_time", "failure_rate", "recovery", "deployments"):
        assert f'id="table-{name}"' in html
        assert reverse("portal:dora-csv", args=["granted", name]) in html
    assert f'href="{deployments[0]["cells"][0].url}"' in html
    lines = read_csv(client.get(reverse("portal:dora-csv", args=["granted", "deployments"]), WINDOW))
    assert lines[0] == ["Deployment", "At (UTC)", "Failed", "Incidents and defects that followed"]
    assert len(lines) == 13 and "INC-1" in {line[3] for line in lines}


def test_a_partners_dora_page_counts_its_own_deployments(world):
    response = client_for(world.partner_user).get(page_url("dora", **WINDOW))
    assert response.status_code == 200
    assert response.context["metrics"]["change_failure_rate"]["deployments"] == 6
    html = response.content.decode()
    assert not {int(n) for n in re.findall(r"DEP-(\d+)", html)} - {1, 3, 5, 7, 9, 11}
    assert "CMT-" not in html  # two links away from A's deployments: outside its scope


LEVELS_HEADER = ["Metric", "Convention", "Level", "Band", "Measure", "Value", "Why no level"]


def test_the_dora_page_shows_each_figures_level(world):
    client = client_for(world.owner)
    response = client.get(page_url("dora", **WINDOW))
    levels = response.context["levels"]
    # Weekly deployments from 5 January, every third failed: one deployment day in 8 of the 12 complete
    # weeks (5 January to 29 March), median 1. Lead time 6 hours. 6 of 12 attempts failed or were
    # followed by an incident. Recovery: three incidents of 3 hours, three failed deployments recovered
    # 7 days 1 hour later (the fourth, DEP-11, not yet): median (3 + 169) / 2 = 86 hours.
    assert {name: (level["level"], level["shown_value"]) for name, level in levels.items()} == {
        "deployment_frequency": ("high", 1.0),
        "lead_time_for_changes": ("elite", 6.0),
        "change_failure_rate": ("low", 50.0),
        "failed_deployment_recovery_time": ("medium", 86.0),
    }
    html = response.content.decode()
    summary = html[html.index('id="dora-summary"') : html.index("</dl>")]
    for level in ("high", "elite", "low", "medium"):
        assert (
            f'class="dora-level dora-level-{level}"><span class="meter" aria-hidden="true"></span>' in summary
        )
    assert "Level: High</span>" in summary and "(between once per day and once per week)" in summary
    assert "Level: Medium</span>" in summary and "(between one day and one week)" in summary
    assert "style=" not in html and "<script>" not in html  # the CSP: no inline styles or scripts
    # The convention choices, defaults selected.
    assert '<option value="commit" selected>Per commit</option>' in html
    assert '<option value="attempts" selected>Over every deployment attempt</option>' in html
    assert reverse("portal:dora-csv", args=["granted", "levels"]) in html
    lines = read_csv(client.get(reverse("portal:dora-csv", args=["granted", "levels"]), WINDOW))
    assert lines == [
        LEVELS_HEADER,
        [
            "Deployment frequency",
            "deployment days",
            "high",
            "between once per day and once per week",
            "median deployment days per complete week",
            "1.0",
            "",
        ],
        ["Lead time for changes", "per commit", "elite", "less than one day", "p50 (hours)", "6.0", ""],
        [
            "Change failure rate",
            "over every finished deployment attempt",
            "low",
            "more than 15%",
            "rate %",
            "50.0",
            "",
        ],
        [
            "Failed deployment recovery time",
            "",
            "medium",
            "between one day and one week",
            "p50 (hours)",
            "86.0",
            "",
        ],
    ]


def test_the_dora_page_and_its_csv_use_the_chosen_conventions(world):
    """Pull requests committed_in the weekly commits (CMT-n at Monday 09:00, shipped by DEP-n at 15:00
    unless DEP-n failed: CMT-2 never shipped): PR-X -> CMT-0, CMT-1 (ends at DEP-1, 7 days 6 hours);
    PR-Y -> CMT-3 (6 hours); PR-W -> CMT-2, CMT-4 (from 19 January 09:00 to DEP-4 on 2 February 15:00, 14
    days 6 hours); PR-Z -> CMT-2 (never shipped)."""
    from vsm.models import Artifact

    github = Artifact.objects.get(key="CMT-0").connection
    for key, commits in [
        ("PR-X", [0, 1]),
        ("PR-Y", [3]),
        ("PR-W", [2, 4]),
        ("PR-Z", [2]),
    ]:
        pull_request = _supporting(world.product, "pull-request", key, BASE_TIME, github)
        for week in commits:
            ArtifactLinkFactory(
                source=pull_request,
                target=Artifact.objects.get(key=f"CMT-{week}"),
                kind=LinkKind.COMMITTED_IN,
            )
    client = client_for(world.owner)
    chosen = {**WINDOW, "bucket": "month", "lead_time": "pull_request", "failure_rate": "successful"}
    response = client.get(page_url("dora", **chosen))
    assert response.status_code == 200
    html = response.content.decode()
    assert '<option value="pull_request" selected>' in html and '<option value="successful" selected>' in html
    assert "lead time for changes per pull request, from its first commit" in html
    assert "change failure rate over successful deployments." in html
    levels = response.context["levels"]
    # Sorted 6, 174 and 342 hours: the median 174 hours, more than a week. 2 of the 8 successful
    # deployments were followed by an incident (INC-1 after DEP-1, INC-9 after DEP-9; INC-5 followed
    # DEP-5, which failed): 25%.
    assert (levels["lead_time_for_changes"]["level"], levels["lead_time_for_changes"]["shown_value"]) == (
        "medium",
        174.0,
    )
    assert (levels["change_failure_rate"]["level"], levels["change_failure_rate"]["shown_value"]) == (
        "low",
        25.0,
    )
    # The CSV downloads keep the conventions and carry their figures.
    assert "lead_time=pull_request" in response.context["query"]
    assert "failure_rate=successful" in response.context["query"]

    def csv_of(table):
        return read_csv(client.get(reverse("portal:dora-csv", args=["granted", table]), chosen))

    assert csv_of("lead_time") == [
        ["Bucket start", "Pull requests", "p50 (hours)", "p85 (hours)", "Mean (hours)"],
        # January: PR-X (174 h) and PR-Y (6 h); p85 = 6 + 0.85 * 168 hours.
        ["2026-01-01", "2", "90.0", "148.8", "90.0"],
        ["2026-02-01", "1", "342.0", "342.0", "342.0"],
        ["2026-03-01", "0", "", "", ""],
    ]
    assert csv_of("failure_rate") == [
        ["Bucket start", "Successful deployments", "Followed by an incident or defect", "Rate %"],
        ["2026-01-01", "3", "1", "33.3"],
        ["2026-02-01", "3", "0", "0.0"],
        ["2026-03-01", "2", "1", "50.0"],
    ]
    deployments = csv_of("deployments")
    assert deployments[0] == [
        "Deployment",
        "At (UTC)",
        "Followed by an incident or defect",
        "Incidents and defects that followed",
    ]
    assert [line[0] for line in deployments[1:]] == [f"DEP-{n}" for n in (0, 1, 3, 4, 6, 7, 9, 10)]
    assert [line[0] for line in deployments[1:] if line[2] == "yes"] == ["DEP-1", "DEP-9"]
    levels_csv = csv_of("levels")
    assert levels_csv[2] == [
        "Lead time for changes",
        "per pull request, from its first commit",
        "medium",
        "between one week and one month",
        "p50 (hours)",
        "174.0",
        "",
    ]
    assert levels_csv[3][:3] == ["Change failure rate", "over successful deployments", "low"]
    # Ours on the same world: 8 commits of 6 hours; 6 of 12 attempts.
    default = client.get(page_url("dora", **WINDOW, bucket="month")).context["levels"]
    assert default["lead_time_for_changes"]["shown_value"] == 6.0
    assert default["change_failure_rate"]["shown_value"] == 50.0


def test_a_partners_dora_levels_come_from_its_scope(world):
    response = client_for(world.partner_user).get(page_url("dora", **WINDOW))
    levels = response.context["levels"]
    # Its deployments on odd weeks, DEP-5 and DEP-11 failed: deployment days in 4 of the 12 weeks (median
    # 0), 2, 1 and 1 in January, February and March (median 1): medium, where the owner sees high.
    days = response.context["metrics"]["deployment_frequency"]["deployment_days"]
    assert ([week["days"] for week in days["weeks"]], days["median_per_month"]) == (
        [0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0],
        1.0,
    )
    assert levels["deployment_frequency"]["level"] == "medium"
    # The commits are two links away from its deployments: no lead time, hence no level, and why.
    assert levels["lead_time_for_changes"]["level"] is None
    html = response.content.decode()
    assert "No level</span>" in html
    assert "(no change shipped by a production deployment in the window)" in html


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"lead_time": "merge"}, "Lead time for changes: Select a valid choice. merge is not one of"),
        ({"failure_rate": "all"}, "Change failure rate: Select a valid choice. all is not one of"),
    ],
)
def test_a_bad_convention_is_a_message_and_the_default(world, params, message):
    response = client_for(world.owner).get(page_url("dora", **WINDOW), params)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert response.context["metrics"]["rules"]["lead_time"] == "commit"
    assert response.context["metrics"]["rules"]["failure_rate"] == "attempts"


# --- forecast ------------------------------------------------------------------------------------------


def test_the_forecast_answers_how_many_and_when(world):
    client = client_for(world.owner)
    how_many = client.get(page_url("forecast", **HISTORY))
    assert how_many.status_code == 200
    rows = how_many.context["tables"]["forecast"]["rows"]
    assert [row["cells"][0] for row in rows] == [50, 85, 95]
    counts = [row["cells"][1] for row in rows]
    assert counts == sorted(counts, reverse=True) and counts[-1] > 0
    history = how_many.context["charts"]["history"]
    assert (
        len(history["labels"]) == 60
        and sum(history["datasets"][0]["data"]) == how_many.context["forecast"]["history"]["done"]
    )
    when = client.get(page_url("forecast", question="when", items=40, **HISTORY))
    dates = [row["cells"][1] for row in when.context["tables"]["forecast"]["rows"]]
    assert dates == sorted(dates)
    lines = read_csv(
        client.get(
            reverse("portal:forecast-csv", args=["granted", "forecast"]),
            {"question": "when", "items": 40, **HISTORY},
        )
    )
    assert [line[1] for line in lines[1:]] == dates


def test_a_forecast_without_history_says_so(world):
    response = client_for(world.owner).get(page_url("forecast"))
    assert response.status_code == 200
    assert response.context["forecast"] is None
    assert "widen the history window" in response.content.decode()


# --- every page: scoping, bad input, query counts ----------------------------------------------------


@pytest.mark.parametrize("name", PAGES)
def test_a_foreign_or_unknown_product_is_404(world, name):
    for slug in ("other", "no-such-product"):
        assert client_for(world.partner_user).get(page_url(name, slug)).status_code == 404
        assert client_for(world.owner).get(page_url(name, slug)).status_code == 404
    assert client_for(world.other_partner_user).get(page_url(name, "other")).status_code == 200


@pytest.mark.parametrize(
    ("csv_name", "table"),
    [("bottlenecks-csv", "states"), ("dora-csv", "frequency"), ("forecast-csv", "history")],
)
def test_a_foreign_products_csv_is_404(world, csv_name, table):
    url = reverse(f"portal:{csv_name}", args=["other", table])
    assert client_for(world.partner_user).get(url).status_code == 404


@pytest.mark.parametrize("name", PAGES)
def test_a_partners_pages_show_nothing_from_outside_its_scope(world, name):
    params = HISTORY if name == "forecast" else WINDOW
    html = client_for(world.partner_user).get(page_url(name, **params)).content.decode()
    for foreign in ("Other product", "SECRET-", "Crowd product", "Internal item", "B-OWN", "TWO-HOPS"):
        assert foreign not in html
    assert all(number % 5 == 0 for number in keys_in(html))


BAD_INPUT = {
    "bottlenecks": [
        {"window_start": "2026-13-45"},
        {"window_start": "2026-03-01", "window_end": "2026-01-01"},
        {"window_start": "1900-01-01"},
        {"window_start": "2020-01-01", "window_end": "2026-01-01"},
    ],
    "analyzer": [
        {"state": "sleeping"},
        {"type": "nonsense"},
        {"sort": "price"},
        {"q": "x" * 500},
        {"page": "x"},
    ],
    "dora": [
        {"window_end": "someday"},
        {"bucket": "fortnight"},
        {"production": "(prod"},
        {"failure_window_days": "0"},
        {"failure_window_days": "99999"},
        {"window_start": "2020-01-01", "window_end": "2026-01-01"},
        {"lead_time": "merge"},
        {"failure_rate": "all"},
    ],
    "forecast": [
        {"until": "2020-01-01"},
        {"until": "2999-01-01"},
        {"question": "when", "items": "0"},
        {"question": "when", "items": "many"},
        {"question": "why"},
        {"history_start": "2026-03-01", "history_end": "2026-01-01"},
        {"history_start": "2010-01-01", "history_end": "2026-01-01"},
        {"type": "nonsense"},
    ],
}


@pytest.mark.parametrize(
    ("name", "params"), [(name, params) for name, cases in BAD_INPUT.items() for params in cases]
)
def test_bad_input_shows_a_message_not_a_500(world, name, params):
    response = client_for(world.owner).get(page_url(name), params)
    assert response.status_code == 200
    html = response.content.decode()
    if params != {"page": "x"}:
        assert 'class="message error"' in html


@pytest.mark.parametrize("role", ["staff", "owner", "partner_user"])
def test_every_page_stays_under_20_queries(crowded_world, role, django_assert_max_num_queries):
    client = client_for(getattr(crowded_world, role))
    urls = [
        page_url("flow", bucket="day", **WINDOW),
        reverse("portal:flow-csv", args=["granted", "scatter"]),
        reverse("portal:items", args=["granted"]) + "?flow_time_from=0&flow_time_below=864000",
        page_url("bottlenecks", **WINDOW),
        reverse("portal:bottlenecks-csv", args=["granted", "statuses"]),
        page_url("analyzer", state="open", sort="-age"),
        page_url("analyzer", q="item", type="feature"),
        page_url("dora", bucket="day", **WINDOW),
        page_url("dora", lead_time="pull_request", failure_rate="successful", **WINDOW),
        reverse("portal:dora-csv", args=["granted", "deployments"]),
        page_url("forecast", **HISTORY),
        page_url("forecast", question="when", items=30, **HISTORY),
        reverse("portal:forecast-csv", args=["granted", "history"]),
    ]
    for url in urls:
        with django_assert_max_num_queries(20):
            assert client.get(url).status_code == 200, url
    with django_assert_max_num_queries(20):
        assert client.get(reverse("portal:landing")).status_code == 302
