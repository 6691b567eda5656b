"""The Jenkins provider against the fake Jenkins (over httpx's WSGI transport), and the recorded builds."""

import csv
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from django.utils import timezone

import connectors.providers.jenkins  # noqa: F401  (registers the provider)
from connectors.base import Page, ScopeSpec
from connectors.exceptions import AuthError, BadRequest, RateLimited
from connectors.fakes.jenkins import FakeJenkins
from connectors.ingest import PageStore, scope_sync
from connectors.models import Scope, SyncError, SyncRun, ToolConnection
from connectors.providers.jenkins.items import (
    BuildRules,
    build_to_item,
    environment,
    parse_build_key,
)
from connectors.providers.jenkins.provider import JOB_TREE_DEPTH, scope_job
from connectors.selectors import connector_instance, load_mapping_set
from tests.factories import ProductFactory, ScopeFactory, ToolConnectionFactory, map_types
from vsm.choices import FlowState, LinkKind
from vsm.models import Artifact, ArtifactLink

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BASE_URL = "https://jenkins.example.test"
TYPE_MAP = {"Build": "build", "Deployment": "deployment"}
STATUS_MAP = {
    "BUILDING": FlowState.ACTIVE,
    "SUCCESS": FlowState.DONE,
    "FAILURE": FlowState.DONE,
    "UNSTABLE": FlowState.DONE,
    "ABORTED": FlowState.CANCELED,
    "NOT_BUILT": FlowState.CANCELED,
    "NOT_BUILD": FlowState.CANCELED,  # sic, in the recorded payloads
}
RECORDED = "devlake-raw/jenkins"


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class JenkinsWorld:
    fake: FakeJenkins
    clock: Clock
    connection: ToolConnection
    scope: Scope
    sleeps: list[float]

    @property
    def transport(self) -> httpx.WSGITransport:
        return httpx.WSGITransport(app=self.fake)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def connector(self, **credentials):
        if credentials:
            self.connection.credentials = credentials
        return connector_instance(self.connection, transport=self.transport, sleep=self.sleep)

    def sync(self):
        return scope_sync(self.scope.pk, transport=self.transport, sleep=self.sleep)

    def read(self, query="apps", since=None, page_size=7, connector=None):
        jenkins = connector or self.connector()
        return list(jenkins.read_changes(ScopeSpec(query=query, page_size=page_size), since))


def make_world(options=None) -> JenkinsWorld:
    clock = Clock(T0)
    fake = FakeJenkins(now=clock)
    fake.add_folder("apps")
    connection = ToolConnection.objects.create(
        kind="jenkins",
        name=f"Jenkins {ToolConnection.objects.count() + 1}",
        base_url=BASE_URL,
        options=options or {},
        credentials=fake.credentials(),
        requests_per_second=0,
    )
    map_types(connection, TYPE_MAP, STATUS_MAP)
    scope = Scope.objects.create(
        connection=connection, name="apps", query="apps", product=ProductFactory(), page_size=7
    )
    return JenkinsWorld(fake, clock, connection, scope, [])


@pytest.fixture
def world(db) -> JenkinsWorld:
    return make_world()


def keys(pages) -> list[str]:
    return [item.key for page in pages for item in page.items]


def build_page_requests(fake) -> int:
    return fake.requests["GET item"]


# Connection and auth ----------------------------------------------------------------------------------


def test_check_connection_names_the_user(world):
    assert world.connector().check_connection() == "VSM Demo"


def test_a_wrong_token_is_an_auth_error(world):
    with pytest.raises(AuthError, match="401"):
        world.connector(username="demo", api_token="wrong").check_connection()


def test_missing_credentials_say_what_is_needed(world):
    with pytest.raises(AuthError, match="user name and an API token"):
        world.connector(username="demo")


def test_an_auth_failure_fails_the_run_and_marks_the_connection(world):
    world.connection.credentials = {"username": "demo", "api_token": "wrong"}
    world.connection.save()
    result = world.sync()
    assert result.outcome == "failed"
    world.connection.refresh_from_db()
    assert "authentication failed" in world.connection.last_error
    assert "authentication failed" in SyncRun.objects.get(pk=result.run_id).message


def test_options_with_a_broken_regex_are_refused(db):
    world = make_world({"deployment_job_pattern": "deploy("})
    with pytest.raises(BadRequest, match="deployment_job_pattern"):
        world.connector()


