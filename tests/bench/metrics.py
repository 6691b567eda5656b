"""make bench-metrics: one product with 200,000 flow items and about 2,000,000 transitions over three
years in PostgreSQL; prints the full rollup rebuild, the flow dashboard payload read from rollups (p50
and p95 of 20 calls), the incremental update after 1,000 items change, and a floor: one
`SELECT count(*)` scan of the transitions table, and the end-to-end lead time of 5,000 customer
requests (each derived into two flow items that ship in weekly releases). Runs in its own database
(`vsm_bench`).
"""

import argparse
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from tests.bench.common import peak_rss_mb, setup_bench_database

TYPES = [("feature", 0.6), ("defect", 0.2), ("risk", 0.1), ("debt", 0.1)]
START = datetime(2023, 12, 1, tzinfo=UTC)
DAYS = 3 * 365


def ledger(rng: random.Random, created: datetime, now: datetime):
    """A plausible path with backward moves: New -> (Active/Waiting)* -> Done, about 10 changes."""
    at, state, steps = created, "new", []
    for step in range(rng.randint(9, 12)):
        at += timedelta(hours=rng.expovariate(1 / 30))
        if at >= now:
            return steps, state
        following = "done" if step >= 9 else rng.choice(("active", "active", "waiting", "new"))
        if following == state:
            following = "active" if state != "active" else "waiting"
        steps.append((at, state, following))
        state = following
        if state == "done":
            break
    return steps, state


def generate(product, connection, items: int, rng: random.Random, now: datetime) -> int:
    from connectors.ingest import ARTIFACT_FIELDS, TRANSITION_FIELDS
    from vsm.db import bulk_insert
    from vsm.models import Artifact, ArtifactModel, FlowItemType, StateTransition

    story = ArtifactModel.objects.get(slug="story")
    types = {flow_type.slug: flow_type.pk for flow_type in FlowItemType.objects.all()}
    names, weights = zip(*TYPES, strict=True)
    status_of = {"new": "To Do", "active": "In Progress", "waiting": "In Review", "done": "Done"}
    ledgers = {}
    for start in range(0, items, 20_000):
        rows = []
        for number in range(start, min(items, start + 20_000)):
            created = START + timedelta(seconds=rng.uniform(0, DAYS * 86400))
            steps, state = ledger(rng, created, now)
            ledgers[f"B-{number}"] = steps
            started = next((at for at, _, to in steps if to in ("active", "waiting")), None)
            done = steps[-1][0] if state == "done" else None
            updated = steps[-1][0] if steps else created
            rows.append(
                (
                    connection.pk,
                    f"B-{number}",
                    product.pk,
                    story.pk,
                    types[rng.choices(names, weights)[0]],
                    None,
                    f"B-{number}",
                    f"Item {number}",
                    "",
                    status_of[state],
                    state,
                    created,
                    started,
                    done,
                    updated,
                    None,
                    {},
                    None,
                )
            )
        bulk_insert(Artifact, ARTIFACT_FIELDS, rows)
    ids = dict(Artifact.objects.filter(product=product).values_list("key", "id").iterator())
    transitions = [
        (ids[key], at, status_of[before], status_of[after], before, after, "bench")
        for key, steps in ledgers.items()
        for at, before, after in steps
    ]
    for start in range(0, len(transitions), 200_000):
        bulk_insert(StateTransition, TRANSITION_FIELDS, transitions[start : start + 200_000])
    return len(transitions)


