"""GitHub (REST v3): issues, pull requests with their commits, commits and releases of one repository.

Reading. Issues and pull requests come from `GET /repos/{o}/{r}/issues?state=all&since=...&sort=updated&
direction=asc` (paged by `Link`, followed verbatim). For each pull request, `GET /pulls/{n}` adds the
branches and merge commit and `GET /pulls/{n}/commits` its commits (at most 250, GitHub's cap). History:
for an item that is closed or was reopened, `GET /issues/{n}/events` is replayed (closed, reopened,
merged); with the option `history=dates`, or when the events answer 404, one change is synthesised from
closed_at / merged_at instead. Commits (`GET /commits?since=`, newest first) and releases (`GET /releases`,
no `since`) are read in full for the window and merged into the issue pages in time order, so that every
page's newest change is a safe cursor for the whole scope. Commits are read `commit_lookback_hours`
further back, since their committer date is set before they are pushed.

Links. A pull request is `committed_in` each of its commits and, once merged, its `merge_commit_sha` (the
merge, squash or rebase result). A release ships the commits between the previous release's tag and its
own: `GET /compare/{previous}...{tag}` (commits reachable from the tag and not from the previous one,
paged by `Link` with `per_page`; a comparison listing fewer than its `total_commits` is an error, never
silently cut), each commit `released_in` the release (an incoming link). The previous release is the
nearest earlier non-draft release of the repository by `created_at` (GitHub sets it to the date of the
tagged commit, not of drafting or publishing), ties by id; prereleases count. The first release ships
every commit reachable from its tag (`GET /commits?sha={tag}`, paged), or with the option
`first_release=target` only its tag's commit (`GET /commits/{tag}`). A draft has no tag yet: it links
only a full-SHA `target_commitish`, as every release does. A release whose range cannot be read (a
previous tag deleted) is an item failure. `read_item` on a release lists the releases to find its
previous one.

Scope query: "owner/repo" reads issues, pulls, commits and releases; "owner/repo:issues,pulls" (any of
issues, pulls, commits, releases, comma-separated) reads only those.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from connectors.base import (
    WEBHOOK_SECRET_FIELD,
    Connector,
    CredentialField,
    Feature,
    ItemFailure,
    ItemRef,
    OptionField,
    Page,
    ScopeSpec,
    ToolItem,
    register_connector,
)
from connectors.client import HttpClient
from connectors.exceptions import AuthError, BadPayload, BadRequest, NotFound
from connectors.providers.github import webhooks
from connectors.providers.github.items import (
    CLOSED,
    FULL_SHA,
    ISSUE_KEY,
    OPEN,
    RepoScope,
    commit_to_item,
    format_github_time,
    issue_to_item,
    parse_github_time,
    parse_scope,
    release_time,
    release_to_item,
)

DEFAULT_BASE_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
USER_AGENT = "vsm-portal-connector"
MAX_PER_PAGE = 100
HISTORY_EVENTS, HISTORY_DATES = "events", "dates"
FIRST_RELEASE_HISTORY, FIRST_RELEASE_TARGET = "history", "target"
DEFAULT_COMMIT_LOOKBACK_HOURS = 72
WRITABLE_FIELDS = frozenset({"title", "body", "state", "state_reason", "labels", "assignees", "milestone"})
FIELD_ALIASES = {"summary": "title", "description": "body"}
TRANSITIONS = {
    OPEN: {"state": OPEN},
    "reopened": {"state": OPEN},
    CLOSED: {"state": CLOSED, "state_reason": "completed"},
    "completed": {"state": CLOSED, "state_reason": "completed"},
    "not_planned": {"state": CLOSED, "state_reason": "not_planned"},
    "not planned": {"state": CLOSED, "state_reason": "not_planned"},
}
_NO_TIME = datetime.min.replace(tzinfo=UTC)
_PARSE_ERRORS = (KeyError, TypeError, ValueError, AttributeError)

Entry = tuple[datetime, int, ToolItem | ItemFailure]


@register_connector
class GitHubConnector(Connector):
    slug = "github"
    name = "GitHub"
    credential_fields: ClassVar = (
        CredentialField(
            "token",
            "Access token",
            help_text="A fine-grained or classic personal access token, or an app installation token, "
            "that can read the repository's issues, pull requests and contents (and write issues).",
        ),
        WEBHOOK_SECRET_FIELD,
    )
    option_fields: ClassVar = (
        OptionField(
            "history",
            "Status history",
            choices=(HISTORY_EVENTS, HISTORY_DATES),
            default=HISTORY_EVENTS,
            help_text="events: replay each closed or reopened item's events (one request each); "
            "dates: one change from closed_at / merged_at (no extra requests, reopenings are lost).",
        ),
        OptionField(
            "first_release",
            "First release",
            choices=(FIRST_RELEASE_HISTORY, FIRST_RELEASE_TARGET),
            default=FIRST_RELEASE_HISTORY,
            help_text="history: the repository's first release ships every commit reachable from its tag "
            "(one request per 100 commits); target: only the commit its tag points at.",
        ),
        OptionField(
            "commit_lookback_hours",
            "Commit look-back (hours)",
            default=str(DEFAULT_COMMIT_LOOKBACK_HOURS),
            help_text="Commits carry the time they were made, not pushed: re-read this far back.",
        ),
    )
    artifact_types = ("Issue", "PullRequest", "Commit", "Release")
    features = frozenset({Feature.READ, Feature.WRITE, Feature.LINKS, Feature.WEBHOOKS})
    webhook_module = webhooks
    query_help = (
        "owner/repo, optionally with what to read: owner/repo:issues,pulls,commits,releases (default: all)."
    )

    def __init__(self, installation):
        super().__init__(installation)
        token = (installation.credentials.get("token") or "").strip()
        if not token:
            raise AuthError("GitHub needs an access token")
        options = installation.options
        self.history_mode = options.get("history") or HISTORY_EVENTS
        if self.history_mode not in (HISTORY_EVENTS, HISTORY_DATES):
            raise BadRequest(f"unknown history option {self.history_mode!r}: use events or dates")
        self.first_release = options.get("first_release") or FIRST_RELEASE_HISTORY
        if self.first_release not in (FIRST_RELEASE_HISTORY, FIRST_RELEASE_TARGET):
            raise BadRequest(f"unknown first_release option {self.first_release!r}: use history or target")
        try:
            hours = int(options.get("commit_lookback_hours") or DEFAULT_COMMIT_LOOKBACK_HOURS)
        except ValueError:
            raise BadRequest("commit_lookback_hours must be a whole number of hours") from None
        self.commit_lookback = timedelta(hours=max(0, hours))
        self.http = HttpClient(
            (installation.base_url or DEFAULT_BASE_URL).rstrip("/") + "/",
            auth=BearerAuth(token),
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": USER_AGENT,
            },
            **installation.http_options(),
        )

    def close(self) -> None:
        self.http.close()

    # Reading

    def check_connection(self) -> str:
        user = self.http.get_json("user")
        return user.get("login") or user.get("name") or "an unnamed user"

    def read_changes(self, scope: ScopeSpec, since: datetime | None) -> Iterator[Page]:
        target = _scope(scope.query)
        page_size = max(1, min(scope.page_size, MAX_PER_PAGE))
        # Commits and releases come newest first: read them whole, then merge in time order.
        buffered: list[Entry] = []
        if "commits" in target.kinds:
            buffered += self._commit_entries(target, since)
        if "releases" in target.kinds:
            buffered += self._release_entries(target, since)
        pending = deque(sorted(buffered, key=lambda entry: entry[:2]))
        if target.kinds & {"issues", "pulls"}:
            for entries in self._issue_pages(target, since, page_size):
                times = [at for at, _, value in entries if isinstance(value, ToolItem)]
                if times:
                    # What is older than this page goes first, in pages of its own; what falls within
                    # it rides along, so no page's newest change passes an item still to come.
                    yield from _chunks(_take_before(pending, min(times), inclusive=False), page_size)
                    entries += _take_before(pending, max(times), inclusive=True)
                yield _page(entries)
        yield from _chunks(list(pending), page_size)

    def read_item(self, key: str, scope: ScopeSpec) -> ToolItem:
        target = _scope(scope.query)
        found = ISSUE_KEY.fullmatch(key)
        if found:
            repository = parse_scope(found["repository"])
            issue = self.http.get_json(f"{repository.path}/issues/{found['number']}")
            return self._issue_item(repository, issue)
        if FULL_SHA.fullmatch(key):
            return commit_to_item(self.http.get_json(f"{target.path}/commits/{key}"), target.full_name)
        release = self.http.get_json(f"{target.path}/releases/tags/{quote(key, safe='')}")
        return self._release_item(target, release, _previous_tags(self._releases(target)))

    def list_ids(self, scope: ScopeSpec) -> Iterator[str]:
        target = _scope(scope.query)
        if target.kinds & {"issues", "pulls"}:
            params = {"state": "all", "per_page": MAX_PER_PAGE}
            for issues in self.http.paginate_link(f"{target.path}/issues", params=params):
                for issue in issues:
                    if _wanted(target, issue):
                        yield str(issue["node_id"])
        for kind, path in (("commits", "commits"), ("releases", "releases")):
            if kind in target.kinds:
                for values in self.http.paginate_link(f"{target.path}/{path}", params={"per_page": 100}):
                    yield from (str(value["node_id"]) for value in values)

    def _issue_pages(
        self, target: RepoScope, since: datetime | None, page_size: int
    ) -> Iterator[list[Entry]]:
        params: dict[str, Any] = {
            "state": "all",
            "sort": "updated",
            "direction": "asc",
            "per_page": page_size,
        }
        if since is not None:
            params["since"] = format_github_time(since)
        sequence = 0
        for issues in self.http.paginate_link(f"{target.path}/issues", params=params):
            entries: list[Entry] = []
            for issue in issues:
                sequence += 1
                if not isinstance(issue, dict) or not _wanted(target, issue):
                    continue
                try:
                    item = self._issue_item(target, issue)
                except (NotFound, *_PARSE_ERRORS) as error:
                    entries.append((_NO_TIME, sequence, _failure(issue, target, error)))
                else:
                    entries.append((item.updated, sequence, item))
            yield entries

    def _issue_item(self, target: RepoScope, issue: dict[str, Any]) -> ToolItem:
        number = issue["number"]
        pull = commits = None
        if "pull_request" in issue:
            pull = self.http.get_json(f"{target.path}/pulls/{number}")
            commits = [
                commit
                for page in self.http.paginate_link(
                    f"{target.path}/pulls/{number}/commits", params={"per_page": MAX_PER_PAGE}
                )
                for commit in page
            ]
        return issue_to_item(
            issue,
            target.full_name,
            pull=pull,
            commits=commits,
            events=self._events(target, issue, pull),
        )

    def _events(
        self, target: RepoScope, issue: dict[str, Any], pull: dict[str, Any] | None
    ) -> list[dict[str, Any]] | None:
        """The item's events when its history needs them; None to synthesise it from its dates."""
        if self.history_mode != HISTORY_EVENTS:
            return None
        if (pull or issue).get("state") != CLOSED and issue.get("state_reason") != "reopened":
            return None  # open and never reopened: nothing happened to its status
        try:
            return [
                event
                for page in self.http.paginate_link(
                    f"{target.path}/issues/{issue['number']}/events", params={"per_page": MAX_PER_PAGE}
                )
                for event in page
            ]
        except NotFound:
            return None

    def _commit_entries(self, target: RepoScope, since: datetime | None) -> list[Entry]:
        params: dict[str, Any] = {"per_page": MAX_PER_PAGE}
        if since is not None:
            params["since"] = format_github_time(since - self.commit_lookback)
        return _entries(
            self.http.paginate_link(f"{target.path}/commits", params=params), commit_to_item, target
        )

    def _releases(self, target: RepoScope) -> list[Any]:
        pages = self.http.paginate_link(f"{target.path}/releases", params={"per_page": MAX_PER_PAGE})
        return [release for page in pages for release in page]

    def _release_entries(self, target: RepoScope, since: datetime | None) -> list[Entry]:
        """Every release is listed (to order them); only those changed since `since` read their range."""
        releases = self._releases(target)
        previous = _previous_tags(releases)
        entries: list[Entry] = []
        for release in releases:
            try:
                if since is not None and release_time(release) < since:
                    continue
                item = self._release_item(target, release, previous)
            except (NotFound, BadPayload, *_PARSE_ERRORS) as error:
                entries.append((_NO_TIME, len(entries), _failure(release, target, error)))
            else:
                entries.append((item.updated, len(entries), item))
        return entries

    def _release_item(
        self, target: RepoScope, release: dict[str, Any], previous: dict[str, str | None]
    ) -> ToolItem:
        tag = release.get("tag_name")
        if release.get("draft") or not isinstance(tag, str) or tag not in previous:
            return release_to_item(release, target.full_name)  # a draft has no tag to compare yet
        before = previous[tag]
        released = self._compare(target, before, tag) if before is not None else self._history(target, tag)
        return release_to_item(release, target.full_name, released=released, previous_tag=before)

    def _compare(self, target: RepoScope, base: str, head: str) -> list[str]:
        """The SHAs of the commits reachable from `head` and not from `base`, oldest first, every page."""
        path = f"{target.path}/compare/{quote(base, safe='')}...{quote(head, safe='')}"
        response = self.http.request("GET", path, params={"per_page": MAX_PER_PAGE})
        try:
            body = response.json()
        except ValueError:
            raise BadPayload(f"GET {response.request.url.path}: expected JSON") from None
        commits, total = list(body["commits"]), body["total_commits"]
        next_link = response.links.get("next")
        if next_link and next_link.get("url"):
            next_url = str(response.request.url.join(next_link["url"]))
            for page in self.http.paginate_link(next_url, items_field="commits"):
                commits += page
        shas = list(dict.fromkeys(commit["sha"] for commit in commits))
        if not isinstance(total, int) or len(shas) < total:
            raise BadPayload(f"comparing {base}...{head} listed {len(shas)} of {total!r} commits")
        return shas

    def _history(self, target: RepoScope, tag: str) -> list[str]:
        """What the first release ships: its tag's whole history, or only its tag's commit."""
        if self.first_release == FIRST_RELEASE_TARGET:
            return [self.http.get_json(f"{target.path}/commits/{quote(tag, safe='')}")["sha"]]
        pages = self.http.paginate_link(
            f"{target.path}/commits", params={"sha": tag, "per_page": MAX_PER_PAGE}
        )
        return [commit["sha"] for page in pages for commit in page]

    # Writing

    def create_item(
        self, scope: ScopeSpec, item_type: str, fields: dict[str, Any], *, marker: str = ""
    ) -> ToolItem:
        if item_type != "Issue":
            raise BadRequest(f"GitHub items of type {item_type!r} cannot be created here, only issues")
        target = _scope(scope.query)
        payload = _issue_payload(fields)
        if not payload.get("title"):
            raise BadRequest("a GitHub issue needs a title")
        created = self.http.post_json(f"{target.path}/issues", payload)
        return issue_to_item(created, target.full_name)

    def update_item(self, ref: ItemRef, fields: dict[str, Any]) -> None:
        repository, number = _issue_ref(ref)
        self.http.patch_json(f"{repository.path}/issues/{number}", _issue_payload(fields))

    def transition_item(self, ref: ItemRef, to_status: str) -> None:
        change = TRANSITIONS.get(to_status.strip().casefold())
        if change is None:
            raise BadRequest(
                f"{ref.key} cannot move to “{to_status}”: GitHub issues are open or closed "
                "(a pull request is merged by merging it, not by a status change)"
            )
        repository, number = _issue_ref(ref)
        self.http.patch_json(f"{repository.path}/issues/{number}", change)


