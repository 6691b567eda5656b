"""Customer requests for field teams: status, value, forecast, filters, CSV; partners never see internals."""

import csv
import io
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from metrics.services import product_rollups_rebuild
from tests.clients import portal_client_for as client_for
from tests.factories import (
    ArtifactLinkFactory,
    ProductFactory,
    StaffFactory,
    UserFactory,
    artifact_model,
    flow_item,
)
from tests.vsm.portal_worlds import (
    ACCOUNT,
    FOREIGN_NAMES,
    REVENUE,
    add_declined_request,
    add_synced_copy,
    build_portal_world,
    day,
)

pytestmark = pytest.mark.django_db

URL = reverse("portal:requests")
CSV_URL = reverse("portal:requests-csv")


@pytest.fixture
def world():
    return build_portal_world(requests=6)


def rows_of(html: str) -> dict[str, str]:
    """Request key -> its row's HTML, from its status on."""
    table = html.split('id="requests"', 1)[1].split("</table>", 1)[0]
    pattern = r'<tr data-status=("\w+">\s*<th scope="row"><a href="[^"]+">([^<]+)</a>.*?)</tr>'
    return {key: row for row, key in re.findall(pattern, table, re.S)}


def test_every_request_with_its_delivery_status(world):
    html = client_for(world.owner).get(URL).content.decode()
    rows = rows_of(html)
    assert set(rows) == {f"REQ-{number}" for number in range(1, 7)}
    assert rows["REQ-1"].startswith('"delivered"') and "deploy-7" in rows["REQ-1"]
    assert "2026-01-26" in rows["REQ-1"] and ACCOUNT in rows["REQ-1"] and "125,000" in rows["REQ-1"]
    assert "Deal-breaker" in rows["REQ-1"] and "FEAT-1" in rows["REQ-1"]
    assert rows["REQ-2"].startswith('"in_progress"') and "create (0/1 done)" in rows["REQ-2"]
    assert rows["REQ-3"].startswith('"not_started"')
    for name in FOREIGN_NAMES:
        assert name not in html


def test_an_in_progress_request_gets_a_forecast(world):
    """REQ-2 has one work item left; the product finished ten items in the last weeks."""
    now = timezone.now()
    for number in range(10):
        done = now - timedelta(days=2 + 3 * number)
        flow_item(
            world.product,
            (done - timedelta(days=1), "active"),
            (done, "done"),
            created_at=done - timedelta(days=2),
            key=f"DONE-{number}",
        )
    product_rollups_rebuild(world.product, now=now)
    rows = rows_of(client_for(world.owner).get(URL).content.decode())
    forecast = re.search(r"by (\d{4}-\d{2}-\d{2}) \(1 left\)", rows["REQ-2"])
    assert forecast and forecast.group(1) >= timezone.localdate().isoformat()
    assert "(0 left)" not in rows["REQ-1"] and "left)" not in rows["REQ-3"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "delivered"}, {"REQ-1"}),
        ({"status": "in_progress"}, {"REQ-2"}),
        ({"status": "not_started"}, {"REQ-3", "REQ-4", "REQ-5", "REQ-6"}),
        ({"deal_breaker": "yes"}, {"REQ-1", "REQ-4", "REQ-6"}),
        ({"deal_breaker": "no"}, {"REQ-2", "REQ-3", "REQ-5"}),
        ({"account": "initech"}, {"REQ-2", "REQ-3"}),
        ({"product": "checkout", "account": "globex"}, {"REQ-1"}),
    ],
)
def test_filters(world, params, expected):
    html = client_for(world.owner).get(URL, params).content.decode()
    assert set(rows_of(html)) == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"product": "foreign"}, "No product &#x27;foreign&#x27;"),
        ({"product": "no such!"}, "Product:"),
        ({"status": "lost"}, "Status:"),
        ({"deal_breaker": "maybe"}, "Deal-breaker:"),
        ({"page": "9999"}, ""),
    ],
)
def test_bad_filters_give_a_message_not_an_error(world, params, message):
    response = client_for(world.owner).get(URL, params)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert "Foreign secret product" not in response.content.decode()


def test_the_csv_export(world):
    response = client_for(world.owner).get(CSV_URL, {"status": "delivered"})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["key"] for row in rows] == ["REQ-1"]
    assert rows[0]["account"] == ACCOUNT and rows[0]["value"] == REVENUE and rows[0]["deal_breaker"] == "yes"
    assert rows[0]["delivered_by"] == "deploy-7" and rows[0]["features"] == "FEAT-1"


