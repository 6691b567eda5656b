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

import math
import random
import statistics
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import NamedTuple
from zoneinfo import ZoneInfo

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
    outliers: list[tuple[str, float]]  # (key, seconds) above p95, longest first


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
    counts = [Counter[str]() for _ in starts]
    for item in done_in(items, window):
        counts[bisect_right(edges, item.done_at) - 1][item.flow_type] += 1
    return {start: dict(count) for start, count in zip(starts, counts, strict=True)}


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
    pairs = sorted(keyed_seconds, key=lambda pair: pair[1])
    if not pairs:
        return FlowTimeStats(0, None, None, None, None, None, [], [])
    values = [seconds for _, seconds in pairs]
    p95 = percentile(values, 95)
    return FlowTimeStats(
        count=len(values),
        mean=statistics.fmean(values),
        p50=percentile(values, 50),
        p85=percentile(values, 85),
        p95=p95,
        max=values[-1],
        histogram=_histogram(values),
        outliers=[(key, seconds) for key, seconds in reversed(pairs) if seconds > p95],
    )


def flow_time_stats(items: Iterable[ItemFlow], window: Window) -> FlowTimeStats:
    """Flow time statistics of the items done in the window."""
    return duration_stats((item.key, item.flow_time) for item in done_in(items, window))


def _histogram(sorted_values: list[float]) -> list[tuple[float, float, int]]:
    width = _histogram_width(sorted_values[-1])
    counts = [0] * (int(sorted_values[-1] // width) + 1)
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
    active = [0.0] * len(starts)
    flow = [0.0] * len(starts)
    for item in done_in(items, window):
        index = bisect_right(edges, item.done_at) - 1
        active[index] += item.active_time
        flow[index] += item.flow_time
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
    zone = _zone(tz)
    sample_days = sorted(set(days))
    samples = [_local_midnight(day + timedelta(days=1), zone).astimezone(UTC) for day in sample_days]
    # A difference array per type: +1 at the first sample inside an in-progress interval, -1 after.
    changes: dict[str, list[int]] = {}
    for ledger in ledgers:
        if ledger.flow_type is None:
            continue
        for state, start, end in state_intervals(ledger, _END_OF_TIME):
            if state not in IN_PROGRESS:
                continue
            first, after = bisect_left(samples, start), bisect_left(samples, end)
            if first < after:
                type_changes = changes.setdefault(ledger.flow_type, [0] * (len(samples) + 1))
                type_changes[first] += 1
                type_changes[after] -= 1
    load: dict[date, dict[str, int]] = {day: {} for day in sample_days}
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
