"""make bench-links: derive trace links for 100,000 commits, 20,000 issues and 5,000 builds.

Commits name issue keys in their messages, builds list the commits they built; the link rules find
them. Prints the full relink time and links/s, and the incremental relink after 1,000 new commits.
Runs in its own PostgreSQL database (`vsm_bench`).
"""

import argparse
import random
import time
from datetime import UTC, datetime

from tests.bench.common import setup_bench_database

AT = datetime(2026, 1, 1, tzinfo=UTC)


def store_items(connection, scope, model, prefix: str, payloads: list[tuple[str, str, dict]]) -> None:
    """Artifacts and raw records straight in (this bench measures linking, not ingest)."""
    from connectors.ingest import ARTIFACT_FIELDS, RAW_FIELDS
    from connectors.models import RawRecord
    from vsm.db import bulk_insert
    from vsm.models import Artifact

    artifacts, raws = [], []
    for external_id, key, payload in payloads:
        artifacts.append(
            (
                connection.pk,
                external_id,
                scope.product_id,
                model.pk,
                None,
                None,
                key,
                key,
                "",
                "done",
                "done",
                AT,
                None,
                None,
                AT,
                None,
                {},
                None,
            )
        )
        raws.append((connection.pk, external_id, scope.pk, key, prefix, payload, "-", AT))
    bulk_insert(Artifact, ARTIFACT_FIELDS, artifacts)
    bulk_insert(RawRecord, RAW_FIELDS, raws)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=100_000)
    parser.add_argument("--issues", type=int, default=20_000)
    parser.add_argument("--builds", type=int, default=5_000)
    parser.add_argument("--new-commits", type=int, default=1_000)
    args = parser.parse_args()
    setup_bench_database()
    from django.db import transaction

    from connectors.links import PATTERN_PRESETS, relink_connection
    from connectors.models import LinkRule, Scope, ToolConnection
    from vsm.models import ArtifactLink, ArtifactModel, Product

    rng = random.Random(42)
    product = Product.objects.create(name="Bench", slug="bench")
    connections = {
        tool: ToolConnection.objects.create(kind=tool, name=tool, base_url=f"https://{tool}.example.test")
        for tool in ("jira", "github", "jenkins")
    }
    scopes = {
        tool: Scope.objects.create(connection=connection, name=tool, query=tool, product=product)
        for tool, connection in connections.items()
    }
    models = {model.slug: model for model in ArtifactModel.objects.all()}
    issue_keys = [f"BEN-{n}" for n in range(1, args.issues + 1)]
    shas = [f"{rng.getrandbits(160):040x}" for _ in range(args.commits + args.new_commits)]

    def commit(n: int) -> tuple[str, str, dict]:
        mentioned = " ".join(rng.sample(issue_keys, rng.choice((0, 1, 1, 1, 2))))
        return shas[n], shas[n], {"sha": shas[n], "commit": {"message": f"{mentioned} change number {n}"}}

    with transaction.atomic():
        store_items(
            connections["jira"],
            scopes["jira"],
            models["story"],
            "Story",
            [(key, key, {"key": key}) for key in issue_keys],
        )
        store_items(
            connections["github"],
            scopes["github"],
            models["commit"],
            "Commit",
            [commit(n) for n in range(args.commits)],
        )
        builds = []
        for n in range(args.builds):
            built = shas[n * args.commits // args.builds : (n + 1) * args.commits // args.builds]
            payload = {"number": n, "changeSets": [{"items": [{"commitId": sha} for sha in built]}]}
            builds.append((f"build-{n}", f"shop #{n}", payload))
        store_items(connections["jenkins"], scopes["jenkins"], models["build"], "Build", builds)
        jira_key, template = PATTERN_PRESETS["Jira key (ABC-123)"]
        LinkRule.objects.create(
            connection=connections["github"],
            name="keys",
            source_path="commit.message",
            pattern=jira_key,
            key_template=template,
            target_connection=connections["jira"],
            kind="committed_in",
            reverse=True,
        )
        LinkRule.objects.create(
            connection=connections["jenkins"],
            name="commits",
            source_path="changeSets.*.items.*.commitId",
            target_connection=connections["github"],
            kind="built_in",
            reverse=True,
        )

    started = time.perf_counter()
    github = relink_connection(connections["github"])
    jenkins = relink_connection(connections["jenkins"])
    full = time.perf_counter() - started
    links = ArtifactLink.objects.count()

    with transaction.atomic():
        store_items(
            connections["github"],
            scopes["github"],
            models["commit"],
            "Commit",
            [commit(n) for n in range(args.commits, args.commits + args.new_commits)],
        )
    new_ids = shas[args.commits :]
    started = time.perf_counter()
    incremental = relink_connection(connections["github"], external_ids=new_ids)
    incremental_seconds = time.perf_counter() - started

    started = time.perf_counter()
    relink_connection(connections["github"])
    relink_connection(connections["jenkins"])
    rerun = time.perf_counter() - started
    assert ArtifactLink.objects.count() == links + incremental.linked, "a relink must not duplicate links"

    print(f"bench-links: {args.commits} commits, {args.issues} issues, {args.builds} builds")
    print(f"  full relink           {full:8.1f} s  ({links} links)")
    print(f"    from commits        {github.linked:8d} links, from builds {jenkins.linked} links")
    print(f"  links/s               {links / full:8.0f}")
    print(
        f"  incremental relink    {incremental_seconds:8.2f} s  after {args.new_commits} new commits "
        f"({incremental.linked} links)"
    )
    print(f"  full relink again     {rerun:8.1f} s  (nothing new: no duplicates)")


if __name__ == "__main__":
    main()