class BearerAuth(httpx.Auth):
    def __init__(self, token: str):
        self._token = token

    def auth_flow(self, request):
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


def _scope(query: str) -> RepoScope:
    try:
        return parse_scope(query)
    except ValueError as error:
        raise BadRequest(str(error)) from None


def _wanted(target: RepoScope, issue: dict[str, Any]) -> bool:
    return ("pulls" if "pull_request" in issue else "issues") in target.kinds


def _issue_ref(ref: ItemRef) -> tuple[RepoScope, str]:
    found = ISSUE_KEY.fullmatch(ref.key)
    if found is None:
        raise BadRequest(f"{ref.key!r} is not a GitHub issue key (owner/repo#number)")
    return parse_scope(found["repository"]), found["number"]


def _issue_payload(fields: dict[str, Any]) -> dict[str, Any]:
    payload = {FIELD_ALIASES.get(name, name): value for name, value in fields.items()}
    unknown = set(payload) - WRITABLE_FIELDS
    if unknown:
        raise BadRequest(
            f"GitHub issues have no writable field {', '.join(sorted(unknown))}; "
            f"use {', '.join(sorted(WRITABLE_FIELDS))}"
        )
    return payload


def _failure(payload: Any, target: RepoScope, error: Exception) -> ItemFailure:
    data = payload if isinstance(payload, dict) else {}
    if "number" in data:
        key = f"{target.full_name}#{data['number']}"
    else:
        key = str(data.get("sha") or data.get("tag_name") or "")
    native_id = str(data.get("node_id") or data.get("id") or "")
    message = f"cannot read {key or native_id or 'an item'}: {error!r:.200}"
    return ItemFailure(native_id, key, message, payload)