# Scope: jobs below a folder ---------------------------------------------------------------------------


def test_a_folder_scope_walks_folders_and_multibranch_projects_to_any_depth(world):
    fake = world.fake
    fake.add_folder("apps/web", kind="multibranch")
    fake.add_job("apps/web/main", kind="pipeline")
    fake.add_job("apps/web/PR-2", kind="pipeline")
    deep = "apps/" + "/".join(f"level{n}" for n in range(JOB_TREE_DEPTH + 2)) + "/nightly"
    fake.add_job(deep)
    fake.add_folder("apps/empty")
    fake.add_job("other/job")
    jenkins = world.connector()
    assert sorted(jenkins.jobs("apps")) == sorted(["apps/web/main", "apps/web/PR-2", deep])
    assert jenkins.jobs("apps/web/main") == ["apps/web/main"]
    assert jenkins.jobs("job/apps/job/web/") == ["apps/web/main", "apps/web/PR-2"]
    assert set(jenkins.jobs("")) == {"apps/web/main", "apps/web/PR-2", deep, "other/job"}


def test_scope_queries_are_full_names():
    assert scope_job(" apps/web/ ") == "apps/web"
    assert scope_job("job/apps/job/feature%252Fx/") == "apps/feature%2Fx"
    assert scope_job("*") == ""


# Incremental reads ------------------------------------------------------------------------------------


def test_builds_sharing_one_instant_page_through_range_boundaries_once_each(world):
    same_start = T0 - timedelta(hours=2)
    expected = [world.fake.add_build("apps/api", started=same_start, duration=60_000) for _ in range(20)]
    pages = world.read(page_size=7)
    assert [len(page.items) for page in pages] == [7, 7, 6]
    assert sorted(keys(pages)) == sorted(expected) and len(set(keys(pages))) == 20
    assert build_page_requests(world.fake) == 1 + 3  # the folder, then {0,7} {7,14} {14,21}
    ends = {item.updated for page in pages for item in page.items}
    assert ends == {same_start + timedelta(minutes=1)}


def test_a_build_started_between_two_range_requests_is_read_once(world):
    for n in range(10):
        world.fake.add_build("apps/api", started=T0 - timedelta(hours=10 - n), duration=1000)
    seen = {"ranges": 0}

    class AddsABuildAfterTheFirstRange(httpx.WSGITransport):
        def handle_request(self, request):
            response = super().handle_request(request)
            if "allBuilds" in request.url.params.get("tree", ""):
                seen["ranges"] += 1
                if seen["ranges"] == 1:  # shifts every older build one place down
                    world.fake.add_build("apps/api", started=T0, duration=1000)
            return response

    jenkins = connector_instance(world.connection, transport=AddsABuildAfterTheFirstRange(app=world.fake))
    read = keys(world.read(page_size=4, connector=jenkins))
    assert len(read) == len(set(read)) == 10  # the new build came after the first range; none repeated
    assert sorted(read) == sorted(f"apps/api #{n}" for n in range(1, 11))


def test_since_is_compared_on_the_end_in_milliseconds_and_paging_stops_past_the_watermark(world):
    for hour in range(72, 0, -1):  # one build an hour for three days, each five minutes long
        world.fake.add_build("apps/api", started=T0 - timedelta(hours=hour), duration=300_000)
    since = T0 - timedelta(hours=5) + timedelta(minutes=5)  # exactly the end of the build 5 hours ago
    pages = world.read(page_size=7, since=since)
    read = keys(pages)
    assert read == [f"apps/api #{n}" for n in range(68, 73)]  # oldest change first
    assert all(item.updated >= since for page in pages for item in page.items)
    one_ms_later = world.read(page_size=7, since=since + timedelta(microseconds=1000))
    assert keys(one_ms_later) == read[1:]
    # 72 builds are 11 ranges of 7; a 24 h look-back past the watermark needs 5 of them.
    world.fake.requests.clear()
    world.read(page_size=7, since=since)
    assert build_page_requests(world.fake) == 1 + 5


