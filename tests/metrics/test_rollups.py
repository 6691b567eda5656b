"""Rollups: exact values from hand-made ledgers, and the incremental path equal to a rebuild."""

import random
from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from metrics import services
from metrics.calculators import item_flow
from metrics.models import DailyLoadRollup, ItemFlowRollup, ProductRollupState, ProductTarget
from metrics.selectors import flow_artifacts, item_times_at, ledgers_of
from metrics.services import (
    daily_load_refresh,
    item_rollups_refresh,
    product_rollups_rebuild,
    rollups_refresh_after_sync,
)
from metrics.tasks import product_rollups_rebuild_task, rollups_refresh_task
from tests.factories import ProductFactory, TeamFactory, flow_item, flow_item_type
from vsm.models import Artifact, StateTransition

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday; Berlin is UTC+1 until 29 March
NOW = T0 + timedelta(days=4, hours=12)  # Friday 6 March, 12:00 UTC
NEW, WAITING, ACTIVE, DONE, CANCELED = "new", "waiting", "active", "done", "canceled"


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def rollup_of(artifact) -> ItemFlowRollup:
    return ItemFlowRollup.objects.get(artifact=artifact)


def load_rows(product) -> list[tuple]:
    return list(
        DailyLoadRollup.objects.filter(product=product)
        .order_by("day", "flow_item_type__slug")
        .values_list("day", "flow_item_type__slug", "count")
    )


# --- item rollups from hand-made ledgers -----------------------------------------------------------------


def test_done_item_with_a_wait_has_exact_seconds():
    product = ProductFactory()
    item = flow_item(product, (h(1), ACTIVE), (h(5), WAITING), (h(8), ACTIVE), (h(10), DONE), created_at=T0)
    assert item_rollups_refresh([item.pk], now=NOW) == 1
    rollup = rollup_of(item)
    assert (rollup.product_id, rollup.flow_item_type_id) == (product.pk, flow_item_type("feature").pk)
    assert rollup.current_state == DONE
    assert (rollup.started_at, rollup.restarted_at, rollup.done_at) == (h(1), h(1), h(10))
    assert rollup.canceled_at is None
    assert rollup.start_inferred is False
    assert rollup.flow_time == 9 * 3600
    assert rollup.lead_time == 10 * 3600
    assert rollup.active_time == 6 * 3600
    assert rollup.waiting_time == 3 * 3600
    assert rollup.efficiency == pytest.approx(6 / 9, abs=0, rel=1e-15)
    assert (rollup.in_progress_from, rollup.in_progress_until, rollup.in_progress_gaps) == (h(1), h(10), None)
    assert rollup.updated_at == NOW


def test_reopened_item_is_done_at_its_last_done_and_its_gap_is_recorded():
    product = ProductFactory()
    item = flow_item(
        product,
        (h(2), ACTIVE),
        (h(4), DONE),
        (h(24), ACTIVE),
        (h(26), DONE),
        created_at=T0,
        flow_type="defect",
    )
    item_rollups_refresh([item.pk], now=NOW)
    rollup = rollup_of(item)
    assert (rollup.started_at, rollup.restarted_at, rollup.done_at) == (h(2), h(24), h(26))
    assert rollup.flow_time == 24 * 3600
    assert rollup.active_time == 4 * 3600
    assert rollup.waiting_time == 20 * 3600  # the intermediate Done counts as waiting
    assert rollup.in_progress_gaps == [[h(4).isoformat(), h(24).isoformat()]]
    assert (rollup.in_progress_from, rollup.in_progress_until) == (h(2), h(26))


def test_open_item_is_measured_at_its_last_transition_and_grown_to_now_by_readers():
    product = ProductFactory()
    item = flow_item(product, (h(1), WAITING), (h(3), ACTIVE), created_at=T0)
    item_rollups_refresh([item.pk], now=h(13))
    rollup = rollup_of(item)
    assert (rollup.current_state, rollup.last_state, rollup.measured_at) == (ACTIVE, ACTIVE, h(3))
    assert (rollup.started_at, rollup.done_at, rollup.flow_time, rollup.lead_time) == (h(1), None, None, None)
    assert (rollup.active_time, rollup.waiting_time) == (0, 2 * 3600)
    assert (rollup.in_progress_from, rollup.in_progress_until) == (h(1), None)
    assert item_times_at(rollup, h(13)) == (10 * 3600, 2 * 3600, 10 / 12)


