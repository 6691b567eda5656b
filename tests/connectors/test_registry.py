"""The connector registry and the rule that providers depend only on the connector contract."""

import ast
from pathlib import Path

import pytest
from django.conf import settings

from connectors.base import Connector, RegistryError, connector_for, register_connector, registered_connectors

PROVIDERS = Path(settings.BASE_DIR) / "connectors" / "providers"
ALLOWED = {"connectors.base", "connectors.client", "connectors.exceptions"}


def test_every_tool_is_registered_once_under_its_slug():
    slugs = set(registered_connectors())
    assert {"jira", "github", "gitlab", "jenkins", "salesforce", "targetprocess", "zendesk", "csv"} <= slugs
    assert connector_for("jira").slug == "jira"


def test_a_second_connector_with_a_taken_slug_is_rejected():
    class Impostor(Connector):
        slug = "jira"
        name = "Not Jira"

    with pytest.raises(RegistryError, match="already registered"):
        register_connector(Impostor)
    assert connector_for("jira").__name__ == "JiraConnector"


def test_an_unknown_slug_names_the_known_ones():
    with pytest.raises(RegistryError, match="no connector is registered for 'fogbugz'; known: csv, github"):
        connector_for("fogbugz")


@pytest.mark.parametrize(
    "path", sorted(PROVIDERS.rglob("*.py")), ids=lambda path: str(path.relative_to(PROVIDERS))
)
def test_providers_import_only_the_connector_contract(path):
    package = "connectors.providers." + path.relative_to(PROVIDERS).parts[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in {"connectors", "vsm", "metrics", "django", "rest_framework"}:
                assert name in ALLOWED or name.startswith(package) or name == "connectors.providers", (
                    f"{path.name} imports {name}"
                )
