"""Writes of the metrics rollups, recomputed from the StateTransition ledgers.

- `item_rollups_refresh(ids)`: ItemFlowRollup rows of those artifacts (calculators.item_flow).
- `daily_load_refresh(product, days)`: DailyLoadRollup rows of those local days (calculators.flow_load
  over the ItemFlowRollup spans of the items whose Active/Waiting span holds a day's sample instant).
- `product_rollups_rebuild(product)`: both, for a whole product, streaming in chunks.
- `rollups_refresh_after_sync(ids)`: the incremental path the ingest engine takes after each page.

Item rollups depend on the ledgers alone (plus `updated_at`, when they were computed), so a rebuild and
the incremental path give the same rows. The load depends on `now` only through the local "today", the
last day stored; every function takes `now` (default: the current time) for that. Products are locked (their
ProductRollupState row) while their load is rewritten, so concurrent refreshes queue rather than race.
"""

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from metrics.calculators import (
    IN_PROGRESS,
    Interval,
    ItemLedger,
    flow_load,
    flow_load_of_spans,
    item_flow,
    state_intervals,
)
from metrics.models import DailyLoadRollup, ItemFlowRollup, ProductRollupState
from metrics.selectors import (
    CHUNK_SIZE,
    FlowArtifact,
    day_range,
    flow_artifact_chunks,
    flow_artifacts,
    in_progress_between,
    ledgers_of,
    load_sample_instant,
)
from vsm.db import bulk_insert, bulk_upsert
from vsm.models import Artifact, Product

logger = logging.getLogger(__name__)

# Two runs of load days closer than this are recomputed as one run (one read of the items).
LOAD_RUN_MERGE_GAP_DAYS = 7
END_OF_TIME = datetime.max.replace(tzinfo=UTC)

ITEM_ROLLUP_FIELDS = (
    "artifact_id",
    "product_id",
    "team_id",
    "flow_item_type_id",
    "current_state",
    "last_state",
    "started_at",
    "start_inferred",
    "restarted_at",
    "done_at",
    "canceled_at",
    "flow_time",
    "lead_time",
    "active_time",
    "waiting_time",
    "efficiency",
    "measured_at",
    "in_progress_from",
    "in_progress_until",
    "in_progress_gaps",
    "updated_at",
)
LOAD_ROLLUP_FIELDS = ("product_id", "day", "flow_item_type_id", "count")
Span = tuple[datetime, datetime]  # [start, end), end END_OF_TIME while still in progress


@dataclass(frozen=True, slots=True)
class LoadContribution:
    """Where an item counts in the load: its product, its type and its Active/Waiting spans."""

    product_id: int
    flow_item_type_id: int
    spans: tuple[Span, ...]


@dataclass(frozen=True, slots=True)
class RebuildResult:
    product_id: int
    items: int
    load_rows: int


# --- spans ---------------------------------------------------------------------------------------------


def _in_progress_spans(intervals: Sequence[Interval]) -> tuple[Span, ...]:
    """The Active/Waiting intervals, contiguous ones merged."""
    spans: list[Span] = []
    for state, start, end in intervals:
        if state not in IN_PROGRESS:
            continue
        if spans and spans[-1][1] == start:
            start = spans.pop()[0]
        spans.append((start, end))
    return tuple(spans)


def _spans_columns(spans: tuple[Span, ...]) -> tuple[datetime | None, datetime | None, list | None]:
    """in_progress_from, in_progress_until and in_progress_gaps (None when the spans are one)."""
    if not spans:
        return None, None, None
    until = spans[-1][1]
    gaps = [[end.isoformat(), start.isoformat()] for (_, end), (start, _) in pairwise(spans)]
    return spans[0][0], None if until == END_OF_TIME else until, gaps or None


def _spans_from_columns(
    start: datetime | None, until: datetime | None, gaps: list | None
) -> tuple[Span, ...]:
    if start is None:
        return ()
    edges = [start]
    for gap_start, gap_end in gaps or ():
        edges += [datetime.fromisoformat(gap_start), datetime.fromisoformat(gap_end)]
    edges.append(until or END_OF_TIME)
    return tuple((edges[index], edges[index + 1]) for index in range(0, len(edges), 2))


# --- item rollups --------------------------------------------------------------------------------------


