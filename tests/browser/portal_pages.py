"""What the browser tests of the trace, requests and landscape pages share: logging in, screenshots."""

import os
from pathlib import Path

from django.conf import settings
from django.urls import reverse

PASSWORD = "pass-word-123"  # tests.factories.UserFactory
SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"
README_SCREENSHOTS = Path(settings.BASE_DIR) / "docs" / "screenshots"
PHONE = {"width": 390, "height": 844}


def log_in(page, live_server, username):
    login = f"{live_server.url}{reverse('login')}"
    page.goto(login)
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: not url.startswith(login))


def screenshot(page, name, *, readme=False):
    """Into var/screenshots/; with `readme`, also into docs/screenshots/ when VSM_README_SCREENSHOTS is
    set (the README's pictures are refreshed on purpose, not by every test run)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    if readme and os.environ.get("VSM_README_SCREENSHOTS"):
        README_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(README_SCREENSHOTS / f"{name}.png"), full_page=False)


def watch_errors(page) -> list[str]:
    """Console errors and page errors (a CSP violation shows as one) collected while the test runs."""
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def fits_the_phone(page) -> bool:
    """Nothing but the scrolling frames is wider than the screen."""
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")


def wait_for_chart(page, name):
    page.wait_for_function(
        "name => window.Chart && Chart.getChart(document.getElementById('chart-' + name))", arg=name
    )


def chart_data(page, name):
    """What the Chart.js instance of the chart `name` draws: its type, labels and datasets."""
    wait_for_chart(page, name)
    return page.evaluate(
        """name => {
            const chart = Chart.getChart(document.getElementById("chart-" + name));
            return {type: chart.config.type, labels: chart.data.labels,
                    datasets: chart.data.datasets.map(d => ({label: d.label, data: d.data}))};
        }""",
        name,
    )
