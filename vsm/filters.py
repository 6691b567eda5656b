"""One FilterSet per model, shared by the portal and the API."""

from datetime import UTC

import django_filters
from django import forms
from django.db.models import Q
from django_filters.fields import IsoDateTimeField

from connectors.models import ToolConnection
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


def visible_connections(request):
    return ToolConnection.objects.visible_to(request.user) if request else ToolConnection.objects.none()


def visible_teams(request):
    return Team.objects.visible_to(request.user) if request else Team.objects.none()


class IdFilter(django_filters.NumberFilter):
    """A database id: a whole number within a 64-bit key, so 1.5 or 10**30 is a 400, not a crash."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", 2**63 - 1)
        super().__init__(*args, **kwargs)


class InstantField(IsoDateTimeField):
    """An ISO 8601 date and time (an offset, or UTC when none), as an aware datetime in UTC.

    Refused with a message: an instant whose UTC time is outside the years 1 to 9999, which Python and
    the database cannot hold (9999-12-31T23:59:59-23:59 falls in the year 10000).
    """

    default_error_messages = {
        "invalid": "Enter an ISO 8601 date and time, such as 2026-03-01T09:30:00Z or "
        "2026-03-01T10:30:00+01:00.",
        "out_of_range": "%(value)s is outside the years 1 to 9999 in UTC.",
    }

    def to_python(self, value):
        instant = super().to_python(value)
        if instant is None:
            return None
        try:
            return instant.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError(
                self.error_messages["out_of_range"], code="out_of_range", params={"value": str(value).strip()}
            ) from None


class InstantFilter(django_filters.IsoDateTimeFilter):
    field_class = InstantField


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
    connection = django_filters.ModelChoiceFilter(queryset=visible_connections)
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
    # Two named filters rather than one range filter, so an error names the parameter that was sent.
    updated_after = InstantFilter(
        field_name="updated_at", lookup_expr="gte", label="Updated at or after (ISO 8601)"
    )
    updated_before = InstantFilter(
        field_name="updated_at", lookup_expr="lte", label="Updated at or before (ISO 8601)"
    )
    q = django_filters.CharFilter(method="search", label="Key or title contains")
    include_deleted = django_filters.BooleanFilter(
        method="keep_deleted", label="Include items deleted in their tool (hidden by default)"
    )

    class Meta:
        model = Artifact
        fields = ["product", "team", "model", "flow_item_type", "flow_state", "key", "connection"]

    def search(self, queryset, name, value):
        return queryset.filter(Q(key__iexact=value) | Q(key__icontains=value) | Q(title__icontains=value))

    def keep_deleted(self, queryset, name, value):
        return queryset  # acted on in filter_queryset, which also applies when the parameter is absent

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        if not self.form.cleaned_data.get("include_deleted"):
            queryset = queryset.filter(deleted_at__isnull=True)
        return queryset


class ArtifactLinkFilterSet(django_filters.FilterSet):
    kind = django_filters.MultipleChoiceFilter(choices=LinkKind.choices)
    origin = django_filters.ChoiceFilter(choices=LinkOrigin.choices)
    artifact = IdFilter(method="either_end", label="Artifact at either end (id)")
    # Plain ids, not model choices: a lookup would tell a foreign id (valid) from an unknown one.
    source = IdFilter(field_name="source_id", label="Source artifact (id)")
    target = IdFilter(field_name="target_id", label="Target artifact (id)")

    class Meta:
        model = ArtifactLink
        fields = ["source", "target", "kind", "origin"]

    def either_end(self, queryset, name, value):
        return queryset.filter(Q(source_id=value) | Q(target_id=value))


class StateTransitionFilterSet(django_filters.FilterSet):
    at_after = InstantFilter(field_name="at", lookup_expr="gte", label="At or after (ISO 8601)")
    at_before = InstantFilter(field_name="at", lookup_expr="lte", label="At or before (ISO 8601)")
    to_state = django_filters.MultipleChoiceFilter(choices=FlowState.choices)

    class Meta:
        model = StateTransition
        fields = ["at_after", "at_before", "to_state"]
