"""DORA metrics: the pure calculators, dora_metrics and /api/metrics/dora/ (hand-computed, exact seconds)."""

import contextlib
import signal
import time
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from metrics import calculators
from metrics.calculators import (
    DAY,
    DORA_BANDS,
    DORA_DAYS_PER_MONTH,
    DORA_DAYS_PER_WEEK,
    DORA_FAILED,
    DORA_FAILURE_RATE,
    DORA_LEAD_TIME_P50,
    DORA_RECOVERY_P50,
    DORA_SUCCEEDED,
    DORA_UNFINISHED,
    DoraDeployment,
    DoraIncident,
    Window,
    blame_incidents,
    change_failure_rate,
    deployment_days,
    deployment_environment,
    deployment_frequency,
    deployment_frequency_level,
    deployment_outcome,
    dora_level,
    dora_production_pattern,
    failed_deployment_recovery_time,
    failure_rate_level,
    first_shipped_in,
    lead_time_for_changes,
    lead_time_level,
    production_deployments,
    pull_request_lead_time,
    recovery_level,
)
from metrics.selectors import DayWindow, dora_metrics
from tests.clients import api_client_for as client_for
from tests.clients import portal_client_for
from tests.factories import (
    ArtifactFactory,
    ArtifactLinkFactory,
    PartnerFactory,
    PartnerGrantFactory,
    PartnerMembershipFactory,
    ProductFactory,
    ProductRoleFactory,
    StaffFactory,
    ToolConnectionFactory,
    UserFactory,
    artifact_model,
)
from vsm.choices import FlowState, LinkKind

HOUR = 3600.0
URL = "/api/metrics/dora/"
WINDOW = {"window_start": "2026-03-02", "window_end": "2026-03-15", "bucket": "week"}
WEEK1, WEEK2 = "2026-03-02T00:00:00Z", "2026-03-09T00:00:00Z"


def at(day: int, hour: int = 0, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


# --- calculators (pure) ------------------------------------------------------------------------------------


def deployment(key, when, outcome=DORA_SUCCEEDED, environment="production"):
    return DoraDeployment(key=key, at=when, environment=environment, outcome=outcome)


def incident(key, created_at, linked, resolved_at=None, kind="incident"):
    return DoraIncident(
        key=key, kind=kind, created_at=created_at, resolved_at=resolved_at, linked=frozenset(linked)
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("production", "production"),
        ({"id": 4, "name": "prod-eu"}, "prod-eu"),
        ("  Staging ", "Staging"),
        (None, ""),
        (12, ""),
        ({"id": 4}, ""),
        ("x" * 500, "x" * 200),
    ],
)
def test_the_environment_is_a_name_or_an_objects_name(value, expected):
    assert deployment_environment(value) == expected


@pytest.mark.parametrize(
    ("result", "status", "state", "expected"),
    [
        ("SUCCESS", None, "done", DORA_SUCCEEDED),
        ("FAILURE", None, "done", DORA_FAILED),
        ("UNSTABLE", None, "done", DORA_FAILED),
        ("ABORTED", None, "canceled", DORA_UNFINISHED),
        (None, None, "active", DORA_UNFINISHED),  # a Jenkins deployment still building
        (None, "success", "done", DORA_SUCCEEDED),  # GitLab
        (None, "failed", "done", DORA_FAILED),
        (None, "running", "active", DORA_UNFINISHED),
        (None, "canceled", "canceled", DORA_UNFINISHED),
        (None, None, "done", DORA_SUCCEEDED),  # no outcome field: the flow state decides
        ("", 7, "new", DORA_UNFINISHED),
    ],
)
def test_the_outcome_comes_from_result_then_status_then_the_state(result, status, state, expected):
    assert deployment_outcome(result, status, state) == expected


def test_the_production_pattern_defaults_and_refuses_bad_regexes():
    assert dora_production_pattern(None).pattern == "(?i)prod"
    assert dora_production_pattern("").pattern == "(?i)prod"
    assert dora_production_pattern("^live$").search("live")
    with pytest.raises(ValueError, match="not a valid RE2 regular expression"):
        dora_production_pattern("(prod")
    with pytest.raises(ValueError, match="longer than 200"):
        dora_production_pattern("a" * 201)


def test_production_deployments_are_the_finished_ones_matching_the_pattern_in_time_order():
    deployments = [
        deployment("b", at(3), environment="Production"),
        deployment("a", at(3), DORA_FAILED, environment="prod-eu"),
        deployment("c", at(2), environment="staging"),
        deployment("d", at(1), DORA_UNFINISHED),
        deployment("e", at(1), environment=""),
    ]
    assert [d.key for d in production_deployments(deployments, dora_production_pattern())] == ["a", "b"]
    assert [d.key for d in production_deployments(deployments, dora_production_pattern("^staging$"))] == ["c"]


def test_an_artifact_is_shipped_by_the_first_succeeded_deployment_that_contains_it():
    production = [
        deployment("d1", at(3)),
        deployment("d2", at(4), DORA_FAILED),
        deployment("d3", at(5)),
    ]
    links = [
        ("c1", "b1", "built_in"),
        ("b1", "staging", "deployed_in"),
        ("staging", "d1", "deployed_in"),
        ("c2", "b2", "built_in"),
        ("b2", "d2", "deployed_in"),
        ("b2", "d3", "deployed_in"),
        ("b1", "d3", "deployed_in"),  # redeployed: still shipped by d1
        ("c3", "r1", "released_in"),
        ("r1", "d3", "deployed_in"),
        ("story", "c3", "committed_in"),  # not a pipeline link
    ]
    shipped = {key: d.key for key, d in first_shipped_in(production, links).items()}
    assert shipped == {
        "d1": "d1",
        "staging": "d1",
        "b1": "d1",
        "c1": "d1",
        "d3": "d3",
        "b2": "d3",
        "c2": "d3",
        "r1": "d3",
        "c3": "d3",
    }


def test_deployment_frequency_per_bucket_day_and_week_in_the_product_zone():
    zone = ZoneInfo("Europe/Berlin")
    window = Window(datetime(2026, 3, 2, tzinfo=zone), datetime(2026, 3, 5, tzinfo=zone))
    production = [
        deployment("late", datetime(2026, 3, 2, 23, 30, tzinfo=UTC)),  # 00:30 on the 3rd in Berlin
        deployment("first", datetime(2026, 3, 1, 23, 0, tzinfo=UTC)),  # local midnight: inside
        deployment("before", datetime(2026, 3, 1, 22, 59, 59, tzinfo=UTC)),
        deployment("failed", datetime(2026, 3, 3, 9, tzinfo=UTC), DORA_FAILED),
    ]
    frequency = deployment_frequency(production, window, "day", zone)
    assert frequency.total == 2
    assert frequency.days == 3
    assert frequency.per_day == 2 / 3
    assert frequency.per_week == 14 / 3
    assert list(frequency.by_bucket.values()) == [["first"], ["late"], []]
    assert list(frequency.by_bucket) == [datetime(2026, 3, day, tzinfo=zone) for day in (2, 3, 4)]


def test_lead_time_for_changes_runs_from_the_commit_to_its_first_shipping():
    window = Window(at(2), at(16))
    production = [
        deployment("d0", at(25, 10, month=2)),
        deployment("d1", at(3, 15)),
        deployment("d2", at(10)),
    ]
    links = [("c0", "d0", "deployed_in"), ("c0", "d1", "deployed_in"), ("c1", "d1", "deployed_in")]
    links += [("c2", "d2", "deployed_in"), ("skewed", "d2", "deployed_in")]
    shipped = first_shipped_in(production, links)
    commits = {"c0": at(20, month=2), "c1": at(2, 9), "c2": at(9, 12), "skewed": at(10, 1), "lost": at(2)}
    result = lead_time_for_changes(commits, shipped, window, "week", UTC)
    assert [(c.commit, c.deployment, c.seconds) for c in result.changes] == [
        ("c1", "d1", 30 * HOUR),
        ("c2", "d2", 12 * HOUR),
        ("skewed", "d2", 0.0),  # committed after the deployment (clock skew): 0, never negative
    ]
    assert result.stats.count == 3
    assert result.stats.p50 == 12 * HOUR
    assert result.by_bucket[at(2)].p50 == 30 * HOUR
    assert result.by_bucket[at(9)].count == 2


