import ast
import itertools
import random
import statistics
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics import calculators
from metrics.calculators import (
    ACTIVE,
    CANCELED,
    DAY,
    DONE,
    HOUR,
    NEW,
    UNKNOWN,
    WAITING,
    YEAR,
    Bucket,
    Interval,
    ItemLedger,
    Window,
    allocation_deviation,
    bucket_of,
    bucket_starts,
    canceled_count,
    daily_throughput,
    done_in,
    duration_stats,
    flow_distribution,
    flow_efficiency,
    flow_load,
    flow_time_stats,
    flow_velocity,
    initial_state,
    item_flow,
    monte_carlo_how_many,
    monte_carlo_when,
    percentile,
    state_intervals,
    total_by_type,
)
from vsm.choices import FlowState

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
BERLIN = ZoneInfo("Europe/Berlin")
STATES = (NEW, WAITING, ACTIVE, DONE, CANCELED, UNKNOWN)
FLOW_TYPES = ("feature", "defect", "risk", "debt")


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ledger(*moves, created_at=T0, first_from=NEW, current=None, flow_type="feature", key="K-1"):
    """A ledger from (at, to_state) moves, each from the previous move's state."""
    transitions = []
    state = first_from
    for when, to_state in moves:
        transitions.append((when, state, to_state))
        state = to_state
    return ItemLedger(key, flow_type, created_at, transitions, current or state)


def state_at(item: ItemLedger, instant: datetime) -> str | None:
    """Brute force: replay the ledger up to `instant` (None before the item existed)."""
    if instant < item.created_at:
        return None
    state = (item.transitions[0][1] or NEW) if item.transitions else item.current_state
    for when, _, to_state in item.transitions:
        if max(when, item.created_at) <= instant:
            state = to_state
    return state


# The module itself


def test_states_are_the_flow_state_values():
    assert sorted(STATES) == sorted(FlowState.values)


def test_module_imports_neither_django_nor_the_orm():
    tree = ast.parse(Path(calculators.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0] in {"django", "vsm", "metrics", "numpy"}}


# State intervals


def test_intervals_from_creation_to_until():
    item = ledger((h(1), ACTIVE), (h(3), WAITING), (h(4), ACTIVE), (h(6), DONE))
    assert state_intervals(item, h(10)) == [
        Interval(NEW, h(0), h(1)),
        Interval(ACTIVE, h(1), h(3)),
        Interval(WAITING, h(3), h(4)),
        Interval(ACTIVE, h(4), h(6)),
        Interval(DONE, h(6), h(10)),
    ]


def test_initial_state_is_the_first_from_state_else_the_current_state_else_new():
    assert initial_state(ledger((h(1), ACTIVE), first_from=WAITING)) == WAITING
    assert initial_state(ItemLedger("K", "feature", T0, [], ACTIVE)) == ACTIVE
    assert initial_state(ItemLedger("K", "feature", T0, [(h(1), None, ACTIVE)], ACTIVE)) == NEW
    assert initial_state(ItemLedger("K", "feature", T0, [(h(1), "", ACTIVE)], ACTIVE)) == NEW


def test_zero_length_intervals_are_dropped_and_same_state_moves_merge():
    item = ledger(
        (h(1), ACTIVE),
        (h(1), WAITING),  # two transitions at one instant: no Active interval
        (h(2), ACTIVE),
        (h(3), ACTIVE),  # In Dev -> In Review, both Active: still one stay in Active
        (h(4), DONE),
    )
    assert state_intervals(item, h(5)) == [
        Interval(NEW, h(0), h(1)),
        Interval(WAITING, h(1), h(2)),
        Interval(ACTIVE, h(2), h(4)),
        Interval(DONE, h(4), h(5)),
    ]


def test_transitions_before_creation_are_clamped_to_creation():
    item = ledger((h(8), ACTIVE), (h(9), WAITING), (h(12), DONE), created_at=h(10))
    assert state_intervals(item, h(13)) == [Interval(WAITING, h(10), h(12)), Interval(DONE, h(12), h(13))]


def test_intervals_are_cut_at_until():
    item = ledger((h(1), ACTIVE), (h(6), DONE))
    assert state_intervals(item, h(3)) == [Interval(NEW, h(0), h(1)), Interval(ACTIVE, h(1), h(3))]
    assert state_intervals(item, h(1)) == [Interval(NEW, h(0), h(1))]
    assert state_intervals(item, h(0)) == []


# One item


