"""The fake Jenkins speaks the real JSON API's shapes, tree filter, ranges, auth and faults."""

import csv
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from connectors.fakes.jenkins import DEMO_TOKEN, DEMO_USER, FakeJenkins, TreeError, parse_tree
from connectors.fakes.wsgi import serve

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
T0_MS = 1772442000000
RECORDED = "devlake-raw/jenkins"


def client_for(fake, user=DEMO_USER, token=DEMO_TOKEN, **kwargs) -> httpx.Client:
    auth = (user, token) if user else None
    return httpx.Client(
        transport=httpx.WSGITransport(app=fake), base_url="http://ci.test", auth=auth, **kwargs
    )


@pytest.fixture
def fake() -> FakeJenkins:
    return FakeJenkins(now=lambda: T0)


def get(client, path, tree=None):
    response = client.get(path, params={"tree": tree} if tree else None)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_root_and_folders_list_jobs_with_their_classes_and_colors(fake):
    fake.add_folder("apps")
    fake.add_folder("apps/web", kind="multibranch")
    fake.add_job("apps/web/main", kind="pipeline")
    fake.add_job("apps/api")
    fake.add_build("apps/api", started=T0, result="FAILURE")
    fake.add_build("apps/web/main", started=T0, building=True)
    client = client_for(fake)
    root = get(client, "/api/json")
    assert root["_class"] == "hudson.model.Hudson" and root["useCrumbs"] is True
    assert root["jobs"] == [
        {
            "_class": "com.cloudbees.hudson.plugins.folder.Folder",
            "name": "apps",
            "url": "http://ci.test/job/apps/",
        }
    ]
    nested = get(client, "/api/json", "jobs[name,color,jobs[name,color,jobs[name,color]]]")
    (apps,) = nested["jobs"]
    web, api = apps["jobs"]
    assert web["_class"] == "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject"
    assert "color" not in web  # folders have no color
    assert web["jobs"] == [
        {
            "_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob",
            "name": "main",
            "color": "notbuilt_anime",
        }
    ]
    assert api == {"_class": "hudson.model.FreeStyleProject", "name": "api", "color": "red"}
    assert "jobs" not in api  # a job has no jobs: the property is left out, not null
    assert get(client, "/view/all/job/apps/job/api/api/json", "name")["name"] == "api"


def test_a_job_lists_its_newest_100_builds_and_all_builds_only_through_tree(fake):
    for hour in range(130):
        fake.add_build("api", started=T0 + timedelta(hours=hour), duration=1000)
    client = client_for(fake)
    job = get(client, "/job/api/api/json")
    assert "allBuilds" not in job
    assert len(job["builds"]) == 100
    assert job["builds"][0] == {
        "_class": "hudson.model.FreeStyleBuild",
        "number": 130,
        "url": "http://ci.test/job/api/130/",
    }
    assert job["lastBuild"]["number"] == 130 and job["nextBuildNumber"] == 131
    every = get(client, "/job/api/api/json", "allBuilds[number]")["allBuilds"]
    assert [build["number"] for build in every] == list(range(130, 0, -1))
    ranged = get(client, "/job/api/api/json", "allBuilds[number,timestamp]{100,110}")["allBuilds"]
    assert [build["number"] for build in ranged] == list(range(30, 20, -1))
    assert get(client, "/job/api/api/json", "allBuilds[number]{125,}")["allBuilds"][-1]["number"] == 1
    assert get(client, "/job/api/api/json", "allBuilds[number]{,2}")["allBuilds"][1]["number"] == 129
    assert get(client, "/job/api/api/json", "allBuilds[number]{3}")["allBuilds"] == [
        {"_class": "hudson.model.FreeStyleBuild", "number": 127}
    ]
    assert get(client, "/job/api/api/json", "allBuilds[number]{200,300}")["allBuilds"] == []


