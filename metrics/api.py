"""The flow-metrics API: /api/metrics/flow/, /api/metrics/items/ (JSON or CSV) and /api/metrics/forecast/.

Thin: query parameters are validated by serializers and FilterSets (400 with a message), products are
looked up through `Product.objects.visible_to` (404 when out of reach), and the numbers come from
metrics.selectors.
"""

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import islice
from urllib.parse import urlencode

import django_filters
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from django_filters.constants import EMPTY_VALUES
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, viewsets
from rest_framework.filters import OrderingFilter
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings

from metrics import selectors
from metrics.calculators import (
    DORA_DEFAULT_FAILURE_WINDOW_DAYS,
    DORA_DEFAULT_PRODUCTION_PATTERN,
    DORA_FAILURE_RATE_CONVENTIONS,
    DORA_LEAD_TIME_CONVENTIONS,
    DORA_MAX_PATTERN_LENGTH,
    Bucket,
    dora_production_pattern,
)
from metrics.models import ItemFlowRollup
from metrics.selectors import DayWindow, NoHistoryError, WindowError, day_in_range, window_between
from vsm.choices import FlowState
from vsm.filters import InstantFilter, visible_partners, visible_teams
from vsm.models import FlowItemType, Partner, Team
from vsm.scoping import reach_of

DEFAULT_WINDOW_DAYS = 91  # 13 weeks
FORECAST_MAX_DAYS_AHEAD = 366
CSV_CHUNK_SIZE = 2000
ID_LIMITS = {"min_value": 1, "max_value": 2**63 - 1}
WINDOW_PARAMETERS = ("window_start", "window_end")


# --- CSV -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CsvTable:
    header: list[str]
    rows: Iterable[dict]


