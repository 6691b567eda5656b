"""/api/metrics/: flow metrics, the items behind them (JSON and CSV), forecasts; scoping and bad input."""

import csv
import io
from datetime import UTC, date, datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from rest_framework.test import APIClient

from metrics.calculators import daily_throughput, monte_carlo_when
from metrics.models import DailyLoadRollup, ItemFlowRollup
from metrics.selectors import FORECAST_SEED, FORECAST_TRIALS, DayWindow, load_by_type_id
from metrics.services import product_rollups_rebuild
from tests.clients import api_client_for as client_for
from tests.factories import (
    ArtifactLinkFactory,
    PartnerFactory,
    PartnerGrantFactory,
    PartnerMembershipFactory,
    ProductFactory,
    ProductRoleFactory,
    ProductTargetFactory,
    StaffFactory,
    TeamFactory,
    ToolConnectionFactory,
    UserFactory,
    flow_item,
)
from vsm.choices import LinkKind

pytestmark = pytest.mark.django_db

HOUR = 3600.0
NEW, WAITING, ACTIVE, DONE, CANCELED = "new", "waiting", "active", "done", "canceled"
WINDOW = {"window_start": "2026-03-02", "window_end": "2026-03-15", "bucket": "week"}


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


@pytest.fixture
def world():
    """Product "shop" (granted to partners A and B) and "other" (B only), with flow items in March 2026.

    Partner A's scope in shop: its connection's A-1, A-2, OPEN-A, and LINKED (linked to A-1). TWO-HOPS
    (linked to LINKED), the internal items and B's are outside it.
    """
    w = SimpleNamespace()
    w.shop = ProductFactory(name="Shop", slug="shop")
    w.other = ProductFactory(name="Other", slug="other")
    w.partner = PartnerFactory(name="Partner A")
    w.other_partner = PartnerFactory(name="Partner B")
    PartnerGrantFactory(partner=w.partner, product=w.shop)
    PartnerGrantFactory(partner=w.other_partner, product=w.shop)
    PartnerGrantFactory(partner=w.other_partner, product=w.other)
    internal = ToolConnectionFactory(name="Internal Jira")
    a_tool = ToolConnectionFactory(name="A tool", partner=w.partner)
    b_tool = ToolConnectionFactory(name="B tool", partner=w.other_partner)
    w.team = TeamFactory(product=w.shop, name="Core")

    def item(key, connection, *moves, flow_type="feature", product=None, **kwargs):
        return flow_item(
            product or w.shop,
            *moves,
            created_at=at(1, 9),
            flow_type=flow_type,
            connection=connection,
            key=key,
            title=f"{key} title",
            **kwargs,
        )

    i = {}
    i["A-1"] = item("A-1", a_tool, (at(2, 9), ACTIVE), (at(3, 9), DONE))
    i["LINKED"] = item("LINKED", internal, (at(2, 12), ACTIVE), (at(3, 12), WAITING), (at(4, 12), DONE))
    i["TWO-HOPS"] = item("TWO-HOPS", internal, (at(5, 10), ACTIVE), (at(6, 10), DONE), team=w.team)
    i["INTERNAL-1"] = item("INTERNAL-1", internal, (at(4, 8), ACTIVE), (at(5, 20), DONE), team=w.team)
    i["A-2"] = item(
        "A-2", a_tool, (at(3, 10), ACTIVE), (at(6, 10), WAITING), (at(10, 10), DONE), flow_type="defect"
    )
    i["INTERNAL-2"] = item("INTERNAL-2", internal, (at(9, 9), ACTIVE), (at(11, 9), DONE), flow_type="risk")
    i["B-1"] = item("B-1", b_tool, (at(11, 9), ACTIVE), (at(12, 21), DONE), flow_type="debt")
    i["OPEN-A"] = item("OPEN-A", a_tool, (at(9, 15), ACTIVE))
    i["OPEN-INT"] = item("OPEN-INT", internal, (at(2, 8), WAITING), flow_type="defect", team=w.team)
    i["CANCELED-INT"] = item("CANCELED-INT", internal, (at(2, 10), ACTIVE), (at(4, 10), CANCELED))
    i["COMMIT"] = item("COMMIT", internal, flow_type=None)
    i["O-1"] = item("O-1", b_tool, (at(2, 9), ACTIVE), (at(3, 9), DONE), product=w.other)
    w.items = i
    for source, target in [("A-1", "LINKED"), ("LINKED", "TWO-HOPS"), ("COMMIT", "A-1")]:
        ArtifactLinkFactory(source=i[source], target=i[target], kind=LinkKind.RELATES_TO)
    ProductTargetFactory(product=w.shop, allocation={"feature": 0.5, "defect": 0.3, "risk": 0.1, "debt": 0.1})

    w.staff = StaffFactory(username="staff")
    w.owner = ProductRoleFactory(product=w.shop, user__username="owner").user
    w.partner_user = PartnerMembershipFactory(partner=w.partner, user__username="partner-a").user
    w.other_partner_user = PartnerMembershipFactory(partner=w.other_partner, user__username="partner-b").user
    w.outsider = UserFactory(username="outsider")
    for product in (w.shop, w.other):
        product_rollups_rebuild(product)
    return w