def test_item_with_waiting_in_the_middle():
    flow = item_flow(ledger((h(1), ACTIVE), (h(3), WAITING), (h(4), ACTIVE), (h(6), DONE)), now=h(10))
    assert (flow.started, flow.started_at, flow.start_inferred) == (True, h(1), False)
    assert (flow.done_at, flow.restarted_at, flow.canceled, flow.canceled_at) == (h(6), h(1), False, None)
    assert flow.flow_time == 5 * HOUR == 18000
    assert flow.lead_time == 21600
    assert flow.active_time == 14400
    assert flow.waiting_time == 3600
    assert flow.efficiency == 0.8
    assert flow.flow_time_from_restart == 18000
    assert flow.age is None


def test_backward_move_to_new_counts_as_waiting_and_restarts():
    flow = item_flow(ledger((h(1), ACTIVE), (h(2), NEW), (h(5), ACTIVE), (h(7), DONE)), now=h(8))
    assert flow.started_at == h(1)
    assert flow.flow_time == 21600
    assert flow.active_time == 10800
    assert flow.waiting_time == 10800  # the three hours back in New
    assert flow.efficiency == 0.5
    assert flow.restarted_at == h(5)
    assert flow.flow_time_from_restart == 7200


def test_reopened_item_is_done_at_its_final_done():
    flow = item_flow(ledger((h(1), ACTIVE), (h(2), DONE), (h(5), ACTIVE), (h(9), DONE)), now=h(12))
    assert flow.done_at == h(9)
    assert flow.flow_time == 28800
    assert flow.lead_time == 32400
    assert flow.active_time == 18000
    assert flow.waiting_time == 10800  # the intermediate Done
    assert flow.restarted_at == h(5)
    assert flow.flow_time_from_restart == 14400


def test_reopened_item_not_done_again_is_in_progress():
    flow = item_flow(ledger((h(1), ACTIVE), (h(2), DONE), (h(5), ACTIVE)), now=h(12))
    assert (flow.done_at, flow.flow_time, flow.lead_time) == (None, None, None)
    assert flow.age == 39600
    assert flow.active_time == 28800
    assert flow.waiting_time == 10800
    assert flow.efficiency == 28800 / 39600
    assert flow.restarted_at == h(5)


def test_done_to_done_status_change_keeps_the_entry_into_done():
    flow = item_flow(ledger((h(1), ACTIVE), (h(3), DONE), (h(5), DONE)), now=h(6))  # Resolved -> Closed
    assert flow.done_at == h(3)
    assert flow.flow_time == 7200


def test_canceled_item_is_neither_done_nor_aged():
    flow = item_flow(ledger((h(1), ACTIVE), (h(3), CANCELED)), now=h(5))
    assert (flow.canceled, flow.canceled_at, flow.done_at) == (True, h(3), None)
    assert (flow.flow_time, flow.lead_time, flow.age) == (None, None, None)
    assert (flow.active_time, flow.waiting_time, flow.efficiency) == (7200, 0, 1.0)


def test_item_already_in_progress_when_first_seen_started_at_creation():
    flow = item_flow(ItemLedger("K", "feature", T0, [], ACTIVE), now=h(5))
    assert (flow.started, flow.started_at, flow.start_inferred) == (True, T0, True)
    assert (flow.age, flow.active_time, flow.efficiency) == (18000, 18000, 1.0)

    flow = item_flow(ledger((h(2), ACTIVE), (h(3), DONE), first_from=WAITING), now=h(4))
    assert (flow.started_at, flow.start_inferred) == (T0, True)
    assert (flow.flow_time, flow.active_time, flow.waiting_time) == (10800, 3600, 7200)


def test_item_done_without_starting_has_zero_flow_time():
    flow = item_flow(ledger((h(4), DONE)), now=h(5))
    assert (flow.started, flow.started_at, flow.done_at, flow.restarted_at) == (False, h(4), h(4), h(4))
    assert (flow.flow_time, flow.lead_time, flow.flow_time_from_restart) == (0, 14400, 0)
    assert (flow.active_time, flow.waiting_time, flow.efficiency) == (0, 0, None)


def test_item_created_done_is_done_at_creation():
    flow = item_flow(ItemLedger("K", "feature", T0, [], DONE), now=h(5))
    assert (flow.done_at, flow.started, flow.flow_time, flow.lead_time) == (T0, False, 0, 0)


def test_zero_length_stay_in_progress_is_not_a_start():
    flow = item_flow(ledger((h(1), ACTIVE), (h(1), DONE)), now=h(2))
    assert (flow.started, flow.flow_time, flow.efficiency) == (False, 0, None)