def test_a_long_build_that_ends_after_the_watermark_is_never_skipped(world):
    since = T0 - timedelta(hours=1)
    long_build = world.fake.add_build(
        "apps/api", started=since - timedelta(hours=3), duration=timedelta(hours=4)
    )
    short = [
        world.fake.add_build("apps/api", started=since - timedelta(hours=2, minutes=-n), duration=60_000)
        for n in range(10)
    ]
    newest = world.fake.add_build("apps/api", started=since + timedelta(minutes=10), duration=60_000)
    read = keys(world.read(page_size=3, since=since))
    assert read == [newest, long_build]
    assert not set(short) & set(read)


def test_a_running_build_reads_as_building_and_its_end_arrives_later(world):
    key = world.fake.add_build("apps/api", started=T0 - timedelta(minutes=10), building=True)
    (item,) = [item for page in world.read() for item in page.items]
    assert (item.key, item.status, item.updated) == (key, "BUILDING", item.created)
    assert [(c.from_status, c.to_status) for c in item.changelog] == [("", "BUILDING")]
    world.fake.finish_build("apps/api", 1, "FAILURE", at=T0)
    (item,) = [item for page in world.read(since=T0 - timedelta(minutes=1)) for item in page.items]
    assert (item.status, item.updated) == ("FAILURE", T0)
    assert [(c.at, c.from_status, c.to_status) for c in item.changelog] == [
        (T0 - timedelta(minutes=10), "", "BUILDING"),
        (T0, "BUILDING", "FAILURE"),
    ]


def test_commits_revision_branch_parameters_and_upstream_are_in_the_fields(world):
    fake = world.fake
    fake.add_job("apps/web", kind="pipeline")
    build = fake.add_build(
        "apps/web",
        started=T0 - timedelta(hours=1),
        duration=90_000,
        commits=[{"id": "a" * 40, "message": "ABC-1 pay"}, "b" * 40],
        branch="feature/ABC-1",
    )
    deploy = fake.add_build(
        "apps/deploy-web",
        started=T0 - timedelta(minutes=30),
        duration=60_000,
        upstream=("apps/web", 1),
        parameters={"ENV": "QA"},
        result="UNSTABLE",
    )
    items = {item.key: item for page in world.read() for item in page.items}
    fields = items[build].fields
    assert fields["commit_ids"] == ["a" * 40, "b" * 40]
    assert fields["commits"][0]["message"] == "ABC-1 pay"
    assert (fields["revision"], fields["branch"]) == ("b" * 40, "feature/ABC-1")
    assert items[build].item_type == "Build" and items[build].links == []
    deployment = items[deploy]
    assert deployment.item_type == "Deployment" and deployment.status == "UNSTABLE"
    assert deployment.fields["environment"] == "qa"
    assert deployment.fields["upstream"][0] == {"project": "apps/web", "build": 1, "url": "job/apps/job/web/"}
    assert [(link.kind, link.target_key, link.incoming) for link in deployment.links] == [
        ("deployed_in", build, True)
    ]


def test_the_environment_rule():
    rules = BuildRules.from_options({})
    assert environment("apps/deploy-prod", {}, rules) == "production"
    assert environment("apps/deploy", {"TARGET": "eu-production-1"}, rules) == "production"
    assert environment("apps/deploy", {"DEPLOY_TO_PROD": True}, rules) == "production"
    assert environment("apps/deploy", {"DEPLOY_TO_PROD": False, "Stage": "UAT"}, rules) == "uat"
    assert environment("apps/deploy", {}, rules) == "staging"
    live = BuildRules.from_options({"production_pattern": "(?i)live", "deployment_job_pattern": "release"})
    assert environment("apps/release", {"ENV": "prod"}, live) == "prod"
    build = {"number": 3, "timestamp": 1_700_000_000_000, "duration": 5, "result": "SUCCESS"}
    assert build_to_item(build, "apps/release-live", BASE_URL, live).item_type == "Deployment"
    assert build_to_item(build, "apps/deploy", BASE_URL, live).item_type == "Build"


def test_read_item_and_list_ids(world):
    world.fake.add_folder("apps/web", kind="multibranch")
    world.fake.add_job("apps/web/feature%2Fx", kind="pipeline")
    key = world.fake.add_build("apps/web/feature%2Fx", started=T0, duration=10, commits=["c" * 40])
    other = world.fake.add_build("apps/api", started=T0)
    jenkins = world.connector()
    item = jenkins.read_item(key, ScopeSpec("apps"))
    assert (item.key, item.fields["commit_ids"]) == (key, ["c" * 40])
    assert item.url == f"{BASE_URL}/job/apps/job/web/job/feature%252Fx/1/"
    assert parse_build_key(key) == ("apps/web/feature%2Fx", 1)
    assert set(jenkins.list_ids(ScopeSpec("apps"))) == {key, other}