def link_requests(product, connection, requests: int, rng: random.Random, now: datetime) -> None:
    """Weekly releases shipping the done items, and requests each derived into two of those items."""
    from connectors.ingest import ARTIFACT_FIELDS
    from vsm.db import bulk_insert
    from vsm.models import Artifact, ArtifactLink, ArtifactModel

    models = {model.slug: model.pk for model in ArtifactModel.objects.filter(slug__in=["release", "request"])}
    weeks = DAYS // 7 + 1
    releases = [START + timedelta(weeks=week, hours=15) for week in range(weeks)]
    bulk_insert(
        Artifact,
        ARTIFACT_FIELDS,
        [
            (
                connection.pk,
                f"REL-{week}",
                product.pk,
                models["release"],
                None,
                None,
                f"v{week}",
                f"Release {week}",
                "",
                "Released",
                "done",
                at,
                at,
                at,
                at,
                None,
                {"version": f"v{week}"},
                None,
            )
            for week, at in enumerate(releases)
        ],
    )
    release_ids = dict(Artifact.objects.filter(key__startswith="v", product=product).values_list("key", "id"))
    done = list(
        Artifact.objects.filter(product=product, flow_state="done", flow_item_type__isnull=False)
        .values_list("id", "created_at", "done_at")
        .order_by("done_at", "id")
    )
    # Each request's two items are done close together, as the parts of one customer ask would be.
    starts = sorted(rng.sample(range(0, len(done) - 1, 2), requests))
    chosen = [item for start in starts for item in done[start : start + 2]]
    links, request_rows = [], []
    for number in range(requests):
        pair = chosen[2 * number : 2 * number + 2]
        created = min(created for _, created, _ in pair) - timedelta(days=rng.uniform(1, 30))
        request_rows.append(
            (
                connection.pk,
                f"REQ-{number}",
                product.pk,
                models["request"],
                None,
                None,
                f"REQ-{number}",
                f"Request {number}",
                "",
                "Open",
                "new",
                created,
                None,
                None,
                created,
                None,
                {},
                None,
            )
        )
        for item_id, _, done_at in pair:
            week = min(weeks - 1, max(0, int((done_at - START).total_seconds() // (7 * 86400)) + 1))
            links.append((item_id, release_ids[f"v{week}"], "released_in", "rule", now))
    bulk_insert(Artifact, ARTIFACT_FIELDS, request_rows)
    request_ids = dict(
        Artifact.objects.filter(key__startswith="REQ-", product=product).values_list("key", "id")
    )
    for number in range(requests):
        for item_id, _, _ in chosen[2 * number : 2 * number + 2]:
            links.append((item_id, request_ids[f"REQ-{number}"], "derived_from", "rule", now))
    bulk_insert(ArtifactLink, ("source_id", "target_id", "kind", "origin", "created_at"), links)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--changed", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=5_000)
    args = parser.parse_args()
    setup_bench_database()
    from django.contrib.auth import get_user_model
    from django.db import connection as db

    from connectors.models import ToolConnection
    from metrics.selectors import DayWindow, flow_metrics, request_lead_times
    from metrics.services import product_rollups_rebuild, rollups_refresh_after_sync
    from vsm.models import Artifact, Product, StateTransition

    rng = random.Random(2026)
    now = START + timedelta(days=DAYS)
    product = Product.objects.create(name="Bench", slug="bench", time_zone="Europe/Berlin")
    connection = ToolConnection.objects.create(
        kind="jira", name="Bench Jira", base_url="https://bench.example.test"
    )
    started = time.perf_counter()
    transitions = generate(product, connection, args.items, rng, now)
    generation = time.perf_counter() - started
    with db.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")

    started = time.perf_counter()
    product_rollups_rebuild(product, now=now)
    rebuild = time.perf_counter() - started

    user = get_user_model().objects.create_superuser("bench", "bench@example.test", "bench-pass-2026")
    window = DayWindow((now - timedelta(weeks=52)).date(), (now - timedelta(days=1)).date())
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        flow_metrics(user, product, window, "week", now=now)
        timings.append(time.perf_counter() - started)
    timings.sort()

    changed = rng.sample(
        list(Artifact.objects.filter(product=product, flow_state="done").values_list("pk", flat=True)),
        args.changed,
    )
    later = now + timedelta(hours=1)
    StateTransition.objects.bulk_create(
        StateTransition(
            artifact_id=pk,
            at=later,
            from_status="Done",
            to_status="In Progress",
            from_state="done",
            to_state="active",
            author="bench",
        )
        for pk in changed
    )
    Artifact.objects.filter(pk__in=changed).update(
        flow_state="active", tool_status="In Progress", done_at=None
    )
    started = time.perf_counter()
    rollups_refresh_after_sync(changed, now=later)
    incremental = time.perf_counter() - started

    link_requests(product, connection, args.requests, rng, now)
    started = time.perf_counter()
    lead_times = request_lead_times(user, product, DayWindow(START.date(), window.last_day), now=later)
    lead_time = time.perf_counter() - started
    summary = lead_times["summary"]

    started = time.perf_counter()
    with db.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM vsm_statetransition")
        cursor.fetchone()
    floor = time.perf_counter() - started

    p50 = statistics.median(timings)
    p95 = timings[int(0.95 * (len(timings) - 1))]
    print(f"bench-metrics: {args.items} flow items, {transitions} transitions over three years")
    print(f"  data generation           {generation:8.1f} s (not counted)")
    print(
        f"  full rollup rebuild       {rebuild:8.1f} s   (goal under 60 s; {rebuild / floor:.0f}x the scan)"
    )
    print(f"  dashboard payload p50     {p50 * 1000:8.0f} ms  (52 weekly buckets, five metrics, four types)")
    print(f"  dashboard payload p95     {p95 * 1000:8.0f} ms  (goal under 100 ms)")
    print(f"  incremental, {args.changed} items {incremental:8.2f} s   (goal under 2 s)")
    print(f"  lead time, {summary['requests']} requests {lead_time:6.2f} s   (end to end through links)")
    median_days = (summary["lead_time"]["p50"] or 0) / 86400
    print(f"    delivered {summary['delivered']}, median lead time {median_days:.1f} days")
    print(f"  floor: count(*) scan      {floor * 1000:8.0f} ms  of the transitions table")
    print(f"  peak RSS                  {peak_rss_mb():8.0f} MB")


if __name__ == "__main__":
    main()