def _item_rollup_rows(
    artifacts: Sequence[FlowArtifact], ledgers: Sequence[ItemLedger], now: datetime
) -> tuple[list[tuple], dict[int, LoadContribution]]:
    """Rollup rows (ITEM_ROLLUP_FIELDS) and load contributions; `now` only fills updated_at.

    The figures are taken at the item's last transition (measured_at), so a row depends on the ledger
    alone: readers grow an open item's times from there to their own now (metrics.selectors).
    """
    rows, contributions = [], {}
    for artifact, ledger in zip(artifacts, ledgers, strict=True):
        measured_at = (
            max(ledger.created_at, ledger.transitions[-1][0]) if ledger.transitions else ledger.created_at
        )
        flow = item_flow(ledger, measured_at)
        intervals = state_intervals(ledger, END_OF_TIME)
        spans = _in_progress_spans(intervals)
        rows.append(
            (
                artifact.id,
                artifact.product_id,
                artifact.team_id,
                artifact.flow_item_type_id,
                flow.state,
                intervals[-1].state,
                flow.started_at,
                flow.start_inferred,
                flow.restarted_at,
                flow.done_at,
                flow.canceled_at,
                flow.flow_time,
                flow.lead_time,
                flow.active_time,
                flow.waiting_time,
                flow.efficiency,
                measured_at,
                *_spans_columns(spans),
                now,
            )
        )
        contributions[artifact.id] = LoadContribution(artifact.product_id, artifact.flow_item_type_id, spans)
    return rows, contributions


def _item_rollups_write(artifact_ids: Sequence[int], now: datetime) -> dict[int, LoadContribution]:
    """Recompute the rollups of these artifacts; the load contributions of those that are flow items."""
    contributions: dict[int, LoadContribution] = {}
    for start in range(0, len(artifact_ids), CHUNK_SIZE):
        ids = artifact_ids[start : start + CHUNK_SIZE]
        artifacts = flow_artifacts(Artifact.objects.filter(pk__in=ids))
        rows, chunk_contributions = _item_rollup_rows(artifacts, ledgers_of(artifacts), now)
        bulk_upsert(ItemFlowRollup, ITEM_ROLLUP_FIELDS, rows, unique_fields=["artifact"])
        # Artifacts deleted (in the tool or here), or no longer flow items: no rollup.
        ItemFlowRollup.objects.filter(artifact_id__in=ids).exclude(
            artifact_id__in=list(chunk_contributions)
        ).delete()
        contributions |= chunk_contributions
    return contributions


def item_rollups_refresh(artifact_ids: Iterable[int], *, now: datetime | None = None) -> int:
    """Recompute the ItemFlowRollup rows of these artifacts (and drop those of non-flow or deleted ones).

    The daily load is left as it is: `rollups_refresh_after_sync` refreshes both. Returns the number of
    flow items written.
    """
    ids = sorted(set(artifact_ids))
    product_ids = _products_of_items(ids)
    written = len(_item_rollups_write(ids, now or timezone.now()))
    # After the write: a version drawn before it could be cached with the old figures.
    _new_data_version(product_ids)
    return written


def _products_of_items(artifact_ids: Sequence[int]) -> set[int]:
    """The products the artifacts are in, and those their rollups were in (an artifact may have moved)."""
    product_ids = set(Artifact.objects.filter(pk__in=artifact_ids).values_list("product_id", flat=True))
    return product_ids | set(
        ItemFlowRollup.objects.filter(artifact_id__in=artifact_ids).values_list("product_id", flat=True)
    )


def _old_contributions(artifact_ids: Sequence[int]) -> dict[int, LoadContribution]:
    contributions = {}
    for start in range(0, len(artifact_ids), CHUNK_SIZE):
        rows = ItemFlowRollup.objects.filter(
            artifact_id__in=artifact_ids[start : start + CHUNK_SIZE]
        ).values_list(
            "artifact_id",
            "product_id",
            "flow_item_type_id",
            "in_progress_from",
            "in_progress_until",
            "in_progress_gaps",
        )
        for artifact_id, product_id, type_id, span_from, span_until, gaps in rows:
            contributions[artifact_id] = LoadContribution(
                product_id, type_id, _spans_from_columns(span_from, span_until, gaps)
            )
    return contributions


