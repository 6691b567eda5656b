"""Bottlenecks: time in each flow state and tool status over a window, exact seconds, the API and scope.

The window is Monday 2 to Thursday 5 March 2026 (UTC): [T0, T0 + 96 h). Times are hours after T0.
"""

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from metrics import calculators
from metrics.calculators import StatusLedger, StatusTransition, Window, bottlenecks, status_intervals
from metrics.selectors import DayWindow
from metrics.selectors import bottlenecks as bottlenecks_of
from tests.clients import api_client_for as client_for
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
    flow_item_type,
)
from vsm.choices import LinkKind
from vsm.models import StateTransition

HOUR = 3600.0
T0 = datetime(2026, 3, 2, tzinfo=UTC)
NEW, WAITING, ACTIVE, DONE, CANCELED = "new", "waiting", "active", "done", "canceled"
WINDOW = Window(T0, T0 + timedelta(hours=96))
DAYS = {date(2026, 3, d): T0 + timedelta(days=d - 1) for d in (2, 3, 4, 5)}  # each day's end
NOW = T0 + timedelta(days=10)
URL = "/api/metrics/bottlenecks/"


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def ledger(key, tool, created, *moves, first=("To Do", NEW)) -> StatusLedger:
    """moves: (hour, to_status, to_state), each from the previous move's status and state."""
    transitions, (status, state) = [], first
    for hour, to_status, to_state in moves:
        transitions.append(StatusTransition(h(hour), state, to_state, status, to_status))
        status, state = to_status, to_state
    return StatusLedger(key, tool, h(created), transitions, state, status)


# A: In Dev 6-30, In Review 30-54 (both Active), Blocked 54-78 (Waiting), In Dev 78-90, Done at 90.
ITEM_A = ledger(
    "A",
    "jira",
    -24,
    (6, "In Dev", ACTIVE),
    (30, "In Review", ACTIVE),
    (54, "Blocked", WAITING),
    (78, "In Dev", ACTIVE),
    (90, "Done", DONE),
)
# B: In Dev from 12 to 120, after the window.
ITEM_B = ledger("B", "github", 0, (12, "In Dev", ACTIVE), (120, "Merged", DONE))


def figures(place) -> tuple:
    return (place.current, place.peak, place.peak_at, place.visits, place.mean, place.p85, place.total)


# --- pure ---------------------------------------------------------------------------------------------------


def test_status_intervals_follow_the_state_interval_conventions():
    assert status_intervals(ITEM_A, h(100)) == [
        ("To Do", NEW, h(-24), h(6)),
        ("In Dev", ACTIVE, h(6), h(30)),
        ("In Review", ACTIVE, h(30), h(54)),
        ("Blocked", WAITING, h(54), h(78)),
        ("In Dev", ACTIVE, h(78), h(90)),
        ("Done", DONE, h(90), h(100)),
    ]
    # Skew clamped to created_at, a zero-length stay dropped, cut at `until`; no transitions: current.
    skewed = ledger("S", "jira", 10, (5, "In Dev", ACTIVE), (20, "Review", ACTIVE), (20, "QA", ACTIVE))
    assert status_intervals(skewed, h(30)) == [("In Dev", ACTIVE, h(10), h(20)), ("QA", ACTIVE, h(20), h(30))]
    still = StatusLedger("Q", "jira", h(0), [], WAITING, "Blocked")
    assert status_intervals(still, h(5)) == [("Blocked", WAITING, h(0), h(5))]
    assert status_intervals(still, h(0)) == []