class CSVRenderer(BaseRenderer):
    """Renders a CsvTable (or a dict, such as an error, as one row). Cells that a spreadsheet would run
    as a formula (=, +, -, @ first) are prefixed with an apostrophe."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if isinstance(data, dict):
            data = CsvTable(list(data), [data])
        if not isinstance(data, CsvTable):
            data = CsvTable(["detail"], [{"detail": data}])
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=data.header, extrasaction="ignore", lineterminator="\r\n")
        writer.writeheader()
        for row in data.rows:
            writer.writerow({name: _csv_cell(value) for name, value in row.items()})
        return out.getvalue().encode(self.charset)


def _csv_cell(value):
    if isinstance(value, list | dict):
        value = "; ".join(str(item) for item in value) if isinstance(value, list) else str(value)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


# --- query parameters ----------------------------------------------------------------------------------


class ScopeQuerySerializer(serializers.Serializer):
    """The product and the optional narrowing shared by /flow/ and /forecast/."""

    product = serializers.CharField(help_text="Product id or slug.")
    type = serializers.SlugField(required=False, help_text="Flow item type slug (feature, defect...).")
    team = serializers.IntegerField(required=False, help_text="Team id (of this product).", **ID_LIMITS)
    partner = serializers.IntegerField(
        required=False, help_text="Partner id: only that partner's scope.", **ID_LIMITS
    )

    def validate_product(self, value):
        # Unknown and out-of-reach products alike: 404, so ids of other products are not revealed.
        return selectors.product_get_visible(self.context["request"].user, value)

    def validate_type(self, value):
        flow_type = FlowItemType.objects.visible_to(self.user).filter(slug=value).first()
        if flow_type is None:
            known = ", ".join(FlowItemType.objects.values_list("slug", flat=True))
            raise serializers.ValidationError(f"unknown flow item type {value!r}; known types: {known}")
        return flow_type

    def validate(self, attrs):
        product = attrs["product"]
        if "team" in attrs:
            team = Team.objects.visible_to(self.user).filter(pk=attrs["team"], product=product).first()
            if team is None:
                raise serializers.ValidationError({"team": f"no team {attrs['team']} in {product.slug}"})
            attrs["team"] = team
        if "partner" in attrs:
            partner = Partner.objects.visible_to(self.user).filter(pk=attrs["partner"]).first()
            if partner is None:
                raise serializers.ValidationError({"partner": f"no partner {attrs['partner']}"})
            attrs["partner"] = partner
        return attrs

    @property
    def user(self):
        return self.context["request"].user


def _window(attrs, names: tuple[str, str], default_last: date) -> DayWindow:
    """The window of days the two named parameters give (defaults filled in), or a 400 naming the
    parameter at fault."""
    try:
        return window_between(
            attrs.get(names[0]),
            attrs.get(names[1]),
            default_last=default_last,
            default_days=DEFAULT_WINDOW_DAYS,
            names=names,
        )
    except WindowError as error:
        raise serializers.ValidationError({error.parameter: str(error)}) from error


class FlowQuerySerializer(ScopeQuerySerializer):
    window_start = serializers.DateField(
        required=False, help_text=f"First local day (default: {DEFAULT_WINDOW_DAYS} days to window_end)."
    )
    window_end = serializers.DateField(required=False, help_text="Last local day, included (default: today).")
    bucket = serializers.ChoiceField(
        choices=[bucket.value for bucket in Bucket],
        default=Bucket.WEEK.value,
        error_messages={"invalid_choice": "unknown bucket {input!r}: use day, week, month or quarter"},
    )

    def validate(self, attrs):
        attrs = super().validate(attrs)
        attrs["window"] = _window(attrs, WINDOW_PARAMETERS, selectors.local_today(attrs["product"]))
        return attrs


class ForecastQuerySerializer(ScopeQuerySerializer):
    history_start = serializers.DateField(required=False, help_text="First local day of the history.")
    history_end = serializers.DateField(
        required=False, help_text="Last local day of the history, included (default: the day before start)."
    )
    items = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=1_000_000,
        help_text="When will this many items be done?",
        error_messages={"min_value": "items must be at least 1"},
    )
    until = serializers.DateField(required=False, help_text="How many items will be done by this day?")
    start = serializers.DateField(required=False, help_text="First day of the forecast (default: today).")

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if ("items" in attrs) == ("until" in attrs):
            raise serializers.ValidationError({"detail": "give either items=N or until=YYYY-MM-DD"})
        start = attrs.get("start") or selectors.local_today(attrs["product"])
        try:
            attrs["start"] = day_in_range("start", start)
        except WindowError as error:
            raise serializers.ValidationError({"start": str(error)}) from error
        if "until" in attrs:
            until = attrs["until"]
            if until < start:
                raise serializers.ValidationError({"until": f"until {until} is before the start {start}"})
            if (until - start).days >= FORECAST_MAX_DAYS_AHEAD:
                raise serializers.ValidationError(
                    {"until": f"until {until} is more than {FORECAST_MAX_DAYS_AHEAD} days after {start}"}
                )
        attrs["history"] = _window(attrs, ("history_start", "history_end"), start - timedelta(days=1))
        return attrs


# --- /api/metrics/flow/ --------------------------------------------------------------------------------


def _items_url(product, bucket: dict, params: dict) -> str:
    query = {
        "product": product["id"],
        "done_after": bucket["done_after"].isoformat(),
        "done_before": bucket["done_before"].isoformat(),
        **params,
    }
    return f"{reverse('metrics-item-list')}?{urlencode(query)}"


class FlowMetricsViewSet(viewsets.ViewSet):
    """Flow velocity, time, efficiency, load and distribution of one product over a window of days."""

    @extend_schema(parameters=[FlowQuerySerializer], responses=OpenApiTypes.OBJECT)
    def list(self, request):
        query = FlowQuerySerializer(data=request.query_params, context={"request": request})
        query.is_valid(raise_exception=True)
        params = query.validated_data
        metrics = selectors.flow_metrics(
            request.user,
            params["product"],
            params["window"],
            params["bucket"],
            team=params.get("team"),
            partner=params.get("partner"),
            flow_type=params.get("type"),
        )
        narrowing = {
            name: value
            for name, value in (
                ("type", params["type"].slug if "type" in params else None),
                ("team", params["team"].pk if "team" in params else None),
                ("partner", params["partner"].pk if "partner" in params else None),
            )
            if value is not None
        }
        for bucket in metrics["velocity"]["buckets"]:
            bucket["items"] = _items_url(metrics["product"], bucket, narrowing)
        return Response(metrics)


# --- /api/metrics/items/ -------------------------------------------------------------------------------


class ItemFlowRollupSerializer(serializers.ModelSerializer):
    """One flow item's figures, seconds as floats, taken at the time of the request."""

    artifact = serializers.IntegerField(source="artifact_id", read_only=True)
    key = serializers.CharField(source="artifact.key", read_only=True)
    title = serializers.CharField(source="artifact.title", read_only=True)
    url = serializers.CharField(source="artifact.url", read_only=True)
    type = serializers.CharField(source="flow_item_type.slug", read_only=True)
    state = serializers.CharField(source="current_state", read_only=True)
    team = serializers.SerializerMethodField(help_text="Team id; null when none or not yours to see.")
    created_at = serializers.DateTimeField(source="artifact.created_at", read_only=True)
    flow_time_from_restart = serializers.SerializerMethodField()
    active_time = serializers.SerializerMethodField()
    waiting_time = serializers.SerializerMethodField()
    efficiency = serializers.SerializerMethodField()
    age = serializers.SerializerMethodField()
    computed_at = serializers.DateTimeField(source="updated_at", read_only=True)

    class Meta:
        model = ItemFlowRollup
        fields = [
            "artifact",
            "key",
            "title",
            "url",
            "type",
            "state",
            "team",
            "created_at",
            "started_at",
            "start_inferred",
            "restarted_at",
            "done_at",
            "canceled_at",
            "flow_time",
            "lead_time",
            "flow_time_from_restart",
            "active_time",
            "waiting_time",
            "efficiency",
            "age",
            "computed_at",
        ]
        read_only_fields = fields

    def get_team(self, rollup) -> int | None:
        if rollup.team_id is None or not self.context["reach"].may_name(rollup.team.partner_id):
            return None
        return rollup.team_id

    def get_flow_time_from_restart(self, rollup) -> float | None:
        if rollup.done_at is None or rollup.restarted_at is None:
            return None
        return (rollup.done_at - rollup.restarted_at).total_seconds()

    def get_active_time(self, rollup) -> float | None:
        return selectors.item_times_at(rollup, self.context["now"])[0]

    def get_waiting_time(self, rollup) -> float | None:
        return selectors.item_times_at(rollup, self.context["now"])[1]

    def get_efficiency(self, rollup) -> float | None:
        return selectors.item_times_at(rollup, self.context["now"])[2]

    def get_age(self, rollup) -> float | None:
        if rollup.age_since is None:
            return None
        return (self.context["now"] - rollup.age_since).total_seconds()