def test_zero_length_move_back_to_new_is_not_a_restart():
    flow = item_flow(ledger((h(1), ACTIVE), (h(2), NEW), (h(2), ACTIVE), (h(3), DONE)), now=h(3))
    assert (flow.restarted_at, flow.flow_time, flow.active_time, flow.efficiency) == (h(1), 7200, 7200, 1.0)


def test_item_closed_from_new_after_a_backward_move_restarts_at_done():
    flow = item_flow(ledger((h(1), ACTIVE), (h(2), NEW), (h(4), DONE)), now=h(5))
    assert (flow.started_at, flow.flow_time, flow.active_time, flow.waiting_time) == (h(1), 10800, 3600, 7200)
    assert (flow.restarted_at, flow.flow_time_from_restart) == (h(4), 0)


def test_open_item_back_in_new_ages_from_its_start_and_has_no_restart():
    flow = item_flow(ledger((h(1), ACTIVE), (h(2), NEW)), now=h(5))
    assert (flow.started, flow.age, flow.restarted_at) == (True, 14400, None)
    assert (flow.active_time, flow.waiting_time) == (3600, 10800)


def test_unknown_state_counts_as_waiting_and_is_no_restart():
    flow = item_flow(ledger((h(1), ACTIVE), (h(2), UNKNOWN), (h(3), ACTIVE), (h(4), DONE)), now=h(4))
    assert (flow.active_time, flow.waiting_time, flow.restarted_at) == (7200, 3600, h(1))


def test_item_never_started_ages_from_creation():
    flow = item_flow(ItemLedger("K", "feature", h(1), [], NEW), now=h(5))
    assert (flow.started, flow.started_at, flow.age) == (False, None, 14400)
    assert (flow.active_time, flow.waiting_time, flow.efficiency, flow.restarted_at) == (
        None,
        None,
        None,
        None,
    )


def test_start_before_creation_is_clamped_and_not_inferred():
    flow = item_flow(ledger((h(9), ACTIVE), (h(12), DONE), created_at=h(10)), now=h(13))
    assert (flow.started_at, flow.start_inferred, flow.flow_time, flow.lead_time) == (
        h(10),
        False,
        7200,
        7200,
    )


def test_in_progress_item_started_now_has_no_efficiency():
    flow = item_flow(ledger((h(2), ACTIVE)), now=h(2))
    assert (flow.started_at, flow.age, flow.efficiency) == (h(2), 0, None)


def test_long_ledger_is_linear():
    moves = [(T0 + timedelta(seconds=n), ACTIVE if n % 2 else WAITING) for n in range(1, 100_001)]
    flow = item_flow(ledger(*moves, (T0 + timedelta(seconds=100_001), DONE)), now=h(48))
    assert (flow.flow_time, flow.active_time, flow.waiting_time) == (100_000, 50_000, 50_000)


# Buckets


def test_day_buckets_are_local_days_of_23_and_25_hours_across_dst():
    spring = bucket_starts(utc(2026, 3, 27, 23), utc(2026, 3, 30, 22), Bucket.DAY, "Europe/Berlin")
    assert [start.isoformat() for start in spring] == [
        "2026-03-28T00:00:00+01:00",
        "2026-03-29T00:00:00+01:00",
        "2026-03-30T00:00:00+02:00",
    ]
    assert spring[2].astimezone(UTC) - spring[1].astimezone(UTC) == timedelta(hours=23)
    autumn = bucket_starts(utc(2026, 10, 24, 22), utc(2026, 10, 26, 23), "day", BERLIN)
    assert [start.astimezone(UTC) for start in autumn] == [utc(2026, 10, 24, 22), utc(2026, 10, 25, 23)]


def test_bucket_of_uses_the_local_calendar():
    assert bucket_of(utc(2026, 3, 29, 21, 59), "day", BERLIN) == datetime(2026, 3, 29, tzinfo=BERLIN)
    assert bucket_of(utc(2026, 3, 29, 22, 30), "day", BERLIN).isoformat() == "2026-03-30T00:00:00+02:00"
    assert bucket_of(utc(2026, 10, 25, 22, 30), "day", BERLIN).isoformat() == "2026-10-25T00:00:00+02:00"
    assert bucket_of(utc(2026, 10, 25, 23, 30), "day", BERLIN).isoformat() == "2026-10-26T00:00:00+01:00"


def test_week_buckets_start_on_monday():
    assert bucket_of(utc(2026, 3, 29, 21), "week", BERLIN).isoformat() == "2026-03-23T00:00:00+01:00"
    assert bucket_of(utc(2026, 3, 29, 22, 30), "week", BERLIN).isoformat() == "2026-03-30T00:00:00+02:00"
    weeks = bucket_starts(utc(2026, 3, 24), utc(2026, 4, 7), "week", BERLIN)
    assert [week.date() for week in weeks] == [date(2026, 3, 23), date(2026, 3, 30), date(2026, 4, 6)]
    assert weeks[1].astimezone(UTC) - weeks[0].astimezone(UTC) == timedelta(hours=167)


