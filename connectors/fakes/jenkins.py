"""A faithful fake of the Jenkins JSON API (read side), for tests and the demo.

Shapes are copied from recorded payloads (DevLake raw tables, connectors-reference.md §4): freestyle
builds (``hudson.model.FreeStyleBuild`` with a ``changeSet`` object) and Pipeline runs
(``org.jenkinsci.plugins.workflow.job.WorkflowRun`` with a ``changeSets`` array), ``actions`` holding
``hudson.model.CauseAction`` causes, ``hudson.model.ParametersAction`` parameters and the git plugin's
``hudson.plugins.git.util.BuildData`` (``lastBuiltRevision``, ``buildsByBranchName``, ``remoteUrls``),
plus empty ``{}`` actions as Jenkins exports them; epoch-millisecond ``timestamp`` and ``duration``
(0 while building, with ``result`` null); folders (``com.cloudbees.hudson.plugins.folder.Folder``),
multibranch projects (``...workflow.multibranch.WorkflowMultiBranchProject``) and organisation folders
nesting ``jobs``; HTML error pages.

API
    ``GET [/view/<v>]/[job/<name>/...]api/json``: the root, a folder or a job;
    ``GET .../job/<name>/<n>/api/json``: one build; ``GET /me/api/json``; ``GET /crumbIssuer/api/json``.
    Every one honours ``tree``
    (``a,b[c,d{0,10}],e[*]{5,}``, ranges ``{M,N}`` from M inclusive to N exclusive, ``{M,}``, ``{,N}``,
    ``{N}``; ``_class`` always included; an object named without a sub-tree shows only its ``_class``;
    properties an object does not have are left out, null ones are kept). Without ``tree`` the answer is
    Jenkins' depth-0 shape (a job lists ``builds`` as ``{_class, number, url}``, newest 100 only).
    ``allBuilds`` (every build, newest first by number) is only reachable through ``tree``.
    ``depth`` is ignored.

Auth: HTTP Basic ``user:api_token``. No credentials: 403 (anonymous has no Overall/Read); wrong ones: 401.

Programmatic API (tests and the demo generator; no HTTP needed)
    ``add_user``, ``add_folder(path, kind)``, ``add_job(path, kind)`` (parents created as folders),
    ``add_build(job, started=, duration=, result=, building=, commits=, revision=, branch=, parameters=,
    upstream=, user=, number=)`` -> key ``"<job> #<n>"`` (backdated freely), ``finish_build``,
    ``delete_build``; faults ``rate_limit(count, retry_after, status=429|503)``, ``fail``, ``slow``,
    ``malformed(key)``, ``clear_faults``; ``requests`` and ``now`` as in every fake.

Control endpoints: FAKE-ONLY. No credentials; never faulted or counted.
    POST /_fake/reset        {}: an empty instance with the demo user
    POST /_fake/faults       {"rate_limit": {"count", "retry_after"?, "status"?},
                              "fail": {"count", "status"?}, "slow": {"count", "seconds"},
                              "malformed": ["job #1"], "clear": true}
    GET  /_fake/stats        request counters, pending faults, job and build counts
    POST /_fake/clock        {"now": "2026-03-01T10:30:00+00:00"} freezes the clock; {"now": null} frees it
    POST /_fake/users        {"username", "token", "full_name"?}
    POST /_fake/folders      {"path", "kind"?: "folder"|"multibranch"|"organization"}
    POST /_fake/jobs         {"path", "kind"?: "freestyle"|"pipeline"}
    POST /_fake/builds       {"job", "started"?, "duration_ms"?, "result"?, "building"?, "commits"?: [sha |
                              {"id", "message"?, "author"?, "email"?}], "revision"?, "branch"?,
                              "parameters"?: {..}, "upstream"?: {"project", "build"}, "user"?, "number"?}
                              -> 201 {"key", "number", "url"}
    POST /_fake/builds/finish {"job", "number", "result"?, "at"?}
"""

from __future__ import annotations

import functools
import html
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from connectors.fakes.wsgi import (
    CONTROL_PREFIX,
    FakeApp,
    HttpError,
    InvalidRequestBody,
    Request,
    Response,
    basic_credentials,
    json_response,
    locked,
)

