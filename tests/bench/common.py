"""What every benchmark shares: its own PostgreSQL database, Django set up on it, and memory figures."""

import os
import resource
import sys
from urllib.parse import urlsplit, urlunsplit

BENCH_DATABASE = "vsm_bench"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def setup_bench_database() -> None:
    """Drop and create `vsm_bench` on the server of DATABASE_URL, point Django at it and migrate."""
    import psycopg

    configured = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/vsm")
    parts = urlsplit(configured)
    if not parts.scheme.startswith("postgres"):
        sys.exit("benchmarks measure PostgreSQL: set DATABASE_URL=postgres://... (the server to use)")
    admin = urlunsplit(parts._replace(path="/postgres", scheme="postgresql"))
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {BENCH_DATABASE}")
    os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{BENCH_DATABASE}"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vsm.settings")
    os.environ.setdefault("VSM_SECRET_KEY", "bench-only-" + "x" * 40)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
