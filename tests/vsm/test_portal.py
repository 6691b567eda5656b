"""The portal pages: who sees which products and artifacts, what a partner never sees, and query counts."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse

from tests.clients import api_client_for
from tests.clients import portal_client_for as client_for
from tests.factories import (
    BASE_TIME,
    SECRET_ACCOUNT,
    SECRET_REVENUE,
    SECRET_VALUE,
    ArtifactFactory,
    ArtifactLinkFactory,
    ProductFactory,
    StaffFactory,
    StateTransitionFactory,
    build_scope_world,
)
from vsm.choices import FlowState
from vsm.models import Artifact

pytestmark = pytest.mark.django_db

PARTNER_A_ARTIFACTS = {"A-OWN-CONN", "A-OWN-TEAM", "LINKED-OUT", "LINKED-IN", "B-LINKED"}
GRANTED_ARTIFACTS = PARTNER_A_ARTIFACTS | {"TWO-HOPS", "INTERNAL", "B-OWN"}


@pytest.fixture
def world():
    return build_scope_world()


def product_url(slug):
    return reverse("portal:product", args=[slug])


def artifact_url(artifact):
    return reverse("portal:artifact", args=[artifact.pk])


# --- login --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["home", "product", "artifact"])
def test_anonymous_users_are_sent_to_the_login_page(world, page):
    url = {
        "home": reverse("portal:home"),
        "product": product_url("granted"),
        "artifact": artifact_url(world.artifacts["A-OWN-CONN"]),
    }[page]
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_the_login_page_renders():
    assert Client().get(reverse("login")).status_code == 200


# --- home ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("staff", ["granted", "other"]),
        ("superuser", ["granted", "other"]),
        ("leader", ["granted", "other"]),
        ("owner", ["granted"]),
        ("other_owner", ["other"]),
        ("partner_user", ["granted"]),
        ("other_partner_user", ["granted", "other"]),
        ("outsider", []),
    ],
)
def test_home_lists_exactly_the_products_the_user_may_see(world, role, expected):
    response = client_for(getattr(world, role)).get(reverse("portal:home"))
    assert response.status_code == 200
    assert [product.slug for product in response.context["products"]] == expected
    html = response.content.decode()
    for slug, name in [("granted", "Granted product"), ("other", "Other product")]:
        assert (name in html) == (slug in expected)
        assert (f'href="{product_url(slug)}"' in html) == (slug in expected)
    assert ("No product has been shared with you" in html) == (not expected)


def test_home_counts_only_the_artifacts_the_user_may_see(world):
    ArtifactFactory(
        product=world.product, connection=world.partner_conn, deleted_at=BASE_TIME + timedelta(days=3)
    )
    counts = {
        role: {
            p.slug: p.artifact_count for p in client_for(getattr(world, role)).get("/").context["products"]
        }
        for role in ("staff", "partner_user")
    }
    assert counts["staff"] == {"granted": len(GRANTED_ARTIFACTS), "other": 3}
    assert counts["partner_user"] == {"granted": len(PARTNER_A_ARTIFACTS)}


# --- product page -------------------------------------------------------------------------------------


def page_keys(response) -> set[str]:
    return {artifact.key for artifact in response.context["page"]}


def test_the_product_page_shows_its_artifacts(world):
    response = client_for(world.owner).get(product_url("granted"))
    assert response.status_code == 200
    assert page_keys(response) == GRANTED_ARTIFACTS
    html = response.content.decode()
    assert "<h1>Granted product</h1>" in html
    assert "A-OWN-TEAM title" in html
    assert f'href="{artifact_url(world.artifacts["A-OWN-TEAM"])}"' in html
    assert "Internal Jira" in html
    assert "OTHER" not in page_keys(response)


def test_a_partner_sees_only_its_scope_on_the_product_page(world):
    response = client_for(world.partner_user).get(product_url("granted"))
    assert response.status_code == 200
    assert page_keys(response) == PARTNER_A_ARTIFACTS
    html = response.content.decode()
    for hidden in ("TWO-HOPS", "INTERNAL title", "B-OWN"):
        assert hidden not in html


def test_deleted_artifacts_are_left_off_the_product_page(world):
    Artifact.objects.filter(key="INTERNAL").update(deleted_at=BASE_TIME + timedelta(days=2))
    response = client_for(world.owner).get(product_url("granted"))
    assert page_keys(response) == GRANTED_ARTIFACTS - {"INTERNAL"}


def test_the_product_page_pages_by_50(world):
    Artifact.objects.bulk_create(
        ArtifactFactory.build(product=world.product, connection=world.internal_conn) for _ in range(50)
    )
    client = client_for(world.owner)
    first = client.get(product_url("granted"))
    second = client.get(product_url("granted"), {"page": 2})
    assert len(first.context["page"]) == 50
    assert len(second.context["page"]) == len(GRANTED_ARTIFACTS)
    assert "Page 2 of 2" in second.content.decode()
    assert client.get(product_url("granted"), {"page": "abc"}).status_code == 200


@pytest.mark.parametrize("slug", ["other", "no-such-product"])
def test_a_partner_gets_404_for_a_foreign_product(world, slug):
    assert client_for(world.partner_user).get(product_url(slug)).status_code == 404


def test_a_role_holder_gets_404_for_another_product(world):
    assert client_for(world.owner).get(product_url("other")).status_code == 404
    assert client_for(world.other_owner).get(product_url("other")).status_code == 200


# --- artifact page ------------------------------------------------------------------------------------


def test_the_artifact_page_shows_facts_transitions_and_links(world):
    artifact = world.artifacts["LINKED-OUT"]
    StateTransitionFactory(
        artifact=artifact,
        at=datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC),
        from_status="In Progress",
        to_status="Shipped",
        from_state=FlowState.ACTIVE,
        to_state=FlowState.DONE,
        author="release-bot",
    )
    response = client_for(world.owner).get(artifact_url(artifact))
    assert response.status_code == 200
    html = response.content.decode()
    assert "LINKED-OUT LINKED-OUT title" in html
    assert "Story" in html
    assert "Internal Jira" in html
    assert "2026-02-03 04:05:06" in html
    assert "Shipped" in html
    assert "release-bot" in html
    # Both directions: A-OWN-CONN -> LINKED-OUT -> TWO-HOPS.
    assert f'href="{artifact_url(world.artifacts["A-OWN-CONN"])}"' in html
    assert f'href="{artifact_url(world.artifacts["TWO-HOPS"])}"' in html
    assert {link.pk for link in response.context["links"]} == {
        world.links["A-OWN-CONN>LINKED-OUT"].pk,
        world.links["LINKED-OUT>TWO-HOPS"].pk,
    }


def test_a_partner_does_not_see_links_to_what_is_outside_its_scope(world):
    response = client_for(world.partner_user).get(artifact_url(world.artifacts["LINKED-OUT"]))
    assert response.status_code == 200
    html = response.content.decode()
    assert f'href="{artifact_url(world.artifacts["A-OWN-CONN"])}"' in html
    assert "TWO-HOPS" not in html
    response = client_for(world.partner_user).get(artifact_url(world.artifacts["A-OWN-CONN"]))
    assert "LINKED-ELSEWHERE" not in response.content.decode()


@pytest.mark.parametrize("key", ["B-OWN", "TWO-HOPS", "INTERNAL", "A-ELSEWHERE", "LINKED-ELSEWHERE", "OTHER"])
def test_a_partner_gets_404_for_a_foreign_artifact(world, key):
    url = artifact_url(world.artifacts[key])
    assert client_for(world.staff).get(url).status_code == 200
    assert client_for(world.partner_user).get(url).status_code == 404


def test_an_unknown_artifact_is_404(world):
    assert client_for(world.staff).get(reverse("portal:artifact", args=[999999])).status_code == 404


@pytest.mark.parametrize("role", ["partner_user", "other_partner_user"])
def test_a_partners_artifact_page_has_no_internal_values(world, role):
    response = client_for(getattr(world, role)).get(artifact_url(world.artifacts["A-OWN-CONN"]))
    assert response.status_code == 200
    html = response.content.decode()
    assert SECRET_ACCOUNT not in html
    assert str(SECRET_REVENUE) not in html
    assert SECRET_VALUE not in html
    for name in ("customer_account", "revenue", "deal_breaker"):
        assert name not in html
    # The partner-visible fields are there.
    assert "Pat Requester" in html
    assert "<dt>priority</dt><dd>High</dd>" in html


def test_a_partners_pages_name_no_in_house_tool_of_what_is_linked_to_its_own(world):
    client = client_for(world.partner_user)
    linked = client.get(artifact_url(world.artifacts["LINKED-OUT"])).content.decode()
    assert "<dt>Tool</dt><dd>jira" in linked
    product = client.get(product_url("granted")).content.decode()
    for html in (linked, product):
        assert "Internal Jira" not in html and "B tool" not in html
    assert "A tool" in product  # its own
    owner = client_for(world.owner).get(artifact_url(world.artifacts["LINKED-OUT"])).content.decode()
    assert "<dt>Tool</dt><dd>Internal Jira" in owner


@pytest.mark.parametrize("role", ["staff", "owner", "leader"])
def test_an_internal_users_artifact_page_has_the_internal_values(world, role):
    response = client_for(getattr(world, role)).get(artifact_url(world.artifacts["A-OWN-CONN"]))
    html = response.content.decode()
    assert SECRET_ACCOUNT in html
    assert str(SECRET_REVENUE) in html
    assert f"<dt>Value</dt><dd>{SECRET_VALUE}</dd>" in html
    assert "Pat Requester" in html


# --- no query per row ---------------------------------------------------------------------------------


@pytest.fixture
def crowd(world):
    """50 artifacts in partner A's scope, each with a transition and a link to one hub artifact."""
    hub = world.artifacts["A-OWN-CONN"]
    artifacts = Artifact.objects.bulk_create(
        ArtifactFactory.build(product=world.product, connection=world.partner_conn, team=world.partner_team)
        for _ in range(50)
    )
    for artifact in artifacts:
        StateTransitionFactory(artifact=hub)
        ArtifactLinkFactory(source=artifact, target=hub)
    for product in ProductFactory.create_batch(5):
        ArtifactFactory(product=product, connection=world.internal_conn)
    return hub


