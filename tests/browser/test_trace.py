"""The trace page in Chromium: the full chain drawn and listed, the lead time, keyboard, phone, scoping."""

import pytest
from django.urls import reverse

from tests.browser.portal_pages import PHONE, fits_the_phone, log_in, screenshot, watch_errors
from tests.vsm.portal_worlds import FOREIGN_NAMES, build_portal_world

pytestmark = [pytest.mark.needs_browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def world():
    return build_portal_world()


def test_a_product_owner_follows_a_story_through_its_whole_chain(live_server, chromium_page, world):
    page = chromium_page
    errors = watch_errors(page)
    log_in(page, live_server, "po")
    page.goto(f"{live_server.url}{reverse('portal:trace-search')}")
    page.fill("#trace-q", "SHOP-2")
    page.click("form[role=search] button[type=submit]")
    page.wait_for_url("**/trace/?q=SHOP-2**")
    screenshot(page, "trace-search")
    page.locator("#trace-results a", has_text="SHOP-2").click()
    page.wait_for_url(f"**{reverse('portal:trace', args=[world.stories[1].pk])}")

    # Request, feature, epic, three stories, three commits, build, deployment, release; one pending.
    nodes = page.locator("#trace-graph g.node")
    assert nodes.count() == 13
    assert page.locator("#trace-graph g.node.pending").count() == 1
    assert page.locator("#chain-table tbody tr").count() == 13
    keys = page.locator("#trace-graph g.node text.key").all_text_contents()
    for key in (
        "REQ-1",
        "FEAT-1",
        "EPIC-1",
        "SHOP-1",
        "SHOP-3",
        "build-42",
        "deploy-7",
        "v1.4.0",
        "SHOP-404",
    ):
        assert key in keys
    assert page.locator("#trace-graph path.edge").count() >= 12
    assert "lead time 21.0 days" in page.locator(".timeline p").first.inner_text()
    assert page.locator(".timeline-bar rect").count() == 3
    # The graph's boxes are links into the tools, reachable with the keyboard.
    href = page.locator("#trace-graph g.node.start a").get_attribute("href")
    assert href == world.stories[1].url
    page.locator("#trace-graph g.node.start a").focus()
    assert page.evaluate("() => document.activeElement.closest('g.node').dataset.id") == str(
        world.stories[1].pk
    )
    screenshot(page, "trace", readme=True)
    assert errors == []

    page.set_viewport_size(PHONE)
    page.reload()
    assert fits_the_phone(page)
    screenshot(page, "trace-phone")


def test_a_partner_cannot_reach_a_foreign_item(live_server, chromium_page, world):
    page = chromium_page
    log_in(page, live_server, "acme")
    for artifact in (world.foreign_request, world.request, world.epic):
        response = page.goto(f"{live_server.url}{reverse('portal:trace', args=[artifact.pk])}")
        assert response.status == 404
    response = page.goto(f"{live_server.url}{reverse('portal:trace', args=[world.commits[0].pk])}")
    assert response.status == 200
    html = page.content()
    for name in ("REQ-1", "EPIC-1", "Delivery Jira", *FOREIGN_NAMES):
        assert name not in html
    assert page.locator("#trace-graph g.node").count() >= 3
    screenshot(page, "partner-trace")