def test_item_times_at_now_are_the_calculators_figures_at_now():
    rng = random.Random(3)
    product = ProductFactory()
    items = random_world(rng, [product], 60)
    item_rollups_refresh([item.pk for item in items], now=NOW)
    later = NOW + timedelta(days=9, seconds=17)
    rollups = {rollup.artifact_id: rollup for rollup in ItemFlowRollup.objects.all()}
    for artifact, ledger in zip(
        flow_artifacts(Artifact.objects.all()),
        ledgers_of(flow_artifacts(Artifact.objects.all())),
        strict=True,
    ):
        expected = item_flow(ledger, later)
        assert item_times_at(rollups[artifact.id], later) == (
            expected.active_time,
            expected.waiting_time,
            expected.efficiency,
        ), artifact.id


def test_item_first_seen_in_progress_started_at_creation():
    product = ProductFactory()
    item = flow_item(product, (h(5), DONE), created_at=h(1), first_from=ACTIVE)
    item_rollups_refresh([item.pk], now=NOW)
    rollup = rollup_of(item)
    assert (rollup.started_at, rollup.start_inferred, rollup.flow_time) == (h(1), True, 4 * 3600)


def test_canceled_item_keeps_its_window_but_no_flow_time():
    product = ProductFactory()
    item = flow_item(product, (h(1), ACTIVE), (h(7), CANCELED), created_at=T0)
    item_rollups_refresh([item.pk], now=NOW)
    rollup = rollup_of(item)
    assert (rollup.canceled_at, rollup.done_at, rollup.flow_time) == (h(7), None, None)
    assert rollup.active_time == 6 * 3600


def test_supporting_deleted_and_retyped_artifacts_have_no_rollup():
    product = ProductFactory()
    commit = flow_item(product, (h(1), DONE), flow_type=None)
    deleted = flow_item(product, (h(1), ACTIVE))
    retyped = flow_item(product, (h(1), ACTIVE))
    item_rollups_refresh([commit.pk, deleted.pk, retyped.pk], now=NOW)
    assert set(ItemFlowRollup.objects.values_list("artifact_id", flat=True)) == {deleted.pk, retyped.pk}

    Artifact.objects.filter(pk=deleted.pk).update(deleted_at=NOW)
    Artifact.objects.filter(pk=retyped.pk).update(flow_item_type=None)
    item_rollups_refresh([commit.pk, deleted.pk, retyped.pk, 10**9], now=NOW)
    assert not ItemFlowRollup.objects.exists()


# --- daily load --------------------------------------------------------------------------------------------


def test_daily_load_is_sampled_at_local_midnight():
    """Berlin is UTC+1: the load of local day D is sampled at D 23:00 UTC."""
    product = ProductFactory(time_zone="Europe/Berlin")
    created = T0 - timedelta(hours=15)
    # In progress from Monday 10:00 to Wednesday 10:00 UTC: counted Monday and Tuesday only.
    flow_item(product, (h(10), ACTIVE), (h(58), DONE), created_at=created)
    # Waiting from Tuesday 23:30 UTC (Wednesday 00:30 local): counted from Wednesday on, still open.
    flow_item(product, (h(47.5), WAITING), created_at=created, flow_type="defect")
    # In progress from Monday 22:59:59 UTC to 23:00:00 UTC: not in progress at the sample instant.
    flow_item(product, (h(22) + timedelta(minutes=59, seconds=59), ACTIVE), (h(23), NEW), created_at=created)
    result = product_rollups_rebuild(product, now=NOW)
    assert load_rows(product) == [
        (date(2026, 3, 2), "feature", 1),
        (date(2026, 3, 3), "feature", 1),
        (date(2026, 3, 4), "defect", 1),
        (date(2026, 3, 5), "defect", 1),
        (date(2026, 3, 6), "defect", 1),  # today: the load as it stands; no later day is stored
    ]
    assert (result.items, result.load_rows) == (3, 5)
    state = ProductRollupState.objects.get(product=product)
    assert (state.load_through, state.rebuilt_at) == (date(2026, 3, 6), NOW)


