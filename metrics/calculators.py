"""Flow-metric calculators over exact transition timestamps (Flow Framework). Pure: no ORM, no Django.

Selectors turn Artifact + StateTransition rows into `ItemLedger`s; everything here is plain data in,
plain data out. Per-item work is O(transitions); aggregates are O(items x log buckets), so a product of
200,000 items and 2,000,000 transitions is one linear pass.

Conventions (each one is tested in tests/metrics/test_calculators.py):

Time
- Every instant is timezone-aware; ledger instants are UTC. Durations are float seconds of exact
  timestamp differences and are never rounded here (rounding is a display choice). With whole-second
  timestamps, as the tools record them, every duration is a whole number of seconds and the identities
  below (active + waiting = flow time) hold exactly.
- Windows are half-open, [start, end).

State intervals (`state_intervals`)
- An item exists from `created_at`. Its initial state is the first transition's from_state when it has
  one; with no transitions at all it is the current state; otherwise New.
- Each transition starts an interval in its to_state; the last interval runs to `until`.
- Transitions before created_at (clock skew between tools) are clamped to created_at; anything past
  `until` is cut there. Transitions are taken in the order given (the StateTransition ordering).
- Zero-length intervals are dropped (two transitions at the same instant) and adjacent intervals in one
  flow state are merged: moving between two tool statuses of the same flow state (In Dev -> In Review,
  Resolved -> Closed) is not a new entry into that state.

Per item (`item_flow`, figures taken at `now`, no earlier than the ledger's last transition)
- started_at: the first entry into Active or Waiting. An item first seen already in progress (initial
  state Active or Waiting) started at created_at, with start_inferred=True.
- done_at: the final entry into Done, and only when the current state is Done: an item reopened after
  Done is done at its last Done. canceled_at: likewise the final entry into Canceled when canceled.
- The flow window runs from started_at to done_at (done), canceled_at (canceled) or now (open).
  active_time is the time in Active inside it; waiting_time is the rest of it (Waiting, a move back to
  New, an intermediate Done before a reopen, Unknown), so active + waiting = the window exactly.
- flow_time = done_at - started_at and lead_time = done_at - created_at, for done items only.
  efficiency = active_time / window length; None when the window is empty. Open items get these over
  started_at -> now; canceled items over started_at -> canceled_at (left out of every aggregate).
- A done item that never started (New -> Done) has started_at = done_at, started=False, flow_time 0,
  active and waiting 0 and efficiency None.
- restarted_at: the first entry into Active or Waiting after the item was last out of flow (New, Done
  or Canceled) within its flow window; started_at when it never left. flow_time_from_restart =
  done_at - restarted_at. A done item that reached Done straight from New has restarted_at = done_at.
  An open item that is out of flow now (moved back to New) has restarted_at None.
- age = now - started_at for open items (current state neither Done nor Canceled) that started, now -
  created_at for those that did not (started=False); None for done and canceled items.

Aggregates
- Buckets (day, ISO week from Monday, month, quarter) are local calendar periods in the product's IANA
  time zone: a day bucket across a DST change lasts 23 or 25 hours. Bucket starts are aware datetimes
  in that zone (local midnight). Python compares and subtracts two datetimes of the same zone by wall
  clock, so convert to UTC before doing arithmetic across a DST change.
- Supporting artifacts (flow_type None) are never counted. Done and canceled items count in the window
  by done_at and canceled_at; each done item lands in exactly one bucket, the one holding done_at.
- Percentiles interpolate linearly between closest ranks (numpy's default "linear" method): rank
  h = (n - 1) * q / 100, value = v[floor h] + frac(h) * (v[floor h + 1] - v[floor h]).
- Histogram: bins from 0, half-open [lower, upper), of the smallest width in HISTOGRAM_WIDTHS (1 h,
  4 h, 12 h, 1 d, 2 d, 7 d, 14 d, 30 d, 90 d, 365 d) that covers the longest flow time in at most
  HISTOGRAM_MAX_BINS bins (beyond that, whole multiples of 365 days). Outliers: items above p95.
- Flow efficiency over many items is time-weighted: sum(active) / sum(flow time).
- Flow load on a local day is the number of items in Active or Waiting at the end of that day, the
  instant of the next local midnight. The current state is taken to persist, so a day that has not
  ended yet shows the load as it stands.

Forecasts (Monte Carlo over daily throughput, seeded with random.Random(seed): repeatable)
- "How many in N days" at confidence c is the largest n that at least c% of the simulations reach:
  the (100 - c)th percentile of simulated totals, so the 85% figure is at most the 50% figure.
- "When will N be done" at confidence c is the earliest date by which at least c% of simulations have
  finished, so the 85% date is on or after the 50% date. start_day is the first day that can deliver:
  a simulation finishing on its first simulated day gives start_day.
- Confidence figures are exact order statistics of the simulated results (no interpolation).
"""

import functools
import math
import random
import statistics
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Any, NamedTuple, TypeVar
from zoneinfo import ZoneInfo

import re2

# Flow states, the values of vsm.choices.FlowState (not imported: this module stays free of Django).
NEW = "new"
WAITING = "waiting"
ACTIVE = "active"
DONE = "done"
CANCELED = "canceled"
UNKNOWN = "unknown"

IN_PROGRESS = frozenset({ACTIVE, WAITING})
OUT_OF_FLOW = frozenset({NEW, DONE, CANCELED})

HOUR = 3600
DAY = 24 * HOUR
YEAR = 365 * DAY
HISTOGRAM_WIDTHS = (HOUR, 4 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 90 * DAY, YEAR)
HISTOGRAM_MAX_BINS = 20

CONFIDENCE_LEVELS = (50, 85, 95)
FORECAST_MAX_DAYS = 3650

# Intervals that run "to the end of time": the current state persists.
_END_OF_TIME = datetime.max.replace(tzinfo=UTC)

Transition = tuple[datetime, str | None, str]
T = TypeVar("T")  # a flow type: its slug, or its id


@dataclass(frozen=True, slots=True)
class ItemLedger:
    key: str
    flow_type: str | None  # None: a supporting artifact (commit, build), never counted
    created_at: datetime
    transitions: Sequence[Transition]  # (at, from_state, to_state) in time order
    current_state: str


class Interval(NamedTuple):
    # A NamedTuple rather than a dataclass: built millions of times per rollup.
    state: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class ItemFlow:
    key: str
    flow_type: str | None
    state: str
    created_at: datetime
    started: bool
    started_at: datetime | None
    start_inferred: bool
    restarted_at: datetime | None
    done_at: datetime | None
    canceled: bool
    canceled_at: datetime | None
    lead_time: float | None
    flow_time: float | None
    flow_time_from_restart: float | None
    active_time: float | None
    waiting_time: float | None
    efficiency: float | None
    age: float | None


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"a window must end after it starts: {self.start} -> {self.end}")

    def __contains__(self, at: datetime | None) -> bool:
        return at is not None and self.start <= at < self.end