def test_an_incident_is_blamed_on_the_latest_linked_deployment_within_the_failure_window():
    production = [deployment("d1", at(3)), deployment("d2", at(5)), deployment("d3", at(9))]
    shipped = first_shipped_in(production, [("c1", "d1", "deployed_in"), ("c2", "d2", "deployed_in")])
    week = timedelta(days=7)
    incidents = [
        incident("both", at(6), ["c1", "c2"]),  # d1 and d2 qualify: the latest, d2
        incident("direct", at(9, 1), ["d3", "unrelated"]),
        incident("too-late", at(10), ["d1"]),  # 7 days after d1: the window is half-open
        incident("before", at(4), ["d2"]),  # created before d2
        incident("alone", at(9), []),
    ]
    blamed = blame_incidents(incidents, production, shipped, week)
    assert [(i.key, d.key) for i, d in blamed] == [("both", "d2"), ("direct", "d3")]
    blamed = blame_incidents(incidents, production, shipped, timedelta(days=7, seconds=1))
    assert ("too-late", "d1") in [(i.key, d.key) for i, d in blamed]
    with pytest.raises(ValueError, match="must be positive"):
        blame_incidents(incidents, production, shipped, timedelta())


def test_change_failure_rate_and_recovery_of_a_deployment_failing_and_recovering():
    window = Window(at(2), at(16))
    production = [
        deployment("ok", at(3)),
        deployment("bad", at(4, 10), DORA_FAILED),
        deployment("worse", at(4, 11), DORA_FAILED),
        deployment("fix", at(4, 12, 30)),
        deployment("last-bad", at(14), DORA_FAILED),  # never recovered
    ]
    inc = incident("inc", at(5, 9), ["fix"], resolved_at=at(5, 11, 15))
    blamed = blame_incidents([inc], production, {}, timedelta(days=7))
    rate = change_failure_rate(production, blamed, window, "week", UTC)
    assert (rate.deployments, rate.failed, rate.rate) == (5, 4, 0.8)
    assert [(r.deployment, r.deployment_failed, r.incidents) for r in rate.results] == [
        ("ok", False, ()),
        ("bad", True, ()),
        ("worse", True, ()),
        ("fix", False, ("inc",)),
        ("last-bad", True, ()),
    ]
    assert rate.by_bucket[at(2)] == calculators.FailureRateBucket(4, 3, 0.75)
    assert rate.by_bucket[at(9)] == calculators.FailureRateBucket(1, 1, 1.0)

    recovery = failed_deployment_recovery_time(production, blamed, window, "week", UTC)
    assert [(f.failure, f.kind, f.recovered_by, f.seconds) for f in recovery.failures] == [
        ("bad", "deployment", "fix", 2.5 * HOUR),
        ("worse", "deployment", "fix", 1.5 * HOUR),
        ("inc", "incident", "inc", 2.25 * HOUR),
        ("last-bad", "deployment", None, None),
    ]
    assert recovery.stats.count == 3
    assert recovery.stats.p50 == 2.25 * HOUR
    assert recovery.unrecovered == 1
    assert recovery.by_bucket[at(9)].count == 0


def test_nothing_in_the_window_gives_zeros_and_nones():
    window = Window(at(2), at(16))
    production = [deployment("old", at(1, month=1), DORA_FAILED)]
    assert deployment_frequency(production, window, "week", UTC).per_week == 0
    lead = lead_time_for_changes({}, {}, window, "week", UTC)
    assert (lead.stats.count, lead.stats.p50, lead.changes) == (0, None, [])
    rate = change_failure_rate(production, [], window, "week", UTC)
    assert (rate.deployments, rate.failed, rate.rate) == (0, 0, None)
    assert rate.by_bucket[at(2)].rate is None
    recovery = failed_deployment_recovery_time(production, [], window, "week", UTC)
    assert (recovery.stats.count, recovery.unrecovered, recovery.failures) == (0, 0, [])


# --- levels and conventions (pure) --------------------------------------------------------------------------

WEEK = 7 * DAY
MONTH = 30 * DAY


def level_of(metric, measure, value):
    return dora_level(metric, {measure: value}, {measure: "nothing"}).level


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "elite"),
        (DAY - 1, "elite"),
        (DAY, "high"),  # exactly one day: no longer "less than one day"
        (WEEK - 1, "high"),
        (WEEK, "medium"),
        (MONTH - 1, "medium"),
        (MONTH, "low"),  # a month is 30 days
        (10 * MONTH, "low"),
    ],
)
def test_lead_time_bands_at_their_boundaries(seconds, expected):
    assert level_of("lead_time_for_changes", DORA_LEAD_TIME_P50, seconds) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "elite"),
        (HOUR - 1, "elite"),
        (HOUR, "high"),
        (DAY - 1, "high"),
        (DAY, "medium"),
        (WEEK - 1, "medium"),
        (WEEK, "low"),
    ],
)
def test_recovery_time_bands_at_their_boundaries(seconds, expected):
    assert level_of("failed_deployment_recovery_time", DORA_RECOVERY_P50, seconds) == expected


@pytest.mark.parametrize(
    ("failed", "deployments", "expected"),
    [
        (0, 7, "elite"),
        (1, 20, "elite"),  # exactly 5%: elite is "5% or less"
        (1, 19, "high"),  # 5.26%
        (2, 20, "high"),  # exactly 10%
        (3, 29, "medium"),  # 10.3%
        (3, 20, "medium"),  # exactly 15%
        (4, 26, "low"),  # 15.4%
        (3, 3, "low"),
    ],
)
def test_change_failure_rate_bands_at_their_boundaries(failed, deployments, expected):
    window = Window(at(2), at(16))
    production = [
        deployment(f"d{n}", at(2) + timedelta(minutes=n), DORA_FAILED if n < failed else DORA_SUCCEEDED)
        for n in range(deployments)
    ]
    rate = change_failure_rate(production, [], window, "week", UTC)
    assert (rate.failed, rate.deployments) == (failed, deployments)
    level = failure_rate_level(rate)
    assert (level.level, level.measure, level.value) == (expected, DORA_FAILURE_RATE, failed / deployments)


@pytest.mark.parametrize(
    ("median", "expected"), [(5, "elite"), (4.5, "high"), (4, "high"), (1, "high"), (0.5, None), (0, None)]
)
def test_deployment_frequency_bands_on_the_weekly_median(median, expected):
    # Without a monthly median, a weekly median below 1 cannot tell medium from low.
    level = dora_level(
        "deployment_frequency",
        {DORA_DAYS_PER_WEEK: median, DORA_DAYS_PER_MONTH: None},
        {DORA_DAYS_PER_MONTH: "why"},
    )
    assert level.level == expected
    assert level.reason == (None if expected else "why")


@pytest.mark.parametrize(("monthly", "expected"), [(1, "medium"), (3, "medium"), (0.5, "low"), (0, "low")])
def test_deployment_frequency_bands_on_the_monthly_median(monthly, expected):
    level = dora_level("deployment_frequency", {DORA_DAYS_PER_WEEK: 0.5, DORA_DAYS_PER_MONTH: monthly}, {})
    assert (level.level, level.measure, level.value) == (expected, DORA_DAYS_PER_MONTH, monthly)


