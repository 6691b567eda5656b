"""make bench-portal: the portal served by gunicorn (2 workers) on PostgreSQL with the bench-metrics
dataset (200,000 flow items, 5,000 customer requests shipped in weekly releases), plus commits, builds and
five tools; 20 logged-in clients (threads with httpx) load the flow dashboard, trace, requests and
landscape pages for 60 s; prints p50/p95/p99 per page and requests/s. Runs in its own database
(`vsm_bench`). By default the clients do not wait between pages (a closed loop at full load: latency is
then mostly queueing, about clients / workers times the mean serving time); `--think` makes them pause
like people do.
"""

import argparse
import itertools
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.bench import common
from tests.bench.metrics import DAYS, START, generate, link_requests

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "bench-pass-2026"
PAGES = ("dashboard", "trace", "requests", "landscape")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def enrich(product, jira, rng: random.Random, now, *, commits: int) -> dict:
    """Five more tools around the bench's Jira: requests in Salesforce (with accounts, revenue and
    deal-breakers), releases in GitLab, commits in GitHub for the requests' items, builds in Jenkins;
    their mappings, scopes, sync runs, a link rule, an integration with pairs and a few sync errors."""
    from django.db import connection as db

    from connectors.ingest import ARTIFACT_FIELDS
    from connectors.models import (
        Integration,
        IntegrationPair,
        LinkRule,
        Scope,
        SyncError,
        SyncRun,
        ToolConnection,
        TypeMapping,
    )
    from vsm.db import bulk_insert
    from vsm.models import Artifact, ArtifactLink, ArtifactModel

    models = {model.slug: model for model in ArtifactModel.objects.all()}
    tools = {"jira": jira}
    for kind, name in [
        ("salesforce", "Bench Salesforce"),
        ("gitlab", "Bench GitLab"),
        ("github", "Bench GitHub"),
        ("jenkins", "Bench Jenkins"),
    ]:
        tools[kind] = ToolConnection.objects.create(
            kind=kind, name=name, base_url=f"https://{kind}.bench.example.test", last_success_at=now
        )
    scopes, mappings = {}, {}
    for kind, model in [
        ("jira", "story"),
        ("salesforce", "request"),
        ("gitlab", "release"),
        ("github", "commit"),
        ("jenkins", "build"),
    ]:
        scopes[model] = Scope.objects.create(connection=tools[kind], name=model, query=model, product=product)
        mappings[model] = TypeMapping.objects.create(
            connection=tools[kind], tool_type=model.capitalize(), artifact_model=models[model]
        )
        SyncRun.objects.create(
            scope=scopes[model], started_at=now, finished_at=now + timedelta(seconds=20), outcome="success"
        )
    Artifact.objects.filter(product=product, artifact_model=models["request"]).update(
        connection=tools["salesforce"]
    )
    Artifact.objects.filter(product=product, artifact_model=models["release"]).update(
        connection=tools["gitlab"]
    )
    with db.cursor() as cursor:
        cursor.execute(
            "UPDATE vsm_artifact SET value = (id %% 50) * 1000, fields = jsonb_build_object("
            "'customer_account', 'Account ' || (id %% 97), 'revenue', (id %% 50) * 1000, "
            "'deal_breaker', id %% 7 = 0) WHERE artifact_model_id = %s",
            [models["request"].pk],
        )

    # Commits for the requests' items, one build per ten commits.
    items = list(
        ArtifactLink.objects.filter(kind="derived_from", source__product=product)
        .order_by("source_id")
        .values_list("source_id", "source__key", "source__done_at", "source__created_at")[:commits]
    )
    commit_rows, build_rows = [], []
    for number, (_, key, done_at, created_at) in enumerate(items):
        at = (done_at or created_at + timedelta(days=3)) - timedelta(hours=rng.uniform(1, 48))
        sha = f"{number:040x}"
        commit_rows.append(
            (tools["github"].pk, sha, product.pk, models["commit"].pk, None, None, sha[:10],
             f"{key} change {number}", "", "", "done", at, None, at, at, None, {}, None)
        )  # fmt: skip
        if number % 10 == 0:
            build_rows.append(
                (tools["jenkins"].pk, f"build-{number // 10}", product.pk, models["build"].pk, None, None,
                 f"#{number // 10}", f"Build {number // 10}", "", "SUCCESS", "done", at, None, at, at,
                 None, {"result": "SUCCESS"}, None)
            )  # fmt: skip
    bulk_insert(Artifact, ARTIFACT_FIELDS, commit_rows)
    bulk_insert(Artifact, ARTIFACT_FIELDS, build_rows)
    commit_ids = dict(Artifact.objects.filter(connection=tools["github"]).values_list("external_id", "id"))
    build_ids = dict(Artifact.objects.filter(connection=tools["jenkins"]).values_list("external_id", "id"))
    links = []
    for number, (item_id, *_) in enumerate(items):
        commit = commit_ids[f"{number:040x}"]
        links.append((item_id, commit, "committed_in", "rule", now))
        links.append((commit, build_ids[f"build-{number // 10}"], "built_in", "tool", now))
    bulk_insert(ArtifactLink, ("source_id", "target_id", "kind", "origin", "created_at"), links)

    LinkRule.objects.create(
        connection=tools["github"],
        name="Jira keys in commit messages",
        source_path="commit.message",
        pattern=r"(?P<key>[A-Z]+-\d+)",
        key_template="{key}",
        target_connection=jira,
        kind="committed_in",
        reverse=True,
    )
    integration = Integration.objects.create(
        name="Requests to Jira",
        artifact_model=models["request"],
        source_scope=scopes["request"],
        source_type_mapping=mappings["request"],
        target_scope=scopes["story"],
        target_type_mapping=mappings["story"],
        last_run_at=now,
    )
    request_ids = Artifact.objects.filter(product=product, artifact_model=models["request"]).values_list(
        "id", flat=True
    )
    IntegrationPair.objects.bulk_create(
        IntegrationPair(integration=integration, source_id=pk, state="conflict" if index % 50 == 0 else "ok")
        for index, pk in enumerate(request_ids[:1000])
    )
    for number in range(5):
        SyncError.objects.create(
            connection=tools["jenkins"],
            scope=scopes["build"],
            stage="mapping",
            fingerprint=f"bench:{number}",
            message="no type mapping for Pipeline",
            first_seen_at=now,
            last_seen_at=now,
        )
    return tools


