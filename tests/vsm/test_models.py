"""The database refuses what the core model forbids, even when form validation is bypassed."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from tests.factories import (
    BASE_TIME,
    ArtifactFactory,
    ArtifactLinkFactory,
    ProductFactory,
    ProductRoleFactory,
    StateTransitionFactory,
    TeamFactory,
    ToolConnectionFactory,
)
from vsm.choices import FlowState, LinkKind
from vsm.models import Artifact, ArtifactLink, ProductRole, StateTransition

pytestmark = pytest.mark.django_db


def test_an_artifact_is_unique_per_connection_and_external_id():
    first = ArtifactFactory(external_id="PROJ-1")
    with pytest.raises(IntegrityError), transaction.atomic():
        ArtifactFactory(connection=first.connection, product=first.product, external_id="PROJ-1")
    assert Artifact.objects.filter(external_id="PROJ-1").count() == 1


def test_the_same_external_id_in_another_connection_is_another_artifact():
    first = ArtifactFactory(external_id="PROJ-1")
    second = ArtifactFactory(external_id="PROJ-1", product=first.product, connection=ToolConnectionFactory())
    assert first.pk != second.pk


def test_a_link_from_an_artifact_to_itself_is_refused():
    artifact = ArtifactFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        ArtifactLink.objects.create(source=artifact, target=artifact, kind=LinkKind.RELATES_TO)
    assert not ArtifactLink.objects.exists()


def test_a_duplicate_link_of_the_same_kind_is_refused_another_kind_is_not():
    link = ArtifactLinkFactory(kind=LinkKind.IMPLEMENTS)
    with pytest.raises(IntegrityError), transaction.atomic():
        ArtifactLink.objects.create(source=link.source, target=link.target, kind=LinkKind.IMPLEMENTS)
    ArtifactLink.objects.create(source=link.source, target=link.target, kind=LinkKind.RELATES_TO)
    # The reverse direction is another link.
    ArtifactLink.objects.create(source=link.target, target=link.source, kind=LinkKind.IMPLEMENTS)
    assert ArtifactLink.objects.count() == 3


def test_a_bad_flow_state_written_with_update_is_refused():
    artifact = ArtifactFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Artifact.objects.filter(pk=artifact.pk).update(flow_state="sideways")
    artifact.refresh_from_db()
    assert artifact.flow_state == FlowState.NEW


def test_a_bad_flow_state_written_with_bulk_create_is_refused():
    template = ArtifactFactory()
    bad = Artifact(
        product=template.product,
        artifact_model=template.artifact_model,
        connection=template.connection,
        external_id="bulk-1",
        key="BULK-1",
        flow_state="sideways",
        created_at=BASE_TIME,
        updated_at=BASE_TIME,
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Artifact.objects.bulk_create([bad])
    assert not Artifact.objects.filter(external_id="bulk-1").exists()


@pytest.mark.parametrize("field", ["to_state", "from_state"])
def test_a_bad_transition_state_written_with_update_is_refused(field):
    transition = StateTransitionFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        StateTransition.objects.filter(pk=transition.pk).update(**{field: "sideways"})


@pytest.mark.parametrize("field", ["to_state", "from_state"])
def test_a_bad_transition_state_written_with_bulk_create_is_refused(field):
    artifact = ArtifactFactory()
    values = {"from_state": FlowState.NEW, "to_state": FlowState.ACTIVE, field: "sideways"}
    with pytest.raises(IntegrityError), transaction.atomic():
        StateTransition.objects.bulk_create(
            [StateTransition(artifact=artifact, at=BASE_TIME, to_status="Doing", **values)]
        )
    assert not StateTransition.objects.exists()


def test_a_first_transition_may_have_no_from_state():
    transition = StateTransitionFactory(from_status="", from_state="")
    transition.full_clean()
    assert StateTransition.objects.get(pk=transition.pk).from_state == ""


def test_a_bad_link_kind_is_refused():
    link = ArtifactLinkFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        ArtifactLink.objects.filter(pk=link.pk).update(kind="nonsense")
    with pytest.raises(IntegrityError), transaction.atomic():
        ArtifactLink.objects.bulk_create(
            [ArtifactLink(source=link.target, target=link.source, kind="nonsense")]
        )
    link.refresh_from_db()
    assert link.kind == LinkKind.CHILD_OF


def test_a_bad_link_origin_is_refused():
    link = ArtifactLinkFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        ArtifactLink.objects.filter(pk=link.pk).update(origin="guess")


def test_a_bad_product_role_is_refused():
    role = ProductRoleFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        ProductRole.objects.filter(pk=role.pk).update(role="emperor")


def test_a_team_name_is_unique_within_a_product_only():
    team = TeamFactory(name="Platform")
    with pytest.raises(IntegrityError), transaction.atomic():
        TeamFactory(product=team.product, name="Platform")
    TeamFactory(product=ProductFactory(), name="Platform")


def test_a_transition_is_recorded_once_per_change():
    transition = StateTransitionFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        StateTransitionFactory(
            artifact=transition.artifact,
            at=transition.at,
            from_status=transition.from_status,
            to_status=transition.to_status,
        )


def test_full_clean_names_a_bad_flow_state_readably():
    artifact = ArtifactFactory.build(product=ProductFactory(), connection=ToolConnectionFactory())
    artifact.flow_state = "sideways"
    with pytest.raises(ValidationError) as caught:
        artifact.full_clean()
    errors = caught.value.message_dict
    assert list(errors) == ["flow_state"]
    assert "sideways" in errors["flow_state"][0]
    assert "not a valid choice" in errors["flow_state"][0]


def test_full_clean_names_a_bad_transition_state_readably():
    transition = StateTransitionFactory.build(artifact=ArtifactFactory(), to_state="sideways")
    with pytest.raises(ValidationError) as caught:
        transition.full_clean()
    assert "to_state" in caught.value.message_dict
    assert "sideways" in caught.value.message_dict["to_state"][0]


def test_full_clean_accepts_every_flow_state():
    artifact = ArtifactFactory()
    for state in FlowState.values:
        artifact.flow_state = state
        artifact.full_clean()


def test_full_clean_reports_a_self_link():
    artifact = ArtifactFactory()
    with pytest.raises(ValidationError):
        ArtifactLink(source=artifact, target=artifact, kind=LinkKind.RELATES_TO).full_clean()


def test_a_product_with_artifacts_cannot_be_deleted_but_a_link_goes_with_its_artifact():
    link = ArtifactLinkFactory()
    with pytest.raises(ProtectedError), transaction.atomic():
        link.source.product.delete()
    link.target.delete()
    assert not ArtifactLink.objects.exists()