def test_the_bands_are_one_table_ordered_from_elite_to_low():
    assert set(DORA_BANDS) == {
        "deployment_frequency",
        "lead_time_for_changes",
        "change_failure_rate",
        "failed_deployment_recovery_time",
    }
    for bands in DORA_BANDS.values():
        assert [band.level for band in bands] == ["elite", "high", "medium", "low"]
        assert bands[-1].test is None and all(band.test for band in bands[:-1])


def deployments_on(days: list[datetime], outcome=DORA_SUCCEEDED) -> list[DoraDeployment]:
    return [deployment(f"d{n}", when, outcome) for n, when in enumerate(days)]


@pytest.mark.parametrize(
    ("weekdays", "expected"),
    [
        ((0, 1, 2, 3), "high"),  # 4 deployment days a week
        ((0, 1, 2, 3, 4), "elite"),  # 5
        ((0,), "high"),  # 1
    ],
)
def test_deployment_days_per_week_four_versus_five(weekdays, expected):
    # Two complete weeks, Monday 2 to Sunday 15 March; three deployments on each of those days count once.
    window = Window(at(2), at(16))
    days = [
        at(2 + week * 7 + weekday, hour) for week in (0, 1) for weekday in weekdays for hour in (9, 12, 17)
    ]
    counted = deployment_days(deployments_on(days), window, UTC)
    assert counted.days == 2 * len(weekdays)
    assert list(counted.weeks.values()) == [len(weekdays), len(weekdays)]
    assert counted.median_per_week == len(weekdays)
    assert (counted.months, counted.median_per_month) == ({}, None)
    assert deployment_frequency_level(counted).level == expected


def test_four_and_five_deployment_days_have_a_median_of_four_and_a_half():
    window = Window(at(2), at(16))
    days = [at(day) for day in (2, 3, 4, 5)] + [at(day) for day in (9, 10, 11, 12, 13)]
    counted = deployment_days(deployments_on(days), window, UTC)
    assert (list(counted.weeks.values()), counted.median_per_week) == ([4, 5], 4.5)
    level = deployment_frequency_level(counted)
    assert (level.level, level.band, level.value) == ("high", "between once per day and once per week", 4.5)


@pytest.mark.parametrize("length", [30, 91, 180, 365])
@pytest.mark.parametrize(
    "last_day", [date(2026, 6, 30), date(2026, 7, 1), date(2026, 7, 5), date(2026, 12, 31)]
)
@pytest.mark.parametrize("zone_name", ["UTC", "Europe/Berlin", "Pacific/Auckland"])
def test_a_weekly_deployer_is_high_over_any_window(length, last_day, zone_name):
    zone = ZoneInfo(zone_name)
    first_day = last_day - timedelta(days=length - 1)
    window = Window(
        datetime.combine(first_day, datetime.min.time(), zone),
        datetime.combine(last_day + timedelta(days=1), datetime.min.time(), zone),
    )
    # Every Wednesday at 11:00 local, over a year and more around the window.
    wednesday = date(2025, 1, 1)
    production = [
        deployment(
            f"w{n}",
            datetime.combine(wednesday + timedelta(weeks=n), datetime.min.time(), zone) + timedelta(hours=11),
        )
        for n in range(110)
    ]
    counted = deployment_days(production, window, zone)
    assert counted.weeks and set(counted.weeks.values()) == {1}
    assert counted.median_per_week == 1
    level = deployment_frequency_level(counted)
    assert (level.level, level.measure) == ("high", DORA_DAYS_PER_WEEK)
    # What a count over the window would say drifts with the window; the level does not.
    assert deployment_frequency(production, window, "week", zone).per_week != 1 or length % 7 == 0


def test_complete_weeks_and_months_are_local_and_inside_the_window():
    zone = ZoneInfo("Europe/Berlin")
    # Wednesday 28 January to Tuesday 31 March 2026 (local): complete weeks from 2 February to 29 March
    # (8), complete months February and March.
    window = Window(datetime(2026, 1, 28, tzinfo=zone), datetime(2026, 4, 1, tzinfo=zone))
    production = [
        *deployments_on(
            [
                datetime(2026, 1, 29, 10, tzinfo=UTC),  # in a partial week: a deployment day, in no week
                datetime(2026, 2, 1, 23, 30, tzinfo=UTC),  # Monday 2 February 00:30 in Berlin: week 1
                datetime(2026, 2, 2, 9, tzinfo=UTC),  # the same local day
                datetime(2026, 3, 29, 21, 59, 59, tzinfo=UTC),  # Sunday 29 March 23:59:59 (CEST): week 8
                datetime(2026, 3, 31, 21, 59, 59, tzinfo=UTC),  # the window's last second: in March only
                datetime(2026, 3, 31, 22, tzinfo=UTC),  # 1 April local: outside
            ]
        ),
        deployment("failed", datetime(2026, 2, 10, 9, tzinfo=UTC), DORA_FAILED),
    ]
    counted = deployment_days(production, window, zone)
    assert counted.days == 4
    assert list(counted.weeks) == [datetime(2026, 2, 2, tzinfo=zone) + timedelta(weeks=n) for n in range(8)]
    assert list(counted.weeks.values()) == [1, 0, 0, 0, 0, 0, 0, 1]
    assert counted.months == {datetime(2026, 2, 1, tzinfo=zone): 1, datetime(2026, 3, 1, tzinfo=zone): 2}
    assert (counted.median_per_week, counted.median_per_month) == (0, 1.5)
    level = deployment_frequency_level(counted)
    assert (level.level, level.measure, level.value) == ("medium", DORA_DAYS_PER_MONTH, 1.5)


@pytest.mark.parametrize(
    ("first", "last", "deploy_days", "expected", "reason"),
    [
        # Tuesday 3 to Monday 9 March: 7 days, no complete week.
        (3, 9, [3, 4, 5, 6, 7], None, "the window holds no complete week (Monday to Sunday)"),
        # Tuesday 3 to Sunday 15 March: one complete week (9 to 15).
        (3, 15, [10], "high", None),
        (3, 15, [4], None, "no complete calendar month to tell medium from low"),
        (2, 29, [], None, "no successful production deployment in the window"),
    ],
)
def test_deployment_frequency_without_a_complete_week_or_month(first, last, deploy_days, expected, reason):
    window = Window(at(first), at(last) + timedelta(days=1))
    level = deployment_frequency_level(
        deployment_days(deployments_on([at(d, 12) for d in deploy_days]), window, UTC)
    )
    assert level.level == expected
    assert (level.reason or "").endswith(reason or "")
    assert (level.reason is None) == (reason is None)


@pytest.mark.parametrize(
    ("deploy_every", "expected"),
    [(timedelta(days=17), "medium"), (timedelta(days=35), "medium"), (timedelta(days=61), "low")],
)
def test_less_than_weekly_deployers_over_a_year(deploy_every, expected):
    window = Window(at(1, month=1), datetime(2027, 1, 1, tzinfo=UTC))
    production = [deployment(f"d{n}", at(7, 12, month=1) + n * deploy_every) for n in range(30)]
    counted = deployment_days(production, window, UTC)
    # 5 January to 27 December 2026: 51 complete weeks (1 to 4 January and 28 December on are partial).
    assert len(counted.weeks) == 51 and len(counted.months) == 12
    assert deployment_frequency_level(counted).level == expected


def test_no_data_gives_no_level_with_the_reason():
    window = Window(at(2), at(16))
    lead = lead_time_level(lead_time_for_changes({}, {}, window, "week", UTC))
    assert (lead.level, lead.reason) == (None, "no change shipped by a production deployment in the window")
    rate = failure_rate_level(change_failure_rate([], [], window, "week", UTC))
    assert (rate.level, rate.reason) == (None, "no production deployment counted in the window")
    recovery = recovery_level(failed_deployment_recovery_time([], [], window, "week", UTC))
    assert (recovery.level, recovery.reason) == (None, "no failure in the window")
    open_failure = [deployment("bad", at(3), DORA_FAILED)]
    recovery = recovery_level(failed_deployment_recovery_time(open_failure, [], window, "week", UTC))
    assert recovery.reason == "no failure recovered in the window (1 not recovered yet)"