MAX_QUERIES = 12


@pytest.mark.parametrize("role", ["staff", "owner", "partner_user"])
def test_no_page_runs_a_query_per_row(world, crowd, role, django_assert_max_num_queries):
    client = client_for(getattr(world, role))
    with django_assert_max_num_queries(MAX_QUERIES):
        home = client.get(reverse("portal:home"))
    with django_assert_max_num_queries(MAX_QUERIES):
        product = client.get(product_url("granted"))
    with django_assert_max_num_queries(MAX_QUERIES):
        artifact = client.get(artifact_url(crowd))
    assert home.status_code == product.status_code == artifact.status_code == 200
    assert len(product.context["page"]) == 50
    assert len(artifact.context["transitions"]) == 51
    assert len(artifact.context["links"]) >= 50


# --- products overview, flow dashboard, items behind a bucket -----------------------------------------

WINDOW = {"window_start": "2026-01-01", "window_end": "2026-03-31"}


@pytest.fixture
def flow_world(world):
    """200 flow items in the granted product (40 on partner A's connection), rolled up; 20 in "other"."""
    from metrics.services import product_rollups_rebuild
    from tests.factories import ProductTargetFactory, flow_item

    for index in range(200):
        start = BASE_TIME + timedelta(days=index % 60, hours=index % 7)
        moves = [(start, FlowState.ACTIVE), (start + timedelta(days=1 + index % 9), FlowState.WAITING)]
        if index % 4:
            moves.append((start + timedelta(days=3 + index % 11), FlowState.DONE))
        conn = world.partner_conn if index % 5 == 0 else world.internal_conn
        flow_item(
            world.product,
            *moves,
            flow_type=["feature", "defect", "risk", "debt"][index % 4 if index % 3 else 0],
            connection=conn,
            key=f"G-{index}",
        )
    for index in range(20):
        start = BASE_TIME + timedelta(days=index)
        flow_item(
            world.other_product,
            (start, FlowState.ACTIVE),
            (start + timedelta(days=2), FlowState.DONE),
            connection=world.other_product_conn,
            key=f"SECRET-{index}",
        )
    ProductTargetFactory(product=world.product)
    now = BASE_TIME + timedelta(days=120)
    product_rollups_rebuild(world.product, now=now)
    product_rollups_rebuild(world.other_product, now=now)
    return world


