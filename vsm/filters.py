"""One FilterSet per model, shared by the portal and the API."""

import django_filters
from django.db.models import Q

from vsm.choices import FlowState, LinkKind, LinkOrigin
from vsm.models import (
    Artifact,
    ArtifactLink,
    ArtifactModel,
    FlowItemType,
    Partner,
    Product,
    StateTransition,
    Team,
)


def visible_products(request):
    return Product.objects.visible_to(request.user) if request else Product.objects.none()


def visible_partners(request):
    return Partner.objects.visible_to(request.user) if request else Partner.objects.none()


def visible_teams(request):
    return Team.objects.visible_to(request.user) if request else Team.objects.none()


class ProductFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Name contains")

    class Meta:
        model = Product
        fields = ["slug"]

    def search(self, queryset, name, value):
        return queryset.filter(name__icontains=value)


class TeamFilterSet(django_filters.FilterSet):
    product = django_filters.ModelChoiceFilter(queryset=visible_products)
    partner = django_filters.ModelChoiceFilter(queryset=visible_partners)

    class Meta:
        model = Team
        fields = ["product", "partner"]


class ArtifactFilterSet(django_filters.FilterSet):
    product = django_filters.ModelChoiceFilter(queryset=visible_products)
    team = django_filters.ModelChoiceFilter(queryset=visible_teams)
    model = django_filters.ModelChoiceFilter(
        field_name="artifact_model",
        to_field_name="slug",
        queryset=ArtifactModel.objects.all(),
        label="Artifact model (slug)",
    )
    flow_item_type = django_filters.ModelChoiceFilter(
        to_field_name="slug", queryset=FlowItemType.objects.all(), label="Flow item type (slug)"
    )
    flow_state = django_filters.MultipleChoiceFilter(choices=FlowState.choices)
    updated = django_filters.IsoDateTimeFromToRangeFilter(field_name="updated_at")
    q = django_filters.CharFilter(method="search", label="Key or title contains")
    include_deleted = django_filters.BooleanFilter(method="filter_deleted", label="Include deleted items")

    class Meta:
        model = Artifact
        fields = ["product", "team", "model", "flow_item_type", "flow_state", "key", "connection"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(key__iexact=value) | Q(key__icontains=value) | Q(title__icontains=value))

    def filter_deleted(self, queryset, name, value):
        return queryset if value else queryset.filter(deleted_at__isnull=True)


class ArtifactLinkFilterSet(django_filters.FilterSet):
    kind = django_filters.MultipleChoiceFilter(choices=LinkKind.choices)
    origin = django_filters.ChoiceFilter(choices=LinkOrigin.choices)
    artifact = django_filters.NumberFilter(method="either_end", label="Artifact at either end (id)")

    class Meta:
        model = ArtifactLink
        fields = ["source", "target", "kind", "origin"]

    def either_end(self, queryset, name, value):
        return queryset.filter(Q(source_id=value) | Q(target_id=value))


class StateTransitionFilterSet(django_filters.FilterSet):
    at = django_filters.IsoDateTimeFromToRangeFilter()
    to_state = django_filters.MultipleChoiceFilter(choices=FlowState.choices)

    class Meta:
        model = StateTransition
        fields = ["at", "to_state"]