def test_month_and_quarter_buckets():
    assert bucket_of(utc(2026, 3, 31, 21, 59), "month", BERLIN).date() == date(2026, 3, 1)
    assert bucket_of(utc(2026, 3, 31, 22, 30), "month", BERLIN).date() == date(2026, 4, 1)
    assert bucket_of(utc(2026, 3, 31, 22, 30), "quarter", BERLIN).date() == date(2026, 4, 1)
    assert bucket_of(utc(2026, 2, 15), "quarter", BERLIN).date() == date(2026, 1, 1)
    assert bucket_of(utc(2026, 12, 31, 23, 30), "quarter", BERLIN).date() == date(2027, 1, 1)
    months = bucket_starts(utc(2026, 11, 15), utc(2027, 1, 10), "month", BERLIN)
    assert [month.date() for month in months] == [date(2026, 11, 1), date(2026, 12, 1), date(2027, 1, 1)]
    quarters = bucket_starts(utc(2026, 5, 1), utc(2027, 1, 1), "quarter", "UTC")
    assert [quarter.date() for quarter in quarters] == [date(2026, 4, 1), date(2026, 7, 1), date(2026, 10, 1)]


def test_bucket_starts_of_an_empty_range_and_unknown_bucket():
    assert bucket_starts(T0, T0, "day", BERLIN) == []
    with pytest.raises(ValueError, match="year"):
        bucket_of(T0, "year", BERLIN)


def test_window_is_half_open():
    window = Window(h(0), h(1))
    assert h(0) in window and h(1) not in window and None not in window
    with pytest.raises(ValueError, match="end after"):
        Window(h(1), h(1))


ZONES = (
    "Europe/Berlin",
    "America/New_York",
    "America/Santiago",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "UTC",
)


@settings(max_examples=300, deadline=None)
@given(
    instant=st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1), timezones=st.just(UTC)),
    bucket=st.sampled_from(list(Bucket)),
    zone_name=st.sampled_from(ZONES),
)
def test_every_instant_lies_in_its_bucket(instant, bucket, zone_name):
    zone = ZoneInfo(zone_name)
    start = bucket_of(instant, bucket, zone)
    starts = bucket_starts(instant, instant + timedelta(days=100), bucket, zone)
    assert starts[0] == start
    assert start.astimezone(UTC) <= instant < starts[1].astimezone(UTC)
    # It starts at the first instant of a local day (America/Santiago skips some midnights).
    assert (start.astimezone(UTC) - timedelta(microseconds=1)).astimezone(zone).date() < start.date()
    if bucket == Bucket.WEEK:
        assert start.weekday() == 0
    if bucket in (Bucket.MONTH, Bucket.QUARTER):
        assert start.day == 1
    if bucket == Bucket.QUARTER:
        assert start.month in (1, 4, 7, 10)


# Aggregates over a window

AUTUMN = Window(utc(2026, 10, 24, 22), utc(2026, 10, 27, 23))  # Berlin, 25 Oct to 27 Oct inclusive


def done_item(key, done_at, flow_type="feature", started_hours_before=2.0, current=None):
    started = done_at - timedelta(hours=started_hours_before)
    return item_flow(
        ledger(
            (started, ACTIVE),
            (done_at, DONE),
            created_at=started,
            key=key,
            flow_type=flow_type,
            current=current,
        ),
        now=done_at + timedelta(days=30),
    )


def autumn_items():
    return [
        done_item("A", utc(2026, 10, 24, 22, 30)),  # 00:30 CEST on 25 Oct
        done_item("B", utc(2026, 10, 25, 22, 30), flow_type="defect"),  # 23:30 CET on 25 Oct
        done_item("C", utc(2026, 10, 25, 23, 30)),  # 00:30 CET on 26 Oct
        done_item("S", utc(2026, 10, 25, 12), flow_type=None),  # a build: supporting
        done_item("X", utc(2026, 10, 24, 21, 59)),  # 23:59 CEST on 24 Oct: before the window
        item_flow(
            ledger((utc(2026, 10, 25, 9), ACTIVE), (utc(2026, 10, 25, 10), CANCELED), key="Z"),
            now=utc(2026, 11, 1),
        ),
        item_flow(
            ledger(
                (utc(2026, 10, 25, 9), ACTIVE), (utc(2026, 10, 25, 10), DONE), (utc(2026, 10, 25, 11), ACTIVE)
            ),
            now=utc(2026, 11, 1),
        ),
    ]


