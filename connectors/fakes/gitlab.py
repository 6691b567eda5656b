"""A faithful fake of the GitLab REST API v4 (one instance, many projects), for tests and the demo.

Shapes follow GitLab's documented and recorded JSON (DevLake raw tables of gitlab.com; see
connectors-reference.md §3): issues, merge requests, commits, pipelines, deployments,
``resource_state_events``, ``resource_label_events`` and issue links. Timestamps are UTC with
milliseconds (``2024-05-01T13:00:00.000Z``); commits keep their author's offset
(``2019-03-13T22:53:34.000+08:00``), as recorded.

Auth
    ``PRIVATE-TOKEN: <token>`` or ``Authorization: Bearer <token>``; anything else answers
    ``401 {"message": "401 Unauthorized"}``.

Endpoints (under ``/api/v4``; ``{id}`` is a numeric project id or its URL-encoded path)
    ``GET user``, ``GET projects/{id}``;
    ``GET|POST projects/{id}/issues``, ``GET|PUT projects/{id}/issues/{iid}``,
    ``GET projects/{id}/issues/{iid}/resource_state_events``, ``.../resource_label_events``,
    ``GET|POST projects/{id}/issues/{iid}/links``;
    ``GET projects/{id}/merge_requests``, ``GET .../merge_requests/{iid}``,
    ``GET .../merge_requests/{iid}/resource_state_events``, ``GET .../merge_requests/{iid}/commits``;
    ``GET projects/{id}/repository/commits`` (``since``, ``until``, ``ref_name``, ``all``; newest
    first; no ``x-total``), ``GET .../repository/commits/{sha}``;
    ``GET projects/{id}/pipelines`` (``updated_after``/``updated_before``, ``order_by``
    id|status|ref|updated_at|user_id, ``sort``, ``status``, ``ref``, ``sha``), ``GET .../pipelines/{id}``;
    ``GET projects/{id}/deployments`` (``updated_after`` only with ``order_by=updated_at``, as GitLab
    demands), ``GET .../deployments/{id}``.

Lists
    Offset paging: ``page``/``per_page`` (default 20, at most 100), headers ``x-page``,
    ``x-per-page``, ``x-next-page`` and ``x-prev-page`` (empty at the ends), ``x-total`` and
    ``x-total-pages`` (left out above 10,000 results, and always for commits, as GitLab does), and
    ``Link`` with ``next``/``prev``/``first`` and ``last`` (only when there is a total). Sorting by
    ``updated_at`` or ``created_at`` breaks ties by id, so items sharing one instant across a page
    boundary are neither skipped nor repeated. ``updated_after`` keeps items updated at or after the
    instant for issues, merge requests and deployments, and strictly after it for pipelines
    (GitLab's finders differ; [unverified] beyond the documentation's wording).

History
    Every state change (close, reopen, merge) is a resource state event; every label added or removed
    a resource label event. Adding a scoped label (``workflow::Doing``) removes the other labels of
    its scope, as GitLab does. State and label changes, edits and issue links bump ``updated_at``
    (GitLab touches an issue with the system note each of them writes).

Rate limits
    ``429`` with ``Retry-After``, ``RateLimit-Limit``, ``RateLimit-Observed``, ``RateLimit-Remaining``,
    ``RateLimit-Reset`` (epoch seconds), ``RateLimit-ResetTime`` (HTTP date), ``RateLimit-Name``, and
    the plain-text body ``Retry later``; ``rate_limit(..., headers=False)`` sends none of the headers
    (GitLab omits them on some 429s).

Programmatic API (tests and the demo generator; no HTTP needed)
    ``add_user``, ``add_project``, ``add_issue`` (backdated, with state and label events),
    ``add_merge_request`` (with commits and state events), ``add_commit``, ``add_pipeline``,
    ``add_deployment``, ``close``, ``reopen``, ``merge``, ``add_label``, ``remove_label``, ``edit``,
    ``link_issues``, ``set_pipeline_status``; faults ``rate_limit``, ``fail``, ``slow``,
    ``malformed``, ``clear_faults``; ``requests`` and ``writes``; ``now`` is the clock for changes
    made without an explicit instant.

Control endpoints: FAKE-ONLY, never on a real GitLab. No credentials; never faulted or counted.
    POST /_fake/reset
    POST /_fake/faults           {"rate_limit": {"count", "retry_after"?, "headers"?}, "fail": {...},
                                  "slow": {...}, "malformed": ["group/project#1"], "clear": true}
    GET  /_fake/stats            request counters, writes, pending faults, item counts
    POST /_fake/clock            {"now": "2026-03-01T10:30:00+00:00"} freezes the clock; null frees it
    POST /_fake/users            {"username", "token", "name"?}
    POST /_fake/projects         {"path", "name"?, "default_branch"?}
    POST /_fake/issues           {"project", "title", "description"?, "labels"?, "created"?, "updated"?,
                                  "author"?, "issue_type"?, "state_events"?: [{"at", "state", "author"?}],
                                  "label_events"?: [{"at", "action", "label", "author"?}]} -> 201
    POST /_fake/merge_requests   {"project", "title", "source_branch", "target_branch"?,
                                  "description"?, "commits"?: [sha], "created"?, "updated"?,
                                  "state_events"?: [...], "merge_commit_sha"?} -> 201
    POST /_fake/commits          {"project", "message", "sha"?, "committed"?, "authored"?,
                                  "author_name"?, "author_email"?, "parent_ids"?, "ref"?} -> 201
    POST /_fake/pipelines        {"project", "sha", "ref", "status"?, "created"?, "started"?,
                                  "finished"?, "updated"?, "source"?} -> 201
    POST /_fake/deployments      {"project", "environment", "pipeline", "status"?, "created"?,
                                  "finished"?, "updated"?} -> 201
    POST /_fake/state_events     {"reference": "group/project#1" or "group/project!1", "state", "at"?}
    POST /_fake/label_events     {"reference", "action": "add"|"remove", "label", "at"?}
    POST /_fake/issue_links      {"source", "target", "link_type"?, "at"?}
Instants in control bodies are ISO 8601 with an offset.
"""

from __future__ import annotations

import email.utils
import hashlib
import itertools
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from connectors.fakes.wsgi import (
    CONTROL_PREFIX,
    FakeApp,
    HttpError,
    InvalidRequestBody,
    Request,
    Response,
    bearer_token,
    json_response,
    locked,
)

API = "/api/v4"
DEMO_USERNAME = "vsm-demo"
DEMO_TOKEN = "glpat-fake-gitlab-token"  # noqa: S105 (a published demo credential of the fake)
DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100
TOTAL_HEADERS_LIMIT = 10_000
ISSUE_STATES = ("opened", "closed")
MR_STATES = ("opened", "closed", "merged", "locked")
STATE_EVENT_STATES = ("opened", "closed", "reopened", "merged", "locked")
PIPELINE_STATUSES = (
    "created",
    "waiting_for_resource",
    "preparing",
    "pending",
    "running",
    "success",
    "failed",
    "canceled",
    "skipped",
    "manual",
    "scheduled",
)
DEPLOYMENT_STATUSES = ("created", "running", "success", "failed", "canceled", "blocked")
ISSUE_TYPES = ("issue", "incident", "test_case", "task")
LINK_TYPES = ("relates_to", "blocks", "is_blocked_by")
INVERSE_LINK_TYPE = {"relates_to": "relates_to", "blocks": "is_blocked_by", "is_blocked_by": "blocks"}
SCOPED_LABEL = "::"

P = r"(?P<project>.+?)"  # a project id or its (decoded) path: WSGI hands us %2F as "/"


class GitLabError(HttpError):
    """GitLab's error body: ``{"message": ...}`` (a string, or field -> messages on validation), or
    ``{"error": ...}`` for a bad parameter. Raised by the programmatic API too."""

    def __init__(self, status: int, message: Any = None, *, error: str | None = None):
        body = {"error": error} if error is not None else {"message": message}
        super().__init__(json_response(body, status))
        self.args = (str(error if error is not None else message),)


def not_found(what: str) -> GitLabError:
    return GitLabError(404, f"404 {what} Not Found")


@dataclass
class User:
    id: int
    username: str
    name: str
    token: str


@dataclass
class Project:
    id: int
    path: str  # path_with_namespace
    name: str
    default_branch: str
    created: datetime
    counters: dict[str, itertools.count] = field(default_factory=dict)

    def next_iid(self, kind: str) -> int:
        return next(self.counters.setdefault(kind, itertools.count(1)))


