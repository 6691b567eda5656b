"""connectors.sync.plan_pair, the pure three-way merge: per field, what flows, what is a conflict, and who
wins one under each policy, by when each side's value of that field changed."""

from datetime import UTC, datetime

import pytest

from connectors.models import ConflictPolicy, FieldFlow
from connectors.sync import FlowRule, plan_pair

EARLY, LATE = datetime(2026, 3, 2, 9, tzinfo=UTC), datetime(2026, 3, 2, 10, tzinfo=UTC)
BOTH = [FlowRule("title", FieldFlow.BOTH), FlowRule("release", FieldFlow.BOTH)]
BASE = {"title": "Pay", "release": "1.0"}


def plan(
    source_now, target_now, *, policy=ConflictPolicy.FLAG, source_times=None, target_times=None, rules=BOTH
):
    return plan_pair(
        rules,
        source_now,
        target_now,
        BASE,
        BASE,
        policy=policy,
        source_times=source_times or dict.fromkeys(BASE, EARLY),
        target_times=target_times or dict.fromkeys(BASE, EARLY),
        open_conflicts={},
    )


def test_a_field_changed_on_one_side_flows_to_the_other():
    result = plan({**BASE, "title": "Pay by invoice"}, BASE)
    assert (result.to_target, result.to_source, result.conflicts) == ({"title": "Pay by invoice"}, {}, {})
    result = plan(BASE, {**BASE, "release": "1.1"})
    assert (result.to_target, result.to_source) == ({}, {"release": "1.1"})


def test_the_same_change_on_both_sides_is_agreed_not_written():
    result = plan({**BASE, "title": "Same"}, {**BASE, "title": "Same"})
    assert not result.writes and not result.conflicts
    assert result.accept_source == result.accept_target == {"title": "Same"}


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (ConflictPolicy.FLAG, "conflict"),
        (ConflictPolicy.SOURCE_WINS, "source"),
        (ConflictPolicy.TARGET_WINS, "target"),
    ],
)
def test_a_field_changed_on_both_sides_goes_to_the_policy(policy, expected):
    result = plan({**BASE, "title": "From source"}, {**BASE, "title": "From target"}, policy=policy)
    outcome = {
        "conflict": ({}, {}, {"title": {"source": "From source", "target": "From target"}}),
        "source": ({"title": "From source"}, {}, {}),
        "target": ({}, {"title": "From target"}, {}),
    }[expected]
    assert (result.to_target, result.to_source, result.conflicts) == outcome


def test_latest_wins_goes_by_when_each_field_changed_not_the_whole_item():
    """The source changed the title early and the release late; the target changed the title in between:
    the target's title is the latest edit of the title, whatever else the source changed later."""
    result = plan(
        {**BASE, "title": "Source title", "release": "2.0"},
        {**BASE, "title": "Target title"},
        policy=ConflictPolicy.LATEST_WINS,
        source_times={"title": EARLY, "release": LATE},
        target_times={"title": datetime(2026, 3, 2, 9, 30, tzinfo=UTC), "release": EARLY},
    )
    assert result.to_source == {"title": "Target title"}
    assert result.to_target == {"release": "2.0"}


def test_a_field_that_flows_one_way_keeps_the_side_it_flows_from():
    rules = [FlowRule("title", FieldFlow.TO_TARGET)]
    result = plan(
        {**BASE, "title": "From source"},
        {**BASE, "title": "From target"},
        policy=ConflictPolicy.TARGET_WINS,
        rules=rules,
    )
    assert (result.to_target, result.to_source) == ({"title": "From source"}, {})


def test_a_field_in_conflict_waits_and_the_others_still_flow():
    result = plan_pair(
        BOTH,
        {"title": "A", "release": "2.0"},
        {"title": "B", "release": "1.0"},
        BASE,
        BASE,
        policy=ConflictPolicy.FLAG,
        source_times=dict.fromkeys(BASE, EARLY),
        target_times=dict.fromkeys(BASE, EARLY),
        open_conflicts={"title": {"source": "A", "target": "B"}},
    )
    assert (result.to_target, result.conflicts) == ({"release": "2.0"}, {})


def test_a_field_new_to_the_integration_flows_from_the_side_that_has_a_value():
    """A field flow added later: no baseline names it; the side holding a value changed it, the empty
    side did not (a conflict would let "target wins" blank the source)."""
    rules = [FlowRule("description", FieldFlow.BOTH)]
    result = plan_pair(
        rules,
        {"description": "Customers want it"},
        {},
        {},
        {},
        policy=ConflictPolicy.TARGET_WINS,
        source_times={"description": EARLY},
        target_times={"description": EARLY},
        open_conflicts={},
    )
    assert (result.to_target, result.to_source, result.conflicts) == (
        {"description": "Customers want it"},
        {},
        {},
    )