def test_daily_load_refresh_rewrites_only_the_given_days():
    product = ProductFactory()
    item = flow_item(product, (h(1), ACTIVE), created_at=T0)
    product_rollups_rebuild(product, now=NOW)
    assert [row[0] for row in load_rows(product)] == [date(2026, 3, d) for d in range(2, 7)]

    StateTransition.objects.create(
        artifact=item, at=h(30), from_status="In Progress", to_status="Done", from_state=ACTIVE, to_state=DONE
    )
    Artifact.objects.filter(pk=item.pk).update(flow_state=DONE)
    item_rollups_refresh([item.pk], now=NOW)
    daily_load_refresh(product, [date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 9)], now=NOW)
    # 4 and 5 March rewritten; 6 March left alone (stale until refreshed); 9 March is in the future.
    assert [row[0] for row in load_rows(product)] == [date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 6)]


# --- the incremental path equals a rebuild ---------------------------------------------------------------

STATES = (NEW, WAITING, ACTIVE, DONE, CANCELED)
TYPES = ("feature", "defect", "risk", "debt")


def random_moves(rng: random.Random, start: datetime, count: int) -> list[tuple[datetime, str]]:
    moves, at = [], start
    for _ in range(count):
        at += timedelta(seconds=rng.randrange(600, 3 * 86400))
        moves.append((at, rng.choice(STATES)))
    return moves


def random_world(rng: random.Random, products, count: int) -> list[Artifact]:
    items = []
    for index in range(count):
        product = products[index % len(products)]
        created = T0 - timedelta(days=20) + timedelta(seconds=rng.randrange(0, 15 * 86400))
        items.append(
            flow_item(
                product,
                *random_moves(rng, created, rng.randrange(0, 7)),
                created_at=created,
                flow_type=rng.choice(TYPES),
                first_from=rng.choice((NEW, NEW, ACTIVE)),
                key=f"R-{index}",
            )
        )
    return items


ROLLUP_COLUMNS = [
    field.attname for field in ItemFlowRollup._meta.concrete_fields if field.name != "updated_at"
]


def snapshot() -> tuple[list, list, list]:
    """Every rollup row, but when each was computed."""
    items = list(ItemFlowRollup.objects.order_by("artifact_id").values_list(*ROLLUP_COLUMNS))
    load = list(
        DailyLoadRollup.objects.order_by("product_id", "day", "flow_item_type_id").values_list(
            "product_id", "day", "flow_item_type_id", "count"
        )
    )
    states = list(ProductRollupState.objects.order_by("product_id").values_list("product_id", "load_through"))
    return items, load, states


def fresh_rebuild(products, now) -> tuple[list, list, list]:
    ItemFlowRollup.objects.all().delete()
    DailyLoadRollup.objects.all().delete()
    for product in products:
        product_rollups_rebuild(product, now=now)
    return snapshot()


