"""The link walks (downstream_links, trace_chain) follow only links between artifacts the user may see and
that are not deleted, one query a level whatever the scope (SQLite and PostgreSQL alike)."""

from datetime import timedelta

import pytest

from metrics.selectors import downstream_links, trace_chain
from tests.factories import (
    BASE_TIME,
    ArtifactFactory,
    ArtifactLinkFactory,
    ProductFactory,
    ProductRoleFactory,
    StaffFactory,
    artifact_model,
)
from vsm.choices import LinkKind

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain():
    shop, elsewhere = ProductFactory(slug="shop"), ProductFactory(slug="elsewhere")
    made = {}

    def art(key, model, product=shop, **extra):
        made[key] = ArtifactFactory(key=key, product=product, artifact_model=artifact_model(model), **extra)
        return made[key]

    art("REQ", "request")
    art("FEAT", "feature")
    art("STORY", "story")
    art("COMMIT", "commit")
    art("BUILD", "build")
    art("GONE", "story", deleted_at=BASE_TIME + timedelta(days=1))
    art("GONE-COMMIT", "commit")
    art("FOREIGN", "story", product=elsewhere)
    art("FOREIGN-COMMIT", "commit")
    art("NOTE", "story")
    for source, target, kind in [
        ("FEAT", "REQ", LinkKind.DERIVED_FROM),
        ("STORY", "FEAT", LinkKind.CHILD_OF),
        ("STORY", "COMMIT", LinkKind.COMMITTED_IN),
        ("COMMIT", "BUILD", LinkKind.BUILT_IN),
        ("GONE", "FEAT", LinkKind.CHILD_OF),
        ("GONE", "GONE-COMMIT", LinkKind.COMMITTED_IN),
        ("FOREIGN", "FEAT", LinkKind.CHILD_OF),
        ("FOREIGN", "FOREIGN-COMMIT", LinkKind.COMMITTED_IN),
        ("STORY", "NOTE", LinkKind.RELATES_TO),
    ]:
        ArtifactLinkFactory(source=made[source], target=made[target], kind=kind)
    owner = ProductRoleFactory(product=shop, user__username="owner").user
    return made, owner


def keyed(made, edges):
    names = {artifact.pk: key for key, artifact in made.items()}
    return {(names[source], names[target], kind) for source, target, kind in edges}


def test_downstream_links_skip_deleted_and_foreign_artifacts(chain):
    made, owner = chain
    assert keyed(made, downstream_links(owner, [made["REQ"].pk])) == {
        ("FEAT", "REQ", LinkKind.DERIVED_FROM),
        ("STORY", "FEAT", LinkKind.CHILD_OF),
        ("STORY", "COMMIT", LinkKind.COMMITTED_IN),
        ("COMMIT", "BUILD", LinkKind.BUILT_IN),
    }
    # Staff see every product: the foreign story and its commit are part of the chain then.
    staff_edges = keyed(made, downstream_links(StaffFactory(), [made["REQ"].pk]))
    assert ("FOREIGN", "FOREIGN-COMMIT", LinkKind.COMMITTED_IN) in staff_edges
    assert not any("GONE" in source or "GONE" in target for source, target, _ in staff_edges)


def test_trace_chain_reaches_the_same_artifacts_from_any_of_them(chain, django_assert_max_num_queries):
    made, owner = chain
    expected = {"REQ", "FEAT", "STORY", "COMMIT", "BUILD", "NOTE"}  # NOTE: the story's relates-to, one hop
    names = {artifact.pk: key for key, artifact in made.items()}
    for start in ("STORY", "BUILD", "REQ"):
        with django_assert_max_num_queries(12):
            found = trace_chain(owner, made[start].pk, max_nodes=100, max_levels=10)
        assert {names[node] for node in found.node_ids} == expected
        assert found.node_ids[0] == made[start].pk
        assert not (found.cut_nodes or found.cut_depth)
    from_story = trace_chain(owner, made["STORY"].pk, max_nodes=100, max_levels=10)
    assert {names[node] for node in from_story.upstream_ids} == {"FEAT", "REQ"}
    assert ("STORY", "NOTE", LinkKind.RELATES_TO) in keyed(made, from_story.edges)