def test_bottlenecks_by_state_and_status_in_exact_seconds():
    result = bottlenecks([ITEM_A, ITEM_B], WINDOW, DAYS, NOW)

    assert [place.state for place in result.states] == [ACTIVE, WAITING]
    active, waiting = result.states
    # Visits: A 6-54 (48 h, In Dev and In Review are one Active stay), A 78-90 (12 h), B 12-96 (84 h, cut
    # at the window's end). Day ends 24, 48, 72, 96 hold 2, 2, 1, 1 items. At the end (96): B only.
    assert figures(active) == (
        1,
        2,
        date(2026, 3, 2),
        3,
        48 * HOUR,
        pytest.approx(73.2 * HOUR, abs=1e-6),  # 48 + 0.7 x (84 - 48)
        144 * HOUR,
    )
    assert active.items == [("B", 84 * HOUR), ("A", 60 * HOUR)]
    assert active.item_count == 2
    assert figures(waiting) == (0, 1, date(2026, 3, 4), 1, 24 * HOUR, 24 * HOUR, 24 * HOUR)
    assert waiting.items == [("A", 24 * HOUR)]

    ranked = [(place.tool, place.status, place.visits, place.total) for place in result.statuses]
    assert ranked == [
        ("github", "In Dev", 1, 84 * HOUR),
        ("jira", "In Dev", 2, 36 * HOUR),
        ("jira", "Blocked", 1, 24 * HOUR),  # a tie with In Review: by name
        ("jira", "In Review", 1, 24 * HOUR),
    ]
    jira_dev = result.statuses[1]
    assert (jira_dev.state, jira_dev.mean, jira_dev.current, jira_dev.peak) == (None, 18 * HOUR, 0, 1)


def test_a_visit_begun_before_the_window_counts_whole_but_only_its_inside_adds_to_the_total():
    early = ledger("E", "jira", -100, (-50, "In Dev", ACTIVE), (10, "Done", DONE))
    (active,) = bottlenecks([early], WINDOW, DAYS, NOW).states
    assert (active.visits, active.mean, active.total, active.peak) == (1, 60 * HOUR, 10 * HOUR, 0)
    # Out of flow all through the window: no place at all.
    assert bottlenecks([ledger("L", "jira", -10, (-5, "Done", DONE))], WINDOW, DAYS, NOW).states == []


def test_a_window_reaching_now_ends_at_now_and_caps_the_items():
    now = h(40)
    items = [ledger(f"K{n}", "jira", 0, (n, "In Dev", ACTIVE)) for n in range(1, 6)]
    (active,) = bottlenecks(items, WINDOW, {date(2026, 3, 2): h(24)}, now, max_items=2).states
    assert (active.current, active.peak, active.visits) == (5, 5, 5)
    assert active.total == sum(40 - n for n in range(1, 6)) * HOUR
    assert active.items == [("K1", 39 * HOUR), ("K2", 38 * HOUR)]
    assert active.item_count == 5


# --- the database ------------------------------------------------------------------------------------------


def status_item(product, connection, key, created, *moves, first=("To Do", NEW), **kwargs):
    """An artifact with transitions carrying tool statuses, as `ledger` reads its moves."""
    transitions, (status, state) = [], first
    for hour, to_status, to_state in moves:
        transitions.append((h(hour), status, to_status, state, to_state))
        status, state = to_status, to_state
    artifact = ArtifactFactory(
        product=product,
        connection=connection,
        key=key,
        created_at=h(created),
        flow_state=state,
        tool_status=status,
        flow_item_type=kwargs.pop("flow_item_type", flow_item_type("feature")),
        **kwargs,
    )
    StateTransition.objects.bulk_create(
        StateTransition(artifact=artifact, at=at, from_status=fs, to_status=ts, from_state=fst, to_state=tst)
        for at, fs, ts, fst, tst in transitions
    )
    return artifact