def test_a_lead_time_of_exactly_one_day_is_high():
    window = Window(at(2), at(16))
    shipped = first_shipped_in([deployment("d1", at(4, 9))], [("c1", "d1", "deployed_in")])
    lead = lead_time_for_changes({"c1": at(3, 9)}, shipped, window, "week", UTC)
    level = lead_time_level(lead)
    assert (level.level, level.value, level.band) == ("high", DAY, "between one day and one week")


def test_lead_time_per_pull_request_ends_at_the_deployment_shipping_its_last_commit():
    window = Window(at(2), at(16))
    production = [
        deployment("d1", at(3, 15)),
        deployment("bad", at(4, 10), DORA_FAILED),
        deployment("d2", at(5, 12)),
        deployment("d3", at(20, 12)),  # after the window
    ]
    links = [
        ("a1", "d1", "deployed_in"),
        ("a2", "bad", "deployed_in"),
        ("a2", "d2", "deployed_in"),
        ("b1", "d1", "deployed_in"),
        ("c1", "d1", "deployed_in"),
        ("c2", "d3", "deployed_in"),
    ]
    shipped = first_shipped_in(production, links)
    pull_requests = {
        # a1 ships with d1, a2 with d2 (the failed attempt ships nothing): pr-a ends at d2.
        "pr-a": {"a2": at(4, 8), "a1": at(2, 9)},
        # b0 never shipped: waited for by nobody, but it is pr-b's earliest commit.
        "pr-b": {"b1": at(3, 10), "b0": at(1, 16)},
        "pr-c": {"c1": at(2, 10), "c2": at(6)},  # its last commit ships after the window
        "pr-d": {"d0": at(3)},  # nothing shipped
    }
    result = pull_request_lead_time(pull_requests, shipped, window, "week", UTC)
    assert [(c.pull_request, c.commit, c.deployment, c.seconds, c.commits) for c in result.changes] == [
        ("pr-b", "b0", "d1", 47 * HOUR, 2),  # 1st 16:00 -> 3rd 15:00
        ("pr-a", "a1", "d2", 75 * HOUR, 2),  # 2nd 09:00 -> 5th 12:00
    ]
    assert [c.change for c in result.changes] == ["pr-b", "pr-a"]
    assert result.stats.count == 2
    assert result.stats.p50 == 61 * HOUR
    assert result.by_bucket[at(2)].count == 2
    assert lead_time_level(result).level == "high"
    # Per commit, on the same world: a1 30 h, b1 5 h, c1 29 h, a2 28 h.
    commits = {commit: when for pr in pull_requests.values() for commit, when in pr.items()}
    per_commit = lead_time_for_changes(commits, shipped, window, "week", UTC)
    assert sorted(c.seconds for c in per_commit.changes) == [5 * HOUR, 28 * HOUR, 29 * HOUR, 30 * HOUR]
    assert per_commit.stats.p50 == 28.5 * HOUR


def test_change_failure_rate_over_successful_deployments_next_to_over_attempts():
    window = Window(at(2), at(16))
    production = [
        deployment("ok", at(3)),
        deployment("bad", at(4, 10), DORA_FAILED),
        deployment("blamed-bad", at(4, 11), DORA_FAILED),
        deployment("fix", at(4, 12)),
        deployment("quiet", at(9)),
        deployment("later", at(10)),
    ]
    incidents = [
        incident("i1", at(4, 13), ["fix"]),
        incident("i2", at(4, 11, 30), ["blamed-bad"]),
        incident("i3", at(10, 1), ["later"]),
    ]
    blamed = blame_incidents(incidents, production, {}, timedelta(days=7))
    attempts = change_failure_rate(production, blamed, window, "week", UTC)
    successful = change_failure_rate(production, blamed, window, "week", UTC, convention="successful")
    # Ours: 6 finished attempts; bad and blamed-bad failed, fix and later were followed by an incident.
    assert (attempts.deployments, attempts.failed, attempts.rate) == (6, 4, 4 / 6)
    # DevLake's: 4 successful deployments, fix and later followed by an incident; failed ones in neither.
    assert (successful.deployments, successful.failed, successful.rate) == (4, 2, 0.5)
    assert [(r.deployment, r.failed, r.incidents) for r in successful.results] == [
        ("ok", False, ()),
        ("fix", True, ("i1",)),
        ("quiet", False, ()),
        ("later", True, ("i3",)),
    ]
    assert successful.by_bucket[at(2)] == calculators.FailureRateBucket(2, 1, 0.5)
    assert successful.by_bucket[at(9)] == calculators.FailureRateBucket(2, 1, 0.5)
    assert failure_rate_level(attempts).level == failure_rate_level(successful).level == "low"
    with pytest.raises(ValueError, match="unknown change failure rate convention 'all'"):
        change_failure_rate(production, blamed, window, "week", UTC, convention="all")


# --- a product's toolchain in the database ----------------------------------------------------------------


def supporting(product, model, key, created_at, connection, **kwargs):
    return ArtifactFactory(
        product=product,
        artifact_model=artifact_model(model),
        flow_item_type=None,
        connection=connection,
        key=key,
        title=f"{key} title",
        created_at=created_at,
        tool_status=kwargs.pop("tool_status", "done"),
        **kwargs,
    )


def jenkins_deployment(product, key, finished_at, connection, environment="production", result="SUCCESS"):
    done = result == "SUCCESS"
    return supporting(
        product,
        "deployment",
        key,
        finished_at - timedelta(minutes=10),
        connection,
        fields={"job": f"deploy-{environment}", "environment": environment, "result": result},
        flow_state=FlowState.DONE if done else FlowState.CANCELED,
        done_at=finished_at if done else None,
    )


def failure(product, model, key, created_at, connection, done_at=None, **kwargs):
    return ArtifactFactory(
        product=product,
        artifact_model=artifact_model(model),
        flow_item_type=None,
        connection=connection,
        key=key,
        title=f"{key} title",
        created_at=created_at,
        flow_state=kwargs.pop("flow_state", FlowState.DONE if done_at else FlowState.ACTIVE),
        done_at=done_at,
        **kwargs,
    )


def link(source, target, kind):
    return ArtifactLinkFactory(source=source, target=target, kind=kind)


