"""flow_metrics reads plain numbers from the rollups (buckets found in SQL, durations as floats): its
figures are exactly the calculators' over the items' ledgers, to the last bit of every float."""

import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from metrics.calculators import (
    done_in,
    duration_stats,
    flow_efficiency,
    flow_time_stats,
    flow_velocity,
    item_flow,
)
from metrics.selectors import DayWindow, flow_artifacts, flow_metrics, ledgers_of
from metrics.services import product_rollups_rebuild
from tests.factories import ProductFactory, StaffFactory, flow_item
from vsm.models import Artifact, FlowItemType

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 2, 16, tzinfo=UTC)
NOW = datetime(2026, 4, 20, tzinfo=UTC)
STATES = ("new", "waiting", "active", "active", "done", "done", "canceled")
TYPES = ("feature", "defect", "risk", "debt")


def random_product(rng: random.Random, count: int):
    """Items with microsecond timestamps (durations that are not whole seconds) around the change to
    summer time in Berlin, some with the same durations (ties among the outliers)."""
    product = ProductFactory(time_zone="Europe/Berlin")
    longest = [timedelta(days=7, microseconds=7)] * 5 + [timedelta(days=1)], ["active"] * 5 + ["done"]
    for index in range(count):
        created = T0 + timedelta(microseconds=rng.randrange(0, 40 * 86400 * 10**6))
        if index % 40 == 3:  # the longest, several times, done in the window: ties among the outliers
            created = T0 + timedelta(microseconds=rng.randrange(0, 86400 * 10**6))
            steps, states = longest
        elif index % 7 != 1:  # else the same ledger shape as the item before: equal durations
            steps = [timedelta(microseconds=rng.randrange(1, 6 * 86400 * 10**6)) for _ in range(6)]
            states = [rng.choice(STATES) for _ in range(5)] + [rng.choice(("done", "done", "active"))]
        moves, at = [], created
        for step, state in zip(steps, states, strict=True):
            at += step
            moves.append((at, state))
        flow_item(product, *moves, created_at=created, flow_type=rng.choice(TYPES), key=f"X-{index}")
    product_rollups_rebuild(product, now=NOW)
    return product


def stats_json(stats, keys):
    return {
        "count": stats.count,
        "mean": stats.mean,
        "p50": stats.p50,
        "p85": stats.p85,
        "p95": stats.p95,
        "max": stats.max,
        "histogram": [{"lower": lo, "upper": up, "count": n} for lo, up, n in stats.histogram],
        "outliers": [
            {"artifact": int(key), "key": keys[int(key)], "seconds": seconds}
            for key, seconds in stats.outliers
        ],
    }


@pytest.mark.parametrize(("seed", "bucket"), [(1, "week"), (2, "day"), (3, "month")])
def test_flow_metrics_equal_the_calculators_over_the_ledgers(seed, bucket):
    product = random_product(random.Random(seed), 120)
    window = DayWindow(date(2026, 2, 20), date(2026, 4, 12))
    payload = flow_metrics(StaffFactory(), product, window, bucket, now=NOW)

    zone = ZoneInfo(product.time_zone)
    instants = window.instants(zone)
    slugs = dict(FlowItemType.objects.values_list("id", "slug"))
    keys = dict(Artifact.objects.filter(product=product).values_list("id", "key"))
    flows = [
        replace(item_flow(ledger, NOW), flow_type=slugs[ledger.flow_type])
        for ledger in ledgers_of(flow_artifacts(Artifact.objects.filter(product=product)))
    ]
    done = list(done_in(flows, instants))
    assert len(done) > 40

    velocity = flow_velocity(flows, instants, bucket, zone)
    assert [b["start"] for b in payload["velocity"]["buckets"]] == list(velocity)
    assert [b["by_type"] for b in payload["velocity"]["buckets"]] == [
        {slug: counts[slug] for slug in TYPES if slug in counts} for counts in velocity.values()
    ]
    efficiency = flow_efficiency(flows, instants, bucket, zone)
    assert payload["efficiency"]["overall"] == efficiency.overall
    assert [b["efficiency"] for b in payload["efficiency"]["buckets"]] == list(efficiency.by_bucket.values())

    assert payload["flow_time"] == stats_json(flow_time_stats(flows, instants), keys)
    for name in ("lead_time", "active_time", "flow_time_from_restart"):
        expected = stats_json(duration_stats((item.key, getattr(item, name)) for item in done), keys)
        assert payload[name] == expected, name
    assert any(  # ties, listed in the calculators' order
        a["seconds"] == b["seconds"]
        for name in ("flow_time", "lead_time", "active_time", "flow_time_from_restart")
        for a, b in pairwise(payload[name]["outliers"])
    )