def test_a_freestyle_build_has_a_change_set_and_a_pipeline_run_change_sets(fake):
    fake.add_job("web", kind="pipeline")
    fake.add_build(
        "api",
        started=T0,
        duration=timedelta(minutes=2),
        commits=[{"id": "a" * 40, "message": "ABC-1 fix\n\nbody", "author": "Ann", "email": "ann@x.test"}],
        parameters={"ENV": "qa", "DRY_RUN": False},
        user="demo",
    )
    fake.add_build("web", started=T0, commits=["b" * 40], branch="feature/x", upstream=("api", 1))
    client = client_for(fake)
    freestyle = get(client, "/job/api/1/api/json")
    assert freestyle["_class"] == "hudson.model.FreeStyleBuild"
    assert (freestyle["timestamp"], freestyle["duration"], freestyle["result"]) == (T0_MS, 120_000, "SUCCESS")
    assert "changeSets" not in freestyle
    (item,) = freestyle["changeSet"]["items"]
    assert (item["commitId"], item["msg"], item["comment"]) == ("a" * 40, "ABC-1 fix", "ABC-1 fix\n\nbody\n")
    assert item["author"]["fullName"] == "Ann" and item["authorEmail"] == "ann@x.test"
    assert item["date"].endswith(" +0000")
    classes = [action.get("_class") for action in freestyle["actions"]]
    assert classes[:3] == [
        "hudson.model.CauseAction",
        "hudson.model.ParametersAction",
        "hudson.plugins.git.util.BuildData",
    ]
    assert {} in freestyle["actions"]  # as recorded: actions Jenkins exports without a class
    cause = freestyle["actions"][0]["causes"][0]
    assert cause["_class"] == "hudson.model.Cause$UserIdCause" and cause["userId"] == "demo"
    parameters = freestyle["actions"][1]["parameters"]
    assert parameters[1] == {
        "_class": "hudson.model.BooleanParameterValue",
        "name": "DRY_RUN",
        "value": False,
    }
    git = freestyle["actions"][2]
    assert git["lastBuiltRevision"]["SHA1"] == "a" * 40
    assert git["lastBuiltRevision"]["branch"][0]["name"] == "refs/remotes/origin/main"
    assert git["buildsByBranchName"]["refs/remotes/origin/main"]["buildNumber"] == 1

    pipeline = get(client, "/job/web/1/api/json")
    assert pipeline["_class"] == "org.jenkinsci.plugins.workflow.job.WorkflowRun"
    assert "changeSet" not in pipeline
    assert pipeline["changeSets"][0]["items"][0]["commitId"] == "b" * 40
    upstream = pipeline["actions"][0]["causes"][0]
    assert upstream == {
        "_class": "hudson.model.Cause$UpstreamCause",
        "shortDescription": 'Started by upstream project "api" build number 1',
        "upstreamBuild": 1,
        "upstreamProject": "api",
        "upstreamUrl": "job/api/",
    }


def test_a_running_build_has_no_result_and_no_duration_until_it_finishes(fake):
    fake.add_build("api", started=T0 - timedelta(minutes=5), building=True)
    client = client_for(fake)
    running = get(client, "/job/api/1/api/json", "building,result,duration,executor")
    assert running == {
        "_class": "hudson.model.FreeStyleBuild",
        "building": True,
        "result": None,
        "duration": 0,
        "executor": {"_class": "hudson.model.Executor"},
    }
    fake.finish_build("api", 1, "ABORTED")
    done = get(client, "/job/api/1/api/json", "building,result,duration")
    assert (done["building"], done["result"], done["duration"]) == (False, "ABORTED", 300_000)
    assert get(client, "/job/api/api/json", "color")["color"] == "aborted"


def test_tree_keeps_class_prunes_unnamed_objects_and_keeps_nulls(fake):
    fake.add_build("api", started=T0)
    client = client_for(fake)
    build = get(client, "/job/api/1/api/json", "description,nosuch,changeSet,actions[causes[*]]")
    assert build["description"] is None and "nosuch" not in build
    assert build["changeSet"] == {"_class": "hudson.scm.EmptyChangeLogSet"}
    assert build["actions"][0]["causes"][0]["shortDescription"] == "Started by an SCM change"
    assert build["actions"][-1] == {"_class": "org.jenkinsci.plugins.displayurlapi.actions.RunDisplayAction"}
    response = client.get("/job/api/1/api/json", params={"tree": "actions[causes"})
    assert response.status_code == 400 and "text/html" in response.headers["content-type"]
    with pytest.raises(TreeError):
        parse_tree("a,,b")
    assert set(parse_tree("a[b{0,1}],c{2}")) == {"a", "c"}


@pytest.mark.parametrize(
    ("name", "row_index", "kind"),
    [
        ("_raw_jenkins_api_builds.csv", 0, "freestyle"),
        ("_raw_jenkins_api_builds_multibranch.csv", 0, "pipeline"),
    ],
)
def test_the_recorded_request_gets_the_recorded_shape(fixtures_dir, fake, name, row_index, kind):
    with (fixtures_dir / RECORDED / name).open(newline="", encoding="utf-8") as handle:
        row = list(csv.DictReader(handle))[row_index]
    recorded = json.loads(row["data"])
    tree = parse_qs(urlsplit(row["url"]).query)["tree"][0]
    fake.add_job("job", kind=kind)
    fake.add_build("job", started=T0, duration=1000, commits=["c" * 40])
    (answered,) = get(client_for(fake), "/job/job/api/json", tree)["allBuilds"]
    assert set(answered) == set(recorded)
    assert answered["_class"] == recorded["_class"]
    recorded_git = next(a for a in recorded["actions"] if a.get("_class", "").endswith("BuildData"))
    answered_git = next(a for a in answered["actions"] if a.get("_class", "").endswith("BuildData"))
    assert set(answered_git) == set(recorded_git)
    assert set(answered_git["lastBuiltRevision"]) == set(recorded_git["lastBuiltRevision"])
    recorded_cause = recorded["actions"][0]["causes"][0]
    assert set(recorded["actions"][0]) == set(answered["actions"][0]) == {"_class", "causes"}
    assert {"_class", "shortDescription"} <= set(recorded_cause) & set(answered["actions"][0]["causes"][0])
    if "changeSet" in recorded:
        assert set(answered["changeSet"]) == set(recorded["changeSet"]) == {"_class", "kind"}