@pytest.fixture
def world():
    """Shop (granted to partner A) holds A (partner A's tool) and B (internal), as ITEM_A and ITEM_B; a
    commit (supporting: left out), OLD (done before the window), and GONE (deleted). Other: partner B's."""
    w = SimpleNamespace()
    w.shop = ProductFactory(name="Shop", slug="shop")
    w.other = ProductFactory(name="Other", slug="other")
    w.partner = PartnerFactory(name="Partner A")
    w.other_partner = PartnerFactory(name="Partner B")
    PartnerGrantFactory(partner=w.partner, product=w.shop)
    PartnerGrantFactory(partner=w.other_partner, product=w.other)
    jira = ToolConnectionFactory(kind="jira", name="A Jira", partner=w.partner)
    github = ToolConnectionFactory(kind="github", name="GitHub")
    w.items = {
        "A": status_item(
            w.shop,
            jira,
            "A",
            -24,
            (6, "In Dev", ACTIVE),
            (30, "In Review", ACTIVE),
            (54, "Blocked", WAITING),
            (78, "In Dev", ACTIVE),
            (90, "Done", DONE),
        ),
        "B": status_item(w.shop, github, "B", 0, (12, "In Dev", ACTIVE), (120, "Merged", DONE)),
        "COMMIT": status_item(w.shop, github, "COMMIT", 0, (1, "In Dev", ACTIVE), flow_item_type=None),
        "OLD": status_item(w.shop, github, "OLD", -100, (-90, "In Dev", ACTIVE), (-50, "Done", DONE)),
        "GONE": status_item(w.shop, github, "GONE", 0, (1, "In Dev", ACTIVE), deleted_at=h(2)),
        "ELSEWHERE": status_item(w.other, github, "ELSEWHERE", 0, (1, "In Dev", ACTIVE)),
    }
    w.staff = StaffFactory(username="staff")
    w.owner = ProductRoleFactory(product=w.shop, user__username="owner").user
    w.partner_user = PartnerMembershipFactory(partner=w.partner, user__username="partner-a").user
    w.other_partner_user = PartnerMembershipFactory(partner=w.other_partner, user__username="partner-b").user
    w.outsider = UserFactory(username="outsider")
    return w


pytestmark = pytest.mark.django_db

PARAMS = {"product": "shop", "window_start": "2026-03-02", "window_end": "2026-03-05"}


def get_ok(user, **params):
    response = client_for(user).get(URL, {**PARAMS, **params})
    assert response.status_code == 200, response.content
    return response.json()


def test_the_selector_equals_the_calculator(world):
    result = bottlenecks_of(world.owner, world.shop, DayWindow(date(2026, 3, 2), date(2026, 3, 5)), now=NOW)
    expected = bottlenecks([ITEM_A, ITEM_B], WINDOW, DAYS, NOW)
    ids = {key: str(artifact.pk) for key, artifact in world.items.items()}
    states = [
        (p["state"], p["current"], p["peak"], p["visits"], p["mean"], p["total"]) for p in result["states"]
    ]
    assert states == [(p.state, p.current, p.peak, p.visits, p.mean, p.total) for p in expected.states]
    assert [(p["tool"], p["status"], p["total"]) for p in result["statuses"]] == [
        (p.tool, p.status, p.total) for p in expected.statuses
    ]
    assert result["states"][0]["items"] == [
        {"artifact": int(ids["B"]), "key": "B", "seconds": 84 * HOUR},
        {"artifact": int(ids["A"]), "key": "A", "seconds": 60 * HOUR},
    ]
    assert result["window"]["until"] == h(96)


def test_the_api_ranks_states_and_statuses(world):
    payload = get_ok(world.owner)
    assert payload["product"] == {"id": world.shop.pk, "slug": "shop", "name": "Shop"}
    assert payload["window"]["end"] == "2026-03-06T00:00:00Z"
    active = payload["states"][0]
    assert active == {
        "state": ACTIVE,
        "current": 1,
        "peak": 2,
        "peak_day": "2026-03-02",
        "visits": 3,
        "mean": 48 * HOUR,
        "p85": pytest.approx(73.2 * HOUR, abs=1e-6),
        "total": 144 * HOUR,
        "item_count": 2,
        "items": [
            {"artifact": world.items["B"].pk, "key": "B", "seconds": 84 * HOUR},
            {"artifact": world.items["A"].pk, "key": "A", "seconds": 60 * HOUR},
        ],
    }
    assert [p["state"] for p in payload["states"]] == [ACTIVE, WAITING]
    assert [(p["tool"], p["status"], p["total"] / HOUR) for p in payload["statuses"]] == [
        ("github", "In Dev", 84),
        ("jira", "In Dev", 36),
        ("jira", "Blocked", 24),
        ("jira", "In Review", 24),
    ]
    assert [len(p["items"]) for p in get_ok(world.owner, max_items=1)["states"]] == [1, 1]


