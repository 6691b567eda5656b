"""The portal in a real Chromium: log in, read the charts' Chart.js instances, drill into a bar; scoping."""

from datetime import timedelta

import pytest
from django.urls import reverse

from metrics.services import product_rollups_rebuild
from tests.browser.portal_pages import chart_data, log_in, screenshot
from tests.factories import (
    BASE_TIME,
    PartnerGrantFactory,
    PartnerMembershipFactory,
    ProductFactory,
    ProductRoleFactory,
    ProductTargetFactory,
    ToolConnectionFactory,
    flow_item,
)
from vsm.choices import FlowState, ProductRoleName

pytestmark = [pytest.mark.needs_browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

WINDOW = "window_start=2026-01-05&window_end=2026-02-01"  # four whole weeks, Monday to Sunday
# Done per week of the window, by type: week index -> (features, defects).
DONE = {0: (3, 1), 1: (2, 2), 2: (4, 0), 3: (1, 3)}


@pytest.fixture
def world():
    product = ProductFactory(name="Checkout", slug="checkout", time_zone="UTC")
    foreign = ProductFactory(name="Foreign secret product", slug="foreign")
    conn = ToolConnectionFactory(name="Jira")
    for week, (features, defects) in DONE.items():
        for index, flow_type in enumerate(["feature"] * features + ["defect"] * defects):
            done = BASE_TIME + timedelta(days=7 * week + 1, hours=index)
            flow_item(
                product,
                (done - timedelta(days=2 + index), FlowState.ACTIVE),
                (done - timedelta(days=1), FlowState.WAITING),
                (done - timedelta(hours=12), FlowState.ACTIVE),
                (done, FlowState.DONE),
                flow_type=flow_type,
                connection=conn,
                key=f"CHK-{week}{index}",
                title=f"Checkout item {week}.{index}",
            )
    flow_item(product, (BASE_TIME, FlowState.ACTIVE), flow_type="feature", connection=conn, key="CHK-OPEN")
    flow_item(
        foreign, (BASE_TIME, FlowState.ACTIVE), (BASE_TIME + timedelta(days=1), FlowState.DONE), key="FRN-1"
    )
    ProductTargetFactory(product=product)
    for each in (product, foreign):
        product_rollups_rebuild(each, now=BASE_TIME + timedelta(days=40))
    owner = ProductRoleFactory(product=product, role=ProductRoleName.OWNER, user__username="po").user
    membership = PartnerMembershipFactory(user__username="partner")
    PartnerGrantFactory(partner=membership.partner, product=product)
    return {"product": product, "foreign": foreign, "owner": owner, "partner": membership.user}


def test_a_product_owner_reads_the_dashboard_and_drills_into_a_bar(live_server, chromium_page, world):
    page = chromium_page
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    log_in(page, live_server, "po")

    # The overview fills each product's row from its summary.
    page.goto(f"{live_server.url}/?{WINDOW}")
    row = page.locator("#overview tr.loaded[data-product=checkout]")
    row.wait_for()
    assert "Foreign secret product" not in page.content()
    assert row.locator("td").first.inner_text().startswith("16")
    screenshot(page, "overview")

    page.goto(f"{live_server.url}{reverse('portal:flow', args=['checkout'])}?{WINDOW}&bucket=week")
    page.wait_for_function(
        "() => window.Chart && Chart.getChart(document.getElementById('chart-efficiency'))"
    )
    velocity = chart_data(page, "velocity")
    assert velocity["type"] == "bar"
    assert velocity["labels"] == ["2026-01-05", "2026-01-12", "2026-01-19", "2026-01-26"]
    by_type = {dataset["label"]: dataset["data"] for dataset in velocity["datasets"]}
    assert by_type == {
        "feature": [DONE[week][0] for week in range(4)],
        "defect": [DONE[week][1] for week in range(4)],
    }
    distribution = chart_data(page, "distribution")
    assert distribution["labels"][:2] == ["feature", "defect"]
    assert distribution["datasets"][0]["data"][:2] == [62.5, 37.5]
    assert distribution["datasets"][1]["label"] == "Target %"
    flow_time = chart_data(page, "flow_time")
    assert sum(point["y"] for point in flow_time["datasets"][0]["data"]) == 16
    load = chart_data(page, "load")
    assert load["type"] == "line" and len(load["labels"]) == 28 and max(load["datasets"][0]["data"]) > 0
    efficiency = chart_data(page, "efficiency")
    assert efficiency["type"] == "line" and all(
        0 < value <= 100 for value in efficiency["datasets"][0]["data"]
    )
    # Every chart has its table.
    assert page.locator("#table-velocity tbody tr").count() == 4
    assert page.locator("#table-velocity caption").text_content().startswith("Flow Velocity")
    screenshot(page, "flow-dashboard")
    assert errors == []

    # Click the third week's feature bar: its four items are listed.
    point = page.evaluate(
        """() => {
            const canvas = document.getElementById("chart-velocity");
            canvas.scrollIntoView();
            const bar = Chart.getChart(canvas).getDatasetMeta(0).data[2];
            return {x: bar.x, y: (bar.y + bar.base) / 2};
        }"""
    )
    page.locator("#chart-velocity").click(position=point)
    page.wait_for_url("**/products/checkout/items/**")
    keys = page.locator("#items tbody th a").all_inner_texts()
    assert sorted(keys) == ["CHK-20", "CHK-21", "CHK-22", "CHK-23"]
    screenshot(page, "items")
    page.locator("#items tbody th a", has_text="CHK-20").click()
    page.wait_for_url("**/artifacts/**")
    assert "Checkout item 2.0" in page.locator("h1").inner_text()


def test_a_partner_cannot_reach_a_foreign_product(live_server, chromium_page, world):
    page = chromium_page
    log_in(page, live_server, "partner")
    assert "Foreign secret product" not in page.content()
    for name in ("flow", "items", "summary", "product"):
        response = page.goto(f"{live_server.url}{reverse(f'portal:{name}', args=['foreign'])}")
        assert response.status == 404
        assert "Foreign secret product" not in page.content()
    response = page.goto(f"{live_server.url}{reverse('portal:flow', args=['checkout'])}?{WINDOW}")
    assert response.status == 200
    page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('chart-velocity'))")
    # The partner's scope holds none of the product's items: its charts are empty, not the owner's.
    velocity = chart_data(page, "velocity")
    assert all(value == 0 for dataset in velocity["datasets"] for value in dataset["data"])
    screenshot(page, "partner-flow-dashboard")
