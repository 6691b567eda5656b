import pytest

from tests.factories import ArtifactLinkFactory, StateTransitionFactory, UserFactory


@pytest.mark.django_db
def test_factories_build_a_linked_artifact_with_history():
    link = ArtifactLinkFactory()
    transition = StateTransitionFactory(artifact=link.source)
    user = UserFactory()
    assert link.source.pk != link.target.pk
    assert transition.artifact.transitions.count() == 1
    assert user.check_password("pass-word-123")