def trace_targets(product) -> list[int]:
    """Items to trace: the requests' work items and the commits (200 each)."""
    from vsm.models import Artifact

    items = Artifact.objects.filter(product=product, incoming_links__kind="derived_from").order_by("id")
    commits = Artifact.objects.filter(product=product, outgoing_links__kind="committed_in").order_by("id")
    return list(items.values_list("id", flat=True)[:200]) + list(commits.values_list("id", flat=True)[:200])


def reuse_bench_database():
    """Point Django at the vsm_bench left by an earlier run, as it is (to measure again quickly)."""
    from urllib.parse import urlunsplit

    parts = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/vsm"))
    os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{common.BENCH_DATABASE}"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vsm.settings")
    os.environ.setdefault("VSM_SECRET_KEY", "bench-only-" + "x" * 40)
    import django

    django.setup()
    from vsm.models import Product

    product = Product.objects.get(slug="bench")
    return product, START + timedelta(days=DAYS), trace_targets(product)


def build_dataset(items: int, requests: int, commits: int):
    from django.contrib.auth import get_user_model
    from django.db import connection as db

    from connectors.models import ToolConnection
    from metrics.services import product_rollups_rebuild
    from vsm.models import Product, ProductRole

    rng = random.Random(2026)
    now = START + timedelta(days=DAYS)
    product = Product.objects.create(name="Bench", slug="bench", time_zone="Europe/Berlin")
    jira = ToolConnection.objects.create(
        kind="jira", name="Bench Jira", base_url="https://bench.example.test"
    )
    generate(product, jira, items, rng, now)
    link_requests(product, jira, requests, rng, now)
    enrich(product, jira, rng, now, commits=commits)
    with db.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    product_rollups_rebuild(product, now=now)
    owner = get_user_model().objects.create_user("owner", "owner@example.test", PASSWORD)
    ProductRole.objects.create(user=owner, product=product, role="owner")
    return product, now, trace_targets(product)


def serve(port: int, workers: int, var_dir: str) -> subprocess.Popen:
    """gunicorn as in production (debug off), behind what it believes is a TLS proxy."""
    env = {
        **os.environ,
        "VSM_DEBUG": "0",
        "VSM_SECRET_KEY": os.environ["VSM_SECRET_KEY"],
        "VSM_ALLOWED_HOSTS": "127.0.0.1",
        "VSM_BEHIND_TLS_PROXY": "1",
        "VSM_VAR_DIR": var_dir,
        "VSM_LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "vsm.settings",
    }
    python = Path(sys.executable)
    subprocess.run(
        [str(python), "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    server = subprocess.Popen(
        [str(python.parent / "gunicorn"), "vsm.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", str(workers), "--log-level", "warning"],
        cwd=ROOT,
        env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=2)
            return server
        except httpx.TransportError:
            time.sleep(0.3)
    server.terminate()
    sys.exit("gunicorn did not answer within 60 s")


class Session:
    """One logged-in client. The app's cookies are Secure (production settings): the client keeps them
    itself and says it came through TLS (X-Forwarded-Proto), as a browser behind the proxy would."""

    def __init__(self, base: str, username: str):
        origin = "https://" + urlsplit(base).netloc
        self.client = httpx.Client(
            base_url=base, headers={"X-Forwarded-Proto": "https", "Origin": origin}, timeout=60
        )
        login = self.client.get("/accounts/login/")
        csrf = login.cookies["csrftoken"]
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        answer = self.client.post(
            "/accounts/login/",
            data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token},
            headers={"Cookie": f"csrftoken={csrf}", "Referer": origin + "/accounts/login/"},
        )
        if answer.status_code != 302 or "sessionid" not in answer.cookies:
            raise RuntimeError(f"login failed: {answer.status_code}")
        self.cookie = f"sessionid={answer.cookies['sessionid']}; csrftoken={csrf}"

    def get(self, url: str) -> httpx.Response:
        return self.client.get(url, headers={"Cookie": self.cookie})