def test_velocity_counts_done_items_in_the_bucket_of_their_done_time():
    velocity = flow_velocity(autumn_items(), AUTUMN, "day", BERLIN)
    assert velocity == {
        datetime(2026, 10, 25, tzinfo=BERLIN): {"feature": 1, "defect": 1},
        datetime(2026, 10, 26, tzinfo=BERLIN): {"feature": 1},
        datetime(2026, 10, 27, tzinfo=BERLIN): {},
    }
    assert flow_velocity(autumn_items(), AUTUMN, "week", BERLIN) == {
        datetime(2026, 10, 19, tzinfo=BERLIN): {"feature": 1, "defect": 1},
        datetime(2026, 10, 26, tzinfo=BERLIN): {"feature": 1},
    }


def test_canceled_items_are_counted_apart():
    items = autumn_items()
    assert canceled_count(items, AUTUMN) == 1
    assert canceled_count(items, Window(utc(2026, 10, 26), utc(2026, 10, 27))) == 0
    assert [item.key for item in done_in(items, AUTUMN)] == ["A", "B", "C"]


def test_percentiles_interpolate_linearly_between_closest_ranks():
    values = list(range(1, 11))
    assert percentile(values, 50) == pytest.approx(5.5, abs=1e-12)
    assert percentile(values, 85) == pytest.approx(8.65, abs=1e-12)
    assert percentile(values, 95) == pytest.approx(9.55, abs=1e-12)
    assert (percentile(values, 0), percentile(values, 100), percentile([7], 85)) == (1, 10, 7)
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


def test_flow_time_stats_of_items_done_in_the_window():
    window = Window(utc(2026, 4, 1), utc(2026, 5, 1))
    done = utc(2026, 4, 20)
    items = [
        done_item("A", done, started_hours_before=24),
        done_item("B", done, started_hours_before=48),
        done_item("C", done, started_hours_before=48, flow_type="defect"),
        done_item("D", done, started_hours_before=72),
        done_item("E", done, started_hours_before=240),
        done_item("S", done, started_hours_before=1000, flow_type=None),
        done_item("OLD", utc(2026, 3, 31, 23), started_hours_before=1000),
        item_flow(ledger((h(1), ACTIVE), (utc(2026, 4, 10), CANCELED)), now=done),
    ]
    stats = flow_time_stats(items, window)
    assert stats.count == 5
    assert stats.mean == 3.6 * DAY
    assert stats.p50 == 2 * DAY
    assert stats.p85 == pytest.approx(5.8 * DAY)
    assert stats.p95 == pytest.approx(8.6 * DAY)
    assert stats.max == 10 * DAY
    # The longest is 10 days: 12 h bins would need 21, so bins are whole days.
    assert stats.histogram == [
        (n * DAY, (n + 1) * DAY, count) for n, count in enumerate([0, 1, 2, 1] + [0] * 6 + [1])
    ]
    assert stats.outliers == [("E", 10 * DAY)]


def test_flow_time_stats_of_nothing():
    stats = flow_time_stats([], Window(T0, h(1)))
    assert (stats.count, stats.mean, stats.p50, stats.p85, stats.p95, stats.max) == (
        0,
        None,
        None,
        None,
        None,
        None,
    )
    assert (stats.histogram, stats.outliers) == ([], [])


def test_histogram_bin_width_rule():
    assert duration_stats([("A", 0)]).histogram == [(0, HOUR, 1)]
    assert duration_stats([("A", 19 * HOUR)]).histogram[-1] == (19 * HOUR, 20 * HOUR, 1)
    assert [upper for _, upper, _ in duration_stats([("A", 20 * HOUR)]).histogram] == [
        4 * HOUR * n for n in range(1, 7)
    ]
    longest = 25 * YEAR
    histogram = duration_stats([("A", longest)]).histogram
    assert histogram[1][0] == 2 * YEAR and len(histogram) == 13 and histogram[-1][2] == 1


def test_flow_efficiency_is_time_weighted():
    window = Window(utc(2026, 4, 1), utc(2026, 4, 3))
    half_active = item_flow(
        ledger(
            (utc(2026, 4, 1, 8), ACTIVE),
            (utc(2026, 4, 1, 9), WAITING),
            (utc(2026, 4, 1, 11), ACTIVE),
            (utc(2026, 4, 1, 12), DONE),
        ),
        now=utc(2026, 4, 5),
    )
    all_active = done_item("B", utc(2026, 4, 1, 20), started_hours_before=1)
    never_started = item_flow(ledger((utc(2026, 4, 2, 9), DONE), key="C"), now=utc(2026, 4, 5))
    efficiency = flow_efficiency([half_active, all_active, never_started], window, "day", "UTC")
    assert efficiency.overall == 3 / 5  # (2 h + 1 h) / (4 h + 1 h + 0 h), not the mean of 0.5 and 1
    assert efficiency.by_bucket == {utc(2026, 4, 1): 3 / 5, utc(2026, 4, 2): None}
    assert flow_efficiency([], window, "day", "UTC").overall is None