def get_ok(client, url, params=None):
    response = client.get(url, params or {})
    assert response.status_code == 200, response.content
    return response.json()


def flow(client, product="shop", **params):
    return get_ok(client, "/api/metrics/flow/", {"product": product, **WINDOW, **params})


def item_keys(client, **params) -> list[str]:
    payload = get_ok(client, "/api/metrics/items/", params)
    return [row["key"] for row in payload["results"]]


def load_totals(payload) -> dict[int, int]:
    return {int(day["day"][-2:]): day["total"] for day in payload["load"]["days"]}


# --- /api/metrics/flow/ ------------------------------------------------------------------------------------


def test_flow_metrics_of_a_product(world):
    payload = flow(client_for(world.owner))
    assert payload["product"] == {"id": world.shop.pk, "slug": "shop", "name": "Shop", "time_zone": "UTC"}
    assert payload["window"]["start"] == "2026-03-02T00:00:00Z"
    assert payload["window"]["end"] == "2026-03-16T00:00:00Z"

    velocity = payload["velocity"]
    assert velocity["total"] == 7
    assert velocity["by_type"] == {"feature": 4, "defect": 1, "risk": 1, "debt": 1}
    assert [(b["start"][:10], b["count"], b["by_type"]) for b in velocity["buckets"]] == [
        ("2026-03-02", 4, {"feature": 4}),
        ("2026-03-09", 3, {"defect": 1, "risk": 1, "debt": 1}),
    ]
    assert payload["canceled"] == 1

    flow_time = payload["flow_time"]
    assert flow_time["count"] == 7
    assert flow_time["mean"] == pytest.approx(384 / 7 * HOUR)
    assert (flow_time["p50"], flow_time["max"]) == (36 * HOUR, 168 * HOUR)
    assert (flow_time["p85"], flow_time["p95"]) == (pytest.approx(60 * HOUR), pytest.approx(132 * HOUR))
    assert flow_time["outliers"] == [{"artifact": world.items["A-2"].pk, "key": "A-2", "seconds": 168 * HOUR}]
    assert flow_time["histogram"][0] == {"lower": 0.0, "upper": 12 * HOUR, "count": 0}
    assert sum(bin_["count"] for bin_ in flow_time["histogram"]) == 7
    assert payload["lead_time"]["max"] == (11 * 24 + 12) * HOUR  # B-1: 1 March 09:00 to 12 March 21:00
    assert payload["active_time"]["p50"] == 36 * HOUR

    efficiency = payload["efficiency"]
    assert efficiency["overall"] == 264 / 384
    assert [b["count"] for b in efficiency["buckets"]] == [4, 3]
    assert efficiency["buckets"][0]["efficiency"] == (24 + 24 + 24 + 36) / (24 + 48 + 24 + 36)

    load = payload["load"]
    assert load["source"] == "product"
    assert load_totals(payload) == {
        2: 4, 3: 4, 4: 3, 5: 3, 6: 2, 7: 2, 8: 2, 9: 4, 10: 3, 11: 3, 12: 2, 13: 2, 14: 2, 15: 2
    }  # fmt: skip
    assert load["days"][0]["by_type"] == {"feature": 3, "defect": 1}

    distribution = payload["distribution"]
    assert distribution["done"]["shares"] == {"feature": 4 / 7, "defect": 1 / 7, "risk": 1 / 7, "debt": 1 / 7}
    assert distribution["load"]["counts"] == {"feature": 14, "defect": 21, "risk": 2, "debt": 1}
    allocation = payload["allocation"]
    assert allocation["target"] == {"feature": 0.5, "defect": 0.3, "risk": 0.1, "debt": 0.1}
    assert allocation["deviation"]["feature"] == pytest.approx(4 / 7 - 0.5)
    assert allocation["deviation"]["defect"] == pytest.approx(1 / 7 - 0.3)


