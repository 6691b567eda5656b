"""Playwright against Debian's Chromium (/usr/bin/chromium; browser downloads do not work here).

The fixtures are not named `browser` and `page`: pytest-playwright parametrizes any test using those
names with a session-scoped `browser_name`, and pytest's reordering by that parameter then runs these
transactional tests before the other database tests, whose migration data the flush would wipe.
"""

import pytest
from django.conf import settings
from django.core.servers.basehttp import WSGIServer
from django.test.testcases import LiveServerThread

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


class _OneRequestAtATimeServer(WSGIServer):
    """The live server on SQLite. Its test database lives in memory, so the server's threads all share the
    test's one connection, and two requests at once on it can hang both (seen: two dashboard queries
    waiting on each other for good). One request at a time; pages still load whole."""

    def __init__(self, *args, connections_override=None, **kwargs):
        super().__init__(*args, **kwargs)


@pytest.fixture(scope="session", autouse=True)
def _live_server_fit_for_the_database():
    if not settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        yield  # PostgreSQL: each request thread opens its own connection
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LiveServerThread, "server_class", _OneRequestAtATimeServer)
        yield


@pytest.fixture
def chromium_browser(_require_services, django_db_setup, monkeypatch):
    """Chromium for one test; `_require_services` first, so a missing Chromium skips (or fails in CI).

    Playwright starts here, per test and after the test database exists: a session-wide Playwright
    started before the database would leave the test thread a different connection object, without
    the serialized data that `serialized_rollback` restores.
    """
    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM

    # Playwright's sync API runs an event loop in this thread; the tests' ORM calls stay synchronous.
    # Set for this test only: it must not reach `check --deploy` in tests/test_settings.py.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def chromium_page(chromium_browser):
    context = chromium_browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)  # generous: the suite runs beside other work on two cores
    yield page
    context.close()