def test_flow_load_samples_the_end_of_each_local_day_across_dst():
    days = [date(2026, 3, 30), date(2026, 3, 28), date(2026, 3, 29), date(2026, 3, 29)]
    ledgers = [
        # Active 23:30 on the 28th -> 00:30 on the 30th (local): in progress at both midnights.
        ledger((utc(2026, 3, 28, 22, 30), ACTIVE), (utc(2026, 3, 29, 22, 30), DONE), key="A"),
        # Created and started after the end of the 29th (22:00 UTC that day, 23 hours after the 28th's).
        ledger(
            (utc(2026, 3, 29, 22, 30), ACTIVE), created_at=utc(2026, 3, 29, 21), key="B", flow_type="defect"
        ),
        # Waiting exactly from the first sample instant, done exactly at the second.
        ledger((utc(2026, 3, 28, 23), WAITING), (utc(2026, 3, 29, 22), DONE), key="C"),
        ItemLedger("D", "feature", utc(2026, 3, 1), [], ACTIVE),  # in progress when first seen, still
        ItemLedger("S", None, utc(2026, 3, 1), [], ACTIVE),  # supporting
        ledger((utc(2026, 3, 28, 10), ACTIVE), (utc(2026, 3, 28, 12), CANCELED), key="Z"),
    ]
    load = flow_load(ledgers, days, "Europe/Berlin")
    assert load == {
        date(2026, 3, 28): {"feature": 3},
        date(2026, 3, 29): {"feature": 2},
        date(2026, 3, 30): {"feature": 1, "defect": 1},
    }
    assert list(load) == sorted(set(days))

    autumn = [ledger((utc(2026, 10, 25, 22, 30), ACTIVE), (utc(2026, 10, 25, 23, 30), DONE))]
    # The 25th ends at 23:00 UTC (a 25-hour day); the 24th ended at 22:00 UTC.
    assert flow_load(autumn, [date(2026, 10, 24), date(2026, 10, 25)], BERLIN) == {
        date(2026, 10, 24): {},
        date(2026, 10, 25): {"feature": 1},
    }
    assert flow_load(autumn, [], BERLIN) == {}


def test_distribution_of_done_items_and_of_load_and_deviation_from_target():
    velocity = flow_velocity(autumn_items(), AUTUMN, "day", BERLIN)
    assert flow_distribution(total_by_type(velocity)) == {"feature": 2 / 3, "defect": 1 / 3}
    assert flow_distribution({"feature": 3, "defect": 1}) == {"feature": 0.75, "defect": 0.25}
    assert flow_distribution({}) == {} and flow_distribution({"feature": 0}) == {}
    deviation = allocation_deviation(
        {"feature": 0.75, "defect": 0.25}, {"feature": 0.5, "defect": 0.3, "risk": 0.1, "debt": 0.1}
    )
    assert deviation == pytest.approx({"debt": -0.1, "defect": -0.05, "feature": 0.25, "risk": -0.1})


# Forecasts


def test_daily_throughput_counts_each_day_in_range_including_zeros():
    done = [date(2026, 4, 1), date(2026, 4, 1), date(2026, 4, 3), date(2026, 3, 31), date(2026, 4, 5)]
    assert daily_throughput(done, date(2026, 4, 1), date(2026, 4, 4)) == [2, 0, 1, 0]
    with pytest.raises(ValueError, match="before start_day"):
        daily_throughput(done, date(2026, 4, 4), date(2026, 4, 1))


def test_how_many_is_repeatable_and_monotone():
    history = [0, 3, 1, 0, 5, 2, 2, 0, 1, 4]
    forecast = monte_carlo_how_many(history, 30, trials=2000, seed=7)
    assert forecast == monte_carlo_how_many(history, 30, trials=2000, seed=7)
    assert forecast[95] <= forecast[85] <= forecast[50]
    assert monte_carlo_how_many([3], 10, trials=50, seed=1) == {50: 30, 85: 30, 95: 30}