@pytest.fixture
def world(db):
    """Product "shop" (UTC), March 2026; weeks from Monday 2 and Monday 9. Partner A owns the GitLab
    connection: P4, C4 and D4 are its own, F1 and F2 are linked to C4, so they are in its scope too.

    C0 -> B0 -> D0 (production, 25 February) and B0 -> D1 again: C0 shipped before the window.
    C1, C2 -> B1 -> S1 (staging, 3rd 13:00) -> D1 (production, 3rd 15:00).
    C3 -> B2 -> D2 (production, FAILURE, created 4th 09:50, no done_at) and -> D3 (production, 4th 12:00).
    C4 -> P4 -> D4 (GitLab production, success, 10th 09:00).  C5 -> B5 -> S2 (staging only).
    D5 (production, 14th 10:00, empty); D6 (production, still building).
    I1 (5th 09:00 -> 5th 11:00) relates to D3; I5 (4th 20:00 -> 5th 08:00) relates to B1 (shipped by
    D1) and to B2 (shipped by D3): blamed on the later D3. F1 (defect, 11th 09:00, open) relates to C4;
    F2 (defect, 11th 10:00) is committed_in C4: a fix, never blamed. I2 (16th 09:00) relates to D5;
    I3 (12th 09:00) relates to D1, 8 days 18 hours after it. I4 (canceled) relates to D3.
    """
    w = SimpleNamespace()
    w.shop = ProductFactory(name="Shop", slug="shop")
    w.other = ProductFactory(name="Other", slug="other")
    w.partner = PartnerFactory(name="Partner A")
    w.other_partner = PartnerFactory(name="Partner B")
    PartnerGrantFactory(partner=w.partner, product=w.shop)
    PartnerGrantFactory(partner=w.other_partner, product=w.other)
    git = ToolConnectionFactory(name="GitHub", kind="github")
    jenkins = ToolConnectionFactory(name="Jenkins", kind="jenkins")
    gitlab = ToolConnectionFactory(name="GitLab of A", kind="gitlab", partner=w.partner)
    jira = ToolConnectionFactory(name="Jira")
    shop = w.shop
    a = {}
    for key, created in [("C0", at(20, 9, month=2)), ("C1", at(2, 9)), ("C2", at(3, 10)), ("C3", at(4, 8))]:
        a[key] = supporting(shop, "commit", key, created, git)
    a["C5"] = supporting(shop, "commit", "C5", at(10), git)
    a["C4"] = supporting(shop, "commit", "C4", at(9, 12), gitlab)
    for key, created in [("B0", at(20, 10, month=2)), ("B1", at(3, 12)), ("B2", at(4, 9)), ("B5", at(10, 1))]:
        a[key] = supporting(shop, "build", key, created, jenkins, fields={"job": "app", "result": "SUCCESS"})
    a["P4"] = supporting(shop, "build", "P4", at(9, 13), gitlab, fields={"status": "success"})
    a["D0"] = jenkins_deployment(shop, "D0", at(25, 10, month=2), jenkins)
    a["S1"] = jenkins_deployment(shop, "S1", at(3, 13), jenkins, environment="staging")
    a["D1"] = jenkins_deployment(shop, "D1", at(3, 15), jenkins)
    a["D2"] = jenkins_deployment(shop, "D2", at(4, 10), jenkins, result="FAILURE")
    a["D3"] = jenkins_deployment(shop, "D3", at(4, 12), jenkins)
    a["D4"] = supporting(
        shop,
        "deployment",
        "D4",
        at(10, 8, 50),
        gitlab,
        fields={"environment": {"id": 3, "name": "production"}, "status": "success"},
        flow_state=FlowState.DONE,
        done_at=at(10, 9),
    )
    a["S2"] = jenkins_deployment(shop, "S2", at(10, 2), jenkins, environment="staging")
    a["D5"] = jenkins_deployment(shop, "D5", at(14, 10), jenkins)
    a["D6"] = supporting(
        shop,
        "deployment",
        "D6",
        at(15, 10),
        jenkins,
        fields={"environment": "production", "result": None, "building": True},
        flow_state=FlowState.ACTIVE,
    )
    a["I1"] = failure(shop, "incident", "I1", at(5, 9), jira, done_at=at(5, 11))
    a["I5"] = failure(shop, "incident", "I5", at(4, 20), jira, done_at=at(5, 8))
    a["F1"] = failure(shop, "defect", "F1", at(11, 9), jira)
    a["F2"] = failure(shop, "defect", "F2", at(11, 10), jira, done_at=at(12))
    a["I2"] = failure(shop, "incident", "I2", at(16, 9), jira, done_at=at(16, 10))
    a["I3"] = failure(shop, "incident", "I3", at(12, 9), jira, done_at=at(12, 10))
    a["I4"] = failure(shop, "incident", "I4", at(5, 10), jira, flow_state=FlowState.CANCELED)
    # Another product: never counted in shop.
    a["OTHER-D"] = jenkins_deployment(w.other, "OTHER-D", at(5, 10), jenkins)
    w.a = a

    built, deployed = LinkKind.BUILT_IN, LinkKind.DEPLOYED_IN
    for source, target, kind in [
        ("C0", "B0", built),
        ("B0", "D0", deployed),
        ("B0", "D1", deployed),
        ("C1", "B1", built),
        ("C2", "B1", built),
        ("B1", "S1", deployed),
        ("S1", "D1", deployed),
        ("C3", "B2", built),
        ("B2", "D2", deployed),
        ("B2", "D3", deployed),
        ("C4", "P4", built),
        ("P4", "D4", deployed),
        ("C5", "B5", built),
        ("B5", "S2", deployed),
        ("I1", "D3", LinkKind.RELATES_TO),
        ("B1", "I5", LinkKind.RELATES_TO),
        ("I5", "B2", LinkKind.RELATES_TO),
        ("F1", "C4", LinkKind.RELATES_TO),
        ("F2", "C4", LinkKind.COMMITTED_IN),
        ("I2", "D5", LinkKind.RELATES_TO),
        ("I3", "D1", LinkKind.RELATES_TO),
        ("I4", "D3", LinkKind.RELATES_TO),
        ("OTHER-D", "I1", LinkKind.RELATES_TO),
    ]:
        link(a[source], a[target], kind)

    w.staff = StaffFactory(username="staff")
    w.owner = ProductRoleFactory(product=w.shop, user__username="owner").user
    w.partner_user = PartnerMembershipFactory(partner=w.partner, user__username="partner-a").user
    w.other_partner_user = PartnerMembershipFactory(partner=w.other_partner, user__username="partner-b").user
    w.outsider = UserFactory(username="outsider")
    return w


def dora(user, product="shop", **params):
    response = client_for(user).get(URL, {"product": product, **WINDOW, **params})
    assert response.status_code == 200, response.content
    return response.json()


def keys_of(rows) -> list[str]:
    return [row["key"] for row in rows]


