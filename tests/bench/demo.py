"""make bench-demo: the demo world from an empty database to the portal being served, step by step.

What `make demo` does on its first run (after the install): migrate, generate the world, configure the
portal, sync every scope through the real connectors (the fakes in-process), relink, rebuild the metrics,
then serve the portal and answer its first pages. By default on SQLite in a fresh temporary directory (the
embedded mode); with `--database postgres`, on its own PostgreSQL database (`vsm_bench_demo`, dropped and
created afresh on the server of DATABASE_URL, see common.py).
"""

import argparse
import os
import shutil
import tempfile
import threading
import time
from datetime import timedelta
from wsgiref.simple_server import WSGIRequestHandler, make_server

from connectors.fakes.world import DEFAULT_SEED
from tests.bench import common
from tests.bench.common import peak_rss_mb, setup_bench_database


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        """No access log in the figures."""


def setup_sqlite() -> str:
    var_dir = tempfile.mkdtemp(prefix="vsm-bench-demo-")
    os.environ["VSM_VAR_DIR"] = var_dir
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vsm.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.db.backends.signals import connection_created

    from vsm.management.commands.demo import sqlite_for_threads

    connection_created.connect(sqlite_for_threads)
    connection.close()
    call_command("migrate", verbosity=0)
    return var_dir


def time_tasks() -> dict[str, float]:
    """Seconds spent in Celery tasks (in-process here: the metrics refresh after each ingest page)."""
    from celery.signals import task_postrun, task_prerun

    spent, started = {"seconds": 0.0, "tasks": 0}, {}

    def start(task_id=None, **kwargs):
        started[task_id] = time.perf_counter()

    def stop(task_id=None, **kwargs):
        spent["seconds"] += time.perf_counter() - started.pop(task_id, time.perf_counter())
        spent["tasks"] += 1

    task_prerun.connect(start, weak=False)
    task_postrun.connect(stop, weak=False)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="default")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()

    os.environ["VSM_DEBUG"] = "1"  # local only: the portal answers 127.0.0.1 without VSM_ALLOWED_HOSTS
    started = time.perf_counter()
    var_dir = None
    if args.database == "sqlite":
        var_dir = setup_sqlite()
    else:
        common.BENCH_DATABASE = "vsm_bench_demo"  # its own: other benchmarks may be using vsm_bench
        setup_bench_database()
    migrated = time.perf_counter()

    import logging

    import httpx
    from django.contrib.auth import get_user_model
    from django.core.wsgi import get_wsgi_application
    from django.db import connection
    from django.test import Client

    from connectors.fakes.world import DEFAULT_NOW, fakes_use_clock, world_generate, world_keys
    from connectors.fakes.wsgi import PrefixDispatcher
    from vsm.demo import demo_configure, demo_load

    logging.disable(logging.INFO)
    refresh = time_tasks()
    # The fixed present of the world: the same world on every run (the demo itself uses the real now).
    world = world_generate(args.seed, args.size, DEFAULT_NOW)
    fakes_use_clock(world.fakes, lambda: DEFAULT_NOW + timedelta(minutes=5))
    generated = time.perf_counter()
    demo_configure("http://127.0.0.1:8800", args.size)
    configured = time.perf_counter()
    dispatcher = PrefixDispatcher({f"/{name}": fake for name, fake in world.fakes.items()})
    report = demo_load(transport=httpx.WSGITransport(app=dispatcher))
    loaded = time.perf_counter()

    server = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    answer = httpx.get(f"http://127.0.0.1:{server.server_port}/accounts/login/", timeout=60)
    served = time.perf_counter()
    server.shutdown()
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(get_user_model().objects.get(username="leader"))
    home_started = time.perf_counter()
    home = client.get("/")
    home_seconds = time.perf_counter() - home_started

    keys = world_keys(world.fakes)
    items = sum(len(found) for found in keys.values())
    ingest = sum(report.ingest.values())
    print(f"demo world {args.size!r} on {connection.vendor}: {items} items")
    for name, found in sorted(keys.items()):
        print(f"  {name:<14} {len(found):>6}")
    print(f"{'step':<38} {'seconds':>8}")
    rows = [
        ("migrate (empty database)", migrated - started),
        ("generation", generated - migrated),
        ("configuration", configured - generated),
        *((f"ingest {name}", seconds) for name, seconds in sorted(report.ingest.items())),
        ("ingest, all tools", ingest),
        (f"  of which metrics refresh ({refresh['tasks']:.0f} pages)", refresh["seconds"]),
        ("linking (relink of every connection)", report.linking),
        ("propagation (integrations)", report.propagation),
        ("metrics (rollup rebuild)", report.metrics),
        ("planner statistics (ANALYZE)", report.statistics),
        ("portal serving its login page", served - loaded),
        ("total: empty database to portal served", served - started),
    ]
    for label, seconds in rows:
        print(f"{label:<38} {seconds:>8.1f}")
    print(f"ingest rate: {items / ingest:.0f} items/s; peak RSS {peak_rss_mb():.0f} MB")
    print(
        f"login page {answer.status_code}; leadership's home page {home.status_code} in {home_seconds:.2f} s"
    )
    if report.failures:
        print("failures:", *report.failures, sep="\n  ")
    if var_dir:
        shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