def flow_url(slug, **params):
    return reverse("portal:flow", args=[slug]) + (
        "?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else ""
    )


def test_the_overview_row_has_the_five_metrics_and_the_trend(flow_world):
    client = client_for(flow_world.owner)
    home = client.get(reverse("portal:home"), WINDOW)
    assert home.status_code == 200
    html = home.content.decode()
    summary = reverse("portal:summary", args=["granted"])
    assert f'data-summary="{summary}?window_start=2026-01-01&amp;window_end=2026-03-31"' in html
    row = client.get(reverse("portal:summary", args=["granted"]), WINDOW)
    assert row.status_code == 200
    current = row.context["row"]["current"]
    assert current["velocity"] == 150
    assert current["flow_time_p50"] is not None and current["efficiency"] is not None
    assert current["load"] is not None
    assert set(current["distribution"]) == {"feature", "defect", "risk", "debt"}
    assert row.context["row"]["previous"]["velocity"] == 0
    assert row.context["row"]["trend"]["velocity"] == 150
    assert "(+150)" in row.content.decode()


@pytest.mark.parametrize("view", ["summary", "flow", "items"])
def test_a_partner_gets_404_for_a_foreign_products_flow_pages(flow_world, view):
    url = reverse(f"portal:{view}", args=["other"])
    assert client_for(flow_world.partner_user).get(url).status_code == 404
    assert client_for(flow_world.owner).get(url).status_code == 404
    assert client_for(flow_world.other_partner_user).get(url).status_code == 200