def alone(session: Session, urls: dict[str, list[str]], pages, rounds: int = 10) -> dict[str, float]:
    """Each page's median time with one client and nothing else running: what a page costs to serve."""
    medians = {}
    for page in pages:
        timings = []
        for index in range(rounds):
            started = time.perf_counter()
            session.get(urls[page][index % len(urls[page])])
            timings.append(time.perf_counter() - started)
        medians[page] = statistics.median(timings)
    return medians


def drive(base: str, urls: dict[str, list[str]], pages, clients: int, seconds: float, think: float):
    sessions = [Session(base, "owner") for _ in range(clients)]
    for session in sessions:  # warm both workers: templates compiled, connections open
        for page in pages:
            session.get(urls[page][0])
    solo = alone(sessions[0], urls, pages)
    timings: dict[str, list[float]] = defaultdict(list)
    failures: dict[str, int] = defaultdict(int)
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(index: int, session: Session) -> None:
        rng = random.Random(index)
        order = itertools.cycle(pages[index % len(pages) :] + pages[: index % len(pages)])
        while time.monotonic() < stop:
            page = next(order)
            started = time.perf_counter()
            response = session.get(rng.choice(urls[page]))
            elapsed = time.perf_counter() - started
            with lock:
                if response.status_code == 200:
                    timings[page].append(elapsed)
                else:
                    failures[page] += 1
            if think:
                time.sleep(rng.expovariate(1 / think))

    threads = [threading.Thread(target=client, args=(index, s)) for index, s in enumerate(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for page, count in failures.items():
        print(f"  {page}: {count} answers were not 200")
    return timings, solo


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--commits", type=int, default=5_000)
    parser.add_argument("--pages", default=",".join(PAGES), help=f"comma-separated, among {', '.join(PAGES)}")
    parser.add_argument(
        "--think", type=float, default=0, help="mean seconds a client waits between pages (0: none)"
    )
    parser.add_argument("--reuse", action="store_true", help="measure the dataset of the last run again")
    parser.add_argument(
        "--database", default=common.BENCH_DATABASE, help="another name, to run beside another benchmark"
    )
    args = parser.parse_args()
    common.BENCH_DATABASE = args.database  # read by common.setup_bench_database
    pages = [page for page in args.pages.split(",") if page in PAGES]
    if not pages:
        sys.exit(f"--pages: choose among {', '.join(PAGES)}")
    if args.reuse:
        product, now, trace_ids = reuse_bench_database()
    else:
        common.setup_bench_database()
        started = time.perf_counter()
        product, now, trace_ids = build_dataset(args.items, args.requests, args.commits)
        print(f"bench-portal: dataset built in {time.perf_counter() - started:.0f} s (not counted)")

    first, last = (now - timedelta(weeks=52)).date(), (now - timedelta(days=1)).date()
    window = f"window_start={first}&window_end={last}"
    urls = {
        "dashboard": [f"/products/{product.slug}/flow/?{window}&bucket=week"],
        "trace": [f"/trace/{pk}/" for pk in trace_ids],
        "requests": [f"/requests/?product={product.slug}&page={page}" for page in range(1, 11)],
        "landscape": ["/landscape/"],
    }
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="vsm-bench-portal-") as var_dir:
        server = serve(port, args.workers, var_dir)
        try:
            wall = time.perf_counter()
            timings, solo = drive(
                f"http://127.0.0.1:{port}", urls, pages, args.clients, args.seconds, args.think
            )
            wall = time.perf_counter() - wall
        finally:
            server.terminate()
            server.wait(timeout=30)
    total = sum(len(values) for values in timings.values())
    print(
        f"bench-portal: {args.clients} clients (think time {args.think:g} s), gunicorn {args.workers} "
        f"workers, {args.seconds:.0f} s, "
        f"{args.items} flow items, {args.requests} requests"
    )
    print(
        f"  {'page':<10} {'count':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'alone ms':>9}"
        "   (goal p95 under 150 ms; alone: median with one client)"
    )
    for page in pages:
        values = timings.get(page, [])
        if not values:
            print(f"  {page:<10} {0:>6}")
            continue
        p50, p95, p99 = (percentile(values, q) * 1000 for q in (0.5, 0.95, 0.99))
        print(f"  {page:<10} {len(values):>6} {p50:8.0f} {p95:8.0f} {p99:8.0f} {solo[page] * 1000:9.0f}")
    print(f"  throughput {total / wall:8.1f} requests/s")
    served = [value for values in timings.values() for value in values]
    if served:
        print(f"  mean latency {statistics.mean(served) * 1000:6.0f} ms over all pages")


if __name__ == "__main__":
    main()
