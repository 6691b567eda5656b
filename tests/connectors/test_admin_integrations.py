"""Integrations in Django admin: validation of both sides and field flows, pairs, actions."""

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from connectors.ingest import scope_sync
from connectors.models import ConflictPolicy, Integration, IntegrationPair, PairState
from connectors.sync import integration_run
from tests.connectors.conftest import Clock
from tests.connectors.integration_world import make_integration_world, served
from tests.factories import StaffFactory, TypeMappingFactory, artifact_model

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_tasks")]


@pytest.fixture
def staff_client(client):
    client.force_login(StaffFactory())
    return client


@pytest.fixture
def world():
    return make_integration_world(now=Clock(datetime.now(UTC)))


def form_data(integration: Integration, **changes) -> dict:
    data = {
        "name": integration.name,
        "enabled": "on",
        "artifact_model": integration.artifact_model_id,
        "source_scope": integration.source_scope_id,
        "source_type_mapping": integration.source_type_mapping_id,
        "target_scope": integration.target_scope_id,
        "target_type_mapping": integration.target_type_mapping_id,
        "default_container": "",
        "filter_reach": integration.filter_reach,
        "status_flow": integration.status_flow,
        "link_kind": integration.link_kind,
        "conflict_policy": integration.conflict_policy,
        "write_back_path": "",
        "max_attempts": 5,
    }
    for prefix in ("field_flows", "filters", "routes", "pairs", "runs"):
        data.update({f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0})
    data.update(changes)
    return data


def change_url(integration: Integration) -> str:
    return reverse("admin:connectors_integration_change", args=[integration.pk])


def test_sides_mapping_to_another_model_than_the_integrations_are_a_form_error(staff_client, world):
    integration = world.integrations["to_tp"]
    epic = TypeMappingFactory(
        connection=world.connections["targetprocess"], tool_type="Epic", artifact_model=artifact_model("epic")
    )
    response = staff_client.post(change_url(integration), form_data(integration, target_type_mapping=epic.pk))
    assert response.status_code == 200
    assert (
        "The target side maps Epic to Epic, but the integration carries Request" in response.content.decode()
    )


def test_a_type_mapping_of_another_connection_than_the_scopes_is_a_form_error(staff_client, world):
    integration = world.integrations["to_tp"]
    response = staff_client.post(
        change_url(integration),
        form_data(integration, source_type_mapping=integration.target_type_mapping_id),
    )
    assert "belongs to Targetprocess, but the source scope reads Salesforce" in response.content.decode()


def test_a_field_flow_naming_a_field_missing_on_a_side_is_a_form_error(staff_client, world):
    integration = world.integrations["to_tp"]
    data = form_data(
        integration,
        **{
            "field_flows-TOTAL_FORMS": 2,
            "field_flows-0-model_field": "deal_breaker",  # mapped in Salesforce, not in Targetprocess
            "field_flows-0-flow": "to_target",
            "field_flows-0-timing": "always",
            "field_flows-1-model_field": "colour",
            "field_flows-1-flow": "both",
            "field_flows-1-timing": "always",
        },
    )
    page = staff_client.post(change_url(integration), data).content.decode()
    assert "“deal_breaker” has no field mapping on the target side" in page
    assert "“colour” is not a field of Request" in page