def test_a_partners_item_figures_and_their_csv_name_only_its_own_teams(flow_world):
    from metrics.models import ItemFlowRollup

    teams = dict(
        ItemFlowRollup.objects.filter(product=flow_world.product).values_list("artifact__key", "team")
    )
    assert teams["LINKED-OUT"] == flow_world.internal_team.pk  # in A's scope, on an in-house team
    client = api_client_for(flow_world.partner_user)
    rows = client.get("/api/metrics/items/", {"product": "granted", "page_size": 500}).json()["results"]
    seen = {row["key"]: row["team"] for row in rows}
    assert seen["LINKED-OUT"] is None
    assert seen["A-OWN-TEAM"] == flow_world.partner_team.pk
    assert seen["B-LINKED"] is None
    exported = client.get("/api/metrics/items/", {"product": "granted", "format": "csv"}).content.decode()
    assert str(flow_world.internal_team.pk) not in {line.split(",")[6] for line in exported.splitlines()[1:]}


def test_a_partner_sees_only_its_scopes_numbers(flow_world):
    owner = client_for(flow_world.owner).get(flow_url("granted", **WINDOW))
    partner = client_for(flow_world.partner_user).get(flow_url("granted", **WINDOW))
    assert owner.context["metrics"]["velocity"]["total"] == 150
    assert partner.context["metrics"]["velocity"]["total"] == 30  # the 40 on A's connection, 3 in 4 done
    items = client_for(flow_world.partner_user).get(reverse("portal:items", args=["granted"]))
    keys = {row["rollup"].artifact.key for row in items.context["rows"]}
    assert len(keys) == 30 and all(int(key.split("-")[1]) % 5 == 0 for key in keys)


def test_the_dashboard_has_every_chart_with_its_table_and_csv(flow_world):
    response = client_for(flow_world.owner).get(flow_url("granted", bucket="month", **WINDOW))
    assert response.status_code == 200
    html = response.content.decode()
    for chart in ("velocity", "distribution", "flow_time", "load", "efficiency"):
        assert f'id="chart-{chart}"' in html
        assert f'id="table-{chart}"' in html
        assert reverse("portal:flow-csv", args=["granted", chart]) in html
    assert '<script id="flow-data" type="application/json">' in html
    charts = response.context["charts"]
    assert charts["velocity"]["labels"] == ["2026-01-01", "2026-02-01", "2026-03-01"]
    assert sum(sum(series) for series in charts["velocity"]["series"].values()) == 150
    assert charts["distribution"]["target"] == [60.0, 30.0, 5.0, 5.0]
    csv = client_for(flow_world.owner).get(
        reverse("portal:flow-csv", args=["granted", "velocity"]), {"bucket": "month", **WINDOW}
    )
    assert csv["Content-Type"].startswith("text/csv")
    lines = csv.content.decode().splitlines()
    assert lines[0].startswith("Bucket start,") and len(lines) == 4
    assert sum(int(line.rsplit(",", 1)[1]) for line in lines[1:]) == 150


def test_a_velocity_bucket_drills_down_to_its_items(flow_world):
    client = client_for(flow_world.owner)
    dashboard = client.get(flow_url("granted", bucket="month", **WINDOW))
    first = dashboard.context["tables"]["velocity"]["rows"][0]
    items = client.get(first["url"])
    assert items.status_code == 200
    assert items.context["page"].paginator.count == first["cells"][-1] > 0
    html = items.content.decode()
    rollup = items.context["rows"][0]["rollup"]
    assert f'href="{reverse("portal:artifact", args=[rollup.artifact_id])}"' in html


