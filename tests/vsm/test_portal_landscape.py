"""The integration landscape: every visible tool around the store, edges by health, scoped, bounded."""

import re

import pytest
from django.core.cache import cache
from django.urls import reverse

from connectors.models import Integration
from tests.clients import portal_client_for as client_for
from tests.factories import (
    ArtifactLinkFactory,
    ProductFactory,
    ScopeFactory,
    StaffFactory,
    SyncErrorFactory,
    SyncRunFactory,
    UserFactory,
)
from tests.vsm.portal_worlds import FOREIGN_NAMES, build_portal_world, day
from vsm.choices import LinkKind
from vsm.portal.landscape import connection_health, ring_positions

pytestmark = pytest.mark.django_db

URL = reverse("portal:landscape")


@pytest.fixture(autouse=True)
def _fresh_link_counts():
    """The link counts are cached under ids, which another test's rolled-back rows may have had."""
    cache.clear()


@pytest.fixture
def world():
    return build_portal_world()


def tools_in_picture(html: str) -> list[str]:
    return re.findall(r'<a href="#connection-\d+" class="tool health-[a-z]+" data-connection="(\d+)"', html)


def test_staff_see_every_connection_with_admin_links(world):
    html = client_for(StaffFactory()).get(URL).content.decode()
    assert len(tools_in_picture(html)) == 7  # the six of Checkout and the foreign one
    assert reverse("admin:connectors_toolconnection_change", args=[world.jira.pk]) in html
    # Seven tools, each mapped: 7 tool-to-model mappings instead of 21 point-to-point ones.
    assert "instead of 21 point-to-point mappings" in html
    assert 'id="integration-' in html and "Requests to Targetprocess" in html
    assert "Jira keys in commits" in html


def test_a_product_owner_sees_the_tools_of_its_product_and_their_health(world):
    SyncRunFactory(scope=world.jira.scopes.first(), outcome="success")
    html = client_for(world.owner).get(URL).content.decode()
    assert sorted(map(int, tools_in_picture(html))) == sorted(c.pk for c in world.connections)
    assert f'href="#connection-{world.jenkins.pk}" class="tool health-error"' in html
    assert f'href="#connection-{world.jira.pk}" class="tool health-ok"' in html
    assert "/admin/" not in html
    # Trace links between tools are counted: three stories committed in three commits.
    assert re.search(r"<td>Delivery Jira</td><td>Acme GitHub</td><td class=\"num\">3</td>", html)
    for name in FOREIGN_NAMES:
        assert name not in html


def test_a_product_owner_sees_nothing_of_another_products_use_of_the_same_tools(world):
    """Another product fed by the same Salesforce and Targetprocess: its integration, its failed syncs and
    its open errors stay out of the Checkout owner's landscape (the staff's shows them)."""
    insights = ProductFactory(name="Insights", slug="insights")
    request_scope = ScopeFactory(connection=world.salesforce, product=insights, name="Insights requests")
    feature_scope = ScopeFactory(connection=world.targetprocess, product=insights, name="Insights features")
    Integration.objects.create(
        name="Insights: customer requests to Targetprocess",
        artifact_model=world.integration.artifact_model,
        source_scope=request_scope,
        source_type_mapping=world.integration.source_type_mapping,
        target_scope=feature_scope,
        target_type_mapping=world.integration.target_type_mapping,
        last_run_at=world.integration.last_run_at,
    )
    SyncRunFactory(scope=world.salesforce.scopes.get(product=world.product), outcome="success")
    SyncRunFactory(scope=request_scope, outcome="failed", started_at=day(60))
    SyncErrorFactory.create_batch(3, scope=feature_scope, connection=world.targetprocess)

    owner = client_for(world.owner).get(URL).content.decode()
    assert "Insights" not in owner
    assert f'href="#connection-{world.salesforce.pk}" class="tool health-ok"' in owner
    assert f'href="#connection-{world.targetprocess.pk}" class="tool health-unknown"' in owner
    assert re.search(rf'<tr id="connection-{world.targetprocess.pk}".*?<td class="num">0</td>', owner, re.S)
    staff = client_for(StaffFactory()).get(URL).content.decode()
    assert "Insights: customer requests to Targetprocess" in staff
    assert f'href="#connection-{world.salesforce.pk}" class="tool health-error"' in staff
    assert re.search(rf'<tr id="connection-{world.targetprocess.pk}".*?<td class="num">3</td>', staff, re.S)


def test_a_new_link_counts_at_once(world):
    client = client_for(world.owner)
    row = r"<td>Delivery Jira</td><td>Acme GitHub</td><td class=\"num\">(\d+)</td>"
    assert re.search(row, client.get(URL).content.decode()).group(1) == "3"
    ArtifactLinkFactory(source=world.open_story, target=world.commits[0], kind=LinkKind.COMMITTED_IN)
    ArtifactLinkFactory(source=world.epic, target=world.commits[1], kind=LinkKind.COMMITTED_IN)
    assert re.search(row, client.get(URL).content.decode()).group(1) == "4"


def test_a_partner_sees_only_its_own_connections(world):
    html = client_for(world.partner_user).get(URL).content.decode()
    assert tools_in_picture(html) == [str(world.github.pk)]
    for name in (
        "Delivery Jira",
        "Sales Salesforce",
        "Build Jenkins",
        "Requests to Targetprocess",
        *FOREIGN_NAMES,
    ):
        assert name not in html


def test_the_landscape_reads_a_bounded_number_of_queries(world, django_assert_max_num_queries):
    for user in (StaffFactory(), world.owner, world.partner_user):
        client = client_for(user)
        client.get(URL)
        with django_assert_max_num_queries(20):
            assert client.get(URL).status_code == 200


def test_connection_health():
    class Connection:
        healthy, last_sync_outcome, open_errors, last_sync_at = True, "success", 0, object()

    connection = Connection()
    assert connection_health(connection) == "ok"
    connection.open_errors = 2
    assert connection_health(connection) == "warning"
    connection.last_sync_outcome = "failed"
    assert connection_health(connection) == "error"


def test_ring_positions_start_at_the_top_and_go_clockwise():
    top, right, bottom, left = ring_positions(4, (100, 100), (50, 40))
    assert (
        top == (100.0, 60.0)
        and right == (150.0, 100.0)
        and bottom == (100.0, 140.0)
        and left == (50.0, 100.0)
    )


def test_a_user_without_products_sees_an_empty_landscape(world):
    html = client_for(UserFactory()).get(URL).content.decode()
    assert tools_in_picture(html) == []
    assert "No tool connections you can see." in html