def test_dora_metrics_of_a_product(world):
    payload = dora(world.owner)
    assert payload["product"]["slug"] == "shop"
    assert payload["window"]["start"] == "2026-03-02T00:00:00Z"
    assert payload["window"]["end"] == "2026-03-16T00:00:00Z"
    assert payload["rules"] == {
        "production": "(?i)prod",
        "failure_window_days": 7,
        "lead_time": "commit",
        "failure_rate": "attempts",
        "levels": "DORA 2023 (Accelerate State of DevOps), Apache DevLake's criteria",
    }
    assert payload["scope"] == {"partner_view": False}

    frequency = payload["deployment_frequency"]
    assert (frequency["total"], frequency["days"]) == (4, 14)
    assert frequency["per_day"] == 4 / 14
    assert frequency["per_week"] == 2.0
    assert [(b["start"], b["count"], b["keys"]) for b in frequency["buckets"]] == [
        (WEEK1, 2, ["D1", "D3"]),
        (WEEK2, 2, ["D4", "D5"]),
    ]
    assert frequency["deployments"][2] == {
        "artifact": world.a["D4"].pk,
        "key": "D4",
        "at": "2026-03-10T09:00:00Z",
        "environment": "production",
        "bucket": WEEK2,
    }

    lead = payload["lead_time_for_changes"]
    # C3 (4th 08:00) -> D3 (4th 12:00); C2 (3rd 10:00) and C1 (2nd 09:00) -> D1 (3rd 15:00); C4 -> D4.
    assert [(c["commit"]["key"], c["deployment"]["key"], c["seconds"]) for c in lead["changes"]] == [
        ("C1", "D1", 30 * HOUR),
        ("C2", "D1", 5 * HOUR),
        ("C3", "D3", 4 * HOUR),
        ("C4", "D4", 21 * HOUR),
    ]
    assert lead["changes"][0]["commit"] == {"artifact": world.a["C1"].pk, "key": "C1"}
    assert lead["changes"][0]["committed_at"] == "2026-03-02T09:00:00Z"
    assert (lead["count"], lead["mean"], lead["max"]) == (4, 54000.0, 108000.0)
    # Sorted 14400, 18000, 75600, 108000: ranks 1.5, 2.55 and 2.85.
    assert lead["p50"] == pytest.approx(46800.0)
    assert lead["p85"] == pytest.approx(93420.0)
    assert lead["p95"] == pytest.approx(103140.0)
    week1, week2 = lead["buckets"]
    assert (week1["count"], week1["p50"], week1["keys"]) == (3, 18000.0, ["C1", "C2", "C3"])
    assert week1["p85"] == pytest.approx(81000.0)
    assert week1["p95"] == pytest.approx(99000.0)
    assert (week2["count"], week2["p50"], week2["p95"], week2["keys"]) == (1, 75600.0, 75600.0, ["C4"])

    rate = payload["change_failure_rate"]
    assert (rate["deployments"], rate["failed"], rate["rate"]) == (5, 4, 0.8)
    assert [(b["deployments"], b["failed"], b["rate"], b["keys"]) for b in rate["buckets"]] == [
        (3, 2, 2 / 3, ["D2", "D3"]),
        (2, 2, 1.0, ["D4", "D5"]),
    ]
    assert [
        (r["key"], r["failed"], r["deployment_failed"], keys_of(r["incidents"])) for r in rate["results"]
    ] == [
        ("D1", False, False, []),  # I3 came 8 days 18 hours later
        ("D2", True, True, []),
        ("D3", True, False, ["I5", "I1"]),  # not the canceled I4
        ("D4", True, False, ["F1"]),  # through C4, which D4 shipped; not F2, a fix
        ("D5", True, False, ["I2"]),  # I2 came after the window, within 7 days
    ]

    recovery = payload["failed_deployment_recovery_time"]
    assert [
        (f["key"], f["kind"], f["deployment"]["key"], (f["recovered_by"] or {}).get("key"), f["seconds"])
        for f in recovery["failures"]
    ] == [
        ("D2", "deployment", "D2", "D3", 2 * HOUR + 600),  # failed at its created_at
        ("I5", "incident", "D3", "I5", 12 * HOUR),
        ("I1", "incident", "D3", "I1", 2 * HOUR),
        ("F1", "defect", "D4", None, None),
    ]
    assert recovery["failures"][0]["failed_at"] == "2026-03-04T09:50:00Z"  # no done_at
    assert recovery["failures"][0]["recovered_at"] == "2026-03-04T12:00:00Z"
    assert (recovery["count"], recovery["unrecovered"], recovery["p50"]) == (3, 1, 7800.0)
    assert recovery["mean"] == 19400.0  # (7800 + 43200 + 7200) / 3
    assert recovery["p85"] == pytest.approx(32580.0)  # 7800 + 0.7 * 35400
    assert recovery["p95"] == pytest.approx(39660.0)
    week1, week2 = recovery["buckets"]
    assert (week1["count"], week1["keys"]) == (3, ["D2", "I5", "I1"])
    assert (week2["count"], week2["p50"], week2["keys"]) == (0, None, ["F1"])


def level(payload: dict, metric: str) -> tuple:
    found = payload[metric]["level"]
    return found["level"], found["value"], found["reason"]


def test_each_dora_figure_has_its_level(world):
    payload = dora(world.owner)
    frequency = payload["deployment_frequency"]
    # Deployment days: 3rd and 4th in the week of the 2nd, 10th and 14th in the week of the 9th; no
    # complete month in 2 to 15 March.
    assert frequency["deployment_days"] == {
        "days": 4,
        "weeks": [{"start": WEEK1, "days": 2}, {"start": WEEK2, "days": 2}],
        "months": [],
        "median_per_week": 2.0,
        "median_per_month": None,
    }
    assert frequency["level"] == {
        "level": "high",
        "band": "between once per day and once per week",
        "measure": "median deployment days per complete week",
        "value": 2.0,
        "reason": None,
    }
    assert level(payload, "lead_time_for_changes") == ("elite", 46800.0, None)  # 13 hours
    assert payload["lead_time_for_changes"]["level"]["band"] == "less than one day"
    assert level(payload, "change_failure_rate") == ("low", 0.8, None)
    assert level(payload, "failed_deployment_recovery_time") == ("high", 7800.0, None)  # 2 h 10 min


def test_no_data_gives_no_level(world):
    payload = dora(world.owner, window_start="2026-01-05", window_end="2026-01-18")
    assert level(payload, "deployment_frequency") == (
        None,
        None,
        "no successful production deployment in the window",
    )
    assert level(payload, "lead_time_for_changes") == (
        None,
        None,
        "no change shipped by a production deployment in the window",
    )
    assert level(payload, "change_failure_rate") == (
        None,
        None,
        "no production deployment counted in the window",
    )
    assert level(payload, "failed_deployment_recovery_time") == (None, None, "no failure in the window")
    # Five days: no complete week.
    short = dora(world.owner, window_start="2026-03-02", window_end="2026-03-06")
    assert short["deployment_frequency"]["deployment_days"]["weeks"] == []
    assert level(short, "deployment_frequency") == (
        None,
        None,
        "the window holds no complete week (Monday to Sunday)",
    )


def test_change_failure_rate_over_successful_deployments(world):
    payload = dora(world.owner, failure_rate="successful")
    assert payload["rules"]["failure_rate"] == "successful"
    rate = payload["change_failure_rate"]
    # D2 failed: in neither count. D3 (I5, I1), D4 (F1) and D5 (I2) were followed by one; D1 was not.
    assert (rate["deployments"], rate["failed"], rate["rate"]) == (4, 3, 0.75)
    assert [(r["key"], r["failed"], keys_of(r["incidents"])) for r in rate["results"]] == [
        ("D1", False, []),
        ("D3", True, ["I5", "I1"]),
        ("D4", True, ["F1"]),
        ("D5", True, ["I2"]),
    ]
    assert [(b["deployments"], b["failed"], b["rate"], b["keys"]) for b in rate["buckets"]] == [
        (2, 1, 0.5, ["D3"]),
        (2, 2, 1.0, ["D4", "D5"]),
    ]
    assert level(payload, "change_failure_rate") == ("low", 0.75, None)
    # Ours on the same world: 4 of 5 attempts. Recovery and the other figures are the same either way.
    attempts = dora(world.owner)
    assert (attempts["change_failure_rate"]["failed"], attempts["change_failure_rate"]["deployments"]) == (
        4,
        5,
    )
    for metric in ("deployment_frequency", "lead_time_for_changes", "failed_deployment_recovery_time"):
        assert payload[metric] == attempts[metric]
    # A one-day failure window blames I5 and I1 on D3 only: 1 of 4, and 2 of 5 attempts (D2, D3).
    one_day = dora(world.owner, failure_rate="successful", failure_window_days=1)["change_failure_rate"]
    assert (one_day["failed"], one_day["deployments"], one_day["rate"]) == (1, 4, 0.25)
    one_day = dora(world.owner, failure_window_days=1)["change_failure_rate"]
    assert (one_day["failed"], one_day["deployments"], one_day["rate"]) == (2, 5, 0.4)


@pytest.fixture
def pr_world(world):
    """world, and pull requests "committed_in" their commits: PR1 -> C1, C3 (shipped by D1, then D3);
    PR2 -> C2; PR3 -> C4 and C6 (8th 12:00, never built); PR4 -> C5 (staging only); PR5 -> C0 (shipped
    before the window); PR-A (partner A's GitLab) -> C4. PR1 relates_to C2 (not a commit of PR1)."""
    a = world.a
    git, gitlab = a["C1"].connection, a["C4"].connection
    a["C6"] = supporting(world.shop, "commit", "C6", at(8, 12), git)
    for key, tool, commits in [
        ("PR1", git, ["C1", "C3"]),
        ("PR2", git, ["C2"]),
        ("PR3", git, ["C4", "C6"]),
        ("PR4", git, ["C5"]),
        ("PR5", git, ["C0"]),
        ("PR-A", gitlab, ["C4"]),
    ]:
        a[key] = supporting(world.shop, "pull-request", key, at(1), tool)
        for commit in commits:
            link(a[key], a[commit], LinkKind.COMMITTED_IN)
    link(a["PR1"], a["C2"], LinkKind.RELATES_TO)
    return world