@pytest.mark.parametrize(
    "params",
    [
        {"bucket": "fortnight"},
        {"window_start": "2026-13-45"},
        {"window_start": "2026-03-01", "window_end": "2026-01-01"},
        {"window_start": "1900-01-01", "window_end": "2026-01-01"},
        {"window_start": "2020-01-01", "window_end": "2026-01-01"},
        {"type": "nonsense"},
    ],
)
def test_bad_filters_show_a_message_not_a_500(flow_world, params):
    client = client_for(flow_world.owner)
    for url in (flow_url("granted"), reverse("portal:home"), reverse("portal:summary", args=["granted"])):
        response = client.get(url, params)
        assert response.status_code == 200
    response = client.get(flow_url("granted"), params)
    assert 'class="message error"' in response.content.decode()


@pytest.mark.parametrize(
    "params",
    [
        {"done_after": "yesterday"},
        {"done_after": "2026-02-01T00:00:00+00:00", "done_before": "2026-01-01T00:00:00+00:00"},
        {"page": "x"},
    ],
)
def test_bad_items_filters_show_a_message_not_a_500(flow_world, params):
    response = client_for(flow_world.owner).get(reverse("portal:items", args=["granted"]), params)
    assert response.status_code == 200


WINDOW_PAGES = [
    ("portal:home", []),
    ("portal:summary", ["granted"]),
    ("portal:flow", ["granted"]),
    ("portal:flow-csv", ["granted", "velocity"]),
    ("portal:bottlenecks", ["granted"]),
    ("portal:bottlenecks-csv", ["granted", "states"]),
    ("portal:dora", ["granted"]),
    ("portal:dora-csv", ["granted", "frequency"]),
]


@pytest.mark.parametrize(("name", "args"), WINDOW_PAGES)
@pytest.mark.parametrize(
    "params",
    [
        {"window_end": "0001-01-01"},
        {"window_start": "0001-01-01"},
        {"window_start": "9999-12-31", "window_end": "9999-12-31"},
        {"window_end": "1970-01-05"},
    ],
)
def test_windows_at_the_edges_of_the_calendar_show_a_message(flow_world, name, args, params):
    response = client_for(flow_world.owner).get(reverse(name, args=args), params)
    assert response.status_code == 200
    # The page says why it shows the default window; a CSV has the default window's rows, as after any
    # refused filter.
    if not name.endswith("-csv"):
        assert "is outside 1970-01-01 to 2999-12-31" in response.content.decode()


@pytest.mark.parametrize("params", [{"history_end": "0001-01-01"}, {"history_start": "0001-01-01"}])
@pytest.mark.parametrize("page", ["portal:forecast", "portal:forecast-csv"])
def test_forecast_history_at_the_edges_of_the_calendar_shows_a_message(flow_world, page, params):
    args = ["granted"] if page == "portal:forecast" else ["granted", "history"]
    response = client_for(flow_world.owner).get(reverse(page, args=args), params)
    assert response.status_code == 200
    if page == "portal:forecast":
        assert "is outside 1970-01-01 to 2999-12-31" in response.content.decode()


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+14:00"])
@pytest.mark.parametrize("parameter", ["done_after", "done_before"])
def test_instants_beyond_the_years_utc_can_hold_show_a_message(flow_world, parameter, value):
    response = client_for(flow_world.owner).get(reverse("portal:items", args=["granted"]), {parameter: value})
    assert response.status_code == 200
    assert "is outside the years 1 to 9999 in UTC" in response.content.decode()


@pytest.mark.parametrize("role", ["staff", "owner", "partner_user"])
def test_the_flow_pages_stay_under_20_queries(flow_world, role, django_assert_max_num_queries):
    client = client_for(getattr(flow_world, role))
    urls = [
        reverse("portal:home") + "?window_start=2026-01-01&window_end=2026-03-31",
        reverse("portal:summary", args=["granted"]) + "?window_start=2026-01-01&window_end=2026-03-31",
        flow_url("granted", bucket="day", **WINDOW),
        reverse("portal:flow-csv", args=["granted", "load"]),
        reverse("portal:items", args=["granted"]),
    ]
    for url in urls:
        with django_assert_max_num_queries(20):
            assert client.get(url).status_code == 200


def test_pages_send_a_strict_content_security_policy(world):
    response = client_for(world.owner).get(reverse("portal:home"))
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy


# --- the flow dashboard's cache ------------------------------------------------------------------------