DEMO_USER = "demo"
DEMO_TOKEN = "fake-jenkins-token"  # noqa: S105 (a published demo credential of the fake)
VERSION = "2.462.3"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BUILDS_LIMIT = 100  # what `builds` shows; `allBuilds` has them all
RESULTS = ("SUCCESS", "FAILURE", "UNSTABLE", "ABORTED", "NOT_BUILT")
COLORS = {"SUCCESS": "blue", "FAILURE": "red", "UNSTABLE": "yellow", "ABORTED": "aborted"}
FOLDER_CLASSES = {
    "folder": "com.cloudbees.hudson.plugins.folder.Folder",
    "multibranch": "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject",
    "organization": "jenkins.branch.OrganizationFolder",
}
JOB_CLASSES = {
    "freestyle": ("hudson.model.FreeStyleProject", "hudson.model.FreeStyleBuild"),
    "pipeline": (
        "org.jenkinsci.plugins.workflow.job.WorkflowJob",
        "org.jenkinsci.plugins.workflow.job.WorkflowRun",
    ),
}
DEFAULT_REMOTE = "https://git.example.test/acme/app.git"

# Jenkins' depth-0 answers, as trees over the full representations below.
_BUILD_REF = "number,url"
DEFAULT_TREES = {
    "root": "assignedLabels[name],mode,nodeDescription,nodeName,numExecutors,description,"
    "jobs[name,url,color],overallLoad,primaryView[name,url],quietingDown,slaveAgentPort,"
    "unlabeledLoad,url,useCrumbs,useSecurity,views[name,url]",
    "folder": "actions,description,displayName,displayNameOrNull,fullDisplayName,fullName,name,url,"
    "healthReport[*],jobs[name,url,color],primaryView[name,url],views[name,url]",
    "job": "actions,description,displayName,displayNameOrNull,fullDisplayName,fullName,name,url,"
    f"buildable,builds[{_BUILD_REF}],color,firstBuild[{_BUILD_REF}],healthReport[*],inQueue,"
    f"keepDependencies,lastBuild[{_BUILD_REF}],lastCompletedBuild[{_BUILD_REF}],"
    f"lastFailedBuild[{_BUILD_REF}],lastStableBuild[{_BUILD_REF}],lastSuccessfulBuild[{_BUILD_REF}],"
    f"lastUnstableBuild[{_BUILD_REF}],lastUnsuccessfulBuild[{_BUILD_REF}],nextBuildNumber,property,"
    "queueItem,concurrentBuild,resumeBlocked",
}


# The `tree` parameter ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TreeNode:
    children: dict[str, TreeNode] | None  # None: a leaf
    start: int | None = None
    end: int | None = None
    ranged: bool = False


class TreeError(ValueError):
    pass


def parse_tree(text: str) -> dict[str, TreeNode]:
    """Jenkins' ``tree`` grammar: ``name[subtree]{range}`` separated by commas, ``*`` any property."""
    position = 0

    def parse_list() -> dict[str, TreeNode]:
        nonlocal position
        nodes: dict[str, TreeNode] = {}
        while True:
            start = position
            while position < len(text) and text[position] not in "[]{},":
                position += 1
            name = text[start:position].strip()
            if not name:
                raise TreeError(f"a property name is missing at position {start} of tree={text!r}")
            children = None
            if position < len(text) and text[position] == "[":
                position += 1
                children = parse_list()
                if position >= len(text) or text[position] != "]":
                    raise TreeError(f"']' expected at position {position} of tree={text!r}")
                position += 1
            first = last = None
            ranged = False
            if position < len(text) and text[position] == "{":
                closing = text.find("}", position)
                if closing < 0:
                    raise TreeError(f"'}}' expected after position {position} of tree={text!r}")
                first, last = _parse_range(text[position + 1 : closing])
                ranged = True
                position = closing + 1
            nodes[name] = TreeNode(children, first, last, ranged)
            if position < len(text) and text[position] == ",":
                position += 1
                continue
            return nodes

    nodes = parse_list()
    if position != len(text):
        raise TreeError(f"unexpected {text[position]!r} at position {position} of tree={text!r}")
    return nodes


def _parse_range(text: str) -> tuple[int | None, int | None]:
    try:
        if "," not in text:
            index = int(text)
            return index, index + 1
        first, last = text.split(",", 1)
        return (int(first) if first.strip() else None, int(last) if last.strip() else None)
    except ValueError:
        raise TreeError(f"{{{text}}} is not a range like {{0,100}}") from None


def _resolve(value: Any) -> Any:
    return value() if callable(value) else value


