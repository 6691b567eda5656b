"""Reads of the core domain, always through `visible_to`."""

from django.db.models import Count, Q
from django.shortcuts import get_object_or_404

from vsm.models import Artifact, ArtifactLink, ModelField, Product
from vsm.scoping import reach_of


def internal_field_names_by_model() -> dict[int, set[str]]:
    """Fields partners may never see, per artifact model id (one query)."""
    names: dict[int, set[str]] = {}
    for model_id, name in ModelField.objects.filter(partner_visible=False).values_list(
        "artifact_model_id", "name"
    ):
        names.setdefault(model_id, set()).add(name)
    return names


def product_list_for(user):
    visible_artifacts = Artifact.objects.visible_to(user).filter(deleted_at__isnull=True)
    return (
        Product.objects.visible_to(user)
        .annotate(
            artifact_count=Count(
                "artifacts", filter=Q(artifacts__in=visible_artifacts.values("pk")), distinct=True
            )
        )
        .order_by("name")
    )


def product_get_for(user, slug: str) -> Product:
    return get_object_or_404(Product.objects.visible_to(user), slug=slug)


def artifact_list_for(user, product: Product):
    return (
        Artifact.objects.visible_to(user)
        .filter(product=product, deleted_at__isnull=True)
        .select_related("artifact_model", "flow_item_type", "connection")
    )


def artifact_get_for(user, pk: int) -> Artifact:
    queryset = Artifact.objects.visible_to(user).select_related(
        "product", "artifact_model", "flow_item_type", "connection", "team"
    )
    return get_object_or_404(queryset, pk=pk)


def hidden_fields_for(user, artifact: Artifact) -> set[str]:
    """Normalised field names (and "value" for revenue) this user may not see on the artifact."""
    if not reach_of(user).is_partner:
        return set()
    return internal_field_names_by_model().get(artifact.artifact_model_id, set()) | {"value"}


def links_of(user, artifact: Artifact):
    return (
        ArtifactLink.objects.visible_to(user)
        .filter(Q(source=artifact) | Q(target=artifact))
        .select_related("source__artifact_model", "target__artifact_model")
    )