# --- daily load ----------------------------------------------------------------------------------------


def _zone(product: Product) -> ZoneInfo:
    return ZoneInfo(product.time_zone)


def _local_today(product: Product, now: datetime) -> date:
    return now.astimezone(_zone(product)).date()


def _days_around(span: Span, zone: ZoneInfo, today: date) -> list[date]:
    """The local days whose sample instant may fall inside [start, end): a day either side to spare."""
    start, end = span
    first = start.astimezone(zone).date() - timedelta(days=1)
    last = today if end == END_OF_TIME else min(end.astimezone(zone).date(), today)
    return day_range(first, last) if first <= last else []


def _runs(days: Iterable[date]) -> list[tuple[date, date]]:
    """Sorted days as (first, last) runs, runs less than LOAD_RUN_MERGE_GAP_DAYS apart merged."""
    runs: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if runs and (day - runs[-1][1]).days <= LOAD_RUN_MERGE_GAP_DAYS:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def _load_rows(product_id: int, load: dict[date, dict[int, int]]) -> list[tuple]:
    return [
        (product_id, day, type_id, count)
        for day, counts in sorted(load.items())
        for type_id, count in sorted(counts.items())
    ]


def _load_from_spans(product: Product, days: list[date]) -> dict[date, dict[int, int]]:
    """Load per day and type id from the product's ItemFlowRollup spans, not the ledgers: the same counts
    as calculators.flow_load over them, the spans being their Active/Waiting intervals (merged), written
    before any load refresh reads them."""
    zone = _zone(product)
    candidates = in_progress_between(
        ItemFlowRollup.objects.filter(product=product),
        load_sample_instant(min(days), zone),
        load_sample_instant(max(days), zone),
    ).values_list("flow_item_type_id", "in_progress_from", "in_progress_until", "in_progress_gaps")
    return flow_load_of_spans(
        (
            (type_id, _spans_from_columns(start, until, gaps))
            for type_id, start, until, gaps in candidates.iterator(chunk_size=CHUNK_SIZE)
        ),
        days,
        zone,
    )


def _load_run_recompute(product: Product, first: date, last: date) -> int:
    """Rewrite the load of every local day from first to last (both included)."""
    load = _load_from_spans(product, day_range(first, last))
    rows = _load_rows(product.pk, load)
    DailyLoadRollup.objects.filter(product=product, day__gte=first, day__lte=last).delete()
    bulk_insert(DailyLoadRollup, LOAD_ROLLUP_FIELDS, rows)
    return len(rows)


@transaction.atomic
def daily_load_refresh(product: Product, days: Iterable[date], *, now: datetime | None = None) -> int:
    """Recompute the DailyLoadRollup rows of these local days, from the current ItemFlowRollup spans.

    Days after the product's local today are not stored (readers carry today forward). Returns the
    number of rows written.
    """
    today = _local_today(product, now or timezone.now())
    _lock_rollup_states([product.pk])
    return sum(
        _load_run_recompute(product, first, last)
        for first, last in _runs(day for day in days if day <= today)
    )


def _changed_spans(old: tuple[Span, ...], new: tuple[Span, ...]) -> list[Span]:
    """Where the item is in progress in one set of spans and not in the other."""

    def covers(spans: tuple[Span, ...], at: datetime) -> bool:
        return any(start <= at < end for start, end in spans)

    edges = sorted({edge for span in old + new for edge in span})
    return [(a, b) for a, b in pairwise(edges) if covers(old, a) != covers(new, a)]


def _load_days_changed(
    old: LoadContribution | None, new: LoadContribution | None
) -> Iterator[tuple[int, Span]]:
    """(product id, span) pairs whose load days may have changed between two states of an item."""
    if old and new and (old.product_id, old.flow_item_type_id) == (new.product_id, new.flow_item_type_id):
        for span in _changed_spans(old.spans, new.spans):
            yield old.product_id, span
        return
    for contribution in (old, new):
        if contribution:
            for span in contribution.spans:
                yield contribution.product_id, span