def apply_tree(value: Any, tree: dict[str, TreeNode] | None) -> Any:
    """`value` (lazy values are callables) pruned to `tree`; None: an object shows only its _class."""
    value = _resolve(value)
    if isinstance(value, list):
        return [apply_tree(element, tree) for element in value]
    if not isinstance(value, dict):
        return value
    pruned: dict[str, Any] = {}
    if "_class" in value:
        pruned["_class"] = value["_class"]
    if tree is None:
        return pruned
    for name, raw in value.items():
        node = tree.get(name) or tree.get("*")
        if name == "_class" or node is None:
            continue
        element = _resolve(raw)
        if node.ranged and isinstance(element, list):
            element = element[node.start : node.end]
        if node.children is None and not isinstance(element, dict | list):
            pruned[name] = element
        elif node.children is None:
            pruned[name] = apply_tree(element, None) if isinstance(element, dict) else _leaf_list(element)
        else:
            pruned[name] = apply_tree(element, node.children)
    return pruned


def _leaf_list(values: list[Any]) -> list[Any]:
    return [
        apply_tree(value, None) if isinstance(_resolve(value), dict) else _resolve(value) for value in values
    ]


def _everything(value: Any) -> Any:
    value = _resolve(value)
    if isinstance(value, list):
        return [_everything(element) for element in value]
    if isinstance(value, dict):
        return {name: _everything(element) for name, element in value.items()}
    return value


# State ------------------------------------------------------------------------------------------------


def to_ms(instant: datetime) -> int:
    if not isinstance(instant, datetime) or instant.tzinfo is None:
        raise ValueError(f"Expected an aware datetime (with tzinfo), got {instant!r}")
    delta = instant - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


@dataclass
class User:
    id: str
    token: str
    full_name: str


@dataclass
class Build:
    number: int
    started_ms: int
    duration_ms: int
    result: str | None
    building: bool
    queue_id: int
    commits: list[dict[str, Any]] = field(default_factory=list)
    revision: str | None = None
    branch: str = ""
    remote_urls: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    causes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Node:
    name: str
    kind: str  # root, folder, multibranch, organization, freestyle, pipeline
    parent: Node | None
    children: dict[str, Node] = field(default_factory=dict)
    builds: dict[int, Build] = field(default_factory=dict)
    next_number: int = 1

    @property
    def is_job(self) -> bool:
        return self.kind in JOB_CLASSES

    @property
    def full_name(self) -> str:
        names = []
        node: Node | None = self
        while node is not None and node.kind != "root":
            names.append(node.name)
            node = node.parent
        return "/".join(reversed(names))

    @property
    def path(self) -> str:
        return "".join(f"job/{quote(name, safe='')}/" for name in self.full_name.split("/") if name)

    def newest_first(self) -> list[Build]:
        return [self.builds[number] for number in sorted(self.builds, reverse=True)]


class JenkinsError(HttpError):
    """An HTML error page with its status, as Jenkins answers; reads as a plain exception in Python."""

    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()):
        super().__init__(html_error(status, message, headers))
        self.args = (message,)