def test_lead_time_for_changes_per_pull_request(pr_world):
    payload = dora(pr_world.owner, lead_time="pull_request")
    assert payload["rules"]["lead_time"] == "pull_request"
    lead = payload["lead_time_for_changes"]
    # PR2: C2 (3rd 10:00) -> D1 (3rd 15:00). PR1: C1 (2nd 09:00) -> D3 (4th 12:00), which shipped C3, the
    # last of its commits to ship. PR3: C6 (8th 12:00, never shipped) -> D4 (10th 09:00), which shipped
    # C4. PR-A: C4 (9th 12:00) -> D4. PR4 never shipped; PR5 shipped before the window.
    assert [
        (c["pull_request"]["key"], c["commit"]["key"], c["deployment"]["key"], c["seconds"], c["commits"])
        for c in lead["changes"]
    ] == [
        ("PR2", "C2", "D1", 5 * HOUR, 1),
        ("PR1", "C1", "D3", 51 * HOUR, 2),
        ("PR3", "C6", "D4", 45 * HOUR, 2),
        ("PR-A", "C4", "D4", 21 * HOUR, 1),
    ]
    assert lead["changes"][1]["pull_request"] == {"artifact": pr_world.a["PR1"].pk, "key": "PR1"}
    assert lead["changes"][1]["committed_at"] == "2026-03-02T09:00:00Z"
    assert lead["changes"][1]["deployed_at"] == "2026-03-04T12:00:00Z"
    # Sorted 75600, 162000, 183600 and 18000: the median is (75600 + 162000) / 2, 33 hours.
    assert (lead["count"], lead["p50"], lead["mean"], lead["max"]) == (4, 118800.0, 109800.0, 183600.0)
    assert [(b["count"], b["p50"], b["keys"]) for b in lead["buckets"]] == [
        (2, 100800.0, ["PR2", "PR1"]),
        (2, 118800.0, ["PR3", "PR-A"]),
    ]
    assert level(payload, "lead_time_for_changes") == ("high", 118800.0, None)
    # Per commit, the default, on the same world: 13 hours, elite; the pull requests change nothing.
    per_commit = dora(pr_world.owner)["lead_time_for_changes"]
    assert (per_commit["p50"], per_commit["level"]["level"]) == (46800.0, "elite")
    assert "pull_request" not in per_commit["changes"][0]
    # Empty, like leaving it out: the default.
    assert dora(pr_world.owner, lead_time="", failure_rate="")["rules"]["lead_time"] == "commit"


def test_a_partner_sees_the_pull_requests_of_its_scope_with_their_visible_commits(pr_world):
    lead = dora(pr_world.partner_user, lead_time="pull_request")["lead_time_for_changes"]
    # PR-A is its own; PR3 is linked to its C4, but C6 is two links away: PR3 starts at C4.
    changes = sorted(
        (c["pull_request"]["key"], c["commit"]["key"], c["seconds"], c["commits"]) for c in lead["changes"]
    )
    assert changes == [("PR-A", "C4", 21 * HOUR, 1), ("PR3", "C4", 21 * HOUR, 1)]
    assert lead["level"]["level"] == "elite"


def test_a_longer_failure_window_blames_a_later_incident(world):
    rate = dora(world.owner, failure_window_days=9)["change_failure_rate"]
    assert (rate["deployments"], rate["failed"], rate["rate"]) == (5, 5, 1.0)
    assert keys_of(rate["results"][0]["incidents"]) == ["I3"]
    recovery = dora(world.owner, failure_window_days=9)["failed_deployment_recovery_time"]
    assert "I3" in keys_of(recovery["failures"])
    rate = dora(world.owner, failure_window_days=1)["change_failure_rate"]
    assert [r["key"] for r in rate["results"] if r["failed"]] == ["D2", "D3"]  # I1 came 21 hours after


def test_the_production_pattern_is_configurable(world):
    payload = dora(world.owner, production="^staging$")
    frequency = payload["deployment_frequency"]
    assert [b["keys"] for b in frequency["buckets"]] == [["S1"], ["S2"]]
    # Staging deployments ship what they contain: C5 through B5, C1 and C2 through B1.
    lead = payload["lead_time_for_changes"]
    assert [(c["commit"]["key"], c["seconds"]) for c in lead["changes"]] == [
        ("C1", 28 * HOUR),
        ("C2", 3 * HOUR),
        ("C5", 2 * HOUR),
    ]
    assert payload["rules"]["production"] == "^staging$"
    assert dora(world.owner, production="")["rules"]["production"] == "(?i)prod"


def test_no_deployments_in_the_window_gives_zeros_and_nones(world):
    payload = dora(world.owner, window_start="2026-01-05", window_end="2026-01-18")
    frequency = payload["deployment_frequency"]
    assert (frequency["total"], frequency["per_day"], frequency["per_week"]) == (0, 0.0, 0.0)
    assert [b["count"] for b in frequency["buckets"]] == [0, 0]
    lead = payload["lead_time_for_changes"]
    assert (lead["count"], lead["p50"], lead["p85"], lead["p95"], lead["changes"]) == (
        0,
        None,
        None,
        None,
        [],
    )
    rate = payload["change_failure_rate"]
    assert (rate["deployments"], rate["failed"], rate["rate"], rate["results"]) == (0, 0, None, [])
    recovery = payload["failed_deployment_recovery_time"]
    assert (recovery["count"], recovery["unrecovered"], recovery["p50"], recovery["failures"]) == (
        0,
        0,
        None,
        [],
    )


def test_a_product_without_any_artifact(world):
    empty = ProductFactory(slug="empty", time_zone="America/New_York")
    ProductRoleFactory(product=empty, user=world.owner)
    payload = dora(world.owner, product="empty")
    assert payload["window"]["start"] == "2026-03-02T00:00:00-05:00"  # local midnight
    assert payload["deployment_frequency"]["total"] == 0
    assert payload["change_failure_rate"]["rate"] is None


@pytest.fixture
def time_limit():
    """Fails a test whose body runs longer than the seconds given (SIGALRM: Python's regular expression
    engine checks for signals while it backtracks, so a runaway match is interrupted too)."""

    @contextlib.contextmanager
    def limit(seconds: int):
        def expire(signum, frame):
            raise TimeoutError(f"still running after {seconds} s")

        previous = signal.signal(signal.SIGALRM, expire)
        signal.alarm(seconds)
        try:
            yield
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)

    return limit


@pytest.mark.parametrize("pattern", [r"(\w*\w*)*\d", r"((a+)+)+$b", r"(x+x+)+y", r"(.*a){20}z"])
def test_a_pattern_that_backtracks_without_end_is_matched_within_a_second(world, time_limit, pattern):
    # Environments are cut at 200 characters; a backtracking engine takes ages on such a name.
    jenkins_deployment(world.shop, "LONG-ENV", at(6, 12), world.a["D1"].connection, environment="a" * 200)
    with time_limit(10):
        started = time.monotonic()
        payload = dora(world.owner, production=pattern)
        portal = portal_client_for(world.owner).get(f"/products/shop/dora/?production={quote(pattern)}")
        elapsed = time.monotonic() - started
    assert payload["deployment_frequency"]["total"] == 0
    assert portal.status_code == 200
    assert elapsed < 2, f"{elapsed:.2f} s for both the API and the page"


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [(r"(prod)\1", "invalid escape sequence"), (r"prod(?=uction)", "invalid perl operator")],
)
def test_what_needs_backtracking_is_refused_with_the_reason(world, pattern, reason):
    response = client_for(world.owner).get(URL, {"product": "shop", **WINDOW, "production": pattern})
    assert response.status_code == 400
    assert reason in response.json()["production"][0]
    page = portal_client_for(world.owner).get("/products/shop/dora/", {"production": pattern})
    assert reason in page.content.decode()