@dataclass
class StateEvent:
    id: int
    user: User
    created: datetime
    state: str


@dataclass
class LabelEvent:
    id: int
    user: User
    created: datetime
    action: str  # add | remove
    label: str


@dataclass
class Issue:
    id: int
    iid: int
    project: Project
    title: str
    description: str
    state: str
    author: User
    created: datetime
    updated: datetime
    issue_type: str = "issue"
    labels: list[str] = field(default_factory=list)
    assignees: list[User] = field(default_factory=list)
    due_date: str | None = None
    closed_at: datetime | None = None
    closed_by: User | None = None
    state_events: list[StateEvent] = field(default_factory=list)
    label_events: list[LabelEvent] = field(default_factory=list)

    @property
    def reference(self) -> str:
        return f"{self.project.path}#{self.iid}"


@dataclass
class MergeRequest:
    id: int
    iid: int
    project: Project
    title: str
    description: str
    state: str
    author: User
    created: datetime
    updated: datetime
    source_branch: str
    target_branch: str
    commits: list[str] = field(default_factory=list)  # SHAs, oldest first
    labels: list[str] = field(default_factory=list)
    merged_at: datetime | None = None
    merged_by: User | None = None
    merge_commit_sha: str | None = None
    closed_at: datetime | None = None
    closed_by: User | None = None
    state_events: list[StateEvent] = field(default_factory=list)

    @property
    def reference(self) -> str:
        return f"{self.project.path}!{self.iid}"


@dataclass
class Commit:
    sha: str
    project: Project
    message: str
    author_name: str
    author_email: str
    authored: datetime  # with the author's offset
    committed: datetime
    parent_ids: list[str]
    refs: set[str]

    @property
    def title(self) -> str:
        return self.message.split("\n", 1)[0]


@dataclass
class Pipeline:
    id: int
    iid: int
    project: Project
    sha: str
    ref: str
    status: str
    source: str
    user: User
    created: datetime
    updated: datetime
    started: datetime | None = None
    finished: datetime | None = None


@dataclass
class Deployment:
    id: int
    iid: int
    project: Project
    environment: tuple[int, str]
    pipeline: Pipeline
    job_id: int
    status: str
    user: User
    created: datetime
    updated: datetime
    started: datetime | None = None
    finished: datetime | None = None


@dataclass
class IssueLink:
    id: int
    source: Issue
    target: Issue
    link_type: str  # from source's side
    created: datetime


def to_gitlab_instant(value: datetime) -> datetime:
    """UTC at GitLab's rendered millisecond precision; naive datetimes are refused."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"Expected an aware datetime (with tzinfo), got {value!r}")
    return value.astimezone(UTC).replace(microsecond=value.microsecond // 1000 * 1000)


def format_instant(value: datetime | None) -> str | None:
    """``2024-05-01T13:00:00.000Z``."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"


def format_git_instant(value: datetime) -> str:
    """A commit date with its own offset: ``2019-03-13T22:53:34.000+08:00``."""
    offset = value.strftime("%z") or "+0000"
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}{offset[:3]}:{offset[3:]}"


def parse_query_instant(text: str | None, name: str) -> datetime | None:
    if text is None or text == "":
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise GitLabError(400, error=f"{name} is invalid") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _control_instant(body: dict[str, Any], name: str) -> datetime | None:
    text = body.get(name)
    if text in (None, ""):
        return None
    try:
        value = datetime.fromisoformat(text)
    except (TypeError, ValueError) as error:
        raise InvalidRequestBody(
            f"'{name}' must be an ISO 8601 instant with an offset, not {text!r}"
        ) from error
    if value.tzinfo is None:
        raise InvalidRequestBody(f"'{name}' needs an offset, e.g. 2026-03-01T10:30:00+00:00.")
    return value


def _required(body: Any, name: str) -> Any:
    if not isinstance(body, dict) or body.get(name) in (None, ""):
        raise InvalidRequestBody(f"'{name}' is required.")
    return body[name]