def html_error(status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
    text = html.escape(message)
    body = (
        f"<html><head><title>Error {status}</title></head>"
        f"<body><h2>HTTP ERROR {status}</h2><p>{text}</p><hr/><small>Jenkins (fake)</small></body></html>"
    )
    return Response(
        status,
        body.encode(),
        [("Content-Type", "text/html;charset=utf-8"), ("X-Jenkins", VERSION), *headers],
    )


class FakeJenkins(FakeApp):
    """See the module docstring."""

    def __init__(self, now: Callable[[], datetime] | None = None) -> None:
        super().__init__(now)
        view = r"(?:view/[^/]+/)?"
        jobs = r"(?P<path>(?:job/[^/]+/)*)"
        add = self.router.add
        add("GET", r"/me/api/json", self._http_me, "me")
        add("GET", r"/whoAmI/api/json", self._http_me, "whoAmI")
        add("GET", r"/crumbIssuer/api/json", self._http_crumb, "crumbIssuer")
        add("GET", rf"/{view}{jobs}(?P<number>\d+)/api/json", self._http_build, "build")
        add("GET", rf"/{view}{jobs}api/json", self._http_item, "item")
        control = self.control.add
        control("POST", f"{CONTROL_PREFIX}/users", self._control_user, "users")
        control("POST", f"{CONTROL_PREFIX}/folders", self._control_folder, "folders")
        control("POST", f"{CONTROL_PREFIX}/jobs", self._control_job, "jobs")
        control("POST", f"{CONTROL_PREFIX}/builds", self._control_build, "builds")
        control("POST", f"{CONTROL_PREFIX}/builds/finish", self._control_finish, "finish")
        self.reset()

    @locked
    def reset(self) -> None:
        super().reset()
        self.root = Node("", "root", None)
        self.users: dict[str, User] = {}
        self.malformed_keys: set[str] = set()
        self.rate_limit_status = 429
        self._queue_ids = itertools.count(1)
        self.add_user(DEMO_USER, DEMO_TOKEN, "VSM Demo")

    # What every fake provides.

    @property
    def label(self) -> str:
        return "Jenkins"

    def credentials(self) -> dict[str, str]:
        return {"username": DEMO_USER, "api_token": DEMO_TOKEN}

    def authenticate(self, request: Request) -> User:
        credentials = basic_credentials(request)
        if credentials is None:
            raise HttpError(
                html_error(
                    403,
                    "Authentication required: anonymous is missing the Overall/Read permission",
                    [
                        ("X-You-Are-Authenticated-As", "anonymous"),
                        ("X-Required-Permission", "hudson.model.Hudson.Read"),
                    ],
                )
            )
        username, token = credentials
        user = self.users.get(username)
        if user is None or user.token != token:
            raise JenkinsError(401, f"Invalid password/token for user: {username}")
        return user

    def error_response(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
        return html_error(status, message, headers)

    def rate_limited_response(self, retry_after_seconds: int) -> Response:
        """Core Jenkins has no rate limits; a proxy's 429, or Jenkins' 503 while it starts."""
        message = "Too many requests" if self.rate_limit_status == 429 else "Jenkins is getting ready to work"
        return html_error(self.rate_limit_status, message, [("Retry-After", str(retry_after_seconds))])

    # Programmatic API ---------------------------------------------------------------------------------

    @locked
    def add_user(self, username: str, token: str, full_name: str | None = None) -> User:
        user = User(username, token, full_name or username)
        self.users[username] = user
        return user

    @locked
    def add_folder(self, path: str, kind: str = "folder") -> str:
        if kind not in FOLDER_CLASSES:
            raise ValueError(f"a folder kind is one of {sorted(FOLDER_CLASSES)}, not {kind!r}")
        return self._node(path, kind, create=True).full_name

    @locked
    def add_job(self, path: str, kind: str = "freestyle") -> str:
        if kind not in JOB_CLASSES:
            raise ValueError(f"a job kind is one of {sorted(JOB_CLASSES)}, not {kind!r}")
        return self._node(path, kind, create=True).full_name

    @locked
    def add_build(
        self,
        job: str,
        *,
        started: datetime | None = None,
        duration: timedelta | int = 0,
        result: str | None = "SUCCESS",
        building: bool = False,
        commits: Iterable[str | dict[str, Any]] = (),
        revision: str | None = None,
        branch: str = "main",
        remote_url: str = DEFAULT_REMOTE,
        parameters: dict[str, Any] | None = None,
        upstream: tuple[str, int] | None = None,
        user: str | None = None,
        number: int | None = None,
    ) -> str:
        """A build of `job` (created as a freestyle job if missing); returns its key ``"<job> #<n>"``.

        `duration` is a timedelta or milliseconds; a building build has no result and duration 0.
        """
        node = self._job(job, create=True)
        if result is not None and result not in RESULTS:
            raise ValueError(f"a result is one of {RESULTS}, not {result!r}")
        number = node.next_number if number is None else int(number)
        if number in node.builds:
            raise ValueError(f"{node.full_name} #{number} already exists")
        started_ms = to_ms(started or self.now())
        duration_ms = duration if isinstance(duration, int) else int(duration.total_seconds() * 1000)
        shas = [self._commit(commit, started_ms, index) for index, commit in enumerate(commits)]
        build = Build(
            number=number,
            started_ms=started_ms,
            duration_ms=0 if building else duration_ms,
            result=None if building else result,
            building=building,
            queue_id=next(self._queue_ids),
            commits=shas,
            revision=revision or (shas[-1]["commitId"] if shas else None),
            branch=branch,
            remote_urls=[remote_url] if remote_url else [],
            parameters=dict(parameters or {}),
            causes=self._causes(upstream, user),
        )
        node.builds[number] = build
        node.next_number = max(node.next_number, number + 1)
        return f"{node.full_name} #{number}"

    @locked
    def finish_build(
        self, job: str, number: int, result: str = "SUCCESS", at: datetime | None = None
    ) -> None:
        build = self._build(job, number)
        if not build.building:
            raise ValueError(f"{job} #{number} is not building")
        build.building, build.result = False, result
        build.duration_ms = max(0, to_ms(at or self.now()) - build.started_ms)

    @locked
    def delete_build(self, job: str, number: int) -> None:
        node = self._job(job)
        node.builds.pop(int(number), None)
        self.malformed_keys.discard(f"{node.full_name} #{number}")

    @locked
    def malformed(self, key: str) -> None:
        """From now on render build `key` ("job #n") broken: ``timestamp`` "not-a-timestamp"."""
        job, _, number = key.rpartition(" #")
        self._build(job, int(number))
        self.malformed_keys.add(f"{self._job(job).full_name} #{int(number)}")

    @locked
    def rate_limit(self, count: int, retry_after: int = 2, status: int = 429) -> None:
        """The next `count` requests answer `status` (429 from a proxy, or 503) with Retry-After."""
        if status not in (429, 503):
            raise ValueError("a rate limit answers 429 or 503")
        super().rate_limit(count, retry_after)
        self.rate_limit_status = status

    @locked
    def clear_faults(self) -> None:
        super().clear_faults()
        self.malformed_keys.clear()
        self.rate_limit_status = 429

    def configure_faults(self, settings: dict[str, Any]) -> None:
        if "rate_limit" in settings:
            limit = settings["rate_limit"]
            settings = {key: value for key, value in settings.items() if key != "rate_limit"}
            super().configure_faults(settings)
            self.rate_limit(
                int(limit["count"]), int(limit.get("retry_after", 2)), int(limit.get("status", 429))
            )
        else:
            super().configure_faults(settings)
        for key in settings.get("malformed", ()):
            self.malformed(key)

    def stats(self) -> dict[str, Any]:
        jobs = list(self._all_jobs(self.root))
        return {
            **super().stats(),
            "jobs": len(jobs),
            "builds": sum(len(job.builds) for job in jobs),
            "malformed": sorted(self.malformed_keys),
        }

    # State helpers ------------------------------------------------------------------------------------

    def _node(self, path: str, kind: str | None = None, create: bool = False) -> Node:
        names = [name for name in path.split("/") if name]
        if not names and kind is not None:
            raise ValueError("a job or folder needs a name")
        node = self.root
        for index, name in enumerate(names):
            last = index == len(names) - 1
            child = node.children.get(name)
            if child is None:
                if not create:
                    raise JenkinsError(404, f"Not Found: {path}")
                if node.is_job:
                    raise ValueError(f"{node.full_name} is a job, not a folder")
                child = Node(name, kind if last and kind else "folder", node)
                node.children[name] = child
            elif last and kind is not None and create and child.kind != kind:
                raise ValueError(f"{child.full_name} already exists as a {child.kind}")
            node = child
        return node

    def _job(self, path: str, create: bool = False) -> Node:
        if create and not self._exists(path):
            return self._node(path, "freestyle", create=True)
        node = self._node(path)
        if not node.is_job:
            raise JenkinsError(404, f"{path} is not a job")
        return node

    def _exists(self, path: str) -> bool:
        try:
            self._node(path)
        except JenkinsError:
            return False
        return True

    def _build(self, job: str, number: int) -> Build:
        build = self._job(job).builds.get(int(number))
        if build is None:
            raise JenkinsError(404, f"Not Found: {job} #{number}")
        return build

    def _all_jobs(self, node: Node) -> Iterable[Node]:
        for child in node.children.values():
            if child.is_job:
                yield child
            else:
                yield from self._all_jobs(child)

    def _commit(self, commit: str | dict[str, Any], started_ms: int, index: int) -> dict[str, Any]:
        spec = {"id": commit} if isinstance(commit, str) else dict(commit)
        sha = str(spec["id"])
        at_ms = spec.get("timestamp")
        at_ms = to_ms(at_ms) if isinstance(at_ms, datetime) else at_ms or started_ms - 60_000 * (index + 1)
        author = spec.get("author") or "VSM Demo"
        message = spec.get("message") or f"Change {sha[:7]}"
        moment = EPOCH + timedelta(milliseconds=at_ms)
        return {
            "_class": "hudson.plugins.git.GitChangeSet",
            "affectedPaths": list(spec.get("paths") or ["README.md"]),
            "commitId": sha,
            "timestamp": at_ms,
            "author": {"absoluteUrl": f"/user/{quote(author.lower().replace(' ', '.'))}", "fullName": author},
            "authorEmail": spec.get("email") or "demo@vsm.example",
            "comment": message + "\n",
            "date": f"{moment:%Y-%m-%d %H:%M:%S} +0000",
            "id": sha,
            "msg": message.splitlines()[0] if message else "",
            "paths": [{"editType": "edit", "file": path} for path in spec.get("paths") or ["README.md"]],
        }

    def _causes(self, upstream: tuple[str, int] | None, user: str | None) -> list[dict[str, Any]]:
        if upstream is not None:
            project, number = upstream
            project = "/".join(name for name in project.split("/") if name)
            path = "".join(f"job/{quote(name, safe='')}/" for name in project.split("/"))
            return [
                {
                    "_class": "hudson.model.Cause$UpstreamCause",
                    "shortDescription": f'Started by upstream project "{project}" build number {number}',
                    "upstreamBuild": int(number),
                    "upstreamProject": project,
                    "upstreamUrl": path,
                }
            ]
        if user is not None:
            known = self.users.get(user)
            return [
                {
                    "_class": "hudson.model.Cause$UserIdCause",
                    "shortDescription": f"Started by user {known.full_name if known else user}",
                    "userId": user,
                    "userName": known.full_name if known else user,
                }
            ]
        return [
            {
                "_class": "hudson.triggers.SCMTrigger$SCMTriggerCause",
                "shortDescription": "Started by an SCM change",
            }
        ]

    # Representations (full; lazy where large) ---------------------------------------------------------

    def _build_json(self, job: Node, build: Build, base: str) -> dict[str, Any]:
        freestyle = job.kind == "freestyle"
        build_class = JOB_CLASSES[job.kind][1]
        actions: list[dict[str, Any]] = [{"_class": "hudson.model.CauseAction", "causes": build.causes}]
        if build.parameters:
            actions.append(
                {
                    "_class": "hudson.model.ParametersAction",
                    "parameters": [
                        {
                            "_class": "hudson.model.BooleanParameterValue"
                            if isinstance(value, bool)
                            else "hudson.model.StringParameterValue",
                            "name": name,
                            "value": value,
                        }
                        for name, value in build.parameters.items()
                    ],
                }
            )
        if not freestyle:
            actions += [{"_class": "jenkins.scm.api.SCMRevisionAction"}, {}]
        if build.revision:
            ref = f"refs/remotes/origin/{build.branch}" if freestyle else build.branch
            revision = {"SHA1": build.revision, "branch": [{"SHA1": build.revision, "name": ref}]}
            actions.append(
                {
                    "_class": "hudson.plugins.git.util.BuildData",
                    "buildsByBranchName": {
                        ref: {
                            "_class": "hudson.plugins.git.util.Build",
                            "buildNumber": build.number,
                            "buildResult": None,
                            "marked": revision,
                            "revision": revision,
                        }
                    },
                    "lastBuiltRevision": revision,
                    "remoteUrls": list(build.remote_urls),
                    "scmName": "",
                }
            )
        actions += [{}, {"_class": "org.jenkinsci.plugins.displayurlapi.actions.RunDisplayAction"}]
        change_set = {
            "_class": "hudson.plugins.git.GitChangeSetList"
            if build.commits
            else "hudson.scm.EmptyChangeLogSet",
            "items": [dict(commit) for commit in build.commits],
            "kind": "git" if build.commits else None,
        }
        key = f"{job.full_name} #{build.number}"
        display = " » ".join(job.full_name.split("/"))
        finished = [b.duration_ms for b in job.newest_first() if not b.building][:3]
        data: dict[str, Any] = {
            "_class": build_class,
            "actions": actions,
            "artifacts": [],
            "building": build.building,
            "description": None,
            "displayName": f"#{build.number}",
            "duration": build.duration_ms,
            "estimatedDuration": sum(finished) // len(finished) if finished else -1,
            "executor": {
                "_class": "hudson.model.OneOffExecutor" if not freestyle else "hudson.model.Executor"
            }
            if build.building
            else None,
            "fullDisplayName": f"{display} #{build.number}",
            "id": str(build.number),
            "keepLog": False,
            "number": build.number,
            "queueId": build.queue_id,
            "result": build.result,
            "timestamp": build.started_ms,
            "url": f"{base}/{job.path}{build.number}/",
        }
        if freestyle:
            data.update({"builtOn": "", "changeSet": change_set, "culprits": []})
        else:
            data.update(
                {
                    "changeSets": [change_set] if build.commits else [],
                    "culprits": [],
                    "inProgress": build.building,
                    "nextBuild": None,
                    "previousBuild": None,
                }
            )
        if key in self.malformed_keys:
            data["timestamp"] = "not-a-timestamp"
        return data

    def _color(self, job: Node) -> str:
        builds = job.newest_first()
        if not builds:
            return "notbuilt"
        last_done = next((b for b in builds if not b.building), None)
        color = COLORS.get(last_done.result or "", "notbuilt") if last_done else "notbuilt"
        return f"{color}_anime" if builds[0].building else color

    def _item_json(self, node: Node, base: str) -> dict[str, Any]:
        url = f"{base}/{node.path}"
        if node.kind == "root":
            return {
                "_class": "hudson.model.Hudson",
                "assignedLabels": [{"name": "built-in"}],
                "mode": "NORMAL",
                "nodeDescription": "the Jenkins controller's built-in node",
                "nodeName": "",
                "numExecutors": 2,
                "description": None,
                "jobs": [functools.partial(self._item_json, child, base) for child in node.children.values()],
                "overallLoad": {},
                "primaryView": {"_class": "hudson.model.AllView", "name": "all", "url": f"{base}/"},
                "quietingDown": False,
                "slaveAgentPort": -1,
                "unlabeledLoad": {"_class": "jenkins.model.UnlabeledLoadStatistics"},
                "url": f"{base}/",
                "useCrumbs": True,
                "useSecurity": True,
                "views": [{"_class": "hudson.model.AllView", "name": "all", "url": f"{base}/"}],
            }
        common = {
            "actions": [{}, {"_class": "org.jenkinsci.plugins.displayurlapi.actions.JobDisplayAction"}],
            "description": None,
            "displayName": node.name,
            "displayNameOrNull": None,
            "fullDisplayName": " » ".join(node.full_name.split("/")),
            "fullName": node.full_name,
            "name": node.name,
            "url": url,
        }
        if not node.is_job:
            return {
                "_class": FOLDER_CLASSES[node.kind],
                **common,
                "healthReport": [],
                "jobs": [functools.partial(self._item_json, child, base) for child in node.children.values()],
                "primaryView": {"_class": "hudson.model.AllView", "name": "All", "url": url},
                "views": [{"_class": "hudson.model.AllView", "name": "All", "url": url}],
            }
        builds = node.newest_first()
        lazy = [functools.partial(self._build_json, node, build, base) for build in builds]

        def newest(predicate: Callable[[Build], bool]) -> Any:
            for build, render in zip(builds, lazy, strict=True):
                if predicate(build):
                    return render
            return None

        return {
            "_class": JOB_CLASSES[node.kind][0],
            **common,
            "buildable": True,
            "builds": lazy[:BUILDS_LIMIT],
            "color": self._color(node),
            "firstBuild": lazy[-1] if lazy else None,
            "healthReport": [],
            "inQueue": False,
            "keepDependencies": False,
            "lastBuild": lazy[0] if lazy else None,
            "lastCompletedBuild": newest(lambda b: not b.building),
            "lastFailedBuild": newest(lambda b: b.result == "FAILURE"),
            "lastStableBuild": newest(lambda b: b.result == "SUCCESS"),
            "lastSuccessfulBuild": newest(lambda b: b.result in ("SUCCESS", "UNSTABLE")),
            "lastUnstableBuild": newest(lambda b: b.result == "UNSTABLE"),
            "lastUnsuccessfulBuild": newest(lambda b: b.result not in (None, "SUCCESS")),
            "nextBuildNumber": node.next_number,
            "property": [],
            "queueItem": None,
            "concurrentBuild": node.kind == "pipeline",
            "resumeBlocked": False,
            "allBuilds": lazy,
        }

    # HTTP handlers ------------------------------------------------------------------------------------

    def _answer(self, data: dict[str, Any], request: Request, default_tree: str | None) -> Response:
        tree_text = request.arg("tree")
        try:
            if tree_text:
                body = apply_tree(data, parse_tree(tree_text))
            elif default_tree:
                body = apply_tree(data, parse_tree(default_tree))
            else:
                body = _everything(data)
        except TreeError as error:
            raise JenkinsError(400, str(error)) from None
        return json_response(body, headers=[("X-Jenkins", VERSION)])

    def _path_node(self, request: Request) -> Node:
        names = [part for part in request.params["path"].split("/") if part][1::2]
        return self._node("/".join(names)) if names else self.root

    def _http_item(self, request: Request) -> Response:
        node = self._path_node(request)
        kind = "root" if node.kind == "root" else ("job" if node.is_job else "folder")
        data = self._item_json(node, request.base_url)
        if not request.arg("tree"):
            data.pop("allBuilds", None)  # not part of the default answer
        return self._answer(data, request, DEFAULT_TREES[kind])

    def _http_build(self, request: Request) -> Response:
        node = self._path_node(request)
        if not node.is_job:
            raise JenkinsError(404, f"Not Found: {request.path}")
        build = node.builds.get(int(request.params["number"]))
        if build is None:
            raise JenkinsError(404, f"Not Found: {request.path}")
        return self._answer(self._build_json(node, build, request.base_url), request, None)

    def _http_me(self, request: Request) -> Response:
        user: User = request.user
        data = {
            "_class": "hudson.model.User",
            "absoluteUrl": f"{request.base_url}/user/{quote(user.id)}",
            "description": None,
            "fullName": user.full_name,
            "id": user.id,
            "property": [],
        }
        return self._answer(data, request, None)

    def _http_crumb(self, request: Request) -> Response:
        data = {
            "_class": "hudson.security.csrf.DefaultCrumbIssuer",
            "crumb": "0123456789abcdef0123456789abcdef",
            "crumbRequestField": "Jenkins-Crumb",
        }
        return self._answer(data, request, None)

    # Control endpoints (fake-only) --------------------------------------------------------------------

    def _control_user(self, request: Request) -> Response:
        body = request.json_object()
        user = self.add_user(_required(body, "username"), _required(body, "token"), body.get("full_name"))
        return json_response({"id": user.id}, 201)

    def _control_folder(self, request: Request) -> Response:
        body = request.json_object()
        try:
            name = self.add_folder(_required(body, "path"), body.get("kind") or "folder")
        except ValueError as error:
            raise InvalidRequestBody(str(error)) from None
        return json_response({"fullName": name}, 201)

    def _control_job(self, request: Request) -> Response:
        body = request.json_object()
        try:
            name = self.add_job(_required(body, "path"), body.get("kind") or "freestyle")
        except ValueError as error:
            raise InvalidRequestBody(str(error)) from None
        return json_response({"fullName": name}, 201)

    def _control_build(self, request: Request) -> Response:
        body = request.json_object()
        upstream = body.get("upstream")
        try:
            key = self.add_build(
                _required(body, "job"),
                started=_instant(body.get("started"), "started"),
                duration=int(body.get("duration_ms") or 0),
                result=body.get("result", "SUCCESS"),
                building=bool(body.get("building")),
                commits=body.get("commits") or (),
                revision=body.get("revision"),
                branch=body.get("branch") or "main",
                parameters=body.get("parameters"),
                upstream=(_required(upstream, "project"), int(_required(upstream, "build")))
                if upstream
                else None,
                user=body.get("user"),
                number=body.get("number"),
            )
        except (TypeError, ValueError) as error:
            raise InvalidRequestBody(str(error)) from None
        job, _, number = key.rpartition(" #")
        return json_response(
            {"key": key, "number": int(number), "url": f"{request.base_url}/{self._job(job).path}{number}/"},
            201,
        )

    def _control_finish(self, request: Request) -> Response:
        body = request.json_object()
        try:
            self.finish_build(
                _required(body, "job"),
                int(_required(body, "number")),
                body.get("result") or "SUCCESS",
                _instant(body.get("at"), "at"),
            )
        except (TypeError, ValueError) as error:
            raise InvalidRequestBody(str(error)) from None
        return json_response({"finished": True})


def _instant(text: Any, name: str) -> datetime | None:
    if text in (None, ""):
        return None
    try:
        instant = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise InvalidRequestBody(
            f"'{name}' must be an ISO 8601 instant with an offset, not {text!r}"
        ) from None
    if instant.tzinfo is None:
        raise InvalidRequestBody(f"'{name}' needs an offset, e.g. 2026-03-01T10:30:00+00:00")
    return instant


def _required(body: Any, name: str) -> Any:
    if not isinstance(body, dict) or body.get(name) in (None, ""):
        raise InvalidRequestBody(f"'{name}' is required.")
    return body[name]