def test_a_valid_integration_saves_with_its_field_flows_and_filters(staff_client, world):
    integration = world.integrations["to_tp"]
    integration.field_flows.all().delete()
    data = form_data(
        integration,
        conflict_policy=ConflictPolicy.LATEST_WINS,
        **{
            "field_flows-TOTAL_FORMS": 1,
            "field_flows-0-model_field": "release",
            "field_flows-0-flow": "to_source",
            "field_flows-0-timing": "always",
            "filters-TOTAL_FORMS": 1,
            "filters-0-model_field": "deal_breaker",
            "filters-0-operator": "is_true",
            "filters-0-value": "",
        },
    )
    response = staff_client.post(change_url(integration), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    integration.refresh_from_db()
    assert integration.conflict_policy == ConflictPolicy.LATEST_WINS
    assert integration.filters.get().operator == "is_true"


def test_the_integration_page_shows_pairs_runs_and_what_needs_a_person(staff_client, world):
    world.salesforce.add_request("Pay by invoice", status="New")
    world.clock.advance(minutes=2)
    scope_sync(world.scopes["salesforce"].pk, transport=world.transport)
    integration_run(world.integrations["to_tp"].pk, transport=world.transport)
    page = staff_client.get(change_url(world.integrations["to_tp"])).content.decode()
    assert "Pay by invoice" in page and "TP-" in page
    assert "1 in step" in page
    listing = staff_client.get(reverse("admin:connectors_integration_changelist")).content.decode()
    assert "Salesforce → Targetprocess" in listing


def test_run_now_and_a_conflict_resolved_in_admin_write_to_the_tools(
    staff_client, world, django_capture_on_commit_callbacks
):
    Integration.objects.filter(pk=world.integrations["to_jira"].pk).update(
        conflict_policy=ConflictPolicy.FLAG
    )
    world.salesforce.add_request("Pay by invoice", status="New")
    with served(world):
        changelist = reverse("admin:connectors_integration_changelist")
        world.clock.advance(minutes=2)
        scope_sync(world.scopes["salesforce"].pk)
        for name in ("to_tp", "to_jira"):
            with django_capture_on_commit_callbacks(execute=True):
                response = staff_client.post(
                    changelist, {"action": "run_now", "_selected_action": [world.integrations[name].pk]}
                )
            assert response.status_code == 302
        pair = IntegrationPair.objects.get(integration=world.integrations["to_jira"])
        tp_id = int(pair.source.external_id)
        world.targetprocess.edit(tp_id, {"Name": "From Targetprocess"})
        world.jira.edit(pair.target.key, {"summary": "From Jira"})
        world.clock.advance(minutes=2)
        for tool in ("targetprocess", "jira"):
            scope_sync(world.scopes[tool].pk)
        integration_run(world.integrations["to_jira"].pk)
        pair.refresh_from_db()
        assert pair.state == PairState.CONFLICT

        pairs = reverse("admin:connectors_integrationpair_changelist")
        assert "1 conflicts" in staff_client.get(changelist).content.decode()
        with django_capture_on_commit_callbacks(execute=True):
            response = staff_client.post(pairs, {"action": "take_source", "_selected_action": [pair.pk]})
        assert response.status_code == 302
    pair.refresh_from_db()
    assert (pair.state, pair.conflicts) == (PairState.OK, {})
    assert world.jira.issues[pair.target.key].fields["summary"] == "From Targetprocess"


@pytest.mark.parametrize(
    ("action", "state"), [("recreate_target", PairState.CREATING), ("unlink", "unlinked")]
)
def test_a_pair_whose_target_was_deleted_is_made_again_or_unlinked_in_admin(
    staff_client, world, action, state
):
    world.salesforce.add_request("Pay by invoice", status="New")
    world.clock.advance(minutes=2)
    scope_sync(world.scopes["salesforce"].pk, **world.kwargs())
    integration_run(world.integrations["to_tp"].pk, **world.kwargs())
    pair = IntegrationPair.objects.get()
    IntegrationPair.objects.filter(pk=pair.pk).update(state=PairState.TARGET_GONE)
    other = IntegrationPair.objects.create(
        integration=pair.integration, source=pair.target, state=PairState.OK
    )
    pairs = reverse("admin:connectors_integrationpair_changelist")
    response = staff_client.post(
        pairs, {"action": action, "_selected_action": [pair.pk, other.pk]}, follow=True
    )
    assert "1 pairs" in response.content.decode()
    pair.refresh_from_db()
    other.refresh_from_db()
    assert (pair.state, other.state) == (state, PairState.OK)  # only pairs that lost their target
