import pytest
from django.urls import reverse

from connectors.links import PATTERN_PRESETS
from connectors.models import LinkRule
from tests.connectors.test_links import SHA, Toolchain, item
from tests.factories import StaffFactory, ToolConnectionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(StaffFactory())
    return client


def rule_data(**overrides):
    source, target = ToolConnectionFactory(kind="github"), ToolConnectionFactory()
    data = {
        "connection": source.pk,
        "name": "keys in messages",
        "item_types": "Commit",
        "source_path": "commit.message",
        "preset": "",
        "pattern": r"(?P<key>[A-Z]+-\d+)",
        "key_template": "{key}",
        "target_connection": target.pk,
        "kind": "committed_in",
        "reverse": "on",
        "enabled": "on",
    }
    return {**data, **overrides}


def test_a_rule_is_saved_and_a_preset_fills_the_pattern(staff_client):
    url = reverse("admin:connectors_linkrule_add")
    preset = "GitHub closing keywords (fixes #12)"
    response = staff_client.post(url, rule_data(preset=preset, pattern="", key_template=""))
    assert response.status_code == 302, response.content.decode()[-2000:]
    rule = LinkRule.objects.get()
    assert (rule.pattern, rule.key_template) == PATTERN_PRESETS[preset]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"pattern": "(unclosed"}, "not a regular expression"),
        ({"key_template": "{project}-{key}"}, "The template names project"),
    ],
)
def test_a_bad_pattern_or_template_is_a_form_error(staff_client, overrides, message):
    response = staff_client.post(reverse("admin:connectors_linkrule_add"), rule_data(**overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not LinkRule.objects.exists()


def test_the_preview_page_lists_found_keys(staff_client):
    toolchain = Toolchain()
    toolchain.sync("jira")
    toolchain.sync("github", [item(SHA, "Commit", {"commit": {"message": "CHK-102 done"}})])
    rule = LinkRule.objects.get(connection=toolchain.connections["github"])
    response = staff_client.get(reverse("admin:connectors_linkrule_preview", args=[rule.pk]))
    assert response.status_code == 200
    assert "CHK-102 (stored)" in response.content.decode()
    assert staff_client.get(reverse("admin:connectors_linkrule_changelist")).status_code == 200