def change_some(rng: random.Random, items: list[Artifact], products, now: datetime) -> set[int]:
    """Ledger changes as a sync brings them: new moves, vanished ones, retyped, moved, deleted items."""
    changed = set()
    for item in rng.sample(items, 8):
        last = item.transitions.order_by("-at").first()
        start = last.at if last else item.created_at
        state = last.to_state if last else item.flow_state
        for at, to_state in random_moves(rng, start, rng.randrange(1, 4)):
            if at >= now:
                break
            StateTransition.objects.create(
                artifact=item,
                at=at,
                from_status=state,
                to_status=to_state,
                from_state=state,
                to_state=to_state,
            )
            state = to_state
        Artifact.objects.filter(pk=item.pk).update(flow_state=state)
        changed.add(item.pk)
    vanished = rng.choice([item for item in items if item.transitions.exists()])
    vanished.transitions.order_by("at").first().delete()
    retyped, moved, deleted, untyped = rng.sample([i for i in items if i.pk not in changed], 4)
    Artifact.objects.filter(pk=retyped.pk).update(flow_item_type=flow_item_type("debt"))
    other = next(p for p in products if p.pk != moved.product_id)
    Artifact.objects.filter(pk=moved.pk).update(product=other)
    Artifact.objects.filter(pk=deleted.pk).update(deleted_at=now)
    Artifact.objects.filter(pk=untyped.pk).update(flow_item_type=None)
    created = flow_item(products[0], (now - timedelta(days=2), ACTIVE), created_at=now - timedelta(days=3))
    return changed | {vanished.pk, retyped.pk, moved.pk, deleted.pk, untyped.pk, created.pk}


@pytest.mark.parametrize(("seed", "merge_gap_days"), [(1, 7), (2, 7), (3, 0), (4, 0), (5, 0)])
def test_incremental_refresh_gives_the_rows_of_a_fresh_rebuild(seed, merge_gap_days, monkeypatch):
    monkeypatch.setattr(services, "LOAD_RUN_MERGE_GAP_DAYS", merge_gap_days)
    rng = random.Random(seed)
    products = [ProductFactory(time_zone="Europe/Berlin"), ProductFactory(time_zone="America/New_York")]
    items = random_world(rng, products, 40)
    for product in products:
        product_rollups_rebuild(product, now=NOW)

    later = NOW + timedelta(days=3, hours=5)  # the load must also be brought forward to the new today
    changed = change_some(rng, items, products, later)
    rollups_refresh_after_sync(sorted(changed), now=later)
    incremental = snapshot()

    assert fresh_rebuild(products, later) == incremental
    assert incremental[0] and incremental[1]


def test_incremental_refresh_rewrites_the_past_days_where_a_ledger_changed():
    product = ProductFactory(time_zone="Europe/Berlin")
    created = T0 - timedelta(days=40)
    flow_item(product, (T0 - timedelta(days=30), ACTIVE), created_at=created, key="LONG-OPEN")
    fixed = flow_item(
        product, (T0 - timedelta(days=20), ACTIVE), (T0 - timedelta(days=18), DONE), created_at=created
    )
    product_rollups_rebuild(product, now=NOW)
    assert ("2026-02-14", 1) in [(str(day), count) for day, _, count in load_rows(product)]

    # The tool's history is corrected: it was done eight days later than first recorded.
    fixed.transitions.filter(to_state=DONE).update(at=T0 - timedelta(days=10))
    rollups_refresh_after_sync([fixed.pk], now=NOW)
    assert ("2026-02-14", 2) in [(str(day), count) for day, _, count in load_rows(product)]
    incremental = snapshot()
    assert fresh_rebuild([product], NOW) == incremental


def test_a_start_at_local_midnight_counts_in_the_day_before():
    product = ProductFactory(time_zone="Europe/Berlin")
    midnight_10_feb = datetime(2026, 2, 9, 23, tzinfo=UTC)  # 10 February 00:00 in Berlin
    item = flow_item(
        product,
        (midnight_10_feb, ACTIVE),
        (midnight_10_feb + timedelta(days=2, hours=12), DONE),
        created_at=midnight_10_feb - timedelta(days=5),
    )
    product_rollups_rebuild(product, now=NOW)
    assert [str(day) for day, _, _ in load_rows(product)] == ["2026-02-09", "2026-02-10", "2026-02-11"]

    item.transitions.filter(to_state=ACTIVE).update(at=midnight_10_feb + timedelta(days=1))
    rollups_refresh_after_sync([item.pk], now=NOW)
    assert [str(day) for day, _, _ in load_rows(product)] == ["2026-02-10", "2026-02-11"]
    incremental = snapshot()
    assert fresh_rebuild([product], NOW) == incremental