# Faults ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_a_rate_limit_is_waited_out(world, status):
    world.fake.add_build("apps/api", started=T0)
    world.fake.rate_limit(2, retry_after=3, status=status)
    assert len(keys(world.read())) == 1
    assert world.sleeps == [3, 3]


def test_a_long_rate_limit_is_raised_not_slept(world):
    world.fake.rate_limit(1, retry_after=3600)
    with pytest.raises(RateLimited):
        world.read()
    assert world.sleeps == []


def test_a_malformed_build_is_a_failure_and_the_rest_reads(world):
    built = [world.fake.add_build("apps/api", started=T0 - timedelta(minutes=n)) for n in range(3)]
    world.fake.malformed(built[1])
    pages = world.read()
    assert sorted(keys(pages)) == sorted([built[0], built[2]])
    (failure,) = [failure for page in pages for failure in page.failures]
    assert failure.key == built[1] and "cannot read build" in failure.message


# Through the real ingest -------------------------------------------------------------------------------


def test_builds_and_deployments_land_with_their_ledger_and_links(world):
    fake = world.fake
    start = T0 - timedelta(hours=3)
    build = fake.add_build("apps/api", started=start, duration=timedelta(minutes=12), commits=["d" * 40])
    deploy = fake.add_build(
        "apps/deploy-api-prod", started=start + timedelta(hours=1), duration=60_000, upstream=("apps/api", 1)
    )
    running = fake.add_build("apps/api", started=T0 - timedelta(minutes=5), building=True)
    result = world.sync()
    assert result.outcome == "success", result
    assert (result.counts["read"], result.counts["created"], result.counts["failed"]) == (3, 3, 0)

    artifact = Artifact.objects.get(key=build)
    assert artifact.artifact_model.slug == "build" and artifact.flow_state == FlowState.DONE
    assert list(artifact.transitions.values_list("at", "from_status", "to_status", "to_state")) == [
        (start, "", "BUILDING", FlowState.ACTIVE),
        (start + timedelta(minutes=12), "BUILDING", "SUCCESS", FlowState.DONE),
    ]
    assert artifact.done_at - artifact.first_started_at == timedelta(minutes=12)
    deployment = Artifact.objects.get(key=deploy)
    assert deployment.artifact_model.slug == "deployment"
    assert ArtifactLink.objects.filter(source=artifact, target=deployment, kind=LinkKind.DEPLOYED_IN).exists()
    assert Artifact.objects.get(key=running).flow_state == FlowState.ACTIVE

    world.clock.now = T0 + timedelta(minutes=20)
    fake.finish_build("apps/api", 2, "FAILURE")
    again = world.sync()
    assert (again.counts["updated"], again.counts["created"]) == (1, 0)
    finished = Artifact.objects.get(key=running)
    assert finished.tool_status == "FAILURE" and finished.transitions.count() == 2


def test_builds_ending_in_one_millisecond_across_pages_are_stored_once_and_resynced_unchanged(world):
    same_start = T0 - timedelta(hours=1)
    for job in ("apps/api", "apps/web"):
        for _ in range(10):
            world.fake.add_build(job, started=same_start, duration=1234)
    first = world.sync()
    assert (first.counts["read"], first.counts["created"]) == (20, 20)
    world.scope.refresh_from_db()
    assert world.scope.cursor == same_start + timedelta(milliseconds=1234)
    again = world.sync()
    assert (again.counts["read"], again.counts["unchanged"], again.counts["created"]) == (20, 20, 0)
    assert Artifact.objects.count() == 20


def test_a_malformed_build_is_a_sync_error_while_the_others_land(world):
    built = [world.fake.add_build("apps/api", started=T0 - timedelta(minutes=n)) for n in range(3)]
    world.fake.malformed(built[0])
    result = world.sync()
    assert result.outcome == "partial"
    assert set(Artifact.objects.values_list("key", flat=True)) == {built[1], built[2]}
    error = SyncError.objects.get()
    assert error.item_key == built[0] and "cannot read build" in error.message


# Recorded payloads (DevLake raw tables) ----------------------------------------------------------------


