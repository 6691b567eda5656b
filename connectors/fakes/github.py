"""A faithful fake of the GitHub REST API (v3) for tests and the demo: repositories with issues, pull
requests, commits and releases.

Shapes are copied from recorded payloads (DevLake raw tables, connectors-reference.md §2 and §9): the
issue shape (a pull request carries ``pull_request`` with ``merged_at``), the pull shape (``head`` /
``base`` with ``ref`` and ``sha``, ``merge_commit_sha``), commits (``commit.author/committer.date``,
``parents``), issue events (``closed``, ``reopened``, ``merged``, ``labeled``...), releases. Timestamps
are UTC to the second, ``2017-10-10T16:00:00Z``; ``node_id`` values are GitHub's legacy global ids
(base64 of ``05:Issue{id}``, ``011:PullRequest{id}``...), the same for a pull request in both shapes.

Endpoints (``/repos/{owner}/{repo}/...`` or ``/repositories/{id}/...``, which the ``Link`` headers use)
    GET  /user, /rate_limit, /repos/{o}/{r}
    GET  /issues?state=open|closed|all&since=&sort=created|updated&direction=asc|desc&per_page=&page=
         (``since`` keeps ``updated_at >= since``; ties ordered by number; per_page at most 100)
    GET  /issues/{n}, /issues/{n}/events;  POST /issues (201);  PATCH /issues/{n} (200)
    GET  /pulls?state=&sort=&direction=, /pulls/{n}, /pulls/{n}/commits (at most 250 commits)
    GET  /commits?sha=&since=&until=&per_page=&page= (newest committer date first; ``sha``: only the
         history of that ref, 404 when unknown), /commits/{ref}
    GET  /compare/{base}...{head}[?per_page=&page=] (the commits reachable from head and not from base,
         oldest first, with ``status``, ``ahead_by``, ``behind_by``, ``total_commits``, ``base_commit``,
         ``merge_base_commit``; unpaged it lists at most the newest 250, paged it carries a Link header;
         404 for an unknown ref or no common ancestor)
    GET  /releases (newest first), /releases/tags/{tag}
    Refs: a commit SHA (or a unique prefix of 4+), a published release's tag, or the default branch (its
    newest commit). Commits form a graph through ``parents``; a release's tag is fixed when it is made:
    its ``target_commitish`` SHA, or the default branch's newest commit made at or before its creation.
    Paging: ``Link: <...page=2>; rel="next", <...page=N>; rel="last"`` (plus first/prev), absent when
    there is one page. Every answer carries ``x-ratelimit-limit/remaining/used/reset/resource``.

Auth: ``Authorization: Bearer <token>`` or ``token <token>``; a wrong token answers 401 "Bad
credentials" everywhere; no credentials answer 401 on /user and 404 on the (private) repositories.
Rate limit fault: 403 (or 429) with ``x-ratelimit-remaining: 0`` and ``x-ratelimit-reset`` (epoch
seconds of the real clock), and ``retry-after`` on 429 only (a secondary limit).

Programmatic API (tests and the demo generator; instants are aware datetimes, stored to the second)
    ``add_user``, ``add_repo``, ``add_issue`` (backdated, with ``events=[(at, "closed"|"reopened"), ...]``),
    ``add_pull`` (``commits=[sha, ...]``, events may include "merged"), ``add_commit``, ``add_release``,
    ``close``, ``reopen``, ``merge``, ``edit``, ``malformed``; faults ``rate_limit``, ``fail``, ``slow``,
    ``clear_faults``; ``requests`` (a Counter keyed "METHOD endpoint") and ``writes``; ``now`` is the
    clock for changes made without an explicit instant.

Control endpoints: FAKE-ONLY, never on a real GitHub. No credentials; never faulted or counted.
    POST /_fake/reset       {}: the demo user and no repositories
    POST /_fake/faults      {"rate_limit": {"count", "retry_after"?, "status"?: 403|429},
                             "fail": {"count", "status"?}, "slow": {"count", "seconds"},
                             "malformed": ["owner/repo#1", "<sha>"], "clear": true}
    GET  /_fake/stats       request counters, writes, pending faults, item counts
    POST /_fake/clock       {"now": "2026-03-01T10:30:00+00:00"} freezes the clock; {"now": null} frees it
    POST /_fake/users       {"login", "token", "name"?}
    POST /_fake/repos       {"full_name", "default_branch"?}
    POST /_fake/issues      {"repo", "title", "body"?, "user"?, "labels"?, "created"?, "updated"?,
                             "events"?: [{"at", "event", "actor"?}]}                  -> 201 {"number", "key"}
    POST /_fake/pulls       same plus {"head"?, "base"?, "commits"?: [sha], "draft"?} -> 201 {"number", "key"}
    POST /_fake/commits     {"repo", "message", "author"?, "at"?, "authored"?, "parents"?, "sha"?}
                                                                                      -> 201 {"sha"}
    POST /_fake/releases    {"repo", "tag_name", "target_commitish"?, "name"?, "body"?, "created"?,
                             "published"?, "draft"?, "prerelease"?}       -> 201 {"id", "tag_name"}
    POST /_fake/events      {"key", "event": "closed"|"reopened"|"merged", "at"?, "actor"?}
Instants in control bodies are ISO 8601 with an offset.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import itertools
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote, urlencode

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

DEMO_LOGIN = "vsm-demo"
DEMO_TOKEN = "fake-github-token"  # noqa: S105 (a published demo credential of the fake)
DOCS = "https://docs.github.com/rest"
SUPPORTED_API_VERSIONS = ("2022-11-28", "2026-03-10")
RATE_LIMIT = 5000
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
PULL_COMMITS_CAP = 250
COMPARE_CAP = 250  # an unpaged comparison lists at most this many commits, the newest last
MALFORMED_TIME = "not-a-date"
NAME = r"[A-Za-z0-9_.-]+"
REPO_PATH = rf"/(?:repos/(?P<owner>{NAME})/(?P<repo>{NAME})|repositories/(?P<repo_id>\d+))"
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?")


class GitHubError(HttpError):
    """GitHub's error body ``{"message", "documentation_url", "status"}`` (plus ``errors`` on 422)."""

    def __init__(
        self,
        status: int,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ):
        body: dict[str, Any] = {"message": message}
        if errors:
            body["errors"] = errors
        body.update({"documentation_url": DOCS, "status": str(status)})
        super().__init__(json_response(body, status, headers))
        self.args = (message,)


def node_id(type_name: str, identity: Any) -> str:
    """GitHub's legacy global id: base64 of "0<len(type)>:<Type><id>", e.g. 05:Issue346842831."""
    return base64.b64encode(f"0{len(type_name)}:{type_name}{identity}".encode()).decode()


def format_time(instant: datetime | None) -> str | None:
    return None if instant is None else f"{instant.astimezone(UTC):%Y-%m-%dT%H:%M:%S}Z"