def test_auth_anonymous_is_forbidden_and_a_wrong_token_unauthorised(fake):
    assert client_for(fake, user=None).get("/api/json").status_code == 403
    wrong = client_for(fake, token="nope").get("/api/json")
    assert wrong.status_code == 401 and "Invalid password/token" in wrong.text
    me = get(client_for(fake), "/me/api/json")
    assert (me["_class"], me["id"], me["fullName"]) == ("hudson.model.User", "demo", "VSM Demo")
    crumb = get(client_for(fake), "/crumbIssuer/api/json")
    assert crumb["crumbRequestField"] == "Jenkins-Crumb"
    assert client_for(fake).get("/job/nosuch/api/json").status_code == 404
    assert client_for(fake).get("/job/nosuch/3/api/json").status_code == 404


@pytest.mark.parametrize("status", [429, 503])
def test_rate_limits_answer_with_retry_after_then_recover(fake, status):
    fake.rate_limit(2, retry_after=7, status=status)
    client = client_for(fake)
    for _ in range(2):
        limited = client.get("/api/json")
        assert (limited.status_code, limited.headers["retry-after"]) == (status, "7")
    assert client.get("/api/json").status_code == 200
    assert fake.requests["GET item"] == 3


def test_failures_and_malformed_builds(fake):
    key = fake.add_build("api", started=T0)
    fake.fail(1, status=502)
    client = client_for(fake)
    assert client.get("/api/json").status_code == 502
    fake.malformed(key)
    assert get(client, "/job/api/1/api/json", "timestamp")["timestamp"] == "not-a-timestamp"
    fake.clear_faults()
    assert get(client, "/job/api/1/api/json", "timestamp")["timestamp"] == T0_MS


def test_control_endpoints_seed_and_inspect_the_instance(fake):
    control = client_for(fake, user=None)
    assert control.post("/_fake/folders", json={"path": "apps", "kind": "multibranch"}).status_code == 201
    assert control.post("/_fake/jobs", json={"path": "apps/main", "kind": "pipeline"}).status_code == 201
    created = control.post(
        "/_fake/builds",
        json={
            "job": "apps/main",
            "started": "2026-03-02T08:00:00+00:00",
            "building": True,
            "commits": ["d" * 40],
        },
    )
    assert created.status_code == 201
    assert created.json() == {
        "key": "apps/main #1",
        "number": 1,
        "url": "http://ci.test/job/apps/job/main/1/",
    }
    finished = control.post(
        "/_fake/builds/finish", json={"job": "apps/main", "number": 1, "at": "2026-03-02T08:30:00+00:00"}
    )
    assert finished.status_code == 200
    assert control.post("/_fake/users", json={"username": "ops", "token": "t0ken"}).status_code == 201
    build = get(client_for(fake, "ops", "t0ken"), "/job/apps/job/main/1/api/json", "duration,result")
    assert (build["duration"], build["result"]) == (1_800_000, "SUCCESS")
    faults = control.post(
        "/_fake/faults", json={"rate_limit": {"count": 1, "status": 503}, "malformed": ["apps/main #1"]}
    )
    assert faults.json()["rate_limit_count"] == 1
    stats = control.get("/_fake/stats").json()
    assert (stats["jobs"], stats["builds"], stats["malformed"]) == (1, 1, ["apps/main #1"])
    assert control.post("/_fake/builds", json={"job": "apps/main", "started": "yesterday"}).status_code == 400
    assert control.post("/_fake/clock", json={"now": "2026-04-01T00:00:00+00:00"}).status_code == 200
    assert control.post("/_fake/builds", json={"job": "apps/main"}).json()["number"] == 2
    fake.clear_faults()
    second = get(client_for(fake), "/job/apps/job/main/2/api/json", "timestamp")
    assert second["timestamp"] == int(datetime(2026, 4, 1, tzinfo=UTC).timestamp() * 1000)
    assert control.post("/_fake/reset").status_code == 200
    assert control.get("/_fake/stats").json()["jobs"] == 0
    assert client_for(fake).get("/api/json").json()["jobs"] == []


def test_the_fake_serves_over_a_real_socket(fake):
    fake.add_build("api", started=T0)
    with serve({"/jenkins": fake}) as server:
        response = httpx.get(
            server.url("/jenkins") + "/job/api/api/json", params={"tree": "url"}, auth=(DEMO_USER, DEMO_TOKEN)
        )
    assert response.json()["url"] == server.url("/jenkins") + "/job/api/"
    assert fake.label == "Jenkins" and fake.credentials() == {"username": DEMO_USER, "api_token": DEMO_TOKEN}