def test_how_many_at_a_higher_confidence_promises_fewer_items():
    # One day at a time, three days in four deliver one item: 75% of simulations reach 1.
    assert monte_carlo_how_many([1, 1, 1, 0], 1, trials=4000, seed=3) == {50: 1, 85: 0, 95: 0}


def test_when_is_repeatable_and_monotone():
    history = [0, 3, 1, 0, 5, 2, 2, 0, 1, 4]
    start = date(2026, 4, 1)
    forecast = monte_carlo_when(history, 40, start, trials=2000, seed=7)
    assert forecast == monte_carlo_when(history, 40, start, trials=2000, seed=7)
    assert start <= forecast[50] <= forecast[85] <= forecast[95]
    assert monte_carlo_when([1], 5, start, trials=50) == dict.fromkeys((50, 85, 95), date(2026, 4, 5))


def test_when_at_a_higher_confidence_is_later():
    # The first day delivers with probability 3/4, two days 15/16, three 63/64.
    forecast = monte_carlo_when([1, 1, 1, 0], 1, date(2026, 4, 1), trials=4000, seed=3)
    assert forecast == {50: date(2026, 4, 1), 85: date(2026, 4, 2), 95: date(2026, 4, 3)}


def test_default_ten_thousand_trials_are_seeded():
    assert monte_carlo_how_many([0, 1, 2, 5], 20) == monte_carlo_how_many([0, 1, 2, 5], 20, seed=0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: monte_carlo_how_many([1, 2], 0), "days must be at least 1"),
        (lambda: monte_carlo_how_many([], 5), "empty throughput history"),
        (lambda: monte_carlo_how_many([0, 0, 0], 5), "all days are zero"),
        (lambda: monte_carlo_how_many([1], 5, trials=0), "trials must be at least 1"),
        (lambda: monte_carlo_when([1, 2], 0, date(2026, 4, 1)), "items must be at least 1"),
        (lambda: monte_carlo_when([1, 2], -3, date(2026, 4, 1)), "items must be at least 1"),
        (lambda: monte_carlo_when([], 5, date(2026, 4, 1)), "empty throughput history"),
        (lambda: monte_carlo_when([0, 0], 5, date(2026, 4, 1)), "all days are zero"),
        (lambda: monte_carlo_when([1, 0], 100, date(2026, 4, 1), max_days=10), "more than 10 days"),
    ],
)
def test_forecasts_refuse_what_they_cannot_forecast(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# Properties over random ledgers

gaps = st.one_of(st.just(0), st.integers(1, 3 * DAY))


@st.composite
def ledgers(draw, key="K"):
    created_at = T0 + timedelta(seconds=draw(st.integers(0, 20 * DAY)))
    moves = draw(st.lists(st.tuples(gaps, st.sampled_from(STATES)), max_size=10))
    if draw(st.booleans()):
        moves.append((draw(gaps), DONE))  # done items are rare in uniformly random ledgers
    when = created_at - timedelta(seconds=draw(st.sampled_from([0, 0, 0, HOUR, 2 * DAY])))  # clock skew
    state = draw(st.sampled_from((*STATES, None)))
    transitions = []
    for gap, to_state in moves:
        when += timedelta(seconds=gap)
        transitions.append((when, state, to_state))
        state = to_state
    current_state = state if transitions else draw(st.sampled_from(STATES))
    return ItemLedger(key, draw(st.sampled_from((*FLOW_TYPES, None))), created_at, transitions, current_state)


def measured_at(item: ItemLedger, extra: int) -> datetime:
    return max([item.created_at] + [when for when, _, _ in item.transitions]) + timedelta(seconds=extra)


@settings(max_examples=400, deadline=None)
@given(item=ledgers(), extra=st.integers(0, 5 * DAY))
def test_per_item_invariants(item, extra):
    now = measured_at(item, extra)
    intervals = state_intervals(item, now)
    if intervals:
        assert intervals[0].start == item.created_at and intervals[-1].end == now
    for previous, current in itertools.pairwise(intervals):
        assert previous.end == current.start and previous.state != current.state
    assert all(interval.start < interval.end for interval in intervals)

    flow = item_flow(item, now)
    assert flow.efficiency is None or 0 <= flow.efficiency <= 1
    assert flow.active_time is None or flow.active_time >= 0 <= flow.waiting_time
    if flow.done_at is not None:
        assert flow.active_time + flow.waiting_time == flow.flow_time
        assert 0 <= flow.flow_time_from_restart <= flow.flow_time <= flow.lead_time
        assert item.created_at <= flow.started_at <= flow.restarted_at <= flow.done_at <= now
        assert state_at(item, flow.done_at) == DONE
    if flow.started and flow.done_at is None and not flow.canceled:
        assert flow.age == (now - flow.started_at).total_seconds()
        assert state_at(item, flow.started_at) in (ACTIVE, WAITING)
        if flow.efficiency is not None:
            assert flow.efficiency == pytest.approx(flow.active_time / flow.age)


@settings(max_examples=300, deadline=None)
@given(item=ledgers(), offsets=st.lists(st.integers(-DAY, 30 * DAY), min_size=1, max_size=20))
def test_intervals_agree_with_replaying_the_ledger(item, offsets):
    intervals = state_intervals(item, T0 + timedelta(days=60))
    for offset in offsets:
        instant = item.created_at + timedelta(seconds=offset)
        expected = state_at(item, instant)
        found = [interval.state for interval in intervals if interval.start <= instant < interval.end]
        assert found == ([] if expected is None else [expected])


@settings(max_examples=100, deadline=None)
@given(
    items=st.lists(ledgers(), max_size=12),
    first_day=st.integers(0, 20),
    day_count=st.integers(1, 40),
    zone_name=st.sampled_from(("Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata")),
)
def test_load_equals_a_brute_force_count_at_each_day_end(items, first_day, day_count, zone_name):
    zone = ZoneInfo(zone_name)
    days = [date(2026, 3, 1) + timedelta(days=first_day + n) for n in range(day_count)]
    load = flow_load(items, days, zone)
    for day in days:
        day_end = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone)
        expected = {}
        for item in items:
            if item.flow_type is not None and state_at(item, day_end) in (ACTIVE, WAITING):
                expected[item.flow_type] = expected.get(item.flow_type, 0) + 1
        assert load[day] == expected