class Bucket(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"


@dataclass(frozen=True, slots=True)
class FlowTimeStats:
    count: int
    mean: float | None
    p50: float | None
    p85: float | None
    p95: float | None
    max: float | None
    histogram: list[tuple[float, float, int]]  # (lower, upper, count), seconds, [lower, upper)
    outliers: list[tuple[str | int, float]]  # (key, seconds) above p95, longest first


@dataclass(frozen=True, slots=True)
class FlowEfficiency:
    overall: float | None
    by_bucket: dict[datetime, float | None]


# Items


def initial_state(ledger: ItemLedger) -> str:
    """The state an item was in when first seen (at created_at)."""
    if not ledger.transitions:
        return ledger.current_state
    return ledger.transitions[0][1] or NEW


def state_intervals(ledger: ItemLedger, until: datetime) -> list[Interval]:
    """The item's flow states as contiguous intervals from created_at to `until`."""
    created_at = ledger.created_at
    intervals: list[Interval] = []
    if until <= created_at:
        return intervals
    state = initial_state(ledger)
    start = created_at  # where the stay in `state` began; never before created_at, so skew is clamped
    for at, _, to_state in ledger.transitions:
        if to_state == state:
            continue  # a move between two tool statuses of one flow state
        if at >= until:
            break
        if at > start:
            _append_interval(intervals, state, start, at)
            start = at
        state = to_state
    _append_interval(intervals, state, start, until)
    return intervals


def _append_interval(intervals: list[Interval], state: str, start: datetime, end: datetime) -> None:
    if intervals and intervals[-1].state == state:
        # The same state again after a zero-length stay elsewhere: one interval.
        start = intervals.pop().start
    intervals.append(Interval(state, start, end))


def _last_entry(intervals: list[Interval], state: str) -> datetime | None:
    for interval in reversed(intervals):
        if interval.state == state:
            return interval.start
    return None


def item_flow(ledger: ItemLedger, now: datetime) -> ItemFlow:
    """Per-item flow figures taken at `now`; see the module docstring for the conventions."""
    # Intervals without an end: a final Done or Canceled at `now` still counts.
    intervals = state_intervals(ledger, _END_OF_TIME)
    current_state = ledger.current_state
    done_at = _last_entry(intervals, DONE) if current_state == DONE else None
    canceled = current_state == CANCELED
    canceled_at = _last_entry(intervals, CANCELED) if canceled else None
    closed_at = done_at or canceled_at
    window_end = closed_at or now

    started_at = restarted_at = None
    active = timedelta()
    for state, start, end in intervals:
        # A closed item's window ends before its final Done or Canceled; an open item's takes in `now`.
        if start > window_end or (start == window_end and closed_at is not None):
            break
        if started_at is None:
            if state not in IN_PROGRESS:
                continue
            started_at = start
        if state == ACTIVE:
            active += min(end, window_end) - start
        if state in OUT_OF_FLOW:
            restarted_at = None
        elif restarted_at is None and state in IN_PROGRESS:
            restarted_at = start

    started = started_at is not None
    start_inferred = started_at == ledger.created_at and initial_state(ledger) in IN_PROGRESS
    if done_at is not None:
        started_at = started_at or done_at
        restarted_at = restarted_at or done_at

    active_time = waiting_time = efficiency = None
    if started_at is not None:
        elapsed = window_end - started_at
        active_time = active.total_seconds()
        waiting_time = (elapsed - active).total_seconds()
        efficiency = active / elapsed if elapsed else None

    is_open = current_state not in (DONE, CANCELED)
    return ItemFlow(
        key=ledger.key,
        flow_type=ledger.flow_type,
        state=current_state,
        created_at=ledger.created_at,
        started=started,
        started_at=started_at,
        start_inferred=start_inferred,
        restarted_at=restarted_at,
        done_at=done_at,
        canceled=canceled,
        canceled_at=canceled_at,
        lead_time=_seconds_between(ledger.created_at, done_at),
        flow_time=_seconds_between(started_at, done_at),
        flow_time_from_restart=_seconds_between(restarted_at, done_at),
        active_time=active_time,
        waiting_time=waiting_time,
        efficiency=efficiency,
        age=(now - (started_at or ledger.created_at)).total_seconds() if is_open else None,
    )


def _seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


# Buckets


def bucket_of(at: datetime, bucket: Bucket | str, tz: tzinfo | str) -> datetime:
    """The start (local midnight, in `tz`) of the bucket holding the instant `at`."""
    zone = _zone(tz)
    return _local_midnight(_first_day(at.astimezone(zone).date(), Bucket(bucket)), zone)


def bucket_starts(start: datetime, end: datetime, bucket: Bucket | str, tz: tzinfo | str) -> list[datetime]:
    """The starts of the buckets that overlap [start, end), in order."""
    if end <= start:
        return []
    return _buckets(Window(start, end), Bucket(bucket), _zone(tz))[0]


def _buckets(window: Window, bucket: Bucket, zone: tzinfo) -> tuple[list[datetime], list[datetime]]:
    """Bucket starts (local) and their UTC edges, one more than the starts: the last bucket's end."""
    end = window.end.astimezone(UTC)
    day = _first_day(window.start.astimezone(zone).date(), bucket)
    starts: list[datetime] = []
    edges: list[datetime] = []
    while True:
        start = _local_midnight(day, zone)
        edges.append(start.astimezone(UTC))
        if edges[-1] >= end:
            return starts, edges
        starts.append(start)
        day = _next_first_day(day, bucket)


def _zone(tz: tzinfo | str) -> tzinfo:
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def _local_midnight(day: date, zone: tzinfo) -> datetime:
    # The round trip through UTC fixes the offset when midnight falls in a DST gap.
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC).astimezone(zone)


def _first_day(day: date, bucket: Bucket) -> date:
    match bucket:
        case Bucket.DAY:
            return day
        case Bucket.WEEK:
            return day - timedelta(days=day.weekday())
        case Bucket.MONTH:
            return day.replace(day=1)
        case Bucket.QUARTER:
            return date(day.year, day.month - (day.month - 1) % 3, 1)


def _next_first_day(first_day: date, bucket: Bucket) -> date:
    match bucket:
        case Bucket.DAY:
            return first_day + timedelta(days=1)
        case Bucket.WEEK:
            return first_day + timedelta(days=7)
        case Bucket.MONTH:
            return _add_months(first_day, 1)
        case Bucket.QUARTER:
            return _add_months(first_day, 3)