@pytest.fixture
def computed(monkeypatch):
    """An empty cache, and how many times the dashboard's figures were computed (not read from it)."""
    from django.core.cache import cache

    from metrics import selectors as metrics_selectors

    cache.clear()
    calls = []
    compute = metrics_selectors.flow_metrics

    def counted(*args, **kwargs):
        calls.append(args[0])
        return compute(*args, **kwargs)

    monkeypatch.setattr(metrics_selectors, "flow_metrics", counted)
    yield calls
    cache.clear()


def without_csrf_tokens(html: str) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", html)


def test_the_cached_dashboard_equals_the_computed_one(flow_world, computed):
    client = client_for(flow_world.owner)
    first = client.get(flow_url("granted", bucket="day", **WINDOW))
    again = client_for(flow_world.owner).get(flow_url("granted", bucket="day", **WINDOW))
    assert len(computed) == 1
    assert again.context["metrics"] == first.context["metrics"]
    assert again.context["tables"] == first.context["tables"]
    assert again.context["charts"] == first.context["charts"]
    assert without_csrf_tokens(again.content.decode()) == without_csrf_tokens(first.content.decode())
    # Other parameters, normalised: another entry; the same ones spelled otherwise: the same entry.
    client.get(flow_url("granted", bucket="week", **WINDOW))
    client.get(flow_url("granted", bucket="day", window_start="2026-01-01", window_end="2026-03-31", x="1"))
    assert len(computed) == 2


def test_a_rollup_refresh_shows_at_once(flow_world, computed):
    from metrics.services import rollups_refresh_after_sync
    from tests.factories import flow_item

    client = client_for(flow_world.owner)
    assert client.get(flow_url("granted", **WINDOW)).context["metrics"]["velocity"]["total"] == 150
    start = BASE_TIME + timedelta(days=10)
    item = flow_item(
        flow_world.product,
        (start, FlowState.ACTIVE),
        (start + timedelta(days=2), FlowState.DONE),
        connection=flow_world.internal_conn,
        key="G-NEW",
    )
    rollups_refresh_after_sync([item.pk], now=BASE_TIME + timedelta(days=120))
    assert client.get(flow_url("granted", **WINDOW)).context["metrics"]["velocity"]["total"] == 151


def test_a_new_target_allocation_shows_at_once(flow_world, computed):
    from metrics.models import ProductTarget

    client = client_for(flow_world.owner)
    assert client.get(flow_url("granted", **WINDOW)).context["charts"]["distribution"]["target"][0] == 60.0
    target = ProductTarget.objects.get(product=flow_world.product)
    target.allocation = {"feature": 0.4, "defect": 0.4, "risk": 0.1, "debt": 0.1}
    target.save()
    assert client.get(flow_url("granted", **WINDOW)).context["charts"]["distribution"]["target"][0] == 40.0


@pytest.mark.parametrize("first", ["leader", "staff", "owner", "partner_user", "other_partner_user"])
def test_users_of_different_reach_never_share_a_cached_dashboard(flow_world, computed, first):
    """Whoever fills the cache first, each sees the numbers of its own reach."""
    expected = {"leader": 150, "staff": 150, "owner": 150, "partner_user": 30, "other_partner_user": None}
    # Partner B's scope holds none of these items: its count, whatever it is, from an entry of its own.
    other_partner = client_for(flow_world.other_partner_user).get(flow_url("granted", **WINDOW))
    computed.clear()
    cache_filled_by = client_for(getattr(flow_world, first)).get(flow_url("granted", **WINDOW))
    assert cache_filled_by.status_code == 200
    for role, total in expected.items():
        response = client_for(getattr(flow_world, role)).get(flow_url("granted", **WINDOW))
        if total is None:
            total = other_partner.context["metrics"]["velocity"]["total"]
        assert response.context["metrics"]["velocity"]["total"] == total, role
        assert response.context["metrics"]["scope"]["partner_view"] == (role.endswith("partner_user")), role
    # Everyone seeing the whole product shares one entry; each partner has its own.
    assert len(computed) == 2


def test_a_cache_that_is_down_slows_the_dashboard_but_never_breaks_it(client, monkeypatch):
    from django.core.cache import cache

    from metrics.services import product_rollups_rebuild

    def down(*args, **kwargs):
        raise ConnectionError("the cache is unreachable")

    product = ProductFactory()
    product_rollups_rebuild(product)  # a data version: the figures would be cached
    monkeypatch.setattr(cache, "get", down)
    monkeypatch.setattr(cache, "set", down)
    client.force_login(StaffFactory())
    assert client.get(reverse("portal:flow", args=[product.slug])).status_code == 200