def test_every_bucket_lists_the_items_behind_its_count(world):
    client = client_for(world.owner)
    buckets = flow(client)["velocity"]["buckets"]
    listed = [get_ok(client, bucket["items"]) for bucket in buckets]
    assert [page["count"] for page in listed] == [bucket["count"] for bucket in buckets]
    assert sorted(row["key"] for row in listed[0]["results"]) == ["A-1", "INTERNAL-1", "LINKED", "TWO-HOPS"]

    typed = flow(client, type="feature")["velocity"]["buckets"]
    assert "type=feature" in typed[0]["items"]
    assert [get_ok(client, bucket["items"])["count"] for bucket in typed] == [4, 0]


def test_a_partner_sees_the_metrics_of_its_scope_only(world):
    payload = flow(client_for(world.partner_user))
    assert payload["scope"]["partner_view"] is True
    assert payload["velocity"]["total"] == 3
    assert [b["count"] for b in payload["velocity"]["buckets"]] == [2, 1]
    assert payload["canceled"] == 0
    assert payload["flow_time"]["count"] == 3
    assert payload["efficiency"]["overall"] == 120 / 240
    assert payload["load"]["source"] == "scope"
    assert load_totals(payload) == {
        2: 2, 3: 2, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1, 9: 2, 10: 1, 11: 1, 12: 1, 13: 1, 14: 1, 15: 1
    }  # fmt: skip
    assert {o["key"] for o in payload["flow_time"]["outliers"]} <= {"A-1", "A-2", "LINKED"}


def test_staff_narrowed_to_a_partner_sees_what_the_partner_sees(world):
    as_partner = flow(client_for(world.partner_user))
    as_staff = flow(client_for(world.staff), partner=world.partner.pk)
    for metric in ("flow_time", "lead_time", "efficiency", "load", "distribution", "canceled"):
        assert as_staff[metric] == as_partner[metric], metric
    assert [b["count"] for b in as_staff["velocity"]["buckets"]] == [2, 1]
    assert f"partner={world.partner.pk}" in as_staff["velocity"]["buckets"][0]["items"]


def test_a_team_narrows_every_metric(world):
    payload = flow(client_for(world.owner), team=world.team.pk)
    assert payload["velocity"]["total"] == 2  # TWO-HOPS and INTERNAL-1
    assert payload["load"]["source"] == "scope"
    assert load_totals(payload)[4] == 2  # INTERNAL-1 and OPEN-INT


def test_load_from_the_product_table_equals_the_load_from_the_ledgers(world):
    days = DayWindow(date(2026, 2, 20), date(2026, 3, 20)).days()
    from_ledgers = load_by_type_id(ItemFlowRollup.objects.filter(product=world.shop), days, ZoneInfo("UTC"))
    from_table = {day: {} for day in days}
    rows = DailyLoadRollup.objects.filter(product=world.shop, day__in=days)
    for day, type_id, count in rows.values_list("day", "flow_item_type_id", "count"):
        from_table[day][type_id] = count
    assert from_ledgers == from_table
    assert sum(sum(counts.values()) for counts in from_table.values()) > 38


def test_days_after_the_last_refresh_carry_its_load_forward(world):
    product_rollups_rebuild(world.shop, now=at(12, 22))
    payload = flow(client_for(world.staff))
    assert payload["load"]["computed_through"] == "2026-03-12"
    assert [load_totals(payload)[day] for day in (12, 13, 14, 15)] == [2, 2, 2, 2]


