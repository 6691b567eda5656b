from django.contrib.auth.views import redirect_to_login
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularSwaggerSplitView
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotAuthenticated
from rest_framework.generics import get_object_or_404

from vsm.api.serializers import (
    ArtifactLinkSerializer,
    ArtifactSerializer,
    ProductSerializer,
    StateTransitionSerializer,
    TeamSerializer,
)
from vsm.filters import (
    ArtifactFilterSet,
    ArtifactLinkFilterSet,
    ProductFilterSet,
    StateTransitionFilterSet,
    TeamFilterSet,
)
from vsm.models import Artifact, ArtifactLink, Product, StateTransition, Team
from vsm.selectors import internal_field_names_by_model


class ProductViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ProductSerializer
    filterset_class = ProductFilterSet
    ordering_fields = ["name", "id"]

    def get_queryset(self):
        return Product.objects.visible_to(self.request.user)


class TeamViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = TeamSerializer
    filterset_class = TeamFilterSet
    ordering_fields = ["name", "id"]

    def get_queryset(self):
        return Team.objects.visible_to(self.request.user)


class ArtifactViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ArtifactSerializer
    filterset_class = ArtifactFilterSet
    ordering_fields = ["updated_at", "created_at", "done_at", "key", "id"]

    def get_queryset(self):
        if self.action == "transitions":
            # The nested list: its filterset, ordering and schema apply to transitions, not artifacts.
            return StateTransition.objects.visible_to(self.request.user)
        return Artifact.objects.visible_to(self.request.user).select_related(
            "artifact_model", "flow_item_type", "connection", "team"
        )

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context["internal_fields"] = internal_field_names_by_model()
        return context

    @extend_schema(responses=StateTransitionSerializer(many=True), filters=True)
    @action(
        detail=True,
        serializer_class=StateTransitionSerializer,
        filterset_class=StateTransitionFilterSet,
        ordering_fields=["at"],
    )
    def transitions(self, request, pk=None, format=None):  # format: the router's suffix, /transitions.json
        """The artifact's state transitions, oldest first."""
        artifact = get_object_or_404(Artifact.objects.visible_to(request.user), pk=pk)
        queryset = self.filter_queryset(self.get_queryset().filter(artifact=artifact).order_by("at", "id"))
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(StateTransitionSerializer(page, many=True).data)


class ArtifactLinkViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ArtifactLinkSerializer
    filterset_class = ArtifactLinkFilterSet
    ordering_fields = ["created_at", "id"]

    def get_queryset(self):
        return ArtifactLink.objects.visible_to(self.request.user)


class ApiDocsView(SpectacularSwaggerSplitView):
    """The interactive docs (vsm.api.permissions.SchemaAccess): a browser not signed in is sent to the
    login page rather than shown the API's 401."""

    def handle_exception(self, exc):
        if isinstance(exc, NotAuthenticated):
            return redirect_to_login(self.request.get_full_path())
        return super().handle_exception(exc)