def test_a_partner_sees_the_bottlenecks_of_its_scope(world):
    payload = get_ok(world.partner_user)  # A is from partner A's Jira; B is internal and not linked
    assert [(p["state"], p["total"] / HOUR) for p in payload["states"]] == [(ACTIVE, 60), (WAITING, 24)]
    assert {item["key"] for p in payload["statuses"] for item in p["items"]} == {"A"}

    ArtifactLinkFactory(source=world.items["B"], target=world.items["A"], kind=LinkKind.RELATES_TO)
    payload = get_ok(world.partner_user)  # now B is linked to A: in scope
    assert [(p["state"], p["total"] / HOUR) for p in payload["states"]] == [(ACTIVE, 144), (WAITING, 24)]


def test_products_out_of_reach_answer_404(world):
    assert client_for(world.partner_user).get(URL, {**PARAMS, "product": "other"}).status_code == 404
    assert client_for(world.other_partner_user).get(URL, PARAMS).status_code == 404
    assert client_for(world.outsider).get(URL, {**PARAMS, "product": world.shop.pk}).status_code == 404
    assert APIClient().get(URL, PARAMS).status_code == 401


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"product": ""}, "product", "may not be blank"),
        ({"window_end": "2026-03-01"}, "window_end", "is before window_start"),
        ({"window_start": "2022-01-01"}, "window_end", "longer than 3 years"),
        ({"window_start": "March"}, "window_start", "wrong format"),
        ({"max_items": -1}, "max_items", "max_items must be at least 0"),
        ({"max_items": "lots"}, "max_items", "valid integer"),
    ],
)
def test_bad_input_is_a_400_with_a_message(world, params, field, message):
    response = client_for(world.owner).get(URL, {**PARAMS, **params})
    assert response.status_code == 400, response.content
    assert message in str(response.json()[field])


def test_a_fixed_number_of_queries_whatever_the_number_of_items(world, django_assert_max_num_queries):
    github = world.items["B"].connection
    for n in range(40):
        status_item(world.shop, github, f"N-{n}", 0, (n % 24 + 1, "In Dev", ACTIVE), (50, "QA", WAITING))
    for user in (world.owner, world.partner_user, world.staff):
        with django_assert_max_num_queries(8):
            get_ok(user)
    states = {p["state"]: p for p in get_ok(world.owner)["states"]}
    assert list(states) == [WAITING, ACTIVE]  # 40 items waiting from hour 50 on now weigh the most
    assert (states[ACTIVE]["item_count"], states[WAITING]["item_count"]) == (42, 41)


def test_an_item_idle_since_before_the_window_is_left_out_and_one_stuck_counts_whole(world):
    github = world.items["B"].connection
    stuck = status_item(world.shop, github, "STUCK", -48, (-40, "In Dev", ACTIVE))
    status_item(world.shop, github, "IDLE", -48, (-40, "In Dev", ACTIVE), (-20, "To Do", NEW))
    result = bottlenecks_of(world.owner, world.shop, DayWindow(date(2026, 3, 2), date(2026, 3, 5)), now=NOW)
    active = next(place for place in result["states"] if place["state"] == ACTIVE)
    assert {"artifact": stuck.pk, "key": "STUCK", "seconds": 96 * HOUR} in active["items"]
    places = result["states"] + result["statuses"]
    assert not any(item["key"] == "IDLE" for place in places for item in place["items"])