def test_products_out_of_reach_answer_404(world):
    assert client_for(world.partner_user).get("/api/metrics/flow/", {"product": "other"}).status_code == 404
    response = client_for(world.partner_user).get("/api/metrics/flow/", {"product": world.other.pk})
    assert response.status_code == 404
    assert "no product" in response.json()["detail"]
    assert client_for(world.outsider).get("/api/metrics/flow/", {"product": "shop"}).status_code == 404
    assert client_for(world.staff).get("/api/metrics/flow/", {"product": "nope"}).status_code == 404
    assert client_for(world.staff).get("/api/metrics/flow/", {"product": "9" * 30}).status_code == 404
    for url in ("/api/metrics/items/", "/api/metrics/forecast/"):
        response = client_for(world.partner_user).get(url, {"product": world.other.pk, "items": 3})
        assert response.status_code == 404, url
    assert APIClient().get("/api/metrics/flow/", {"product": "shop"}).status_code == 401


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"product": ""}, "product", "may not be blank"),
        ({"window_start": "2026-03-20"}, "window_end", "is before window_start"),
        ({"window_start": "2023-03-15"}, "window_end", "longer than 3 years"),
        ({"window_start": "9999-12-25", "window_end": "9999-12-31"}, "window_start", "is outside 1970-01-01"),
        ({"window_start": "0001-01-01"}, "window_start", "is outside 1970-01-01"),
        ({"window_start": "2026-13-01"}, "window_start", "wrong format"),
        ({"bucket": "fortnight"}, "bucket", "unknown bucket 'fortnight'"),
        ({"type": "gizmo"}, "type", "unknown flow item type 'gizmo'"),
        ({"team": "abc"}, "team", "valid integer"),
        ({"team": "999999"}, "team", "no team 999999 in shop"),
        ({"partner": "999999"}, "partner", "no partner 999999"),
    ],
)
def test_bad_flow_input_is_a_400_with_a_message(world, params, field, message):
    response = client_for(world.owner).get("/api/metrics/flow/", {"product": "shop", **WINDOW, **params})
    assert response.status_code == 400, response.content
    assert message in str(response.json()[field])


def test_a_team_of_another_product_is_a_400(world):
    elsewhere = TeamFactory(product=world.other)
    response = client_for(world.staff).get("/api/metrics/flow/", {"product": "shop", "team": elsewhere.pk})
    assert response.status_code == 400


def test_a_window_of_three_years_is_accepted(world):
    params = {"window_start": "2023-03-16", "window_end": "2026-03-15", "bucket": "month"}
    assert flow(client_for(world.owner), **params)["velocity"]["total"] == 7


def test_the_default_window_ends_today(world):
    payload = get_ok(client_for(world.owner), "/api/metrics/flow/", {"product": "shop"})
    first, last = (date.fromisoformat(payload["window"][name]) for name in ("first_day", "last_day"))
    assert last == datetime.now(UTC).date()
    assert (last - first).days == 90


def test_flow_runs_a_fixed_number_of_queries(world, django_assert_max_num_queries):
    more = [
        flow_item(world.shop, (at(2, n % 24), ACTIVE), (at(7, n % 24), DONE), created_at=at(1))
        for n in range(30)
    ]
    product_rollups_rebuild(world.shop)
    for user, params in [
        (world.owner, {}),
        (world.partner_user, {}),
        (world.staff, {"team": world.team.pk, "type": "feature"}),
    ]:
        client = client_for(user)
        with django_assert_max_num_queries(12):
            payload = flow(client, bucket="day", **params)
        assert payload["velocity"]["total"] >= 0
    assert flow(client_for(world.owner))["velocity"]["total"] == 7 + len(more)


# --- /api/metrics/items/ -----------------------------------------------------------------------------------


