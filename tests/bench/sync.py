"""make bench-sync: integrations on a real Celery worker on Redis, against the fakes over a socket.

Prints (1) webhook received -> target item updated, p50 and p95 over --changes changes: a Jira epic's
title edited, Jira's signed webhook delivered to /hooks/<id>/, the worker reads the epic again, the
"Requests to Jira" integration writes the title to its Targetprocess request; (2) propagation
throughput for --items new Salesforce requests made into Targetprocess requests; (3) writes per
change, counted by the fakes (1.0 is the floor: no echo, no retry storm). Its own PostgreSQL database.
"""

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from tests.bench.common import peak_rss_mb, setup_bench_database

WEBHOOK_SECRET = "bench-webhook-secret"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def wait_for(condition, timeout: float, what: str, interval: float = 0.005) -> None:
    """Poll `condition`; a short interval for in-memory checks, a longer one for database counts (a busy
    poll would take the CPU the worker measures with)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench-sync: timed out waiting for {what}")
        time.sleep(interval)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--epics", type=int, default=20)
    args = parser.parse_args()

    # The webhook is posted through Django's test client, whose host is "testserver", over plain HTTP.
    os.environ.setdefault("VSM_ALLOWED_HOSTS", "testserver")
    os.environ.setdefault("VSM_SECURE_SSL_REDIRECT", "0")
    os.environ.setdefault("VSM_CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
    setup_bench_database()
    from django.db import connection
    from django.test import Client
    from django.urls import reverse

    from connectors.ingest import scope_sync
    from connectors.models import Integration, IntegrationPair, PairState, ToolConnection
    from connectors.providers.jira.webhooks import signature
    from connectors.services import connection_set_credentials
    from connectors.tasks import integration_run_task
    from tests.connectors.conftest import Clock
    from tests.connectors.integration_world import make_integration_world, served
    from tests.workers import celery_worker

    world = make_integration_world(now=Clock(datetime.now(UTC)))
    jira = ToolConnection.objects.get(pk=world.connections["jira"].pk)
    connection_set_credentials(jira, {"webhook_secret": WEBHOOK_SECRET})
    to_tp, to_jira = world.integrations["to_tp"], world.integrations["to_jira"]
    Integration.objects.filter(pk=world.integrations["escalations"].pk).update(enabled=False)
    logs = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    client = Client()
    hook = reverse("connectors:webhook", args=[jira.pk])
    print(f"bench-sync: PostgreSQL {connection.pg_version // 10000}, one solo-pool Celery worker on Redis")

    with served(world), celery_worker(logs / "worker.log") as (worker, _):
        # (1) Latency: requests made into epics first, then their epics' titles edited one at a time.
        for n in range(args.epics):
            world.salesforce.add_request(f"Request for an epic {n}", status="New")
        world.clock.advance(minutes=2)
        scope_sync(world.scopes["salesforce"].pk)
        wait_for(
            lambda: (
                IntegrationPair.objects.filter(integration=to_jira, state=PairState.OK).count() == args.epics
            ),
            120,
            "the epics",
            interval=0.5,
        )
        pairs = list(IntegrationPair.objects.filter(integration=to_jira).select_related("source", "target"))
        tp_writes_before = len(world.targetprocess.writes)
        latencies = []
        for n in range(args.changes):
            pair = pairs[n % len(pairs)]
            title = f"Epic title, change {n}"
            world.jira.edit(pair.target.key, {"summary": title})
            body = json.dumps(
                {"webhookEvent": "jira:issue_updated", "issue": {"key": pair.target.key}}
            ).encode()
            headers = {
                "HTTP_X_HUB_SIGNATURE": signature(WEBHOOK_SECRET, body),
                "HTTP_X_ATLASSIAN_WEBHOOK_IDENTIFIER": uuid.uuid4().hex,
            }
            entity = world.targetprocess.entities[int(pair.source.external_id)]
            started = time.perf_counter()
            response = client.post(hook, body, content_type="application/json", **headers)
            if response.status_code != 202:
                raise SystemExit(
                    f"bench-sync: the webhook answered {response.status_code}: {response.content!r}"
                )
            wait_for(lambda entity=entity, title=title: entity.name == title, 30, f"change {n} to arrive")
            latencies.append(time.perf_counter() - started)
        wait_for(lambda: not Integration.objects.filter(lease_token__gt="").exists(), 30, "runs to finish")
        writes_per_change = (len(world.targetprocess.writes) - tp_writes_before) / args.changes

        # (2) Throughput: new requests, stored first, then propagated in one run.
        Integration.objects.filter(pk=to_jira.pk).update(enabled=False)
        Integration.objects.filter(pk=to_tp.pk).update(enabled=False)
        for n in range(args.items):
            world.salesforce.add_request(f"Bulk request {n:05d}", status="New")
        world.clock.advance(minutes=2)
        scope_sync(world.scopes["salesforce"].pk)
        Integration.objects.filter(pk=to_tp.pk).update(enabled=True)
        writes_before = sum(world.writes().values())
        started = time.perf_counter()
        integration_run_task.delay(to_tp.pk)
        total = args.items + args.epics
        wait_for(
            lambda: IntegrationPair.objects.filter(integration=to_tp, state=PairState.OK).count() == total,
            3600,
            "the new items",
            interval=0.5,
        )
        elapsed = time.perf_counter() - started
        writes_per_item = (sum(world.writes().values()) - writes_before) / args.items
        if worker.poll() is not None:
            raise SystemExit("bench-sync: the worker died; see " + str(logs / "worker.log"))

    print(
        f"webhook -> target updated over {args.changes} changes: "
        f"p50 {statistics.median(latencies) * 1000:.0f} ms, p95 {percentile(latencies, 0.95) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms (goal p95 < 1000 ms)"
    )
    print(f"writes per change: {writes_per_change:.2f} (1.0 is the floor)")
    print(
        f"propagation of {args.items} new items: {elapsed:.1f} s = {args.items / elapsed:.0f} items/s "
        f"(goal >= 100 items/s); {writes_per_item:.2f} writes per new item (create + key written back)"
    )
    print(f"bench process peak RSS {peak_rss_mb():.0f} MB (the fakes run in it); worker log {logs}")


if __name__ == "__main__":
    main()