def _add_months(first_of_month: date, months: int) -> date:
    month_index = first_of_month.month - 1 + months
    return date(first_of_month.year + month_index // 12, month_index % 12 + 1, 1)


# Aggregates


def done_in(items: Iterable[ItemFlow], window: Window) -> Iterator[ItemFlow]:
    """Flow items (not supporting ones) done in the window."""
    return (item for item in items if item.flow_type is not None and item.done_at in window)


def canceled_count(items: Iterable[ItemFlow], window: Window) -> int:
    """Flow items canceled in the window: counted apart, never in velocity or flow time."""
    return sum(1 for item in items if item.flow_type is not None and item.canceled_at in window)


def flow_velocity(
    items: Iterable[ItemFlow], window: Window, bucket: Bucket | str, tz: tzinfo | str
) -> dict[datetime, dict[str, int]]:
    """Items done per bucket, by flow type; every bucket of the window is present, empty ones as {}."""
    starts, edges = _buckets(window, Bucket(bucket), _zone(tz))
    done = list(done_in(items, window))
    return bucket_counts(
        starts, [bisect_right(edges, item.done_at) - 1 for item in done], [item.flow_type for item in done]
    )


def bucket_counts(
    starts: Sequence[datetime], indexes: Iterable[int], flow_types: Iterable[str]
) -> dict[datetime, dict[str, int]]:
    """Items per bucket by flow type, from each item's bucket index (into starts) and flow type."""
    counts: list[dict[str, int]] = [{} for _ in starts]
    # Counted in C, then spread over the buckets in the order first seen: the dicts of a loop.
    for (index, flow_type), count in Counter(zip(indexes, flow_types, strict=True)).items():
        counts[index][flow_type] = count
    return dict(zip(starts, counts, strict=True))


def bucket_bounds(
    start: datetime, end: datetime, bucket: Bucket | str, tz: tzinfo | str
) -> tuple[list[datetime], list[datetime]]:
    """The starts (local) of the buckets overlapping [start, end) and their UTC edges, one more than the
    starts: an instant t of the window is in bucket bisect_right(edges, t) - 1."""
    return _buckets(Window(start, end), Bucket(bucket), _zone(tz))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of ascending values, interpolating linearly between closest ranks."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = (len(sorted_values) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (rank - low) * (sorted_values[high] - sorted_values[low])


def duration_stats(keyed_seconds: Iterable[tuple[str, float]]) -> FlowTimeStats:
    """Count, mean, percentiles, histogram and outliers of (key, seconds) pairs."""
    pairs = list(keyed_seconds)
    return duration_stats_of([key for key, _ in pairs], [seconds for _, seconds in pairs])


def duration_stats_of(keys: Sequence[str | int], seconds: Sequence[float]) -> FlowTimeStats:
    """duration_stats of two parallel columns, keys and seconds (no pairs built: the fast path for many
    items). Outliers come longest first, equal durations in reverse input order."""
    if not seconds:
        return FlowTimeStats(0, None, None, None, None, None, [], [])
    values = sorted(seconds)
    p95 = percentile(values, 95)
    above = sorted(((value, index) for index, value in enumerate(seconds) if value > p95), reverse=True)
    return FlowTimeStats(
        count=len(values),
        mean=statistics.fmean(values),
        p50=percentile(values, 50),
        p85=percentile(values, 85),
        p95=p95,
        max=values[-1],
        histogram=_histogram(values),
        outliers=[(keys[index], value) for value, index in above],
    )


def flow_time_stats(items: Iterable[ItemFlow], window: Window) -> FlowTimeStats:
    """Flow time statistics of the items done in the window."""
    return duration_stats((item.key, item.flow_time) for item in done_in(items, window))


def _histogram(sorted_values: list[float]) -> list[tuple[float, float, int]]:
    width = _histogram_width(sorted_values[-1])
    counts = [0] * (int(sorted_values[-1] // width) + 1)
    if sorted_values[0] >= 0:
        # Bin i holds i * width <= seconds < (i + 1) * width (float // an integer width is the exact
        # floor): its end is a bisection into the sorted values, not a pass over them.
        low = 0
        for index in range(len(counts)):
            high = bisect_left(sorted_values, (index + 1) * width, low)
            counts[index], low = high - low, high
    else:
        for seconds in sorted_values:
            counts[int(seconds // width)] += 1
    return [(index * width, (index + 1) * width, count) for index, count in enumerate(counts)]


def _histogram_width(longest: float) -> int:
    for width in HISTOGRAM_WIDTHS:
        if longest // width < HISTOGRAM_MAX_BINS:
            return width
    return YEAR * (int(longest // (YEAR * HISTOGRAM_MAX_BINS)) + 1)


def flow_efficiency(
    items: Iterable[ItemFlow], window: Window, bucket: Bucket | str, tz: tzinfo | str
) -> FlowEfficiency:
    """Time-weighted efficiency, sum(active) / sum(flow time), of the items done in the window."""
    starts, edges = _buckets(window, Bucket(bucket), _zone(tz))
    done = list(done_in(items, window))
    return bucket_efficiency(
        starts,
        [bisect_right(edges, item.done_at) - 1 for item in done],
        [item.active_time for item in done],
        [item.flow_time for item in done],
    )


def bucket_efficiency(
    starts: Sequence[datetime],
    indexes: Iterable[int],
    active_times: Iterable[float],
    flow_times: Iterable[float],
) -> FlowEfficiency:
    """flow_efficiency from each item's bucket index (into starts), active time and flow time. The sums
    run in the order given, so the same items in the same order give the same floats."""
    active = [0.0] * len(starts)
    flow = [0.0] * len(starts)
    for index, active_time, flow_time in zip(indexes, active_times, flow_times, strict=True):
        active[index] += active_time
        flow[index] += flow_time
    return FlowEfficiency(
        overall=_ratio(sum(active), sum(flow)),
        by_bucket={start: _ratio(a, f) for start, a, f in zip(starts, active, flow, strict=True)},
    )


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def flow_load(
    ledgers: Iterable[ItemLedger], days: Iterable[date], tz: tzinfo | str
) -> dict[date, dict[str, int]]:
    """Items in Active or Waiting at the end of each local day (next local midnight), by flow type."""
    return flow_load_of_spans(
        (
            (
                ledger.flow_type,
                [
                    (start, end)
                    for state, start, end in state_intervals(ledger, _END_OF_TIME)
                    if state in IN_PROGRESS
                ],
            )
            for ledger in ledgers
            if ledger.flow_type is not None
        ),
        days,
        tz,
    )


def flow_load_of_spans(
    typed_spans: Iterable[tuple[T, Iterable[tuple[datetime, datetime]]]],
    days: Iterable[date],
    tz: tzinfo | str,
) -> dict[date, dict[T, int]]:
    """flow_load from each item's flow type and its [start, end) intervals in Active or Waiting (adjacent
    ones merged or not: the same counts)."""
    zone = _zone(tz)
    sample_days = sorted(set(days))
    samples = [_local_midnight(day + timedelta(days=1), zone).astimezone(UTC) for day in sample_days]
    # A difference array per type: +1 at the first sample inside an in-progress interval, -1 after.
    changes: dict[T, list[int]] = {}
    for flow_type, spans in typed_spans:
        for start, end in spans:
            first, after = bisect_left(samples, start), bisect_left(samples, end)
            if first < after:
                type_changes = changes.setdefault(flow_type, [0] * (len(samples) + 1))
                type_changes[first] += 1
                type_changes[after] -= 1
    load: dict[date, dict[T, int]] = {day: {} for day in sample_days}
    for flow_type, type_changes in changes.items():
        running = 0
        for day, change in zip(sample_days, type_changes, strict=False):
            running += change
            if running:
                load[day][flow_type] = running
    return load


def total_by_type(counts_by_period: Mapping[object, Mapping[str, int]]) -> dict[str, int]:
    """Counts by flow type summed over periods (velocity buckets, load days)."""
    totals: Counter[str] = Counter()
    for counts in counts_by_period.values():
        totals.update(counts)
    return dict(totals)


def flow_distribution(counts_by_type: Mapping[str, int]) -> dict[str, float]:
    """Each flow type's share of the count; the shares sum to 1, and no items give {}."""
    total = sum(counts_by_type.values())
    if not total:
        return {}
    return {flow_type: count / total for flow_type, count in counts_by_type.items()}


def allocation_deviation(shares: Mapping[str, float], target: Mapping[str, float]) -> dict[str, float]:
    """Actual share minus target share for every type in either (a missing type has share 0)."""
    return {
        flow_type: shares.get(flow_type, 0.0) - target.get(flow_type, 0.0)
        for flow_type in sorted(shares.keys() | target.keys())
    }


# Forecasts


def daily_throughput(done_dates: Iterable[date], start_day: date, end_day: date) -> list[int]:
    """Items done on each local day from start_day to end_day, both included, zeros included."""
    if end_day < start_day:
        raise ValueError(f"end_day {end_day} is before start_day {start_day}")
    counts = [0] * ((end_day - start_day).days + 1)
    for day in done_dates:
        if start_day <= day <= end_day:
            counts[(day - start_day).days] += 1
    return counts


def monte_carlo_how_many(
    throughput: Sequence[int], days: int, *, trials: int = 10_000, seed: int = 0
) -> dict[int, int]:
    """At each confidence level c, the most items that c% of simulated `days`-day runs reach at least."""
    if days <= 0:
        raise ValueError(f"cannot forecast over {days} days: days must be at least 1")
    history = _forecast_history(throughput, trials)
    rng = random.Random(seed)  # noqa: S311 - a repeatable simulation, not cryptography
    totals = sorted(sum(rng.choices(history, k=days)) for _ in range(trials))
    # The (100 - c)th percentile: at least c% of the totals are at or above this rank's value.
    return {level: totals[trials * (100 - level) // 100] for level in CONFIDENCE_LEVELS}


def monte_carlo_when(
    throughput: Sequence[int],
    items: int,
    start_day: date,
    *,
    trials: int = 10_000,
    seed: int = 0,
    max_days: int = FORECAST_MAX_DAYS,
) -> dict[int, date]:
    """At each confidence level c, the earliest date by which c% of simulations have done `items`."""
    if items <= 0:
        raise ValueError(f"cannot forecast the completion of {items} items: items must be at least 1")
    history = _forecast_history(throughput, trials)
    rng = random.Random(seed)  # noqa: S311 - a repeatable simulation, not cryptography
    draw, size = rng.random, len(history)
    days_needed = []
    for _ in range(trials):
        done = days = 0
        while done < items:
            if days == max_days:
                raise ValueError(
                    f"cannot forecast: {items} items take more than {max_days} days at this throughput"
                )
            done += history[int(draw() * size)]
            days += 1
        days_needed.append(days)
    days_needed.sort()
    # The ceil(c% of trials)-th fastest simulation: at least c% finish on or before its last day.
    return {
        level: start_day + timedelta(days=days_needed[-(-trials * level // 100) - 1] - 1)
        for level in CONFIDENCE_LEVELS
    }


def _forecast_history(throughput: Sequence[int], trials: int) -> list[int]:
    if trials <= 0:
        raise ValueError(f"trials must be at least 1, got {trials}")
    history = list(throughput)
    if not history:
        raise ValueError("cannot forecast from an empty throughput history")
    if not any(history):
        raise ValueError("cannot forecast: no item was done in the throughput history (all days are zero)")
    return history


# --- DORA (deployment frequency, lead time for changes, change failure rate, recovery time) -----------
#
# Rules (each one is tested in tests/metrics/test_dora.py). Keys are artifact ids as strings, like the
# ledgers' keys; the selector turns them back into tool keys.
#
# Deployments
# - A deployment's environment is fields["environment"]: a name (Jenkins) or an object with a "name"
#   (GitLab); anything else is "". It is production when the pattern (default `(?i)prod`, configurable)
#   is found in it. A user types the pattern, so it is an RE2 regular expression, matched in time linear
#   in the environment's length whatever the pattern (no backtracking, hence no back-references or
#   look-arounds: such a pattern is refused with RE2's reason).
# - Its outcome is read from fields["result"] (Jenkins) and then fields["status"] (GitLab), in any case:
#   SUCCESS/success/succeeded/passed -> succeeded; FAILURE/failed/error/UNSTABLE -> failed; any other
#   word (running, ABORTED, canceled, NOT_BUILT...) -> unfinished. With neither field, a deployment in
#   flow state Done succeeded and any other is unfinished. Unfinished deployments are left out of
#   everything.
# - A deployment happens at its done_at when it has one, else at its created_at (the selector's choice,
#   given here as `at`). Ties are broken by key, so every ordering is total.
#
# What a deployment contains
# - Every artifact from which it can be reached through built_in, released_in and deployed_in links:
#   commit -built_in-> build/pipeline -deployed_in-> deployment, commit -released_in-> release
#   -deployed_in-> deployment, and deployed_in chains (build -> staging deployment -> production).
# - An artifact is shipped by the first (earliest) succeeded production deployment that contains it.
#
# Deployment frequency: succeeded production deployments in the window, per bucket (by `at`), per local
#   day of the window and per 7 of those days.
# Lead time for changes: for each commit whose first shipping deployment lies in the window, that
#   deployment's `at` minus the commit's time (its created_at: the tool's commit date), never below 0
#   (clock skew). Bucketed by the deployment. Median (p50), p85 and p95, interpolated as `percentile`.
# Change failure rate: among the finished (succeeded or failed) production deployments in the window,
#   the share that failed: the deployment itself failed, or an incident or defect is blamed on it.
#   Blame: an incident or defect (not canceled: the selector leaves those out) created in
#   [deployment at, at + failure window) and linked, in either direction and by any kind except
#   fixes, committed_in and implements (those say a change was made to repair it, not that it caused
#   it), to the production deployment itself or to an artifact that deployment shipped first (a commit,
#   build, pipeline, release or staging deployment). Linked to several such deployments, it is blamed
#   on the latest one, so an incident fails at most one deployment.
# Failed deployment recovery time: one failure per failed production deployment and per blamed incident
#   or defect, bucketed by when the failure began, counted when that is in the window:
#   - a failed deployment: from its `at` to the next succeeded production deployment strictly after it
#     (each failed deployment of a run of failures measures to the same recovery);
#   - an incident or defect: from its created_at to its done_at (the final entry into Done; None while
#     open or reopened), never below 0.
#   Failures not recovered yet are listed with seconds None and left out of the statistics.
#
# Conventions, where tools disagree (the first of each is the default):
# - Lead time for changes per commit ("commit", above) or per pull request ("pull_request", Apache
#   DevLake's): a pull request (model "pull-request") has the commits it is linked to by committed_in
#   links from it to each commit. It is shipped once one of its commits is shipped, by the deployment
#   that shipped the last of its commits to ship (the latest, by (at, key), of its commits' first
#   shipping deployments; commits never shipped are waited for by nobody). Its lead time runs from its
#   earliest commit's time (shipped or not; ties by key) to that deployment's `at`, never below 0, and
#   is bucketed by that deployment.
# - Change failure rate over every finished attempt ("attempts", above) or over the successful ones
#   ("successful", DevLake's): the succeeded production deployments in the window, and among them those
#   an incident or defect is blamed on (the same blame); failed deployments count in neither.
#   Recovery time is the same under both.
#
# Levels (DORA_BANDS, the 2023 Accelerate State of DevOps bands as Apache DevLake documents them): each
# figure is tested against its bands in order and takes the first that holds; a band's bound is closed
# or open as its test says (DORA_BANDS is the one place they are written). A day is 24 hours, a week 7
# days, a month 30 days. No level (None, with the reason) without data: no successful production
# deployment in the window, no change shipped in it, no finished deployment (or, "successful", no
# succeeded one), no failure recovered.
# - Lead time for changes: its median (p50). Elite < 1 day <= high < 1 week <= medium < 1 month <= low.
# - Change failure rate: elite <= 5% < high <= 10% < medium <= 15% < low.
# - Failed deployment recovery time: its median (p50) over the recovered failures. Elite < 1 hour <=
#   high < 1 day <= medium < 1 week <= low.
# - Deployment frequency, from deployment days (local days with at least one succeeded production
#   deployment), not from a count: over the complete ISO weeks (Monday 00:00 to the next Monday 00:00,
#   local) and the complete calendar months inside the window, the median number of deployment days per
#   week (median: the mean of the two middle values for an even count) >= 5: elite; else >= 1: high;
#   else the median number of deployment days per month >= 1: medium; else low. Partial weeks and
#   months at the window's ends are left out of the medians. A window holding no complete week has no
#   level; one holding complete weeks but no complete month has no level when the weekly median is
#   below 1 (medium and low cannot be told apart). A product deploying on one day every week is high
#   whatever the window's length.

DORA_DEFAULT_PRODUCTION_PATTERN = r"(?i)prod"
ProductionPattern = Any  # a compiled RE2 pattern (re2 ships no type stubs): .search(text)
DORA_DEFAULT_FAILURE_WINDOW_DAYS = 7
DORA_MAX_PATTERN_LENGTH = 200
DORA_MAX_ENVIRONMENT_LENGTH = 200  # a bound on what a user's pattern is run against
DORA_SUCCEEDED = "succeeded"
DORA_FAILED = "failed"
DORA_UNFINISHED = "unfinished"
DORA_SUCCESS_WORDS = frozenset({"success", "succeeded", "successful", "passed"})
DORA_FAILURE_WORDS = frozenset({"failure", "failed", "error", "unstable"})
DORA_PIPELINE_LINK_KINDS = frozenset({"built_in", "released_in", "deployed_in"})
DORA_REPAIR_LINK_KINDS = frozenset({"fixes", "committed_in", "implements"})
DORA_FAILED_DEPLOYMENT = "deployment"

DORA_LEAD_TIME_COMMIT = "commit"
DORA_LEAD_TIME_PULL_REQUEST = "pull_request"
DORA_LEAD_TIME_CONVENTIONS = (DORA_LEAD_TIME_COMMIT, DORA_LEAD_TIME_PULL_REQUEST)
DORA_FAILURE_RATE_ATTEMPTS = "attempts"
DORA_FAILURE_RATE_SUCCESSFUL = "successful"
DORA_FAILURE_RATE_CONVENTIONS = (DORA_FAILURE_RATE_ATTEMPTS, DORA_FAILURE_RATE_SUCCESSFUL)

DORA_ELITE, DORA_HIGH, DORA_MEDIUM, DORA_LOW = "elite", "high", "medium", "low"
DORA_LEVELS = (DORA_ELITE, DORA_HIGH, DORA_MEDIUM, DORA_LOW)
DORA_BENCHMARK = "DORA 2023 (Accelerate State of DevOps), Apache DevLake's criteria"
# The measures a band tests (DoraBand.measure).
DORA_LEAD_TIME_P50 = "median lead time for changes (seconds)"
DORA_FAILURE_RATE = "change failure rate (0 to 1)"
DORA_RECOVERY_P50 = "median failed deployment recovery time (seconds)"
DORA_DAYS_PER_WEEK = "median deployment days per complete week"
DORA_DAYS_PER_MONTH = "median deployment days per complete month"
_WEEK = 7 * DAY
_MONTH = 30 * DAY


@dataclass(frozen=True, slots=True)
class DoraBand:
    level: str
    measure: str  # what is tested
    test: str | None  # "<", "<=" or ">=" `bound`; None: any value (the last band)
    bound: float | None
    wording: str  # the program's words for the band


# The performance levels, in the order they are tested: the first band that holds gives the level.
DORA_BANDS: dict[str, tuple[DoraBand, ...]] = {
    "deployment_frequency": (
        DoraBand(DORA_ELITE, DORA_DAYS_PER_WEEK, ">=", 5, "on demand (multiple deploys per day)"),
        DoraBand(DORA_HIGH, DORA_DAYS_PER_WEEK, ">=", 1, "between once per day and once per week"),
        DoraBand(DORA_MEDIUM, DORA_DAYS_PER_MONTH, ">=", 1, "between once per week and once per month"),
        DoraBand(DORA_LOW, DORA_DAYS_PER_MONTH, None, None, "fewer than once per month"),
    ),
    "lead_time_for_changes": (
        DoraBand(DORA_ELITE, DORA_LEAD_TIME_P50, "<", DAY, "less than one day"),
        DoraBand(DORA_HIGH, DORA_LEAD_TIME_P50, "<", _WEEK, "between one day and one week"),
        DoraBand(DORA_MEDIUM, DORA_LEAD_TIME_P50, "<", _MONTH, "between one week and one month"),
        DoraBand(DORA_LOW, DORA_LEAD_TIME_P50, None, None, "more than one month"),
    ),
    # Rates are floats: a division is correctly rounded, so failed / deployments is <= the float 0.05
    # exactly when the fraction is <= 5% (for any count of deployments below 2**50).
    "change_failure_rate": (
        DoraBand(DORA_ELITE, DORA_FAILURE_RATE, "<=", 0.05, "5% or less"),
        DoraBand(DORA_HIGH, DORA_FAILURE_RATE, "<=", 0.10, "more than 5%, at most 10%"),
        DoraBand(DORA_MEDIUM, DORA_FAILURE_RATE, "<=", 0.15, "more than 10%, at most 15%"),
        DoraBand(DORA_LOW, DORA_FAILURE_RATE, None, None, "more than 15%"),
    ),
    "failed_deployment_recovery_time": (
        DoraBand(DORA_ELITE, DORA_RECOVERY_P50, "<", HOUR, "less than one hour"),
        DoraBand(DORA_HIGH, DORA_RECOVERY_P50, "<", DAY, "less than one day"),
        DoraBand(DORA_MEDIUM, DORA_RECOVERY_P50, "<", _WEEK, "between one day and one week"),
        DoraBand(DORA_LOW, DORA_RECOVERY_P50, None, None, "more than one week"),
    ),
}


@dataclass(frozen=True, slots=True)
class DoraLevel:
    level: str | None  # one of DORA_LEVELS; None when it cannot be told (see reason)
    band: str | None  # the band's wording
    measure: str  # what was tested: the measure of the band that decided, or of the one missing
    value: float | None
    reason: str | None  # why there is no level


@dataclass(frozen=True, slots=True)
class DeploymentDays:
    days: int  # local days of the window with at least one succeeded production deployment
    weeks: dict[datetime, int]  # complete ISO week inside the window (local start) -> its deployment days
    months: dict[datetime, int]  # complete calendar month inside the window -> its deployment days
    median_per_week: float | None  # None without a complete week
    median_per_month: float | None  # None without a complete month


@dataclass(frozen=True, slots=True)
class DoraDeployment:
    key: str
    at: datetime
    environment: str
    outcome: str  # DORA_SUCCEEDED, DORA_FAILED or DORA_UNFINISHED


@dataclass(frozen=True, slots=True)
class DoraIncident:
    """An incident or a defect, and the artifacts it is linked to by a kind that may blame them."""

    key: str
    kind: str  # "incident" or "defect"
    created_at: datetime
    resolved_at: datetime | None
    linked: frozenset[str]


@dataclass(frozen=True, slots=True)
class DeploymentFrequency:
    total: int
    days: int
    per_day: float
    per_week: float
    by_bucket: dict[datetime, list[str]]  # bucket start -> deployment keys, in time order


@dataclass(frozen=True, slots=True)
class ChangeLeadTime:
    commit: str  # per pull request: its earliest commit
    deployment: str
    committed_at: datetime
    deployed_at: datetime
    seconds: float
    bucket: datetime
    pull_request: str | None = None  # per pull request: the pull request
    commits: int = 1  # per pull request: how many commits it has

    @property
    def change(self) -> str:
        """What is measured: the commit, or the pull request."""
        return self.pull_request or self.commit


@dataclass(frozen=True, slots=True)
class LeadTimeForChanges:
    stats: FlowTimeStats
    by_bucket: dict[datetime, FlowTimeStats]
    changes: list[ChangeLeadTime]  # by deployed_at, deployment, committed_at, change


@dataclass(frozen=True, slots=True)
class DeploymentResult:
    deployment: str
    at: datetime
    deployment_failed: bool
    incidents: tuple[str, ...]  # blamed incidents and defects, by created_at
    bucket: datetime

    @property
    def failed(self) -> bool:
        return self.deployment_failed or bool(self.incidents)


@dataclass(frozen=True, slots=True)
class FailureRateBucket:
    deployments: int
    failed: int
    rate: float | None


@dataclass(frozen=True, slots=True)
class ChangeFailureRate:
    deployments: int
    failed: int
    rate: float | None
    by_bucket: dict[datetime, FailureRateBucket]
    results: list[DeploymentResult]  # in time order


@dataclass(frozen=True, slots=True)
class Recovery:
    failure: str  # the failed deployment's key, or the incident's or defect's
    kind: str  # DORA_FAILED_DEPLOYMENT, "incident" or "defect"
    deployment: str  # the production deployment that failed
    failed_at: datetime
    recovered_at: datetime | None
    recovered_by: str | None  # the next succeeded deployment's key, or the incident's own key
    seconds: float | None
    bucket: datetime


@dataclass(frozen=True, slots=True)
class RecoveryTime:
    stats: FlowTimeStats  # over the recovered failures
    unrecovered: int
    by_bucket: dict[datetime, FlowTimeStats]
    failures: list[Recovery]  # by failed_at, failure


def dora_production_pattern(text: str | None = None) -> ProductionPattern:
    """The compiled production pattern (the default when empty); ValueError saying what is wrong."""
    if not text:
        text = DORA_DEFAULT_PRODUCTION_PATTERN
    if len(text) > DORA_MAX_PATTERN_LENGTH:
        raise ValueError(f"the production pattern is longer than {DORA_MAX_PATTERN_LENGTH} characters")
    return _compiled_production_pattern(text)


@functools.lru_cache(maxsize=64)
def _compiled_production_pattern(text: str) -> ProductionPattern:
    options = re2.Options()
    options.log_errors = False  # the reason goes back to the user, not to the worker's stderr
    try:
        return re2.compile(text, options)
    except re2.error as error:
        reason = (
            error.args[0].decode(errors="replace")
            if error.args and isinstance(error.args[0], bytes)
            else error
        )
        message = f"the production pattern {text!r} is not a valid RE2 regular expression: {reason}"
        raise ValueError(message) from None


def deployment_environment(value: object) -> str:
    """fields["environment"]: a name, or an object with a name; "" for anything else."""
    if isinstance(value, Mapping):
        value = value.get("name")
    return value.strip()[:DORA_MAX_ENVIRONMENT_LENGTH] if isinstance(value, str) else ""


def deployment_outcome(result: object, status: object, flow_state: str) -> str:
    """Succeeded, failed or unfinished, from fields["result"], then fields["status"], then the state."""
    for value in (result, status):
        word = value.strip().lower() if isinstance(value, str) else ""
        if word in DORA_SUCCESS_WORDS:
            return DORA_SUCCEEDED
        if word in DORA_FAILURE_WORDS:
            return DORA_FAILED
        if word:
            return DORA_UNFINISHED
    return DORA_SUCCEEDED if flow_state == DONE else DORA_UNFINISHED


def production_deployments(
    deployments: Iterable[DoraDeployment], pattern: ProductionPattern
) -> list[DoraDeployment]:
    """The finished deployments to an environment the pattern is found in, by (at, key)."""
    return sorted(
        (d for d in deployments if d.outcome != DORA_UNFINISHED and pattern.search(d.environment)),
        key=lambda d: (d.at, d.key),
    )


def first_shipped_in(
    production: Sequence[DoraDeployment], links: Iterable[tuple[str, str, str]]
) -> dict[str, DoraDeployment]:
    """Every artifact a succeeded production deployment contains -> the first such deployment.

    `links` are (source, target, kind); only the pipeline kinds are followed, from target to source.
    Deployments are visited in time order and a walk stops at what an earlier one already shipped:
    whatever lies upstream of it was shipped then too. Linear in links and deployments.
    """
    upstream: dict[str, list[str]] = {}
    for source, target, kind in links:
        if kind in DORA_PIPELINE_LINK_KINDS:
            upstream.setdefault(target, []).append(source)
    shipped: dict[str, DoraDeployment] = {}
    for deployment in sorted(production, key=lambda d: (d.at, d.key)):
        if deployment.outcome != DORA_SUCCEEDED or deployment.key in shipped:
            continue
        shipped[deployment.key] = deployment
        stack = [deployment.key]
        while stack:
            for source in upstream.get(stack.pop(), ()):
                if source not in shipped:
                    shipped[source] = deployment
                    stack.append(source)
    return shipped


def _bucket_index(edges: list[datetime], at: datetime) -> int:
    return bisect_right(edges, at) - 1


def deployment_frequency(
    production: Iterable[DoraDeployment], window: Window, bucket: Bucket | str, tz: tzinfo | str
) -> DeploymentFrequency:
    """Succeeded production deployments in the window, per bucket, per local day and per week."""
    zone = _zone(tz)
    starts, edges = _buckets(window, Bucket(bucket), zone)
    keys: list[list[str]] = [[] for _ in starts]
    for deployment in sorted(production, key=lambda d: (d.at, d.key)):
        if deployment.outcome == DORA_SUCCEEDED and deployment.at in window:
            keys[_bucket_index(edges, deployment.at)].append(deployment.key)
    total = sum(len(bucket_keys) for bucket_keys in keys)
    days = len(_buckets(window, Bucket.DAY, zone)[0])
    return DeploymentFrequency(
        total=total,
        days=days,
        per_day=total / days,
        per_week=total * 7 / days,
        by_bucket=dict(zip(starts, keys, strict=True)),
    )


def lead_time_for_changes(
    commits: Mapping[str, datetime],
    shipped: Mapping[str, DoraDeployment],
    window: Window,
    bucket: Bucket | str,
    tz: tzinfo | str,
) -> LeadTimeForChanges:
    """Commit time -> the first succeeded production deployment containing it, for those in the window."""
    starts, edges = _buckets(window, Bucket(bucket), _zone(tz))
    changes = []
    for commit, committed_at in commits.items():
        deployment = shipped.get(commit)
        if deployment is None or deployment.at not in window:
            continue
        changes.append(
            ChangeLeadTime(
                commit=commit,
                deployment=deployment.key,
                committed_at=committed_at,
                deployed_at=deployment.at,
                seconds=max((deployment.at - committed_at).total_seconds(), 0.0),
                bucket=starts[_bucket_index(edges, deployment.at)],
            )
        )
    return _lead_time_for_changes(changes, starts)


def pull_request_lead_time(
    pull_requests: Mapping[str, Mapping[str, datetime]],
    shipped: Mapping[str, DoraDeployment],
    window: Window,
    bucket: Bucket | str,
    tz: tzinfo | str,
) -> LeadTimeForChanges:
    """Per pull request ({pull request: {commit: commit time}}): its earliest commit's time -> the
    deployment that shipped the last of its commits to ship, for those whose deployment is in the window."""
    starts, edges = _buckets(window, Bucket(bucket), _zone(tz))
    changes = []
    for pull_request, commits in pull_requests.items():
        deployments = [shipped[commit] for commit in commits if commit in shipped]
        if not deployments:
            continue
        deployment = max(deployments, key=lambda d: (d.at, d.key))
        if deployment.at not in window:
            continue
        first, committed_at = min(commits.items(), key=lambda pair: (pair[1], pair[0]))
        changes.append(
            ChangeLeadTime(
                commit=first,
                deployment=deployment.key,
                committed_at=committed_at,
                deployed_at=deployment.at,
                seconds=max((deployment.at - committed_at).total_seconds(), 0.0),
                bucket=starts[_bucket_index(edges, deployment.at)],
                pull_request=pull_request,
                commits=len(commits),
            )
        )
    return _lead_time_for_changes(changes, starts)


def _lead_time_for_changes(changes: list[ChangeLeadTime], starts: list[datetime]) -> LeadTimeForChanges:
    changes.sort(key=lambda c: (c.deployed_at, c.deployment, c.committed_at, c.change))
    return LeadTimeForChanges(
        stats=duration_stats((c.change, c.seconds) for c in changes),
        by_bucket={
            start: duration_stats((c.change, c.seconds) for c in changes if c.bucket == start)
            for start in starts
        },
        changes=changes,
    )


def blame_incidents(
    incidents: Iterable[DoraIncident],
    production: Sequence[DoraDeployment],
    shipped: Mapping[str, DoraDeployment],
    failure_window: timedelta,
) -> list[tuple[DoraIncident, DoraDeployment]]:
    """Each incident or defect that a production deployment is blamed for, with it; by created_at."""
    if failure_window <= timedelta():
        raise ValueError(f"the failure window must be positive, got {failure_window}")
    by_key = {deployment.key: deployment for deployment in production}
    blamed = []
    for incident in incidents:
        candidates = []
        for key in incident.linked:
            deployment = by_key.get(key) or shipped.get(key)
            if deployment is None:
                continue
            if deployment.at <= incident.created_at < deployment.at + failure_window:
                candidates.append(deployment)
        if candidates:
            blamed.append((incident, max(candidates, key=lambda d: (d.at, d.key))))
    blamed.sort(key=lambda pair: (pair[0].created_at, pair[0].key))
    return blamed


def change_failure_rate(
    production: Iterable[DoraDeployment],
    blamed: Iterable[tuple[DoraIncident, DoraDeployment]],
    window: Window,
    bucket: Bucket | str,
    tz: tzinfo | str,
    convention: str = DORA_FAILURE_RATE_ATTEMPTS,
) -> ChangeFailureRate:
    """The share of the finished production deployments in the window that failed or were blamed
    ("attempts"), or of the succeeded ones that were blamed ("successful")."""
    if convention not in DORA_FAILURE_RATE_CONVENTIONS:
        raise ValueError(f"unknown change failure rate convention {convention!r}")
    counted = (
        {DORA_SUCCEEDED} if convention == DORA_FAILURE_RATE_SUCCESSFUL else {DORA_SUCCEEDED, DORA_FAILED}
    )
    starts, edges = _buckets(window, Bucket(bucket), _zone(tz))
    incidents_of: dict[str, list[str]] = {}
    for incident, deployment in blamed:
        incidents_of.setdefault(deployment.key, []).append(incident.key)
    results = []
    counts = [[0, 0] for _ in starts]
    for deployment in sorted(production, key=lambda d: (d.at, d.key)):
        if deployment.outcome not in counted or deployment.at not in window:
            continue
        index = _bucket_index(edges, deployment.at)
        result = DeploymentResult(
            deployment=deployment.key,
            at=deployment.at,
            deployment_failed=deployment.outcome == DORA_FAILED,
            incidents=tuple(incidents_of.get(deployment.key, ())),
            bucket=starts[index],
        )
        results.append(result)
        counts[index][0] += 1
        counts[index][1] += result.failed
    failed = sum(result.failed for result in results)
    return ChangeFailureRate(
        deployments=len(results),
        failed=failed,
        rate=_ratio(failed, len(results)),
        by_bucket={
            start: FailureRateBucket(total, bad, _ratio(bad, total))
            for start, (total, bad) in zip(starts, counts, strict=True)
        },
        results=results,
    )


def failed_deployment_recovery_time(
    production: Iterable[DoraDeployment],
    blamed: Iterable[tuple[DoraIncident, DoraDeployment]],
    window: Window,
    bucket: Bucket | str,
    tz: tzinfo | str,
) -> RecoveryTime:
    """Failure -> recovery for failed production deployments and blamed incidents begun in the window."""
    starts, edges = _buckets(window, Bucket(bucket), _zone(tz))
    ordered = sorted(production, key=lambda d: (d.at, d.key))
    succeeded = [d for d in ordered if d.outcome == DORA_SUCCEEDED]
    success_times = [d.at for d in succeeded]
    failures = []
    for deployment in ordered:
        if deployment.outcome != DORA_FAILED or deployment.at not in window:
            continue
        index = bisect_right(success_times, deployment.at)
        recovery = succeeded[index] if index < len(succeeded) else None
        failures.append(
            Recovery(
                failure=deployment.key,
                kind=DORA_FAILED_DEPLOYMENT,
                deployment=deployment.key,
                failed_at=deployment.at,
                recovered_at=recovery.at if recovery else None,
                recovered_by=recovery.key if recovery else None,
                seconds=(recovery.at - deployment.at).total_seconds() if recovery else None,
                bucket=starts[_bucket_index(edges, deployment.at)],
            )
        )
    for incident, deployment in blamed:
        if incident.created_at not in window:
            continue
        resolved_at = incident.resolved_at
        failures.append(
            Recovery(
                failure=incident.key,
                kind=incident.kind,
                deployment=deployment.key,
                failed_at=incident.created_at,
                recovered_at=resolved_at,
                recovered_by=incident.key if resolved_at else None,
                seconds=(
                    max((resolved_at - incident.created_at).total_seconds(), 0.0) if resolved_at else None
                ),
                bucket=starts[_bucket_index(edges, incident.created_at)],
            )
        )
    failures.sort(key=lambda f: (f.failed_at, f.failure))
    recovered = [f for f in failures if f.seconds is not None]
    return RecoveryTime(
        stats=duration_stats((f.failure, f.seconds) for f in recovered),
        unrecovered=len(failures) - len(recovered),
        by_bucket={
            start: duration_stats((f.failure, f.seconds) for f in recovered if f.bucket == start)
            for start in starts
        },
        failures=failures,
    )


def deployment_days(production: Iterable[DoraDeployment], window: Window, tz: tzinfo | str) -> DeploymentDays:
    """The local days with a succeeded production deployment, per complete ISO week and complete
    calendar month inside the window, and the medians of those counts."""
    zone = _zone(tz)
    days = {
        deployment.at.astimezone(zone).date()
        for deployment in production
        if deployment.outcome == DORA_SUCCEEDED and deployment.at in window
    }

    def per_period(bucket: Bucket) -> dict[datetime, int]:
        starts, edges = _buckets(window, bucket, zone)
        counts = Counter(_first_day(day, bucket) for day in days)
        return {
            start: counts[start.date()]
            for index, start in enumerate(starts)
            if edges[index] >= window.start and edges[index + 1] <= window.end
        }

    weeks, months = per_period(Bucket.WEEK), per_period(Bucket.MONTH)
    return DeploymentDays(
        days=len(days),
        weeks=weeks,
        months=months,
        median_per_week=percentile(sorted(weeks.values()), 50) if weeks else None,
        median_per_month=percentile(sorted(months.values()), 50) if months else None,
    )


def dora_level(metric: str, measures: Mapping[str, float | None], missing: Mapping[str, str]) -> DoraLevel:
    """The level of one of DORA_BANDS' metrics: the first of its bands that the measured value passes.

    `measures` gives the value of each measure its bands test; a band whose measure is None (or absent)
    ends the search with no level, and the reason `missing` gives for that measure.
    """
    for band in DORA_BANDS[metric]:
        value = measures.get(band.measure)
        if value is None:
            reason = missing.get(band.measure, f"no {band.measure}")
            return DoraLevel(level=None, band=None, measure=band.measure, value=None, reason=reason)
        if band.test is None or _passes(value, band.test, band.bound):
            return DoraLevel(
                level=band.level, band=band.wording, measure=band.measure, value=value, reason=None
            )
    raise AssertionError(f"the last band of {metric} holds for any value")  # pragma: no cover


def _passes(value: float, test: str, bound: float | None) -> bool:
    match test:
        case "<":
            return value < bound
        case "<=":
            return value <= bound
        case ">=":
            return value >= bound
    raise ValueError(f"unknown band test {test!r}")


def deployment_frequency_level(days: DeploymentDays) -> DoraLevel:
    if not days.days:
        missing = "no successful production deployment in the window"
        return DoraLevel(None, None, DORA_DAYS_PER_WEEK, None, missing)
    return dora_level(
        "deployment_frequency",
        {DORA_DAYS_PER_WEEK: days.median_per_week, DORA_DAYS_PER_MONTH: days.median_per_month},
        {
            DORA_DAYS_PER_WEEK: "the window holds no complete week (Monday to Sunday)",
            DORA_DAYS_PER_MONTH: (
                "fewer than one deployment day per week (median), and the window holds no complete "
                "calendar month to tell medium from low"
            ),
        },
    )


def lead_time_level(lead_time: LeadTimeForChanges) -> DoraLevel:
    reason = "no change shipped by a production deployment in the window"
    return dora_level(
        "lead_time_for_changes", {DORA_LEAD_TIME_P50: lead_time.stats.p50}, {DORA_LEAD_TIME_P50: reason}
    )


def failure_rate_level(failure_rate: ChangeFailureRate) -> DoraLevel:
    reason = "no production deployment counted in the window"
    return dora_level(
        "change_failure_rate", {DORA_FAILURE_RATE: failure_rate.rate}, {DORA_FAILURE_RATE: reason}
    )


def recovery_level(recovery: RecoveryTime) -> DoraLevel:
    reason = (
        f"no failure recovered in the window ({recovery.unrecovered} not recovered yet)"
        if recovery.unrecovered
        else "no failure in the window"
    )
    return dora_level(
        "failed_deployment_recovery_time",
        {DORA_RECOVERY_P50: recovery.stats.p50},
        {DORA_RECOVERY_P50: reason},
    )


# --- end of DORA ----------------------------------------------------------------------------------------


# ======================================================================================================
# End-to-end lead time across tools, and bottlenecks (request traces). Pure, like everything above.
#
# Downstream, per link kind (an edge is a plain tuple (source_id, target_id, kind)):
# - derived_from, implements, child_of, fixes, synced_with are followed from target to source: a feature
#   derived from a request, an epic implementing a feature, a story child of an epic, a pull request
#   fixing an issue, the copy an integration made of an item (it links copy -> original) are downstream
#   of what they point at;
# - committed_in, built_in, released_in, deployed_in are followed from source to target: a story is
#   committed in a commit, built in a build, deployed in a deployment, released in a release;
# - relates_to has no direction and is not followed.
# The walk keeps a visited set, so a cycle in the links ends it (and is reported, `Trace.cyclic`).
#
# Synced copies (`synced_originals`): an integration links each copy it makes to its original
# (synced_with, copy -> original). A copy is the same item: every artifact of a chain of copies stands
# for its root original (the end no synced_with leads on from), so the request is one row, created when
# the original was, reaching the work of every copy; `merge_copies` rewrites the links that way.
#
# A request's lead time (`request_lead_time`):
# - work items are the reached artifacts of WORK_ITEM_MODELS that are not canceled (a canceled item
#   neither blocks nor ends the delivery);
# - a delivery is a reached release (at its `released_at`, else at its done_at when Done) or a
#   succeeded production deployment, by the DORA rules above (`deployment_environment` matching the
#   default production pattern, `deployment_outcome` succeeded), at its done_at, else its created_at;
# - a commit ships in the EARLIEST delivery reachable downstream from it;
# - a work item is delivered (`work_item_delivery`) once it is Done and its work has shipped: with
#   commits (those reachable downstream from it, its own and its children's), when the LAST of them
#   ships, or at its Done when that came later; without commits, at the earliest delivery reachable
#   from it (a story released in a release), or at its Done when that came later; with neither, at
#   its Done. Its delivering artifact is that release or deployment (none for Done alone). A work item
#   with a commit that never shipped is not delivered;
# - a request with work items is delivered when every one is, at the LATEST of their deliveries (the
#   release that delivered the last of its work); with none, at the earliest delivery reachable from
#   the request itself. Lead time is created_at -> delivered_at (never negative);
# - a canceled request (declined, rejected) is closed, neither delivered nor open: its age runs to the
#   final entry into Canceled (`closed_at`), and it is left out of the open counts;
# - phases cut that span at monotonic boundaries, so they sum to the lead time exactly:
#   ideate = created -> the first work item's creation, create -> the last work item's done_at,
#   release -> delivered_at (boundaries are clamped into [created, end]; with no work item, ideate runs
#   to the first downstream artifact's creation and create is empty);
# - a request not delivered has an age (created -> now, or -> closed_at when canceled) and a furthest
#   segment: "ideate" with no work item, "create" while some work item is not Done, "release" once all
#   are Done; its segments run to that end, the furthest one open, and sum to the age.
#
# Bottlenecks (`bottlenecks`), over the window [start, min(end, now)) ("until"):
# - places are flow states in BOTTLENECK_STATES (Active, Waiting, Unknown: work in flow) and tool statuses
#   (per tool) held while the item was in one of those states;
# - a visit is one stay (adjacent stays in one place merged, zero-length ones dropped) that overlaps the
#   window; its time runs from its entry (even before the window) to its exit or to until;
# - total = the time all items spent there inside the window; current = items there at until; peak = the
#   most items there at one of the given samples (day ends), with the sample's label;
# - places are ranked by total, then visits, then name; contributing items by their time in the window.
# ======================================================================================================

DOWNSTREAM_FROM_TARGET = frozenset({"derived_from", "implements", "child_of", "fixes", "synced_with"})
DOWNSTREAM_FROM_SOURCE = frozenset({"committed_in", "built_in", "released_in", "deployed_in"})
WORK_ITEM_MODELS = frozenset({"feature", "epic", "story", "task", "defect", "risk", "debt"})
RELEASE_MODEL = "release"
DEPLOYMENT_MODEL = "deployment"
COMMIT_MODEL = "commit"
SYNCED_WITH = "synced_with"
IDEATE, CREATE, RELEASE = "ideate", "create", "release"
PHASES = (IDEATE, CREATE, RELEASE)
BOTTLENECK_STATES = frozenset({ACTIVE, WAITING, UNKNOWN})
NO_STATUS = "(no status)"

LinkEdge = tuple[int, int, str]  # (source_id, target_id, kind)
DownstreamGraph = Mapping[int, tuple[int, ...]]


@dataclass(frozen=True, slots=True)
class Trace:
    start: int
    nodes: tuple[int, ...]  # reached downstream, in depth-first discovery order; the start left out
    edges: dict[int, tuple[int, ...]]  # downstream adjacency of the start and every reached node
    cyclic: bool  # some link led back to a node on the current path


@dataclass(frozen=True, slots=True)
class ChainNode:
    id: int
    key: str
    model: str  # the artifact model's slug: request, feature, story, commit, deployment...
    created_at: datetime
    state: str
    done_at: datetime | None  # the final entry into Done, when Done now (calculators.item_flow)
    tool: str = ""
    environment: object = None  # deployments: fields["environment"], a name or {"name": ...}
    result: object = None  # deployments: fields["result"]
    status: object = None  # deployments: fields["status"]
    released_at: datetime | None = None  # releases
    canceled_at: datetime | None = None  # the final entry into Canceled, when canceled now
    tool_status: str = ""


@dataclass(frozen=True, slots=True)
class RequestLeadTime:
    request: int
    delivered: bool
    delivered_at: datetime | None  # None until delivered
    delivered_by: int | None  # the delivering release or deployment (None: its work's Done alone)
    lead_time: float | None
    age: float | None  # open: to now; canceled: to closed_at
    furthest_segment: str | None  # None once delivered
    segments: dict[str, float]  # PHASES -> seconds; sums to lead_time (delivered) or age
    work_items: int
    work_items_done: int
    closed_at: datetime | None = None  # canceled (declined, rejected): when
    closed_as: str = ""  # canceled: the tool's status it closed with

    @property
    def canceled(self) -> bool:
        return self.closed_at is not None


def synced_originals(edges: Iterable[LinkEdge]) -> dict[int, int]:
    """Each synced copy -> the original it stands for: the root of its chain of synced_with links (copy
    -> original); a chain that loops stands for its smallest id. Originals are not keys."""
    original_of = {source: target for source, target, kind in edges if kind == SYNCED_WITH}
    roots: dict[int, int] = {}
    for copy in original_of:
        path, node = [], copy
        while node in original_of and node not in path:
            path.append(node)
            node = original_of[node]
        root = min(path) if node in path else node
        for member in path:
            roots[member] = root
    return {copy: root for copy, root in roots.items() if copy != root}


def merge_copies(edges: Iterable[LinkEdge], originals: Mapping[int, int]) -> list[LinkEdge]:
    """The links with every synced copy replaced by its original (synced_originals); the synced_with
    links themselves, and links a copy has to its own original, go."""
    merged = set()
    for source, target, kind in edges:
        source, target = originals.get(source, source), originals.get(target, target)
        if kind != SYNCED_WITH and source != target:
            merged.add((source, target, kind))
    return sorted(merged)


def downstream_graph(edges: Iterable[LinkEdge]) -> dict[int, tuple[int, ...]]:
    """Each artifact's downstream neighbours (ascending ids), per the link kinds' directions."""
    graph: dict[int, set[int]] = {}
    for source, target, kind in edges:
        if kind in DOWNSTREAM_FROM_TARGET:
            graph.setdefault(target, set()).add(source)
        elif kind in DOWNSTREAM_FROM_SOURCE:
            graph.setdefault(source, set()).add(target)
    return {node: tuple(sorted(children)) for node, children in graph.items()}


def trace_downstream(start_id: int, edges: Iterable[LinkEdge] | DownstreamGraph) -> Trace:
    """Everything downstream of start_id (iterative depth-first walk; a cycle ends it, never hangs).

    `edges` is either link tuples or a prebuilt `downstream_graph` (build it once for many starts).
    """
    graph = edges if isinstance(edges, Mapping) else downstream_graph(edges)
    on_path, finished = 1, 2
    status = {start_id: on_path}
    order: list[int] = []
    adjacency = {start_id: tuple(graph.get(start_id, ()))}
    cyclic = False
    stack = [(start_id, iter(adjacency[start_id]))]
    while stack:
        node, children = stack[-1]
        child = next(children, None)
        if child is None:
            status[node] = finished
            stack.pop()
            continue
        seen = status.get(child)
        if seen == on_path:
            cyclic = True
        if seen is not None:
            continue
        status[child] = on_path
        order.append(child)
        adjacency[child] = tuple(graph.get(child, ()))
        stack.append((child, iter(adjacency[child])))
    return Trace(start_id, tuple(order), adjacency, cyclic)


def delivery_instant(node: ChainNode) -> datetime | None:
    """When this artifact delivered to customers: a release, or a successful production deployment."""
    if node.model == RELEASE_MODEL:
        return node.released_at or node.done_at
    if node.model == DEPLOYMENT_MODEL:
        if not dora_production_pattern().search(deployment_environment(node.environment)):
            return None
        if deployment_outcome(node.result, node.status, node.state) != DORA_SUCCEEDED:
            return None
        return node.done_at or node.created_at
    return None


def earliest_deliveries(trace: Trace, nodes: Mapping[int, ChainNode]) -> dict[int, tuple[datetime, int]]:
    """For each node of the trace that reaches a delivery: the earliest one, (instant, delivery id).

    Deliveries are taken in time order, each marking the nodes upstream of it not marked yet: a node
    already marked reaches an earlier delivery, and so do all of its upstream nodes. Linear, cycle-safe.
    """
    upstream: dict[int, list[int]] = {}
    for node, children in trace.edges.items():
        for child in children:
            upstream.setdefault(child, []).append(node)
    deliveries = sorted(
        (at, node_id)
        for node_id in (trace.start, *trace.nodes)
        if node_id in nodes and (at := delivery_instant(nodes[node_id])) is not None
    )
    earliest: dict[int, tuple[datetime, int]] = {}
    for at, delivery in deliveries:
        if delivery in earliest:
            continue
        earliest[delivery] = (at, delivery)
        stack = [delivery]
        while stack:
            for parent in upstream.get(stack.pop(), ()):
                if parent not in earliest:
                    earliest[parent] = (at, delivery)
                    stack.append(parent)
    return earliest


def work_item_delivery(
    item: ChainNode,
    trace: Trace,
    nodes: Mapping[int, ChainNode],
    earliest: Mapping[int, tuple[datetime, int]],
) -> tuple[datetime, int | None] | None:
    """When the work item was delivered, and by which release or deployment (None: its Done alone); None
    while it is not Done or a commit of it has not shipped. See the conventions above."""
    if item.done_at is None:
        return None
    reached = _reachable(item.id, trace)
    commits = [node for node in reached if node in nodes and nodes[node].model == COMMIT_MODEL]
    if commits:
        if any(commit not in earliest for commit in commits):
            return None
        shipped = max(earliest[commit] for commit in commits)
    elif item.id in earliest:
        shipped = earliest[item.id]
    else:
        return item.done_at, None
    return (shipped[0], shipped[1]) if shipped[0] >= item.done_at else (item.done_at, shipped[1])


def _reachable(start: int, trace: Trace) -> list[int]:
    """The trace's nodes reachable downstream from `start` (start left out), cycle-safe."""
    seen, stack = {start}, [start]
    while stack:
        for child in trace.edges.get(stack.pop(), ()):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    seen.discard(start)
    return sorted(seen)


def request_lead_time(
    request: ChainNode, chain_nodes: Mapping[int, ChainNode], trace: Trace, *, now: datetime
) -> RequestLeadTime:
    """The request's end-to-end lead time (or age) and its phases; see the conventions above.

    chain_nodes maps ids to nodes; reached ids missing from it (deleted, out of scope) are skipped.
    """
    reached = [chain_nodes[node_id] for node_id in trace.nodes if node_id in chain_nodes]
    work = [node for node in reached if node.model in WORK_ITEM_MODELS and node.state != CANCELED]
    done = [node for node in work if node.done_at is not None]
    earliest = earliest_deliveries(trace, chain_nodes)
    closed_at = request.canceled_at if request.state == CANCELED else None
    if work:
        deliveries = [work_item_delivery(node, trace, chain_nodes, earliest) for node in work]
        delivery = None if None in deliveries else max(deliveries, key=lambda found: found[0])
    else:
        delivery = earliest.get(request.id)
    delivered = delivery is not None and closed_at is None

    created = request.created_at
    end = max(delivery[0] if delivered else closed_at or now, created)
    if work:
        first_work = min(node.created_at for node in work)
    else:
        first_work = min((node.created_at for node in reached), default=end)
    ideate_end = min(max(first_work, created), end)
    if not work:
        create_end = ideate_end
    elif len(done) == len(work):
        create_end = min(max(max(node.done_at for node in done), ideate_end), end)
    else:
        create_end = end

    if delivered:
        furthest = None
    elif not work:
        furthest, ideate_end, create_end = IDEATE, end, end
    else:
        furthest = CREATE if len(done) < len(work) else RELEASE
    segments = {
        IDEATE: (ideate_end - created).total_seconds(),
        CREATE: (create_end - ideate_end).total_seconds(),
        RELEASE: (end - create_end).total_seconds(),
    }
    span = (end - created).total_seconds()
    return RequestLeadTime(
        request=request.id,
        delivered=delivered,
        delivered_at=delivery[0] if delivered else None,
        delivered_by=delivery[1] if delivered else None,
        lead_time=span if delivered else None,
        age=None if delivered else span,
        furthest_segment=furthest,
        segments=segments,
        work_items=len(work),
        work_items_done=len(done),
        closed_at=closed_at,
        closed_as=request.tool_status if closed_at is not None else "",
    )


# Bottlenecks


class StatusTransition(NamedTuple):
    at: datetime
    from_state: str | None
    to_state: str
    from_status: str
    to_status: str


@dataclass(frozen=True, slots=True)
class StatusLedger:
    key: str
    tool: str
    created_at: datetime
    transitions: Sequence[StatusTransition]  # in time order
    current_state: str
    current_status: str

    def item_ledger(self) -> ItemLedger:
        return ItemLedger(
            key=self.key,
            flow_type=self.tool,
            created_at=self.created_at,
            transitions=[(t.at, t.from_state, t.to_state) for t in self.transitions],
            current_state=self.current_state,
        )


class StatusInterval(NamedTuple):
    status: str
    state: str
    start: datetime
    end: datetime


def status_intervals(ledger: StatusLedger, until: datetime) -> list[StatusInterval]:
    """The item's tool statuses (with their flow state) as contiguous intervals, created_at -> until.

    The conventions of `state_intervals`: the initial status is the first transition's from_status
    (the current status without transitions), skew is clamped to created_at, zero-length stays are
    dropped and adjacent stays in one (status, state) merged.
    """
    created_at = ledger.created_at
    intervals: list[StatusInterval] = []
    if until <= created_at:
        return intervals
    if ledger.transitions:
        first = ledger.transitions[0]
        place = (first.from_status or NO_STATUS, first.from_state or NEW)
    else:
        place = (ledger.current_status or NO_STATUS, ledger.current_state)
    start = created_at
    for transition in ledger.transitions:
        to_place = (transition.to_status or NO_STATUS, transition.to_state)
        if to_place == place:
            continue
        if transition.at >= until:
            break
        if transition.at > start:
            _append_status_interval(intervals, place, start, transition.at)
            start = transition.at
        place = to_place
    _append_status_interval(intervals, place, start, until)
    return intervals


def _append_status_interval(
    intervals: list[StatusInterval], place: tuple[str, str], start: datetime, end: datetime
) -> None:
    if intervals and (intervals[-1].status, intervals[-1].state) == place:
        start = intervals.pop().start
    intervals.append(StatusInterval(place[0], place[1], start, end))


@dataclass(frozen=True, slots=True)
class Bottleneck:
    state: str | None  # the flow state (states), None for tool statuses
    tool: str | None  # the tool (statuses)
    status: str | None  # the tool status (statuses)
    current: int
    peak: int
    peak_at: object | None  # the label of the first sample holding the peak; None without samples
    visits: int
    mean: float | None  # per visit, seconds
    p85: float | None
    total: float  # seconds spent there inside the window, all items
    items: list[tuple[str, float]]  # (key, seconds in the window), most first
    item_count: int


@dataclass(frozen=True, slots=True)
class Bottlenecks:
    states: list[Bottleneck]
    statuses: list[Bottleneck]


class _Place:
    __slots__ = ("by_item", "current", "sample_changes", "total", "visit_times")

    def __init__(self, samples: int) -> None:
        self.current = 0
        self.sample_changes = [0] * (samples + 1)
        self.total = 0.0
        self.visit_times: list[float] = []
        self.by_item: dict[str, float] = {}


def bottlenecks(
    ledgers: Iterable[StatusLedger],
    window: Window,
    samples: Mapping[object, datetime],
    now: datetime,
    *,
    max_items: int | None = None,
) -> Bottlenecks:
    """Where work in flow spends its time in the window, by flow state and by tool status, ranked.

    `samples` maps labels (local days) to the instants of their peak count (day ends), ascending; only
    those inside the window are expected. `max_items` caps each place's contributing items.

    The flow-state stays are the status stays of one state run together (what state_intervals gives),
    so each ledger is walked once; instants are compared as epoch microseconds (exact, and far cheaper
    than aware datetimes in different zones).
    """
    until = _epoch_microseconds(min(window.end, now))
    window_start = _epoch_microseconds(window.start)
    labels = list(samples)
    instants = [_epoch_microseconds(samples[label]) for label in labels]
    # A stay ending by the window's start, `until` and the first sample adds nothing (see _visit): the
    # ledgers are still walked whole, for the stays running into the window, but those are skipped.
    ended_before = min(window_start, until, *instants[:1])
    bounds = _Bounds(window_start, until, instants)
    states: dict[str, _Place] = {}
    statuses: dict[tuple[str, str], _Place] = {}
    for ledger in ledgers:
        run_state, run_start = None, 0
        for status, state, start_at, end_at in status_intervals(ledger, _END_OF_TIME):
            start, end = _epoch_microseconds(start_at), _epoch_microseconds(end_at)
            if state != run_state:
                if run_state in BOTTLENECK_STATES and start > ended_before:
                    _visit(_place(states, run_state, instants), ledger.key, run_start, start, bounds)
                run_state, run_start = state, start
            if end > ended_before and state in BOTTLENECK_STATES:
                place = _place(statuses, (ledger.tool, status), instants)
                _visit(place, ledger.key, start, end, bounds)
        if run_state in BOTTLENECK_STATES:  # the last stay runs to the end of time
            _visit(_place(states, run_state, instants), ledger.key, run_start, _END_OF_TIME_US, bounds)
    return Bottlenecks(
        states=_ranked([_bottleneck(place, labels, max_items, state=name) for name, place in states.items()]),
        statuses=_ranked(
            [
                _bottleneck(place, labels, max_items, tool=tool, status=status)
                for (tool, status), place in statuses.items()
            ]
        ),
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _epoch_microseconds(instant: datetime) -> int:
    return (instant - _EPOCH) // _MICROSECOND


def from_epoch_microseconds(microseconds: int) -> datetime:
    """The UTC instant of an integer count of epoch microseconds (what selectors read from SQL)."""
    return _EPOCH + _MICROSECOND * microseconds  # twice as fast as timedelta(microseconds=...)


_END_OF_TIME_US = _epoch_microseconds(_END_OF_TIME)


class _Bounds(NamedTuple):
    """The window's start, `until` and the sample instants, in epoch microseconds."""

    window_start: int
    until: int
    instants: list[int]


def _place(places: dict, name, instants: list[int]) -> _Place:
    place = places.get(name)
    if place is None:
        place = places[name] = _Place(len(instants))
    return place


def _visit(place: _Place, key: str, start: int, end: int, bounds: _Bounds) -> None:
    """Count one stay [start, end) (epoch microseconds) in its place."""
    window_start, until, instants = bounds
    if start <= until < end:
        place.current += 1
    # A sample at `s` counts the stays with start <= s < end (a difference array, as in flow_load).
    first, after = bisect_left(instants, start), bisect_left(instants, end)
    if first < after:
        place.sample_changes[first] += 1
        place.sample_changes[after] -= 1
    inside = (end if end < until else until) - (start if start > window_start else window_start)
    if inside <= 0:
        return
    # Microseconds over 10**6, as timedelta.total_seconds computes them: the same float to the last bit.
    seconds = inside / 10**6
    place.total += seconds
    place.visit_times.append(((end if end < until else until) - start) / 10**6)
    place.by_item[key] = place.by_item.get(key, 0.0) + seconds


def _bottleneck(place: _Place, labels: list, max_items: int | None, **name) -> Bottleneck:
    counts, running = [], 0
    for change in place.sample_changes[: len(labels)]:
        running += change
        counts.append(running)
    peak = max(counts, default=0)
    times = sorted(place.visit_times)
    items = sorted(place.by_item.items(), key=lambda pair: (-pair[1], pair[0]))
    return Bottleneck(
        state=name.get("state"),
        tool=name.get("tool"),
        status=name.get("status"),
        current=place.current,
        peak=peak,
        peak_at=labels[counts.index(peak)] if counts else None,
        visits=len(times),
        mean=statistics.fmean(times) if times else None,
        p85=percentile(times, 85) if times else None,
        total=place.total,
        items=items[:max_items] if max_items is not None else items,
        item_count=len(items),
    )


def _ranked(places: list[Bottleneck]) -> list[Bottleneck]:
    kept = [place for place in places if place.total > 0 or place.current or place.peak]
    return sorted(
        kept,
        key=lambda p: (-p.total, -p.visits, p.state or "", p.tool or "", p.status or ""),
    )


# --- end of end-to-end lead time and bottlenecks --------------------------------------------------------