def test_items_list_the_flow_figures_of_every_flow_item(world):
    client = client_for(world.owner)
    payload = get_ok(client, "/api/metrics/items/", {"product": "shop", "ordering": "-flow_time"})
    assert payload["count"] == 10  # every flow item of shop: not the commit, not the other product's
    first = payload["results"][0]
    assert first["key"] == "A-2"
    assert first == {
        "artifact": world.items["A-2"].pk,
        "key": "A-2",
        "title": "A-2 title",
        "url": world.items["A-2"].url,
        "type": "defect",
        "state": "done",
        "team": None,
        "created_at": "2026-03-01T09:00:00Z",
        "started_at": "2026-03-03T10:00:00Z",
        "start_inferred": False,
        "restarted_at": "2026-03-03T10:00:00Z",
        "done_at": "2026-03-10T10:00:00Z",
        "canceled_at": None,
        "flow_time": 168 * HOUR,
        "lead_time": 217 * HOUR,
        "flow_time_from_restart": 168 * HOUR,
        "active_time": 72 * HOUR,
        "waiting_time": 96 * HOUR,
        "efficiency": 72 / 168,
        "age": None,
        "computed_at": first["computed_at"],
    }


def test_items_filters(world):
    client = client_for(world.owner)
    assert sorted(item_keys(client, product=world.shop.pk, type="risk")) == ["INTERNAL-2"]
    assert sorted(item_keys(client, product="shop", state=["active", "waiting"])) == ["OPEN-A", "OPEN-INT"]
    assert sorted(
        item_keys(client, done_after="2026-03-10T10:00:00Z", done_before="2026-03-12T21:00:00Z")
    ) == [
        "A-2",
        "INTERNAL-2",
    ]
    assert sorted(item_keys(client, started_after="2026-03-09T00:00:00Z", started_before="2026-03-10")) == [
        "INTERNAL-2",
        "OPEN-A",
    ]
    assert sorted(item_keys(client, team=world.team.pk)) == ["INTERNAL-1", "OPEN-INT", "TWO-HOPS"]
    response = client.get("/api/metrics/items/", {"type": "gizmo"})
    assert response.status_code == 400
    assert "type" in response.json()
    assert client.get("/api/metrics/items/", {"done_after": "yesterday"}).status_code == 400


def test_items_orderings_put_empty_values_last(world):
    client = client_for(world.owner)
    by_age = item_keys(client, product="shop", ordering="-age")
    assert by_age[:2] == ["OPEN-INT", "OPEN-A"]  # the oldest open item first; closed items have no age
    assert item_keys(client, product="shop", ordering="age")[:2] == ["OPEN-A", "OPEN-INT"]
    by_done = item_keys(client, product="shop")
    assert by_done[0] == "B-1" and set(by_done[-3:]) == {"OPEN-A", "OPEN-INT", "CANCELED-INT"}
    assert item_keys(client, product="shop", ordering="flow_time")[:2] == ["A-1", "TWO-HOPS"]
    efficiency = get_ok(client, "/api/metrics/items/", {"product": "shop", "ordering": "efficiency"})[
        "results"
    ]
    assert efficiency[0]["key"] == "A-2"


def test_open_items_figures_are_taken_now(world):
    row = get_ok(client_for(world.owner), "/api/metrics/items/", {"product": "shop", "state": "active"})
    (open_a,) = row["results"]
    age = open_a["age"]
    assert age >= (datetime.fromisoformat(open_a["computed_at"]) - at(9, 15)).total_seconds()
    assert open_a["active_time"] == age
    assert open_a["waiting_time"] == 0
    assert open_a["efficiency"] == 1


def test_a_partner_lists_only_its_scope(world):
    client = client_for(world.partner_user)
    assert sorted(item_keys(client)) == ["A-1", "A-2", "LINKED", "OPEN-A"]
    assert sorted(item_keys(client, product="shop")) == ["A-1", "A-2", "LINKED", "OPEN-A"]
    assert sorted(item_keys(client_for(world.other_partner_user), product="shop")) == ["B-1"]
    assert sorted(item_keys(client_for(world.staff), partner=world.partner.pk)) == [
        "A-1",
        "A-2",
        "LINKED",
        "OPEN-A",
    ]
    assert client.get("/api/metrics/items/", {"partner": world.other_partner.pk}).status_code == 400