@settings(max_examples=100, deadline=None)
@given(
    items=st.lists(ledgers(), max_size=15),
    start_offset=st.integers(0, 20 * DAY),
    length=st.integers(1, 40 * DAY),
    bucket=st.sampled_from(list(Bucket)),
    zone_name=st.sampled_from(("Europe/Berlin", "America/New_York", "Asia/Kolkata")),
)
def test_every_done_item_in_the_window_is_counted_in_exactly_one_bucket(
    items, start_offset, length, bucket, zone_name
):
    now = T0 + timedelta(days=90)
    flows = [item_flow(item, now) for item in items]
    window = Window(T0 + timedelta(seconds=start_offset), T0 + timedelta(seconds=start_offset + length))
    velocity = flow_velocity(flows, window, bucket, zone_name)
    done = [flow for flow in flows if flow.flow_type is not None and flow.done_at in window]
    assert sum(sum(counts.values()) for counts in velocity.values()) == len(done)
    expected = {start: {} for start in velocity}
    for flow in done:
        start = bucket_of(flow.done_at, bucket, zone_name)
        expected[start][flow.flow_type] = expected[start].get(flow.flow_type, 0) + 1
    assert velocity == expected
    assert flow_time_stats(flows, window).count == len(done)
    assert canceled_count(flows, window) == sum(
        1 for flow in flows if flow.canceled and flow.flow_type and flow.canceled_at in window
    )


@settings(max_examples=6, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), arrivals_per_day=st.integers(4, 16))
def test_littles_law_holds_in_a_steady_state(seed, arrivals_per_day):
    """Average load = throughput x average flow time, over a window well inside the steady state."""
    rng = random.Random(seed)
    slot = DAY / arrivals_per_day
    items = []
    for n in range(200 * arrivals_per_day):
        started = T0 + timedelta(seconds=(n + rng.random()) * slot)
        first_active = started + timedelta(seconds=rng.randint(HOUR, 3 * DAY))
        waited = first_active + timedelta(seconds=rng.randint(0, 4 * DAY))
        done = waited + timedelta(seconds=rng.randint(HOUR, 2 * DAY))
        moves = ((started, ACTIVE), (first_active, WAITING), (waited, ACTIVE), (done, DONE))
        items.append(ledger(*moves, created_at=started - timedelta(days=1), key=str(n)))
    window = Window(T0 + timedelta(days=40), T0 + timedelta(days=160))
    days = [(window.start + timedelta(days=n)).date() for n in range(120)]

    average_load = statistics.fmean(sum(counts.values()) for counts in flow_load(items, days, UTC).values())
    done = list(done_in((item_flow(item, T0 + timedelta(days=220)) for item in items), window))
    throughput_per_day = len(done) / 120
    average_flow_days = statistics.fmean(flow.flow_time for flow in done) / DAY
    assert throughput_per_day == pytest.approx(arrivals_per_day, rel=0.05)
    assert average_load == pytest.approx(throughput_per_day * average_flow_days, rel=0.05)