def test_the_selector_refuses_bad_rules(world):
    window = DayWindow(at(2).date(), at(15).date())
    with pytest.raises(ValueError, match="not a valid RE2 regular expression"):
        dora_metrics(world.staff, world.shop, window, "week", production_pattern="[")
    with pytest.raises(ValueError, match="failure window must be 1 to 365 days"):
        dora_metrics(world.staff, world.shop, window, "week", failure_window_days=0)
    with pytest.raises(ValueError, match="unknown lead time convention 'merge'"):
        dora_metrics(world.staff, world.shop, window, "week", lead_time_convention="merge")
    with pytest.raises(ValueError, match="unknown change failure rate convention 'all'"):
        dora_metrics(world.staff, world.shop, window, "week", failure_rate_convention="all")


def test_a_partner_sees_the_dora_metrics_of_its_scope_only(world):
    payload = dora(world.partner_user)
    assert payload["scope"] == {"partner_view": True}
    assert [b["keys"] for b in payload["deployment_frequency"]["buckets"]] == [[], ["D4"]]
    assert [c["commit"]["key"] for c in payload["lead_time_for_changes"]["changes"]] == ["C4"]
    rate = payload["change_failure_rate"]
    assert (rate["deployments"], rate["failed"]) == (1, 1)
    assert keys_of(rate["results"][0]["incidents"]) == ["F1"]
    assert keys_of(payload["failed_deployment_recovery_time"]["failures"]) == ["F1"]
    # The other partner sees nothing of shop, and its own product has nothing of shop's.
    assert client_for(world.other_partner_user).get(URL, {"product": "shop"}).status_code == 404
    other = dora(world.other_partner_user, product="other")
    assert other["deployment_frequency"]["total"] == 0  # OTHER-D is not its own, nor linked to it


def test_staff_see_every_products_figures(world):
    payload = dora(world.staff, product="other")
    assert payload["deployment_frequency"]["total"] == 1
    assert payload["change_failure_rate"]["results"][0]["incidents"] == []  # I1 is shop's, and too early


def test_products_out_of_reach_answer_404(world):
    client = client_for(world.partner_user)
    response = client.get(URL, {"product": "other", **WINDOW})
    assert response.status_code == 404
    assert "no product" in response.json()["detail"]
    assert client.get(URL, {"product": world.other.pk}).status_code == 404
    assert client_for(world.outsider).get(URL, {"product": "shop"}).status_code == 404
    assert client_for(world.staff).get(URL, {"product": "nope"}).status_code == 404
    assert client_for(world.staff).get(URL, {"product": "9" * 30}).status_code == 404
    assert APIClient().get(URL, {"product": "shop"}).status_code == 401


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"product": ""}, "product", "may not be blank"),
        ({"window_start": "2026-03-20"}, "window_end", "is before window_start"),
        ({"window_start": "2023-03-15"}, "window_end", "longer than 3 years"),
        ({"window_start": "2026-13-01"}, "window_start", "wrong format"),
        ({"bucket": "fortnight"}, "bucket", "unknown bucket 'fortnight'"),
        ({"production": "(prod"}, "production", "is not a valid RE2 regular expression"),
        ({"production": "[a-"}, "production", "is not a valid RE2 regular expression"),
        ({"production": "a" * 201}, "production", "no more than 200 characters"),
        ({"failure_window_days": "0"}, "failure_window_days", "at least 1"),
        ({"failure_window_days": "-3"}, "failure_window_days", "at least 1"),
        ({"failure_window_days": "366"}, "failure_window_days", "at most 365"),
        ({"failure_window_days": "1e9"}, "failure_window_days", "valid integer"),
        ({"failure_window_days": "seven"}, "failure_window_days", "valid integer"),
        ({"window_start": "9999-12-25", "window_end": "9999-12-31"}, "window_start", "is outside 1970-01-01"),
        ({"window_start": "0001-01-01", "window_end": "0001-01-10"}, "window_start", "is outside 1970-01-01"),
        ({"window_end": "0001-01-01"}, "window_end", "is outside 1970-01-01"),
        ({"lead_time": "merge"}, "lead_time", "unknown lead_time 'merge': use commit or pull_request"),
        ({"failure_rate": "all"}, "failure_rate", "unknown failure_rate 'all': use attempts or successful"),
        ({"failure_rate": "Successful"}, "failure_rate", "unknown failure_rate 'Successful'"),
    ],
)
def test_bad_dora_input_is_a_400_with_a_message(world, params, field, message):
    response = client_for(world.owner).get(URL, {"product": "shop", **WINDOW, **params})
    assert response.status_code == 400, response.content
    assert message in str(response.json()[field])


def test_the_default_window_ends_today(world):
    payload = client_for(world.owner).get(URL, {"product": "shop"}).json()
    assert payload["window"]["last_day"] == datetime.now(UTC).date().isoformat()
    assert payload["window"]["bucket"] == "week"


def add_pipelines(world, count: int, start: int):
    """`count` more commits, each built and deployed to production, in the window."""
    git = world.a["C1"].connection
    jenkins = world.a["D1"].connection
    for n in range(start, start + count):
        when = at(2 + n % 13, n % 24)
        commit = supporting(world.shop, "commit", f"MORE-C{n}", when, git)
        build = supporting(world.shop, "build", f"MORE-B{n}", when, jenkins)
        deployed = jenkins_deployment(world.shop, f"MORE-D{n}", when + timedelta(hours=1), jenkins)
        incident_ = failure(
            world.shop, "incident", f"MORE-I{n}", when + timedelta(hours=2), world.a["I1"].connection
        )
        link(commit, build, LinkKind.BUILT_IN)
        link(build, deployed, LinkKind.DEPLOYED_IN)
        link(incident_, deployed, LinkKind.RELATES_TO)


def count_queries(user) -> int:
    client = client_for(user)
    client.get(URL, {"product": "shop", **WINDOW})  # warm up (content types, permissions)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(URL, {"product": "shop", **WINDOW})
    assert response.status_code == 200
    return len(queries)


def test_dora_runs_a_fixed_number_of_queries(world, django_assert_max_num_queries):
    for user in (world.owner, world.partner_user, world.staff):
        with django_assert_max_num_queries(10):
            dora(user)
        with django_assert_max_num_queries(11):  # the pull requests' commits: one more
            dora(user, lead_time="pull_request", failure_rate="successful")
    before = {user.username: count_queries(user) for user in (world.owner, world.partner_user)}
    add_pipelines(world, 12, 0)
    after = {user.username: count_queries(user) for user in (world.owner, world.partner_user)}
    assert after == before
    assert dora(world.owner)["deployment_frequency"]["total"] == 4 + 12


def test_the_schema_documents_the_dora_endpoint(world):
    response = client_for(world.owner).get("/api/schema/", {"format": "json"})
    parameters = {p["name"] for p in response.json()["paths"][URL]["get"]["parameters"]}
    assert {
        "product",
        "window_start",
        "window_end",
        "bucket",
        "production",
        "failure_window_days",
        "lead_time",
        "failure_rate",
    } <= parameters
    documented = {p["name"]: p for p in response.json()["paths"][URL]["get"]["parameters"]}
    assert documented["lead_time"]["schema"]["enum"] == ["commit", "pull_request"]
    assert documented["lead_time"]["schema"]["default"] == "commit"
    assert "pull request" in documented["lead_time"]["description"]
    assert documented["failure_rate"]["schema"]["enum"] == ["attempts", "successful"]
    assert documented["failure_rate"]["schema"]["default"] == "attempts"
    assert "DevLake" in documented["failure_rate"]["description"]