def to_github_instant(value: datetime) -> datetime:
    """UTC to the second; naive datetimes are refused, their zone being a guess."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"Expected an aware datetime (with tzinfo), got {value!r}")
    return value.astimezone(UTC).replace(microsecond=0)


def parse_query_time(text: str, name: str) -> datetime:
    """An ISO 8601 query parameter as GitHub reads it (a missing zone is UTC)."""
    if not TIMESTAMP.fullmatch(text or ""):
        raise GitHubError(
            422, "Validation Failed", [{"resource": "Search", "field": name, "code": "invalid"}]
        )
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=parsed.tzinfo or UTC).astimezone(UTC)


@dataclass
class User:
    id: int
    login: str
    token: str
    name: str


@dataclass
class Event:
    id: int
    event: str
    actor: User
    at: datetime
    commit_id: str | None = None
    state_reason: str | None = None


@dataclass
class Commit:
    sha: str
    message: str
    author: User | None
    author_name: str
    author_email: str
    authored: datetime
    committed: datetime
    parents: list[str]


@dataclass
class Release:
    id: int
    tag_name: str
    target_commitish: str
    name: str
    body: str
    author: User
    created: datetime
    published: datetime | None
    draft: bool
    prerelease: bool
    tag_sha: str | None = None  # the commit the tag points at, fixed when the release is made


@dataclass
class Issue:
    """An issue, or a pull request when `pull_id` is set (they share the number sequence)."""

    id: int
    number: int
    title: str
    body: str
    user: User
    created: datetime
    updated: datetime
    labels: list[str] = field(default_factory=list)
    assignees: list[User] = field(default_factory=list)
    state: str = "open"
    state_reason: str | None = None
    closed_at: datetime | None = None
    closed_by: User | None = None
    events: list[Event] = field(default_factory=list)
    pull_id: int | None = None
    head: str = ""
    base: str = ""
    commits: list[str] = field(default_factory=list)
    merged_at: datetime | None = None
    merged_by: User | None = None
    merge_commit_sha: str | None = None
    draft: bool = False

    @property
    def is_pull(self) -> bool:
        return self.pull_id is not None


@dataclass
class Repo:
    id: int
    owner: User
    name: str
    default_branch: str
    created: datetime
    issues: dict[int, Issue] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    releases: list[Release] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.owner.login}/{self.name}"


class FakeGitHub(FakeApp):
    """An in-memory github.com speaking REST v3 (see the module docstring)."""

    def __init__(self, now: Callable[[], datetime] | None = None) -> None:
        super().__init__(now)
        control = self.control.add
        control("POST", rf"{CONTROL_PREFIX}/users", self._control_add_user, "users")
        control("POST", rf"{CONTROL_PREFIX}/repos", self._control_add_repo, "repos")
        control("POST", rf"{CONTROL_PREFIX}/issues", self._control_add_issue, "issues")
        control("POST", rf"{CONTROL_PREFIX}/pulls", self._control_add_pull, "pulls")
        control("POST", rf"{CONTROL_PREFIX}/commits", self._control_add_commit, "commits")
        control("POST", rf"{CONTROL_PREFIX}/releases", self._control_add_release, "releases")
        control("POST", rf"{CONTROL_PREFIX}/events", self._control_event, "events")
        self._build_routes()
        self.reset()

    @locked
    def reset(self) -> None:
        """No repositories; only the demo user."""
        super().reset()
        self.users: list[User] = []
        self.repos: dict[str, Repo] = {}  # by full name, lower-cased
        self.malformed_keys: set[str] = set()
        self.rate_limit_status = 403
        self._ids = {
            kind: itertools.count(start)
            for kind, start in {
                "user": 583231,
                "repo": 134018330,
                "issue": 344340088,
                "pull": 203756736,
                "event": 1747851120,
                "release": 11447100,
                "label": 937861454,
                "commit": 1,
            }.items()
        }
        self.default_user = self.add_user(DEMO_LOGIN, DEMO_TOKEN, name="VSM Demo")

    @property
    def label(self) -> str:
        return "GitHub"

    def credentials(self) -> dict[str, str]:
        return {"token": self.default_user.token}

    def _next(self, kind: str) -> int:
        return next(self._ids[kind])

    def _clock(self) -> datetime:
        return to_github_instant(self.now())

    # Programmatic API --------------------------------------------------------------------------------

    @locked
    def add_user(self, login: str, token: str, name: str | None = None) -> User:
        if any(user.login.lower() == login.lower() for user in self.users):
            raise ValueError(f"a user {login!r} already exists")
        user = User(self._next("user"), login, token, name or login)
        self.users.append(user)
        return user

    @locked
    def add_repo(self, full_name: str, default_branch: str = "main") -> Repo:
        owner_login, _, name = full_name.partition("/")
        if not re.fullmatch(NAME, owner_login or "") or not re.fullmatch(NAME, name or ""):
            raise ValueError(f"a repository is owner/name, not {full_name!r}")
        if full_name.lower() in self.repos:
            raise ValueError(f"the repository {full_name} already exists")
        owner = self._find_user(owner_login) or User(self._next("user"), owner_login, "", owner_login)
        repo = Repo(self._next("repo"), owner, name, default_branch, self._clock())
        self.repos[full_name.lower()] = repo
        return repo

    @locked
    def add_issue(
        self,
        repo: str,
        title: str,
        body: str = "",
        *,
        user: str | None = None,
        labels: Sequence[str] = (),
        created: datetime | None = None,
        updated: datetime | None = None,
        events: Sequence[tuple] = (),
    ) -> str:
        """A backdated issue; `events` are (at, "closed" or "reopened"[, actor]). Returns its key."""
        found = self._repo(repo)
        issue = self._new_issue(found, title, body, user, labels, created)
        self._replay(found, issue, events, updated)
        return f"{found.full_name}#{issue.number}"

    @locked
    def add_pull(
        self,
        repo: str,
        title: str,
        body: str = "",
        *,
        head: str = "feature",
        base: str | None = None,
        commits: Sequence[str] = (),
        user: str | None = None,
        labels: Sequence[str] = (),
        draft: bool = False,
        created: datetime | None = None,
        updated: datetime | None = None,
        events: Sequence[tuple] = (),
    ) -> str:
        """A backdated pull request of existing commits; `events` may also hold "merged". Returns its key."""
        found = self._repo(repo)
        for sha in commits:
            self._commit(found, sha)
        issue = self._new_issue(found, title, body, user, labels, created)
        issue.pull_id = self._next("pull")
        issue.head, issue.base = head, base or found.default_branch
        issue.commits, issue.draft = list(commits), draft
        self._replay(found, issue, events, updated)
        return f"{found.full_name}#{issue.number}"

    @locked
    def add_commit(
        self,
        repo: str,
        message: str,
        *,
        author: str | None = None,
        at: datetime | None = None,
        authored: datetime | None = None,
        parents: Sequence[str] | None = None,
        sha: str | None = None,
    ) -> str:
        """A commit on the default branch (its parent the previous one unless given). Returns its SHA."""
        found = self._repo(repo)
        committed = to_github_instant(at) if at else self._clock()
        user = self._user(author)
        if parents is None:
            parents = [max(found.commits.values(), key=lambda c: c.committed).sha] if found.commits else []
        sha = (
            sha
            or hashlib.sha1(  # noqa: S324 (an id, as git computes it, not a secret)
                f"{found.full_name}\n{message}\n{committed}\n{self._next('commit')}".encode()
            ).hexdigest()
        )
        if not re.fullmatch(r"[0-9a-f]{40}", sha) or sha in found.commits:
            raise ValueError(f"{sha!r} is not a new full SHA")
        found.commits[sha] = Commit(
            sha,
            message,
            user,
            user.name,
            f"{user.login}@users.noreply.example",
            to_github_instant(authored) if authored else committed,
            committed,
            list(parents),
        )
        return sha

    @locked
    def add_release(
        self,
        repo: str,
        tag_name: str,
        *,
        target_commitish: str | None = None,
        name: str | None = None,
        body: str = "",
        author: str | None = None,
        created: datetime | None = None,
        published: datetime | None = None,
        draft: bool = False,
        prerelease: bool = False,
    ) -> int:
        found = self._repo(repo)
        if any(release.tag_name == tag_name for release in found.releases):
            raise GitHubError(
                422,
                "Validation Failed",
                [{"resource": "Release", "code": "already_exists", "field": "tag_name"}],
            )
        created_at = to_github_instant(created) if created else self._clock()
        tag_sha = self._tag_target(found, target_commitish or found.default_branch, created_at)
        release = Release(
            self._next("release"),
            tag_name,
            target_commitish or found.default_branch,
            name if name is not None else tag_name,
            body,
            self._user(author),
            created_at,
            None if draft else (to_github_instant(published) if published else created_at),
            draft,
            prerelease,
            tag_sha,
        )
        found.releases.append(release)
        return release.id

    @locked
    def close(
        self, key: str, at: datetime | None = None, actor: str | None = None, reason: str = "completed"
    ) -> None:
        repo, issue = self._issue_by_key(key)
        self._apply_event(
            repo, issue, "closed", to_github_instant(at) if at else self._clock(), actor, reason
        )

    @locked
    def reopen(self, key: str, at: datetime | None = None, actor: str | None = None) -> None:
        repo, issue = self._issue_by_key(key)
        self._apply_event(repo, issue, "reopened", to_github_instant(at) if at else self._clock(), actor)

    @locked
    def merge(self, key: str, at: datetime | None = None, actor: str | None = None) -> None:
        repo, issue = self._issue_by_key(key)
        self._apply_event(repo, issue, "merged", to_github_instant(at) if at else self._clock(), actor)

    @locked
    def edit(self, key: str, at: datetime | None = None, **changes: Any) -> None:
        """Change title, body or labels of an issue or pull request, bumping updated_at."""
        _, issue = self._issue_by_key(key)
        for name, value in changes.items():
            if name not in ("title", "body", "labels"):
                raise ValueError(f"cannot edit {name!r}")
            setattr(issue, name, list(value) if name == "labels" else value)
        issue.updated = to_github_instant(at) if at else self._clock()

    @locked
    def malformed(self, key: str) -> None:
        """From now on render `key` (owner/repo#n or a SHA) broken: created_at "not-a-date", no state."""
        if "#" in key:
            self._issue_by_key(key)
        elif not any(key in repo.commits for repo in self.repos.values()):
            raise ValueError(f"no issue, pull request or commit {key!r}")
        self.malformed_keys.add(key)

    @locked
    def rate_limit(self, count: int, retry_after: int = 2, status: int = 403) -> None:
        """The next `count` requests hit the rate limit: 403 (primary) or 429 (secondary)."""
        if status not in (403, 429):
            raise ValueError("GitHub rate limits answer 403 or 429")
        super().rate_limit(count, retry_after)
        self.rate_limit_status = status

    @locked
    def clear_faults(self) -> None:
        super().clear_faults()
        self.malformed_keys.clear()

    def configure_faults(self, settings: dict[str, Any]) -> None:
        super().configure_faults(settings)
        if "rate_limit" in settings:
            limit = settings["rate_limit"]
            self.rate_limit(
                int(limit["count"]), int(limit.get("retry_after", 2)), int(limit.get("status", 403))
            )
        for key in settings.get("malformed", ()):
            self.malformed(key)

    def stats(self) -> dict[str, Any]:
        repos = self.repos.values()
        return {
            **super().stats(),
            "repos": len(self.repos),
            "issues": sum(not issue.is_pull for repo in repos for issue in repo.issues.values()),
            "pulls": sum(issue.is_pull for repo in repos for issue in repo.issues.values()),
            "commits": sum(len(repo.commits) for repo in repos),
            "releases": sum(len(repo.releases) for repo in repos),
            "malformed": sorted(self.malformed_keys),
        }

    # State helpers -----------------------------------------------------------------------------------

    def _find_user(self, login: str | None) -> User | None:
        return next((user for user in self.users if login and user.login.lower() == login.lower()), None)

    def _user(self, login: str | None) -> User:
        if login is None:
            return self.default_user
        user = self._find_user(login)
        if user is None:
            raise GitHubError(
                422, "Validation Failed", [{"resource": "User", "code": "invalid", "value": login}]
            )
        return user

    def _repo(self, full_name: str) -> Repo:
        repo = self.repos.get(full_name.lower())
        if repo is None:
            raise GitHubError(404, "Not Found")
        return repo

    def _issue_by_key(self, key: str) -> tuple[Repo, Issue]:
        repository, _, number = key.partition("#")
        repo = self._repo(repository)
        issue = repo.issues.get(int(number)) if number.isdigit() else None
        if issue is None:
            raise GitHubError(404, "Not Found")
        return repo, issue

    def _commit(self, repo: Repo, sha: str) -> Commit:
        commit = repo.commits.get(sha)
        if commit is None:
            raise GitHubError(422, f"No commit found for SHA: {sha}")
        return commit

    def _tag_target(self, repo: Repo, target: str, at: datetime) -> str | None:
        """The commit a new tag points at: `target` as a commit SHA, or the default branch's newest commit
        made at or before `at` (releases are backdated like everything else); 422 for another name."""
        if target in repo.commits:
            return target
        if target != repo.default_branch:
            raise GitHubError(
                422,
                "Validation Failed",
                [{"resource": "Release", "code": "invalid", "field": "target_commitish"}],
            )
        made = [commit for commit in repo.commits.values() if commit.committed <= at]
        return max(made, key=lambda commit: (commit.committed, commit.sha)).sha if made else None

    def _resolve(self, repo: Repo, ref: str) -> Commit | None:
        """A ref as GitHub reads it: a commit SHA (or a unique prefix of 4+), the tag of a published
        release, or the default branch (its newest commit). None when nothing answers to it."""
        if re.fullmatch(r"[0-9a-fA-F]{4,40}", ref):
            matches = [commit for sha, commit in repo.commits.items() if sha.startswith(ref.lower())]
            if len(matches) == 1:
                return matches[0]
        release = next((r for r in repo.releases if r.tag_name == ref and not r.draft), None)
        if release is not None:
            return repo.commits.get(release.tag_sha or "")
        if ref == repo.default_branch and repo.commits:
            return max(repo.commits.values(), key=lambda commit: (commit.committed, commit.sha))
        return None

    def _ancestry(self, repo: Repo, sha: str) -> set[str]:
        """The commit and every commit reachable from it through its parents."""
        seen, stack = set(), [sha]
        while stack:
            current = stack.pop()
            if current in seen or current not in repo.commits:
                continue
            seen.add(current)
            stack.extend(repo.commits[current].parents)
        return seen

    def _chronological(self, repo: Repo, shas: set[str]) -> list[Commit]:
        """`shas` oldest first, as GitHub lists a comparison: parents before children, then by date."""
        waiting = {sha: {p for p in repo.commits[sha].parents if p in shas} for sha in shas}
        children: dict[str, list[str]] = {}
        for sha, parents in waiting.items():
            for parent in parents:
                children.setdefault(parent, []).append(sha)
        ready = [(repo.commits[sha].committed, sha) for sha, parents in waiting.items() if not parents]
        heapq.heapify(ready)
        ordered: list[Commit] = []
        while ready:
            _, sha = heapq.heappop(ready)
            ordered.append(repo.commits[sha])
            for child in children.get(sha, ()):
                waiting[child].discard(sha)
                if not waiting[child]:
                    heapq.heappush(ready, (repo.commits[child].committed, child))
        return ordered

    def _new_issue(
        self,
        repo: Repo,
        title: str,
        body: str,
        user: str | None,
        labels: Sequence[str],
        created: datetime | None,
    ) -> Issue:
        if not title:
            raise GitHubError(
                422, "Validation Failed", [{"resource": "Issue", "code": "missing_field", "field": "title"}]
            )
        at = to_github_instant(created) if created else self._clock()
        number = max(repo.issues, default=0) + 1
        author = self._user(user)
        issue = Issue(self._next("issue"), number, title, body or "", author, at, at, labels=list(labels))
        for label in labels:
            repo.labels.setdefault(label, self._next("label"))
            issue.events.append(Event(self._next("event"), "labeled", author, at))
        repo.issues[number] = issue
        return issue

    def _replay(self, repo: Repo, issue: Issue, events: Sequence[tuple], updated: datetime | None) -> None:
        for event in events:
            at, kind, *rest = event
            self._apply_event(repo, issue, kind, to_github_instant(at), rest[0] if rest else None)
        if updated is not None:
            issue.updated = max(issue.updated, to_github_instant(updated))

    def _apply_event(
        self, repo: Repo, issue: Issue, kind: str, at: datetime, actor: str | None, reason: str | None = None
    ) -> None:
        user = self._user(actor)
        if kind == "closed":
            if issue.state == "closed":
                raise ValueError(f"#{issue.number} is already closed")
            issue.state, issue.closed_at, issue.closed_by = "closed", at, user
            issue.state_reason = None if issue.is_pull else (reason or "completed")
            issue.events.append(Event(self._next("event"), "closed", user, at, None, issue.state_reason))
        elif kind == "reopened":
            if issue.state == "open" or issue.merged_at is not None:
                raise ValueError(f"#{issue.number} cannot be reopened")
            issue.state, issue.closed_at, issue.closed_by = "open", None, None
            issue.state_reason = None if issue.is_pull else "reopened"
            issue.events.append(Event(self._next("event"), "reopened", user, at, None, issue.state_reason))
        elif kind == "merged":
            if not issue.is_pull or issue.state != "open":
                raise ValueError(f"#{issue.number} is not an open pull request")
            sha = self.add_commit(
                repo.full_name,
                f"Merge pull request #{issue.number} from {repo.owner.login}/{issue.head}\n\n{issue.title}",
                author=user.login,
                at=at,
            )
            issue.merged_at, issue.merged_by, issue.merge_commit_sha = at, user, sha
            issue.state, issue.closed_at, issue.closed_by = "closed", at, user
            # GitHub records both, merged first, at the same second.
            issue.events.append(Event(self._next("event"), "merged", user, at, sha))
            issue.events.append(Event(self._next("event"), "closed", user, at, sha))
        else:
            raise ValueError(f"unknown event {kind!r}: use closed, reopened or merged")
        issue.updated = max(issue.updated, at)

    # JSON shapes -------------------------------------------------------------------------------------

    def _user_json(self, user: User | None, api: str, html: str) -> dict[str, Any] | None:
        if user is None:
            return None
        url = f"{api}/users/{user.login}"
        return {
            "login": user.login,
            "id": user.id,
            "node_id": node_id("User", user.id),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{user.id}?v=4",
            "gravatar_id": "",
            "url": url,
            "html_url": f"{html}/{user.login}",
            "followers_url": f"{url}/followers",
            "following_url": f"{url}/following{{/other_user}}",
            "gists_url": f"{url}/gists{{/gist_id}}",
            "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{url}/subscriptions",
            "organizations_url": f"{url}/orgs",
            "repos_url": f"{url}/repos",
            "events_url": f"{url}/events{{/privacy}}",
            "received_events_url": f"{url}/received_events",
            "type": "User",
            "site_admin": False,
        }

    def _repo_json(self, repo: Repo, api: str, html: str) -> dict[str, Any]:
        url = f"{api}/repos/{repo.full_name}"
        return {
            "id": repo.id,
            "node_id": node_id("Repository", repo.id),
            "name": repo.name,
            "full_name": repo.full_name,
            "private": True,
            "owner": self._user_json(repo.owner, api, html),
            "html_url": f"{html}/{repo.full_name}",
            "description": None,
            "fork": False,
            "url": url,
            "issues_url": f"{url}/issues{{/number}}",
            "pulls_url": f"{url}/pulls{{/number}}",
            "commits_url": f"{url}/commits{{/sha}}",
            "releases_url": f"{url}/releases{{/id}}",
            "created_at": format_time(repo.created),
            "updated_at": format_time(repo.created),
            "pushed_at": format_time(max((c.committed for c in repo.commits.values()), default=repo.created)),
            "has_issues": True,
            "open_issues_count": sum(issue.state == "open" for issue in repo.issues.values()),
            "visibility": "private",
            "default_branch": repo.default_branch,
        }

    def _labels_json(self, repo: Repo, names: list[str], api: str) -> list[dict[str, Any]]:
        return [
            {
                "id": repo.labels.get(name, 0),
                "node_id": node_id("Label", repo.labels.get(name, 0)),
                "url": f"{api}/repos/{repo.full_name}/labels/{quote(name)}",
                "name": name,
                "color": "ededed",
                "default": False,
                "description": None,
            }
            for name in names
        ]

    def _issue_node_id(self, issue: Issue) -> str:
        return node_id("PullRequest", issue.pull_id) if issue.is_pull else node_id("Issue", issue.id)

    def _issue_json(
        self, repo: Repo, issue: Issue, api: str, html: str, single: bool = False
    ) -> dict[str, Any]:
        url = f"{api}/repos/{repo.full_name}/issues/{issue.number}"
        kind = "pull" if issue.is_pull else "issues"
        rendered: dict[str, Any] = {
            "url": url,
            "repository_url": f"{api}/repos/{repo.full_name}",
            "labels_url": f"{url}/labels{{/name}}",
            "comments_url": f"{url}/comments",
            "events_url": f"{url}/events",
            "html_url": f"{html}/{repo.full_name}/{kind}/{issue.number}",
            "id": issue.id,
            "node_id": self._issue_node_id(issue),
            "number": issue.number,
            "title": issue.title,
            "user": self._user_json(issue.user, api, html),
            "labels": self._labels_json(repo, issue.labels, api),
            "state": issue.state,
            "locked": False,
            "assignee": self._user_json(issue.assignees[0], api, html) if issue.assignees else None,
            "assignees": [self._user_json(user, api, html) for user in issue.assignees],
            "milestone": None,
            "comments": 0,
            "created_at": format_time(issue.created),
            "updated_at": format_time(issue.updated),
            "closed_at": format_time(issue.closed_at),
            "author_association": "OWNER" if issue.user is repo.owner else "CONTRIBUTOR",
            "active_lock_reason": None,
            "body": issue.body or None,
            "reactions": {"url": f"{url}/reactions", "total_count": 0, "+1": 0, "-1": 0},
            "timeline_url": f"{url}/timeline",
            "performed_via_github_app": None,
            "state_reason": issue.state_reason,
        }
        if issue.is_pull:
            pulls = f"{api}/repos/{repo.full_name}/pulls/{issue.number}"
            rendered["draft"] = issue.draft
            rendered["pull_request"] = {
                "url": pulls,
                "html_url": rendered["html_url"],
                "diff_url": f"{rendered['html_url']}.diff",
                "patch_url": f"{rendered['html_url']}.patch",
                "merged_at": format_time(issue.merged_at),
            }
        if single:
            rendered["closed_by"] = self._user_json(issue.closed_by, api, html)
        return self._maybe_malformed(f"{repo.full_name}#{issue.number}", rendered)

    def _pull_json(
        self, repo: Repo, issue: Issue, api: str, html: str, single: bool = False
    ) -> dict[str, Any]:
        base_url = f"{api}/repos/{repo.full_name}"
        url = f"{base_url}/pulls/{issue.number}"
        html_url = f"{html}/{repo.full_name}/pull/{issue.number}"
        head_sha = issue.commits[-1] if issue.commits else None
        base_sha = max((c.committed, c.sha) for c in repo.commits.values())[1] if repo.commits else None
        repo_json = self._repo_json(repo, api, html)
        rendered: dict[str, Any] = {
            "url": url,
            "id": issue.pull_id,
            "node_id": self._issue_node_id(issue),
            "html_url": html_url,
            "diff_url": f"{html_url}.diff",
            "patch_url": f"{html_url}.patch",
            "issue_url": f"{base_url}/issues/{issue.number}",
            "number": issue.number,
            "state": issue.state,
            "locked": False,
            "title": issue.title,
            "user": self._user_json(issue.user, api, html),
            "body": issue.body or None,
            "created_at": format_time(issue.created),
            "updated_at": format_time(issue.updated),
            "closed_at": format_time(issue.closed_at),
            "merged_at": format_time(issue.merged_at),
            "merge_commit_sha": issue.merge_commit_sha,
            "assignee": self._user_json(issue.assignees[0], api, html) if issue.assignees else None,
            "assignees": [self._user_json(user, api, html) for user in issue.assignees],
            "requested_reviewers": [],
            "requested_teams": [],
            "labels": self._labels_json(repo, issue.labels, api),
            "milestone": None,
            "draft": issue.draft,
            "commits_url": f"{url}/commits",
            "review_comments_url": f"{url}/comments",
            "review_comment_url": f"{base_url}/pulls/comments{{/number}}",
            "comments_url": f"{base_url}/issues/{issue.number}/comments",
            "statuses_url": f"{base_url}/statuses/{head_sha}",
            "head": {
                "label": f"{repo.owner.login}:{issue.head}",
                "ref": issue.head,
                "sha": head_sha,
                "user": self._user_json(repo.owner, api, html),
                "repo": repo_json,
            },
            "base": {
                "label": f"{repo.owner.login}:{issue.base}",
                "ref": issue.base,
                "sha": base_sha,
                "user": self._user_json(repo.owner, api, html),
                "repo": repo_json,
            },
            "_links": {
                "self": {"href": url},
                "html": {"href": html_url},
                "issue": {"href": f"{base_url}/issues/{issue.number}"},
                "comments": {"href": f"{base_url}/issues/{issue.number}/comments"},
                "review_comments": {"href": f"{url}/comments"},
                "review_comment": {"href": f"{base_url}/pulls/comments{{/number}}"},
                "commits": {"href": f"{url}/commits"},
                "statuses": {"href": f"{base_url}/statuses/{head_sha}"},
            },
            "author_association": "OWNER" if issue.user is repo.owner else "CONTRIBUTOR",
            "auto_merge": None,
            "active_lock_reason": None,
        }
        if single:
            rendered.update(
                {
                    "merged": issue.merged_at is not None,
                    "mergeable": None if issue.state == "closed" else True,
                    "rebaseable": None if issue.state == "closed" else True,
                    "mergeable_state": "unknown" if issue.state == "closed" else "clean",
                    "merged_by": self._user_json(issue.merged_by, api, html),
                    "comments": 0,
                    "review_comments": 0,
                    "maintainer_can_modify": False,
                    "commits": len(issue.commits),
                    "additions": 10 * len(issue.commits),
                    "deletions": 2 * len(issue.commits),
                    "changed_files": len(issue.commits),
                }
            )
        return self._maybe_malformed(f"{repo.full_name}#{issue.number}", rendered)

    def _event_json(self, repo: Repo, event: Event, api: str, html: str) -> dict[str, Any]:
        type_name = {"closed": "ClosedEvent", "reopened": "ReopenedEvent", "merged": "MergedEvent"}.get(
            event.event, "LabeledEvent"
        )
        rendered = {
            "id": event.id,
            "node_id": node_id(type_name, event.id),
            "url": f"{api}/repos/{repo.full_name}/issues/events/{event.id}",
            "actor": self._user_json(event.actor, api, html),
            "event": event.event,
            "commit_id": event.commit_id,
            "commit_url": f"{api}/repos/{repo.full_name}/commits/{event.commit_id}"
            if event.commit_id
            else None,
            "created_at": format_time(event.at),
            "performed_via_github_app": None,
        }
        if event.event in ("closed", "reopened"):
            rendered["state_reason"] = event.state_reason
        if event.event == "labeled":
            rendered["label"] = {"name": "label", "color": "ededed"}
        return rendered

    def _commit_json(
        self, repo: Repo, commit: Commit, api: str, html: str, single: bool = False
    ) -> dict[str, Any]:
        base = f"{api}/repos/{repo.full_name}"
        person = {"name": commit.author_name, "email": commit.author_email}
        rendered: dict[str, Any] = {
            "sha": commit.sha,
            "node_id": node_id("Commit", f"{repo.id}:{commit.sha}"),
            "commit": {
                "author": {**person, "date": format_time(commit.authored)},
                "committer": {**person, "date": format_time(commit.committed)},
                "message": commit.message,
                "tree": {
                    "sha": hashlib.sha1(commit.sha.encode()).hexdigest(),  # noqa: S324 (an id)
                    "url": f"{base}/git/trees/{hashlib.sha1(commit.sha.encode()).hexdigest()}",  # noqa: S324
                },
                "url": f"{base}/git/commits/{commit.sha}",
                "comment_count": 0,
                "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None},
            },
            "url": f"{base}/commits/{commit.sha}",
            "html_url": f"{html}/{repo.full_name}/commit/{commit.sha}",
            "comments_url": f"{base}/commits/{commit.sha}/comments",
            "author": self._user_json(commit.author, api, html),
            "committer": self._user_json(commit.author, api, html),
            "parents": [
                {
                    "sha": sha,
                    "url": f"{base}/commits/{sha}",
                    "html_url": f"{html}/{repo.full_name}/commit/{sha}",
                }
                for sha in commit.parents
            ],
        }
        if single:
            rendered["stats"] = {"total": 12, "additions": 10, "deletions": 2}
            rendered["files"] = []
        if commit.sha in self.malformed_keys:
            rendered["commit"]["committer"]["date"] = MALFORMED_TIME
        return rendered

    def _release_json(self, repo: Repo, release: Release, api: str, html: str) -> dict[str, Any]:
        url = f"{api}/repos/{repo.full_name}/releases/{release.id}"
        return {
            "url": url,
            "assets_url": f"{url}/assets",
            "upload_url": f"https://uploads.github.com/repos/{repo.full_name}/releases/{release.id}"
            "/assets{?name,label}",
            "html_url": f"{html}/{repo.full_name}/releases/tag/{quote(release.tag_name)}",
            "id": release.id,
            "author": self._user_json(release.author, api, html),
            "node_id": node_id("Release", release.id),
            "tag_name": release.tag_name,
            "target_commitish": release.target_commitish,
            "name": release.name,
            "draft": release.draft,
            "prerelease": release.prerelease,
            "created_at": format_time(release.created),
            "published_at": format_time(release.published),
            "assets": [],
            "tarball_url": f"{api}/repos/{repo.full_name}/tarball/{quote(release.tag_name)}",
            "zipball_url": f"{api}/repos/{repo.full_name}/zipball/{quote(release.tag_name)}",
            "body": release.body,
        }

    def _maybe_malformed(self, key: str, rendered: dict[str, Any]) -> dict[str, Any]:
        if key in self.malformed_keys:
            rendered["created_at"] = MALFORMED_TIME
            rendered.pop("state", None)
        return rendered

    # HTTP --------------------------------------------------------------------------------------------

    def _build_routes(self) -> None:
        add = self.router.add
        issue = rf"{REPO_PATH}/issues/(?P<number>\d+)"
        pull = rf"{REPO_PATH}/pulls/(?P<number>\d+)"
        add("GET", r"/user", self._http_user, "user")
        add("GET", r"/rate_limit", self._http_rate_limit, "rate_limit")
        add("GET", REPO_PATH, self._http_repo, "repo")
        add("GET", rf"{REPO_PATH}/issues", self._http_issues, "issues")
        add("POST", rf"{REPO_PATH}/issues", self._http_create_issue, "issues")
        add("GET", issue, self._http_issue, "issue")
        add("PATCH", issue, self._http_update_issue, "issue")
        add("GET", rf"{issue}/events", self._http_issue_events, "issue/events")
        add("GET", rf"{REPO_PATH}/pulls", self._http_pulls, "pulls")
        add("GET", pull, self._http_pull, "pull")
        add("GET", rf"{pull}/commits", self._http_pull_commits, "pull/commits")
        add("GET", rf"{REPO_PATH}/commits", self._http_commits, "commits")
        add("GET", rf"{REPO_PATH}/commits/(?P<sha>[^/]+)", self._http_commit, "commit")
        add("GET", rf"{REPO_PATH}/compare/(?P<basehead>.+)", self._http_compare, "compare")
        add("GET", rf"{REPO_PATH}/releases", self._http_releases, "releases")
        add("GET", rf"{REPO_PATH}/releases/tags/(?P<tag>.+)", self._http_release_by_tag, "release/tag")

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        """Every answer of the API (not the control endpoints) carries GitHub's rate-limit headers."""

        def with_rate_headers(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            path = environ.get("PATH_INFO") or "/"
            if not path.startswith(CONTROL_PREFIX) and not any(
                name.lower() == "x-ratelimit-remaining" for name, _ in headers
            ):
                used = min(RATE_LIMIT - 1, sum(self.requests.values()))
                headers = [*headers, *_rate_headers(RATE_LIMIT - used, used)]
            return start_response(status, headers, *args)

        return super().__call__(environ, with_rate_headers)

    def authenticate(self, request: Request) -> User | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if "user-agent" not in request.headers:
            raise GitHubError(
                403,
                "Request forbidden by administrative rules. "
                "Please make sure your request has a User-Agent header.",
            )
        version = request.headers.get("x-github-api-version")
        if version and version not in SUPPORTED_API_VERSIONS:
            raise GitHubError(400, f"API version {version!r} is not supported.")
        if not scheme:
            return None  # anonymous: /user refuses, private repositories are not found
        token = bearer_token(request) or (value.strip() if scheme.lower() == "token" else None)
        user = next((user for user in self.users if token and user.token == token), None)
        if user is None:
            raise GitHubError(401, "Bad credentials")
        return user

    def error_response(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
        return GitHubError(status, message, headers=headers).response

    def rate_limited_response(self, retry_after_seconds: int) -> Response:
        reset = math.ceil(time.time()) + retry_after_seconds  # the real clock: clients compare with theirs
        headers = [
            ("x-ratelimit-limit", str(RATE_LIMIT)),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-used", str(RATE_LIMIT)),
            ("x-ratelimit-reset", str(reset)),
            ("x-ratelimit-resource", "core"),
        ]
        if self.rate_limit_status == 429:  # a secondary limit asks with retry-after
            headers.append(("retry-after", str(retry_after_seconds)))
            message = (
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
            )
            return self.error_response(429, message, headers)
        message = f"API rate limit exceeded for user ID {self.default_user.id}."
        return self.error_response(403, message, headers)

    def _urls(self, request: Request) -> tuple[str, str]:
        """The API base and the browser base (the fake's own address: it has no web pages)."""
        return request.base_url, request.base_url

    def _repo_of(self, request: Request) -> Repo:
        if request.user is None:
            raise GitHubError(404, "Not Found")  # every fake repository is private
        repo_id = request.params.get("repo_id")
        if repo_id:
            repo = next((repo for repo in self.repos.values() if repo.id == int(repo_id)), None)
            if repo is None:
                raise GitHubError(404, "Not Found")
            return repo
        return self._repo(f"{request.params['owner']}/{request.params['repo']}")

    def _issue_of(self, request: Request) -> tuple[Repo, Issue]:
        repo = self._repo_of(request)
        issue = repo.issues.get(int(request.params["number"]))
        if issue is None:
            raise GitHubError(404, "Not Found")
        return repo, issue

    def _http_user(self, request: Request) -> Response:
        if request.user is None:
            raise GitHubError(401, "Requires authentication")
        api, html = self._urls(request)
        return json_response({**self._user_json(request.user, api, html), "name": request.user.name})

    def _http_rate_limit(self, request: Request) -> Response:
        used = sum(self.requests.values())
        core = {"limit": RATE_LIMIT, "used": used, "remaining": RATE_LIMIT - used, "reset": _next_hour()}
        return json_response({"resources": {"core": core}, "rate": core})

    def _http_repo(self, request: Request) -> Response:
        api, html = self._urls(request)
        return json_response(self._repo_json(self._repo_of(request), api, html))

    def _http_issues(self, request: Request) -> Response:
        repo = self._repo_of(request)
        state = request.arg("state", "open")
        if state not in ("open", "closed", "all"):
            raise GitHubError(
                422, "Validation Failed", [{"resource": "Issue", "field": "state", "code": "invalid"}]
            )
        since = request.arg("since")
        since_at = parse_query_time(since, "since") if since else None
        issues = [
            issue
            for issue in repo.issues.values()
            if (state == "all" or issue.state == state) and (since_at is None or issue.updated >= since_at)
        ]
        labels = {name.strip() for name in (request.arg("labels") or "").split(",") if name.strip()}
        if labels:
            issues = [issue for issue in issues if labels <= set(issue.labels)]
        issues = _sorted(issues, request, {"created": "created", "updated": "updated"})
        api, html = self._urls(request)
        return self._paged(
            request, repo, "issues", issues, lambda issue: self._issue_json(repo, issue, api, html)
        )

    def _http_issue(self, request: Request) -> Response:
        repo, issue = self._issue_of(request)
        api, html = self._urls(request)
        return json_response(self._issue_json(repo, issue, api, html, single=True))

    def _http_issue_events(self, request: Request) -> Response:
        repo, issue = self._issue_of(request)
        api, html = self._urls(request)
        path = f"issues/{issue.number}/events"
        return self._paged(request, repo, path, issue.events, lambda e: self._event_json(repo, e, api, html))

    def _http_create_issue(self, request: Request) -> Response:
        repo = self._repo_of(request)
        body = request.json_object()
        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            raise GitHubError(
                422, "Validation Failed", [{"resource": "Issue", "code": "missing_field", "field": "title"}]
            )
        labels = body.get("labels") or []
        if not isinstance(labels, list):
            raise GitHubError(422, "Invalid request.\n\nFor 'properties/labels', is not an array.")
        labels = [label["name"] if isinstance(label, dict) else str(label) for label in labels]
        issue = self._new_issue(repo, title, body.get("body") or "", request.user.login, labels, None)
        issue.assignees = [self._user(login) for login in body.get("assignees") or []]
        api, html = self._urls(request)
        location = f"{api}/repos/{repo.full_name}/issues/{issue.number}"
        return json_response(
            self._issue_json(repo, issue, api, html, single=True), 201, [("Location", location)]
        )

    def _http_update_issue(self, request: Request) -> Response:
        repo, issue = self._issue_of(request)
        body = request.json_object()
        at = self._clock()
        state, reason = body.get("state"), body.get("state_reason")
        if state not in (None, "open", "closed"):
            raise GitHubError(
                422, "Validation Failed", [{"resource": "Issue", "field": "state", "code": "invalid"}]
            )
        if reason not in (None, "completed", "not_planned", "reopened"):
            raise GitHubError(
                422, "Validation Failed", [{"resource": "Issue", "field": "state_reason", "code": "invalid"}]
            )
        if state == "closed" and issue.state == "open":
            self._apply_event(repo, issue, "closed", at, request.user.login, reason)
        elif state == "open" and issue.state == "closed":
            if issue.merged_at is not None:
                raise GitHubError(
                    422,
                    "Validation Failed",
                    [
                        {
                            "resource": "Issue",
                            "code": "custom",
                            "message": "state cannot be changed. The pull request cannot be reopened.",
                        }
                    ],
                )
            self._apply_event(repo, issue, "reopened", at, request.user.login)
        elif reason and state is None and issue.state == "closed" and not issue.is_pull:
            issue.state_reason = reason
        for name in ("title", "body"):
            if name in body:
                if name == "title" and not (isinstance(body[name], str) and body[name].strip()):
                    raise GitHubError(
                        422,
                        "Validation Failed",
                        [{"resource": "Issue", "code": "missing_field", "field": "title"}],
                    )
                if name == "title" and body[name] != issue.title:
                    issue.events.append(Event(self._next("event"), "renamed", request.user, at))
                setattr(issue, name, body[name] or "")
        if "labels" in body:
            issue.labels = [
                label["name"] if isinstance(label, dict) else str(label) for label in body["labels"] or []
            ]
            for label in issue.labels:
                repo.labels.setdefault(label, self._next("label"))
        if "assignees" in body:
            issue.assignees = [self._user(login) for login in body["assignees"] or []]
        issue.updated = max(issue.updated, at)
        api, html = self._urls(request)
        return json_response(self._issue_json(repo, issue, api, html, single=True))

    def _http_pulls(self, request: Request) -> Response:
        repo = self._repo_of(request)
        state = request.arg("state", "open")
        pulls = [
            issue
            for issue in repo.issues.values()
            if issue.is_pull and (state == "all" or issue.state == state)
        ]
        pulls = _sorted(pulls, request, {"created": "created", "updated": "updated"}, default="created")
        api, html = self._urls(request)
        return self._paged(
            request, repo, "pulls", pulls, lambda issue: self._pull_json(repo, issue, api, html)
        )

    def _http_pull(self, request: Request) -> Response:
        repo, issue = self._issue_of(request)
        if not issue.is_pull:
            raise GitHubError(404, "Not Found")
        api, html = self._urls(request)
        return json_response(self._pull_json(repo, issue, api, html, single=True))

    def _http_pull_commits(self, request: Request) -> Response:
        repo, issue = self._issue_of(request)
        if not issue.is_pull:
            raise GitHubError(404, "Not Found")
        api, html = self._urls(request)
        commits = [repo.commits[sha] for sha in issue.commits[:PULL_COMMITS_CAP]]
        path = f"pulls/{issue.number}/commits"
        return self._paged(request, repo, path, commits, lambda c: self._commit_json(repo, c, api, html))

    def _http_commits(self, request: Request) -> Response:
        repo = self._repo_of(request)
        since, until = request.arg("since"), request.arg("until")
        since_at = parse_query_time(since, "since") if since else None
        until_at = parse_query_time(until, "until") if until else None
        ref = request.arg("sha")
        reachable = None
        if ref:  # the history of one ref (a SHA, a tag or the branch), else every commit
            head = self._resolve(repo, ref)
            if head is None:
                raise GitHubError(404, "Not Found")
            reachable = self._ancestry(repo, head.sha)
        commits = sorted(
            (commit for commit in repo.commits.values() if reachable is None or commit.sha in reachable),
            key=lambda commit: (commit.committed, commit.sha),
            reverse=True,
        )
        commits = [
            commit
            for commit in commits
            if (since_at is None or commit.committed >= since_at)
            and (until_at is None or commit.committed <= until_at)
        ]
        api, html = self._urls(request)
        return self._paged(request, repo, "commits", commits, lambda c: self._commit_json(repo, c, api, html))

    def _http_commit(self, request: Request) -> Response:
        repo = self._repo_of(request)
        commit = self._resolve(repo, unquote(request.params["sha"]))
        if commit is None:
            raise GitHubError(422, f"No commit found for SHA: {request.params['sha']}")
        api, html = self._urls(request)
        return json_response(self._commit_json(repo, commit, api, html, single=True))

    def _http_compare(self, request: Request) -> Response:
        """`GET /compare/{base}...{head}`: the commits reachable from head but not from base (git log
        base..head), oldest first. Without `page` or `per_page` at most the newest COMPARE_CAP commits
        come, unpaged (`total_commits` still counts them all); with either, pages with a Link header."""
        repo = self._repo_of(request)
        basehead = request.params["basehead"]
        base_ref, separator, head_ref = basehead.partition("...")
        base = self._resolve(repo, base_ref) if separator else None
        head = self._resolve(repo, head_ref) if separator else None
        if base is None or head is None:
            raise GitHubError(404, "Not Found")
        base_side, head_side = self._ancestry(repo, base.sha), self._ancestry(repo, head.sha)
        common = base_side & head_side
        if not common:
            raise GitHubError(404, f"No common ancestor between {base_ref} and {head_ref}.")
        merge_base = self._chronological(repo, common)[-1]  # the newest common ancestor
        ahead = self._chronological(repo, head_side - base_side)
        behind = len(base_side - head_side)
        status = (
            "identical"
            if not ahead and not behind
            else "ahead"
            if not behind
            else "behind"
            if not ahead
            else "diverged"
        )
        paged = request.arg("page") is not None or request.arg("per_page") is not None
        if paged:
            per_page = min(MAX_PER_PAGE, max(1, _int_arg(request, "per_page", DEFAULT_PER_PAGE)))
            page = max(1, _int_arg(request, "page", 1))
            shown = ahead[(page - 1) * per_page : page * per_page]
            last = max(1, math.ceil(len(ahead) / per_page))
            headers = self._link_header(request, repo, f"compare/{quote(basehead)}", page, per_page, last)
        else:
            shown, headers = ahead[-COMPARE_CAP:], []
        api, html = self._urls(request)
        owner = repo.owner.login
        html_url = f"{html}/{repo.full_name}/compare/{quote(basehead)}"
        return json_response(
            {
                "url": f"{api}/repos/{repo.full_name}/compare/{quote(basehead)}",
                "html_url": html_url,
                "permalink_url": f"{html}/{repo.full_name}/compare/"
                f"{owner}:{base.sha[:7]}...{owner}:{head.sha[:7]}",
                "diff_url": f"{html_url}.diff",
                "patch_url": f"{html_url}.patch",
                "base_commit": self._commit_json(repo, base, api, html),
                "merge_base_commit": self._commit_json(repo, merge_base, api, html),
                "status": status,
                "ahead_by": len(ahead),
                "behind_by": behind,
                "total_commits": len(ahead),
                "commits": [self._commit_json(repo, commit, api, html) for commit in shown],
                "files": [],  # the fake keeps no file changes
            },
            200,
            headers,
        )

    def _http_releases(self, request: Request) -> Response:
        repo = self._repo_of(request)
        releases = sorted(repo.releases, key=lambda release: (release.created, release.id), reverse=True)
        api, html = self._urls(request)
        return self._paged(
            request, repo, "releases", releases, lambda r: self._release_json(repo, r, api, html)
        )

    def _http_release_by_tag(self, request: Request) -> Response:
        repo = self._repo_of(request)
        tag = unquote(request.params["tag"])
        release = next((r for r in repo.releases if r.tag_name == tag and not r.draft), None)
        if release is None:
            raise GitHubError(404, "Not Found")
        api, html = self._urls(request)
        return json_response(self._release_json(repo, release, api, html))

    def _paged(self, request: Request, repo: Repo, path: str, values: list, render: Callable) -> Response:
        """One page of `values` with GitHub's Link header (absolute /repositories/{id} URLs)."""
        per_page = min(MAX_PER_PAGE, max(1, _int_arg(request, "per_page", DEFAULT_PER_PAGE)))
        page = max(1, _int_arg(request, "page", 1))
        last = max(1, math.ceil(len(values) / per_page))
        chosen = values[(page - 1) * per_page : page * per_page]
        headers = self._link_header(request, repo, path, page, per_page, last)
        return json_response([render(value) for value in chosen], 200, headers)

    def _link_header(
        self, request: Request, repo: Repo, path: str, page: int, per_page: int, last: int
    ) -> list[tuple[str, str]]:
        """GitHub's Link header for `page` of `last` (absolute /repositories/{id} URLs), none for one page."""
        query = {name: values_[0] for name, values_ in request.query.items() if name != "page" and values_}
        query["per_page"] = str(per_page)

        def link(number: int, rel: str) -> str:
            target = (
                f"{request.base_url}/repositories/{repo.id}/{path}?{urlencode({**query, 'page': number})}"
            )
            return f'<{target}>; rel="{rel}"'

        links = []
        if page > 1:
            links += [link(page - 1, "prev")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links += [link(1, "first")]
        return [("Link", ", ".join(links))] if links else []

    # Control endpoints (fake-only) -------------------------------------------------------------------

    def _control_add_user(self, request: Request) -> Response:
        body = request.json_object()
        try:
            user = self.add_user(_required(body, "login"), _required(body, "token"), body.get("name"))
        except ValueError as error:
            raise InvalidRequestBody(str(error)) from error
        return json_response({"id": user.id, "login": user.login}, 201)

    def _control_add_repo(self, request: Request) -> Response:
        body = request.json_object()
        try:
            repo = self.add_repo(_required(body, "full_name"), body.get("default_branch") or "main")
        except ValueError as error:
            raise InvalidRequestBody(str(error)) from error
        return json_response({"id": repo.id, "full_name": repo.full_name}, 201)

    def _issue_options(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "user": body.get("user"),
            "labels": body.get("labels") or (),
            "created": _instant(body, "created"),
            "updated": _instant(body, "updated"),
            "events": [
                (_instant(event, "at"), _required(event, "event"), event.get("actor"))
                for event in body.get("events") or ()
            ],
        }

    def _control_add_issue(self, request: Request) -> Response:
        body = request.json_object()
        try:
            key = self.add_issue(
                _required(body, "repo"),
                _required(body, "title"),
                body.get("body") or "",
                **self._issue_options(body),
            )
        except ValueError as error:
            raise InvalidRequestBody(str(error)) from error
        return json_response({"number": int(key.rsplit("#", 1)[1]), "key": key}, 201)

    def _control_add_pull(self, request: Request) -> Response:
        body = request.json_object()
        try:
            key = self.add_pull(
                _required(body, "repo"),
                _required(body, "title"),
                body.get("body") or "",
                head=body.get("head") or "feature",
                base=body.get("base"),
                commits=body.get("commits") or (),
                draft=bool(body.get("draft")),
                **self._issue_options(body),
            )
        except ValueError as error:
            raise InvalidRequestBody(str(error)) from error
        return json_response({"number": int(key.rsplit("#", 1)[1]), "key": key}, 201)

    def _control_add_commit(self, request: Request) -> Response:
        body = request.json_object()
        try:
            sha = self.add_commit(
                _required(body, "repo"),
                _required(body, "message"),
                author=body.get("author"),
                at=_instant(body, "at"),
                authored=_instant(body, "authored"),
                parents=body.get("parents"),
                sha=body.get("sha"),
            )
        except ValueError as error:
            raise InvalidRequestBody(str(error)) from error
        return json_response({"sha": sha}, 201)

    def _control_add_release(self, request: Request) -> Response:
        body = request.json_object()
        release_id = self.add_release(
            _required(body, "repo"),
            _required(body, "tag_name"),
            target_commitish=body.get("target_commitish"),
            name=body.get("name"),
            body=body.get("body") or "",
            author=body.get("author"),
            created=_instant(body, "created"),
            published=_instant(body, "published"),
            draft=bool(body.get("draft")),
            prerelease=bool(body.get("prerelease")),
        )
        return json_response({"id": release_id, "tag_name": body["tag_name"]}, 201)

    def _control_event(self, request: Request) -> Response:
        body = request.json_object()
        actions = {"closed": self.close, "reopened": self.reopen, "merged": self.merge}
        action = actions.get(_required(body, "event"))
        if action is None:
            raise InvalidRequestBody("'event' must be closed, reopened or merged")
        try:
            action(_required(body, "key"), _instant(body, "at"), body.get("actor"))
        except ValueError as error:
            raise InvalidRequestBody(str(error)) from error
        return json_response({"key": body["key"], "event": body["event"]}, 201)


def _rate_headers(remaining: int, used: int) -> list[tuple[str, str]]:
    return [
        ("x-ratelimit-limit", str(RATE_LIMIT)),
        ("x-ratelimit-remaining", str(remaining)),
        ("x-ratelimit-used", str(used)),
        ("x-ratelimit-reset", str(_next_hour())),
        ("x-ratelimit-resource", "core"),
    ]


def _next_hour() -> int:
    return (int(time.time()) // 3600 + 1) * 3600


def _sorted(
    values: list[Issue], request: Request, sorts: dict[str, str], default: str = "created"
) -> list[Issue]:
    """GitHub's sort/direction (default: created, desc); ties go by number in the same direction."""
    sort = request.arg("sort", default)
    if sort not in sorts:
        raise GitHubError(
            422, "Validation Failed", [{"resource": "Issue", "field": "sort", "code": "invalid"}]
        )
    direction = request.arg("direction", "desc")
    if direction not in ("asc", "desc"):
        raise GitHubError(
            422, "Validation Failed", [{"resource": "Issue", "field": "direction", "code": "invalid"}]
        )
    return sorted(
        values, key=lambda issue: (getattr(issue, sorts[sort]), issue.number), reverse=direction == "desc"
    )


def _int_arg(request: Request, name: str, default: int) -> int:
    text = request.arg(name)
    if text in (None, ""):
        return default
    try:
        return int(text)
    except ValueError:
        raise GitHubError(422, "Validation Failed", [{"field": name, "code": "invalid"}]) from None


def _instant(body: Any, name: str) -> datetime | None:
    text = body.get(name) if isinstance(body, dict) else None
    if text in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
        return to_github_instant(parsed)
    except ValueError as error:
        raise InvalidRequestBody(
            f"'{name}' must be an ISO 8601 instant with an offset, not {text!r}"
        ) from error


def _required(body: Any, name: str) -> Any:
    if not isinstance(body, dict) or body.get(name) in (None, ""):
        raise InvalidRequestBody(f"'{name}' is required.")
    return body[name]