def _lock_rollup_states(product_ids: Iterable[int]) -> dict[int, ProductRollupState]:
    """Lock the products' rollup states (created when missing) before their rollups are written."""
    ids = sorted(set(product_ids))
    ProductRollupState.objects.bulk_create(
        [ProductRollupState(product_id=product_id) for product_id in ids], ignore_conflicts=True
    )
    states = ProductRollupState.objects.select_for_update().filter(product_id__in=ids).order_by("product_id")
    states = {state.product_id: state for state in states}
    _new_data_version(ids)
    return states


def _new_data_version(product_ids: Iterable[int]) -> None:
    """Their rollups change (in the caller's transaction) or just changed: figures cached from the old
    ones (metrics.selectors.cached_per_reach) are no longer read."""
    ProductRollupState.objects.filter(product_id__in=list(product_ids)).update(data_version=uuid.uuid4())


# --- the two paths: rebuild and incremental --------------------------------------------------------------


@transaction.atomic
def product_rollups_rebuild(product: Product, *, now: datetime | None = None) -> RebuildResult:
    """Recompute every ItemFlowRollup and DailyLoadRollup row of the product, CHUNK_SIZE items at a time.

    One pass over the ledgers: each chunk's item rollups are written as its ledgers stream into the
    load computation. Days run from the earliest flow item's creation to the local today.
    """
    now = now or timezone.now()
    zone = _zone(product)
    state = _lock_rollup_states([product.pk])[product.pk]
    artifacts = Artifact.objects.filter(product=product)
    earliest = artifacts.filter(flow_item_type__isnull=False, deleted_at__isnull=True).aggregate(
        at=Min("created_at")
    )["at"]
    today = _local_today(product, now)
    # From the day before the earliest creation: that day's sample is the creation day's midnight.
    days = day_range(earliest.astimezone(zone).date() - timedelta(days=1), today) if earliest else []

    ItemFlowRollup.objects.filter(product=product).delete()
    items = 0

    def ledgers_after_writing_item_rollups() -> Iterator[ItemLedger]:
        nonlocal items
        for chunk in flow_artifact_chunks(artifacts):
            ledgers = ledgers_of(chunk)
            rows, _ = _item_rollup_rows(chunk, ledgers, now)
            # An upsert: an artifact moved here from another product still has its old row.
            bulk_upsert(ItemFlowRollup, ITEM_ROLLUP_FIELDS, rows, unique_fields=["artifact"])
            items += len(chunk)
            yield from ledgers

    load_rows = _load_rows(product.pk, flow_load(ledgers_after_writing_item_rollups(), days, zone))
    DailyLoadRollup.objects.filter(product=product).delete()
    bulk_insert(DailyLoadRollup, LOAD_ROLLUP_FIELDS, load_rows)
    state.load_through = today
    state.rebuilt_at = now
    state.save(update_fields=["load_through", "rebuilt_at"])
    return RebuildResult(product_id=product.pk, items=items, load_rows=len(load_rows))


@transaction.atomic
def rollups_refresh_after_sync(artifact_ids: Iterable[int], *, now: datetime | None = None) -> None:
    """The incremental path: refresh these items' rollups, then the load days where they changed.

    The days are those where an item's old spans (from its previous rollup) and new spans differ, in the
    old and new product, plus the days since the product's load was last brought up to date. A product
    never rolled up before is rebuilt instead.
    """
    now = now or timezone.now()
    ids = sorted(set(artifact_ids))
    if not ids:
        return
    product_ids = _products_of_items(ids)
    states = _lock_rollup_states(product_ids)

    old = _old_contributions(ids)
    new = _item_rollups_write(ids, now)
    changed_spans: dict[int, list[Span]] = defaultdict(list)
    for artifact_id in ids:
        for product_id, span in _load_days_changed(old.get(artifact_id), new.get(artifact_id)):
            changed_spans[product_id].append(span)

    for product in Product.objects.filter(pk__in=product_ids).order_by("pk"):
        state = states[product.pk]
        if state.load_through is None:
            logger.info("rollups of product %s were never built: rebuilding", product.slug)
            product_rollups_rebuild(product, now=now)
            continue
        zone, today = _zone(product), _local_today(product, now)
        days = {day for span in changed_spans[product.pk] for day in _days_around(span, zone, today)}
        if state.load_through < today:
            days.update(day_range(state.load_through + timedelta(days=1), today))
        daily_load_refresh(product, days, now=now)
        if state.load_through < today:
            state.load_through = today
            state.save(update_fields=["load_through"])