def recorded_rows(fixtures_dir, name):
    path = fixtures_dir / RECORDED / name
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def recorded_job(row) -> str:
    """The job a recorded build belongs to: the branch job of a multibranch project, else the job."""
    given = json.loads(row["input"] or "null") or {}
    return given.get("FullName") or json.loads(row["params"])["FullName"]


def changeset_commit_ids(build) -> list[str]:
    """Counted independently of the provider: every item of changeSet and of each changeSets entry."""
    found = []
    if isinstance(build.get("changeSet"), dict):
        found += [item["commitId"] for item in build["changeSet"].get("items", [])]
    for change_set in build.get("changeSets") or []:
        found += [item["commitId"] for item in change_set.get("items", [])]
    return found


def built_shas(build) -> list[str]:
    return [
        action["lastBuiltRevision"]["SHA1"]
        for action in build.get("actions", [])
        if action.get("_class") == "hudson.plugins.git.util.BuildData"
    ]


@pytest.mark.parametrize(
    ("name", "rows", "with_revision"),
    [("_raw_jenkins_api_builds.csv", 14, 3), ("_raw_jenkins_api_builds_multibranch.csv", 15, 13)],
)
def test_every_recorded_build_normalises_with_its_commit_references(fixtures_dir, name, rows, with_revision):
    recorded = recorded_rows(fixtures_dir, name)
    assert len(recorded) == rows
    commit_ids = revisions = 0
    for row in recorded:
        build = json.loads(row["data"])
        job = recorded_job(row)
        item = build_to_item(build, job, "https://test.nddtf.com")
        assert item.key == f"{job} #{build['number']}"
        assert item.created.tzinfo is not None and item.created <= item.updated
        assert item.item_type == "Build"
        assert item.fields["commit_ids"] == changeset_commit_ids(build)
        assert item.fields["revisions"] == built_shas(build)
        if build.get("building"):
            assert item.status == "BUILDING" and len(item.changelog) == 1
        else:
            assert item.status == build["result"] and item.changelog[-1].to_status == build["result"]
        commit_ids += len(item.fields["commit_ids"])
        revisions += bool(item.fields["revision"])
    # DevLake asked for changeSet[kind,revisions[revision]], so the recordings hold no changeSet items;
    # the commit each build built comes from the git BuildData action.
    assert commit_ids == sum(len(changeset_commit_ids(json.loads(row["data"]))) for row in recorded) == 0
    assert revisions == sum(bool(built_shas(json.loads(row["data"]))) for row in recorded) == with_revision


def test_recorded_multibranch_builds_name_their_branch_and_land_in_the_store(fixtures_dir):
    recorded = recorded_rows(fixtures_dir, "_raw_jenkins_api_builds_multibranch.csv")
    connection = ToolConnectionFactory(kind="jenkins", base_url="https://jenkins.example.test")
    map_types(connection, TYPE_MAP, STATUS_MAP)
    scope = ScopeFactory(connection=connection, query="github_org/devlake-jenkins")
    items = [
        build_to_item(json.loads(row["data"]), recorded_job(row), connection.base_url) for row in recorded
    ]
    # A branch job builds its own branch; two runs failed before their checkout and name none.
    assert [item.key for item in items if not item.fields["branch"]] == [
        "github_org/devlake-jenkins/feature-2 #5",
        "github_org/devlake-jenkins/feature-2 #4",
    ]
    assert all(item.fields["branch"] in ("", item.fields["job_name"]) for item in items)
    run = SyncRun.objects.create(scope=scope, started_at=timezone.now())
    PageStore(scope, load_mapping_set(connection), run).save_page(Page(items=items))
    run.refresh_from_db()
    assert (run.read, run.created, run.failed) == (15, 15, 0)
    assert Artifact.objects.filter(connection=connection, flow_state=FlowState.UNKNOWN).count() == 0


def test_recorded_multibranch_job_listing_gives_jenkins_full_names(fixtures_dir, world):
    recorded = [
        json.loads(row["data"])
        for row in recorded_rows(fixtures_dir, "_raw_jenkins_api_jobs_multibranch.csv")
    ]
    assert len(recorded) == 4
    found: list[str] = []
    world.connector()._walk("github_org/devlake-jenkins", recorded, 1, found)
    assert found == [job["fullName"] for job in recorded]
