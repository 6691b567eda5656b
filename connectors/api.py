"""Read-only API for tool connections: what is connected and how healthy it is. Never credentials."""

import django_filters
from rest_framework import serializers, viewsets

from connectors.base import registered_connectors
from connectors.models import ToolConnection


class ToolConnectionSerializer(serializers.ModelSerializer):
    healthy = serializers.BooleanField(read_only=True, allow_null=True)

    class Meta:
        model = ToolConnection
        fields = ["id", "kind", "name", "base_url", "partner", "healthy", "last_success_at", "last_error_at"]


def connector_choices():
    return [(slug, connector.name) for slug, connector in registered_connectors().items()]


class ToolConnectionFilterSet(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=connector_choices)

    class Meta:
        model = ToolConnection
        fields = ["kind"]


class ToolConnectionViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ToolConnectionSerializer
    filterset_class = ToolConnectionFilterSet
    ordering_fields = ["name", "id"]

    def get_queryset(self):
        return ToolConnection.objects.visible_to(self.request.user)
