"""The integration landscape in Chromium: every connection drawn, toggles, details on click, scoping."""

import pytest
from django.core.cache import cache
from django.urls import reverse

from tests.browser.portal_pages import PHONE, fits_the_phone, log_in, screenshot, watch_errors
from tests.factories import StaffFactory
from tests.vsm.portal_worlds import FOREIGN_NAMES, build_portal_world

pytestmark = [pytest.mark.needs_browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def world():
    cache.clear()  # the link counts are cached under ids another test's rows may have had
    world = build_portal_world()
    StaffFactory(username="admin")
    return world


def test_the_landscape_shows_every_connection(live_server, chromium_page, world):
    page = chromium_page
    errors = watch_errors(page)
    log_in(page, live_server, "po")
    page.goto(f"{live_server.url}{reverse('portal:landscape')}")
    tools = page.locator("#landscape a.tool")
    assert tools.count() == len(world.connections)
    drawn = set(page.locator("#landscape a.tool text.tool-name").all_text_contents())
    assert drawn == {connection.name for connection in world.connections}
    assert page.locator("#landscape-tools tbody tr").count() == len(world.connections)
    assert page.locator("#landscape a.layer-integration").count() == 1
    assert page.locator("#landscape .health-error").count() >= 1  # Jenkins' last attempt failed

    # Toggles: the labels appear, the trace links go.
    labels = page.locator("#landscape text.label").first
    assert not labels.is_visible()
    page.check("#landscape-toggles input[data-layer=labels]")
    assert labels.is_visible()
    page.uncheck("#landscape-toggles input[data-layer=links]")
    assert not page.locator("#landscape a.layer-links").first.is_visible()
    page.check("#landscape-toggles input[data-layer=links]")
    screenshot(page, "landscape", readme=True)

    # A click on a tool opens its details.
    page.locator(f"#landscape a.tool[data-connection='{world.jenkins.pk}']").click()
    page.wait_for_url(f"**#connection-{world.jenkins.pk}")
    assert page.evaluate("() => document.activeElement.id") == f"connection-{world.jenkins.pk}"
    assert errors == []

    page.set_viewport_size(PHONE)
    page.reload()
    assert fits_the_phone(page)
    screenshot(page, "landscape-phone")


def test_an_admin_gets_links_into_django_admin(live_server, chromium_page, world):
    page = chromium_page
    log_in(page, live_server, "admin")
    page.goto(f"{live_server.url}{reverse('portal:landscape')}")
    assert page.locator("#landscape a.tool").count() == len(world.connections) + 1  # and the foreign one
    page.locator("#landscape a.layer-integration").focus()  # keyboard: the edge is a link
    page.keyboard.press("Enter")
    page.wait_for_url(f"**#integration-{world.integration.pk}")
    page.locator(f"#integration-{world.integration.pk} a", has_text="admin").click()
    page.wait_for_url("**/admin/connectors/integration/**")


def test_a_partner_sees_only_its_connections(live_server, chromium_page, world):
    page = chromium_page
    log_in(page, live_server, "acme")
    page.goto(f"{live_server.url}{reverse('portal:landscape')}")
    assert page.locator("#landscape a.tool text.tool-name").all_text_contents() == ["Acme GitHub"]
    html = page.content()
    for name in ("Delivery Jira", "Sales Salesforce", "Requests to Targetprocess", *FOREIGN_NAMES):
        assert name not in html
    screenshot(page, "partner-landscape")