def test_incremental_refresh_brings_the_load_forward_to_today():
    product = ProductFactory()
    flow_item(product, (h(1), ACTIVE), created_at=T0, key="OPEN")
    closed = flow_item(product, (h(2), ACTIVE), (h(3), DONE), created_at=T0)
    product_rollups_rebuild(product, now=NOW)
    later = NOW + timedelta(days=3)
    closed.transitions.filter(to_state=DONE).update(at=h(4))  # a change that touches no recent day
    rollups_refresh_after_sync([closed.pk], now=later)
    assert [day for day, _, _ in load_rows(product)][-4:] == [date(2026, 3, d) for d in (6, 7, 8, 9)]
    incremental = snapshot()
    assert fresh_rebuild([product], later) == incremental


def test_incremental_refresh_of_an_unchanged_ledger_changes_nothing():
    rng = random.Random(7)
    products = [ProductFactory()]
    items = random_world(rng, products, 15)
    product_rollups_rebuild(products[0], now=NOW)
    before = snapshot()
    rollups_refresh_after_sync([item.pk for item in items], now=NOW)
    assert snapshot() == before


def test_a_product_never_rolled_up_is_rebuilt_by_the_incremental_path():
    rng = random.Random(11)
    products = [ProductFactory()]
    items = random_world(rng, products, 12)
    rollups_refresh_after_sync([items[0].pk], now=NOW)  # one item synced, the whole product rolled up
    incremental = snapshot()
    assert len(incremental[0]) == ItemFlowRollup.objects.count() > 1
    assert fresh_rebuild(products, NOW) == incremental


def test_rebuild_streams_in_chunks(monkeypatch):
    monkeypatch.setattr(services, "CHUNK_SIZE", 3)
    monkeypatch.setattr("metrics.selectors.CHUNK_SIZE", 3)
    rng = random.Random(5)
    products = [ProductFactory()]
    random_world(rng, products, 10)
    chunked = fresh_rebuild(products, NOW)
    monkeypatch.undo()
    assert fresh_rebuild(products, NOW) == chunked
    assert len(chunked[0]) == 10


# --- tasks, command, targets -------------------------------------------------------------------------------


def test_tasks_take_ids_and_return_quietly_when_the_product_is_gone(eager_tasks):
    product = ProductFactory()
    item = flow_item(product, (h(1), ACTIVE), created_at=T0)
    rollups_refresh_task.delay([item.pk])
    assert ItemFlowRollup.objects.filter(artifact=item).exists()
    ItemFlowRollup.objects.all().delete()
    product_rollups_rebuild_task.delay(product.pk)
    assert ItemFlowRollup.objects.filter(artifact=item).exists()
    product_rollups_rebuild_task.delay(10**9)
    rollups_refresh_task.delay([])


def test_metrics_rebuild_command_prints_timings(capsys):
    product = ProductFactory(slug="checkout")
    flow_item(product, (h(1), ACTIVE), (h(2), DONE), created_at=T0, team=TeamFactory(product=product))
    ProductFactory(slug="empty")
    call_command("metrics_rebuild", "checkout")
    out = capsys.readouterr().out
    assert "checkout: 1 flow items," in out
    assert " s\n" in out
    assert "empty" not in out
    call_command("metrics_rebuild")
    assert "empty: 0 flow items" in capsys.readouterr().out
    with pytest.raises(CommandError, match="nope"):
        call_command("metrics_rebuild", "nope")


@pytest.mark.parametrize(
    ("allocation", "message"),
    [
        ({"feature": 0.5, "gizmo": 0.5}, "unknown flow item types: gizmo"),
        ({"feature": 0.5, "defect": 0.4}, "sum to 0.9"),
        ({"feature": "half", "defect": 0.5}, "number from 0 to 1"),
        (["feature"], "an object"),
    ],
)
def test_product_target_validation(allocation, message):
    target = ProductTarget(product=ProductFactory(), allocation=allocation)
    with pytest.raises(ValidationError, match=message):
        target.full_clean()


def test_product_target_accepts_shares_summing_to_one():
    ProductTarget(product=ProductFactory(), allocation={"feature": 0.7, "defect": 0.3}).full_clean()