@extend_schema_field(OpenApiTypes.INT)
class PartnerScopeFilter(django_filters.ModelChoiceFilter):
    """A visible partner, by id: keeps the items of that partner's scope (as its users see them)."""

    def filter(self, queryset, partner):
        if partner in EMPTY_VALUES:
            return queryset
        product_ids = list(partner.grants.values_list("product_id", flat=True))
        return queryset.filter(
            artifact__in=selectors.partner_scope_artifacts(partner, product_ids).values("pk")
        )


class ItemFlowRollupFilterSet(django_filters.FilterSet):
    product = django_filters.CharFilter(method="in_product", label="Product (id or slug)")
    type = django_filters.ModelChoiceFilter(
        field_name="flow_item_type",
        to_field_name="slug",
        queryset=FlowItemType.objects.all(),
        label="Flow item type (slug)",
    )
    state = django_filters.MultipleChoiceFilter(field_name="current_state", choices=FlowState.choices)
    team = django_filters.ModelChoiceFilter(queryset=visible_teams)
    partner = PartnerScopeFilter(queryset=visible_partners, label="Only this partner's scope (id)")
    # Half-open like the buckets of /flow/: after is included, before is not.
    done_after = InstantFilter(field_name="done_at", lookup_expr="gte", label="Done at or after (ISO 8601)")
    done_before = InstantFilter(
        field_name="done_at", lookup_expr="lt", label="Done before (ISO 8601, excluded)"
    )
    started_after = InstantFilter(
        field_name="started_at", lookup_expr="gte", label="Started at or after (ISO 8601)"
    )
    started_before = InstantFilter(
        field_name="started_at", lookup_expr="lt", label="Started before (ISO 8601, excluded)"
    )

    class Meta:
        model = ItemFlowRollup
        fields = ["product", "type", "state", "team", "partner"]

    def in_product(self, queryset, name, value):
        return queryset.filter(product=selectors.product_get_visible(self.request.user, value))