def _previous_tags(releases: list[Any]) -> dict[str, str | None]:
    """Each non-draft release's tag -> the tag of the release before it (None for the first).

    Order: `created_at` (the tagged commit's date, per GitHub), then id; prereleases count, drafts and
    releases without a readable tag or date are left out.
    """
    ordered = []
    for release in releases:
        try:
            tag = release["tag_name"]
            if release.get("draft") or not isinstance(tag, str) or not tag:
                continue
            ordered.append((parse_github_time(release["created_at"]), int(release.get("id") or 0), tag))
        except _PARSE_ERRORS:
            continue
    previous: dict[str, str | None] = {}
    before = None
    for _, _, tag in sorted(ordered, key=lambda entry: entry[:2]):
        previous[tag] = before
        before = tag
    return previous


def _entries(pages: Iterable[list[Any]], convert, target: RepoScope) -> list[Entry]:
    entries: list[Entry] = []
    for values in pages:
        for value in values:
            try:
                item = convert(value, target.full_name)
            except _PARSE_ERRORS as error:
                entries.append((_NO_TIME, len(entries), _failure(value, target, error)))
            else:
                entries.append((item.updated, len(entries), item))
    return entries


def _take_before(pending: deque[Entry], bound: datetime, *, inclusive: bool) -> list[Entry]:
    """The pending entries older than `bound` (or at it, when `inclusive`), in order."""
    taken = []
    while pending and (pending[0][0] < bound or (inclusive and pending[0][0] == bound)):
        taken.append(pending.popleft())
    return taken


def _chunks(entries: list[Entry], size: int) -> Iterator[Page]:
    for start in range(0, len(entries), size):
        yield _page(entries[start : start + size])


def _page(entries: list[Entry]) -> Page:
    page = Page(items=[])
    for _, _, value in sorted(entries, key=lambda entry: entry[:2]):
        (page.items if isinstance(value, ToolItem) else page.failures).append(value)
    return page