def test_a_window_across_a_clock_change_counts_the_hours_that_really_passed():
    # Berlin leaves summer time on Sunday 25 October 2026: that local day has 25 hours.
    zone = ZoneInfo("Europe/Berlin")
    window = DayWindow(date(2026, 10, 24), date(2026, 10, 26)).instants(zone)
    created = datetime(2026, 10, 1, tzinfo=UTC)
    stuck = StatusLedger(
        "S",
        "jira",
        created,
        [StatusTransition(created, NEW, WAITING, "To Do", "Blocked")],
        WAITING,
        "Blocked",
    )
    result = bottlenecks([stuck], window, {}, window.end + timedelta(days=1))
    assert [(place.state, place.total) for place in result.states] == [(WAITING, 73 * HOUR)]
    assert result.statuses[0].items == [("S", 73 * HOUR)]


# --- the replay clipped to the window -------------------------------------------------------------------


def visit_every_stay(place, key, start, end, window_start, until, instants):
    """The reference visit, in datetimes: one stay [start, end) counted in its place."""
    if start <= until < end:
        place.current += 1
    for index, instant in enumerate(instants):
        if start <= instant < end:
            place.sample_changes[index] += 1
            place.sample_changes[index + 1] -= 1
    inside = (min(end, until) - max(start, window_start)).total_seconds()
    if inside > 0:
        place.total += inside
        place.visit_times.append((min(end, until) - start).total_seconds())
        place.by_item[key] = place.by_item.get(key, 0.0) + inside


def bottlenecks_replaying_every_stay(ledgers, window, samples, now):
    """The reference: every flow-state stay (state_intervals) and every status stay of every ledger
    visited, none skipped, in datetimes."""
    until, labels = min(window.end, now), list(samples)
    instants = [samples[label] for label in labels]
    states, statuses = {}, {}
    for item in ledgers:
        for state, start, end in calculators.state_intervals(item.item_ledger(), calculators._END_OF_TIME):
            if state in calculators.BOTTLENECK_STATES:
                place = states.setdefault(state, calculators._Place(len(instants)))
                visit_every_stay(place, item.key, start, end, window.start, until, instants)
        for status, state, start, end in status_intervals(item, calculators._END_OF_TIME):
            if state in calculators.BOTTLENECK_STATES:
                place = statuses.setdefault((item.tool, status), calculators._Place(len(instants)))
                visit_every_stay(place, item.key, start, end, window.start, until, instants)
    return calculators.Bottlenecks(
        states=calculators._ranked(
            [calculators._bottleneck(place, labels, None, state=name) for name, place in states.items()]
        ),
        statuses=calculators._ranked(
            [
                calculators._bottleneck(place, labels, None, tool=tool, status=status)
                for (tool, status), place in statuses.items()
            ]
        ),
    )


STATES = [NEW, WAITING, ACTIVE, "unknown", DONE, CANCELED]
random_moves = st.lists(
    st.tuples(
        st.integers(-300, 300),
        st.sampled_from(["To Do", "In Dev", "Blocked", "Done"]),
        st.sampled_from(STATES),
    ),
    max_size=8,
).map(sorted)
random_ledgers = st.lists(
    st.builds(
        lambda index, created, moves: ledger(f"K-{index}", "jira", created, *moves),
        st.integers(0, 5),
        st.integers(-300, 300),
        random_moves,
    ),
    max_size=6,
)


@settings(max_examples=400, deadline=None)
@given(
    items=random_ledgers,
    start=st.integers(-200, 200),
    days=st.integers(1, 5),
    now=st.integers(-300, 400),
)
def test_the_one_walk_in_microseconds_gives_what_replaying_every_stay_gives(items, start, days, now):
    window = Window(h(start), h(start + 24 * days))
    samples = {index: h(start + 24 * index) for index in range(1, days + 1) if start + 24 * index <= now}
    assert bottlenecks(items, window, samples, h(now)) == bottlenecks_replaying_every_stay(
        items, window, samples, h(now)
    )