class NullsLastOrderingFilter(OrderingFilter):
    """Ordering with empty values last in either direction, on SQLite and PostgreSQL alike, ties broken
    by artifact id. `age` orders by the open items' age (done and canceled items have none)."""

    def filter_queryset(self, request, queryset, view):
        terms = self.get_ordering(request, queryset, view) or []
        expressions = []
        for term in terms:
            descending = term.startswith("-")
            name = term.lstrip("-")
            if name == "age":  # an older start is a greater age
                name, descending = "age_since", not descending
            expression = F(name)
            expressions.append(
                expression.desc(nulls_last=True) if descending else expression.asc(nulls_last=True)
            )
        return queryset.order_by(*expressions, "artifact_id")


class ItemFlowRollupViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Per-item flow figures behind every number of /flow/; `?format=csv` exports every matching row.

    Ordering by active time or efficiency uses open items' figures at their last transition (what is
    stored); the figures shown are taken now.
    """

    serializer_class = ItemFlowRollupSerializer
    filterset_class = ItemFlowRollupFilterSet
    filter_backends = [DjangoFilterBackend, NullsLastOrderingFilter]
    ordering_fields = ["done_at", "flow_time", "age", "efficiency", "lead_time", "started_at", "active_time"]
    ordering = ["-done_at"]
    renderer_classes = [*api_settings.DEFAULT_RENDERER_CLASSES, CSVRenderer]

    def get_queryset(self):
        return selectors.item_rollup_list(self.request.user)

    def get_serializer_context(self):
        return {
            **super().get_serializer_context(),
            "now": timezone.now(),
            "reach": reach_of(self.request.user),
        }

    def list(self, request, *args, **kwargs):
        if request.accepted_renderer.format != CSVRenderer.format:
            return super().list(request, *args, **kwargs)
        queryset = self.filter_queryset(self.get_queryset())
        table = CsvTable(ItemFlowRollupSerializer.Meta.fields, self._csv_rows(queryset))
        return Response(table, headers={"Content-Disposition": 'attachment; filename="flow-items.csv"'})

    def _csv_rows(self, queryset) -> Iterator[dict]:
        context = self.get_serializer_context()
        rollups = queryset.iterator(chunk_size=CSV_CHUNK_SIZE)
        while chunk := list(islice(rollups, CSV_CHUNK_SIZE)):
            yield from ItemFlowRollupSerializer(chunk, many=True, context=context).data


# --- /api/metrics/forecast/ ----------------------------------------------------------------------------


class ForecastViewSet(viewsets.ViewSet):
    """Monte Carlo forecast over the daily throughput of a history window, at 50/85/95% confidence."""

    @extend_schema(parameters=[ForecastQuerySerializer], responses=OpenApiTypes.OBJECT)
    def list(self, request):
        query = ForecastQuerySerializer(data=request.query_params, context={"request": request})
        query.is_valid(raise_exception=True)
        params = query.validated_data
        try:
            forecast = selectors.flow_forecast(
                request.user,
                params["product"],
                params["history"],
                items=params.get("items"),
                until=params.get("until"),
                start_day=params["start"],
                flow_type=params.get("type"),
                team=params.get("team"),
                partner=params.get("partner"),
            )
        except NoHistoryError as error:
            raise serializers.ValidationError({"detail": str(error)}) from error
        except ValueError as error:
            raise serializers.ValidationError({"detail": str(error)}) from error
        return Response(forecast)


# --- /api/metrics/dora/ --------------------------------------------------------------------------------


class DoraQuerySerializer(serializers.Serializer):
    product = serializers.CharField(help_text="Product id or slug.")
    window_start = serializers.DateField(
        required=False, help_text=f"First local day (default: {DEFAULT_WINDOW_DAYS} days to window_end)."
    )
    window_end = serializers.DateField(required=False, help_text="Last local day, included (default: today).")
    bucket = serializers.ChoiceField(
        choices=[bucket.value for bucket in Bucket],
        default=Bucket.WEEK.value,
        error_messages={"invalid_choice": "unknown bucket {input!r}: use day, week, month or quarter"},
    )
    production = serializers.CharField(
        required=False,
        allow_blank=True,
        trim_whitespace=False,  # a regular expression: spaces are part of it
        max_length=DORA_MAX_PATTERN_LENGTH,
        help_text=(
            "RE2 regular expression (searched; linear time, so no back-references or look-arounds) that "
            "a deployment's environment matches when it is production; "
            f"default {DORA_DEFAULT_PRODUCTION_PATTERN}."
        ),
    )
    failure_window_days = serializers.IntegerField(
        required=False,
        default=DORA_DEFAULT_FAILURE_WINDOW_DAYS,
        min_value=1,
        max_value=selectors.DORA_MAX_FAILURE_WINDOW_DAYS,
        help_text="How long after a deployment an incident or defect linked to it fails it.",
        error_messages={
            "min_value": "failure_window_days must be at least 1",
            "max_value": f"failure_window_days must be at most {selectors.DORA_MAX_FAILURE_WINDOW_DAYS}",
        },
    )
    lead_time = serializers.ChoiceField(
        choices=list(DORA_LEAD_TIME_CONVENTIONS),
        default=DORA_LEAD_TIME_CONVENTIONS[0],
        help_text=(
            "Lead time for changes per commit (each commit to the first successful production deployment "
            "containing it) or per pull_request (Apache DevLake's: a pull request's earliest commit to the "
            "deployment that shipped the last of its commits to ship)."
        ),
        error_messages={"invalid_choice": "unknown lead_time {input!r}: use commit or pull_request"},
    )
    failure_rate = serializers.ChoiceField(
        choices=list(DORA_FAILURE_RATE_CONVENTIONS),
        default=DORA_FAILURE_RATE_CONVENTIONS[0],
        help_text=(
            "Change failure rate over every finished production deployment attempt, failed or followed by "
            "an incident or defect (attempts), or over the successful ones, the share followed by one "
            "(successful, Apache DevLake's; failed deployments count in neither)."
        ),
        error_messages={"invalid_choice": "unknown failure_rate {input!r}: use attempts or successful"},
    )

    def validate_product(self, value):
        # Unknown and out-of-reach products alike: 404, as /flow/.
        return selectors.product_get_visible(self.context["request"].user, value)

    def validate_production(self, value):
        try:
            dora_production_pattern(value)
        except ValueError as error:
            raise serializers.ValidationError(str(error)) from error
        return value or None

    def validate(self, attrs):
        attrs["window"] = _window(attrs, WINDOW_PARAMETERS, selectors.local_today(attrs["product"]))
        return attrs


class DoraMetricsViewSet(viewsets.ViewSet):
    """DORA metrics of one product: deployment frequency, lead time for changes, change failure rate and
    failed deployment recovery time, per bucket, with the artifacts behind every number and each figure's
    performance level (elite, high, medium, low: DORA 2023 bands, Apache DevLake's criteria; `level`
    null with a `reason` when it cannot be told)."""

    @extend_schema(parameters=[DoraQuerySerializer], responses=OpenApiTypes.OBJECT)
    def list(self, request):
        query = DoraQuerySerializer(data=request.query_params, context={"request": request})
        query.is_valid(raise_exception=True)
        params = query.validated_data
        try:
            metrics = selectors.dora_metrics(
                request.user,
                params["product"],
                params["window"],
                params["bucket"],
                production_pattern=params.get("production"),
                failure_window_days=params["failure_window_days"],
                lead_time_convention=params["lead_time"],
                failure_rate_convention=params["failure_rate"],
            )
        except ValueError as error:
            raise serializers.ValidationError({"detail": str(error)}) from error
        return Response(metrics)


# --- end of /api/metrics/dora/ -------------------------------------------------------------------------


# --- /api/metrics/lead-time/ and /api/metrics/bottlenecks/ ------------------------------------------------

LEAD_TIME_STATUSES = ("all", "delivered", "open", "canceled")
LEAD_TIME_CSV_FIELDS = [
    "artifact",
    "key",
    "title",
    "url",
    "created_at",
    "status",
    "delivered",
    "delivered_at",
    "delivered_by",
    "closed_at",
    "closed_as",
    "lead_time",
    "age",
    "furthest_segment",
    "ideate",
    "create",
    "release",
    "work_items",
    "work_items_done",
    "chain",
    "cyclic",
]


class TraceWindowQuerySerializer(serializers.Serializer):
    product = serializers.CharField(help_text="Product id or slug.")
    window_start = serializers.DateField(
        required=False, help_text=f"First local day (default: {DEFAULT_WINDOW_DAYS} days to window_end)."
    )
    window_end = serializers.DateField(required=False, help_text="Last local day, included (default: today).")

    def validate_product(self, value):
        # Unknown and out-of-reach products alike: 404, as /flow/.
        return selectors.product_get_visible(self.context["request"].user, value)

    def validate(self, attrs):
        attrs["window"] = _window(attrs, WINDOW_PARAMETERS, selectors.local_today(attrs["product"]))
        return attrs


class LeadTimeQuerySerializer(TraceWindowQuerySerializer):
    status = serializers.ChoiceField(
        choices=LEAD_TIME_STATUSES,
        default="all",
        help_text="all, delivered (inside the window), open (not delivered yet) or canceled (declined or "
        "rejected inside the window: closed, not open).",
        error_messages={"invalid_choice": "unknown status {input!r}: use all, delivered, open or canceled"},
    )
    ordering = serializers.ChoiceField(
        choices=[*selectors.TRACE_ORDERINGS, *(f"-{name}" for name in selectors.TRACE_ORDERINGS)],
        default="created_at",
        help_text="created_at, delivered_at, lead_time or age; '-' first for descending. Empty values last.",
        error_messages={
            "invalid_choice": "unknown ordering {input!r}: use created_at, delivered_at, lead_time or age, "
            "with '-' first for descending"
        },
    )
    # Read by the paginator; declared here for the schema and a 400 on a value that is no page number.
    page = serializers.IntegerField(required=False, min_value=1, help_text="Page number (JSON).")
    page_size = serializers.IntegerField(
        required=False, min_value=1, help_text="Rows per page (JSON; default 50, at most 500)."
    )


class BottleneckQuerySerializer(TraceWindowQuerySerializer):
    max_items = serializers.IntegerField(
        required=False,
        default=selectors.BOTTLENECK_MAX_ITEMS,
        min_value=0,
        max_value=1000,
        help_text="How many contributing items to list per state or status (the most time first).",
        error_messages={
            "min_value": "max_items must be at least 0",
            "max_value": "max_items must be at most 1000",
        },
    )


def _iso(value):
    return value.isoformat().replace("+00:00", "Z") if hasattr(value, "isoformat") else value


def _lead_time_csv_row(row: dict) -> dict:
    return {
        **{name: _iso(value) for name, value in row.items() if name != "segments"},
        **row["segments"],
        "delivered_by": row["delivered_by"]["key"] if row["delivered_by"] else None,
    }


class LeadTimeViewSet(viewsets.GenericViewSet):
    """End-to-end lead time of a product's customer requests, through the links across tools: created ->
    the delivery of the last of their work items (done, and its commits shipped in a release or
    production deployment), in phases (ideate, create, release); open requests with their age and the
    furthest phase reached; canceled ones with when and as what they closed. A synced copy counts as its
    original. `?format=csv` exports every row. Partner users see the part of each chain inside their
    scope."""

    filter_backends = []
    renderer_classes = [*api_settings.DEFAULT_RENDERER_CLASSES, CSVRenderer]

    @extend_schema(parameters=[LeadTimeQuerySerializer], responses=OpenApiTypes.OBJECT)
    def list(self, request):
        query = LeadTimeQuerySerializer(data=request.query_params, context={"request": request})
        query.is_valid(raise_exception=True)
        params = query.validated_data
        result = selectors.request_lead_times(
            request.user,
            params["product"],
            params["window"],
            status=params["status"],
            ordering=params["ordering"],
        )
        rows = result.pop("requests")
        if request.accepted_renderer.format == CSVRenderer.format:
            table = CsvTable(LEAD_TIME_CSV_FIELDS, (_lead_time_csv_row(row) for row in rows))
            return Response(table, headers={"Content-Disposition": 'attachment; filename="lead-time.csv"'})
        page = self.paginate_queryset(rows)
        return Response({**result, **self.get_paginated_response(page).data})


class BottleneckViewSet(viewsets.ViewSet):
    """Where a product's flow items spend their time in flow over a window, by flow state and by tool
    status, ranked by the total time spent there in the window, with the items behind each figure."""

    @extend_schema(parameters=[BottleneckQuerySerializer], responses=OpenApiTypes.OBJECT)
    def list(self, request):
        query = BottleneckQuerySerializer(data=request.query_params, context={"request": request})
        query.is_valid(raise_exception=True)
        params = query.validated_data
        return Response(
            selectors.bottlenecks(
                request.user, params["product"], params["window"], max_items=params["max_items"]
            )
        )


# --- end of /api/metrics/lead-time/ and /api/metrics/bottlenecks/ -----------------------------------------