def test_a_partner_never_sees_account_revenue_or_deal_breaker(world):
    client = client_for(world.partner_user)
    html = client.get(URL).content.decode()
    assert set(rows_of(html)) == {"REQ-2"}  # linked to the feature of its team
    for secret in ("Initech", "5000", "5,000", "Deal-breaker", ACCOUNT, "Account", "REQ-1", *FOREIGN_NAMES):
        assert secret not in html
    exported = client.get(CSV_URL).content.decode()
    assert "Initech" not in exported and "5000" not in exported and "account" not in exported
    assert "REQ-2" in exported
    # Filtering by an internal field would tell it apart: refused, with a message.
    html = client.get(URL, {"account": "Initech"}).content.decode()
    assert "not available to you" in html and "Initech" not in html.split("</form>", 1)[1]


def test_the_requests_page_reads_a_bounded_number_of_queries(world, django_assert_max_num_queries):
    for number in range(60):
        request = flow_item(
            world.product,
            created_at=day(50),
            flow_type=None,
            artifact_model=artifact_model("request"),
            connection=world.salesforce,
            key=f"BULK-{number}",
            fields={"customer_account": "Bulk"},
        )
        feature = flow_item(
            world.product,
            (day(51), "active"),
            created_at=day(50),
            artifact_model=artifact_model("feature"),
            connection=world.targetprocess,
        )
        ArtifactLinkFactory(source=feature, target=request, kind="derived_from")
    for user in (world.owner, world.partner_user, StaffFactory()):
        client = client_for(user)
        client.get(URL)
        with django_assert_max_num_queries(20):
            assert client.get(URL).status_code == 200
        with django_assert_max_num_queries(20):
            assert client.get(URL, {"status": "in_progress", "deal_breaker": "no"}).status_code == 200


def test_a_user_without_products_sees_no_request(world):
    html = client_for(UserFactory()).get(URL).content.decode()
    assert rows_of(html) == {} and "No requests match." in html


def test_a_product_has_its_own_requests_page(world):
    url = reverse("portal:product-requests", args=["checkout"])
    html = client_for(world.owner).get(url).content.decode()
    assert "Customer requests: Checkout" in html and "REQ-1" in html
    assert f"{CSV_URL}?product=checkout" in html
    for user in (world.owner, world.partner_user):
        assert client_for(user).get(reverse("portal:product-requests", args=["foreign"])).status_code == 404
    assert client_for(world.owner).get(reverse("portal:product-requests", args=["nope"])).status_code == 404


def test_requests_across_many_products_read_a_bounded_number_of_queries(world, django_assert_max_num_queries):
    for number in range(25):
        product = ProductFactory()
        request = flow_item(
            product,
            created_at=day(50),
            flow_type=None,
            artifact_model=artifact_model("request"),
            connection=world.salesforce,
            key=f"MANY-{number}",
        )
        feature = flow_item(
            product,
            (day(51), "active"),
            created_at=day(50),
            artifact_model=artifact_model("feature"),
            connection=world.targetprocess,
        )
        ArtifactLinkFactory(source=feature, target=request, kind="derived_from")
    client = client_for(StaffFactory())
    client.get(URL)
    with django_assert_max_num_queries(20):
        html = client.get(URL).content.decode()
    assert (
        len([status for status in re.findall(r'data-status="(\w+)"', html) if status == "in_progress"]) == 26
    )


def test_a_deep_chain_below_a_request_stays_within_the_query_bound(world, django_assert_max_num_queries):
    parent = world.new_request
    for number in range(12):
        task = flow_item(
            world.product,
            (day(31), "active"),
            created_at=day(31),
            artifact_model=artifact_model("task"),
            connection=world.jira,
            key=f"DEEP-{number}",
        )
        ArtifactLinkFactory(source=task, target=parent, kind="derived_from" if number == 0 else "child_of")
        parent = task
    client = client_for(world.owner)
    client.get(URL)
    with django_assert_max_num_queries(20):
        rows = rows_of(client.get(URL).content.decode())
    assert rows["REQ-3"].startswith('"in_progress"')


def test_a_synced_copy_is_the_same_request_and_a_declined_one_says_when_it_closed(world):
    add_synced_copy(world)
    add_declined_request(world, created=31, declined=33)
    rows = rows_of(client_for(world.owner).get(URL).content.decode())
    assert "TP-REQ-1" not in rows and rows["REQ-1"].startswith('"delivered"')
    declined = rows["REQ-DECLINED"]
    assert declined.startswith('"canceled"') and "2026-02-07 as “Declined”" in declined
    exported = list(csv.DictReader(io.StringIO(client_for(world.owner).get(CSV_URL).content.decode())))
    assert [row["key"] for row in exported].count("REQ-1") == 1 and "TP-REQ-1" not in {
        r["key"] for r in exported
    }
    closed = next(row for row in exported if row["key"] == "REQ-DECLINED")
    assert (closed["status"], closed["closed_as"]) == ("canceled", "Declined")
    assert closed["closed_at"].startswith("2026-02-07")