def test_items_export_as_csv(world):
    world.items["A-1"].title = '=HYPERLINK("https://evil.test")'
    world.items["A-1"].save(update_fields=["title"])
    response = client_for(world.partner_user).get(
        "/api/metrics/items/", {"format": "csv", "ordering": "done_at"}
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:6] == ["artifact", "key", "title", "url", "type", "state"]
    assert "value" not in rows[0] and "fields" not in rows[0]
    assert [row[1] for row in rows[1:]] == ["A-1", "LINKED", "A-2", "OPEN-A"]
    assert rows[1][2] == '\'=HYPERLINK("https://evil.test")'
    assert rows[1][rows[0].index("flow_time")] == str(24 * HOUR)


def test_csv_export_of_nothing_has_its_header(world):
    params = {"format": "csv", "type": "debt", "state": "new"}
    response = client_for(world.owner).get("/api/metrics/items/", params)
    (header,) = response.content.decode().splitlines()
    assert header.startswith("artifact,key,title,url,type,state,team,created_at,started_at")


# --- /api/metrics/forecast/ --------------------------------------------------------------------------------


FORECAST = {
    "product": "shop",
    "history_start": "2026-03-02",
    "history_end": "2026-03-15",
    "start": "2026-03-16",
}


def test_forecast_when_is_repeatable_and_matches_the_calculator(world):
    client = client_for(world.owner)
    first = get_ok(client, "/api/metrics/forecast/", {**FORECAST, "items": 5})
    assert get_ok(client, "/api/metrics/forecast/", {**FORECAST, "items": 5}) == first
    assert first["history"] == {
        "first_day": "2026-03-02",
        "last_day": "2026-03-15",
        "days": 14,
        "done": 7,
        "per_day": 0.5,
    }
    done_days = [date(2026, 3, d) for d in (3, 4, 5, 6, 10, 11, 12)]
    throughput = daily_throughput(done_days, date(2026, 3, 2), date(2026, 3, 15))
    expected = monte_carlo_when(throughput, 5, date(2026, 3, 16), trials=FORECAST_TRIALS, seed=FORECAST_SEED)
    assert first["forecast"] == [{"confidence": c, "date": str(expected[c])} for c in (50, 85, 95)]
    dates = [row["date"] for row in first["forecast"]]
    assert dates == sorted(dates)


def test_forecast_how_many_by_a_date(world):
    client = client_for(world.owner)
    payload = get_ok(client, "/api/metrics/forecast/", {**FORECAST, "until": "2026-03-29"})
    assert payload["days"] == 14
    counts = [row["items"] for row in payload["forecast"]]
    assert counts == sorted(counts, reverse=True)
    assert get_ok(client, "/api/metrics/forecast/", {**FORECAST, "until": "2026-03-29"}) == payload


def test_a_partner_forecasts_from_its_own_throughput(world):
    payload = get_ok(client_for(world.partner_user), "/api/metrics/forecast/", {**FORECAST, "items": 2})
    assert payload["history"]["done"] == 3


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"items": 0}, "items must be at least 1"),
        ({"items": -3}, "items must be at least 1"),
        ({"items": "many"}, "valid integer"),
        ({}, "give either items=N or until=YYYY-MM-DD"),
        ({"items": 3, "until": "2026-04-01"}, "give either items=N or until=YYYY-MM-DD"),
        ({"until": "2026-03-01"}, "is before the start 2026-03-16"),
        ({"until": "2028-03-01"}, "more than 366 days"),
        ({"items": 3, "history_start": "2026-03-20"}, "is before history_start"),
        ({"items": 3, "history_start": "2020-01-01"}, "longer than 3 years"),
        (
            {"items": 3, "history_start": "2026-01-01", "history_end": "2026-02-28"},
            "no items were done between 2026-01-01 and 2026-02-28; widen the history window",
        ),
        ({"items": 1_000_000}, "more than 730 days"),
    ],
)
def test_bad_forecast_input_is_a_400_with_a_message(world, params, message):
    response = client_for(world.owner).get("/api/metrics/forecast/", {**FORECAST, **params})
    assert response.status_code == 400, response.content
    assert message in str(response.json())