def _labels_param(value: Any) -> list[str]:
    """GitLab takes labels as a comma-separated string (or an array)."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(label).strip() for label in value if str(label).strip()]
    return [label.strip() for label in str(value).split(",") if label.strip()]


class FakeGitLab(FakeApp):
    """An in-memory GitLab instance speaking REST API v4 (see the module docstring)."""

    def __init__(self, now: Callable[[], datetime] | None = None) -> None:
        super().__init__(now)
        control = self.control.add
        control("POST", rf"{CONTROL_PREFIX}/users", self._control_add_user, "users")
        control("POST", rf"{CONTROL_PREFIX}/projects", self._control_add_project, "projects")
        control("POST", rf"{CONTROL_PREFIX}/issues", self._control_add_issue, "issues")
        control("POST", rf"{CONTROL_PREFIX}/merge_requests", self._control_add_mr, "merge_requests")
        control("POST", rf"{CONTROL_PREFIX}/commits", self._control_add_commit, "commits")
        control("POST", rf"{CONTROL_PREFIX}/pipelines", self._control_add_pipeline, "pipelines")
        control("POST", rf"{CONTROL_PREFIX}/deployments", self._control_add_deployment, "deployments")
        control("POST", rf"{CONTROL_PREFIX}/state_events", self._control_state_event, "state_events")
        control("POST", rf"{CONTROL_PREFIX}/label_events", self._control_label_event, "label_events")
        control("POST", rf"{CONTROL_PREFIX}/issue_links", self._control_issue_link, "issue_links")
        self.reset()

    @locked
    def reset(self) -> None:
        """An empty instance with only the demo user."""
        super().reset()
        self.users: list[User] = []
        self.projects: dict[str, Project] = {}  # by path
        self.issues: dict[int, Issue] = {}
        self.merge_requests: dict[int, MergeRequest] = {}
        self.commits: dict[str, Commit] = {}
        self.pipelines: dict[int, Pipeline] = {}
        self.deployments: dict[int, Deployment] = {}
        self.issue_links: list[IssueLink] = []
        self.malformed_references: set[str] = set()
        self.rate_limit_headers = True
        self._ids = {
            kind: itertools.count(start)
            for kind, start in {
                "user": 1001,
                "project": 278964,
                "issue": 22097949,
                "merge_request": 31550001,
                "pipeline": 457474837,
                "deployment": 13426753,
                "job": 176919795,
                "event": 142,
                "link": 84,
                "environment": 585636,
            }.items()
        }
        self.environments: dict[tuple[int, str], int] = {}
        self.default_user = self.add_user(DEMO_USERNAME, DEMO_TOKEN, name="VSM Demo")
        self._build_routes()

    @property
    def label(self) -> str:
        return "GitLab"

    def credentials(self) -> dict[str, str]:
        return {"token": self.default_user.token}

    def _next_id(self, kind: str) -> int:
        return next(self._ids[kind])

    def _clock(self) -> datetime:
        return to_gitlab_instant(self.now())

    def _at(self, at: datetime | None) -> datetime:
        return to_gitlab_instant(at) if at is not None else self._clock()

    # Auth and errors ---------------------------------------------------------------------------------

    def authenticate(self, request: Request) -> User:
        token = request.headers.get("private-token") or bearer_token(request)
        for user in self.users:
            if token and token == user.token:
                return user
        raise GitLabError(401, "401 Unauthorized")

    def error_response(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
        if status == 404 and message.startswith("No such resource"):
            message = "404 Not Found"
        return json_response({"message": message}, status, headers)

    def rate_limited_response(self, retry_after_seconds: int) -> Response:
        headers = []
        if self.rate_limit_headers:
            reset = self.now() + timedelta(seconds=retry_after_seconds)
            headers = [
                ("Retry-After", str(retry_after_seconds)),
                ("RateLimit-Name", "throttle_authenticated_api"),
                ("RateLimit-Limit", "2000"),
                ("RateLimit-Observed", "2001"),
                ("RateLimit-Remaining", "0"),
                ("RateLimit-Reset", str(math.ceil(reset.timestamp()))),
                ("RateLimit-ResetTime", email.utils.format_datetime(reset.astimezone(UTC), usegmt=True)),
            ]
        return Response(429, b"Retry later\n", [("Content-Type", "text/plain"), *headers])

    # Faults ------------------------------------------------------------------------------------------

    @locked
    def rate_limit(self, count: int, retry_after: int = 2, headers: bool = True) -> None:
        """The next `count` requests answer 429; without `headers`, bare (as some GitLab 429s are)."""
        super().rate_limit(count, retry_after)
        self.rate_limit_headers = headers

    def configure_faults(self, settings: dict[str, Any]) -> None:
        super().configure_faults(settings)
        if "rate_limit" in settings:
            self.rate_limit_headers = bool(settings["rate_limit"].get("headers", True))
        for reference in settings.get("malformed", ()):
            self.malformed(reference)

    @locked
    def malformed(self, reference: str) -> None:
        """From now on render the issue or MR (``group/project#1``, ``group/project!1``) broken:
        ``created_at`` "not-a-date" and no ``state``."""
        self._issuable(reference)
        self.malformed_references.add(reference)

    @locked
    def clear_faults(self) -> None:
        super().clear_faults()
        self.malformed_references.clear()
        self.rate_limit_headers = True

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "projects": len(self.projects),
            "issues": len(self.issues),
            "merge_requests": len(self.merge_requests),
            "commits": len(self.commits),
            "pipelines": len(self.pipelines),
            "deployments": len(self.deployments),
            "malformed": sorted(self.malformed_references),
        }

    # Programmatic API --------------------------------------------------------------------------------

    @locked
    def add_user(self, username: str, token: str, name: str | None = None) -> User:
        if any(user.username == username for user in self.users):
            raise GitLabError(409, {"username": ["has already been taken"]})
        user = User(self._next_id("user"), username, name or username, token)
        self.users.append(user)
        return user

    @locked
    def add_project(
        self,
        path: str,
        name: str | None = None,
        default_branch: str = "main",
        created: datetime | None = None,
    ) -> Project:
        """A project at `path` ("group/sub/project")."""
        if not re.fullmatch(r"[\w.-]+(/[\w.-]+)+", path) or path in self.projects:
            raise GitLabError(400, {"path": ["is invalid or already taken"]})
        project = Project(
            self._next_id("project"), path, name or path.rsplit("/", 1)[1], default_branch, self._at(created)
        )
        self.projects[path] = project
        return project

    @locked
    def add_issue(
        self,
        project: str | Project,
        title: str,
        description: str = "",
        labels: Sequence[str] = (),
        created: datetime | None = None,
        updated: datetime | None = None,
        author: User | str | None = None,
        issue_type: str = "issue",
        state_events: Iterable[Sequence[Any]] = (),
        label_events: Iterable[Sequence[Any]] = (),
        assignees: Sequence[User | str] = (),
    ) -> Issue:
        """An issue, possibly backdated. `state_events` are ``(at, "closed"|"reopened"[, author])``;
        `label_events` ``(at, "add"|"remove", label[, author])``; `labels` are there from creation.
        `updated` defaults to the last event (or creation); a later one may be given."""
        record = self._project(project)
        if issue_type not in ISSUE_TYPES:
            raise GitLabError(400, error="issue_type does not have a valid value")
        at = self._at(created)
        issue = Issue(
            id=self._next_id("issue"),
            iid=record.next_iid("issue"),
            project=record,
            title=title,
            description=description,
            state="opened",
            author=self._user(author),
            created=at,
            updated=at,
            issue_type=issue_type,
            assignees=[self._user(user) for user in assignees],
        )
        self.issues[issue.id] = issue
        for label in labels:
            self._apply_label(issue, "add", label, at, issue.author, record_event=True)
        self._replay(issue, state_events, label_events)
        if updated is not None:
            issue.updated = max(issue.updated, self._at(updated))
        return issue

    @locked
    def add_merge_request(
        self,
        project: str | Project,
        title: str,
        source_branch: str,
        target_branch: str | None = None,
        description: str = "",
        commits: Sequence[str] = (),
        created: datetime | None = None,
        updated: datetime | None = None,
        author: User | str | None = None,
        state_events: Iterable[Sequence[Any]] = (),
        merge_commit_sha: str | None = None,
        labels: Sequence[str] = (),
    ) -> MergeRequest:
        """A merge request with `commits` (SHAs added with `add_commit`), possibly backdated;
        `state_events` ``(at, "closed"|"reopened"|"merged"[, author])``."""
        record = self._project(project)
        for sha in commits:
            self._commit(sha)
        at = self._at(created)
        mr = MergeRequest(
            id=self._next_id("merge_request"),
            iid=record.next_iid("merge_request"),
            project=record,
            title=title,
            description=description,
            state="opened",
            author=self._user(author),
            created=at,
            updated=at,
            source_branch=source_branch,
            target_branch=target_branch or record.default_branch,
            commits=list(commits),
            labels=list(labels),
        )
        self.merge_requests[mr.id] = mr
        self._replay(mr, state_events, ())
        if merge_commit_sha and mr.state == "merged":
            mr.merge_commit_sha = merge_commit_sha
        if updated is not None:
            mr.updated = max(mr.updated, self._at(updated))
        return mr

    @locked
    def add_commit(
        self,
        project: str | Project,
        message: str,
        committed: datetime | None = None,
        authored: datetime | None = None,
        author_name: str = "VSM Demo",
        author_email: str = "demo@vsm.example",
        sha: str | None = None,
        parent_ids: Sequence[str] = (),
        ref: str | None = None,
    ) -> Commit:
        """A commit on `ref` (the default branch); dates keep their offsets."""
        record = self._project(project)
        committed_at = committed if committed is not None else self.now()
        if committed_at.tzinfo is None:
            raise ValueError("committed needs a time zone")
        committed_at = committed_at.replace(microsecond=0)  # git dates are whole seconds
        authored_at = (authored or committed_at).replace(microsecond=0)
        sha = (
            sha
            or hashlib.sha1(  # noqa: S324 - a commit id, not security
                f"{record.path}|{message}|{committed_at.isoformat()}|{len(self.commits)}".encode()
            ).hexdigest()
        )
        if not re.fullmatch(r"[0-9a-f]{40}", sha) or sha in self.commits:
            raise GitLabError(400, error=f"sha {sha!r} is invalid or already taken")
        commit = Commit(
            sha=sha,
            project=record,
            message=message,
            author_name=author_name,
            author_email=author_email,
            authored=authored_at,
            committed=committed_at,
            parent_ids=list(parent_ids),
            refs={ref or record.default_branch},
        )
        self.commits[sha] = commit
        return commit

    @locked
    def add_pipeline(
        self,
        project: str | Project,
        sha: str,
        ref: str,
        status: str = "success",
        created: datetime | None = None,
        started: datetime | None = None,
        finished: datetime | None = None,
        updated: datetime | None = None,
        source: str = "push",
        user: User | str | None = None,
    ) -> Pipeline:
        record = self._project(project)
        if status not in PIPELINE_STATUSES:
            raise GitLabError(400, error="status does not have a valid value")
        created_at = self._at(created)
        started_at = to_gitlab_instant(started) if started else None
        finished_at = to_gitlab_instant(finished) if finished else None
        instants = [created_at, started_at, finished_at]
        updated_at = self._at(updated) if updated else max(at for at in instants if at is not None)
        pipeline = Pipeline(
            id=self._next_id("pipeline"),
            iid=record.next_iid("pipeline"),
            project=record,
            sha=sha,
            ref=ref,
            status=status,
            source=source,
            user=self._user(user),
            created=created_at,
            updated=updated_at,
            started=started_at,
            finished=finished_at,
        )
        self.pipelines[pipeline.id] = pipeline
        return pipeline

    @locked
    def set_pipeline_status(self, pipeline_id: int, status: str, at: datetime | None = None) -> Pipeline:
        """Move a pipeline on (running sets `started_at`, a finished status `finished_at`)."""
        pipeline = self._pipeline(pipeline_id)
        if status not in PIPELINE_STATUSES:
            raise GitLabError(400, error="status does not have a valid value")
        instant = self._at(at)
        if status == "running" and pipeline.started is None:
            pipeline.started = instant
        if status in ("success", "failed", "canceled", "skipped"):
            pipeline.finished = instant
        pipeline.status = status
        pipeline.updated = max(pipeline.updated, instant)
        return pipeline

    @locked
    def add_deployment(
        self,
        project: str | Project,
        environment: str,
        pipeline: int | Pipeline,
        status: str = "success",
        created: datetime | None = None,
        started: datetime | None = None,
        finished: datetime | None = None,
        updated: datetime | None = None,
        user: User | str | None = None,
    ) -> Deployment:
        """A deployment of `pipeline`'s commit to `environment`, run by a job of that pipeline."""
        record = self._project(project)
        run = pipeline if isinstance(pipeline, Pipeline) else self._pipeline(pipeline)
        if status not in DEPLOYMENT_STATUSES:
            raise GitLabError(400, error="status does not have a valid value")
        environment_id = self.environments.setdefault((record.id, environment), self._next_id("environment"))
        created_at = self._at(created)
        started_at = to_gitlab_instant(started) if started else None
        finished_at = to_gitlab_instant(finished) if finished else None
        if finished_at is None and status in ("success", "failed", "canceled"):
            finished_at = created_at
        instants = [created_at, started_at, finished_at]
        deployment = Deployment(
            id=self._next_id("deployment"),
            iid=record.next_iid("deployment"),
            project=record,
            environment=(environment_id, environment),
            pipeline=run,
            job_id=self._next_id("job"),
            status=status,
            user=self._user(user),
            created=created_at,
            updated=self._at(updated) if updated else max(at for at in instants if at is not None),
            started=started_at,
            finished=finished_at,
        )
        self.deployments[deployment.id] = deployment
        return deployment

    @locked
    def close(self, reference: str, at: datetime | None = None, author: User | str | None = None) -> None:
        self._change_state(self._issuable(reference), "closed", self._at(at), self._user(author))

    @locked
    def reopen(self, reference: str, at: datetime | None = None, author: User | str | None = None) -> None:
        self._change_state(self._issuable(reference), "reopened", self._at(at), self._user(author))

    @locked
    def merge(
        self,
        reference: str,
        at: datetime | None = None,
        author: User | str | None = None,
        merge_commit_sha: str | None = None,
    ) -> None:
        mr = self._issuable(reference)
        if not isinstance(mr, MergeRequest):
            raise GitLabError(400, error="only merge requests merge")
        self._change_state(mr, "merged", self._at(at), self._user(author))
        mr.merge_commit_sha = merge_commit_sha

    @locked
    def add_label(self, reference: str, label: str, at: datetime | None = None, author=None) -> None:
        issuable = self._issuable(reference)
        self._apply_label(issuable, "add", label, self._at(at), self._user(author), record_event=True)

    @locked
    def remove_label(self, reference: str, label: str, at: datetime | None = None, author=None) -> None:
        issuable = self._issuable(reference)
        self._apply_label(issuable, "remove", label, self._at(at), self._user(author), record_event=True)

    @locked
    def edit(self, reference: str, at: datetime | None = None, **values: Any) -> None:
        """Set `title`, `description` or `due_date` of an issue or MR; bumps `updated_at`."""
        issuable = self._issuable(reference)
        for name, value in values.items():
            if name not in ("title", "description", "due_date"):
                raise GitLabError(400, error=f"{name} cannot be edited here")
            setattr(issuable, name, value)
        issuable.updated = max(issuable.updated, self._at(at))

    @locked
    def link_issues(
        self, source: str, target: str, link_type: str = "relates_to", at: datetime | None = None
    ) -> IssueLink:
        """Link two issues; both see it (the target with the inverse type) and both are touched."""
        source_issue, target_issue = self._issuable(source), self._issuable(target)
        if not isinstance(source_issue, Issue) or not isinstance(target_issue, Issue):
            raise GitLabError(400, error="only issues link")
        return self._link(source_issue, target_issue, link_type, self._at(at))

    # State helpers -----------------------------------------------------------------------------------

    def _project(self, reference: str | Project) -> Project:
        if isinstance(reference, Project):
            return reference
        reference = str(reference)
        project = self.projects.get(reference)
        if project is None and reference.isdigit():
            project = next((kept for kept in self.projects.values() if kept.id == int(reference)), None)
        if project is None:
            raise not_found("Project")
        return project

    def _user(self, reference: User | str | None) -> User:
        if reference is None:
            return self.default_user
        if isinstance(reference, User):
            return reference
        for user in self.users:
            if reference in (user.username, str(user.id)):
                return user
        raise not_found("User")

    def _commit(self, sha: str) -> Commit:
        commit = self.commits.get(sha)
        if commit is None:
            matches = [kept for key, kept in self.commits.items() if len(sha) >= 7 and key.startswith(sha)]
            if len(matches) != 1:
                raise not_found("Commit")
            commit = matches[0]
        return commit

    def _pipeline(self, pipeline_id: int | str) -> Pipeline:
        try:
            return self.pipelines[int(pipeline_id)]
        except (KeyError, ValueError):
            raise not_found("Pipeline") from None

    def _issuable(self, reference: str) -> Issue | MergeRequest:
        found = re.fullmatch(r"(?P<path>.+)(?P<sigil>[#!])(?P<iid>\d+)", reference or "")
        if found is None:
            raise not_found("Issue")
        project = self._project(found["path"])
        if found["sigil"] == "#":
            return self._issue(project, int(found["iid"]))
        return self._merge_request(project, int(found["iid"]))

    def _issue(self, project: Project, iid: int) -> Issue:
        for issue in self.issues.values():
            if issue.project is project and issue.iid == iid:
                return issue
        raise not_found("Issue")

    def _merge_request(self, project: Project, iid: int) -> MergeRequest:
        for mr in self.merge_requests.values():
            if mr.project is project and mr.iid == iid:
                return mr
        raise not_found("Merge Request")

    def _replay(self, issuable, state_events: Iterable[Sequence[Any]], label_events: Iterable[Sequence[Any]]):
        changes = [("state", to_gitlab_instant(at), state, None, rest) for at, state, *rest in state_events]
        changes += [
            ("label", to_gitlab_instant(at), action, label, rest) for at, action, label, *rest in label_events
        ]
        for kind, at, what, label, rest in sorted(changes, key=lambda change: change[1]):
            if at < issuable.created:
                raise ValueError("events cannot happen before the item's creation")
            author = self._user(rest[0] if rest else None)
            if kind == "state":
                self._change_state(issuable, what, at, author)
            else:
                self._apply_label(issuable, what, label, at, author, record_event=True)

    def _change_state(self, issuable: Issue | MergeRequest, state: str, at: datetime, author: User) -> None:
        allowed = {"closed", "reopened"} | (
            {"merged", "locked"} if isinstance(issuable, MergeRequest) else set()
        )
        if state not in allowed:
            raise GitLabError(400, error=f"state {state!r} is not valid here; use one of {sorted(allowed)}")
        new_state = "opened" if state == "reopened" else state
        if issuable.state == "merged":
            raise GitLabError(405, "405 Method Not Allowed")  # a merged MR stays merged
        if new_state == issuable.state:
            return  # GitLab records nothing for a no-op
        issuable.state = new_state
        issuable.state_events.append(StateEvent(self._next_id("event"), author, at, state))
        if state == "closed":
            issuable.closed_at, issuable.closed_by = at, author
        elif state == "reopened":
            issuable.closed_at, issuable.closed_by = None, None
        elif state == "merged":
            issuable.merged_at, issuable.merged_by = at, author
        issuable.updated = max(issuable.updated, at)

    def _apply_label(self, issuable, action: str, label: str, at: datetime, author: User, record_event: bool):
        if action not in ("add", "remove"):
            raise GitLabError(400, error="action must be add or remove")
        changes = []
        if action == "add" and label not in issuable.labels:
            if SCOPED_LABEL in label:  # a scoped label replaces its scope's other label
                scope = label.rsplit(SCOPED_LABEL, 1)[0]
                for other in [kept for kept in issuable.labels if kept.rsplit(SCOPED_LABEL, 1)[0] == scope]:
                    if SCOPED_LABEL in other:
                        issuable.labels.remove(other)
                        changes.append(("remove", other))
            issuable.labels.append(label)
            changes.append(("add", label))
        elif action == "remove" and label in issuable.labels:
            issuable.labels.remove(label)
            changes.append(("remove", label))
        if record_event and isinstance(issuable, Issue):
            for change_action, change_label in changes:
                issuable.label_events.append(
                    LabelEvent(self._next_id("event"), author, at, change_action, change_label)
                )
        if changes:
            issuable.updated = max(issuable.updated, at)

    def _link(self, source: Issue, target: Issue, link_type: str, at: datetime) -> IssueLink:
        if link_type not in LINK_TYPES:
            raise GitLabError(400, error="link_type does not have a valid value")
        if source is target:
            raise GitLabError(400, "Cannot link an issue to itself")
        for link in self.issue_links:
            if {link.source.id, link.target.id} == {source.id, target.id}:
                raise GitLabError(409, "Issue(s) already assigned")
        link = IssueLink(self._next_id("link"), source, target, link_type, at)
        self.issue_links.append(link)
        source.updated = max(source.updated, at)
        target.updated = max(target.updated, at)
        return link

    # Routes ------------------------------------------------------------------------------------------

    def _build_routes(self) -> None:
        add = self.router.add
        add("GET", rf"{API}/user", self._http_user, "user")
        add(
            "GET",
            rf"{API}/projects/{P}/issues/(?P<iid>\d+)/resource_state_events",
            self._http_issue_state_events,
            "issue/state_events",
        )
        add(
            "GET",
            rf"{API}/projects/{P}/issues/(?P<iid>\d+)/resource_label_events",
            self._http_issue_label_events,
            "issue/label_events",
        )
        add("GET", rf"{API}/projects/{P}/issues/(?P<iid>\d+)/links", self._http_issue_links, "issue/links")
        add(
            "POST", rf"{API}/projects/{P}/issues/(?P<iid>\d+)/links", self._http_add_issue_link, "issue/links"
        )
        add("GET", rf"{API}/projects/{P}/issues/(?P<iid>\d+)", self._http_issue, "issue")
        add("PUT", rf"{API}/projects/{P}/issues/(?P<iid>\d+)", self._http_update_issue, "issue")
        add("GET", rf"{API}/projects/{P}/issues", self._http_issues, "issues")
        add("POST", rf"{API}/projects/{P}/issues", self._http_create_issue, "issues")
        add(
            "GET",
            rf"{API}/projects/{P}/merge_requests/(?P<iid>\d+)/resource_state_events",
            self._http_mr_state_events,
            "merge_request/state_events",
        )
        add(
            "GET",
            rf"{API}/projects/{P}/merge_requests/(?P<iid>\d+)/commits",
            self._http_mr_commits,
            "merge_request/commits",
        )
        add(
            "GET",
            rf"{API}/projects/{P}/merge_requests/(?P<iid>\d+)",
            self._http_merge_request,
            "merge_request",
        )
        add("GET", rf"{API}/projects/{P}/merge_requests", self._http_merge_requests, "merge_requests")
        add(
            "GET",
            rf"{API}/projects/{P}/repository/commits/(?P<sha>[0-9a-f]{{7,40}})",
            self._http_commit,
            "commit",
        )
        add("GET", rf"{API}/projects/{P}/repository/commits", self._http_commits, "commits")
        add("GET", rf"{API}/projects/{P}/pipelines/(?P<pipeline_id>\d+)", self._http_pipeline, "pipeline")
        add("GET", rf"{API}/projects/{P}/pipelines", self._http_pipelines, "pipelines")
        add(
            "GET",
            rf"{API}/projects/{P}/deployments/(?P<deployment_id>\d+)",
            self._http_deployment,
            "deployment",
        )
        add("GET", rf"{API}/projects/{P}/deployments", self._http_deployments, "deployments")
        add("GET", rf"{API}/projects/{P}", self._http_project, "project")

    # Paging ------------------------------------------------------------------------------------------

    def _paged(
        self, request: Request, items: list[Any], render: Callable[[Any], Any], with_total: bool = True
    ) -> Response:
        per_page = self._int_param(request, "per_page", DEFAULT_PER_PAGE)
        per_page = DEFAULT_PER_PAGE if per_page < 1 else min(per_page, MAX_PER_PAGE)
        page = max(1, self._int_param(request, "page", 1))
        start = (page - 1) * per_page
        chunk = items[start : start + per_page]
        has_next = start + per_page < len(items)
        total_known = with_total and len(items) <= TOTAL_HEADERS_LIMIT
        total_pages = max(1, math.ceil(len(items) / per_page))
        headers = [
            ("x-page", str(page)),
            ("x-per-page", str(per_page)),
            ("x-next-page", str(page + 1) if has_next else ""),
            ("x-prev-page", str(page - 1) if page > 1 else ""),
        ]
        if total_known:
            headers += [("x-total", str(len(items))), ("x-total-pages", str(total_pages))]
        base = f"{request.base_url}{quote(request.path, safe='/')}"
        if "project" in request.params:  # GitLab's links carry the project id URL-encoded
            encoded = quote(request.params["project"], safe="")
            base = base.replace(
                f"/projects/{quote(request.params['project'], safe='/')}", f"/projects/{encoded}", 1
            )
        query = {
            name: values[-1] for name, values in request.query.items() if name not in ("page", "per_page")
        }

        def link(number: int, rel: str) -> str:
            return f'<{base}?{urlencode({**query, "page": number, "per_page": per_page})}>; rel="{rel}"'

        links = []
        if page > 1:
            links.append(link(page - 1, "prev"))
        if has_next:
            links.append(link(page + 1, "next"))
        links.append(link(1, "first"))
        if total_known:
            links.append(link(total_pages, "last"))
        headers.append(("Link", ", ".join(links)))
        return json_response([render(item) for item in chunk], 200, headers)

    @staticmethod
    def _int_param(request: Request, name: str, default: int) -> int:
        value = request.arg(name)
        if value in (None, ""):
            return default
        try:
            return int(value)
        except ValueError:
            raise GitLabError(400, error=f"{name} is invalid") from None

    def _filter_and_sort(
        self,
        request: Request,
        items: list[Any],
        *,
        orders: dict[str, Callable[[Any], Any]],
        default_order: str,
        default_sort: str,
        strict_after: bool = False,
    ) -> list[Any]:
        for name, keep in (
            ("updated_after", lambda item, at: item.updated > at if strict_after else item.updated >= at),
            ("updated_before", lambda item, at: item.updated <= at),
            ("created_after", lambda item, at: item.created >= at),
            ("created_before", lambda item, at: item.created <= at),
        ):
            instant = parse_query_instant(request.arg(name), name)
            if instant is not None:
                items = [item for item in items if keep(item, instant)]
        order_by = request.arg("order_by") or default_order
        sort = request.arg("sort") or default_sort
        if order_by not in orders:
            raise GitLabError(400, error="order_by does not have a valid value")
        if sort not in ("asc", "desc"):
            raise GitLabError(400, error="sort does not have a valid value")
        key = orders[order_by]
        return sorted(items, key=lambda item: (key(item), item.id), reverse=sort == "desc")

    # Users and projects ------------------------------------------------------------------------------

    def _user_json(self, user: User | None, request: Request) -> dict[str, Any] | None:
        if user is None:
            return None
        return {
            "id": user.id,
            "username": user.username,
            "name": user.name,
            "state": "active",
            "locked": False,
            "avatar_url": f"{request.base_url}/uploads/-/system/user/avatar/{user.id}/avatar.png",
            "web_url": f"{request.base_url}/{user.username}",
        }

    def _http_user(self, request: Request) -> Response:
        user = request.user
        return json_response(
            {**self._user_json(user, request), "bot": False, "public_email": "", "is_admin": False}
        )

    def _project_json(self, project: Project, request: Request) -> dict[str, Any]:
        namespace, _, path = project.path.rpartition("/")
        return {
            "id": project.id,
            "description": "",
            "name": project.name,
            "name_with_namespace": f"{namespace.replace('/', ' / ')} / {project.name}",
            "path": path,
            "path_with_namespace": project.path,
            "created_at": format_instant(project.created),
            "default_branch": project.default_branch,
            "tag_list": [],
            "topics": [],
            "ssh_url_to_repo": f"git@{request.base_url.split('//', 1)[-1]}:{project.path}.git",
            "http_url_to_repo": f"{request.base_url}/{project.path}.git",
            "web_url": f"{request.base_url}/{project.path}",
            "readme_url": f"{request.base_url}/{project.path}/-/blob/{project.default_branch}/README.md",
            "forks_count": 0,
            "avatar_url": None,
            "star_count": 0,
            "last_activity_at": format_instant(project.created),
            "namespace": {
                "id": project.id - 1,
                "name": namespace.rsplit("/", 1)[-1],
                "path": namespace.rsplit("/", 1)[-1],
                "kind": "group",
                "full_path": namespace,
                "parent_id": None,
                "avatar_url": None,
                "web_url": f"{request.base_url}/groups/{namespace}",
            },
        }

    def _http_project(self, request: Request) -> Response:
        return json_response(self._project_json(self._project(request.params["project"]), request))

    # Issues ------------------------------------------------------------------------------------------

    def _issue_json(self, issue: Issue, request: Request) -> dict[str, Any]:
        api = f"{request.base_url}{API}/projects/{issue.project.id}"
        body = {
            "id": issue.id,
            "iid": issue.iid,
            "project_id": issue.project.id,
            "title": issue.title,
            "description": issue.description,
            "state": issue.state,
            "created_at": format_instant(issue.created),
            "updated_at": format_instant(issue.updated),
            "closed_at": format_instant(issue.closed_at),
            "closed_by": self._user_json(issue.closed_by, request),
            "labels": list(issue.labels),
            "milestone": None,
            "assignees": [self._user_json(user, request) for user in issue.assignees],
            "author": self._user_json(issue.author, request),
            "type": issue.issue_type.upper(),
            "assignee": self._user_json(issue.assignees[0], request) if issue.assignees else None,
            "user_notes_count": 0,
            "merge_requests_count": 0,
            "upvotes": 0,
            "downvotes": 0,
            "due_date": issue.due_date,
            "confidential": False,
            "discussion_locked": None,
            "issue_type": issue.issue_type,
            "web_url": f"{request.base_url}/{issue.project.path}/-/issues/{issue.iid}",
            "time_stats": {
                "time_estimate": 0,
                "total_time_spent": 0,
                "human_time_estimate": None,
                "human_total_time_spent": None,
            },
            "task_completion_status": {"count": 0, "completed_count": 0},
            "weight": None,
            "blocking_issues_count": 0,
            "has_tasks": False,
            "_links": {
                "self": f"{api}/issues/{issue.iid}",
                "notes": f"{api}/issues/{issue.iid}/notes",
                "award_emoji": f"{api}/issues/{issue.iid}/award_emoji",
                "project": api,
                "closed_as_duplicate_of": None,
            },
            "references": {
                "short": f"#{issue.iid}",
                "relative": f"#{issue.iid}",
                "full": issue.reference,
            },
            "severity": "UNKNOWN",
            "moved_to_id": None,
            "service_desk_reply_to": None,
            "epic_iid": None,
            "epic": None,
            "iteration": None,
            "health_status": None,
        }
        return self._maybe_broken(body, issue.reference)

    def _maybe_broken(self, body: dict[str, Any], reference: str) -> dict[str, Any]:
        if reference in self.malformed_references:
            body = {**body, "created_at": "not-a-date"}
            body.pop("state", None)
        return body

    def _http_issues(self, request: Request) -> Response:
        project = self._project(request.params["project"])
        items = [issue for issue in self.issues.values() if issue.project is project]
        state = request.arg("state") or "all"
        if state not in ("opened", "closed", "all"):
            raise GitLabError(400, error="state does not have a valid value")
        if state != "all":
            items = [issue for issue in items if issue.state == state]
        iids = request.query.get("iids[]")
        if iids:
            items = [issue for issue in items if str(issue.iid) in iids]
        for label in _labels_param(request.arg("labels")):
            items = [issue for issue in items if label in issue.labels]
        items = self._filter_and_sort(
            request,
            items,
            orders={"created_at": lambda i: i.created, "updated_at": lambda i: i.updated},
            default_order="created_at",
            default_sort="desc",
        )
        return self._paged(request, items, lambda issue: self._issue_json(issue, request))

    def _request_issue(self, request: Request) -> Issue:
        return self._issue(self._project(request.params["project"]), int(request.params["iid"]))

    def _http_issue(self, request: Request) -> Response:
        return json_response(self._issue_json(self._request_issue(request), request))

    def _http_create_issue(self, request: Request) -> Response:
        project = self._project(request.params["project"])
        body = request.json_object()
        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            raise GitLabError(400, error="title is missing")
        if len(title) > 255:
            raise GitLabError(400, {"title": ["is too long (maximum is 255 characters)"]})
        issue_type = body.get("issue_type") or "issue"
        issue = self.add_issue(
            project,
            title,
            description=body.get("description") or "",
            labels=_labels_param(body.get("labels")),
            author=request.user,
            issue_type=issue_type,
            assignees=[self._user(str(user_id)) for user_id in body.get("assignee_ids") or []],
        )
        issue.due_date = body.get("due_date")
        return json_response(self._issue_json(issue, request), 201)

    def _http_update_issue(self, request: Request) -> Response:
        issue = self._request_issue(request)
        body = request.json_object()
        at = self._clock()
        known = {
            "title",
            "description",
            "labels",
            "add_labels",
            "remove_labels",
            "state_event",
            "assignee_ids",
            "due_date",
            "issue_type",
        }
        if not known & set(body):
            raise GitLabError(
                400, error=", ".join(sorted(known)) + " are missing, at least one parameter must be provided"
            )
        if "title" in body:
            if not isinstance(body["title"], str) or not body["title"].strip():
                raise GitLabError(400, {"title": ["can't be blank"]})
            issue.title = body["title"]
        if "description" in body:
            issue.description = body["description"] or ""
        if "due_date" in body:
            issue.due_date = body["due_date"]
        if "issue_type" in body:
            if body["issue_type"] not in ISSUE_TYPES:
                raise GitLabError(400, error="issue_type does not have a valid value")
            issue.issue_type = body["issue_type"]
        if "assignee_ids" in body:
            issue.assignees = [self._user(str(user_id)) for user_id in body["assignee_ids"] or []]
        if "labels" in body:
            wanted = _labels_param(body["labels"])
            for label in [kept for kept in issue.labels if kept not in wanted]:
                self._apply_label(issue, "remove", label, at, request.user, record_event=True)
            for label in wanted:
                self._apply_label(issue, "add", label, at, request.user, record_event=True)
        for label in _labels_param(body.get("remove_labels")):
            self._apply_label(issue, "remove", label, at, request.user, record_event=True)
        for label in _labels_param(body.get("add_labels")):
            self._apply_label(issue, "add", label, at, request.user, record_event=True)
        state_event = body.get("state_event")
        if state_event is not None:
            if state_event not in ("close", "reopen"):
                raise GitLabError(400, error="state_event does not have a valid value")
            self._change_state(issue, "closed" if state_event == "close" else "reopened", at, request.user)
        issue.updated = max(issue.updated, at)
        return json_response(self._issue_json(issue, request))

    def _state_event_json(self, event: StateEvent, resource_type: str, resource_id: int, request: Request):
        return {
            "id": event.id,
            "user": self._user_json(event.user, request),
            "created_at": format_instant(event.created),
            "resource_type": resource_type,
            "resource_id": resource_id,
            "state": event.state,
        }

    def _http_issue_state_events(self, request: Request) -> Response:
        issue = self._request_issue(request)
        return self._paged(
            request,
            issue.state_events,
            lambda event: self._state_event_json(event, "Issue", issue.id, request),
        )

    def _http_issue_label_events(self, request: Request) -> Response:
        issue = self._request_issue(request)

        def render(event: LabelEvent) -> dict[str, Any]:
            return {
                "id": event.id,
                "user": self._user_json(event.user, request),
                "created_at": format_instant(event.created),
                "resource_type": "Issue",
                "resource_id": issue.id,
                "label": {
                    "id": int(hashlib.sha1(event.label.encode()).hexdigest()[:7], 16),  # noqa: S324
                    "name": event.label,
                    "color": "#428BCA",
                    "description": None,
                },
                "action": event.action,
            }

        return self._paged(request, issue.label_events, render)

    def _http_issue_links(self, request: Request) -> Response:
        issue = self._request_issue(request)
        linked = []
        for link in self.issue_links:
            if link.source is issue:
                linked.append((link.target, link.link_type, link))
            elif link.target is issue:
                linked.append((link.source, INVERSE_LINK_TYPE[link.link_type], link))
        return json_response(  # not paginated in GitLab
            [
                {
                    **self._issue_json(other, request),
                    "issue_link_id": link.id,
                    "link_type": link_type,
                    "link_created_at": format_instant(link.created),
                    "link_updated_at": format_instant(link.created),
                }
                for other, link_type, link in linked
            ]
        )

    def _http_add_issue_link(self, request: Request) -> Response:
        issue = self._request_issue(request)
        body = request.json_object()
        target_project = body.get("target_project_id")
        target_iid = body.get("target_issue_iid")
        if target_project in (None, "") or target_iid in (None, ""):
            raise GitLabError(400, error="target_project_id, target_issue_iid are missing")
        try:
            target = self._issue(self._project(str(target_project)), int(target_iid))
        except ValueError:
            raise GitLabError(400, error="target_issue_iid is invalid") from None
        link = self._link(issue, target, body.get("link_type") or "relates_to", self._clock())
        return json_response(
            {
                "source_issue": self._issue_json(issue, request),
                "target_issue": self._issue_json(target, request),
                "link_type": link.link_type,
            },
            201,
        )

    # Merge requests ----------------------------------------------------------------------------------

    def _mr_json(self, mr: MergeRequest, request: Request) -> dict[str, Any]:
        head = mr.commits[-1] if mr.commits else None
        body = {
            "id": mr.id,
            "iid": mr.iid,
            "project_id": mr.project.id,
            "title": mr.title,
            "description": mr.description,
            "state": mr.state,
            "created_at": format_instant(mr.created),
            "updated_at": format_instant(mr.updated),
            "merged_by": self._user_json(mr.merged_by, request),
            "merge_user": self._user_json(mr.merged_by, request),
            "merged_at": format_instant(mr.merged_at),
            "closed_by": self._user_json(mr.closed_by, request),
            "closed_at": format_instant(mr.closed_at),
            "target_branch": mr.target_branch,
            "source_branch": mr.source_branch,
            "user_notes_count": 0,
            "upvotes": 0,
            "downvotes": 0,
            "author": self._user_json(mr.author, request),
            "assignees": [],
            "assignee": None,
            "reviewers": [],
            "source_project_id": mr.project.id,
            "target_project_id": mr.project.id,
            "labels": list(mr.labels),
            "draft": False,
            "work_in_progress": False,
            "milestone": None,
            "merge_when_pipeline_succeeds": False,
            "merge_status": "can_be_merged",
            "detailed_merge_status": "mergeable" if mr.state == "opened" else "not_open",
            "sha": head,
            "merge_commit_sha": mr.merge_commit_sha,
            "squash_commit_sha": None,
            "discussion_locked": None,
            "should_remove_source_branch": None,
            "force_remove_source_branch": True,
            "prepared_at": format_instant(mr.created),
            "reference": f"!{mr.iid}",
            "references": {"short": f"!{mr.iid}", "relative": f"!{mr.iid}", "full": mr.reference},
            "web_url": f"{request.base_url}/{mr.project.path}/-/merge_requests/{mr.iid}",
            "time_stats": {
                "time_estimate": 0,
                "total_time_spent": 0,
                "human_time_estimate": None,
                "human_total_time_spent": None,
            },
            "squash": False,
            "squash_on_merge": False,
            "task_completion_status": {"count": 0, "completed_count": 0},
            "has_conflicts": False,
            "blocking_discussions_resolved": True,
        }
        return self._maybe_broken(body, mr.reference)

    def _request_mr(self, request: Request) -> MergeRequest:
        return self._merge_request(self._project(request.params["project"]), int(request.params["iid"]))

    def _http_merge_requests(self, request: Request) -> Response:
        project = self._project(request.params["project"])
        items = [mr for mr in self.merge_requests.values() if mr.project is project]
        state = request.arg("state") or "all"
        if state not in (*MR_STATES, "all"):
            raise GitLabError(400, error="state does not have a valid value")
        if state != "all":
            items = [mr for mr in items if mr.state == state]
        items = self._filter_and_sort(
            request,
            items,
            orders={"created_at": lambda m: m.created, "updated_at": lambda m: m.updated},
            default_order="created_at",
            default_sort="desc",
        )
        return self._paged(request, items, lambda mr: self._mr_json(mr, request))

    def _http_merge_request(self, request: Request) -> Response:
        return json_response(self._mr_json(self._request_mr(request), request))

    def _http_mr_state_events(self, request: Request) -> Response:
        mr = self._request_mr(request)
        return self._paged(
            request,
            mr.state_events,
            lambda event: self._state_event_json(event, "MergeRequest", mr.id, request),
        )

    def _http_mr_commits(self, request: Request) -> Response:
        mr = self._request_mr(request)
        commits = [self.commits[sha] for sha in reversed(mr.commits)]  # newest first, as GitLab lists them
        return self._paged(request, commits, lambda commit: self._commit_json(commit, request))

    # Commits -----------------------------------------------------------------------------------------

    def _commit_json(self, commit: Commit, request: Request) -> dict[str, Any]:
        return {
            "id": commit.sha,
            "short_id": commit.sha[:8],
            "created_at": format_git_instant(commit.committed),
            "parent_ids": list(commit.parent_ids),
            "title": commit.title,
            "message": commit.message,
            "author_name": commit.author_name,
            "author_email": commit.author_email,
            "authored_date": format_git_instant(commit.authored),
            "committer_name": commit.author_name,
            "committer_email": commit.author_email,
            "committed_date": format_git_instant(commit.committed),
            "trailers": {},
            "extended_trailers": {},
            "web_url": f"{request.base_url}/{commit.project.path}/-/commit/{commit.sha}",
        }

    def _http_commits(self, request: Request) -> Response:
        project = self._project(request.params["project"])
        commits = [commit for commit in self.commits.values() if commit.project is project]
        include_all = (request.arg("all") or "").lower() == "true"
        if not include_all:
            ref = request.arg("ref_name") or project.default_branch
            commits = [commit for commit in commits if ref in commit.refs]
        since = parse_query_instant(request.arg("since"), "since")
        until = parse_query_instant(request.arg("until"), "until")
        if since is not None:
            commits = [commit for commit in commits if commit.committed >= since]
        if until is not None:
            commits = [commit for commit in commits if commit.committed <= until]
        commits.sort(key=lambda commit: commit.committed, reverse=True)  # git log order
        return self._paged(
            request, commits, lambda commit: self._commit_json(commit, request), with_total=False
        )

    def _http_commit(self, request: Request) -> Response:
        project = self._project(request.params["project"])
        commit = self._commit(request.params["sha"])
        if commit.project is not project:
            raise not_found("Commit")
        return json_response(
            {**self._commit_json(commit, request), "stats": {"additions": 1, "deletions": 0, "total": 1}}
        )

    # Pipelines ---------------------------------------------------------------------------------------

    def _pipeline_json(self, pipeline: Pipeline, request: Request) -> dict[str, Any]:
        return {
            "id": pipeline.id,
            "iid": pipeline.iid,
            "project_id": pipeline.project.id,
            "sha": pipeline.sha,
            "ref": pipeline.ref,
            "status": pipeline.status,
            "source": pipeline.source,
            "created_at": format_instant(pipeline.created),
            "updated_at": format_instant(pipeline.updated),
            "web_url": f"{request.base_url}/{pipeline.project.path}/-/pipelines/{pipeline.id}",
        }

    def _pipeline_detail_json(self, pipeline: Pipeline, request: Request) -> dict[str, Any]:
        duration = (
            (pipeline.finished - pipeline.started).total_seconds()
            if pipeline.finished and pipeline.started
            else None
        )
        queued = (pipeline.started - pipeline.created).total_seconds() if pipeline.started else None
        return {
            **self._pipeline_json(pipeline, request),
            "before_sha": "0000000000000000000000000000000000000000",
            "tag": False,
            "yaml_errors": None,
            "user": self._user_json(pipeline.user, request),
            "started_at": format_instant(pipeline.started),
            "finished_at": format_instant(pipeline.finished),
            "committed_at": None,
            "duration": int(duration) if duration is not None else None,
            "queued_duration": queued,
            "coverage": None,
            "detailed_status": {
                "icon": f"status_{pipeline.status}",
                "text": pipeline.status,
                "label": pipeline.status,
                "group": pipeline.status,
                "tooltip": pipeline.status,
                "has_details": True,
                "details_path": f"/{pipeline.project.path}/-/pipelines/{pipeline.id}",
                "illustration": None,
                "favicon": f"/assets/ci_favicons/favicon_status_{pipeline.status}.png",
            },
        }

    def _http_pipelines(self, request: Request) -> Response:
        project = self._project(request.params["project"])
        items = [pipeline for pipeline in self.pipelines.values() if pipeline.project is project]
        for name in ("status", "ref", "sha"):
            wanted = request.arg(name)
            if wanted:
                items = [pipeline for pipeline in items if getattr(pipeline, name) == wanted]
        items = self._filter_and_sort(
            request,
            items,
            orders={
                "id": lambda p: p.id,
                "status": lambda p: p.status,
                "ref": lambda p: p.ref,
                "updated_at": lambda p: p.updated,
                "user_id": lambda p: p.user.id,
            },
            default_order="id",
            default_sort="desc",
            strict_after=True,
        )
        return self._paged(request, items, lambda pipeline: self._pipeline_json(pipeline, request))

    def _http_pipeline(self, request: Request) -> Response:
        project = self._project(request.params["project"])
        pipeline = self._pipeline(request.params["pipeline_id"])
        if pipeline.project is not project:
            raise GitLabError(404, "404 Not found")
        return json_response(self._pipeline_detail_json(pipeline, request))

    # Deployments -------------------------------------------------------------------------------------

    def _deployment_json(self, deployment: Deployment, request: Request) -> dict[str, Any]:
        pipeline = deployment.pipeline
        project = deployment.project
        commit = self.commits.get(pipeline.sha)
        job_status = {"created": "created", "running": "running", "blocked": "manual"}.get(
            deployment.status, deployment.status
        )
        environment_id, environment_name = deployment.environment
        duration = (
            (deployment.finished - deployment.started).total_seconds()
            if deployment.finished and deployment.started
            else None
        )
        return {
            "id": deployment.id,
            "iid": deployment.iid,
            "ref": pipeline.ref,
            "sha": pipeline.sha,
            "created_at": format_instant(deployment.created),
            "updated_at": format_instant(deployment.updated),
            "user": self._user_json(deployment.user, request),
            "environment": {
                "id": environment_id,
                "name": environment_name,
                "slug": re.sub(r"[^a-z0-9]+", "-", environment_name.lower()).strip("-"),
                "external_url": None,
                "created_at": format_instant(project.created),
                "updated_at": format_instant(project.created),
            },
            "deployable": {
                "id": deployment.job_id,
                "status": job_status,
                "stage": "deploy",
                "name": f"deploy_{environment_name}",
                "ref": pipeline.ref,
                "tag": False,
                "coverage": None,
                "allow_failure": False,
                "created_at": format_instant(deployment.created),
                "started_at": format_instant(deployment.started),
                "finished_at": format_instant(deployment.finished),
                "erased_at": None,
                "duration": duration,
                "queued_duration": None,
                "user": self._user_json(deployment.user, request),
                "commit": self._commit_json(commit, request) if commit else None,
                "pipeline": self._pipeline_json(pipeline, request),
                "web_url": f"{request.base_url}/{project.path}/-/jobs/{deployment.job_id}",
                "project": {"ci_job_token_scope_enabled": False},
                "artifacts": [],
                "runner": None,
                "artifacts_expire_at": None,
                "tag_list": [],
            },
            "status": deployment.status,
        }

    def _http_deployments(self, request: Request) -> Response:
        project = self._project(request.params["project"])
        items = [deployment for deployment in self.deployments.values() if deployment.project is project]
        has_updated_filter = request.arg("updated_after") or request.arg("updated_before")
        if has_updated_filter and request.arg("order_by") != "updated_at":
            raise GitLabError(
                400, "`updated_at` filter and `updated_at` sorting must be paired"
            )  # as GitLab's DeploymentsFinder insists
        environment = request.arg("environment")
        if environment:
            items = [deployment for deployment in items if deployment.environment[1] == environment]
        status = request.arg("status")
        if status:
            if status not in DEPLOYMENT_STATUSES:
                raise GitLabError(400, error="status does not have a valid value")
            items = [deployment for deployment in items if deployment.status == status]
        items = self._filter_and_sort(
            request,
            items,
            orders={
                "id": lambda d: d.id,
                "iid": lambda d: d.iid,
                "created_at": lambda d: d.created,
                "updated_at": lambda d: d.updated,
                "finished_at": lambda d: d.finished or d.updated,
                "ref": lambda d: d.pipeline.ref,
            },
            default_order="id",
            default_sort="asc",
        )
        return self._paged(request, items, lambda deployment: self._deployment_json(deployment, request))

    def _http_deployment(self, request: Request) -> Response:
        project = self._project(request.params["project"])
        deployment = self.deployments.get(int(request.params["deployment_id"]))
        if deployment is None or deployment.project is not project:
            raise not_found("Deployment")
        return json_response(self._deployment_json(deployment, request))

    # Control endpoints (fake-only) -------------------------------------------------------------------

    def _control_add_user(self, request: Request) -> Response:
        body = request.json_object()
        user = self.add_user(_required(body, "username"), _required(body, "token"), body.get("name"))
        return json_response({"id": user.id, "username": user.username}, 201)

    def _control_add_project(self, request: Request) -> Response:
        body = request.json_object()
        project = self.add_project(
            _required(body, "path"),
            name=body.get("name"),
            default_branch=body.get("default_branch") or "main",
            created=_control_instant(body, "created"),
        )
        return json_response({"id": project.id, "path_with_namespace": project.path}, 201)

    @staticmethod
    def _events(body: dict[str, Any], name: str, fields: Sequence[str]) -> list[tuple]:
        events = []
        for event in body.get(name) or ():
            at = _control_instant(event, "at")
            if at is None:
                raise InvalidRequestBody(f"each of '{name}' needs 'at'")
            events.append((at, *(_required(event, field_name) for field_name in fields), event.get("author")))
        return events

    def _control_add_issue(self, request: Request) -> Response:
        body = request.json_object()
        issue = self.add_issue(
            _required(body, "project"),
            _required(body, "title"),
            description=body.get("description") or "",
            labels=_labels_param(body.get("labels")),
            created=_control_instant(body, "created"),
            updated=_control_instant(body, "updated"),
            author=body.get("author"),
            issue_type=body.get("issue_type") or "issue",
            state_events=self._events(body, "state_events", ("state",)),
            label_events=self._events(body, "label_events", ("action", "label")),
        )
        return json_response({"id": issue.id, "iid": issue.iid, "reference": issue.reference}, 201)

    def _control_add_mr(self, request: Request) -> Response:
        body = request.json_object()
        mr = self.add_merge_request(
            _required(body, "project"),
            _required(body, "title"),
            _required(body, "source_branch"),
            target_branch=body.get("target_branch"),
            description=body.get("description") or "",
            commits=body.get("commits") or (),
            created=_control_instant(body, "created"),
            updated=_control_instant(body, "updated"),
            author=body.get("author"),
            state_events=self._events(body, "state_events", ("state",)),
            merge_commit_sha=body.get("merge_commit_sha"),
        )
        return json_response({"id": mr.id, "iid": mr.iid, "reference": mr.reference}, 201)

    def _control_add_commit(self, request: Request) -> Response:
        body = request.json_object()
        commit = self.add_commit(
            _required(body, "project"),
            _required(body, "message"),
            committed=_control_instant(body, "committed"),
            authored=_control_instant(body, "authored"),
            author_name=body.get("author_name") or "VSM Demo",
            author_email=body.get("author_email") or "demo@vsm.example",
            sha=body.get("sha"),
            parent_ids=body.get("parent_ids") or (),
            ref=body.get("ref"),
        )
        return json_response({"id": commit.sha}, 201)

    def _control_add_pipeline(self, request: Request) -> Response:
        body = request.json_object()
        pipeline = self.add_pipeline(
            _required(body, "project"),
            _required(body, "sha"),
            _required(body, "ref"),
            status=body.get("status") or "success",
            created=_control_instant(body, "created"),
            started=_control_instant(body, "started"),
            finished=_control_instant(body, "finished"),
            updated=_control_instant(body, "updated"),
            source=body.get("source") or "push",
        )
        return json_response({"id": pipeline.id, "iid": pipeline.iid}, 201)

    def _control_add_deployment(self, request: Request) -> Response:
        body = request.json_object()
        deployment = self.add_deployment(
            _required(body, "project"),
            _required(body, "environment"),
            _required(body, "pipeline"),
            status=body.get("status") or "success",
            created=_control_instant(body, "created"),
            started=_control_instant(body, "started"),
            finished=_control_instant(body, "finished"),
            updated=_control_instant(body, "updated"),
        )
        return json_response({"id": deployment.id, "iid": deployment.iid}, 201)

    def _control_state_event(self, request: Request) -> Response:
        body = request.json_object()
        issuable = self._issuable(_required(body, "reference"))
        state = _required(body, "state")
        self._change_state(
            issuable, state, self._at(_control_instant(body, "at")), self._user(body.get("author"))
        )
        return json_response({"state": issuable.state})

    def _control_label_event(self, request: Request) -> Response:
        body = request.json_object()
        issuable = self._issuable(_required(body, "reference"))
        self._apply_label(
            issuable,
            _required(body, "action"),
            _required(body, "label"),
            self._at(_control_instant(body, "at")),
            self._user(body.get("author")),
            record_event=True,
        )
        return json_response({"labels": list(issuable.labels)})

    def _control_issue_link(self, request: Request) -> Response:
        body = request.json_object()
        link = self.link_issues(
            _required(body, "source"),
            _required(body, "target"),
            body.get("link_type") or "relates_to",
            _control_instant(body, "at"),
        )
        return json_response({"issue_link_id": link.id}, 201)
