"""The analysis pages in a real Chromium: each role's landing, the scatter and histogram drill-downs, the
bottleneck finder, item analyzer, DORA and forecast pages read from their Chart.js instances, keyboard
use and a phone-sized screen."""

import re

import pytest
from django.urls import reverse

from tests.browser.portal_pages import PHONE, chart_data, log_in, screenshot, wait_for_chart
from tests.vsm.test_portal_analysis import HISTORY, build_analysis_world

pytestmark = [pytest.mark.needs_browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

WINDOW = "window_start=2026-01-01&window_end=2026-03-31"
HISTORY_QUERY = "&".join(f"{name}={value}" for name, value in HISTORY.items())


@pytest.fixture
def world():
    return build_analysis_world(crowd_products=3)


def table_column(page, table_id, index):
    """The text of one column of a data table (0: the row headings)."""
    return page.evaluate(
        """([id, index]) => Array.from(document.querySelectorAll("#" + id + " tbody tr"))
            .map(row => row.children[index].textContent.trim())""",
        [table_id, index],
    )


def collect_errors(page) -> list:
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


@pytest.mark.parametrize(
    ("role", "landing"),
    [
        ("staff", "/"),
        ("leader", "/"),
        ("owner", "/"),
        ("partner_user", "/products/granted/flow/"),
        ("other_partner_user", "/"),
    ],
)
def test_each_role_lands_where_it_works(live_server, chromium_page, world, role, landing):
    page = chromium_page
    log_in(page, live_server, getattr(world, role).username)
    page.wait_for_url(f"{live_server.url}{landing}")
    if landing == "/":
        assert page.locator("h1").inner_text() == "Products"
    else:
        wait_for_chart(page, "velocity")
        assert page.locator("h1").inner_text() == "Granted product: flow"
    screenshot(page, f"landing-{role}")


def test_the_scatter_and_histogram_drill_down(live_server, chromium_page, world):
    page = chromium_page
    errors = collect_errors(page)
    log_in(page, live_server, world.owner.username)
    flow = f"{live_server.url}{reverse('portal:flow', args=['granted'])}?{WINDOW}"
    page.goto(flow)
    scatter = chart_data(page, "scatter")
    assert scatter["type"] == "scatter"
    done, outliers = (dataset["data"] for dataset in scatter["datasets"])
    assert len(done) + len(outliers) == 150 and outliers
    assert all(point["y"] > max(p["y"] for p in done) for point in outliers)
    assert len(table_column(page, "table-scatter", 0)) == 150
    screenshot(page, "flow-dashboard-scatter")

    # Click the first outlier: its trace page opens.
    target = page.evaluate(
        """() => {
            const canvas = document.getElementById("chart-scatter");
            canvas.scrollIntoView();
            const point = Chart.getChart(canvas).getDatasetMeta(1).data[0];
            return {x: point.x, y: point.y};
        }"""
    )
    page.locator("#chart-scatter").click(position=target)
    page.wait_for_url(re.compile(r".*/trace/\d+/$"))
    assert re.search(r"/trace/(\d+)/$", page.url).group(1) == str(outliers[0]["url"].split("/")[-2])

    # Click the histogram's tallest bar: its items are listed, as many as the bar counts.
    page.goto(flow)
    bar = page.evaluate(
        """() => {
            const canvas = document.getElementById("chart-flow_time");
            canvas.scrollIntoView();
            const chart = Chart.getChart(canvas);
            const counts = chart.data.datasets[0].data.map(point => point.y);
            const index = counts.indexOf(Math.max(...counts));
            const element = chart.getDatasetMeta(0).data[index];
            return {x: element.x, y: (element.y + element.base) / 2, count: counts[index]};
        }"""
    )
    page.locator("#chart-flow_time").click(position={"x": bar["x"], "y": bar["y"]})
    page.wait_for_url("**/products/granted/items/**")
    assert "flow_time_from=" in page.url
    assert page.locator("#items tbody tr").count() == bar["count"]
    screenshot(page, "flow-time-bucket-items")
    assert errors == []


def test_the_bottleneck_finder_and_item_analyzer(live_server, chromium_page, world):
    page = chromium_page
    errors = collect_errors(page)
    log_in(page, live_server, world.owner.username)
    page.goto(f"{live_server.url}{reverse('portal:bottlenecks', args=['granted'])}?{WINDOW}")
    states = chart_data(page, "states")
    assert states["labels"] == table_column(page, "table-states", 0)
    days = states["datasets"][0]["data"]
    assert days == sorted(days, reverse=True) and days[0] > 0
    assert days == [float(value) for value in table_column(page, "table-states", 1)]
    statuses = chart_data(page, "statuses")
    assert "In Progress (jira)" in statuses["labels"]
    screenshot(page, "bottlenecks")
    # An item behind the top state opens its trace.
    page.locator("#table-states tbody tr").first.locator("td.links a").first.click()
    page.wait_for_url(re.compile(r".*/trace/\d+/$"))

    page.goto(f"{live_server.url}{reverse('portal:analyzer', args=['granted'])}?state=done")
    # Keyboard only: tab to the "Flow time" heading and sort by it.
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.textContent.trim()") == "Flow time (days)":
            break
    else:
        pytest.fail("the Flow time heading cannot be reached with the keyboard")
    page.keyboard.press("Enter")
    page.wait_for_url("**sort=-flow_time**")
    flow_times = [float(value) for value in table_column(page, "analyzer", 5)]
    assert len(flow_times) == 50 and flow_times == sorted(flow_times, reverse=True)
    assert page.locator("#analyzer th[aria-sort=descending]").inner_text() == "Flow time (days)"
    screenshot(page, "item-analyzer")
    assert errors == []


def test_the_dora_and_forecast_pages(live_server, chromium_page, world):
    page = chromium_page
    errors = collect_errors(page)
    log_in(page, live_server, world.owner.username)
    page.goto(f"{live_server.url}{reverse('portal:dora', args=['granted'])}?{WINDOW}&bucket=month")
    frequency = chart_data(page, "frequency")
    assert frequency["labels"] == ["2026-01-01", "2026-02-01", "2026-03-01"]
    assert frequency["datasets"][0]["data"] == [3, 3, 2]
    lead_time = chart_data(page, "lead_time")
    assert lead_time["type"] == "line" and lead_time["datasets"][0]["data"][0] == 6
    failure_rate = chart_data(page, "failure_rate")
    rates = [float(value) for value in table_column(page, "table-failure_rate", 3)]
    assert failure_rate["datasets"][0]["data"] == rates == [50, 25, 75]
    chart_data(page, "recovery")
    assert page.locator("#table-deployments tbody tr").count() == 12
    screenshot(page, "dora")

    page.goto(f"{live_server.url}{reverse('portal:forecast', args=['granted'])}?{HISTORY_QUERY}")
    history = chart_data(page, "history")
    assert len(history["labels"]) == 60 and sum(history["datasets"][0]["data"]) > 0
    assert table_column(page, "table-forecast", 0) == ["50%", "85%", "95%"]
    page.select_option("#id_question", "when")
    page.fill("#id_items", "40")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**question=when**")
    dates = table_column(page, "table-forecast", 1)
    assert (
        len(dates) == 3 and dates == sorted(dates) and all(re.fullmatch(r"\d{4}-\d\d-\d\d", d) for d in dates)
    )
    screenshot(page, "forecast")
    assert errors == []


@pytest.mark.parametrize("name", ["flow", "bottlenecks", "analyzer", "dora", "forecast"])
def test_the_pages_fit_a_phone_screen(live_server, chromium_browser, world, name):
    context = chromium_browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    log_in(page, live_server, world.owner.username)
    query = HISTORY_QUERY if name == "forecast" else WINDOW
    page.goto(f"{live_server.url}{reverse(f'portal:{name}', args=['granted'])}?{query}")
    page.wait_for_load_state("networkidle")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, f"phone-{name}")
    context.close()


def test_a_partner_sees_its_scope_and_no_foreign_product(live_server, chromium_page, world):
    page = chromium_page
    log_in(page, live_server, world.partner_user.username)
    for name in ("bottlenecks", "analyzer", "dora", "forecast"):
        response = page.goto(f"{live_server.url}{reverse(f'portal:{name}', args=['other'])}")
        assert response.status == 404
        assert "Other product" not in page.content()
        page.goto(f"{live_server.url}{reverse(f'portal:{name}', args=['granted'])}?{WINDOW}&{HISTORY_QUERY}")
        html = page.content()
        assert "Other product" not in html and "SECRET-" not in html and "Internal item" not in html
        assert all(int(number) % 5 == 0 for number in re.findall(r"\bG-(\d+)\b", html))
    page.goto(f"{live_server.url}{reverse('portal:dora', args=['granted'])}?{WINDOW}&bucket=month")
    frequency = chart_data(page, "frequency")
    assert sum(frequency["datasets"][0]["data"]) == 4  # A's deployments: the odd weeks, two of them failed
    screenshot(page, "partner-dora")
