"""Reads of the flow metrics: from the rollups, always through `visible_to(user)`.

The pure math is metrics.calculators; these functions fetch the rows (a fixed number of queries,
never one per item) and shape the results. Durations are float seconds, instants aware datetimes,
days local dates in the product's time zone.
"""

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from django.core.cache import cache
from django.core.exceptions import EmptyResultSet
from django.db import NotSupportedError, connections
from django.db.models import (
    BigIntegerField,
    Case,
    DateTimeField,
    Exists,
    FloatField,
    Func,
    IntegerField,
    OuterRef,
    Q,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.db.models.lookups import LessThan
from django.http import Http404
from django.utils import timezone

from metrics import calculators
from metrics.calculators import (
    ACTIVE,
    CANCELED,
    CONFIDENCE_LEVELS,
    DONE,
    Bucket,
    FlowTimeStats,
    ItemLedger,
    Window,
    allocation_deviation,
    bucket_bounds,
    bucket_counts,
    bucket_efficiency,
    daily_throughput,
    duration_stats,
    duration_stats_of,
    flow_distribution,
    flow_load,
    monte_carlo_how_many,
    monte_carlo_when,
    total_by_type,
)
from metrics.models import DailyLoadRollup, ItemFlowRollup, ProductRollupState, ProductTarget
from vsm.models import Artifact, ArtifactLink, FlowItemType, Partner, Product, StateTransition, Team
from vsm.scoping import reach_of

CHUNK_SIZE = 5000
MAX_WINDOW_YEARS = 3
FORECAST_TRIALS = 10_000
FORECAST_SEED = 20260105  # fixed: the same history gives the same forecast
FORECAST_MAX_DAYS = 730
# Open items age and days pass even when no rollup changes: how long a cached figure may lag behind.
FIGURES_CACHE_SECONDS = 60
OPEN_STATES = ("new", "waiting", "active", "unknown")
T = TypeVar("T")

logger = logging.getLogger(__name__)


class NoHistoryError(ValueError):
    """Nothing was done in the history window, so there is no throughput to forecast from."""


@dataclass(frozen=True, slots=True)
class DayWindow:
    """Local calendar days from first_day to last_day, both included."""

    first_day: date
    last_day: date

    def __post_init__(self) -> None:
        if self.last_day < self.first_day:
            raise ValueError(f"the window ends ({self.last_day}) before it starts ({self.first_day})")

    def instants(self, zone: ZoneInfo) -> Window:
        """The half-open window of instants: first local midnight to the midnight after the last day."""
        return Window(
            local_midnight(self.first_day, zone), local_midnight(self.last_day + timedelta(days=1), zone)
        )

    def days(self) -> list[date]:
        return day_range(self.first_day, self.last_day)

    def is_longer_than_years(self, years: int) -> bool:
        try:
            limit = self.first_day.replace(year=self.first_day.year + years)
        except ValueError:  # 29 February
            limit = self.first_day.replace(year=self.first_day.year + years, day=28)
        return self.last_day >= limit


# The days a window may cover: every instant and bucket edge computed from them stays far from the
# calendar's ends (a default start 90 days before 0001-01-01 would overflow).
EARLIEST_DAY, LATEST_DAY = date(1970, 1, 1), date(2999, 12, 31)


class WindowError(ValueError):
    """A window of days that cannot be used; `parameter` names the query parameter to blame."""

    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter


def day_in_range(parameter: str, day: date) -> date:
    """The day, when it lies within EARLIEST_DAY to LATEST_DAY (else WindowError): checked before any
    arithmetic on it."""
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise WindowError(parameter, f"{parameter} {day} is outside {EARLIEST_DAY} to {LATEST_DAY}")
    return day


def window_between(
    first: date | None,
    last: date | None,
    *,
    default_last: date,
    default_days: int,
    names: tuple[str, str] = ("window_start", "window_end"),
) -> DayWindow:
    """The window from `first` to `last` (both local days, included), each given day checked first; a
    missing last is `default_last`, a missing first `default_days` - 1 days before the last. WindowError
    names the parameter: a day outside EARLIEST_DAY to LATEST_DAY, an end before the start, a window longer
    than MAX_WINDOW_YEARS."""
    first_name, last_name = names
    if first is not None:
        day_in_range(first_name, first)
    last = day_in_range(last_name, last if last is not None else default_last)
    first = day_in_range(first_name, first if first is not None else last - timedelta(days=default_days - 1))
    if last < first:
        raise WindowError(last_name, f"{last_name} {last} is before {first_name} {first}")
    window = DayWindow(first, last)
    if window.is_longer_than_years(MAX_WINDOW_YEARS):
        raise WindowError(
            last_name, f"the window from {first} to {last} is longer than {MAX_WINDOW_YEARS} years"
        )
    return window


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The start of a local day, as an aware datetime in the zone (correct across DST gaps)."""
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC).astimezone(zone)


def load_sample_instant(day: date, zone: ZoneInfo) -> datetime:
    """When a day's load is sampled: the next local midnight, in UTC."""
    return local_midnight(day + timedelta(days=1), zone).astimezone(UTC)


def day_range(first: date, last: date) -> list[date]:
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def local_today(product: Product, now: datetime | None = None) -> date:
    return (now or timezone.now()).astimezone(ZoneInfo(product.time_zone)).date()


# --- products and scope --------------------------------------------------------------------------------


def product_get_visible(user, id_or_slug: str) -> Product:
    """A product the user may see, by id or slug; 404 for one that is unknown or out of reach alike."""
    products = Product.objects.visible_to(user)
    value = str(id_or_slug).strip()
    product = None
    # ASCII digits only: str.isdigit() is true of "²", which int() refuses.
    if value.isascii() and value.isdigit() and len(value) < 19:
        product = products.filter(pk=int(value)).first()
    if product is None:
        product = products.filter(slug=value).first()
    if product is None:
        raise Http404(f"no product {value!r} among the products you can see")
    return product


def cached_per_reach(user, product: Product, name: str, params: dict, compute: Callable[[], T]) -> T:
    """`compute()`, cached for FIGURES_CACHE_SECONDS under the product, what the user sees of it (all of
    it, or a partner's scope), the normalised `params`, and the product's data version (drawn anew by
    metrics.services at every rollup write; the target allocation's change time too).

    Never cached: a product out of the user's reach, or whose rollups were never written (no version).
    """
    reach = reach_of(user)
    if not (reach.everything or product.pk in reach.product_ids):
        return compute()
    versions = (
        Product.objects.filter(pk=product.pk)
        .values_list("rollup_state__data_version", "flow_target__updated_at")
        .first()
    )
    if versions is None or versions[0] is None:
        return compute()
    seen = f"partner-{reach.partner_id}" if reach.is_partner else "all"
    described = repr((sorted(params.items()), product.slug, product.name, product.time_zone, versions))
    key = f"vsm:{name}:{product.pk}:{seen}:{hashlib.sha256(described.encode()).hexdigest()}"
    try:
        payload = cache.get(key)
    except Exception as error:  # a cache that is down slows the page, never breaks it
        logger.warning("the figures cache cannot be read (%s): computing", error.__class__.__name__)
        return compute()
    if payload is None:
        payload = compute()
        try:
            cache.set(key, payload, FIGURES_CACHE_SECONDS)
        except Exception as error:
            logger.warning("the figures cache cannot be written (%s)", error.__class__.__name__)
    return payload


def partner_scope_artifacts(partner: Partner, product_ids):
    """The artifacts a user of this partner sees in these products (the one definition: vsm.querysets)."""
    scope = Artifact.objects.all().partner_scope(partner.pk, product_ids)
    return Artifact.objects.filter(product_id__in=product_ids).filter(scope)


def item_rollups_scoped(
    user,
    product: Product,
    *,
    flow_type: FlowItemType | None = None,
    team: Team | None = None,
    partner: Partner | None = None,
):
    """The product's item rollups the user may see, narrowed to a type, a team or a partner's scope."""
    rollups = ItemFlowRollup.objects.visible_to(user).filter(product=product)
    if flow_type is not None:
        rollups = rollups.filter(flow_item_type=flow_type)
    if team is not None:
        rollups = rollups.filter(team=team)
    if partner is not None:
        rollups = rollups.filter(artifact__in=partner_scope_artifacts(partner, [product.pk]).values("pk"))
    return rollups


# --- ledgers (read by the load computations here and by metrics.services) -------------------------------


@dataclass(frozen=True, slots=True)
class FlowArtifact:
    id: int
    product_id: int
    team_id: int | None
    flow_item_type_id: int
    created_at: datetime
    flow_state: str


_FLOW_ARTIFACT_COLUMNS = ("id", "product_id", "team_id", "flow_item_type_id", "created_at", "flow_state")


def flow_artifacts(queryset, limit: int | None = None) -> list[FlowArtifact]:
    """The flow items (typed, not deleted) of an Artifact queryset, in id order."""
    rows = (
        queryset.filter(flow_item_type__isnull=False, deleted_at__isnull=True)
        .order_by("id")
        .values_list(*_FLOW_ARTIFACT_COLUMNS)
    )
    return [FlowArtifact(*row) for row in rows[:limit]]


def flow_artifact_chunks(queryset) -> Iterator[list[FlowArtifact]]:
    """The flow items of an Artifact queryset, CHUNK_SIZE at a time (keyset paging on the id)."""
    after = 0
    while True:
        chunk = flow_artifacts(queryset.filter(pk__gt=after), limit=CHUNK_SIZE)
        if chunk:
            yield chunk
        if len(chunk) < CHUNK_SIZE:
            return
        after = chunk[-1].id


def ledgers_of(artifacts: Sequence[FlowArtifact]) -> list[ItemLedger]:
    """Each artifact's ledger, from one ordered query for all their transitions.

    The ledger's key is the artifact id and its flow type the type's id: the calculators only group
    by it, and ids survive a renamed slug.
    """
    transitions: dict[int, list] = defaultdict(list)
    rows = (
        StateTransition.objects.filter(artifact_id__in=[artifact.id for artifact in artifacts])
        .order_by("artifact_id", "at", "id")
        .values_list("artifact_id", "at", "from_state", "to_state")
    )
    for artifact_id, at, from_state, to_state in rows:
        transitions[artifact_id].append((at, from_state or None, to_state))
    return [
        ItemLedger(
            key=str(artifact.id),
            flow_type=artifact.flow_item_type_id,
            created_at=artifact.created_at,
            transitions=transitions.get(artifact.id, ()),
            current_state=artifact.flow_state,
        )
        for artifact in artifacts
    ]


def ledger_stream(artifact_queryset) -> Iterator[ItemLedger]:
    for chunk in flow_artifact_chunks(artifact_queryset):
        yield from ledgers_of(chunk)


def in_progress_between(rollups, first_sample: datetime, last_sample: datetime):
    """Rollups whose Active/Waiting span may hold a sample instant from first_sample to last_sample."""
    return rollups.filter(
        Q(in_progress_until__isnull=True) | Q(in_progress_until__gt=first_sample),
        in_progress_from__lte=last_sample,
    )


def load_by_type_id(rollups, days: Sequence[date], zone: ZoneInfo) -> dict[date, dict[int, int]]:
    """Load per day and type id of the items behind these rollups, from their ledgers."""
    if not days:
        return {}
    candidates = in_progress_between(
        rollups, load_sample_instant(min(days), zone), load_sample_instant(max(days), zone)
    )
    artifacts = Artifact.objects.filter(pk__in=candidates.values("artifact_id"))
    return flow_load(ledger_stream(artifacts), days, zone)


# --- flow metrics --------------------------------------------------------------------------------------


class _BucketIndex(Func):
    """The index i of the bucket [edges[i], edges[i + 1]) holding an instant: bisect_right(edges, t) - 1
    for a t from edges[0] on (the ascending UTC edges of calculators.bucket_bounds).

    Compared in SQL, instant to instant: no datetime reaches Python. PostgreSQL bisects with
    width_bucket; elsewhere it is a CASE of the edges.
    """

    output_field = IntegerField()

    def __init__(self, expression, edges: Sequence[datetime]) -> None:
        super().__init__(expression)
        self.edges = list(edges)

    def as_sql(self, compiler, connection, **extra_context):
        expression = self.get_source_expressions()[0]
        cases = Case(
            *(
                When(LessThan(expression, Value(edge)), then=Value(index))
                for index, edge in enumerate(self.edges[1:])
            ),
            default=Value(len(self.edges) - 1),
            output_field=IntegerField(),
        )
        return compiler.compile(cases)

    def as_postgresql(self, compiler, connection, **extra_context):
        sql, params = compiler.compile(self.get_source_expressions()[0])
        return f"(width_bucket({sql}, %s::timestamptz[]) - 1)", (*params, self.edges)


class _SecondsBetween(Func):
    """end - start in float seconds, as calculators take them: timedelta.total_seconds(), the exact
    microseconds rounded once to a float (PostgreSQL: exact numeric epochs; SQLite: integer microseconds).
    """

    output_field = FloatField()

    def as_sql(self, compiler, connection, **extra_context):
        raise NotSupportedError(f"_SecondsBetween has no SQL for {connection.vendor}")

    def as_sqlite(self, compiler, connection, **extra_context):
        (start, start_params), (end, end_params) = (
            compiler.compile(e) for e in self.get_source_expressions()
        )
        return f"(django_timestamp_diff({end}, {start}) / 1000000.0)", (*end_params, *start_params)

    def as_postgresql(self, compiler, connection, **extra_context):
        (start, start_params), (end, end_params) = (
            compiler.compile(e) for e in self.get_source_expressions()
        )
        sql = f"(EXTRACT(EPOCH FROM {end}) - EXTRACT(EPOCH FROM {start}))::double precision"
        return sql, (*end_params, *start_params)


class _EpochMicroseconds(Func):
    """An instant as exact integer microseconds since the Unix epoch: many rows of instants fetched as
    numbers, turned back into datetimes by calculators.from_epoch_microseconds at a fraction of the
    driver's cost."""

    output_field = BigIntegerField()

    def as_sql(self, compiler, connection, **extra_context):
        raise NotSupportedError(f"_EpochMicroseconds has no SQL for {connection.vendor}")

    def as_sqlite(self, compiler, connection, **extra_context):
        sql, params = compiler.compile(self.get_source_expressions()[0])
        return f"django_timestamp_diff({sql}, '1970-01-01 00:00:00')", params

    def as_postgresql(self, compiler, connection, **extra_context):
        sql, params = compiler.compile(self.get_source_expressions()[0])
        return f"(EXTRACT(EPOCH FROM {sql}) * 1000000)::bigint", params


@dataclass(frozen=True, slots=True)
class DoneColumns:
    """The items done in a window, one column per figure (the rows in artifact id order).

    Plain numbers only: the bucket (an index into the window's buckets) is found in SQL, so fetching
    100,000 items builds no datetime.
    """

    artifact_ids: Sequence[int]
    type_ids: Sequence[int]
    flow_times: Sequence[float]
    lead_times: Sequence[float]
    active_times: Sequence[float]
    buckets: Sequence[int]
    flow_times_from_restart: Sequence[float]

    def __len__(self) -> int:
        return len(self.artifact_ids)


def _done_in(rollups, window: Window):
    return rollups.filter(done_at__gte=window.start, done_at__lt=window.end)


def _rows(queryset) -> list[tuple]:
    """A values_list queryset's rows in one fetch, as the driver gives them: for columns of plain numbers,
    which need no conversion, and many rows (iterating the queryset fetches 100 at a time)."""
    try:
        sql, params = queryset.query.get_compiler(using=queryset.db).as_sql()
    except EmptyResultSet:
        return []
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _row_stream(queryset) -> Iterator[tuple]:
    """A values_list queryset's rows as the driver gives them (see _rows), fetched CHUNK_SIZE at a time
    through a server-side cursor where the database has them: for more rows than fit in memory."""
    try:
        sql, params = queryset.query.get_compiler(using=queryset.db).as_sql()
    except EmptyResultSet:
        return
    with connections[queryset.db].chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(CHUNK_SIZE):
            yield from rows


def _done_columns(rollups, window: Window, edges: Sequence[datetime]) -> DoneColumns:
    """The items done in the window (edges: the UTC edges of its buckets), one query."""
    rows = _rows(
        _done_in(rollups, window)
        .order_by("artifact_id")
        .values_list(
            "artifact_id",
            "flow_item_type_id",
            "flow_time",
            "lead_time",
            "active_time",
            _BucketIndex("done_at", edges),
            # A done item's restarted_at is set (done_at when it never restarted).
            _SecondsBetween("restarted_at", "done_at"),
        )
    )
    columns = list(zip(*rows, strict=True)) or [()] * len(DoneColumns.__slots__)
    return DoneColumns(*columns)


def _outlier_keys(rollups, window: Window, stats: Sequence[FlowTimeStats]) -> dict[int, str]:
    """The keys of the outliers of these four stats (flow, lead, active time, flow time from restart).

    One query for the items above one p95 or another: the same comparisons of the same floats as in
    duration_stats, in SQL.
    """
    if not any(figures.outliers for figures in stats):
        return {}
    flow, lead, active, restart = (figures.p95 for figures in stats)
    above = (
        _done_in(rollups, window)
        .alias(flow_time_from_restart=_SecondsBetween("restarted_at", "done_at"))
        .filter(
            Q(flow_time__gt=flow)
            | Q(lead_time__gt=lead)
            | Q(active_time__gt=active)
            | Q(flow_time_from_restart__gt=restart)
        )
    )
    return dict(above.values_list("artifact_id", "artifact__key"))


def _stats_json(stats: FlowTimeStats, keys: dict[int, str]) -> dict:
    return {
        "count": stats.count,
        "mean": stats.mean,
        "p50": stats.p50,
        "p85": stats.p85,
        "p95": stats.p95,
        "max": stats.max,
        "histogram": [
            {"lower": lower, "upper": upper, "count": count} for lower, upper, count in stats.histogram
        ],
        "outliers": [
            {"artifact": int(artifact_id), "key": keys[int(artifact_id)], "seconds": seconds}
            for artifact_id, seconds in stats.outliers
        ],
    }


def _load_from_table(
    user, product: Product, days: list[date], flow_type: FlowItemType | None, type_slugs: dict[int, str]
) -> tuple[dict[date, dict[str, int]], date | None]:
    """Load from DailyLoadRollup; days after the rollup's last day carry that day's load forward."""
    load_through = (
        ProductRollupState.objects.filter(product=product).values_list("load_through", flat=True).first()
    )
    if load_through is None or not days:
        return {day: {} for day in days}, load_through
    rows = DailyLoadRollup.objects.visible_to(user).filter(
        Q(day__gte=days[0], day__lte=min(days[-1], load_through)) | Q(day=load_through), product=product
    )
    if flow_type is not None:
        rows = rows.filter(flow_item_type=flow_type)
    counts: dict[date, dict[str, int]] = defaultdict(dict)
    for day, type_id, count in rows.values_list("day", "flow_item_type_id", "count"):
        counts[day][type_slugs[type_id]] = count
    return {day: dict(counts.get(min(day, load_through), {})) for day in days}, load_through


def _ordered_by_type(counts: dict[str, int], type_order: list[str]) -> dict[str, int]:
    return {slug: counts[slug] for slug in type_order if slug in counts}


def flow_metrics(
    user,
    product: Product,
    window: DayWindow,
    bucket: Bucket | str,
    team: Team | None = None,
    partner: Partner | None = None,
    flow_type: FlowItemType | None = None,
    *,
    now: datetime | None = None,
) -> dict:
    """Velocity, flow time, efficiency, load and distribution of the product, as the user may see them.

    Partner users, and any narrowing to a team or a partner's scope, get the load computed over the
    items in that scope only; otherwise it comes from the product-wide DailyLoadRollup.
    """
    zone = ZoneInfo(product.time_zone)
    bucket = Bucket(bucket)
    instants = window.instants(zone)
    today = local_today(product, now)
    types = list(FlowItemType.objects.order_by("order", "name").values_list("id", "slug"))
    type_slugs = dict(types)
    type_order = [slug for _, slug in types]
    rollups = item_rollups_scoped(user, product, flow_type=flow_type, team=team, partner=partner)

    starts, utc_edges = bucket_bounds(instants.start, instants.end, bucket, zone)
    done = _done_columns(rollups, instants, utc_edges)
    velocity = bucket_counts(starts, done.buckets, [type_slugs[type_id] for type_id in done.type_ids])
    efficiency = bucket_efficiency(starts, done.buckets, done.active_times, done.flow_times)
    # A canceled item is never done (calculators.item_flow): done_at IS NULL lets the count use the index
    # on (product, done_at) rather than read every rollup of the product.
    canceled = rollups.filter(
        done_at__isnull=True, canceled_at__gte=instants.start, canceled_at__lt=instants.end
    ).count()
    stats = [
        duration_stats_of(done.artifact_ids, seconds)
        for seconds in (done.flow_times, done.lead_times, done.active_times, done.flow_times_from_restart)
    ]
    keys = _outlier_keys(rollups, instants, stats)

    edges = [max(start, instants.start) for start in starts] + [instants.end]
    velocity_buckets, efficiency_buckets = [], []
    for index, start in enumerate(starts):
        counts = velocity[start]
        velocity_buckets.append(
            {
                "start": start,
                "done_after": edges[index],
                "done_before": edges[index + 1],
                "count": sum(counts.values()),
                "by_type": _ordered_by_type(counts, type_order),
            }
        )
        efficiency_buckets.append(
            {"start": start, "count": sum(counts.values()), "efficiency": efficiency.by_bucket[start]}
        )
    done_by_type = _ordered_by_type(total_by_type(velocity), type_order)

    load_days = [day for day in window.days() if day <= today]
    scoped_load = reach_of(user).is_partner or team is not None or partner is not None
    if scoped_load:
        by_id = load_by_type_id(rollups, load_days, zone)
        load = {
            day: {type_slugs[type_id]: n for type_id, n in counts.items()} for day, counts in by_id.items()
        }
        load_through = today
    else:
        load, load_through = _load_from_table(user, product, load_days, flow_type, type_slugs)
    load_by_type = _ordered_by_type(total_by_type(load), type_order)
    load_totals = [sum(counts.values()) for counts in load.values()]

    done_shares = flow_distribution(done_by_type)
    target = (
        ProductTarget.objects.visible_to(user)
        .filter(product=product)
        .values_list("allocation", flat=True)
        .first()
    )

    return {
        "product": {
            "id": product.pk,
            "slug": product.slug,
            "name": product.name,
            "time_zone": product.time_zone,
        },
        "window": {
            "first_day": window.first_day,
            "last_day": window.last_day,
            "start": instants.start,
            "end": instants.end,
            "bucket": bucket.value,
        },
        "scope": {
            "partner_view": reach_of(user).is_partner,
            "type": flow_type.slug if flow_type else None,
            "team": team.pk if team else None,
            "partner": partner.pk if partner else None,
        },
        "velocity": {"total": len(done), "by_type": done_by_type, "buckets": velocity_buckets},
        "canceled": canceled,
        **{
            name: _stats_json(figures, keys)
            for name, figures in zip(
                ("flow_time", "lead_time", "active_time", "flow_time_from_restart"), stats, strict=True
            )
        },
        "efficiency": {"overall": efficiency.overall, "buckets": efficiency_buckets},
        "load": {
            "source": "scope" if scoped_load else "product",
            "computed_through": load_through,
            "days": [
                {"day": day, "total": sum(counts.values()), "by_type": _ordered_by_type(counts, type_order)}
                for day, counts in load.items()
            ],
            "average": sum(load_totals) / len(load_totals) if load_totals else None,
        },
        "distribution": {
            "done": {"counts": done_by_type, "shares": flow_distribution(done_by_type)},
            "load": {"counts": load_by_type, "shares": flow_distribution(load_by_type)},
        },
        "allocation": (
            {"target": target, "deviation": allocation_deviation(done_shares, target)} if target else None
        ),
    }


# --- items ---------------------------------------------------------------------------------------------


def item_rollup_list(user):
    """Every flow item's rollup the user may see, with its artifact's key, title and url, and its team's
    owner (for Reach.may_name).

    `age_since` is when an open item's age starts (started_at, or created_at when it never started);
    None for done and canceled items.
    """
    return (
        ItemFlowRollup.objects.visible_to(user)
        .filter(artifact__deleted_at__isnull=True)
        .select_related("artifact", "flow_item_type", "team")
        .only(
            *(field.name for field in ItemFlowRollup._meta.concrete_fields),
            "artifact__key",
            "artifact__title",
            "artifact__url",
            "artifact__created_at",
            "flow_item_type__slug",
            "team__partner_id",
        )
        .annotate(
            age_since=Case(
                When(current_state__in=OPEN_STATES, then=Coalesce("started_at", "artifact__created_at")),
                default=None,
                output_field=DateTimeField(),
            )
        )
    )


def item_times_at(rollup: ItemFlowRollup, now: datetime) -> tuple[float | None, float | None, float | None]:
    """Active time, waiting time and efficiency of an item at `now` (calculators.item_flow at `now`).

    Done and canceled items' figures are final. An open item's were taken at measured_at; the time since
    adds to its active time while its ledger ends in Active, to its waiting time otherwise.
    """
    active, waiting = rollup.active_time, rollup.waiting_time
    if rollup.current_state in (DONE, CANCELED) or rollup.started_at is None:
        return active, waiting, rollup.efficiency
    since = max((now - rollup.measured_at).total_seconds(), 0.0)
    if rollup.last_state == ACTIVE:
        active += since
    else:
        waiting += since
    return active, waiting, (active / (active + waiting) if active + waiting else None)


# --- forecast ------------------------------------------------------------------------------------------


def daily_done_counts(rollups, history: DayWindow, zone: ZoneInfo) -> list[int]:
    """Items done on each local day of the history window, zeros included."""
    instants = history.instants(zone)
    done_at = rollups.filter(done_at__gte=instants.start, done_at__lt=instants.end).values_list(
        "done_at", flat=True
    )
    return daily_throughput(
        (at.astimezone(zone).date() for at in done_at), history.first_day, history.last_day
    )


def recent_daily_done_counts(user, products, days: int, now: datetime | None = None) -> dict[int, list[int]]:
    """For each product: the items (as the user may see them) done on each of its last `days` local days
    before today, zeros included; one query for all the products."""
    now = now or timezone.now()
    windows = {}
    for product in products:
        today = local_today(product, now)
        zone = ZoneInfo(product.time_zone)
        windows[product.pk] = (zone, DayWindow(today - timedelta(days=days), today - timedelta(days=1)))
    if not windows:
        return {}
    instants = [window.instants(zone) for zone, window in windows.values()]
    done: dict[int, list[datetime]] = defaultdict(list)
    rows = ItemFlowRollup.objects.visible_to(user).filter(
        product_id__in=list(windows),
        done_at__gte=min(span.start for span in instants),
        done_at__lt=max(span.end for span in instants),
    )
    for product_id, at in rows.values_list("product_id", "done_at"):
        done[product_id].append(at)
    return {
        product_id: daily_throughput(
            (at.astimezone(zone).date() for at in done[product_id]), window.first_day, window.last_day
        )
        for product_id, (zone, window) in windows.items()
    }


def flow_forecast(
    user,
    product: Product,
    history: DayWindow,
    *,
    items: int | None = None,
    until: date | None = None,
    start_day: date | None = None,
    flow_type: FlowItemType | None = None,
    team: Team | None = None,
    partner: Partner | None = None,
) -> dict:
    """Monte Carlo over the daily throughput of the history window (seeded: repeatable).

    With `items`: the dates by which that many items are done at 50/85/95% confidence, counting from
    start_day (default: the local today). With `until`: how many items are done from start_day to
    `until`, both included. Raises NoHistoryError when nothing was done in the history window, and
    ValueError for a forecast that cannot be made.
    """
    if (items is None) == (until is None):
        raise ValueError("give either items or until")
    zone = ZoneInfo(product.time_zone)
    start_day = start_day or local_today(product)
    rollups = item_rollups_scoped(user, product, flow_type=flow_type, team=team, partner=partner)
    throughput = daily_done_counts(rollups, history, zone)
    done = sum(throughput)
    if not done:
        raise NoHistoryError(
            f"no items were done between {history.first_day} and {history.last_day}; widen the history window"
        )
    result = {
        "product": {"id": product.pk, "slug": product.slug},
        "history": {
            "first_day": history.first_day,
            "last_day": history.last_day,
            "days": len(throughput),
            "done": done,
            "per_day": done / len(throughput),
        },
        "start_day": start_day,
        "trials": FORECAST_TRIALS,
        "seed": FORECAST_SEED,
    }
    if items is not None:
        dates = monte_carlo_when(
            throughput,
            items,
            start_day,
            trials=FORECAST_TRIALS,
            seed=FORECAST_SEED,
            max_days=FORECAST_MAX_DAYS,
        )
        result["items"] = items
        result["forecast"] = [{"confidence": level, "date": dates[level]} for level in CONFIDENCE_LEVELS]
    else:
        days = (until - start_day).days + 1
        counts = monte_carlo_how_many(throughput, days, trials=FORECAST_TRIALS, seed=FORECAST_SEED)
        result["until"] = until
        result["days"] = days
        result["forecast"] = [{"confidence": level, "items": counts[level]} for level in CONFIDENCE_LEVELS]
    return result


# --- DORA ----------------------------------------------------------------------------------------------
# The rules are metrics.calculators' (its DORA block). Whatever the window, four queries, all through
# visible_to(user), so a partner user's figures come from its scope only (artifacts it may see, links
# whose two ends it may see):
# 1. the product's deployments, with three keys of their fields (not the whole JSON);
# 2. the product's built_in, released_in and deployed_in links, with the commits at their sources;
# 3. the incidents and defects (not canceled) created from the window's start to its end plus the
#    failure window (blamed on a deployment in the window, or failing inside it);
# 4. the links of those incidents and defects, but for the repair kinds (one more query per CHUNK_SIZE
#    of them);
# 5. with lead time per pull request only: the committed_in links from the product's pull requests to
#    its commits, with the commits' keys and times.
# The links are _visible_links (their ends tested row by row; see ArtifactLinkQuerySet.between).
# Every deployment and pipeline link of the product is read, whatever the window: "first deployment that
# contains a commit" and "next succeeded deployment" look before and after it.

DORA_DEPLOYMENT_MODEL = "deployment"
DORA_COMMIT_MODEL = "commit"
DORA_PULL_REQUEST_MODEL = "pull-request"
DORA_PULL_REQUEST_LINK_KIND = "committed_in"  # from the pull request to each of its commits
DORA_FAILURE_MODELS = ("incident", "defect")
DORA_MAX_FAILURE_WINDOW_DAYS = 365


def _dora_ref(key: str | None, labels: dict[int, str]) -> dict | None:
    if key is None:
        return None
    return {"artifact": int(key), "key": labels[int(key)]}


def _dora_stats(stats: FlowTimeStats) -> dict:
    return {
        "count": stats.count,
        "mean": stats.mean,
        "p50": stats.p50,
        "p85": stats.p85,
        "p95": stats.p95,
        "max": stats.max,
    }


def _dora_level(level: calculators.DoraLevel) -> dict:
    return {
        "level": level.level,
        "band": level.band,
        "measure": level.measure,
        "value": level.value,
        "reason": level.reason,
    }


def _dora_pull_requests(user, product: Product, labels: dict[int, str]) -> dict[str, dict[str, datetime]]:
    """The product's pull requests the user may see -> {commit: commit time} of their visible commits."""
    links = _visible_links(user).filter(
        kind=DORA_PULL_REQUEST_LINK_KIND,
        source__product=product,
        source__deleted_at__isnull=True,
        source__artifact_model__slug=DORA_PULL_REQUEST_MODEL,
        target__product=product,
        target__deleted_at__isnull=True,
        target__artifact_model__slug=DORA_COMMIT_MODEL,
    )
    pull_requests: dict[str, dict[str, datetime]] = defaultdict(dict)
    for source, source_key, target, target_key, committed_at in links.values_list(
        "source_id", "source__key", "target_id", "target__key", "target__created_at"
    ):
        labels[source], labels[target] = source_key, target_key
        pull_requests[str(source)][str(target)] = committed_at
    return pull_requests


def dora_metrics(
    user,
    product: Product,
    window: DayWindow,
    bucket: Bucket | str,
    production_pattern: str | None = None,
    failure_window_days: int = calculators.DORA_DEFAULT_FAILURE_WINDOW_DAYS,
    lead_time_convention: str = calculators.DORA_LEAD_TIME_COMMIT,
    failure_rate_convention: str = calculators.DORA_FAILURE_RATE_ATTEMPTS,
) -> dict:
    """The four DORA metrics of the product over a window of local days, as the user may see them, each
    with its performance level; lead time per commit or per pull request, change failure rate over every
    finished attempt or over the successful deployments (calculators' DORA conventions).

    Raises ValueError for a production pattern that does not compile, a failure window that is not
    1 to DORA_MAX_FAILURE_WINDOW_DAYS days and an unknown convention.
    """
    pattern = calculators.dora_production_pattern(production_pattern)
    if not 0 < failure_window_days <= DORA_MAX_FAILURE_WINDOW_DAYS:
        raise ValueError(
            f"the failure window must be 1 to {DORA_MAX_FAILURE_WINDOW_DAYS} days, got {failure_window_days}"
        )
    if lead_time_convention not in calculators.DORA_LEAD_TIME_CONVENTIONS:
        raise ValueError(f"unknown lead time convention {lead_time_convention!r}")
    if failure_rate_convention not in calculators.DORA_FAILURE_RATE_CONVENTIONS:
        raise ValueError(f"unknown change failure rate convention {failure_rate_convention!r}")
    zone = ZoneInfo(product.time_zone)
    bucket = Bucket(bucket)
    instants = window.instants(zone)
    failure_window = timedelta(days=failure_window_days)
    artifacts = Artifact.objects.visible_to(user).filter(product=product, deleted_at__isnull=True)
    labels: dict[int, str] = {}

    deployments, environments = [], {}
    rows = artifacts.filter(artifact_model__slug=DORA_DEPLOYMENT_MODEL).values_list(
        "id",
        "key",
        "created_at",
        "done_at",
        "flow_state",
        "fields__environment",
        "fields__result",
        "fields__status",
    )
    for artifact_id, key, created_at, done_at, flow_state, environment, result, status in rows:
        labels[artifact_id] = key
        deployment = calculators.DoraDeployment(
            key=str(artifact_id),
            at=done_at or created_at,
            environment=calculators.deployment_environment(environment),
            outcome=calculators.deployment_outcome(result, status, flow_state),
        )
        environments[deployment.key] = deployment.environment
        deployments.append(deployment)
    production = calculators.production_deployments(deployments, pattern)

    links = _visible_links(user).filter(
        kind__in=sorted(calculators.DORA_PIPELINE_LINK_KINDS),
        source__product=product,
        source__deleted_at__isnull=True,
        target__product=product,
        target__deleted_at__isnull=True,
    )
    pipeline_links, commits = [], {}
    for source, target, kind, model, key, created_at in links.values_list(
        "source_id", "target_id", "kind", "source__artifact_model__slug", "source__key", "source__created_at"
    ):
        pipeline_links.append((str(source), str(target), kind))
        if model == DORA_COMMIT_MODEL:
            labels[source] = key
            commits[str(source)] = created_at
    shipped = calculators.first_shipped_in(production, pipeline_links)

    failures = artifacts.filter(
        artifact_model__slug__in=DORA_FAILURE_MODELS,
        created_at__gte=instants.start,
        created_at__lt=instants.end + failure_window,
    ).exclude(flow_state=CANCELED)
    failure_rows = list(failures.values_list("id", "key", "artifact_model__slug", "created_at", "done_at"))
    linked: dict[int, set[str]] = defaultdict(set)
    not_repair = ~Q(kind__in=sorted(calculators.DORA_REPAIR_LINK_KINDS))
    for chunk in _id_chunks([row[0] for row in failure_rows]):
        ends = [("source", not_repair, chunk), ("target", not_repair, chunk)]
        for _, source, target, _ in _links_by_end(_visible_links(user), ends):
            linked[source].add(str(target))
            linked[target].add(str(source))
    incidents = []
    for artifact_id, key, model, created_at, done_at in failure_rows:
        labels[artifact_id] = key
        incidents.append(
            calculators.DoraIncident(
                key=str(artifact_id),
                kind=model,
                created_at=created_at,
                resolved_at=done_at,
                linked=frozenset(linked.get(artifact_id, ())),
            )
        )
    blamed = calculators.blame_incidents(incidents, production, shipped, failure_window)

    frequency = calculators.deployment_frequency(production, instants, bucket, zone)
    days = calculators.deployment_days(production, instants, zone)
    if lead_time_convention == calculators.DORA_LEAD_TIME_PULL_REQUEST:
        pull_requests = _dora_pull_requests(user, product, labels)
        lead_time = calculators.pull_request_lead_time(pull_requests, shipped, instants, bucket, zone)
    else:
        lead_time = calculators.lead_time_for_changes(commits, shipped, instants, bucket, zone)
    failure_rate = calculators.change_failure_rate(
        production, blamed, instants, bucket, zone, convention=failure_rate_convention
    )
    recovery = calculators.failed_deployment_recovery_time(production, blamed, instants, bucket, zone)
    at_of = {deployment.key: deployment.at for deployment in production}

    def ref(key: str | None) -> dict | None:
        return _dora_ref(key, labels)

    def keys(artifact_keys) -> list[str]:
        return [labels[int(key)] for key in artifact_keys]

    def change_row(change: calculators.ChangeLeadTime) -> dict:
        row = {
            "commit": ref(change.commit),
            "deployment": ref(change.deployment),
            "committed_at": change.committed_at,
            "deployed_at": change.deployed_at,
            "seconds": change.seconds,
            "bucket": change.bucket,
        }
        if change.pull_request is not None:
            row.update(pull_request=ref(change.pull_request), commits=change.commits)
        return row

    return {
        "product": {
            "id": product.pk,
            "slug": product.slug,
            "name": product.name,
            "time_zone": product.time_zone,
        },
        "window": {
            "first_day": window.first_day,
            "last_day": window.last_day,
            "start": instants.start,
            "end": instants.end,
            "bucket": bucket.value,
        },
        "scope": {"partner_view": reach_of(user).is_partner},
        "rules": {
            "production": pattern.pattern,
            "failure_window_days": failure_window_days,
            "lead_time": lead_time_convention,
            "failure_rate": failure_rate_convention,
            "levels": calculators.DORA_BENCHMARK,
        },
        "deployment_frequency": {
            "total": frequency.total,
            "days": frequency.days,
            "per_day": frequency.per_day,
            "per_week": frequency.per_week,
            "buckets": [
                {"start": start, "count": len(bucket_keys), "keys": keys(bucket_keys)}
                for start, bucket_keys in frequency.by_bucket.items()
            ],
            "deployments": [
                {**ref(key), "at": at_of[key], "environment": environments[key], "bucket": start}
                for start, bucket_keys in frequency.by_bucket.items()
                for key in bucket_keys
            ],
            "deployment_days": {
                "days": days.days,
                "weeks": [{"start": start, "days": count} for start, count in days.weeks.items()],
                "months": [{"start": start, "days": count} for start, count in days.months.items()],
                "median_per_week": days.median_per_week,
                "median_per_month": days.median_per_month,
            },
            "level": _dora_level(calculators.deployment_frequency_level(days)),
        },
        "lead_time_for_changes": {
            **_dora_stats(lead_time.stats),
            "buckets": [
                {
                    "start": start,
                    **_dora_stats(stats),
                    "keys": keys(c.change for c in lead_time.changes if c.bucket == start),
                }
                for start, stats in lead_time.by_bucket.items()
            ],
            "changes": [change_row(c) for c in lead_time.changes],
            "level": _dora_level(calculators.lead_time_level(lead_time)),
        },
        "change_failure_rate": {
            "deployments": failure_rate.deployments,
            "failed": failure_rate.failed,
            "rate": failure_rate.rate,
            "buckets": [
                {
                    "start": start,
                    "deployments": counts.deployments,
                    "failed": counts.failed,
                    "rate": counts.rate,
                    "keys": keys(
                        r.deployment for r in failure_rate.results if r.bucket == start and r.failed
                    ),
                }
                for start, counts in failure_rate.by_bucket.items()
            ],
            "results": [
                {
                    **ref(result.deployment),
                    "at": result.at,
                    "failed": result.failed,
                    "deployment_failed": result.deployment_failed,
                    "incidents": [ref(key) for key in result.incidents],
                    "bucket": result.bucket,
                }
                for result in failure_rate.results
            ],
            "level": _dora_level(calculators.failure_rate_level(failure_rate)),
        },
        "failed_deployment_recovery_time": {
            **_dora_stats(recovery.stats),
            "unrecovered": recovery.unrecovered,
            "buckets": [
                {
                    "start": start,
                    **_dora_stats(stats),
                    "keys": keys(f.failure for f in recovery.failures if f.bucket == start),
                }
                for start, stats in recovery.by_bucket.items()
            ],
            "failures": [
                {
                    **ref(failure.failure),
                    "kind": failure.kind,
                    "deployment": ref(failure.deployment),
                    "failed_at": failure.failed_at,
                    "recovered_at": failure.recovered_at,
                    "recovered_by": ref(failure.recovered_by),
                    "seconds": failure.seconds,
                    "bucket": failure.bucket,
                }
                for failure in recovery.failures
            ],
            "level": _dora_level(calculators.recovery_level(recovery)),
        },
    }


# --- end of DORA ----------------------------------------------------------------------------------------


# --- end-to-end lead time and bottlenecks ----------------------------------------------------------------
# The rules are metrics.calculators' (its "End-to-end lead time across tools, and bottlenecks" block).
# Every read goes through visible_to(user): a link is followed only when both of its ends are visible,
# so a partner user sees the part of a chain inside its scope, and nothing reached only through a hidden
# artifact. Queries, never one per row:
# - lead time: 1 for the requests; per level of the walk, 1 per CHUNK_SIZE frontier ids for the
#   downstream links (at most TRACE_MAX_LEVELS levels: the depth of the deepest chain, plus one);
#   per CHUNK_SIZE reached artifacts, 2 (the artifacts with four keys of their fields, their transitions);
# - bottlenecks: per CHUNK_SIZE candidate items, 2 (the items, their transitions).

TRACE_REQUEST_MODELS = ("request",)
TRACE_MAX_LEVELS = 32
TRACE_ORDERINGS = ("created_at", "delivered_at", "lead_time", "age")
BOTTLENECK_MAX_ITEMS = 50


def _id_chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for offset in range(0, len(ids), CHUNK_SIZE):
        yield ids[offset : offset + CHUNK_SIZE]


def _visible_links(user):
    """The visible links (ArtifactLink's visible_to) between two artifacts that are not deleted."""
    return ArtifactLink.objects.between(Artifact.objects.visible_to(user).filter(deleted_at__isnull=True))


def _links_by_end(links, branches: Sequence[tuple[str, Q, Collection[int]]]):
    """(id, source, target, kind) of the links matching any branch, each branch (end, kinds, ids) one simple
    select on `end_id IN ids` glued by UNION: one query, and each part uses the index on that end
    (link_unique, link_target_kind). An OR of IN lists over both ends makes SQLite scan every link.
    Branches with no ids are left out; at least one must have some."""
    parts = [
        links.filter(kinds, **{f"{end}_id__in": ids})
        .order_by()  # a part of a compound select cannot be ordered on SQLite
        .values_list("id", "source_id", "target_id", "kind")
        for end, kinds, ids in branches
        if ids
    ]
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


def downstream_links(
    user, start_ids: Sequence[int], max_levels: int = TRACE_MAX_LEVELS
) -> list[tuple[int, int, str]]:
    """The visible links downstream of these artifacts, as (source, target, kind), level by level (at
    most max_levels levels: one query each per CHUNK_SIZE frontier ids)."""
    links = _visible_links(user)
    from_target = Q(kind__in=sorted(calculators.DOWNSTREAM_FROM_TARGET))
    from_source = Q(kind__in=sorted(calculators.DOWNSTREAM_FROM_SOURCE))
    seen = set(start_ids)
    frontier = sorted(seen)
    edges: set[tuple[int, int, str]] = set()
    for _ in range(max_levels):
        if not frontier:
            break
        reached: set[int] = set()
        for chunk in _id_chunks(frontier):
            rows = _links_by_end(links, [("target", from_target, chunk), ("source", from_source, chunk)])
            for _, source, target, kind in rows:
                edges.add((source, target, kind))
                reached.add(source if kind in calculators.DOWNSTREAM_FROM_TARGET else target)
        frontier = sorted(reached - seen)
        seen |= reached
    return sorted(edges)


@dataclass(frozen=True, slots=True)
class TraceChain:
    """The chain an artifact belongs to, as the user may see it (see trace_chain)."""

    start: int
    node_ids: tuple[int, ...]  # the start first, then in the order the walk reached them
    upstream_ids: frozenset[int]  # the start's ancestors (requests, features...): the chain's roots side
    edges: tuple[tuple[int, int, str], ...]  # (source, target, kind), both ends among node_ids
    cut_nodes: bool  # more artifacts were linked than max_nodes
    cut_depth: bool  # the walk stopped at max_levels with items left to look further from


def trace_chain(user, start_id: int, *, max_nodes: int, max_levels: int) -> TraceChain:
    """The whole chain of an artifact through the visible links: everything upstream of it (its parents
    up to the customer request), everything downstream of those and of it (the siblings, commits, builds,
    releases), and the other links (relates to) of each, one hop, not followed further.

    Level by level, one query a level, at most max_levels levels and max_nodes artifacts; either bound
    reached is reported (cut_depth, cut_nodes), never hidden. Upstream and downstream are the link kinds'
    directions of calculators.DOWNSTREAM_FROM_TARGET / DOWNSTREAM_FROM_SOURCE.
    """
    from_target, from_source = calculators.DOWNSTREAM_FROM_TARGET, calculators.DOWNSTREAM_FROM_SOURCE
    directed = from_target | from_source
    links = _visible_links(user)
    # A link leads up from its child end and down from its parent end; from_target kinds point child ->
    # parent, from_source kinds parent -> child.
    parents_by_source = children_by_target = Q(kind__in=sorted(from_target))
    parents_by_target = children_by_source = Q(kind__in=sorted(from_source))
    undirected = ~Q(kind__in=sorted(directed))
    order, upstream = [start_id], {start_id}
    seen = {start_id}
    up, down = {start_id}, {start_id}
    edges: set[tuple[int, int, str]] = set()
    cut_nodes = cut_depth = False
    row_limit = 4 * max_nodes  # a hub (a release of thousands of commits) cannot flood one level

    def reach(node: int) -> bool:
        nonlocal cut_nodes
        if node in seen:
            return False
        if len(seen) >= max_nodes:
            cut_nodes = True
            return False
        seen.add(node)
        order.append(node)
        return True

    for level in range(max_levels + 1):
        if not (up or down):
            break
        if level == max_levels:
            cut_depth = True
            break
        either = up | down
        branches = [
            ("source", parents_by_source, up),
            ("target", parents_by_target, up),
            ("target", children_by_target, down),
            ("source", children_by_source, down),
            ("source", undirected, either),
            ("target", undirected, either),
        ]
        rows = list(_links_by_end(links, branches).order_by("id")[:row_limit])
        if len(rows) == row_limit:
            cut_nodes = True
        next_up: set[int] = set()
        next_down: set[int] = set()
        for _, source, target, kind in rows:
            if kind in directed:
                parent, child = (target, source) if kind in from_target else (source, target)
                if child in up and reach(parent):
                    upstream.add(parent)
                    next_up.add(parent)
                    next_down.add(parent)
                if parent in down and reach(child):
                    next_down.add(child)
            else:
                for node in (source, target):
                    reach(node)
            if source in seen and target in seen:
                edges.add((source, target, kind))
        up, down = next_up, next_down
    upstream.discard(start_id)
    return TraceChain(
        start=start_id,
        node_ids=tuple(order),
        upstream_ids=frozenset(upstream),
        edges=tuple(sorted(edges)),
        cut_nodes=cut_nodes,
        cut_depth=cut_depth,
    )


def _aware_instant(value: object) -> datetime | None:
    """An ISO 8601 instant from a fields value (naive: UTC); None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def chain_nodes(user, ids: set[int], now: datetime) -> dict[int, calculators.ChainNode]:
    """The visible, not deleted artifacts among ids as calculators.ChainNode, done_at from their ledgers."""
    artifacts = Artifact.objects.visible_to(user).filter(deleted_at__isnull=True)
    nodes: dict[int, calculators.ChainNode] = {}
    for chunk in _id_chunks(sorted(ids)):
        rows = list(
            artifacts.filter(pk__in=chunk).values_list(
                "id",
                "key",
                "artifact_model__slug",
                "connection__kind",
                "created_at",
                "done_at",
                "flow_state",
                "fields__environment",
                "fields__result",
                "fields__status",
                "fields__released_at",
                "tool_status",
            )
        )
        transitions: dict[int, list] = defaultdict(list)
        for artifact_id, at, from_state, to_state in (
            StateTransition.objects.filter(artifact_id__in=[row[0] for row in rows])
            .order_by("artifact_id", "at", "id")
            .values_list("artifact_id", "at", "from_state", "to_state")
        ):
            transitions[artifact_id].append((at, from_state or None, to_state))
        for (
            artifact_id,
            key,
            model,
            tool,
            created_at,
            stored_done_at,
            state,
            environment,
            result,
            status,
            released_at,
            tool_status,
        ) in rows:
            ledger = ItemLedger(str(artifact_id), None, created_at, transitions.get(artifact_id, ()), state)
            flow = calculators.item_flow(ledger, now)
            done_at = flow.done_at
            if done_at is None and state == DONE:
                done_at = stored_done_at
            nodes[artifact_id] = calculators.ChainNode(
                id=artifact_id,
                key=key,
                model=model,
                created_at=created_at,
                state=state,
                done_at=done_at,
                tool=tool,
                environment=environment,
                result=result,
                status=status,
                released_at=_aware_instant(released_at) if model == calculators.RELEASE_MODEL else None,
                canceled_at=flow.canceled_at,
                tool_status=tool_status,
            )
    return nodes


@dataclass(frozen=True, slots=True)
class RequestDeliveries:
    traces: dict[int, calculators.Trace]
    nodes: dict[int, calculators.ChainNode]  # the requests and everything downstream the user may see
    figures: dict[int, calculators.RequestLeadTime]  # per visible, not deleted request


def request_deliveries(
    user, request_ids: Sequence[int], now: datetime, *, max_levels: int = TRACE_MAX_LEVELS
) -> RequestDeliveries:
    """Each request's chain downstream (at most max_levels links deep), its nodes and its lead-time
    figures, as the user may see them."""
    graph = calculators.downstream_graph(downstream_links(user, request_ids, max_levels))
    traces = {request_id: calculators.trace_downstream(request_id, graph) for request_id in request_ids}
    nodes = chain_nodes(
        user, {node for trace in traces.values() for node in (trace.start, *trace.nodes)}, now
    )
    figures = {
        request_id: calculators.request_lead_time(nodes[request_id], nodes, trace, now=now)
        for request_id, trace in traces.items()
        if request_id in nodes
    }
    return RequestDeliveries(traces, nodes, figures)


def _ordered_rows(rows: list[dict], ordering: str) -> list[dict]:
    """Rows by one of TRACE_ORDERINGS ("-" first: descending), empty values last, ties in input order."""
    name = ordering.removeprefix("-")
    present = [row for row in rows if row[name] is not None]
    present.sort(key=lambda row: row[name], reverse=ordering.startswith("-"))
    return present + [row for row in rows if row[name] is None]


def request_lead_times(
    user,
    product: Product,
    window: DayWindow,
    *,
    status: str = "all",
    ordering: str = "created_at",
    now: datetime | None = None,
) -> dict:
    """End-to-end lead time of the product's requests, as the user may see them.

    Listed: the requests delivered inside the window, those canceled (declined) inside it, and those
    created before its end and still open (their age taken at `now`); a synced copy of a request the user
    sees is that request, not one of its own. `status` keeps "all", "delivered", "open" or "canceled"
    ones; rows come by created_at (then id) unless `ordering` names one of TRACE_ORDERINGS.
    """
    zone = ZoneInfo(product.time_zone)
    instants = window.instants(zone)
    now = now or timezone.now()
    requests = list(
        Artifact.objects.visible_to(user)
        .without_copies_for(user)
        .filter(
            product=product,
            artifact_model__slug__in=TRACE_REQUEST_MODELS,
            deleted_at__isnull=True,
            created_at__lt=instants.end,
        )
        .order_by("created_at", "id")
        .values_list("id", "title", "url")
    )
    deliveries = request_deliveries(user, [row[0] for row in requests], now)
    nodes = deliveries.nodes

    rows = []
    for request_id, title, url in requests:
        figures = deliveries.figures.get(request_id)
        if figures is None:
            continue
        request, trace = nodes[request_id], deliveries.traces[request_id]
        if figures.delivered:
            row_status, closed = "delivered", figures.delivered_at
        elif figures.canceled:
            row_status, closed = "canceled", figures.closed_at
        else:
            row_status, closed = "open", None
        if status not in ("all", row_status) or (closed is not None and closed not in instants):
            continue
        delivered_by = nodes[figures.delivered_by] if figures.delivered_by is not None else None
        rows.append(
            {
                "artifact": request_id,
                "key": request.key,
                "title": title,
                "url": url,
                "created_at": request.created_at,
                "status": row_status,
                "delivered": figures.delivered,
                "delivered_at": figures.delivered_at,
                "closed_at": figures.closed_at,
                "closed_as": figures.closed_as,
                "delivered_by": (
                    {"artifact": delivered_by.id, "key": delivered_by.key} if delivered_by else None
                ),
                "lead_time": figures.lead_time,
                "age": figures.age,
                "furthest_segment": figures.furthest_segment,
                "segments": figures.segments,
                "work_items": figures.work_items,
                "work_items_done": figures.work_items_done,
                "chain": [nodes[node].key for node in trace.nodes if node in nodes],
                "cyclic": trace.cyclic,
            }
        )
    delivered = [row for row in rows if row["delivered"]]
    canceled = sum(1 for row in rows if row["status"] == "canceled")
    stats = duration_stats((row["key"], row["lead_time"]) for row in delivered)
    return {
        "product": {"id": product.pk, "slug": product.slug, "name": product.name},
        "window": {
            "first_day": window.first_day,
            "last_day": window.last_day,
            "start": instants.start,
            "end": instants.end,
        },
        "summary": {
            "requests": len(rows),
            "delivered": len(delivered),
            "canceled": canceled,
            "open": len(rows) - len(delivered) - canceled,
            "lead_time": {
                "count": stats.count,
                "mean": stats.mean,
                "p50": stats.p50,
                "p85": stats.p85,
                "p95": stats.p95,
                "max": stats.max,
            },
            "segments_mean": {
                phase: (
                    sum(row["segments"][phase] for row in delivered) / len(delivered) if delivered else None
                )
                for phase in calculators.PHASES
            },
        },
        "requests": _ordered_rows(rows, ordering),
    }


def _status_ledgers(items, keys: dict[str, str]) -> Iterator[calculators.StatusLedger]:
    """The items' status ledgers in id order; fills keys (id -> tool key).

    Two queries: the items, and their transitions in artifact order, streamed (CHUNK_SIZE rows a fetch)
    and walked beside the items.
    """
    rows = list(
        items.order_by("id").values_list(
            "id", "key", "connection__kind", "created_at", "flow_state", "tool_status"
        )
    )
    transitions = _row_stream(
        StateTransition.objects.filter(artifact__in=items.values("pk"))
        .order_by("artifact_id", "at", "id")
        .values_list(
            "artifact_id", _EpochMicroseconds("at"), "from_state", "to_state", "from_status", "to_status"
        )
    )
    pending = next(transitions, None)
    for artifact_id, key, tool, created_at, state, tool_status in rows:
        ledger = []
        while pending is not None and pending[0] == artifact_id:
            _, at, from_state, to_state, from_status, to_status = pending
            ledger.append(
                calculators.StatusTransition(
                    calculators.from_epoch_microseconds(at),
                    from_state or None,
                    to_state,
                    from_status,
                    to_status,
                )
            )
            pending = next(transitions, None)
        keys[str(artifact_id)] = key
        yield calculators.StatusLedger(
            key=str(artifact_id),
            tool=tool,
            created_at=created_at,
            transitions=ledger,
            current_state=state,
            current_status=tool_status,
        )


def _bottleneck_json(place: calculators.Bottleneck, keys: dict[str, str]) -> dict:
    name = {"state": place.state} if place.state is not None else {"tool": place.tool, "status": place.status}
    return {
        **name,
        "current": place.current,
        "peak": place.peak,
        "peak_day": place.peak_at,
        "visits": place.visits,
        "mean": place.mean,
        "p85": place.p85,
        "total": place.total,
        "item_count": place.item_count,
        "items": [
            {"artifact": int(artifact_id), "key": keys[artifact_id], "seconds": seconds}
            for artifact_id, seconds in place.items
        ],
    }


def bottlenecks(
    user,
    product: Product,
    window: DayWindow,
    *,
    max_items: int = BOTTLENECK_MAX_ITEMS,
    now: datetime | None = None,
) -> dict:
    """Where the product's flow items (as the user may see them) spend their time in flow, ranked.

    Per flow state and per tool status: current count (at the window's end, or now), peak count at the
    local day ends of the window up to today, visits, mean and p85 time per visit, total time in the
    window, and the items that spent the most time there (at most max_items, with item_count).
    """
    zone = ZoneInfo(product.time_zone)
    instants = window.instants(zone)
    now = now or timezone.now()
    today = local_today(product, now)
    items = (
        Artifact.objects.visible_to(user)
        .filter(
            product=product,
            flow_item_type__isnull=False,
            deleted_at__isnull=True,
            created_at__lt=instants.end,
        )
        .filter(
            # With no transition since the window's start, an item spends the whole window in its current
            # state: nothing to count unless that is a bottleneck state (new, done and canceled are not).
            Q(flow_state__in=sorted(calculators.BOTTLENECK_STATES))
            | Exists(StateTransition.objects.filter(artifact_id=OuterRef("pk"), at__gte=instants.start))
        )
    )
    keys: dict[str, str] = {}
    samples = {day: load_sample_instant(day, zone) for day in window.days() if day <= today}
    result = calculators.bottlenecks(
        _status_ledgers(items, keys), instants, samples, now, max_items=max_items
    )
    return {
        "product": {"id": product.pk, "slug": product.slug, "name": product.name},
        "window": {
            "first_day": window.first_day,
            "last_day": window.last_day,
            "start": instants.start,
            "end": instants.end,
            "until": min(instants.end, now),
        },
        "states": [_bottleneck_json(place, keys) for place in result.states],
        "statuses": [_bottleneck_json(place, keys) for place in result.statuses],
    }


# --- end of end-to-end lead time and bottlenecks --------------------------------------------------------
