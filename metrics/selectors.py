"""Reads of the flow metrics: from the rollups, always through `visible_to(user)`.

The pure math is metrics.calculators; these functions fetch the rows (a fixed number of queries,
never one per item) and shape the results. Durations are float seconds, instants aware datetimes,
days local dates in the product's time zone.
"""

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.db.models import Case, DateTimeField, Q, When
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone

from metrics.calculators import (
    ACTIVE,
    CANCELED,
    CONFIDENCE_LEVELS,
    DONE,
    Bucket,
    FlowTimeStats,
    ItemFlow,
    ItemLedger,
    Window,
    allocation_deviation,
    bucket_starts,
    daily_throughput,
    duration_stats,
    flow_distribution,
    flow_efficiency,
    flow_load,
    flow_time_stats,
    flow_velocity,
    monte_carlo_how_many,
    monte_carlo_when,
    total_by_type,
)
from metrics.models import DailyLoadRollup, ItemFlowRollup, ProductRollupState, ProductTarget
from vsm.models import Artifact, FlowItemType, Partner, Product, StateTransition, Team
from vsm.scoping import reach_of

CHUNK_SIZE = 5000
MAX_WINDOW_YEARS = 3
FORECAST_TRIALS = 10_000
FORECAST_SEED = 20260105  # fixed: the same history gives the same forecast
FORECAST_MAX_DAYS = 730
OPEN_STATES = ("new", "waiting", "active", "unknown")


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
    if value.isdigit() and len(value) < 19:
        product = products.filter(pk=int(value)).first()
    if product is None:
        product = products.filter(slug=value).first()
    if product is None:
        raise Http404(f"no product {value!r} among the products you can see")
    return product


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


def _done_items(rollups, window: Window, type_slugs: dict[int, str]) -> tuple[list[ItemFlow], dict[int, str]]:
    """The items done in the window as calculators.ItemFlow (keyed by artifact id), and their keys."""
    rows = (
        rollups.filter(done_at__gte=window.start, done_at__lt=window.end)
        .order_by("artifact_id")
        .values_list(
            "artifact_id",
            "artifact__key",
            "flow_item_type_id",
            "started_at",
            "start_inferred",
            "restarted_at",
            "done_at",
            "flow_time",
            "lead_time",
            "active_time",
            "waiting_time",
            "efficiency",
        )
    )
    items, keys = [], {}
    for (
        artifact_id,
        key,
        type_id,
        started_at,
        start_inferred,
        restarted_at,
        done_at,
        flow_time,
        lead_time,
        active_time,
        waiting_time,
        efficiency,
    ) in rows:
        keys[artifact_id] = key
        items.append(
            ItemFlow(
                key=str(artifact_id),
                flow_type=type_slugs[type_id],
                state=DONE,
                created_at=done_at - timedelta(seconds=lead_time),
                # A done item that never started has started_at = done_at (calculators.item_flow).
                started=started_at != done_at,
                started_at=started_at,
                start_inferred=start_inferred,
                restarted_at=restarted_at,
                done_at=done_at,
                canceled=False,
                canceled_at=None,
                lead_time=lead_time,
                flow_time=flow_time,
                flow_time_from_restart=(done_at - restarted_at).total_seconds(),
                active_time=active_time,
                waiting_time=waiting_time,
                efficiency=efficiency,
                age=None,
            )
        )
    return items, keys


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

    done, keys = _done_items(rollups, instants, type_slugs)
    velocity = flow_velocity(done, instants, bucket, zone)
    efficiency = flow_efficiency(done, instants, bucket, zone)
    canceled = rollups.filter(canceled_at__gte=instants.start, canceled_at__lt=instants.end).count()

    starts = bucket_starts(instants.start, instants.end, bucket, zone)
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
        "flow_time": _stats_json(flow_time_stats(done, instants), keys),
        "lead_time": _stats_json(duration_stats((i.key, i.lead_time) for i in done), keys),
        "active_time": _stats_json(duration_stats((i.key, i.active_time) for i in done), keys),
        "flow_time_from_restart": _stats_json(
            duration_stats((i.key, i.flow_time_from_restart) for i in done), keys
        ),
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
    """Every flow item's rollup the user may see, with its artifact's key, title and url.

    `age_since` is when an open item's age starts (started_at, or created_at when it never started);
    None for done and canceled items.
    """
    return (
        ItemFlowRollup.objects.visible_to(user)
        .filter(artifact__deleted_at__isnull=True)
        .select_related("artifact", "flow_item_type")
        .only(
            *(field.name for field in ItemFlowRollup._meta.concrete_fields),
            "artifact__key",
            "artifact__title",
            "artifact__url",
            "artifact__created_at",
            "flow_item_type__slug",
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