def test_the_schema_documents_the_metrics_endpoints(world):
    paths = get_ok(client_for(world.owner), "/api/schema/", {"format": "json"})["paths"]
    assert {"/api/metrics/flow/", "/api/metrics/items/", "/api/metrics/forecast/"} <= set(paths)
    flow_params = {p["name"] for p in paths["/api/metrics/flow/"]["get"]["parameters"]}
    assert {"product", "window_start", "window_end", "bucket", "type", "team"} <= flow_params
    item_params = {p["name"] for p in paths["/api/metrics/items/"]["get"]["parameters"]}
    assert {"product", "type", "state", "done_after", "done_before", "ordering", "page"} <= item_params


METRICS_ENDPOINTS = {
    "flow": {},
    "items": {},
    "forecast": {"items": 3},
    "dora": {},
    "lead-time": {},
    "bottlenecks": {},
}


@pytest.mark.parametrize("endpoint", list(METRICS_ENDPOINTS))
@pytest.mark.parametrize("product", ["²", "٣", "\N{FULLWIDTH DIGIT ONE}\N{FULLWIDTH DIGIT TWO}", "¹⁰"])
def test_a_product_in_unicode_digits_is_a_404_not_a_crash(world, endpoint, product):
    # str.isdigit() is true of each; int() refuses the superscripts and reads the others as numbers.
    params = {"product": product, **METRICS_ENDPOINTS[endpoint]}
    response = client_for(world.owner).get(f"/api/metrics/{endpoint}/", params)
    assert response.status_code == 404, response.content
    assert "no product" in response.json()["detail"]


@pytest.mark.parametrize("endpoint", ["flow", "dora", "lead-time", "bottlenecks"])
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"window_end": "0001-01-01"}, "window_end"),
        ({"window_start": "0001-01-01"}, "window_start"),
        ({"window_end": "9999-12-31"}, "window_end"),
        ({"window_start": "9999-12-31", "window_end": "9999-12-31"}, "window_start"),
        # The default start (90 days before) falls before the first day allowed.
        ({"window_end": "1970-01-05"}, "window_start"),
    ],
)
def test_windows_at_the_edges_of_the_calendar_are_a_400_naming_the_day(world, endpoint, params, field):
    response = client_for(world.owner).get(f"/api/metrics/{endpoint}/", {"product": "shop", **params})
    assert response.status_code == 400, response.content
    assert "is outside 1970-01-01 to 2999-12-31" in str(response.json()[field])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"history_end": "0001-01-01"}, "history_end"),
        ({"history_start": "0001-01-01"}, "history_start"),
        ({"start": "0001-01-01"}, "start"),
        ({"start": "9999-12-31"}, "start"),
        ({"start": "1970-01-01"}, "history_end"),  # the day before the start
    ],
)
def test_forecast_days_at_the_edges_of_the_calendar_are_a_400(world, params, field):
    response = client_for(world.owner).get(
        "/api/metrics/forecast/", {"product": "shop", "items": 3, **params}
    )
    assert response.status_code == 400, response.content
    assert "is outside 1970-01-01 to 2999-12-31" in str(response.json()[field])


EXTREME_INSTANTS = ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00+23:59"]


@pytest.mark.parametrize("value", EXTREME_INSTANTS)
@pytest.mark.parametrize(
    ("url", "parameter"),
    [
        ("/api/metrics/items/", "done_after"),
        ("/api/metrics/items/", "done_before"),
        ("/api/metrics/items/", "started_after"),
        ("/api/metrics/items/", "started_before"),
        ("/api/artifacts/", "updated_after"),
        ("/api/artifacts/", "updated_before"),
        ("/api/artifacts/{artifact}/transitions/", "at_after"),
        ("/api/artifacts/{artifact}/transitions/", "at_before"),
    ],
)
def test_instants_beyond_the_years_utc_can_hold_are_a_400(world, url, parameter, value):
    artifact = world.shop.artifacts.first()
    response = client_for(world.owner).get(
        url.format(artifact=artifact.pk), {"product": "shop", parameter: value}
    )
    assert response.status_code == 400, response.content
    assert "is outside the years 1 to 9999 in UTC" in str(response.json()[parameter])
