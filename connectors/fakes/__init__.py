"""Faithful local fakes of the tools' REST APIs, for tests and the demo (plain Python, no Django).

`FAKE_TOOLS` maps the path prefix `run_fake_tools` serves each fake under to the fake's class; a new
tool's fake joins by adding one entry.
"""

from collections.abc import Callable

from connectors.fakes.github import FakeGitHub
from connectors.fakes.gitlab import FakeGitLab
from connectors.fakes.jenkins import FakeJenkins
from connectors.fakes.jira import FakeJira
from connectors.fakes.salesforce import FakeSalesforce
from connectors.fakes.targetprocess import FakeTargetprocess
from connectors.fakes.wsgi import FakeApp
from connectors.fakes.zendesk import FakeZendesk

FAKE_TOOLS: dict[str, Callable[[], FakeApp]] = {
    "/jira": FakeJira,
    "/github": FakeGitHub,
    "/jenkins": FakeJenkins,
    "/zendesk": FakeZendesk,
    "/gitlab": FakeGitLab,
    "/salesforce": FakeSalesforce,
    "/targetprocess": FakeTargetprocess,
}
