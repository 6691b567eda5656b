"""The customer requests page in Chromium: filters, delivery status, and what a partner may see."""

import pytest
from django.urls import reverse

from tests.browser.portal_pages import PHONE, fits_the_phone, log_in, screenshot, watch_errors
from tests.vsm.portal_worlds import ACCOUNT, FOREIGN_NAMES, build_portal_world

pytestmark = [pytest.mark.needs_browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def world():
    return build_portal_world(requests=5)


def statuses(page) -> dict[str, str]:
    rows = page.locator("#requests tbody tr[data-status]")
    return {
        rows.nth(index).locator("th a").inner_text(): rows.nth(index).get_attribute("data-status")
        for index in range(rows.count())
    }


def test_a_field_team_filters_the_requests(live_server, chromium_page, world):
    page = chromium_page
    errors = watch_errors(page)
    log_in(page, live_server, "po")
    page.goto(f"{live_server.url}{reverse('portal:requests')}")
    assert statuses(page) == {
        "REQ-1": "delivered",
        "REQ-2": "in_progress",
        "REQ-3": "not_started",
        "REQ-4": "not_started",
        "REQ-5": "not_started",
    }
    assert ACCOUNT in page.locator("#requests").inner_text()
    screenshot(page, "requests")

    page.select_option("#id_status", "delivered")
    page.click("#request-filters button[type=submit]")
    page.wait_for_url("**status=delivered**")
    assert statuses(page) == {"REQ-1": "delivered"}
    assert "deploy-7" in page.locator("#requests tbody").inner_text()

    page.select_option("#id_status", "")
    page.fill("#id_account", "initech")
    page.click("#request-filters button[type=submit]")
    page.wait_for_url("**account=initech**")
    assert set(statuses(page)) == {"REQ-2", "REQ-3"}
    screenshot(page, "requests-filtered")
    assert errors == []

    page.set_viewport_size(PHONE)
    page.reload()
    assert fits_the_phone(page)
    screenshot(page, "requests-phone")


def test_a_partner_sees_no_account_revenue_or_foreign_request(live_server, chromium_page, world):
    page = chromium_page
    log_in(page, live_server, "acme")
    page.goto(f"{live_server.url}{reverse('portal:requests')}")
    assert statuses(page) == {"REQ-2": "in_progress"}
    html = page.content()
    for secret in ("Initech", "5000", ACCOUNT, "Deal-breaker", "REQ-1", *FOREIGN_NAMES):
        assert secret not in html
    response = page.goto(f"{live_server.url}{reverse('portal:requests')}?product=foreign")
    assert response.status == 200
    assert "Foreign secret product" not in page.content()
    assert "No product" in page.locator(".message.error").inner_text()
    screenshot(page, "partner-requests")
