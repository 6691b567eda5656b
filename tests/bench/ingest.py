"""make bench-ingest: ingest N synthetic Jira issues (about 10 status changes each) from the fake Jira,
in-process, into PostgreSQL, and compare with the time COPY takes to load the same final rows.

Runs against its own database (`vsm_bench` on the server of DATABASE_URL, dropped and created afresh),
never against the configured one's data.
"""

import argparse
import io
import time
from datetime import UTC, datetime, timedelta

from tests.bench.common import current_rss_mb, peak_rss_mb, setup_bench_database

STATUS_CYCLE = [("To Do", "In Progress"), ("In Progress", "In Review"), ("In Review", "In Progress")]
COPY_TABLES = ["vsm_artifact", "vsm_statetransition", "vsm_artifactlink", "connectors_rawrecord"]


def build_fake(issues: int, changes: int):
    from connectors.fakes.jira import FakeJira
    from tests.connectors.conftest import WORKFLOW

    start = datetime(2025, 1, 1, 8, 0, tzinfo=UTC)
    fake = FakeJira(flavour="cloud", now=lambda: start + timedelta(days=400))
    fake.add_project("BENCH", statuses=WORKFLOW)
    for number in range(issues):
        created = start + timedelta(minutes=7 * number)
        at = created
        histories = []
        for step in range(changes - 1):
            at += timedelta(hours=1 + (number + step) % 13)
            histories.append((at, *STATUS_CYCLE[step % len(STATUS_CYCLE)]))
        histories.append((at + timedelta(hours=3), histories[-1][2], "Done"))
        fake.add_issue("BENCH", "Story", f"Synthetic story {number}", created=created, histories=histories)
    return fake


class TimedApp:
    """Wraps the fake to count the time spent serving it, which is not the engine's work."""

    def __init__(self, app):
        self.app = app
        self.seconds = 0.0

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        try:
            return list(self.app(environ, start_response))
        finally:
            self.seconds += time.perf_counter() - started


def copy_floor_seconds() -> float:
    """Time COPY FROM STDIN of the final rows into empty twins of the tables (indexes included)."""
    from django.db import connection

    total = 0.0
    with connection.cursor() as cursor:
        raw = cursor.connection
        for table in COPY_TABLES:
            buffer = io.BytesIO()
            with raw.cursor().copy(f"COPY {table} TO STDOUT (FORMAT binary)") as copy:
                for chunk in copy:
                    buffer.write(chunk)
            twin = f"bench_copy_{table}"
            cursor.execute(f"DROP TABLE IF EXISTS {twin}")
            cursor.execute(f"CREATE TABLE {twin} (LIKE {table} INCLUDING DEFAULTS INCLUDING INDEXES)")
            started = time.perf_counter()
            with raw.cursor().copy(f"COPY {twin} FROM STDIN (FORMAT binary)") as copy:
                copy.write(buffer.getvalue())
            raw.commit()
            total += time.perf_counter() - started
            cursor.execute(f"DROP TABLE {twin}")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=50_000)
    parser.add_argument("--changes", type=int, default=10, help="status changes per issue")
    parser.add_argument("--page-size", type=int, default=100)
    args = parser.parse_args()

    setup_bench_database()
    import httpx

    from connectors.ingest import scope_sync
    from connectors.models import Scope, ToolConnection
    from tests.connectors.conftest import STATUS_MAP, TYPE_MAP
    from tests.factories import map_types
    from vsm.models import Product, StateTransition

    started = time.perf_counter()
    fake = build_fake(args.issues, args.changes)
    generation = time.perf_counter() - started
    rss_before = current_rss_mb()

    connection = ToolConnection.objects.create(
        kind="jira",
        name="Bench Jira",
        base_url="https://bench.example.test",
        options={"flavour": "cloud"},
        credentials=fake.credentials(),
        requests_per_second=0,
    )
    map_types(connection, TYPE_MAP, STATUS_MAP)
    product = Product.objects.create(name="Bench", slug="bench")
    scope = Scope.objects.create(
        connection=connection, name="BENCH", query="BENCH", product=product, page_size=args.page_size
    )

    # Rollups follow each page on the workers; this bench measures the ingest alone.
    from metrics.tasks import rollups_refresh_task

    rollups_refresh_task.delay = lambda *args, **kwargs: None
    timed_fake = TimedApp(fake)
    started = time.perf_counter()
    result = scope_sync(scope.pk, transport=httpx.WSGITransport(app=timed_fake))
    ingest = time.perf_counter() - started
    engine = ingest - timed_fake.seconds
    peak = peak_rss_mb()
    transitions = StateTransition.objects.count()

    started = time.perf_counter()
    again = scope_sync(scope.pk, transport=httpx.WSGITransport(app=fake))
    resync = time.perf_counter() - started
    floor = copy_floor_seconds()

    print(f"bench-ingest: {args.issues} issues, {transitions} transitions, page size {args.page_size}")
    print(f"  outcome               {result.outcome} {result.counts}")
    print(f"  fake world generation {generation:8.1f} s (not counted)")
    print(f"  ingest                {ingest:8.1f} s")
    print(f"  issues/s              {args.issues / ingest:8.0f}")
    print(f"  of which the fake     {timed_fake.seconds:8.1f} s serving the pages in-process")
    print(f"  engine alone          {engine:8.1f} s = {args.issues / engine:.0f} issues/s")
    print(f"  transitions/s         {transitions / ingest:8.0f}")
    print(
        f"  peak RSS              {peak:8.0f} MB (process, fake included; {rss_before:.0f} MB before ingest)"
    )
    print(f"  COPY floor            {floor:8.1f} s (artifacts, transitions, links, raw payloads)")
    print(f"  ingest / COPY         {ingest / floor:8.1f}x (engine alone {engine / floor:.1f}x)")
    print(
        f"  re-sync, no changes   {resync:8.1f} s ({again.counts.get('unchanged', 0)} unchanged in overlap)"
    )


if __name__ == "__main__":
    main()
